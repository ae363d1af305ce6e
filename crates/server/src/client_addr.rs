//! The client's address, as the limits count it: the TCP peer, or — only when the peer is a proxy
//! the operator trusts (`SIPSIM_TRUSTED_PROXIES`) — the right-most address of `X-Forwarded-For`
//! that is not itself a trusted proxy.
//!
//! Behind a TLS proxy every request comes from the proxy's address, so per-address limits would be
//! one global limit; but a client can write any `X-Forwarded-For` it likes, so the header is
//! believed only from a trusted peer, and read from the right: each trusted proxy appends the
//! address it saw, and the first address from the right that no trusted proxy owns is the one that
//! connected to them. Whatever the client itself put further left is never believed.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of CIDRs or single addresses (`10.0.0.0/8, 192.168.1.7, ::1`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| format!("'{s}' is not a CIDR (e.g. 10.0.0.0/8) or an IP address"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether `address` is a trusted proxy.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address for a request from `peer` carrying `headers`.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        // Every X-Forwarded-For header, in order, as one list.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(address) if self.contains(address) => client = address,
                Some(address) => return address,
                // A trusted proxy passed on something that is no address: believe nothing further.
                None => return client,
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, perhaps bracketed or with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| hop.trim_start_matches('[').trim_end_matches(']').parse())
        .ok()
        .map(|a| a.to_canonical())
}

/// The client's address (see the module's comment), when the server knows its peer (it serves
/// with connection info; a router called directly in a test does not).
pub struct ClientAddr(pub Option<IpAddr>);

/// A router's state that knows which proxies to believe (the server's `AppState`).
pub trait KnowsProxies {
    fn trusted_proxies(&self) -> &TrustedProxies;
}

impl<S: KnowsProxies + Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| state.trusted_proxies().client_address(c.0.ip(), &parts.headers)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies_and_read_from_the_right() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7 ,::1").unwrap();
        let spoofed = headers(&["6.6.6.6, 1.2.3.4"]);
        // Not from a proxy: the peer, whatever the header says.
        assert_eq!(trusted.client_address(ip("9.9.9.9"), &spoofed), ip("9.9.9.9"));
        // From a proxy: the right-most untrusted hop; what the client wrote further left is ignored.
        assert_eq!(trusted.client_address(ip("10.1.1.1"), &spoofed), ip("1.2.3.4"));
        // Two proxies in a row, one header each.
        let chain = headers(&["6.6.6.6", "1.2.3.4, 10.2.2.2"]);
        assert_eq!(trusted.client_address(ip("192.168.1.7"), &chain), ip("1.2.3.4"));
        // Every hop trusted: the first of them.
        let inner = headers(&["10.3.3.3, 10.2.2.2"]);
        assert_eq!(trusted.client_address(ip("::1"), &inner), ip("10.3.3.3"));
        // No header: the proxy itself.
        assert_eq!(trusted.client_address(ip("10.1.1.1"), &HeaderMap::new()), ip("10.1.1.1"));
        // Garbage right of the client: stop at the last trusted hop.
        let garbage = headers(&["1.2.3.4, nonsense"]);
        assert_eq!(trusted.client_address(ip("10.1.1.1"), &garbage), ip("10.1.1.1"));
        // Ports, brackets and IPv4-mapped peers.
        let ported = headers(&["[2001:db8::1]:443", "5.6.7.8:1234"]);
        assert_eq!(trusted.client_address(ip("::ffff:10.0.0.1"), &ported), ip("5.6.7.8"));
        // Nobody trusted (the default): always the peer.
        assert_eq!(
            TrustedProxies::default().client_address(ip("10.1.1.1"), &spoofed),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.internal").is_err());
        assert_eq!(TrustedProxies::parse(" ").unwrap(), TrustedProxies::default());
    }
}
