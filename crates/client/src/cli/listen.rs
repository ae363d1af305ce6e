//! `sipsim listen`: a local receiver that verifies, prints and answers (or forwards) each delivery.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::Args;
use serde_json::{Value, json};
use sipsim_client::verify::Verifier;

use super::Failure;
use super::output::{Color, Out};

/// Largest body accepted (SIPSIM's payloads are a few kilobytes).
const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// The port to listen on (0 picks a free one; the address is printed).
    #[arg(long, short, default_value_t = 4242)]
    port: u16,
    /// The address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// The integration's signing secret (whsec_…, from the dashboard): every request's signatures
    /// are checked and forged ones are answered 401. Without it nothing is checked.
    #[arg(long, env = "SIPSIM_WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Also accept signatures made with the previous secret (for the day after regenerating it).
    #[arg(long, hide_env_values = true, requires = "secret")]
    previous_secret: Option<String>,
    /// Forward each verified request (body and headers unchanged) to this URL and answer with its
    /// answer, e.g. http://localhost:3000/webhooks/sipsim.
    #[arg(long)]
    forward_to: Option<url::Url>,
    /// Print each event's body too.
    #[arg(long, short)]
    verbose: bool,
}

struct Listener {
    verifier: Option<Verifier>,
    forward: Option<(reqwest::Client, url::Url)>,
    verbose: bool,
    out: Out,
}

pub async fn run(args: ListenArgs, out: &Out) -> Result<(), Failure> {
    let forward = match args.forward_to {
        Some(url) => {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Failure::usage("--forward-to must be an http:// or https:// URL"));
            }
            sipsim_client::install_crypto_provider();
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| Failure::failed(format!("cannot build the HTTP client: {e}")))?;
            Some((http, url))
        }
        None => None,
    };
    let verifier = args.secret.as_deref().map(|secret| {
        let v = Verifier::new(secret);
        match args.previous_secret.as_deref() {
            Some(previous) => v.also_accept(previous),
            None => v,
        }
    });
    let address = SocketAddr::new(args.host, args.port);
    let socket = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Failure::failed(format!("cannot listen on {address}: {e}")))?;
    let bound = socket.local_addr().map_err(|e| Failure::failed(e.to_string()))?;
    let url = format!("http://{bound}/");
    if out.json {
        out.json_line(&json!({ "listening": url }));
    } else {
        println!("Listening on {url}  (Ctrl-C to stop)");
        match &verifier {
            Some(_) => println!("Signatures are checked; forged or stale requests get 401."),
            None => println!(
                "{}",
                out.paint(
                    Color::Yellow,
                    "No --secret: signatures are NOT checked (pass the signing secret from the dashboard)."
                )
            ),
        }
        if let Some((_, to)) = &forward {
            println!("Forwarding verified requests to {to}");
        }
    }
    let state =
        Arc::new(Listener { verifier, forward, verbose: args.verbose, out: Out::new(out.json) });
    let app = Router::new()
        .fallback(receive)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    axum::serve(socket, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Failure::failed(format!("the receiver stopped: {e}")))
}

async fn receive(
    State(listener): State<Arc<Listener>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "webhooks are POSTed\n").into_response();
    }
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let event = h("x-webhook-event").unwrap_or("?").to_owned();
    let id = h("x-webhook-id").unwrap_or("-").to_owned();
    let out = &listener.out;
    let clock = time::OffsetDateTime::now_utc();
    let at = format!("{:02}:{:02}:{:02}", clock.hour(), clock.minute(), clock.second());

    let verdict = listener.verifier.as_ref().map(|v| v.verify(&headers, &body));
    if let Some(Err(e)) = &verdict {
        if out.json {
            out.json_line(&json!({ "time": at, "event": event, "id": id, "verified": false, "error": e.to_string(), "status": 401 }));
        } else {
            println!("{at}  {} {event:<38} {id}  rejected: {e}", out.paint(Color::Red, "✗ 401"));
        }
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "error": format!("signature rejected: {e}") }).to_string(),
        )
            .into_response();
    }
    let verified = matches!(verdict, Some(Ok(_)));
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);

    let (status, response) = match &listener.forward {
        None => (StatusCode::OK, (StatusCode::OK, "").into_response()),
        Some((http, to)) => forward(http, to, &headers, body.clone()).await,
    };

    if out.json {
        let mut line = json!({ "time": at, "event": event, "id": id, "verified": verified, "status": status.as_u16(), "payload": payload });
        if listener.forward.is_some() {
            line["forwarded"] = true.into();
        }
        out.json_line(&line);
    } else {
        let mark = if verified {
            out.paint(Color::Green, &format!("✓ {}", status.as_u16()))
        } else {
            out.paint(Color::Yellow, &format!("? {}", status.as_u16()))
        };
        println!("{at}  {mark} {event:<38} {id}  {}", summary(&payload));
        if listener.verbose {
            let pretty = serde_json::to_string_pretty(&payload).unwrap_or_default();
            for line in pretty.lines() {
                println!("          {}", out.paint(Color::Dim, line));
            }
        }
    }
    response
}

/// Sends the request on to the application and turns its answer into ours.
async fn forward(
    http: &reqwest::Client,
    to: &url::Url,
    headers: &HeaderMap,
    body: Bytes,
) -> (StatusCode, Response) {
    let mut request = http.post(to.clone()).body(body);
    for (name, value) in headers {
        let n = name.as_str();
        if n.starts_with("x-webhook-")
            || n.starts_with("webhook-")
            || n == "content-type"
            || n == "user-agent"
        {
            request = request.header(name.clone(), value.clone());
        }
    }
    let started = Instant::now();
    let answer = match request.send().await {
        Ok(a) => a,
        Err(e) => {
            let message = format!("forwarding to {to} failed: {e}");
            eprintln!("{message}");
            return (StatusCode::BAD_GATEWAY, (StatusCode::BAD_GATEWAY, message).into_response());
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = (status, bytes).into_response();
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    eprintln!(
        "          forwarded to {to}: {} in {} ms",
        status.as_u16(),
        started.elapsed().as_millis()
    );
    (status, response)
}

/// The fields that tell events apart, on one line.
fn summary(payload: &Value) -> String {
    let s = |k: &str| payload.get(k).and_then(Value::as_str);
    let mut parts: Vec<String> = Vec::new();
    if let Some(pbx) = s("pbx_id") {
        parts.push(pbx.to_owned());
    }
    if let Some(call) = payload.get("call_id").and_then(Value::as_u64) {
        parts.push(format!("call_id {call}"));
    }
    if let (Some(from), Some(to)) = (s("caller"), s("receiver")) {
        parts.push(format!("{from} → {to}"));
    }
    if let Some(status) = s("status") {
        parts.push(status.to_owned());
    }
    if let Some(d) = payload.get("duration").and_then(Value::as_u64) {
        parts.push(format!("{d}s"));
    }
    if let Some(m) = s("message") {
        let short: String = m.chars().take(40).collect();
        parts.push(format!("\"{short}\""));
    }
    if let Some(score) = payload.get("overall_score").and_then(Value::as_i64) {
        parts.push(format!("score {score}"));
    }
    parts.join("  ")
}
