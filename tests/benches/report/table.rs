//! The report: one Markdown table, every row with its figure, baseline,
//! target and whether the target is met. A missed target is reported as
//! missed; rows without a documented target say so.

use std::fmt::Write;

pub enum Verdict {
    Met,
    Missed,
    /// No document sets a target for this figure.
    Report,
}

pub struct Row {
    pub section: &'static str,
    pub measure: String,
    pub figure: String,
    pub baseline: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn new(section: &'static str, measure: impl Into<String>) -> Self {
        Self {
            section,
            measure: measure.into(),
            figure: String::new(),
            baseline: "—".into(),
            target: "—".into(),
            verdict: Verdict::Report,
        }
    }

    pub fn figure(mut self, figure: impl Into<String>) -> Self {
        self.figure = figure.into();
        self
    }

    pub fn baseline(mut self, baseline: impl Into<String>) -> Self {
        self.baseline = baseline.into();
        self
    }

    /// Target `value ≤ limit` (text says how it reads).
    pub fn at_most(mut self, value: f64, limit: f64, text: impl Into<String>) -> Self {
        self.target = text.into();
        self.verdict = verdict(value <= limit + 1e-9);
        self
    }

    /// Target `value ≥ floor`.
    pub fn at_least(mut self, value: f64, floor: f64, text: impl Into<String>) -> Self {
        self.target = text.into();
        self.verdict = verdict(value >= floor);
        self
    }
}

fn verdict(met: bool) -> Verdict {
    if met {
        Verdict::Met
    } else {
        Verdict::Missed
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The table, with the header lines and notes around it.
pub fn render(header: &[String], rows: &[Row], notes: &[String]) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
    out.push_str("| # | measure | figure | baseline | target | result |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for row in rows {
        let result = match row.verdict {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::Report => "no target",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.section,
            cell(&row.measure),
            cell(&row.figure),
            cell(&row.baseline),
            cell(&row.target),
            result
        );
    }
    out.push('\n');
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
    out
}

/// Thousands separators for a count or rate.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A dollar figure with sensible precision.
pub fn dollars(value: f64) -> String {
    if value >= 100.0 {
        format!("${}", thousands(value))
    } else if value >= 1.0 {
        format!("${value:.2}")
    } else {
        format!("${value:.4}")
    }
}
