//! Section 2: cold start and size, from `make coldstart`'s medians (release
//! builds, stripped, against a Lambda Runtime API stub; scripts/coldstart.sh
//! writes them with COLDSTART_TSV). Targets ("Lean core", item 4) against the
//! SDK hello world: binary ≤ 1.0×, init ≤ 1.05×, RSS at init ≤ 1.1×.

use crate::table::Row;

const TARGETS: [(&str, &str, f64); 3] = [
    ("stripped binary", "MB", 1.0),
    ("init (exec → first next-invocation request)", "ms", 1.05),
    ("peak RSS at init", "MB", 1.1),
];

struct Medians {
    name: String,
    values: [f64; 3],
}

fn read(path: &str) -> Option<Vec<Medians>> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let num = |i: usize| f.get(i)?.parse::<f64>().ok();
            Some(Medians {
                name: f.first()?.to_string(),
                values: [num(1)?, num(2)?, num(3)?],
            })
        })
        .collect()
}

pub fn rows(path: &str) -> Vec<Row> {
    let Some(all) = read(path).filter(|m| m.len() > 2) else {
        return vec![Row::new("2 cold start", "cold starts and sizes")
            .figure(format!("not measured: no {path} (run `make coldstart` with COLDSTART_TSV, as `make bench` does)"))];
    };
    let (bare, sdk) = (&all[0], &all[1]);
    let mut rows = Vec::new();
    for f in &all[2..] {
        for (i, (what, unit, target)) in TARGETS.iter().enumerate() {
            let ratio = f.values[i] / sdk.values[i];
            rows.push(
                Row::new("2 cold start", format!("{}: {what}", f.name))
                    .figure(format!("{:.2} {unit} ({ratio:.2}× SDK hello)", f.values[i]))
                    .baseline(format!(
                        "SDK hello world {:.2} {unit}; bare lambda_runtime {:.2} {unit}",
                        sdk.values[i], bare.values[i]
                    ))
                    .at_most(ratio, *target, format!("≤ {target}× SDK hello")),
            );
        }
    }
    rows
}
