//! OAuth scopes. This server serves two, `webhooks.read` and `webhooks.write`; SIPSIM's token
//! endpoint knows more (calls, phones, tags, …), and a token request may name them beside ours:
//! [`grant`] gives what RFC 6749 §3.3 allows, the part of the request that this server serves and
//! the client holds.

use std::fmt;

/// A permission an access token can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// List available and enabled webhook events.
    WebhooksRead,
    /// Enable or disable webhook events.
    WebhooksWrite,
}

impl Scope {
    /// Every scope, in the order they are listed.
    pub const ALL: [Scope; 2] = [Scope::WebhooksRead, Scope::WebhooksWrite];

    /// The scope's wire name.
    pub const fn name(self) -> &'static str {
        match self {
            Scope::WebhooksRead => "webhooks.read",
            Scope::WebhooksWrite => "webhooks.write",
        }
    }

    /// Parses a wire name (exact).
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    const fn bit(self) -> u8 {
        match self {
            Scope::WebhooksRead => 1,
            Scope::WebhooksWrite => 2,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of scopes. Displays as the space-separated list OAuth uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u8);

impl ScopeSet {
    /// No scope.
    pub const fn empty() -> Self {
        ScopeSet(0)
    }

    /// Every scope.
    pub const fn all() -> Self {
        ScopeSet(3)
    }

    /// Whether `scope` is in the set.
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The set with `scope` added.
    pub const fn with(self, scope: Scope) -> Self {
        ScopeSet(self.0 | scope.bit())
    }

    /// Whether every scope of `self` is in `other`.
    pub const fn is_subset_of(self, other: ScopeSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The scopes in both sets.
    pub const fn intersection(self, other: ScopeSet) -> Self {
        ScopeSet(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in listing order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses a list separated by spaces (OAuth) and/or commas (operator commands). Repeats are allowed;
    /// the first unknown name is the error.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        list.split([',', ' ']).filter(|s| !s.is_empty()).try_fold(ScopeSet::empty(), |set, name| {
            Scope::parse(name).map(|s| set.with(s)).ok_or_else(|| name.to_owned())
        })
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s.name())?;
            first = false;
        }
        Ok(())
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        iter.into_iter().fold(ScopeSet::empty(), ScopeSet::with)
    }
}

/// Every scope SIPSIM's token endpoint knows (the reference's collected list), ours included. A
/// request naming one of these that this server does not serve is not refused for it.
pub const SIPSIM_SCOPES: [&str; 17] = [
    "account.read",
    "calls.read",
    "calls.write",
    "calls.create",
    "phones.read",
    "phones.write",
    "tags.read",
    "tags.write",
    "calls.tags.write",
    "calls.transcription.read",
    "calls.transcription.write",
    "calls.summary.read",
    "calls.summary.write",
    "settings.read",
    "settings.write",
    "webhooks.read",
    "webhooks.write",
];

/// Why a token request's `scope` gets no token (`invalid_scope`); displays as its description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeRefusal {
    /// A name that is no SIPSIM scope at all (a typo, or a comma-separated list).
    Unknown(String),
    /// Only scopes of SIPSIM's that this server does not serve.
    NoneServed,
    /// Scopes this server serves, none of which the client holds.
    NotHeld { asked: ScopeSet, held: ScopeSet },
}

impl fmt::Display for ScopeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let served = ScopeSet::all();
        match self {
            ScopeRefusal::Unknown(name) => write!(
                f,
                "Unknown scope '{name}'. Scopes are separated by spaces; this server serves: {served}."
            ),
            ScopeRefusal::NoneServed => write!(
                f,
                "None of the requested scopes is served here. This server serves: {served}."
            ),
            ScopeRefusal::NotHeld { asked, held } if held.is_empty() => {
                write!(
                    f,
                    "This client holds none of the requested scopes ({asked}); it holds none."
                )
            }
            ScopeRefusal::NotHeld { asked, held } => write!(
                f,
                "This client holds none of the requested scopes ({asked}); it holds: {held}."
            ),
        }
    }
}

/// What a token request for the space-separated `requested` gets from a client holding `held`
/// (RFC 6749 §3.3): the scopes asked for that this server serves and the client holds. Other SIPSIM
/// scopes are left out of the grant, not refused, so one API client's request for all of SIPSIM
/// still gets a token here; the response's `scope` says what was granted. Refused: a name that is
/// no SIPSIM scope, or a grant that would be empty.
pub fn grant(requested: &str, held: ScopeSet) -> Result<ScopeSet, ScopeRefusal> {
    let mut asked = ScopeSet::empty();
    for name in requested.split(' ').filter(|s| !s.is_empty()) {
        match Scope::parse(name) {
            Some(scope) => asked = asked.with(scope),
            None if SIPSIM_SCOPES.contains(&name) => {}
            None => return Err(ScopeRefusal::Unknown(name.to_owned())),
        }
    }
    let granted = asked.intersection(held);
    match (asked.is_empty(), granted.is_empty()) {
        (true, _) => Err(ScopeRefusal::NoneServed),
        (false, true) => Err(ScopeRefusal::NotHeld { asked, held }),
        (false, false) => Ok(granted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_space_separated() {
        let s = ScopeSet::parse_list("webhooks.write  webhooks.read").unwrap();
        assert_eq!(s, ScopeSet::all());
        assert_eq!(s.to_string(), "webhooks.read webhooks.write");
        assert_eq!(
            ScopeSet::parse_list("webhooks.read,webhooks.read").unwrap().to_string(),
            "webhooks.read"
        );
        assert_eq!(ScopeSet::parse_list("webhooks.read calls.read"), Err("calls.read".to_owned()));
        assert!(ScopeSet::parse_list("").unwrap().is_empty());
    }

    #[test]
    fn subset() {
        let read = ScopeSet::empty().with(Scope::WebhooksRead);
        assert!(read.is_subset_of(ScopeSet::all()));
        assert!(!ScopeSet::all().is_subset_of(read));
        assert!(ScopeSet::empty().is_subset_of(read));
    }

    #[test]
    fn a_grant_is_what_was_asked_served_and_held() {
        let read = ScopeSet::empty().with(Scope::WebhooksRead);
        let all = ScopeSet::all();
        // Other SIPSIM scopes beside ours are left out, not refused.
        assert_eq!(grant("account.read calls.read webhooks.read", all), Ok(read));
        assert_eq!(grant("webhooks.write webhooks.read phones.read", all), Ok(all));
        // What the client does not hold is left out too, while something remains.
        assert_eq!(grant("webhooks.read webhooks.write", read), Ok(read));
        assert_eq!(grant("  webhooks.read  ", read), Ok(read));
        // The reference's own sample asks for nothing served here.
        let none = grant("account.read calls.read phones.read", all).unwrap_err();
        assert_eq!(none, ScopeRefusal::NoneServed);
        assert!(none.to_string().contains("webhooks.read webhooks.write"), "{none}");
        // Nothing held of what was asked.
        let write = ScopeSet::empty().with(Scope::WebhooksWrite);
        let not_held = grant("webhooks.write calls.read", read).unwrap_err();
        assert_eq!(not_held, ScopeRefusal::NotHeld { asked: write, held: read });
        assert!(not_held.to_string().contains("it holds: webhooks.read"), "{not_held}");
        // A name SIPSIM does not know is refused even beside good ones; commas do not separate.
        for (request, named) in [
            ("webhooks.read calls.reed", "calls.reed"),
            ("webhooks.read,webhooks.write", "webhooks.read,webhooks.write"),
            ("WEBHOOKS.READ", "WEBHOOKS.READ"),
        ] {
            assert_eq!(grant(request, all), Err(ScopeRefusal::Unknown(named.to_owned())));
        }
        assert_eq!(grant("", all), Err(ScopeRefusal::NoneServed));
    }

    #[test]
    fn every_served_scope_is_a_sipsim_scope() {
        for scope in Scope::ALL {
            assert!(SIPSIM_SCOPES.contains(&scope.name()), "{scope}");
        }
    }
}
