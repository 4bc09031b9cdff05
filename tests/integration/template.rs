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
//! [`source`] tokenises `shared/src` and `functions/*/src`, finds every fn, the
//! names each calls, the DynamoDB operations each sends
//! (`client().query()`, ...) and the transaction actions each builds
//! (`Put::builder()`, ...). A function needs what its own crate's fns reach
//! through calls by name: a conservative call graph (two fns of one name are
//! both assumed reached), so a grant can be too much only where names collide.

use spendguard_core::config::{ENV_TABLE, ENV_VARS};
use spendguard_core::store::keys;
use spendguard_core::template::{parse_yaml, FunctionSpec, ResourceRef, TableSpec, Template};
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
    let keys_of = |specs: &[spendguard_core::template::KeySpec]| -> Vec<(String, String)> {
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

/// A small Rust scanner: enough of the lexer to skip comments, strings and
/// char literals, and enough structure to find fn bodies.
mod source {
    use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Tok {
        Ident(String),
        Str(String),
        Punct(char),
        Other,
    }

    pub fn tokenize(src: &str) -> Vec<Tok> {
        let c: Vec<char> = src.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < c.len() {
            let ch = c[i];
            if ch.is_whitespace() {
                i += 1;
            } else if ch == '/' && c.get(i + 1) == Some(&'/') {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            } else if ch == '/' && c.get(i + 1) == Some(&'*') {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            } else if ch == '"' {
                let (text, next) = quoted(&c, i + 1);
                out.push(Tok::Str(text));
                i = next;
            } else if ch == '\'' {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
                if c.get(i + 1) == Some(&'\\') {
                    i += 3; // the quote, the backslash and the escaped char
                    while i < c.len() && c[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                    out.push(Tok::Other);
                } else if c.get(i + 2) == Some(&'\'') {
                    i += 3;
                    out.push(Tok::Other);
                } else {
                    i += 1;
                    while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                        i += 1;
                    }
                }
            } else if ch.is_alphabetic() || ch == '_' {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let raw = matches!(word.as_str(), "r" | "br" | "cr")
                    && matches!(c.get(i), Some('"') | Some('#'));
                if raw {
                    let hashes = c[i..].iter().take_while(|x| **x == '#').count();
                    if c.get(i + hashes) == Some(&'"') {
                        let body = i + hashes + 1;
                        let mut j = body;
                        while j < c.len()
                            && !(c[j] == '"'
                                && c[j + 1..]
                                    .iter()
                                    .take(hashes)
                                    .filter(|x| **x == '#')
                                    .count()
                                    == hashes)
                        {
                            j += 1;
                        }
                        out.push(Tok::Str(c[body..j.min(c.len())].iter().collect()));
                        i = j + 1 + hashes;
                        continue;
                    }
                }
                if matches!(word.as_str(), "b" | "c") && c.get(i) == Some(&'"') {
                    let (text, next) = quoted(&c, i + 1);
                    out.push(Tok::Str(text));
                    i = next;
                    continue;
                }
                out.push(Tok::Ident(word));
            } else if ch.is_ascii_digit() {
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Other);
            } else {
                out.push(Tok::Punct(ch));
                i += 1;
            }
        }
        out
    }

    /// The content of a `"..."` literal starting after its quote; escapes kept
    /// verbatim except `\"` and `\\`.
    fn quoted(c: &[char], mut i: usize) -> (String, usize) {
        let mut text = String::new();
        while i < c.len() && c[i] != '"' {
            if c[i] == '\\' && i + 1 < c.len() {
                if !matches!(c[i + 1], '"' | '\\') {
                    text.push('\\');
                }
                text.push(c[i + 1]);
                i += 2;
            } else {
                text.push(c[i]);
                i += 1;
            }
        }
        (text, i + 1)
    }

    fn is(t: Option<&Tok>, ch: char) -> bool {
        t == Some(&Tok::Punct(ch))
    }

    fn ident(t: Option<&Tok>) -> Option<&str> {
        match t {
            Some(Tok::Ident(s)) => Some(s),
            _ => None,
        }
    }

    /// Index after the brace group opening at `open` (`t[open]` is `{`).
    fn skip_group(t: &[Tok], open: usize) -> usize {
        let mut depth = 0usize;
        let mut i = open;
        while i < t.len() {
            match t[i] {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        t.len()
    }

    /// Index after the item starting at `i`: up to its `;` or its `{...}` body.
    fn skip_item(t: &[Tok], mut i: usize) -> usize {
        let mut parens = 0i32;
        while i < t.len() {
            match t[i] {
                Tok::Punct('(') | Tok::Punct('[') => parens += 1,
                Tok::Punct(')') | Tok::Punct(']') => parens -= 1,
                Tok::Punct(';') if parens == 0 => return i + 1,
                Tok::Punct('{') if parens == 0 => return skip_group(t, i),
                _ => {}
            }
            i += 1;
        }
        t.len()
    }

    /// Drops every item under `#[cfg(test)]` (unit-test modules and helpers).
    pub fn without_tests(t: Vec<Tok>) -> Vec<Tok> {
        let pattern = [
            Tok::Punct('#'),
            Tok::Punct('['),
            Tok::Ident("cfg".into()),
            Tok::Punct('('),
            Tok::Ident("test".into()),
            Tok::Punct(')'),
            Tok::Punct(']'),
        ];
        let mut out = Vec::with_capacity(t.len());
        let mut i = 0;
        while i < t.len() {
            if t[i..].starts_with(&pattern) {
                let mut j = i + pattern.len();
                // Further attributes of the same item.
                while is(t.get(j), '#') && is(t.get(j + 1), '[') {
                    let mut depth = 0;
                    j += 1;
                    while j < t.len() {
                        match t[j] {
                            Tok::Punct('[') => depth += 1,
                            Tok::Punct(']') => {
                                depth -= 1;
                                if depth == 0 {
                                    j += 1;
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                }
                i = skip_item(&t, j);
            } else {
                out.push(t[i].clone());
                i += 1;
            }
        }
        out
    }

    /// A DynamoDB operation (or transaction action) a fn sends.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Need {
        /// The operation in IAM spelling (`Query`, `PutItem`, ...).
        pub action: String,
        /// On a secondary index rather than the table.
        pub on_index: bool,
    }

    impl Need {
        /// `dynamodb:<Action>`, or `None` where the operation's actions depend on
        /// its arguments (PartiQL), which this scan cannot tell.
        pub fn iam_action(&self) -> Option<String> {
            match self.action.as_str() {
                "ExecuteStatement" | "BatchExecuteStatement" | "ExecuteTransaction" => None,
                other => Some(format!("dynamodb:{other}")),
            }
        }
    }

    /// aws-sdk-dynamodb client operations. Transactions need no permission of
    /// their own: the actions inside them do (see `BUILDERS`).
    const OPERATIONS: &[&str] = &[
        "batch_execute_statement",
        "batch_get_item",
        "batch_write_item",
        "create_backup",
        "create_global_table",
        "create_table",
        "delete_backup",
        "delete_item",
        "delete_resource_policy",
        "delete_table",
        "describe_backup",
        "describe_continuous_backups",
        "describe_contributor_insights",
        "describe_endpoints",
        "describe_export",
        "describe_global_table",
        "describe_global_table_settings",
        "describe_import",
        "describe_kinesis_streaming_destination",
        "describe_limits",
        "describe_table",
        "describe_table_replica_auto_scaling",
        "describe_time_to_live",
        "disable_kinesis_streaming_destination",
        "enable_kinesis_streaming_destination",
        "execute_statement",
        "execute_transaction",
        "export_table_to_point_in_time",
        "get_item",
        "get_resource_policy",
        "import_table",
        "list_backups",
        "list_contributor_insights",
        "list_exports",
        "list_global_tables",
        "list_imports",
        "list_tables",
        "list_tags_of_resource",
        "put_item",
        "put_resource_policy",
        "query",
        "restore_table_from_backup",
        "restore_table_to_point_in_time",
        "scan",
        "tag_resource",
        "transact_get_items",
        "transact_write_items",
        "untag_resource",
        "update_continuous_backups",
        "update_contributor_insights",
        "update_global_table",
        "update_global_table_settings",
        "update_item",
        "update_kinesis_streaming_destination",
        "update_table",
        "update_table_replica_auto_scaling",
        "update_time_to_live",
    ];

    /// Transaction action builders (`aws_sdk_dynamodb::types`) and the
    /// permission each needs.
    const BUILDERS: &[(&str, &str)] = &[
        ("Put", "PutItem"),
        ("Update", "UpdateItem"),
        ("Delete", "DeleteItem"),
        ("ConditionCheck", "ConditionCheckItem"),
        ("Get", "GetItem"),
    ];

    fn pascal(op: &str) -> String {
        op.split('_')
            .map(|w| {
                let mut cs = w.chars();
                cs.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// One fn of the source: its name, the names it calls or refers to by
    /// path, and the DynamoDB requests it makes itself.
    #[derive(Clone, Debug, Default)]
    pub struct FnFacts {
        pub file: String,
        pub name: String,
        pub calls: BTreeSet<String>,
        pub needs: BTreeSet<Need>,
        /// `"METHOD /path"` string literals (route keys a handler matches).
        pub route_keys: BTreeSet<String>,
    }

    fn is_route_key(s: &str) -> bool {
        let Some((method, path)) = s.split_once(' ') else {
            return false;
        };
        matches!(
            method,
            "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" | "ANY"
        ) && path.starts_with('/')
            && !path.contains(char::is_whitespace)
    }

    fn facts_of(file: &str, name: &str, t: &[Tok]) -> FnFacts {
        let mut f = FnFacts {
            file: file.to_string(),
            name: name.to_string(),
            ..FnFacts::default()
        };
        let mut names_index = false;
        for k in 0..t.len() {
            let Tok::Ident(word) = &t[k] else {
                if let Tok::Str(s) = &t[k] {
                    if is_route_key(s) {
                        f.route_keys.insert(s.clone());
                    }
                }
                continue;
            };
            let next = t.get(k + 1);
            let called = is(next, '(') || (is(next, ':') && is(t.get(k + 2), ':'));
            let by_path = k >= 2 && is(t.get(k - 1), ':') && is(t.get(k - 2), ':');
            if called || by_path {
                f.calls.insert(word.clone());
            }
            if !is(next, '(') {
                continue;
            }
            let after_dot = k >= 1 && is(t.get(k - 1), '.');
            // `client.op(` or `client().op(`
            let on_client = after_dot
                && k >= 2
                && (ident(t.get(k - 2)) == Some("client")
                    || (k >= 4
                        && is(t.get(k - 2), ')')
                        && is(t.get(k - 3), '(')
                        && ident(t.get(k - 4)) == Some("client")));
            if on_client && OPERATIONS.contains(&word.as_str()) {
                if !word.starts_with("transact_") {
                    f.needs.insert(Need {
                        action: pascal(word),
                        on_index: false,
                    });
                }
            } else if after_dot && (word == "index_name" || word == "set_index_name") {
                names_index = true;
            } else if word == "builder" && by_path && k >= 3 {
                if let Some((_, action)) = BUILDERS
                    .iter()
                    .find(|(ty, _)| ident(t.get(k - 3)) == Some(*ty))
                {
                    f.needs.insert(Need {
                        action: action.to_string(),
                        on_index: false,
                    });
                }
            }
        }
        // A Query or Scan in a fn that names an index may target the index
        // (and, built conditionally, the table): both are needed.
        if names_index {
            let on_index: Vec<Need> = f
                .needs
                .iter()
                .filter(|n| n.action == "Query" || n.action == "Scan")
                .map(|n| Need {
                    action: n.action.clone(),
                    on_index: true,
                })
                .collect();
            f.needs.extend(on_index);
        }
        f
    }

    /// Every fn of one file (nested fns are part of their parent too).
    pub fn analyse(file: &str, text: &str) -> Vec<FnFacts> {
        let t = without_tests(tokenize(text));
        let mut out = Vec::new();
        let mut top_level_routes = BTreeSet::new();
        for (i, tok) in t.iter().enumerate() {
            if let Tok::Str(s) = tok {
                if is_route_key(s) {
                    top_level_routes.insert(s.clone());
                }
            }
            if *tok != Tok::Ident("fn".into()) {
                continue;
            }
            let Some(name) = ident(t.get(i + 1)) else {
                continue; // `fn(..)` pointer type
            };
            // The body: the first `{` outside parentheses; a `;` first means a
            // declaration without one.
            let mut j = i + 2;
            let mut parens = 0i32;
            let body = loop {
                match t.get(j) {
                    None => break None,
                    Some(Tok::Punct('(')) | Some(Tok::Punct('[')) => parens += 1,
                    Some(Tok::Punct(')')) | Some(Tok::Punct(']')) => parens -= 1,
                    Some(Tok::Punct(';')) if parens == 0 => break None,
                    Some(Tok::Punct('{')) if parens == 0 => break Some(j),
                    _ => {}
                }
                j += 1;
            };
            let tokens = match body {
                Some(open) => &t[open..skip_group(&t, open)],
                None => &t[i..i],
            };
            out.push(facts_of(file, name, tokens));
        }
        // Route keys outside any fn (e.g. in a const) still count for the file.
        if let Some(first) = out.first_mut() {
            first.route_keys.extend(top_level_routes);
        } else if !top_level_routes.is_empty() {
            out.push(FnFacts {
                file: file.to_string(),
                name: String::new(),
                route_keys: top_level_routes,
                ..FnFacts::default()
            });
        }
        out
    }

    /// Fns by name (several fns may share one).
    pub struct Graph<'a> {
        by_name: HashMap<&'a str, Vec<&'a FnFacts>>,
    }

    impl<'a> Graph<'a> {
        pub fn new(fns: impl IntoIterator<Item = &'a FnFacts>) -> Self {
            let mut by_name: HashMap<&str, Vec<&FnFacts>> = HashMap::new();
            for f in fns {
                by_name.entry(f.name.as_str()).or_default().push(f);
            }
            Self { by_name }
        }

        /// Every need reachable from `roots`, each with one call chain to it.
        pub fn needs_from(
            &self,
            roots: impl IntoIterator<Item = String>,
        ) -> BTreeMap<Need, Vec<String>> {
            let mut parent: HashMap<String, Option<String>> = HashMap::new();
            let mut queue = VecDeque::new();
            for root in roots {
                if !parent.contains_key(&root) {
                    parent.insert(root.clone(), None);
                    queue.push_back(root);
                }
            }
            let mut needs: BTreeMap<Need, Vec<String>> = BTreeMap::new();
            while let Some(name) = queue.pop_front() {
                for f in self.by_name.get(name.as_str()).into_iter().flatten() {
                    for need in &f.needs {
                        needs.entry(need.clone()).or_insert_with(|| {
                            let mut chain = vec![format!("{} ({})", f.name, f.file)];
                            let mut at = parent.get(&name).cloned().flatten();
                            while let Some(p) = at {
                                chain.push(p.clone());
                                at = parent.get(&p).cloned().flatten();
                            }
                            chain.reverse();
                            chain
                        });
                    }
                    for call in &f.calls {
                        if !parent.contains_key(call) && self.by_name.contains_key(call.as_str()) {
                            parent.insert(call.clone(), Some(name.clone()));
                            queue.push_back(call.clone());
                        }
                    }
                }
            }
            needs
        }
    }

    #[test]
    fn lexer_skips_comments_strings_chars_and_test_modules() {
        let src = r####"
            // fn in_comment() { client().scan() }
            /* fn block() { /* nested */ client().scan() } */
            fn real<'a>(x: &'a str) -> impl Fn(u8) -> u8 + 'a {
                let s = "fn not_a_fn() { client().scan() }";
                let r = r#"client().delete_item("x")"#;
                let q = '"'; let b = b'{'; let e = '\'';
                let _ = self.store.client().query().index_name(GSI1).send();
                let put = Put::builder().build();
                helper(s, r);
                match key { "GET /v1/things/{id}" => (), _ => () }
                |y| y
            }
            #[cfg(test)]
            #[allow(unused)]
            mod tests { fn hidden() { client.delete_item() } }
            trait T { fn declared(&self) -> u8; }
            fn after() { let client = c(); client.get_item(); }
            fn maybe_index(&self) { self.client.scan().set_index_name(i).send() }
        "####;
        let fns = analyse("x.rs", src);
        let names: Vec<&str> = fns.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["real", "declared", "after", "maybe_index"]);
        let real = &fns[0];
        let actions: BTreeSet<(String, bool)> = real
            .needs
            .iter()
            .map(|n| (n.action.clone(), n.on_index))
            .collect();
        let expected: BTreeSet<(String, bool)> = [
            ("Query".to_string(), false),
            ("Query".to_string(), true),
            ("PutItem".to_string(), false),
        ]
        .into_iter()
        .collect();
        assert_eq!(actions, expected);
        assert!(real.calls.contains("helper"));
        assert!(real.route_keys.contains("GET /v1/things/{id}"));
        assert!(fns[1].needs.is_empty() && fns[1].calls.is_empty());
        assert_eq!(
            fns[2]
                .needs
                .iter()
                .map(|n| n.action.as_str())
                .collect::<Vec<_>>(),
            ["GetItem"]
        );
        let scans: Vec<bool> = fns[3].needs.iter().map(|n| n.on_index).collect();
        assert_eq!(scans, [false, true], "Scan on the table and on the index");
    }

    #[test]
    fn needs_follow_calls_by_name_with_a_chain() {
        let handler = analyse(
            "functions/f/src/lib.rs",
            "fn handle() { deps.store.load(); }",
        );
        let store = analyse(
            "shared/src/store/x.rs",
            "fn load(&self) { self.inner() } fn inner(&self) { self.client().get_item(); } \
             fn unrelated(&self) { self.client().scan(); }",
        );
        let graph = Graph::new(handler.iter().chain(&store));
        let needs = graph.needs_from(["handle".to_string()]);
        let get = Need {
            action: "GetItem".into(),
            on_index: false,
        };
        assert_eq!(needs.keys().collect::<Vec<_>>(), [&get]);
        assert_eq!(
            needs[&get],
            ["handle", "load", "inner (shared/src/store/x.rs)"]
        );
    }
}
