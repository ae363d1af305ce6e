//! `sipsim verify`: checks one signature offline.

use std::io::Read;

use clap::Args;
use sipsim_client::verify::{VerifyError, verify_sipsim, verify_standard};

use super::Failure;
use super::output::{Color, Out};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The integration's signing secret (whsec_…).
    #[arg(long, env = "SIPSIM_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// The X-Webhook-Timestamp (or webhook-timestamp) header.
    #[arg(long)]
    timestamp: String,
    /// The X-Webhook-Signature header (64 hex digits), or a webhook-signature header (`v1,…`).
    #[arg(long, allow_hyphen_values = true)]
    signature: String,
    /// The webhook-id header: needed for a `v1,…` signature.
    #[arg(long)]
    id: Option<String>,
}

pub fn run(args: VerifyArgs, out: &Out) -> Result<(), Failure> {
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|e| Failure::failed(format!("cannot read the body from stdin: {e}")))?;
    let standard = args.signature.trim_start().starts_with("v1,");
    let (scheme, result) = if standard {
        let id = args.id.as_deref().ok_or_else(|| {
            Failure::usage("a v1,… signature (webhook-signature) needs --id, the webhook-id header")
        })?;
        // Offline: the signature is checked, not the timestamp's age.
        let at =
            args.timestamp.trim().parse().map_err(|_| {
                Failure::usage("--timestamp must be the header's Unix time in seconds")
            })?;
        let r = verify_standard(&args.secret, id, &args.timestamp, &args.signature, &body, at);
        ("webhook-signature", r)
    } else {
        let r = verify_sipsim(&args.secret, &args.timestamp, &args.signature, &body);
        ("X-Webhook-Signature", r)
    };
    if out.json {
        out.json(&serde_json::json!({
            "valid": result.is_ok(),
            "scheme": scheme,
            "error": result.err().map(|e| e.to_string()),
        }));
        return match result {
            Ok(()) => Ok(()),
            Err(_) => Err(quiet_failure(result)),
        };
    }
    match result {
        Ok(()) => {
            println!(
                "{} the {scheme} matches this secret and body ({} bytes).",
                out.paint(Color::Green, "valid:"),
                body.len()
            );
            Ok(())
        }
        Err(VerifyError::Mismatch) => Err(Failure::failed(format!(
            "invalid: the {scheme} does not match this secret, timestamp and body ({} bytes). Pass the raw body exactly as received.",
            body.len()
        ))),
        Err(e) => Err(Failure::usage(format!("malformed input: {e}"))),
    }
}

/// With `--json` the verdict was printed already; only the exit code is left to give.
fn quiet_failure(result: Result<(), VerifyError>) -> Failure {
    let mut f = match result {
        Err(VerifyError::Mismatch) => Failure::failed(""),
        _ => Failure::usage(""),
    };
    f.silent = true;
    f
}
