//! The `sipsimd` command line: `serve`, `migrate` and the operator commands, which open the database
//! directly. With `--json`, each command prints exactly one JSON object on stdout (errors included, as
//! `{"error": "…"}`) and exits non-zero on failure.

mod notify;
mod operator;
mod serve;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::config::Config;
pub use crate::config::{LogFormat, Role};
use crate::node::open_store;

/// sipsimd: SIPSIM's webhook system — the API server and its operator commands.
///
/// Every command honours SIPSIM_ALLOW_INSECURE_TARGETS=1, which allows http:// and private or
/// loopback webhook URLs (for development and tests only).
#[derive(Debug, Parser)]
#[command(name = "sipsimd", version)]
pub struct Cli {
    /// Database URL: sqlite://PATH (created if missing).
    #[arg(long, global = true, env = "SIPSIM_DATABASE_URL", default_value = "sqlite://sipsim.db")]
    pub database: String,

    /// A TOML file of settings (keys as in the README's configuration table); variables and flags
    /// override it.
    #[arg(long, global = true, env = "SIPSIM_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Print exactly one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (migrations are applied first).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage an account's API clients (OAuth client credentials).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage an account's dashboard users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage an account's webhook integration (what the dashboard does).
    #[command(subcommand)]
    Integration(IntegrationCommand),
    /// Run a complete demo: API, dispatcher and a built-in receiver on a fresh database, with one
    /// realistic call emitted and every signed delivery printed as it arrives.
    Demo {
        /// Address of the demo's API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Copy the database, consistently and while the server runs, to a new file (created 0600).
    /// SQLite only: for PostgreSQL use its own tools (pg_dump, or base backups with WAL archiving).
    /// The copy keeps encrypted secrets encrypted: keep SIPSIM_ENCRYPTION_KEY to restore it.
    Backup {
        /// The file to write (it must not exist yet).
        path: std::path::PathBuf,
    },
    /// Manage the encryption key of the secrets stored in the database (SIPSIM_ENCRYPTION_KEY).
    #[command(subcommand)]
    Encryption(EncryptionCommand),
    /// Failure emails (SIPSIM_SMTP_URL, SIPSIM_SMTP_FROM).
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Ingest one event for an account, as the telephony core does through POST /internal/v1/events.
    /// A running server delivers it within a second.
    Emit(EmitArgs),
    /// Generate realistic telephony traffic: incoming calls through sequential and simultaneous dial
    /// chains (answered, missed, busy, no answer), voicemail, outgoing calls, then tags,
    /// transcription, summary and rating, and SMS — validated and stored as the ingest route does. A
    /// running server delivers them. Calls in progress are fast-forwarded when the run ends, so every
    /// lifecycle is complete.
    Simulate(SimulateArgs),
}

/// `simulate`'s options.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// How many accounts to create for the run ("Simulated company N"), when --account is not given.
    #[arg(long, default_value_t = 3)]
    pub accounts: usize,
    /// Use this existing account instead of creating accounts (repeat it for several).
    #[arg(long = "account")]
    pub account: Vec<String>,
    /// Events per second on average, across all accounts.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Start new calls for this long (e.g. 30s, 5m); without it, until Ctrl-C.
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
    /// How much faster than real time calls unfold: at 60, a 3-minute call takes 3 seconds (the
    /// payloads' times follow the simulated clock).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Give each created account an integration that delivers every event to this URL (see
    /// SIPSIM_ALLOW_INSECURE_TARGETS for http:// and local URLs).
    #[arg(long, conflicts_with = "account")]
    pub webhook_url: Option<String>,
    /// The random generator's seed, for a repeatable run.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `emit`'s options.
#[derive(Debug, Args)]
pub struct EmitArgs {
    /// The account.
    #[arg(long)]
    pub account: String,
    /// The event name.
    pub event: String,
    /// The payload as JSON.
    #[arg(long, conflicts_with = "example", required_unless_present = "example")]
    pub payload: Option<String>,
    /// Send the event's documented example payload.
    #[arg(long)]
    pub example: bool,
    /// An idempotency key: a repeat within 24 h is not stored again.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

/// `integration resume --kept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kept {
    /// Deliver the kept events now.
    Deliver,
    /// Drop them (they are marked failed, not sent).
    Drop,
}

/// `serve`'s options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SIPSIM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Log format: `text` or `json`. Verbosity comes from RUST_LOG (default `info`).
    #[arg(long, env = "SIPSIM_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// What this process runs: the API, the dispatcher, or both.
    #[arg(long, env = "SIPSIM_ROLE", default_value = "all")]
    pub role: Role,
    /// Delays before each delivery attempt (units ms, s, m, h); the delivery fails after the last.
    #[arg(long, env = "SIPSIM_RETRY_SCHEDULE", default_value = sipsim_core::retry::RetrySchedule::DEFAULT)]
    pub retry_schedule: String,
    /// Random spread applied to each delay, as a fraction (0 to 0.5).
    #[arg(long, env = "SIPSIM_RETRY_JITTER", default_value_t = 0.1)]
    pub retry_jitter: f64,
    /// Time limit of one whole delivery attempt.
    #[arg(long, env = "SIPSIM_DELIVERY_TIMEOUT", default_value = "2s", value_parser = parse_duration_arg)]
    pub delivery_timeout: Duration,
    /// Delivery attempts in flight at once.
    #[arg(long, env = "SIPSIM_DELIVERY_CONCURRENCY", default_value_t = 128)]
    pub delivery_concurrency: usize,
    /// Most delivery attempts in flight at once for one integration (a slow endpoint holds no
    /// more). An endpoint that times out, answers 5xx or 429, or slows down gets fewer, down to 1,
    /// and grows back to this as it answers well.
    #[arg(long, env = "SIPSIM_DELIVERY_CONCURRENCY_PER_INTEGRATION", default_value_t = 16)]
    pub delivery_concurrency_per_integration: usize,
    /// Delete messages, their deliveries and attempt logs older than this (pending ones are kept).
    #[arg(long, env = "SIPSIM_RETENTION", default_value = "720h", value_parser = parse_duration_arg)]
    pub retention: Duration,
    /// Pause an integration whose every delivery attempt has failed for this long.
    #[arg(long, env = "SIPSIM_PAUSE_AFTER", default_value = "120h", value_parser = parse_duration_arg)]
    pub pause_after: Duration,
    /// Requests per second each API client may make to /api/v2, with bursts of twice that; 0 turns
    /// the limit off (benchmarks). Per node.
    #[arg(long, env = "SIPSIM_API_RATE_LIMIT", default_value_t = crate::config::DEFAULT_API_RATE_LIMIT)]
    pub api_rate_limit: u32,
    /// Tokens issued per second per API client on /oauth/token, with bursts of twice that (failed
    /// requests are limited apart, per client address and client_id); 0 turns both off. Per node.
    #[arg(long, env = "SIPSIM_TOKEN_RATE_LIMIT", default_value_t = crate::config::DEFAULT_TOKEN_RATE_LIMIT)]
    pub token_rate_limit: u32,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    sipsim_core::retry::parse_duration(s)
}

/// `account …`
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account; prints its id.
    Create {
        /// A display name.
        name: String,
    },
    /// Keep this account's finished messages, deliveries and attempt logs for its own period instead
    /// of the server's --retention (shorter for a customer who asks for it, longer for audits).
    Retention {
        /// The account.
        account: String,
        /// Days to keep them (at least 1).
        #[arg(long, conflicts_with = "default", required_unless_present = "default")]
        days: Option<u32>,
        /// Use the server's retention again.
        #[arg(long)]
        default: bool,
    },
    /// Erase an account and everything of it, at once and for good: API clients (their tokens stop
    /// working within seconds on every node), the webhook integration, dashboard users and
    /// sessions, every message, delivery and attempt log. Deliveries in flight finish but are not
    /// recorded.
    Delete {
        /// The account.
        account: String,
        /// Confirms the erasure (required).
        #[arg(long)]
        yes: bool,
    },
}

/// `user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a dashboard user. The password is read from standard input with --password-stdin;
    /// otherwise one is generated and printed (only now).
    Create {
        /// The account the user manages.
        #[arg(long)]
        account: String,
        /// The login email.
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input (at least 10 characters).
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `client …`
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create an API client; prints its client_id and client_secret (the secret is shown only now).
    Create {
        /// The account the client acts for.
        #[arg(long)]
        account: String,
        /// Scopes it may request, separated by spaces or commas: webhooks.read, webhooks.write.
        #[arg(long)]
        scopes: String,
        /// A display name.
        #[arg(long, default_value = "API client")]
        name: String,
    },
    /// List an account's API clients.
    List {
        /// The account.
        #[arg(long)]
        account: String,
    },
    /// Delete an API client; its tokens stop working within seconds.
    Delete {
        /// The client_id.
        client_id: String,
    },
}

/// `notify …`
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a sample failure email through the configured SMTP server, to check the settings;
    /// prints what the server answered. Needs no database.
    Test {
        /// Who gets it.
        #[arg(long)]
        to: String,
    },
}

/// `encryption …`
#[derive(Debug, Subcommand)]
pub enum EncryptionCommand {
    /// Re-encrypt every stored secret (signing secrets, the generated JWT key) under a new key, in
    /// one transaction. The current key comes from SIPSIM_ENCRYPTION_KEY (unset if nothing is
    /// encrypted yet); the new one from the first line of standard input, never the command line.
    ///
    /// SQLite: stop `sipsimd serve` first (this command refuses while it runs), then start it with
    /// the new key. PostgreSQL: first restart every node with SIPSIM_ENCRYPTION_KEY=NEW,OLD (they
    /// read both and write with NEW), then rotate, then restart them with NEW alone; a node that
    /// has only the old key stops claiming deliveries (see /readyz) rather than fail them.
    Rotate {
        /// Read the new key (base64 of 32 bytes) from standard input.
        #[arg(long, required = true)]
        new_key_stdin: bool,
    },
}

/// `integration …`
#[derive(Debug, Subcommand)]
pub enum IntegrationCommand {
    /// Create the webhook integration, or change its URL, state or events.
    Set {
        /// The account.
        #[arg(long)]
        account: String,
        /// The webhook URL (https, public host; see SIPSIM_ALLOW_INSECURE_TARGETS).
        #[arg(long)]
        url: String,
        /// Switch the integration off (without it, a disabled integration is enabled again).
        #[arg(long)]
        disabled: bool,
        /// Replace the subscribed events (comma- or space-separated); kept as they are when absent.
        #[arg(long)]
        events: Option<String>,
        /// Sign with a secret you already have (from SIPSIM, so your receivers keep verifying),
        /// read as one line from standard input: printable, 16 bytes or more. It replaces the
        /// current secret, which keeps signing `webhook-signature` for 24 hours.
        #[arg(long)]
        signing_secret_stdin: bool,
        /// At most this many deliveries per second (`0.5`, `20`), for a small server: events above
        /// it wait in the queue, in order. `none` removes it; kept as it is when absent.
        #[arg(long)]
        max_rate: Option<String>,
    },
    /// Show the integration: URL, state, subscribed events and signing secret.
    Show {
        /// The account.
        #[arg(long)]
        account: String,
    },
    /// Remove the integration.
    Remove {
        /// The account.
        #[arg(long)]
        account: String,
    },
    /// End a pause (automatic after days of failures, or after a 410 Gone): the integration is
    /// enabled again and the events kept meanwhile are delivered now or dropped.
    Resume {
        /// The account.
        #[arg(long)]
        account: String,
        /// What to do with the events kept while paused.
        #[arg(long)]
        kept: Kept,
    },
    /// Send the documented `test` event once, now, and print the result: `Success (HTTP 200)`,
    /// `Error (HTTP 503)` or `Connection failed: …`. Exits 0 only on success. Logged, not retried.
    Test {
        /// The account.
        #[arg(long)]
        account: String,
        /// Time limit of the attempt.
        #[arg(long, env = "SIPSIM_DELIVERY_TIMEOUT", default_value = "2s", value_parser = parse_duration_arg)]
        timeout: Duration,
    },
}

/// Runs a parsed command line; the exit code tells success.
pub async fn run(matches: clap::ArgMatches) -> ExitCode {
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let json = cli.json;
    let outcome = match Config::load(&matches) {
        Ok(config) => {
            match &cli.command {
                Command::Serve(_) => init_logging(config.log_format, "info"),
                // The demo's own lines are its output; only warnings and errors are logged beside.
                Command::Demo { .. } => init_logging(LogFormat::Text, "warn"),
                _ => {}
            }
            execute(cli, config).await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(Output { json: value, text, failed }) => {
            if json {
                println!("{value}");
            } else if !text.is_empty() {
                println!("{text}");
            }
            if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            let message = format!("{e:#}");
            if json {
                println!("{}", json!({ "error": message }));
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// What a command prints: a JSON object for `--json`, text otherwise.
struct Output {
    json: Value,
    text: String,
    /// Printed as usual, but the command exits non-zero (`integration test` that did not succeed).
    failed: bool,
}

impl Output {
    fn ok(json: Value, text: String) -> Self {
        Output { json, text, failed: false }
    }
}

async fn execute(cli: Cli, config: Config) -> anyhow::Result<Output> {
    let command = match cli.command {
        Command::Serve(_) => return serve::serve(&config).await,
        Command::Demo { listen } => return serve::demo(listen).await,
        other => other,
    };
    let command = match command {
        Command::Encryption(EncryptionCommand::Rotate { .. }) => {
            return operator::rotate_encryption(&config).await;
        }
        Command::Backup { path } => return operator::backup(&config, &path).await,
        Command::Notify(NotifyCommand::Test { to }) => return notify::test(&config, &to).await,
        other => other,
    };
    // Every operator command opens the database itself, migrating it if needed.
    let store = open_store(&config).await?;
    match command {
        Command::Migrate => {
            Ok(Output::ok(json!({ "migrated": true }), "migrations applied".to_owned()))
        }
        Command::Account(cmd) => operator::account(&*store, cmd).await,
        Command::Client(cmd) => operator::client(&*store, cmd).await,
        Command::User(cmd) => operator::user(&*store, cmd).await,
        Command::Integration(cmd) => operator::integration(&*store, cmd, &config).await,
        Command::Emit(args) => operator::emit(&*store, args).await,
        Command::Simulate(args) => operator::simulate(&*store, args, &config).await,
        Command::Serve(_)
        | Command::Demo { .. }
        | Command::Encryption(_)
        | Command::Notify(_)
        | Command::Backup { .. } => {
            bail!("handled above")
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
