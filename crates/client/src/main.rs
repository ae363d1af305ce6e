//! `sipsim`: the customer-side command line of SIPSIM's webhooks.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
