//! `sipsimd demo`: the whole system on one machine in one command, for a newcomer.
//!
//! It serves the API on a fresh SQLite file, creates an account, an API client and an integration that
//! points at a receiver built into the demo, subscribes to every event, emits one realistic incoming
//! call, and prints each delivery as the receiver gets it — after checking both of its signatures with
//! the same verifier receivers use. Because that receiver is local, the demo allows loopback targets
//! (for its own integration only; nothing else is created).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use sipsim_core::clock::{now_ms, now_secs};
use sipsim_core::secret::{ClientSecret, SigningSecret};
use sipsim_core::signing::{verify_sipsim, verify_standard};
use sipsim_core::store::{IntegrationUpdate, NewApiClient};
use sipsim_core::target::{TargetPolicy, WebhookUrl};
use sipsim_core::{AccountId, EventSet, ScopeSet, Store};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Role};
use crate::node::Node;
use crate::service::users::random_token;

/// Runs the demo on `listen` until `shutdown`.
pub async fn run(listen: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let database_url = format!("sqlite://{}", dir.join("sipsim.db").display());
    let mut config = Config::from_environment()?;
    config.database_url = database_url;
    config.target_policy = TargetPolicy::AllowInsecure;
    config.role = Role::All;
    let node = Node::build(&config).await?;
    let store = node.store.clone();

    let api =
        TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let api_url = format!("http://{}", api.local_addr()?);
    let receiver = TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}/webhooks/sipsim", receiver.local_addr()?);

    let account = store.create_account("Demo Company").await?.id;
    let client_secret = ClientSecret::generate();
    let client = store
        .create_client(NewApiClient {
            account_id: account.clone(),
            name: "demo".into(),
            scopes: ScopeSet::all(),
            secret_hash: client_secret.hash(),
        })
        .await?;
    let service = node.state.service();
    let (integration, _) = service
        .save_integration(
            &account,
            IntegrationUpdate {
                webhook_url: WebhookUrl::parse(&receiver_url, TargetPolicy::AllowInsecure)?,
                disabled: false,
                events: Some(EventSet::ALL),
                new_signing_secret: SigningSecret::generate(),
            },
        )
        .await?;
    let secret = integration.signing_secret.expose().to_owned();
    let password = random_token();
    let user = service.create_user(&account, "demo@example.com", password.clone()).await?;

    let wake = node.state.wake.clone();

    let app = Router::new().fallback(receive).with_state(Arc::new(secret.clone()));
    let receiving = shutdown.clone();
    tokio::spawn(async move {
        let _ =
            axum::serve(receiver, app).with_graceful_shutdown(receiving.cancelled_owned()).await;
    });

    println!("sipsim-webhooks demo: a fresh system in {}\n", dir.display());
    println!("  API            {api_url}");
    println!("  receiver       {receiver_url} (built in; checks every signature)");
    println!("  account        {account}");
    println!("  client_id      {}", client.id);
    println!("  client_secret  {}", client_secret.expose());
    println!("  signing secret {secret}");
    println!("  dashboard      {api_url}/dashboard  (log in as {} / {password})\n", user.email);
    println!("Try the API (the contract's own curl lines, with this base URL):\n");
    println!(
        "  TOKEN=$(curl -s -X POST {api_url}/oauth/token -d grant_type=client_credentials \\\n    -d client_id={} -d client_secret={} \\\n    | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        client.id,
        client_secret.expose()
    );
    println!("  curl \"{api_url}/api/v2/webhooks\" -H \"Authorization: Bearer $TOKEN\"");
    println!(
        "  curl -X DELETE \"{api_url}/api/v2/webhooks/summary\" -H \"Authorization: Bearer $TOKEN\"\n"
    );
    println!("Or the sipsim CLI, in another terminal:\n");
    println!(
        "  export SIPSIM_API_URL={api_url} SIPSIM_CLIENT_ID={} SIPSIM_CLIENT_SECRET={}",
        client.id,
        client_secret.expose()
    );
    println!("  cargo run --bin sipsim -- webhooks list\n");
    println!(
        "Simulated calls (sipsimd simulate) flow now; each delivery is printed as the receiver verifies it:\n"
    );

    let simulating = tokio::spawn(simulate(store, wake, account, shutdown.clone()));
    node.run(Some(api), shutdown).await?;
    simulating.abort();
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("sipsim-demo-{}", now_ms()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Simulated calls for the demo's account, about two events a second, each call ten times faster
/// than life, until the demo stops.
async fn simulate(
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    account: AccountId,
    stop: CancellationToken,
) {
    let config = crate::simulate::SimulateConfig {
        accounts: vec![account],
        rate: 2.0,
        duration: None,
        speed: 10.0,
        seed: u64::from_le_bytes(sipsim_core::random::bytes::<8>()),
    };
    if let Err(e) = crate::simulate::run(&*store, Some(wake), &config, stop, |_| {}).await {
        eprintln!("demo: the call simulator stopped: {e:#}");
    }
}

/// The built-in receiver: verify both signatures, print one line, answer 200 (or 400 if unverified).
async fn receive(State(secret): State<Arc<String>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let sipsim = verify_sipsim(&secret, h("x-webhook-timestamp"), h("x-webhook-signature"), &body);
    let standard = verify_standard(
        &secret,
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
        &body,
        now_secs(),
    );
    let verdict = match (&sipsim, &standard) {
        (Ok(()), Ok(())) => "signatures verified".to_owned(),
        _ => format!(
            "NOT VERIFIED (X-Webhook-Signature: {sipsim:?}, webhook-signature: {standard:?})"
        ),
    };
    let compact: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    println!(
        "  received {:<38} {}  {verdict}\n           {compact}",
        h("x-webhook-event"),
        h("x-webhook-id"),
    );
    if sipsim.is_ok() && standard.is_ok() { StatusCode::OK } else { StatusCode::BAD_REQUEST }
}
