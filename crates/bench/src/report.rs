//! What a run found: checks against the issue's targets, a readable table and an SVG chart.

use serde_json::{Value, json};

/// Which way a target points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    AtLeast,
    AtMost,
}

/// One measured figure, with its target when it has one.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub target: Option<(Cmp, f64)>,
    /// What the figure is compared with, said in words (a baseline from the same run, Svix, …).
    pub context: String,
}

impl Check {
    pub fn info(
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        context: impl Into<String>,
    ) -> Self {
        Check { name: name.into(), value, unit, target: None, context: context.into() }
    }

    pub fn target(mut self, cmp: Cmp, bound: f64) -> Self {
        self.target = Some((cmp, bound));
        self
    }

    pub fn met(&self) -> Option<bool> {
        self.target.map(|(cmp, bound)| match cmp {
            Cmp::AtLeast => self.value >= bound,
            Cmp::AtMost => self.value <= bound,
        })
    }

    /// How far past the target (> 1) or short of it (< 1): measured/target for "at least",
    /// target/measured for "at most".
    pub fn score(&self) -> Option<f64> {
        self.target.map(|(cmp, bound)| match cmp {
            Cmp::AtLeast => self.value / bound,
            Cmp::AtMost => {
                if self.value <= 0.0 {
                    f64::INFINITY
                } else {
                    bound / self.value
                }
            }
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "value": round(self.value),
            "unit": self.unit,
            "target": self.target.map(|(cmp, bound)| json!({
                "cmp": match cmp { Cmp::AtLeast => ">=", Cmp::AtMost => "<=" },
                "value": bound,
            })),
            "met": self.met(),
            "context": self.context,
        })
    }
}

/// Three significant digits are all these machines can tell apart.
pub fn round(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    let digits = 3 - v.abs().log10().ceil() as i32;
    let factor = 10f64.powi(digits);
    (v * factor).round() / factor
}

fn show(v: f64) -> String {
    let r = round(v);
    if r.abs() >= 1000.0 { format!("{r:.0}") } else { format!("{r}") }
}

/// The table, one line per check.
pub fn table(checks: &[Check]) -> String {
    let mut out = String::new();
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(10).max(10);
    out.push_str(&format!(
        "{:<width$}  {:>12}  {:<8}  {:<12}  {:<4}  {}\n",
        "measure", "value", "unit", "target", "met", "context"
    ));
    for c in checks {
        let target = match c.target {
            Some((Cmp::AtLeast, b)) => format!(">= {}", show(b)),
            Some((Cmp::AtMost, b)) => format!("<= {}", show(b)),
            None => String::new(),
        };
        let met = match c.met() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        out.push_str(&format!(
            "{:<width$}  {:>12}  {:<8}  {:<12}  {:<4}  {}\n",
            c.name,
            show(c.value),
            c.unit,
            target,
            met,
            c.context
        ));
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A horizontal bar chart of every check with a target: the bar is the score (1 = exactly on
/// target, right of the line = better), labelled with the measured value.
pub fn chart(checks: &[Check], title: &str) -> String {
    let rows: Vec<&Check> = checks.iter().filter(|c| c.target.is_some()).collect();
    let (label_w, plot_w, row_h, top) = (330.0, 420.0, 26.0, 56.0);
    let max_score = 4.0;
    let height = top + row_h * rows.len() as f64 + 40.0;
    let width = label_w + plot_w + 190.0;
    let x_of = |score: f64| label_w + plot_w * (score.min(max_score) / max_score);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">{}</text>
<text x="10" y="40" fill="#555">bar = how far past its target each measure is (1 = on target; further right is better; capped at {max_score}×)</text>
"##,
        escape(title)
    );
    for (i, c) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let score = c.score().unwrap_or(0.0);
        let colour = if c.met() == Some(true) { "#2e8b57" } else { "#c0392b" };
        let target = match c.target {
            Some((Cmp::AtLeast, b)) => format!("≥ {}", show(b)),
            Some((Cmp::AtMost, b)) => format!("≤ {}", show(b)),
            None => String::new(),
        };
        svg.push_str(&format!(
            r##"<text x="{}" y="{}" text-anchor="end">{}</text>
<rect x="{label_w}" y="{}" width="{:.1}" height="{}" fill="{colour}"/>
<text x="{:.1}" y="{}">{} {} (target {})</text>
"##,
            label_w - 8.0,
            y + 16.0,
            escape(&c.name),
            y + 4.0,
            (x_of(score) - label_w).max(1.0),
            row_h - 8.0,
            x_of(score) + 6.0,
            y + 16.0,
            show(c.value),
            escape(c.unit),
            escape(&target),
        ));
    }
    let bottom = top + row_h * rows.len() as f64;
    for tick in [0.0, 1.0, 2.0, 3.0, 4.0] {
        let x = x_of(tick);
        let (stroke, dash) =
            if tick == 1.0 { ("#000", "") } else { ("#bbb", r#" stroke-dasharray="3,3""#) };
        svg.push_str(&format!(
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{bottom}" stroke="{stroke}"{dash}/>
<text x="{x}" y="{}" text-anchor="middle" fill="#555">{tick}×</text>
"##,
            top - 4.0,
            bottom + 16.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_point_the_right_way() {
        let fast = Check::info("rps", 200.0, "req/s", "").target(Cmp::AtLeast, 100.0);
        assert_eq!(fast.met(), Some(true));
        assert_eq!(fast.score(), Some(2.0));
        let slow = Check::info("p99", 10.0, "ms", "").target(Cmp::AtMost, 5.0);
        assert_eq!(slow.met(), Some(false));
        assert_eq!(slow.score(), Some(0.5));
        assert_eq!(Check::info("x", 1.0, "", "").met(), None);
    }

    #[test]
    fn rounds_to_three_significant_digits() {
        assert_eq!(round(98_765.0), 98_800.0);
        assert_eq!(round(0.012345), 0.0123);
        assert_eq!(round(2.0), 2.0);
    }

    #[test]
    fn the_chart_draws_one_bar_per_target() {
        let checks = [
            Check::info("a", 1.0, "ms", "").target(Cmp::AtMost, 3.0),
            Check::info("b", 5.0, "x", ""),
            Check::info("c <d>", 1.0, "x", "").target(Cmp::AtLeast, 2.0),
        ];
        let svg = chart(&checks, "t");
        assert_eq!(svg.matches("<rect").count(), 3, "background + 2 bars");
        assert!(svg.contains("c &lt;d&gt;"));
        assert!(svg.contains("#c0392b") && svg.contains("#2e8b57"));
    }
}
