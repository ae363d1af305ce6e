//! OAuth scopes. Only the two that this system serves exist; any other scope name is unknown here.

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
}
