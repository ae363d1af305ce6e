//! Name resolution with the SSRF guard: every address a webhook host resolves to is judged at
//! connect time (so DNS rebinding cannot slip a private address in after the URL was saved), and
//! `SIPSIM_DNS_OVERRIDES` lets tests make a name resolve to chosen addresses, judged the same way.

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
        let (name, addr) = pair
            .split_once('=')
            .ok_or_else(|| format!("'{pair}' is not name=address"))?;
        let ip: IpAddr = addr
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("'{addr}' is not an IP address"))?;
        map.entry(name.trim().to_ascii_lowercase())
            .or_default()
            .push(ip);
    }
    Ok(map)
}

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
        GuardedResolver {
            overrides: Arc::new(overrides),
            policy,
        }
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
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await?
                    .map(|sa| sa.ip())
                    .collect(),
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
                let why = match refused {
                    Some(reason) => format!("{host} resolves only to {reason} addresses"),
                    None => format!("{host} has no address"),
                };
                return Err(Box::new(Blocked(why)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
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
