//! The `sipsim` command line: arguments, configuration, output and exit codes.

mod deliveries;
mod listen;
mod output;
mod verify;
mod webhooks;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sipsim_client::{ApiErrorKind, Client, Error};

use self::output::Out;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the request failed (server error, network, rate limit), or a signature did not verify
  2  bad usage: a wrong argument, an unknown event name
  3  authentication failed: wrong client id or secret, an invalid or expired token, none given
  4  permission denied: the API client lacks the scope (webhooks.read or webhooks.write)
  5  no webhook integration yet: set a webhook URL in the dashboard first
  6  not found (a delivery id that is not your account's)";

/// sipsim: manage SIPSIM webhook subscriptions, inspect deliveries, and receive signed events locally.
///
/// Credentials come from SIPSIM_CLIENT_ID and SIPSIM_CLIENT_SECRET (an API client created in the
/// dashboard), or SIPSIM_ACCESS_TOKEN; the API from SIPSIM_API_URL.
#[derive(Debug, Parser)]
#[command(name = "sipsim", version, after_help = EXIT_CODES)]
struct Cli {
    /// The API's base URL.
    #[arg(long, global = true, env = "SIPSIM_API_URL", default_value = "http://127.0.0.1:8080")]
    api_url: String,
    /// The API client's id.
    #[arg(long, global = true, env = "SIPSIM_CLIENT_ID")]
    client_id: Option<String>,
    /// The API client's secret (prefer the environment variable: arguments show in `ps`).
    #[arg(long, global = true, env = "SIPSIM_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// An access token to use instead of client credentials.
    #[arg(long, global = true, env = "SIPSIM_ACCESS_TOKEN", hide_env_values = true)]
    access_token: Option<String>,
    /// Print JSON for scripts instead of tables (errors too, as {"error": …}).
    #[arg(long, global = true)]
    json: bool,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, enable and disable the events your webhook receives.
    #[command(subcommand, after_help = EXIT_CODES)]
    Webhooks(WebhooksCommand),
    /// List deliveries and resend them.
    #[command(subcommand, after_help = EXIT_CODES)]
    Deliveries(DeliveriesCommand),
    /// Receive webhooks on this machine: verify each request's signatures, print the event, answer
    /// 200 — or forward it to your application and relay its answer.
    ///
    /// Point your integration's webhook URL at the address printed. SIPSIM only delivers to public
    /// HTTPS URLs, so from SIPSIM itself use a tunnel to this port; a local sipsimd reaches
    /// http://127.0.0.1 directly when it runs with SIPSIM_ALLOW_INSECURE_TARGETS=1.
    Listen(listen::ListenArgs),
    /// Check a signature offline: the body is read from stdin, byte for byte.
    #[command(after_help = "Exit codes: 0 valid, 1 invalid, 2 malformed input.")]
    Verify(verify::VerifyArgs),
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Every event that can be subscribed to.
    Available,
    /// The events your webhook is subscribed to.
    List,
    /// Subscribe to events (idempotent).
    Enable(EventsArgs),
    /// Unsubscribe from events (idempotent).
    Disable(EventsArgs),
    /// Print the JSON Schema (2020-12) of an event's payload, `test` included: the one the
    /// server's OpenAPI document lists under `webhooks`. Needs no credentials.
    Schema {
        /// The event name.
        event: String,
    },
}

#[derive(Debug, Args)]
struct EventsArgs {
    /// Event names, as `sipsim webhooks available` lists them.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    events: Vec<String>,
    /// Every available event.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Subcommand)]
enum DeliveriesCommand {
    /// Deliveries, newest first.
    List(deliveries::ListArgs),
    /// Send a delivery's message again now (same X-Webhook-Id, so receivers can deduplicate).
    Resend {
        /// The delivery id (`dlv_…`), from `sipsim deliveries list`.
        id: String,
    },
}

/// A failure with its exit code and one-line message.
pub struct Failure {
    code: u8,
    message: String,
    status: Option<u16>,
    request_id: Option<String>,
    /// Already reported (a `--json` verdict): only the exit code is left.
    silent: bool,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure { code, message: message.into(), status: None, request_id: None, silent: false }
    }

    /// Bad usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(2, message)
    }

    /// Anything else that failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Failure::new(1, message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Api(api) => {
                let (code, message) = match api.kind() {
                    ApiErrorKind::Unauthorized => (
                        3,
                        format!(
                            "authentication failed: {} (the token is invalid, expired or revoked)",
                            api.message()
                        ),
                    ),
                    ApiErrorKind::InsufficientScope => (
                        4,
                        format!(
                            "permission denied: {} Give the API client that scope in the dashboard.",
                            api.message()
                        ),
                    ),
                    ApiErrorKind::NotConfigured => {
                        (5, format!("no webhook integration yet: {}", api.message()))
                    }
                    ApiErrorKind::NotFound => (6, api.message()),
                    ApiErrorKind::UnknownEvent | ApiErrorKind::BadRequest => (2, api.message()),
                    ApiErrorKind::RateLimited => (
                        1,
                        match api.retry_after {
                            Some(d) => format!(
                                "rate limited: {} Retry in {} s.",
                                api.message(),
                                d.as_secs()
                            ),
                            None => format!("rate limited: {}", api.message()),
                        },
                    ),
                    _ => (1, format!("the API failed: {}", api.message())),
                };
                Failure {
                    code,
                    message,
                    status: Some(api.status),
                    request_id: api.request_id,
                    silent: false,
                }
            }
            Error::OAuth { status, error, description } => {
                let why = match error.as_str() {
                    "invalid_client" => {
                        "the client id or secret is wrong, or the client was deleted"
                    }
                    "invalid_scope" => "the client does not have the scopes asked for",
                    _ => "the token request was refused",
                };
                Failure {
                    code: 3,
                    message: format!(
                        "authentication failed: {why} ({error}{})",
                        description.map(|d| format!(": {d}")).unwrap_or_default()
                    ),
                    status: Some(status),
                    request_id: None,
                    silent: false,
                }
            }
            Error::Config(m) => Failure::usage(m),
            other => Failure::failed(other.to_string()),
        }
    }
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Out::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            out.failure(&failure);
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli, out: &Out) -> Result<(), Failure> {
    // The API commands build their client here; `listen`, `verify` and `schema` need none.
    let api = || client(&cli.api_url, &cli.client_id, &cli.client_secret, &cli.access_token);
    let (change, events, all) = match cli.command {
        Command::Webhooks(WebhooksCommand::Available) => {
            return webhooks::available(&api()?, out).await;
        }
        Command::Webhooks(WebhooksCommand::List) => return webhooks::list(&api()?, out).await,
        Command::Webhooks(WebhooksCommand::Schema { event }) => return webhooks::schema(&event),
        Command::Webhooks(WebhooksCommand::Enable(a)) => {
            (webhooks::Change::Enable, a.events, a.all)
        }
        Command::Webhooks(WebhooksCommand::Disable(a)) => {
            (webhooks::Change::Disable, a.events, a.all)
        }
        Command::Deliveries(DeliveriesCommand::List(args)) => {
            return deliveries::list(&api()?, out, args).await;
        }
        Command::Deliveries(DeliveriesCommand::Resend { id }) => {
            return deliveries::resend(&api()?, out, &id).await;
        }
        Command::Listen(args) => return listen::run(args, out).await,
        Command::Verify(args) => return verify::run(args, out),
    };
    webhooks::change(&api()?, out, change, events, all).await
}

fn client(
    api_url: &str,
    client_id: &Option<String>,
    client_secret: &Option<String>,
    access_token: &Option<String>,
) -> Result<Client, Failure> {
    // An empty variable counts as unset (`SIPSIM_CLIENT_ID= sipsim …`).
    fn given(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|s| !s.trim().is_empty())
    }
    let builder = Client::builder(api_url);
    let builder = match (given(client_id), given(client_secret), given(access_token)) {
        (Some(id), Some(secret), _) => builder.credentials(id, secret),
        (_, _, Some(token)) => builder.access_token(token),
        (Some(_), None, None) => {
            return Err(Failure::new(3, "SIPSIM_CLIENT_SECRET is not set (SIPSIM_CLIENT_ID is)"));
        }
        _ => {
            return Err(Failure::new(
                3,
                "no credentials: set SIPSIM_CLIENT_ID and SIPSIM_CLIENT_SECRET (an API client from the dashboard), or SIPSIM_ACCESS_TOKEN",
            ));
        }
    };
    Ok(builder.build()?)
}
