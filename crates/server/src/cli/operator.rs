//! Operator commands: accounts, API clients, the webhook integration and `emit`. They open the
//! database directly, as the dashboard will through the server.

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use sipsim_core::clock::{now_ms, rfc3339_seconds_from_ms};
use sipsim_core::secret::SigningSecret;
use sipsim_core::store::{ApiClient, DeliveryRate, Integration, IntegrationUpdate, KeptDeliveries};
use sipsim_core::target::WebhookUrl;
use sipsim_core::{AccountId, ClientId, EventSet, ScopeSet, Store, StoreError};

use super::{
    AccountCommand, ClientCommand, EmitArgs, IntegrationCommand, Output, SimulateArgs, UserCommand,
};
use crate::config::Config;
use crate::service::Service;
use crate::service::users::{UserRefused, random_token};

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

pub(super) async fn account(store: &dyn Store, cmd: AccountCommand) -> anyhow::Result<Output> {
    match cmd {
        AccountCommand::Create { name } => {
            let name = name.trim();
            if name.is_empty() {
                bail!("the account name must not be empty");
            }
            let acc = store.create_account(name).await?;
            Ok(Output::ok(json!({ "account_id": acc.id, "name": acc.name }), acc.id.to_string()))
        }
        AccountCommand::Retention { account, days, default: _ } => {
            let account_id = parse_account(&account)?;
            if days == Some(0) {
                bail!("--days must be at least 1");
            }
            let retention_ms = days.map(|d| i64::from(d) * 24 * 3600 * 1000);
            if !store.set_retention(&account_id, retention_ms).await? {
                bail!("account {account_id} does not exist");
            }
            let text = match days {
                Some(d) => format!("account {account_id} keeps its finished messages {d} day(s)"),
                None => format!("account {account_id} follows the server's retention"),
            };
            Ok(Output::ok(json!({ "account_id": account_id, "retention_days": days }), text))
        }
        AccountCommand::Delete { account, yes } => {
            let account_id = parse_account(&account)?;
            if !yes {
                bail!(
                    "this erases account {account_id} and all its data for good; add --yes to confirm"
                );
            }
            if !store.delete_account(&account_id).await? {
                bail!("account {account_id} does not exist");
            }
            Ok(Output::ok(
                json!({ "deleted": true, "account_id": account_id }),
                format!("erased account {account_id} and all its data"),
            ))
        }
    }
}

pub(super) async fn user(store: &dyn Store, cmd: UserCommand) -> anyhow::Result<Output> {
    match cmd {
        UserCommand::Create { account, email, password_stdin } => {
            let account_id = parse_account(&account)?;
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (random_token(), true)
            };
            let user = match Service::offline(store)
                .create_user(&account_id, &email, password.clone())
                .await
            {
                Ok(user) => user,
                Err(UserRefused::Store(StoreError::EmailTaken)) => {
                    bail!("a user with the email {} exists already", email.trim())
                }
                Err(UserRefused::Store(e)) => return Err(account_error(e)),
                Err(refused) => bail!(refused),
            };
            let mut value = json!({
                "user_id": user.id,
                "account_id": user.account_id,
                "email": user.email,
            });
            let mut text = format!("user_id: {}\nemail:   {}", user.id, user.email);
            if generated {
                value["password"] = json!(password);
                text.push_str(&format!("\npassword: {password}\n(the password is shown only now)"));
            }
            Ok(Output::ok(value, text))
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

pub(super) async fn client(store: &dyn Store, cmd: ClientCommand) -> anyhow::Result<Output> {
    match cmd {
        ClientCommand::Create { account, scopes, name } => {
            let account_id = parse_account(&account)?;
            let scopes = ScopeSet::parse_list(&scopes).map_err(|s| {
                anyhow!("unknown scope '{s}' (the scopes are webhooks.read and webhooks.write)")
            })?;
            if scopes.is_empty() {
                bail!("give at least one scope: webhooks.read, webhooks.write");
            }
            let (created, secret) = Service::offline(store)
                .create_client(&account_id, name, scopes)
                .await
                .map_err(account_error)?;
            let mut value = client_json(&created);
            value["client_secret"] = json!(secret.expose());
            Ok(Output::ok(
                value,
                format!(
                    "client_id:     {}\nclient_secret: {}\nscopes:        {}\n(the secret is shown only now; store it safely)",
                    created.id,
                    secret.expose(),
                    created.scopes
                ),
            ))
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
            Ok(Output::ok(
                json!({ "clients": clients.iter().map(client_json).collect::<Vec<_>>() }),
                if clients.is_empty() { "no API clients".to_owned() } else { text },
            ))
        }
        ClientCommand::Delete { client_id } => {
            let id = ClientId::parse(&client_id)?;
            if !Service::offline(store).delete_client(None, &id).await? {
                bail!("client {id} does not exist");
            }
            Ok(Output::ok(
                json!({ "deleted": true, "client_id": id }),
                format!("deleted {id}; its tokens stop working within 5 seconds"),
            ))
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
        "standard_webhooks_secret": i.signing_secret.for_standard_webhooks(),
        "max_rate": i.max_rate.map(|r| r.per_second()),
    })
}

/// `--max-rate`: deliveries per second, or `none`.
fn parse_max_rate(text: &str) -> anyhow::Result<Option<DeliveryRate>> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    DeliveryRate::parse(text).map(Some).ok_or_else(|| {
        anyhow!("--max-rate takes deliveries per second from 0.001 to 10000 (at most three decimals), or none")
    })
}

/// One line of standard input, without its line ending, as a brought signing secret.
fn read_signing_secret() -> anyhow::Result<SigningSecret> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let text = line.strip_suffix('\n').unwrap_or(&line);
    let text = text.strip_suffix('\r').unwrap_or(text);
    SigningSecret::brought(text).map_err(|e| anyhow!("the signing secret on standard input: {e}"))
}

fn integration_text(i: &Integration) -> String {
    let events = i.events.names();
    let state = match &i.paused_reason {
        Some(why) => format!("{} ({why})", i.state.as_str()),
        None => i.state.as_str().to_owned(),
    };
    format!(
        "account:        {}\nwebhook_url:    {}\nstate:          {}\nevents:         {}\nsigning_secret: {}{}",
        i.account_id,
        i.webhook_url,
        state,
        if events.is_empty() { "(none)".to_owned() } else { events.join(", ") },
        i.signing_secret.expose(),
        i.signing_secret
            .other_standard_form()
            .map(|other| format!("\nstandard webhooks secret: {other}"))
            .unwrap_or_default()
    )
}

pub(super) async fn integration(
    store: &dyn Store,
    cmd: IntegrationCommand,
    config: &Config,
) -> anyhow::Result<Output> {
    match cmd {
        IntegrationCommand::Set {
            account,
            url,
            disabled,
            events,
            signing_secret_stdin,
            max_rate,
        } => {
            let account_id = parse_account(&account)?;
            let webhook_url = WebhookUrl::parse(&url, config.target_policy)?;
            let events = events
                .map(|list| {
                    EventSet::parse_list(&list).map_err(|name| {
                        anyhow!(
                            "unknown event '{name}' (see GET /api/v2/webhooks/available; 'test' cannot be subscribed to)"
                        )
                    })
                })
                .transpose()?;
            let max_rate = max_rate.as_deref().map(parse_max_rate).transpose()?;
            let brought = signing_secret_stdin.then(read_signing_secret).transpose()?;
            let update = IntegrationUpdate {
                webhook_url,
                disabled,
                events,
                new_signing_secret: SigningSecret::generate(),
            };
            let service = Service::offline(store);
            let saved = match brought {
                Some(secret) => {
                    service.save_integration_with_secret(&account_id, update, secret).await
                }
                None => service.save_integration(&account_id, update).await,
            };
            let (mut i, created) = saved.map_err(account_error)?;
            if let Some(rate) = max_rate {
                i = service.set_delivery_rate(&account_id, rate).await?.ok_or_else(|| {
                    anyhow!("the integration of {account_id} was removed meanwhile")
                })?;
            }
            let mut value = integration_json(&i);
            value["created"] = json!(created);
            Ok(Output::ok(
                value,
                format!(
                    "{} integration\n{}",
                    if created { "created" } else { "updated" },
                    integration_text(&i)
                ),
            ))
        }
        IntegrationCommand::Show { account } => {
            let account_id = parse_account(&account)?;
            require_account(store, &account_id).await?;
            let i = store
                .get_integration(&account_id)
                .await?
                .ok_or_else(|| anyhow!("account {account_id} has no webhook integration"))?;
            Ok(Output::ok(integration_json(&i), integration_text(&i)))
        }
        IntegrationCommand::Remove { account } => {
            let account_id = parse_account(&account)?;
            require_account(store, &account_id).await?;
            if !Service::offline(store).remove_integration(&account_id).await? {
                bail!("account {account_id} has no webhook integration");
            }
            Ok(Output::ok(
                json!({ "removed": true, "account_id": account_id }),
                format!("removed the webhook integration of {account_id}"),
            ))
        }
        IntegrationCommand::Resume { account, kept } => {
            let account_id = parse_account(&account)?;
            require_account(store, &account_id).await?;
            let choice = match kept {
                super::Kept::Deliver => KeptDeliveries::Deliver,
                super::Kept::Drop => KeptDeliveries::Drop,
            };
            let Some(count) =
                Service::offline(store).resume_integration(&account_id, choice).await?
            else {
                bail!("the webhook integration of {account_id} is not paused");
            };
            let verb = match kept {
                super::Kept::Deliver => "delivering",
                super::Kept::Drop => "dropped",
            };
            Ok(Output::ok(
                json!({ "resumed": true, "account_id": account_id, "kept": count, "kept_action": verb }),
                format!(
                    "resumed the webhook integration of {account_id}; {verb} {count} kept event(s)"
                ),
            ))
        }
        IntegrationCommand::Test { account, timeout } => {
            test_integration(store, &account, timeout, config).await
        }
    }
}

pub(super) async fn emit(store: &dyn Store, args: EmitArgs) -> anyhow::Result<Output> {
    let payload: Value = match (&args.payload, args.example) {
        (Some(text), _) => {
            serde_json::from_str(text).map_err(|e| anyhow!("--payload is not valid JSON: {e}"))?
        }
        (None, true) => {
            let event = sipsim_core::Event::from_name(&args.event)
                .ok_or_else(|| anyhow!("unknown event '{}'", args.event))?;
            serde_json::from_str(sipsim_core::payload::example_json(event))?
        }
        (None, false) => bail!("give --payload JSON or --example"),
    };
    let mut item = json!({ "account_id": args.account, "event": args.event, "payload": payload });
    if let Some(key) = args.idempotency_key {
        item["idempotency_key"] = json!(key);
    }
    let message = crate::ingest::parse_item(0, &item).map_err(|errors| {
        anyhow!(
            "{}",
            errors.iter().map(|e| e.trim_start_matches("[0].")).collect::<Vec<_>>().join("; ")
        )
    })?;
    let outcomes =
        store.ingest(std::slice::from_ref(&message), now_ms()).await.map_err(account_error)?;
    let result = outcomes
        .first()
        .map(crate::ingest::IngestResult::from)
        .ok_or_else(|| anyhow!("the store returned no result"))?;
    let text = match (result.enqueued, result.reason) {
        (true, _) => format!("{} enqueued", result.message_id),
        (false, Some(reason)) => format!("{} stored, not enqueued: {reason}", result.message_id),
        (false, None) => format!("{} stored", result.message_id),
    };
    Ok(Output::ok(serde_json::to_value(&result)?, text))
}

pub(super) async fn test_integration(
    store: &dyn Store,
    account: &str,
    timeout: std::time::Duration,
    config: &Config,
) -> anyhow::Result<Output> {
    let account_id = parse_account(account)?;
    require_account(store, &account_id).await?;
    let sender = sipsim_delivery::Sender::new(sipsim_delivery::SenderConfig {
        timeout,
        policy: config.target_policy,
        dns_overrides: config.dns_overrides.clone(),
        extra_ca_pem: config.extra_ca_pem.clone(),
    })?;
    let result = crate::test_event::send_test(store, &sender, &account_id).await?;
    Ok(Output {
        json: serde_json::to_value(&result)?,
        text: result.result.clone(),
        failed: !result.ok,
    })
}

pub(super) async fn simulate(
    store: &dyn Store,
    args: SimulateArgs,
    config: &Config,
) -> anyhow::Result<Output> {
    let mut accounts = Vec::new();
    let mut created = Vec::new();
    if args.account.is_empty() {
        if args.accounts == 0 {
            bail!("--accounts must be at least 1");
        }
        let target = match &args.webhook_url {
            Some(url) => Some(
                WebhookUrl::parse(url, config.target_policy)
                    .map_err(|e| anyhow!("--webhook-url: {e}"))?,
            ),
            None => None,
        };
        for i in 1..=args.accounts {
            let account = store.create_account(&format!("Simulated company {i}")).await?;
            let mut entry = json!({ "account_id": account.id });
            if let Some(url) = &target {
                let (integration, _) = store
                    .put_integration(
                        &account.id,
                        IntegrationUpdate {
                            webhook_url: url.clone(),
                            disabled: false,
                            events: Some(EventSet::ALL),
                            new_signing_secret: SigningSecret::generate(),
                        },
                    )
                    .await?;
                entry["signing_secret"] = json!(integration.signing_secret.expose());
            }
            accounts.push(account.id);
            created.push(entry);
        }
    } else {
        for raw in &args.account {
            let id = parse_account(raw)?;
            require_account(store, &id).await?;
            accounts.push(id);
        }
    }
    for entry in &created {
        let secret = entry["signing_secret"]
            .as_str()
            .map(|s| format!("  signing secret {s}"))
            .unwrap_or_else(|| "  (no integration: events are stored, not delivered)".to_owned());
        eprintln!("created {}{secret}", entry["account_id"].as_str().unwrap_or_default());
    }
    let config = crate::simulate::SimulateConfig {
        accounts,
        rate: args.rate,
        duration: args.duration,
        speed: args.speed,
        seed: args.seed.unwrap_or_else(|| u64::from_le_bytes(sipsim_core::random::bytes::<8>())),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    eprintln!(
        "simulating {} account(s) at {} events/s{} (seed {})",
        config.accounts.len(),
        config.rate,
        match config.duration {
            Some(d) => format!(" for {} s", d.as_secs_f64()),
            None => " until Ctrl-C".to_owned(),
        },
        config.seed
    );
    let report = crate::simulate::run(store, None, &config, shutdown, |r| {
        eprintln!(
            "  {} calls/SMS, {} events stored, {} deliveries queued",
            r.interactions, r.events, r.enqueued
        );
    })
    .await?;
    let by_event = report
        .by_event
        .iter()
        .map(|(e, n)| format!("  {e:<38} {n}"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!(
        "{} calls/SMS, {} events stored, {} deliveries queued\n{by_event}",
        report.interactions, report.events, report.enqueued
    );
    let mut value = serde_json::to_value(&report)?;
    value["seed"] = json!(config.seed);
    value["accounts"] = json!(config.accounts);
    if !created.is_empty() {
        value["created"] = json!(created);
    }
    Ok(Output::ok(value, text))
}

/// `encryption rotate --new-key-stdin`.
pub(super) async fn rotate_encryption(config: &Config) -> anyhow::Result<Output> {
    // On SQLite, no server may run meanwhile: it would go on with the old key alone.
    let _lock = crate::config::lock_database(&config.database_url).map_err(|e| {
        anyhow::anyhow!("{e:#}: stop it before rotating the key, then start it with the new key")
    })?;
    let current = config.encryption.clone();
    let store = crate::node::open_store(config).await?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let new = sipsim_core::cipher::SecretCipher::from_base64(line.trim())
        .map_err(|e| anyhow::anyhow!("the new key on standard input: {e}"))?;
    let rewritten = crate::secrets::rotate(&*store, current.as_ref(), &new).await?;
    tracing::info!(secrets = rewritten, "re-encrypted the stored secrets under the new key");
    let text = format!(
        "re-encrypted {rewritten} secret(s) under the new key.\n\
         Now start every sipsimd using this database with SIPSIM_ENCRYPTION_KEY set to the new key \
         (nodes running with NEW,OLD keep working until then; nodes with the old key alone have \
         stopped claiming deliveries and say so in /readyz)."
    );
    Ok(Output::ok(json!({ "reencrypted": rewritten }), text))
}

/// `backup PATH`.
pub(super) async fn backup(config: &Config, path: &std::path::Path) -> anyhow::Result<Output> {
    let url = &config.database_url;
    if !url.starts_with("sqlite:") {
        bail!(
            "sipsimd backup copies SQLite databases; back up PostgreSQL with its own tools: \
             pg_dump (a consistent logical copy while nodes run) or base backups with WAL archiving"
        );
    }
    let source = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if !std::path::Path::new(source).is_file() {
        bail!("there is no database at {source} to back up");
    }
    if path.exists() {
        bail!("{} exists already: back up to a new file", path.display());
    }
    // No key is needed: the copy holds the secrets exactly as stored (sealed ones stay sealed).
    let store = sipsim_store::SqliteStore::open(url).await.context("cannot open the database")?;
    let started = std::time::Instant::now();
    store.backup_to(path).await.map_err(|e| {
        anyhow!("cannot write the backup to {}: {}", path.display(), crate::error::error_chain(&e))
    })?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    store.close().await;
    Ok(Output::ok(
        json!({ "backup": path.display().to_string(), "bytes": bytes }),
        format!(
            "backed up to {} ({bytes} bytes in {:.1} s); restore by pointing SIPSIM_DATABASE_URL at a copy of it",
            path.display(),
            started.elapsed().as_secs_f64()
        ),
    ))
}
