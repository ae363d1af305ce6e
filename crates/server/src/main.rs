//! `sipsimd`: the server and its operator commands. Everything happens in the library.

use std::process::ExitCode;

use clap::CommandFactory;

fn main() -> ExitCode {
    let matches = sipsim_server::cli::Cli::command().get_matches();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(sipsim_server::cli::run(matches))
}
