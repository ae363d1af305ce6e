//! The `sipsimd` command line: `serve`, `migrate` and the operator commands, which open the database
//! directly. With `--json`, each command prints exactly one JSON object on stdout (errors included, as
//! `{"error": "…"}`) and exits non-zero on failure.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use sipsim_core::clock::rfc3339_seconds_from_ms;
use sipsim_core::secret::{ClientSecret, SigningSecret};
use sipsim_core::store::{ApiClient, Integration, IntegrationUpdate, NewApiClient};
use sipsim_core::target::WebhookUrl;
use sipsim_core::{AccountId, ClientId, EventSet, ScopeSet, Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ServerConfig, encryption_from_env, target_policy_from_env};
use crate::state::{AppState, open_store};

/// sipsimd: SIPSIM's webhook system — the API server and its operator commands.
///
/// Every command honours SIPSIM_ALLOW_INSECURE_TARGETS=1, which allows http:// and private or
/// loopback webhook URLs (for development and tests only).
#[derive(Debug, Parser)]
#[command(name = "sipsimd", version)]
pub struct Cli {
    /// Database URL: sqlite://PATH (created if missing).
    #[arg(
        long,
        global = true,
        env = "SIPSIM_DATABASE_URL",
        default_value = "sqlite://sipsim.db"
    )]
    pub database: String,

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
    /// Manage an account's webhook integration (what the dashboard does).
    #[command(subcommand)]
    Integration(IntegrationCommand),
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
}

/// How logs are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `account …`
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account; prints its id.
    Create {
        /// A display name.
        name: String,
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
}

/// Runs a parsed command line; the exit code tells success.
pub async fn run(cli: Cli) -> ExitCode {
    if let Command::Serve(args) = &cli.command {
        init_logging(args.log_format);
    }
    let json = cli.json;
    match execute(cli).await {
        Ok(Output { json: value, text }) => {
            if json {
                println!("{value}");
            } else if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
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
}

async fn execute(cli: Cli) -> anyhow::Result<Output> {
    let url = cli.database;
    let command = match cli.command {
        Command::Serve(args) => return serve(url, args).await,
        other => other,
    };
    // Every operator command opens the database itself, migrating it if needed.
    let store = open_store(&url, encryption_from_env()?).await?;
    match command {
        Command::Migrate => Ok(Output {
            json: json!({ "migrated": true }),
            text: "migrations applied".to_owned(),
        }),
        Command::Account(cmd) => account(&*store, cmd).await,
        Command::Client(cmd) => client(&*store, cmd).await,
        Command::Integration(cmd) => integration(&*store, cmd).await,
        Command::Serve(_) => bail!("serve is handled above"),
    }
}

async fn serve(database_url: String, args: ServeArgs) -> anyhow::Result<Output> {
    let config = ServerConfig::from_env(database_url)?;
    let _lock = crate::config::lock_database(&config.database_url)?;
    let store = open_store(&config.database_url, config.encryption.clone()).await?;
    let state = AppState::new(store, &config).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, database = %redact_url(&config.database_url), "sipsimd serving");
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    crate::run(state, listener, shutdown).await?;
    tracing::info!("sipsimd stopped");
    Ok(Output {
        json: json!({ "stopped": true }),
        text: String::new(),
    })
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
    shutdown.cancel();
}

/// A database URL without its password, for logs.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn parse_account(s: &str) -> anyhow::Result<AccountId> {
    Ok(AccountId::parse(s)?)
}

/// Turns "no such account" into a message naming the account.
fn account_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::AccountNotFound(id) => anyhow!("account {id} does not exist"),
        other => anyhow::Error::new(other),
    }
}

async fn require_account(store: &dyn Store, id: &AccountId) -> anyhow::Result<()> {
    match store.get_account(id).await? {
        Some(_) => Ok(()),
        None => bail!("account {id} does not exist"),
    }
}

async fn account(store: &dyn Store, cmd: AccountCommand) -> anyhow::Result<Output> {
    match cmd {
        AccountCommand::Create { name } => {
            let name = name.trim();
            if name.is_empty() {
                bail!("the account name must not be empty");
            }
            let acc = store.create_account(name).await?;
            Ok(Output {
                json: json!({ "account_id": acc.id, "name": acc.name }),
                text: acc.id.to_string(),
            })
        }
    }
}

fn client_json(c: &ApiClient) -> Value {
    json!({
        "client_id": c.id,
        "account_id": c.account_id,
        "name": c.name,
        "scopes": c.scopes.to_string(),
        "created_at": rfc3339_seconds_from_ms(c.created_at_ms),
        "last_used_at": c.last_used_at_ms.map(rfc3339_seconds_from_ms),
    })
}

async fn client(store: &dyn Store, cmd: ClientCommand) -> anyhow::Result<Output> {
    match cmd {
        ClientCommand::Create {
            account,
            scopes,
            name,
        } => {
            let account_id = parse_account(&account)?;
            let scopes = ScopeSet::parse_list(&scopes).map_err(|s| {
                anyhow!("unknown scope '{s}' (the scopes are webhooks.read and webhooks.write)")
            })?;
            if scopes.is_empty() {
                bail!("give at least one scope: webhooks.read, webhooks.write");
            }
            let secret = ClientSecret::generate();
            let created = store
                .create_client(NewApiClient {
                    account_id,
                    name,
                    scopes,
                    secret_hash: secret.hash(),
                })
                .await
                .map_err(account_error)?;
            let mut value = client_json(&created);
            value["client_secret"] = json!(secret.expose());
            Ok(Output {
                json: value,
                text: format!(
                    "client_id:     {}\nclient_secret: {}\nscopes:        {}\n(the secret is shown only now; store it safely)",
                    created.id,
                    secret.expose(),
                    created.scopes
                ),
            })
        }
        ClientCommand::List { account } => {
            let account_id = parse_account(&account)?;
            require_account(store, &account_id).await?;
            let clients = store.list_clients(&account_id).await?;
            let text = clients
                .iter()
                .map(|c| {
                    format!(
                        "{}  {:<30}  {}  last used: {}",
                        c.id,
                        c.scopes.to_string(),
                        c.name,
                        c.last_used_at_ms
                            .map(rfc3339_seconds_from_ms)
                            .unwrap_or_else(|| "never".to_owned())
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Output {
                json: json!({ "clients": clients.iter().map(client_json).collect::<Vec<_>>() }),
                text: if clients.is_empty() {
                    "no API clients".to_owned()
                } else {
                    text
                },
            })
        }
        ClientCommand::Delete { client_id } => {
            let id = ClientId::parse(&client_id)?;
            if !store.delete_client(&id).await? {
                bail!("client {id} does not exist");
            }
            Ok(Output {
                json: json!({ "deleted": true, "client_id": id }),
                text: format!("deleted {id}; its tokens stop working within 5 seconds"),
            })
        }
    }
}

fn integration_json(i: &Integration) -> Value {
    json!({
        "account_id": i.account_id,
        "webhook_url": i.webhook_url.as_str(),
        "enabled": i.setting().enabled,
        "state": i.state.as_str(),
        "subscribed_events": i.events.names(),
        "signing_secret": i.signing_secret.expose(),
    })
}

fn integration_text(i: &Integration) -> String {
    let events = i.events.names();
    format!(
        "account:        {}\nwebhook_url:    {}\nstate:          {}\nevents:         {}\nsigning_secret: {}",
        i.account_id,
        i.webhook_url,
        i.state.as_str(),
        if events.is_empty() {
            "(none)".to_owned()
        } else {
            events.join(", ")
        },
        i.signing_secret.expose()
    )
}

async fn integration(store: &dyn Store, cmd: IntegrationCommand) -> anyhow::Result<Output> {
    match cmd {
        IntegrationCommand::Set {
            account,
            url,
            disabled,
            events,
        } => {
            let account_id = parse_account(&account)?;
            let webhook_url = WebhookUrl::parse(&url, target_policy_from_env())?;
            let events = events
                .map(|list| {
                    EventSet::parse_list(&list).map_err(|name| {
                        anyhow!(
                            "unknown event '{name}' (see GET /api/v2/webhooks/available; 'test' cannot be subscribed to)"
                        )
                    })
                })
                .transpose()?;
            let (i, created) = store
                .put_integration(
                    &account_id,
                    IntegrationUpdate {
                        webhook_url,
                        disabled,
                        events,
                        new_signing_secret: SigningSecret::generate(),
                    },
                )
                .await
                .map_err(account_error)?;
            let mut value = integration_json(&i);
            value["created"] = json!(created);
            Ok(Output {
                json: value,
                text: format!(
                    "{} integration\n{}",
                    if created { "created" } else { "updated" },
                    integration_text(&i)
                ),
            })
        }
        IntegrationCommand::Show { account } => {
            let account_id = parse_account(&account)?;
            require_account(store, &account_id).await?;
            let i = store
                .get_integration(&account_id)
                .await?
                .ok_or_else(|| anyhow!("account {account_id} has no webhook integration"))?;
            Ok(Output {
                json: integration_json(&i),
                text: integration_text(&i),
            })
        }
        IntegrationCommand::Remove { account } => {
            let account_id = parse_account(&account)?;
            require_account(store, &account_id).await?;
            if !store.remove_integration(&account_id).await? {
                bail!("account {account_id} has no webhook integration");
            }
            Ok(Output {
                json: json!({ "removed": true, "account_id": account_id }),
                text: format!("removed the webhook integration of {account_id}"),
            })
        }
    }
}
