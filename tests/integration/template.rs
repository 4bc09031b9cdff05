//! `infra/template.yaml` against the code it deploys. Fails when
//! - a route a function's code serves is not in the template (or the template
//!   routes something to a function whose code does not serve it),
//! - a DynamoDB action a function's code calls is not allowed to that function
//!   on the table (or its indexes), or a granted action is no longer used,
//! - an environment variable the code reads is not set for a function,
//! - the table's keys, index or TTL attribute differ from the store's,
//! - the HTTP API routes differ from those `docs/openapi.yaml` documents.
//!
//! What the code uses is derived from the source, not from a hand-kept list:
//! [`source`] parses `shared/src` and `functions/*/src` with `syn`, finds every fn, the
//! names each calls, the DynamoDB operations each sends
//! (`client().query()`, ...) and the transaction actions each builds
//! (`Put::builder()`, ...). A function needs what its own crate's fns reach
//! through calls by name: a conservative call graph (two fns of one name are
//! both assumed reached), so a grant can be too much only where names collide.

use spendguard_core::config::{ENV_TABLE, ENV_VARS};
use spendguard_core::store::keys;
use spendguard_local::template::{
    parse_yaml, FunctionSpec, KeySpec, ResourceRef, TableSpec, Template,
};
use spendguard_tests::TestEnv;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Read by every function's telemetry (`tracing_subscriber::EnvFilter`).
const LOG_ENV: &str = "RUST_LOG";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// `functions/<binary>/src`: each function package is named after its binary.
fn crate_src(binary: &str) -> PathBuf {
    repo_root().join("functions").join(binary).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn parse_dir(dir: &Path) -> Vec<source::FnFacts> {
    rust_files(dir)
        .iter()
        .flat_map(|path| {
            let text =
                std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path
                .strip_prefix(repo_root())
                .unwrap_or(path)
                .display()
                .to_string();
            source::analyse(&name, &text)
        })
        .collect()
}

fn deployed_functions(t: &Template) -> Vec<FunctionSpec> {
    let functions = t.functions();
    assert!(!functions.is_empty(), "the template deploys functions");
    functions
}

/// The table the functions reach through `SPENDGUARD_TABLE`.
fn spendguard_table(t: &Template) -> TableSpec {
    t.tables()
        .into_iter()
        .find(|table| table.env_var.as_deref() == Some(ENV_TABLE))
        .unwrap_or_else(|| panic!("no table of the template is passed as {ENV_TABLE}"))
}

#[test]
fn every_function_package_is_deployed_and_every_deployed_function_has_a_package() {
    let t = Template::bundled();
    let deployed: BTreeSet<String> = deployed_functions(&t)
        .into_iter()
        .map(|f| f.binary)
        .collect();
    let packages: BTreeSet<String> = std::fs::read_dir(repo_root().join("functions"))
        .expect("functions/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("Cargo.toml").exists())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(deployed, packages, "template functions vs functions/*");
}

#[test]
fn routes_the_code_serves_are_exactly_the_template_routes() {
    let t = Template::bundled();
    let routes = t.routes();
    let mut problems = Vec::new();
    for f in deployed_functions(&t) {
        let in_code: BTreeSet<String> = parse_dir(&crate_src(&f.binary))
            .into_iter()
            .flat_map(|facts| facts.route_keys)
            .collect();
        let in_template: BTreeSet<String> = routes
            .iter()
            .filter(|r| r.function == f.binary)
            .map(|r| r.route_key())
            .collect();
        for key in in_code.difference(&in_template) {
            let elsewhere = routes.iter().find(|r| r.route_key() == *key);
            problems.push(match elsewhere {
                Some(r) => format!("{key}: served by {} but routed to {}", f.binary, r.function),
                None => format!(
                    "{key}: served by {} but missing from the template",
                    f.binary
                ),
            });
        }
        for key in in_template.difference(&in_code) {
            problems.push(format!(
                "{key}: routed to {} whose code does not match it",
                f.binary
            ));
        }
    }
    assert!(problems.is_empty(), "routes:\n  {}", problems.join("\n  "));
}

/// The project's contract document names the same routes as the template.
#[test]
fn template_routes_are_the_documented_http_api() {
    let path = repo_root().join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = parse_yaml(&text).expect("docs/openapi.yaml is YAML");
    let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
    let documented: BTreeSet<String> = doc["paths"]
        .as_mapping()
        .expect("openapi paths")
        .iter()
        .filter_map(|(p, item)| Some((p.as_str()?, item.as_mapping()?)))
        // The Lambda Invoke API is the local stack's stand-in for the Lambda
        // service, not a route of the HTTP API.
        .filter(|(p, _)| !p.starts_with("/2015-03-31/"))
        .flat_map(|(p, item)| {
            item.keys()
                .filter_map(|m| m.as_str())
                .filter(|m| methods.contains(m))
                .map(move |m| format!("{} {p}", m.to_ascii_uppercase()))
        })
        .collect();
    let deployed: BTreeSet<String> = Template::bundled()
        .routes()
        .iter()
        .map(|r| r.route_key())
        .collect();
    let undeployed: Vec<_> = documented.difference(&deployed).collect();
    let undocumented: Vec<_> = deployed.difference(&documented).collect();
    assert!(
        undeployed.is_empty() && undocumented.is_empty(),
        "documented but not in the template: {undeployed:?}; in the template but not documented: {undocumented:?}"
    );
}

/// The same, at run time: every template route, sent through the gateway to
/// the real function, reaches a handler (anything but `route_not_found`).
#[tokio::test]
async fn every_template_route_reaches_a_handler() {
    let env = TestEnv::new().await;
    let t = Template::bundled();
    let mut unserved = Vec::new();
    for route in t.routes() {
        let path: Vec<String> = route
            .path
            .split('/')
            .map(|segment| match segment.strip_prefix('{') {
                Some(param) => sample_param(param.trim_end_matches('}')).to_string(),
                None => segment.to_string(),
            })
            .collect();
        let res = env
            .request(&route.method, &path.join("/"))
            .as_admin()
            .send()
            .await;
        if res.error_code() == Some("route_not_found") {
            unserved.push(format!("{} ({})", route.route_key(), route.function));
        }
    }
    assert!(unserved.is_empty(), "not served: {unserved:?}");
}

fn sample_param(name: &str) -> &'static str {
    match name {
        "platform" => "openai",
        "source" => "email",
        "code" => "SAMPLECODE",
        _ => "sample-user",
    }
}

#[test]
fn every_function_gets_the_environment_the_code_reads() {
    let t = Template::bundled();
    let mut missing = Vec::new();
    for f in deployed_functions(&t) {
        for var in ENV_VARS.iter().copied().chain([LOG_ENV]) {
            if !f.env_vars.iter().any(|v| v == var) {
                missing.push(format!("{}: {var}", f.binary));
            }
        }
    }
    assert!(missing.is_empty(), "environment missing: {missing:?}");
}

#[test]
fn table_matches_the_store_key_design() {
    let table = spendguard_table(&Template::bundled());
    let keys_of = |specs: &[KeySpec]| -> Vec<(String, String)> {
        specs
            .iter()
            .map(|k| (k.attribute.clone(), k.key_type.clone()))
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        keys_of(&table.keys),
        [pair(keys::PK, "HASH"), pair(keys::SK, "RANGE")]
    );
    let gsi = table
        .indexes
        .iter()
        .find(|i| i.name == keys::GSI1)
        .unwrap_or_else(|| panic!("index {} missing", keys::GSI1));
    assert_eq!(
        keys_of(&gsi.keys),
        [pair(keys::GSI1_PK, "HASH"), pair(keys::GSI1_SK, "RANGE")]
    );
    assert_eq!(table.ttl_attribute.as_deref(), Some(keys::TTL));
    for key in [keys::PK, keys::SK, keys::GSI1_PK, keys::GSI1_SK] {
        assert!(
            table
                .attributes
                .contains(&(key.to_string(), "S".to_string())),
            "{key} is a string attribute"
        );
    }
}

/// What one function needs on the table, with the call chain that shows why.
fn table_needs(binary: &str, shared: &[source::FnFacts]) -> BTreeMap<source::Need, Vec<String>> {
    let own = parse_dir(&crate_src(binary));
    let graph = source::Graph::new(own.iter().chain(shared));
    graph.needs_from(own.iter().map(|f| f.name.clone()))
}

fn table_resource(table: &TableSpec, on_index: bool) -> Vec<ResourceRef> {
    if on_index {
        table
            .indexes
            .iter()
            .map(|i| ResourceRef::arn(&table.logical_id, &format!("/index/{}", i.name)))
            .collect()
    } else {
        vec![ResourceRef::arn(&table.logical_id, "")]
    }
}

#[test]
fn every_function_may_do_exactly_the_dynamodb_actions_its_code_does() {
    let t = Template::bundled();
    let table = spendguard_table(&t);
    let shared = parse_dir(&repo_root().join("shared/src"));
    let mut missing = Vec::new();
    let mut unused = Vec::new();
    for f in deployed_functions(&t) {
        let needs = table_needs(&f.binary, &shared);
        for (need, chain) in &needs {
            // The derivation, for review (`-- --nocapture`).
            println!(
                "{}: {}{} via {}",
                f.binary,
                need.action,
                if need.on_index { " (index)" } else { "" },
                chain.join(" -> ")
            );
            let Some(action) = need.iam_action() else {
                missing.push(format!(
                    "{}: calls {} ({}); this test cannot tell its IAM actions: extend source::iam_action",
                    f.binary,
                    need.action,
                    chain.join(" -> ")
                ));
                continue;
            };
            for resource in table_resource(&table, need.on_index) {
                if !f.allows(&action, &resource) {
                    missing.push(format!(
                        "{}: {action} on {resource} (used via {})",
                        f.binary,
                        chain.join(" -> ")
                    ));
                }
            }
        }
        // Least privilege: every DynamoDB grant is one the code uses.
        for (action, resource) in f.allowed_pairs() {
            if !action.starts_with("dynamodb:") {
                continue;
            }
            // Stream reads: what a stream event source mapping does on the
            // function's behalf, not its code (the alerts suite checks them).
            if resource == ResourceRef::Other(format!("GetAtt {}.StreamArn", table.logical_id))
                || action == "dynamodb:liststreams"
            {
                continue;
            }
            // Only grants on the table itself count as used (`*` never does).
            let on_table = matches!(&resource,
                ResourceRef::Arn { logical_id, .. } if *logical_id == table.logical_id);
            let used = on_table
                && needs.keys().any(|need| {
                    need.iam_action()
                        .is_some_and(|a| a.eq_ignore_ascii_case(&action))
                        && table_resource(&table, need.on_index)
                            .iter()
                            .any(|r| resource.covers(r))
                });
            if !used {
                unused.push(format!("{}: {action} on {resource}", f.binary));
            }
        }
    }
    assert!(
        missing.is_empty() && unused.is_empty(),
        "infra/template.yaml, Policies of the functions:\n\
         IAM missing (the code calls it):\n  {}\n\
         IAM granted but unused by the code (remove it):\n  {}",
        missing.join("\n  "),
        unused.join("\n  ")
    );
}

/// The derivation finds what we know the code does (guards the scanner itself).
#[test]
fn the_source_scan_sees_known_store_calls() {
    let shared = parse_dir(&repo_root().join("shared/src"));
    let quota = table_needs("quota", &shared);
    assert!(
        quota.keys().any(|n| n.action == "Query" && !n.on_index),
        "GET /v1/me/quotas queries the user's quota items: {quota:?}"
    );
    let graph = source::Graph::new(shared.iter());
    let audit = graph.needs_from(["list_audit".to_string()]);
    assert!(audit.keys().any(|n| n.action == "Query" && n.on_index));
    assert!(audit.keys().any(|n| n.action == "Query" && !n.on_index));
}

mod source;
