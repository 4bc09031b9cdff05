//! Section 2: cold start and size, from `make coldstart`'s medians (release
//! builds, stripped, against a Lambda Runtime API stub; scripts/coldstart.sh
//! writes them with COLDSTART_TSV). Targets ("Lean core", item 4) against the
//! SDK hello world: binary ≤ 1.0×, init ≤ 1.05×, RSS at init ≤ 1.1×. The
//! first invocation and the peak RSS after it have none.

use crate::table::Row;

/// Per column of the TSV after the name: what, unit, target (× SDK hello).
const FIGURES: [(&str, &str, Option<f64>); 5] = [
    ("stripped binary", "MB", Some(1.0)),
    (
        "init (exec → first next-invocation request)",
        "ms",
        Some(1.05),
    ),
    ("peak RSS at init", "MB", Some(1.1)),
    (
        "first invocation (event handed out → answer; DynamoDB stubbed)",
        "ms",
        None,
    ),
    ("peak RSS after the first invocation", "MB", None),
];

struct Medians {
    name: String,
    values: [f64; 5],
    /// First invocations that answered with an error.
    failed: u64,
}

fn read(path: &str) -> Option<Vec<Medians>> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let num = |i: usize| f.get(i)?.parse::<f64>().ok();
            Some(Medians {
                name: f.first()?.to_string(),
                values: [num(1)?, num(2)?, num(3)?, num(4)?, num(5)?],
                failed: f.get(6)?.parse().ok()?,
            })
        })
        .collect()
}

pub fn rows(path: &str) -> Vec<Row> {
    let Some(all) = read(path).filter(|m| m.len() > 2) else {
        return vec![Row::new("2 cold start", "cold starts and sizes")
            .figure(format!("not measured: no {path} of the current format (run `make coldstart` with COLDSTART_TSV, as `make bench` does)"))];
    };
    let (bare, sdk) = (&all[0], &all[1]);
    let mut rows = Vec::new();
    for f in &all[2..] {
        for (i, (what, unit, target)) in FIGURES.iter().enumerate() {
            let ratio = f.values[i] / sdk.values[i];
            let mut figure = format!("{:.2} {unit} ({ratio:.2}× SDK hello)", f.values[i]);
            if i == 3 && f.failed > 0 {
                figure.push_str(&format!("; {} answered with an error", f.failed));
            }
            let row = Row::new("2 cold start", format!("{}: {what}", f.name))
                .figure(figure)
                .baseline(format!(
                    "SDK hello world {:.2} {unit}; bare lambda_runtime {:.2} {unit}",
                    sdk.values[i], bare.values[i]
                ));
            rows.push(match target {
                Some(target) => row.at_most(ratio, *target, format!("≤ {target}× SDK hello")),
                None => row,
            });
        }
    }
    rows
}
