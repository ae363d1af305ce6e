//! The retry schedule: how long to wait before each attempt, with jitter.
//!
//! DESIGN.md's default: 0, 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h, 16 h, 24 h — twelve
//! attempts over about three days — then the delivery is `failed`. `--retry-schedule` replaces it
//! (`0s,5s,30s,2m,…`, units ms/s/m/h) and `--retry-jitter` sets the ± spread (0.1 by default, 0 in tests).

use std::time::Duration;

/// Delays before each attempt, and the jitter applied to them.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        // The default text is a constant that the tests parse, so this cannot fail.
        #[allow(clippy::expect_used)]
        RetrySchedule::parse(Self::DEFAULT, 0.1).expect("the default schedule parses")
    }
}

impl RetrySchedule {
    /// The default schedule, as `--retry-schedule` writes it.
    pub const DEFAULT: &'static str = "0s,5s,30s,2m,10m,30m,1h,2h,4h,8h,16h,24h";

    /// Parses `0s,5s,30s,2m` (units ms, s, m, h) with jitter in `0.0..=0.5`.
    pub fn parse(list: &str, jitter: f64) -> Result<Self, String> {
        if !(0.0..=0.5).contains(&jitter) {
            return Err(format!("retry jitter must be between 0 and 0.5, not {jitter}"));
        }
        let delays =
            list.split(',').map(str::trim).map(parse_duration).collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() {
            return Err("the retry schedule needs at least one attempt".to_owned());
        }
        Ok(RetrySchedule { delays, jitter })
    }

    /// How many attempts a delivery gets.
    pub fn attempts(&self) -> u32 {
        self.delays.len() as u32
    }

    /// The delay before attempt number `attempt` (1-based) with jitter applied, or `None` when the
    /// schedule has no such attempt (the delivery has failed for good).
    pub fn delay_before(&self, attempt: u32) -> Option<Duration> {
        let base = *self.delays.get(attempt.checked_sub(1)? as usize)?;
        if self.jitter == 0.0 || base.is_zero() {
            return Some(base);
        }
        let [r0, r1, r2, r3] = crate::random::bytes::<4>();
        let unit = u32::from_le_bytes([r0, r1, r2, r3]) as f64 / u32::MAX as f64; // 0..=1
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        Some(base.mul_f64(factor))
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{s}' needs a unit (ms, s, m or h)"))?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("'{s}' is not a number followed by a unit"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("'{s}': the unit must be ms, s, m or h")),
    }
    .ok_or_else(|| format!("'{s}' is too long"))?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_designs() {
        let s = RetrySchedule::parse(RetrySchedule::DEFAULT, 0.0).unwrap();
        assert_eq!(s.attempts(), 12);
        assert_eq!(s.delay_before(1), Some(Duration::ZERO));
        assert_eq!(s.delay_before(2), Some(Duration::from_secs(5)));
        assert_eq!(s.delay_before(12), Some(Duration::from_secs(24 * 3600)));
        assert_eq!(s.delay_before(13), None);
        assert_eq!(s.delay_before(0), None);
        assert_eq!(RetrySchedule::default().attempts(), 12);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let s = RetrySchedule::parse("0s,10s", 0.1).unwrap();
        for _ in 0..200 {
            let d = s.delay_before(2).unwrap();
            assert!(d >= Duration::from_secs(9) && d <= Duration::from_secs(11), "{d:?}");
        }
        assert_eq!(s.delay_before(1), Some(Duration::ZERO));
    }

    #[test]
    fn bad_schedules_say_why() {
        assert!(RetrySchedule::parse("5", 0.0).unwrap_err().contains("unit"));
        assert!(RetrySchedule::parse("5d", 0.0).unwrap_err().contains("unit"));
        assert!(RetrySchedule::parse("", 0.0).is_err());
        assert!(RetrySchedule::parse("1s", 0.9).unwrap_err().contains("jitter"));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }
}
