//! Wall-clock helpers. Times are kept as Unix milliseconds (`i64`) in storage, which both SQLite and
//! PostgreSQL store and compare without dialect-specific types, and shown as RFC 3339 UTC.

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How far the shared database's clock is ahead of this machine's, in ms (0 on a single node).
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the Unix epoch, now, by the clock this process follows: its own, corrected by
/// [`set_offset_ms`] when several nodes share a database whose clock they all follow.
pub fn now_ms() -> i64 {
    system_now_ms() + OFFSET_MS.load(Ordering::Relaxed)
}

/// Milliseconds since the Unix epoch by this machine's own clock.
pub fn system_now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Makes [`now_ms`] run `offset` ms ahead of this machine's clock (negative: behind). Nodes sharing a
/// PostgreSQL database set it to the database clock's lead, so their leases and due times agree.
pub fn set_offset_ms(offset: i64) {
    OFFSET_MS.store(offset, Ordering::Relaxed);
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Formats Unix milliseconds as RFC 3339 UTC to the second with a `Z`, as the contract's `timestamp`
/// fields look (`2025-01-15T10:30:00Z`). Out-of-range values fall back to the epoch rather than panic.
pub fn rfc3339_seconds_from_ms(ms: i64) -> String {
    let dt = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    rfc3339_seconds(dt)
}

/// Formats a date-time as RFC 3339 UTC to the second with a `Z`.
pub fn rfc3339_seconds(dt: OffsetDateTime) -> String {
    let dt = dt.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(dt);
    // Formatting a UTC date-time in the years 0000-9999 cannot fail; the fallback keeps this total.
    dt.format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// The current time as the contract's `timestamp` string.
pub fn timestamp_now() -> String {
    rfc3339_seconds(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_to_the_second_with_z() {
        assert_eq!(rfc3339_seconds_from_ms(1_736_937_000_999), "2025-01-15T10:30:00Z");
        assert_eq!(rfc3339_seconds_from_ms(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn now_has_contract_shape() {
        let s = timestamp_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z'));
    }
}
