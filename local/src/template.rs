//! Reads `infra/template.yaml`, the one source of truth for tables and routes:
//! the local stack and the tests create tables and route requests from it, so
//! nothing can drift from what AWS deploys.

pub use serde_yaml_ng::Value;

/// Parses any YAML document (tests compare `docs/openapi.yaml` with the template).
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    serde_yaml_ng::from_str(text).map_err(|e| format!("yaml: {e}"))
}

/// The SAM template, compiled in.
pub const TEMPLATE_YAML: &str = include_str!("../../infra/template.yaml");

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub attribute: String,
    /// `HASH` or `RANGE`.
    pub key_type: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    pub keys: Vec<KeySpec>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSpec {
    pub logical_id: String,
    /// The function environment variable whose value is `!Ref` of this table.
    pub env_var: Option<String>,
    /// `(name, S|N|B)`.
    pub attributes: Vec<(String, String)>,
    pub keys: Vec<KeySpec>,
    pub indexes: Vec<IndexSpec>,
    pub ttl_attribute: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: String,
    /// `/v1/admin/users/{user_id}/quotas`.
    pub path: String,
    /// The function's binary name (its Lambda name locally).
    pub function: String,
}

impl RouteSpec {
    /// API Gateway's route key, `METHOD /path`.
    pub fn route_key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Path parameters if `path` matches this route's template.
    pub fn match_path(&self, path: &str) -> Option<Vec<(String, String)>> {
        let want: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let got: Vec<&str> = path.trim_matches('/').split('/').collect();
        if want.len() != got.len() {
            return None;
        }
        let mut params = Vec::new();
        for (w, g) in want.iter().zip(&got) {
            if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                if g.is_empty() {
                    return None;
                }
                params.push((name.to_string(), percent_decode(g)));
            } else if w != g {
                return None;
            }
        }
        Some(params)
    }

    /// Literal segments count: API Gateway prefers the most specific route.
    fn specificity(&self) -> usize {
        self.path.split('/').filter(|s| !s.starts_with('{')).count()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub binary: String,
    /// Environment variables the function receives (globals and its own).
    pub env_vars: Vec<String>,
    /// Whether an SQS queue triggers it (a SAM `SQS` event or an
    /// `AWS::Lambda::EventSourceMapping` on a queue of the template).
    pub sqs_triggered: bool,
    /// `Timeout` in seconds (its own, else the global one).
    pub timeout_seconds: Option<u64>,
    /// The inline IAM statements of its `Policies` (SAM policy templates and
    /// managed policies are not expanded: least privilege is spelt out inline).
    pub statements: Vec<PolicyStatement>,
}

impl FunctionSpec {
    /// Whether the function's inline policies allow `action` (e.g.
    /// `dynamodb:Query`) on `resource`: an Allow statement matches and no Deny
    /// statement does. Actions match case-insensitively with `*` / `?` globs,
    /// as IAM does.
    pub fn allows(&self, action: &str, resource: &ResourceRef) -> bool {
        let matching = |effect: Effect| {
            self.statements
                .iter()
                .filter(|s| s.effect == effect)
                .any(|s| s.matches(action, resource))
        };
        matching(Effect::Allow) && !matching(Effect::Deny)
    }

    /// Every `(action, resource)` pair the Allow statements name, as written.
    pub fn allowed_pairs(&self) -> Vec<(String, ResourceRef)> {
        self.statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .flat_map(|s| {
                s.actions.iter().flat_map(move |a| {
                    s.resources
                        .iter()
                        .map(move |r| (a.to_ascii_lowercase(), r.clone()))
                })
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyStatement {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<ResourceRef>,
}

impl PolicyStatement {
    fn matches(&self, action: &str, resource: &ResourceRef) -> bool {
        self.actions
            .iter()
            .any(|a| glob_match(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
            && self.resources.iter().any(|r| r.covers(resource))
    }
}

/// An IAM `Resource` of the template: the ARN attribute of one of its
/// resources plus a suffix (`!GetAtt Table.Arn` is `(Table, "")`,
/// `!Sub "${Table.Arn}/index/*"` is `(Table, "/index/*")`), or any other text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceRef {
    Arn { logical_id: String, suffix: String },
    Other(String),
}

impl ResourceRef {
    pub fn arn(logical_id: &str, suffix: &str) -> Self {
        Self::Arn {
            logical_id: logical_id.to_string(),
            suffix: suffix.to_string(),
        }
    }

    fn parse(v: &Value) -> Self {
        if let Some(target) = intrinsic(v, "GetAtt") {
            let (id, attr) = match target {
                Value::String(s) => s.split_once('.').unwrap_or((s.as_str(), "")),
                Value::Sequence(parts) if parts.len() == 2 => (
                    parts[0].as_str().unwrap_or_default(),
                    parts[1].as_str().unwrap_or_default(),
                ),
                _ => ("", ""),
            };
            if attr == "Arn" {
                return Self::arn(id, "");
            }
            return Self::Other(format!("GetAtt {id}.{attr}"));
        }
        if let Some(target) = intrinsic(v, "Sub") {
            let text = match target {
                Value::Sequence(parts) => parts.first().and_then(Value::as_str),
                other => other.as_str(),
            }
            .unwrap_or_default();
            if let Some((id, suffix)) = text
                .strip_prefix("${")
                .and_then(|rest| rest.split_once(".Arn}"))
            {
                return Self::arn(id, suffix);
            }
            return Self::Other(text.to_string());
        }
        Self::Other(v.as_str().unwrap_or_default().to_string())
    }

    /// Whether this statement resource includes `other` (`*` and glob
    /// suffixes such as `/index/*` included).
    pub fn covers(&self, other: &ResourceRef) -> bool {
        match (self, other) {
            (Self::Other(all), _) if all == "*" => true,
            (
                Self::Arn {
                    logical_id: a,
                    suffix: pattern,
                },
                Self::Arn {
                    logical_id: b,
                    suffix,
                },
            ) => a == b && glob_match(pattern, suffix),
            (a, b) => a == b,
        }
    }
}

impl std::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Arn { logical_id, suffix } => write!(f, "${{{logical_id}.Arn}}{suffix}"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

/// IAM-style glob: `*` any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[derive(Clone, Debug)]
pub struct Template {
    doc: Value,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("template: {e}"))?;
        Ok(Self { doc })
    }

    /// The compiled-in `infra/template.yaml`.
    pub fn bundled() -> Self {
        Self::parse(TEMPLATE_YAML).expect("infra/template.yaml is valid YAML")
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?, v)))
    }

    fn resources_of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.resources()
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(ty))
    }

    fn global_function(&self) -> Option<&Value> {
        self.doc.get("Globals").and_then(|g| g.get("Function"))
    }

    /// `Globals.Function.Environment.Variables`.
    fn global_env(&self) -> Vec<(String, &Value)> {
        env_map(self.global_function())
    }

    /// Logical ids of functions an `AWS::Lambda::EventSourceMapping` feeds
    /// from an `AWS::SQS::Queue` of the template.
    fn sqs_mappings(&self) -> impl Iterator<Item = &str> {
        self.resources_of_type("AWS::Lambda::EventSourceMapping")
            .filter_map(|(_, m)| {
                let props = m.get("Properties")?;
                let ResourceRef::Arn { logical_id, .. } =
                    ResourceRef::parse(props.get("EventSourceArn")?)
                else {
                    return None;
                };
                let is_queue = self
                    .resources_of_type("AWS::SQS::Queue")
                    .any(|(id, _)| id == logical_id);
                if !is_queue {
                    return None;
                }
                ref_target(props.get("FunctionName")?)
            })
    }

    pub fn tables(&self) -> Vec<TableSpec> {
        let globals = self.global_env();
        self.resources_of_type("AWS::DynamoDB::Table")
            .map(|(id, r)| {
                let props = &r["Properties"];
                let env_var = globals
                    .iter()
                    .find(|(_, v)| ref_target(v) == Some(id))
                    .map(|(k, _)| k.clone());
                TableSpec {
                    logical_id: id.to_string(),
                    env_var,
                    attributes: seq(&props["AttributeDefinitions"])
                        .map(|a| (str_of(&a["AttributeName"]), str_of(&a["AttributeType"])))
                        .collect(),
                    keys: key_specs(&props["KeySchema"]),
                    indexes: seq(&props["GlobalSecondaryIndexes"])
                        .map(|i| IndexSpec {
                            name: str_of(&i["IndexName"]),
                            keys: key_specs(&i["KeySchema"]),
                        })
                        .collect(),
                    ttl_attribute: props
                        .get("TimeToLiveSpecification")
                        .and_then(|t| t.get("AttributeName"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }
            })
            .collect()
    }

    pub fn functions(&self) -> Vec<FunctionSpec> {
        let globals: Vec<String> = self.global_env().into_iter().map(|(k, _)| k).collect();
        self.resources_of_type("AWS::Serverless::Function")
            .map(|(id, r)| {
                let binary = r
                    .get("Metadata")
                    .and_then(|m| m.get("BuildProperties"))
                    .and_then(|b| b.get("Binary"))
                    .and_then(Value::as_str)
                    .unwrap_or(id)
                    .to_string();
                let mut env_vars = globals.clone();
                for (k, _) in env_map(r.get("Properties")) {
                    if !env_vars.contains(&k) {
                        env_vars.push(k);
                    }
                }
                let sqs_triggered = events(r).any(|(_, ty, _)| ty == "SQS")
                    || self.sqs_mappings().any(|target| target == id);
                let timeout_seconds = r
                    .get("Properties")
                    .and_then(|p| p.get("Timeout"))
                    .or_else(|| self.global_function().and_then(|g| g.get("Timeout")))
                    .and_then(Value::as_u64);
                FunctionSpec {
                    logical_id: id.to_string(),
                    binary,
                    env_vars,
                    sqs_triggered,
                    timeout_seconds,
                    statements: policy_statements(r.get("Properties")),
                }
            })
            .collect()
    }

    /// Every HTTP API route, most specific first.
    pub fn routes(&self) -> Vec<RouteSpec> {
        let mut routes: Vec<RouteSpec> = self
            .functions()
            .into_iter()
            .zip(self.resources_of_type("AWS::Serverless::Function"))
            .flat_map(|(f, (_, r))| {
                events(r)
                    .filter(|(_, ty, _)| *ty == "HttpApi")
                    .map(|(_, _, props)| RouteSpec {
                        method: str_of(&props["Method"]).to_ascii_uppercase(),
                        path: str_of(&props["Path"]),
                        function: f.binary.clone(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
        routes
    }

    /// The route serving `method path`, with its path parameters.
    pub fn match_route(
        &self,
        routes: &[RouteSpec],
        method: &str,
        path: &str,
    ) -> Option<(RouteSpec, Vec<(String, String)>)> {
        routes
            .iter()
            .filter(|r| r.method == method || r.method == "ANY")
            .find_map(|r| r.match_path(path).map(|p| (r.clone(), p)))
    }
}

fn events(resource: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    resource
        .get("Properties")
        .and_then(|p| p.get("Events"))
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(name, e)| {
            Some((
                name.as_str()?,
                e.get("Type").and_then(Value::as_str)?,
                e.get("Properties")?,
            ))
        })
}

fn env_map(owner: Option<&Value>) -> Vec<(String, &Value)> {
    owner
        .and_then(|o| o.get("Environment"))
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v)))
        .collect()
}

/// `!Ref X` or `{Ref: X}` → `X`.
fn ref_target(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag == "Ref" => t.value.as_str(),
        Value::Mapping(m) => m.get("Ref").and_then(Value::as_str),
        _ => None,
    }
}

/// The argument of `!Name x` or `{Fn::Name: x}`.
fn intrinsic<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag == name => Some(&t.value),
        Value::Mapping(m) if m.len() == 1 => m.get(format!("Fn::{name}")),
        _ => None,
    }
}

/// A scalar or a list of scalars, as IAM accepts for `Action` and `Resource`.
fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// The inline statements of a function's `Policies` (a list, or one policy).
fn policy_statements(props: Option<&Value>) -> Vec<PolicyStatement> {
    let Some(policies) = props.and_then(|p| p.get("Policies")) else {
        return Vec::new();
    };
    one_or_many(policies)
        .into_iter()
        .filter_map(|policy| policy.get("Statement"))
        .flat_map(one_or_many)
        .filter_map(|st| {
            let effect = match st.get("Effect").and_then(Value::as_str)? {
                "Allow" => Effect::Allow,
                "Deny" => Effect::Deny,
                _ => return None,
            };
            Some(PolicyStatement {
                effect,
                actions: st
                    .get("Action")
                    .map(one_or_many)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                resources: st
                    .get("Resource")
                    .map(one_or_many)
                    .unwrap_or_default()
                    .into_iter()
                    .map(ResourceRef::parse)
                    .collect(),
            })
        })
        .collect()
}

fn seq(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_sequence().into_iter().flatten()
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn key_specs(v: &Value) -> Vec<KeySpec> {
    seq(v)
        .map(|k| KeySpec {
            attribute: str_of(&k["AttributeName"]),
            key_type: str_of(&k["KeyType"]),
        })
        .collect()
}

/// Decodes `%XX` escapes of a URL path segment or query component.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_template_has_the_table_and_routes() {
        let t = Template::bundled();
        let tables = t.tables();
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].env_var.as_deref(), Some("SPENDGUARD_TABLE"));
        assert_eq!(tables[0].ttl_attribute.as_deref(), Some("expires_at_epoch"));
        let routes = t.routes();
        let (route, params) = t
            .match_route(&routes, "GET", "/v1/me/quotas/openai/check")
            .unwrap();
        assert_eq!(route.function, "quota");
        assert_eq!(params, vec![("platform".to_string(), "openai".to_string())]);
        assert!(t.match_route(&routes, "GET", "/v1/nope").is_none());
        let ingest = function(&t, "usage-ingest");
        assert!(ingest.sqs_triggered);
    }

    #[test]
    fn literal_segments_win_over_parameters() {
        let t = Template::bundled();
        let routes = t.routes();
        let (route, _) = t
            .match_route(&routes, "POST", "/v1/admin/users/bob/quotas/init")
            .unwrap();
        assert_eq!(route.path, "/v1/admin/users/{user_id}/quotas/init");
    }

    fn resource<'a>(t: &'a Template, id: &str) -> &'a Value {
        t.resources()
            .find(|(rid, _)| *rid == id)
            .map(|(_, r)| r)
            .unwrap_or_else(|| panic!("template has no resource {id}"))
    }

    fn function_resources(t: &Template) -> Vec<(&str, &Value)> {
        t.resources_of_type("AWS::Serverless::Function").collect()
    }

    /// The `Properties` of the function with this binary.
    fn function(t: &Template, binary: &str) -> FunctionSpec {
        t.functions()
            .into_iter()
            .find(|f| f.binary == binary)
            .unwrap_or_else(|| panic!("no function {binary} in the template"))
    }

    fn function_props<'a>(t: &'a Template, binary: &str) -> &'a Value {
        &resource(t, &function(t, binary).logical_id)["Properties"]
    }

    #[test]
    fn every_route_uses_the_jwt_authorizer_with_parameterised_issuer_and_audience() {
        let t = Template::bundled();
        let apis: Vec<_> = t.resources_of_type("AWS::Serverless::HttpApi").collect();
        assert_eq!(apis.len(), 1, "one HTTP API");
        let (api_id, api) = apis[0];
        let auth = &api["Properties"]["Auth"];
        let default = auth["DefaultAuthorizer"]
            .as_str()
            .expect("DefaultAuthorizer");
        let jwt = &auth["Authorizers"][default]["JwtConfiguration"];
        assert_eq!(ref_target(&jwt["issuer"]), Some("JwtIssuer"));
        assert_eq!(ref_target(&jwt["audience"]), Some("JwtAudience"));
        for name in ["JwtIssuer", "JwtAudience"] {
            assert!(t.doc["Parameters"].get(name).is_some(), "parameter {name}");
        }
        let mut routes = 0;
        for (fid, f) in function_resources(&t) {
            for (event, ty, props) in events(f) {
                if ty != "HttpApi" {
                    continue;
                }
                routes += 1;
                assert_eq!(ref_target(&props["ApiId"]), Some(api_id), "{fid}.{event}");
                if let Some(authorizer) = props.get("Auth").and_then(|a| a.get("Authorizer")) {
                    assert_eq!(authorizer.as_str(), Some(default), "{fid}.{event} opts out");
                }
            }
        }
        assert_eq!(routes, t.routes().len());
        assert!(routes > 0);
    }

    #[test]
    fn functions_are_arm64_rust_on_al2023_with_deliberate_timeouts() {
        let t = Template::bundled();
        let global = t.global_function().unwrap();
        for (id, f) in function_resources(&t) {
            let props = &f["Properties"];
            let get = |key: &str| props.get(key).or_else(|| global.get(key));
            assert_eq!(
                get("Runtime").and_then(Value::as_str),
                Some("provided.al2023")
            );
            let arch: Vec<_> = seq(get("Architectures").unwrap()).collect();
            assert_eq!(arch, [&Value::from("arm64")], "{id}");
            assert_eq!(get("Handler").and_then(Value::as_str), Some("bootstrap"));
            assert_eq!(
                f["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda")
            );
            let memory = get("MemorySize").and_then(Value::as_u64).unwrap();
            assert!((128..=512).contains(&memory), "{id}: modest memory");
            let timeout = props.get("Timeout").and_then(Value::as_u64);
            assert!(timeout.is_some(), "{id}: sets its own timeout");
            assert!(timeout.unwrap() <= 30, "{id}: HTTP API waits 30 s at most");
        }
        for f in t.functions() {
            assert!(f.env_vars.iter().any(|v| v == "RUST_LOG"), "{}", f.binary);
        }
    }

    #[test]
    fn table_is_on_demand_with_recovery_ttl_and_deletion_protection() {
        let t = Template::bundled();
        for (id, table) in t.resources_of_type("AWS::DynamoDB::Table") {
            let p = &table["Properties"];
            assert_eq!(p["BillingMode"].as_str(), Some("PAY_PER_REQUEST"), "{id}");
            assert_eq!(p["DeletionProtectionEnabled"].as_bool(), Some(true), "{id}");
            assert_eq!(
                p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
                Some(true),
                "{id}"
            );
            assert_eq!(
                p["TimeToLiveSpecification"]["Enabled"].as_bool(),
                Some(true)
            );
            assert_eq!(table["DeletionPolicy"].as_str(), Some("Retain"), "{id}");
        }
    }

    #[test]
    fn billing_queue_outlasts_retries_and_dead_letters_with_an_alarm() {
        let t = Template::bundled();
        let ingest = function(&t, "usage-ingest");
        let mappings: Vec<_> = t
            .resources_of_type("AWS::Lambda::EventSourceMapping")
            .filter(|(_, m)| {
                ref_target(&m["Properties"]["FunctionName"]) == Some(&ingest.logical_id)
            })
            .collect();
        assert_eq!(
            mappings.len(),
            1,
            "one event source mapping feeds usage-ingest"
        );
        let m = &mappings[0].1["Properties"];
        let types: Vec<_> = seq(&m["FunctionResponseTypes"]).collect();
        assert_eq!(types, [&Value::from("ReportBatchItemFailures")]);
        let batch = m["BatchSize"].as_u64().expect("BatchSize chosen");
        assert!((1..=10_000).contains(&batch));
        let window = m["MaximumBatchingWindowInSeconds"]
            .as_u64()
            .expect("batching window chosen");
        let ResourceRef::Arn {
            logical_id: queue_id,
            ..
        } = ResourceRef::parse(&m["EventSourceArn"])
        else {
            panic!("event source is a queue of the template");
        };
        let queue = &resource(&t, &queue_id)["Properties"];
        let visibility = queue["VisibilityTimeout"].as_u64().unwrap();
        let timeout = ingest.timeout_seconds.unwrap();
        assert!(
            visibility >= 6 * timeout + window,
            "visibility {visibility} s < 6 x timeout {timeout} s + window {window} s"
        );
        let redrive = &queue["RedrivePolicy"];
        assert!(redrive["maxReceiveCount"].as_u64().unwrap() >= 5);
        let ResourceRef::Arn {
            logical_id: dlq_id, ..
        } = ResourceRef::parse(&redrive["deadLetterTargetArn"])
        else {
            panic!("DLQ is a queue of the template");
        };
        assert_eq!(
            resource(&t, &dlq_id)["Type"].as_str(),
            Some("AWS::SQS::Queue")
        );
        let alarms: Vec<_> = t
            .resources_of_type("AWS::CloudWatch::Alarm")
            .map(|(_, a)| &a["Properties"])
            .filter(|a| {
                a["Namespace"].as_str() == Some("AWS/SQS")
                    && a["MetricName"].as_str() == Some("ApproximateNumberOfMessagesVisible")
                    && seq(&a["Dimensions"]).any(|d| {
                        d["Name"].as_str() == Some("QueueName")
                            && intrinsic(&d["Value"], "GetAtt").and_then(Value::as_str)
                                == Some(&format!("{dlq_id}.QueueName"))
                    })
            })
            .collect();
        assert_eq!(alarms.len(), 1, "an alarm on the DLQ's depth");
        assert_eq!(
            alarms[0]["ComparisonOperator"].as_str(),
            Some("GreaterThanThreshold")
        );
        assert_eq!(alarms[0]["Threshold"].as_u64(), Some(0));
    }

    #[test]
    fn ingest_reads_its_own_queue_only() {
        let t = Template::bundled();
        let ingest = function(&t, "usage-ingest");
        assert!(ingest.sqs_triggered);
        // A SAM `SQS` event would attach AWSLambdaSQSQueueExecutionRole: every queue.
        let props = function_props(&t, "usage-ingest");
        assert!(!events(resource(&t, &ingest.logical_id)).any(|(_, ty, _)| ty == "SQS"));
        assert!(
            props.get("Role").is_none(),
            "SAM builds the role from Policies"
        );
        let queue = ResourceRef::arn("BillingQueue", "");
        for action in [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
        ] {
            assert!(ingest.allows(action, &queue), "{action}");
            assert!(!ingest.allows(action, &ResourceRef::Other("*".into())));
        }
        for f in t.functions() {
            if f.binary != "usage-ingest" {
                assert!(!f.allows("sqs:ReceiveMessage", &queue), "{}", f.binary);
            }
        }
    }

    #[test]
    fn outputs_name_the_api_the_queue_and_the_table() {
        let t = Template::bundled();
        let outputs = &t.doc["Outputs"];
        for name in ["ApiUrl", "BillingQueueUrl", "TableName"] {
            assert!(outputs.get(name).is_some(), "output {name}");
        }
        assert_eq!(
            ref_target(&outputs["TableName"]["Value"]),
            Some("SpendguardTable")
        );
        assert_eq!(
            ref_target(&outputs["BillingQueueUrl"]["Value"]),
            Some("BillingQueue")
        );
    }

    #[test]
    fn reads_inline_policies_in_every_intrinsic_spelling() {
        let t = Template::parse(
            r#"
Resources:
  T:
    Type: AWS::DynamoDB::Table
  Q:
    Type: AWS::SQS::Queue
  F:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 7
      Policies:
        - AWSLambdaBasicExecutionRole
        - DynamoDBReadPolicy: { TableName: !Ref T }
        - Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem, "dynamodb:Put*"]
              Resource: [!GetAtt T.Arn, !Sub "${T.Arn}/index/*"]
            - Effect: Allow
              Action: dynamodb:Query
              Resource: { "Fn::GetAtt": [T, Arn] }
            - Effect: Deny
              Action: dynamodb:PutItem
              Resource: { "Fn::Sub": "${T.Arn}" }
            - Effect: Allow
              Action: sqs:*
              Resource: "*"
  M:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      EventSourceArn: { "Fn::GetAtt": [Q, Arn] }
      FunctionName: { Ref: F }
"#,
        )
        .unwrap();
        let f = &t.functions()[0];
        assert_eq!(f.timeout_seconds, Some(7));
        assert!(f.sqs_triggered);
        let table = ResourceRef::arn("T", "");
        let index = ResourceRef::arn("T", "/index/gsi1");
        assert!(f.allows("dynamodb:GetItem", &table));
        assert!(
            f.allows("DynamoDB:getitem", &index),
            "case-insensitive, glob suffix"
        );
        assert!(f.allows("dynamodb:Query", &table));
        assert!(!f.allows("dynamodb:Query", &index));
        assert!(!f.allows("dynamodb:PutItem", &table), "denied");
        assert!(f.allows("dynamodb:PutItem", &index));
        assert!(
            !f.allows("dynamodb:Scan", &table),
            "policy templates are not expanded"
        );
        assert!(f.allows("sqs:SendMessage", &ResourceRef::arn("Q", "")));
        assert!(f.allowed_pairs().contains(&(
            "dynamodb:put*".to_string(),
            ResourceRef::arn("T", "/index/*")
        )));
    }

    #[test]
    fn globs_match_like_iam() {
        assert!(glob_match("dynamodb:*", "dynamodb:query"));
        assert!(glob_match("/index/*", "/index/gsi1"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "/index/gsi1"));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("a?c", "abcd"));
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%40b"), "a@b");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
