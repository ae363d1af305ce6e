//! Name resolution with the SSRF guard: every address a webhook host resolves to is judged at
//! connect time (so DNS rebinding cannot slip a private address in after the URL was saved), and
//! `SIPSIM_DNS_OVERRIDES` lets tests make a name resolve to chosen addresses, judged the same way.
//!
//! What a refusal says reaches the customer (the attempt log, the API's `last_error`, the
//! dashboard), so it must not tell a name that resolves only to private addresses from one that does
//! not resolve at all: otherwise a customer could map the operator's internal DNS by pointing the
//! webhook URL at guessed names. Every such refusal says [`TARGET_NOT_ALLOWED`]; the detail goes
//! to the server's log.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sipsim_core::target::{TargetPolicy, forbidden_reason};

/// Addresses to use for some names instead of asking DNS (`name=addr,name=addr`, like curl's `--resolve`).
pub type DnsOverrides = HashMap<String, Vec<IpAddr>>;

/// Parses `SIPSIM_DNS_OVERRIDES`: `name=addr,name=addr` (a name may repeat to give several addresses;
/// IPv6 addresses are written bare, e.g. `v6.test=::1`).
pub fn parse_overrides(spec: &str) -> Result<DnsOverrides, String> {
    let mut map = DnsOverrides::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, addr) =
            pair.split_once('=').ok_or_else(|| format!("'{pair}' is not name=address"))?;
        let ip: IpAddr = addr
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("'{addr}' is not an IP address"))?;
        map.entry(name.trim().to_ascii_lowercase()).or_default().push(ip);
    }
    Ok(map)
}

/// What the customer sees when a host has no address deliveries may go to: whether it resolved
/// only to forbidden addresses, to none, or not at all.
pub const TARGET_NOT_ALLOWED: &str =
    "target not allowed: no public address was found for this host";

/// Why a target was refused before any connection was made.
#[derive(Debug, thiserror::Error)]
#[error("blocked: {0}")]
pub struct Blocked(pub String);

/// The resolver reqwest uses for every delivery.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    overrides: Arc<DnsOverrides>,
    policy: TargetPolicy,
}

impl GuardedResolver {
    /// A resolver that applies `policy` to every address, consulting `overrides` before DNS.
    pub fn new(overrides: DnsOverrides, policy: TargetPolicy) -> Self {
        GuardedResolver { overrides: Arc::new(overrides), policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let overrides = self.overrides.clone();
        let policy = self.policy;
        Box::pin(async move {
            let found: Vec<IpAddr> = match overrides.get(&host) {
                Some(ips) => ips.clone(),
                None => match tokio::net::lookup_host((host.as_str(), 0)).await {
                    Ok(addrs) => addrs.map(|sa| sa.ip()).collect(),
                    Err(e) => {
                        tracing::warn!(%host, error = %e, "webhook host did not resolve; delivery refused");
                        return Err(not_allowed());
                    }
                },
            };
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| match (policy, forbidden_reason(*ip)) {
                    (TargetPolicy::PublicHttpsOnly, Some(reason)) => {
                        refused = Some(reason);
                        false
                    }
                    _ => true,
                })
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if allowed.is_empty() {
                match refused {
                    Some(reason) => tracing::warn!(
                        %host, reason, "webhook host resolves only to forbidden addresses; delivery refused (SSRF guard)"
                    ),
                    None => tracing::warn!(%host, "webhook host has no address; delivery refused"),
                }
                return Err(not_allowed());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The customer-facing refusal, the same whatever the reason (see the module's comment).
fn not_allowed() -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(Blocked(TARGET_NOT_ALLOWED.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse() {
        let m =
            parse_overrides("Hook.test=10.0.0.1, hook.test=93.184.216.34,v6.test=[::1]").unwrap();
        assert_eq!(m["hook.test"].len(), 2);
        assert_eq!(m["v6.test"], vec!["::1".parse::<IpAddr>().unwrap()]);
        assert!(parse_overrides("nope").is_err());
        assert!(parse_overrides("a=b").is_err());
        assert!(parse_overrides("").unwrap().is_empty());
    }
}
