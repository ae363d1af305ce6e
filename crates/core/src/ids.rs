//! Typed, prefixed identifiers (`acc_…`, `cli_…`), so one kind of id cannot be passed for another.
//!
//! An id is its prefix and 26 characters of Crockford base32 (lowercase): 48 bits of milliseconds then
//! 80 random bits, so ids sort by creation time (useful for keyset pagination) and cannot be guessed.

use std::fmt;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const BODY_LEN: usize = 26;

/// Error returned when a string is not a well-formed id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{value}' is not a valid {kind} id (expected '{prefix}' followed by 26 base32 characters)"
)]
pub struct InvalidId {
    /// What kind of id was expected (`account`, `client`).
    pub kind: &'static str,
    /// The expected prefix.
    pub prefix: &'static str,
    /// The offending input, cut to 80 characters.
    pub value: String,
}

fn generate_body() -> String {
    let ms = crate::clock::now_ms().max(0) as u128 & ((1 << 48) - 1);
    let rand = crate::random::bytes::<10>();
    let mut n: u128 = ms << 80;
    for (i, b) in rand.iter().enumerate() {
        n |= (*b as u128) << (8 * (9 - i));
    }
    (0..BODY_LEN).rev().map(|i| ALPHABET[((n >> (5 * i)) & 31) as usize] as char).collect()
}

fn well_formed(body: &str) -> bool {
    body.len() == BODY_LEN && body.bytes().all(|b| ALPHABET.contains(&b))
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new random, time-ordered id.
            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, generate_body()))
            }

            /// Parses an id, checking its prefix and body.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                match s.strip_prefix($prefix) {
                    Some(body) if well_formed(body) => Ok($name(s.to_owned())),
                    _ => Err(InvalidId {
                        kind: $kind,
                        prefix: $prefix,
                        value: s.chars().take(80).collect(),
                    }),
                }
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                $name::parse(s)
            }
        }
    };
}

prefixed_id!(
    /// An account (tenant): `acc_…`.
    AccountId,
    "acc_",
    "account"
);
prefixed_id!(
    /// An API client of an account: `cli_…`.
    ClientId,
    "cli_",
    "client"
);

prefixed_id!(
    /// A dashboard user: `usr_…`.
    UserId,
    "usr_",
    "user"
);

prefixed_id!(
    /// An ingested event, the same across every attempt and resend (`X-Webhook-Id`): `msg_…`.
    MessageId,
    "msg_",
    "message"
);
prefixed_id!(
    /// One message's delivery to one integration: `dlv_…`.
    DeliveryId,
    "dlv_",
    "delivery"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let a = AccountId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = AccountId::generate();
        assert!(a.as_str().starts_with("acc_"));
        assert_eq!(a.as_str().len(), 4 + 26);
        assert_eq!(AccountId::parse(a.as_str()).unwrap(), a);
        assert!(a < b);
    }

    #[test]
    fn rejects_wrong_prefix_and_body() {
        let c = ClientId::generate();
        assert!(AccountId::parse(c.as_str()).is_err());
        assert!(AccountId::parse("acc_").is_err());
        assert!(AccountId::parse("acc_0123456789abcdefghjkmnpqrI").is_err());
        assert!(AccountId::parse("acc_0123456789abcdefghjkmnpqrs").is_ok());
        let err = ClientId::parse("x").unwrap_err();
        assert_eq!(err.kind, "client");
    }
}
