//! Webhook target URLs and the address rules of the SSRF guard.
//!
//! Saving a URL checks syntax, scheme, literal-IP hosts and `localhost` names only: no DNS lookup
//! happens here, because the customer's host may not resolve from this machine yet. The dispatcher
//! applies [`forbidden_reason`] again to every address a name resolves to, at connect time.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest URL we accept, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Whether plain HTTP and private or loopback targets are allowed (`SIPSIM_ALLOW_INSECURE_TARGETS=1`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TargetPolicy {
    /// HTTPS to public addresses only: the production rule.
    #[default]
    PublicHttpsOnly,
    /// Also `http://` and private, loopback or link-local targets, for development and tests.
    AllowInsecure,
}

/// Why a webhook URL was refused. Each message is meant to be shown to the person who typed the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUrl {
    /// Not parseable as an absolute URL.
    #[error("The webhook URL is not a valid absolute URL.")]
    Syntax,
    /// Longer than [`MAX_URL_LEN`].
    #[error("The webhook URL is longer than 2048 characters.")]
    TooLong,
    /// A scheme other than https (or http when insecure targets are allowed).
    #[error("The webhook URL must use https:// (plain http and other schemes are not accepted).")]
    Scheme,
    /// Userinfo in the URL would be logged and shown everywhere the URL is.
    #[error("The webhook URL must not contain a user name or password.")]
    Credentials,
    /// Fragments are never sent to the server, so one in a webhook URL is a mistake.
    #[error("The webhook URL must not contain a #fragment.")]
    Fragment,
    /// No host.
    #[error("The webhook URL must have a host name.")]
    NoHost,
    /// `localhost` or a name under `.localhost`.
    #[error("The webhook URL must not point to localhost.")]
    Localhost,
    /// A literal IP address in a forbidden range.
    #[error("The webhook URL must not point to a {0} address.")]
    ForbiddenAddress(&'static str),
}

/// A checked webhook URL.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Checks `input` under `policy`. Surrounding whitespace is trimmed; the URL is stored in the
    /// normalised form the `url` crate gives it (lowercase scheme and host, punycode).
    pub fn parse(input: &str, policy: TargetPolicy) -> Result<Self, InvalidUrl> {
        let input = input.trim();
        if input.len() > MAX_URL_LEN {
            return Err(InvalidUrl::TooLong);
        }
        let url = url::Url::parse(input).map_err(|_| InvalidUrl::Syntax)?;
        let insecure = policy == TargetPolicy::AllowInsecure;
        match url.scheme() {
            "https" => {}
            "http" if insecure => {}
            _ => return Err(InvalidUrl::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(InvalidUrl::Credentials);
        }
        if url.fragment().is_some() {
            return Err(InvalidUrl::Fragment);
        }
        let ip = match url.host() {
            None => return Err(InvalidUrl::NoHost),
            Some(url::Host::Domain(d)) => {
                let d = d.trim_end_matches('.');
                if d.is_empty() {
                    return Err(InvalidUrl::NoHost);
                }
                if !insecure && (d == "localhost" || d.ends_with(".localhost")) {
                    return Err(InvalidUrl::Localhost);
                }
                None
            }
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        };
        if let Some(reason) = ip.and_then(forbidden_reason)
            && !insecure
        {
            return Err(InvalidUrl::ForbiddenAddress(reason));
        }
        let s: String = url.into();
        if s.len() > MAX_URL_LEN {
            return Err(InvalidUrl::TooLong);
        }
        Ok(WebhookUrl(s))
    }

    /// Wraps a URL read back from storage, where it was checked when saved.
    pub fn from_stored(value: String) -> Self {
        WebhookUrl(value)
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.0)
    }
}

/// Why deliveries to `ip` are refused, or `None` if it is a public unicast address.
///
/// Covers loopback, private, link-local, CGNAT, multicast, unspecified, broadcast, documentation,
/// benchmarking and reserved ranges of both families, IPv4-mapped and IPv4-compatible IPv6, and the
/// translation prefixes (NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo `2001::/32`) that can smuggle an
/// IPv4 destination inside an IPv6 address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (10, _, _) => "private",
        (100, 64..=127, _) => "shared (CGNAT)",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local",
        (172, 16..=31, _) => "private",
        (192, 0, 0) => "reserved (IETF protocol)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "reserved (6to4 relay)",
        (192, 168, _) => "private",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    };
    Some(reason)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let seg = ip.segments();
    let reason = match seg {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        // ::/96, IPv4-compatible (deprecated).
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible",
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => "NAT64",
        [0x64, 0xff9b, 1, ..] => "NAT64 (local-use)",
        [0x100, 0, 0, 0, ..] => "discard-only",
        [0x2001, 0, ..] => "Teredo",
        [0x2001, 0xdb8, ..] => "documentation",
        [0x2002, ..] => "6to4",
        [s, ..] if s & 0xfe00 == 0xfc00 => "unique local (private)",
        [s, ..] if s & 0xffc0 == 0xfe80 => "link-local",
        [s, ..] if s & 0xffc0 == 0xfec0 => "site-local",
        [s, ..] if s & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    };
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str) -> Result<String, InvalidUrl> {
        WebhookUrl::parse(s, TargetPolicy::PublicHttpsOnly).map(|u| u.as_str().to_owned())
    }

    #[test]
    fn accepts_public_https() {
        assert_eq!(
            check(" https://Example.com/webhooks/sipsim ").unwrap(),
            "https://example.com/webhooks/sipsim"
        );
        assert!(check("https://93.184.216.34:8443/x?y=1").is_ok());
        assert!(check("https://[2606:2800:220:1::1]/").is_ok());
    }

    #[test]
    fn refuses_each_rule_with_its_own_error() {
        assert_eq!(check("not a url"), Err(InvalidUrl::Syntax));
        assert_eq!(check("http://example.com/"), Err(InvalidUrl::Scheme));
        assert_eq!(check("ftp://example.com/"), Err(InvalidUrl::Scheme));
        assert_eq!(check("https://u:p@example.com/"), Err(InvalidUrl::Credentials));
        assert_eq!(check("https://example.com/#x"), Err(InvalidUrl::Fragment));
        assert_eq!(check("https://localhost/"), Err(InvalidUrl::Localhost));
        assert_eq!(check("https://a.localhost./"), Err(InvalidUrl::Localhost));
        assert_eq!(check("https://127.0.0.1/"), Err(InvalidUrl::ForbiddenAddress("loopback")));
        assert_eq!(
            check("https://169.254.169.254/latest/meta-data"),
            Err(InvalidUrl::ForbiddenAddress("link-local"))
        );
        assert!(matches!(
            check("https://[::ffff:10.0.0.1]/"),
            Err(InvalidUrl::ForbiddenAddress("private"))
        ));
        assert!(matches!(check("https://[::1]/"), Err(InvalidUrl::ForbiddenAddress(_))));
        // Decimal and hex spellings of loopback are normalised by the URL parser, then refused.
        assert!(matches!(check("https://2130706433/"), Err(InvalidUrl::ForbiddenAddress(_))));
        assert!(matches!(check("https://0x7f.1/"), Err(InvalidUrl::ForbiddenAddress(_))));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(check(&long), Err(InvalidUrl::TooLong));
    }

    #[test]
    fn insecure_policy_allows_http_and_loopback() {
        let u =
            WebhookUrl::parse("http://127.0.0.1:9000/hook", TargetPolicy::AllowInsecure).unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:9000/hook");
        assert!(WebhookUrl::parse("http://localhost/", TargetPolicy::AllowInsecure).is_ok());
        assert_eq!(
            WebhookUrl::parse("ftp://x/", TargetPolicy::AllowInsecure),
            Err(InvalidUrl::Scheme)
        );
    }

    #[test]
    fn address_rules() {
        let bad = [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::8.8.8.8",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
        ];
        for a in bad {
            let ip: IpAddr = a.parse().unwrap();
            assert!(forbidden_reason(ip).is_some(), "{a} should be forbidden");
        }
        let good = [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ];
        for a in good {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(forbidden_reason(ip), None, "{a} should be allowed");
        }
    }
}
