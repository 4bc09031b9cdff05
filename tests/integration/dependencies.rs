//! What the Lambda functions link: nothing of the local stack or the test side.
//! `cargo tree -e normal` of each function package must not name a YAML crate
//! (the SAM template is read by `spendguard-local`, never by a function) or the
//! embedded engine.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The Lambda packages (`functions/*`) and the core crate they share.
const LAMBDA_PACKAGES: &[&str] = &[
    "spendguard-core",
    "quota",
    "credits",
    "redemption",
    "usage-ingest",
];

/// Crates no Lambda binary may depend on, by name (`yaml` matches any YAML crate).
fn forbidden(name: &str) -> bool {
    name.contains("yaml") || name.starts_with("dynoxide") || name == "spendguard-local"
}

/// The package names in `package`'s normal (non-dev, non-build) dependency tree.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace");
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["tree", "--locked", "--offline", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}", "-p", package])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn lambda_functions_depend_on_no_yaml_crate_and_no_embedded_engine() {
    let mut problems = Vec::new();
    for package in LAMBDA_PACKAGES {
        let deps = normal_dependencies(package);
        assert!(deps.contains(*package), "{package} is a workspace package");
        for dep in deps.iter().filter(|d| forbidden(d)) {
            problems.push(format!("{package} depends on {dep}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
