//! What the Lambda functions link: nothing of the local stack or the test side,
//! nothing Lambda never uses. `cargo tree -e normal` of each function package
//! must not name a YAML crate (the SAM template is read by `spendguard-local`,
//! never by a function), the embedded engine, SSO clients or a second TLS or
//! crypto stack.

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
    const NEVER: &[&str] = &[
        "spendguard-local",
        // What Lambda's environment never needs (credentials come from variables).
        "aws-sdk-sso",
        "aws-sdk-ssooidc",
        // The one TLS stack is rustls on ring: no aws-lc, no OpenSSL.
        "aws-lc-rs",
        "aws-lc-sys",
        "native-tls",
        "openssl",
        "openssl-sys",
    ];
    name.contains("yaml") || name.starts_with("dynoxide") || NEVER.contains(&name)
}

/// Crates that must come in one version only (two would be two HTTP/TLS stacks).
const ONE_VERSION: &[&str] = &["hyper", "rustls", "hyper-rustls", "tokio-rustls", "http"];

/// `(name, version)` of every package in `package`'s normal (non-dev,
/// non-build) dependency tree.
fn normal_dependencies(package: &str) -> BTreeSet<(String, String)> {
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
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

#[test]
fn lambda_functions_depend_on_no_yaml_crate_and_no_embedded_engine() {
    let mut problems = Vec::new();
    for package in LAMBDA_PACKAGES {
        let deps = normal_dependencies(package);
        assert!(
            deps.iter().any(|(name, _)| name == package),
            "{package} is a workspace package"
        );
        for (name, version) in deps.iter().filter(|(name, _)| forbidden(name)) {
            problems.push(format!("{package} depends on {name} {version}"));
        }
        for one in ONE_VERSION {
            let versions: Vec<&str> = deps
                .iter()
                .filter(|(name, _)| name == one)
                .map(|(_, version)| version.as_str())
                .collect();
            if versions.len() > 1 {
                problems.push(format!("{package} depends on {one} {versions:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
