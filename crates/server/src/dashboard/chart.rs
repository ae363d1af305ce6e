//! The deliveries page's chart: the last 24 hours of attempts as an SVG drawn on the server (no
//! script, no external library). Only numbers go into it, so it needs no escaping.

use std::fmt::Write as _;

use sipsim_core::store::AttemptBucket;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 150.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 20.0;
const LEFT: f64 = 34.0;

/// One bar per bucket from `start_ms` on (`count` of them, `bucket_ms` wide): succeeded attempts in
/// green under failed ones in red, and the mean latency as a blue line on its own scale.
pub fn attempts_svg(
    buckets: &[AttemptBucket],
    start_ms: i64,
    bucket_ms: i64,
    count: usize,
) -> String {
    let mut slots = vec![None; count];
    for b in buckets {
        let i = (b.start_ms - start_ms).div_euclid(bucket_ms.max(1));
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| slots.get_mut(i)) {
            *slot = Some(*b);
        }
    }
    let most = slots.iter().flatten().map(|b| b.attempts).max().unwrap_or(0).max(1) as f64;
    let slowest = slots.iter().flatten().map(|b| b.mean_ms).max().unwrap_or(0).max(1) as f64;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = (WIDTH - LEFT) / count.max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="Attempts per hour over the last 24 hours, and their mean latency" font-family="system-ui, sans-serif" font-size="10">"##
    );
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{y}" x2="{WIDTH}" y2="{y}" stroke="#dde2ea"/><text x="2" y="{t}" fill="#5b6475">{most}</text><text x="2" y="{y}" fill="#5b6475">0</text>"##,
        y = HEIGHT - BOTTOM,
        t = TOP + 4.0,
        most = most as u64,
    );
    let mut line = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let x = LEFT + i as f64 * step;
        if let Some(b) = slot {
            let failed = b.attempts.saturating_sub(b.succeeded) as f64;
            let ok_h = b.succeeded as f64 / most * plot_h;
            let bad_h = failed / most * plot_h;
            let base = HEIGHT - BOTTOM;
            let _ = write!(
                svg,
                r##"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{ok_h:.1}" fill="#1c7c45"/><rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{bad_h:.1}" fill="#b3261e"/>"##,
                base - ok_h,
                base - ok_h - bad_h,
                w = step * 0.8,
            );
            line.push(format!(
                "{:.1},{:.1}",
                x + step * 0.4,
                HEIGHT - BOTTOM - b.mean_ms as f64 / slowest * plot_h
            ));
        }
    }
    if !line.is_empty() {
        let _ = write!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="#2455d6" stroke-width="1.5"/><text x="{}" y="12" fill="#2455d6" text-anchor="end">mean latency, max {} ms</text>"##,
            line.join(" "),
            WIDTH - 2.0,
            slowest as i64
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="{}" fill="#5b6475">24 h ago</text><text x="{}" y="{}" fill="#5b6475" text-anchor="end">now</text></svg>"##,
        HEIGHT - 4.0,
        WIDTH - 2.0,
        HEIGHT - 4.0
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_bar_pair_per_filled_bucket_and_a_latency_line() {
        let hour = 3_600_000;
        let buckets = [
            AttemptBucket { start_ms: 0, attempts: 4, succeeded: 3, mean_ms: 20, max_ms: 50 },
            AttemptBucket {
                start_ms: 5 * hour,
                attempts: 2,
                succeeded: 0,
                mean_ms: 2000,
                max_ms: 2000,
            },
            // Outside the window: ignored.
            AttemptBucket { start_ms: 99 * hour, attempts: 9, succeeded: 9, mean_ms: 1, max_ms: 1 },
        ];
        let svg = attempts_svg(&buckets, 0, hour, 24);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(svg.contains("max 2000 ms"));
        assert!(svg.contains(">4</text>"), "the scale tops at the busiest hour");
        let empty = attempts_svg(&[], 0, hour, 24);
        assert!(!empty.contains("<rect") && !empty.contains("polyline"));
    }
}
