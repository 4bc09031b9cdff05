//! Reads `infra/template.yaml`, the one source of truth for tables and routes:
//! the local stack and the tests create tables and route requests from it, so
//! nothing can drift from what AWS deploys.

use serde_yaml_ng::Value;

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
    /// Whether an SQS queue triggers it.
    pub sqs_triggered: bool,
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

    /// `Globals.Function.Environment.Variables`.
    fn global_env(&self) -> Vec<(String, &Value)> {
        env_map(self.doc.get("Globals").and_then(|g| g.get("Function")))
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
                let sqs_triggered = events(r).any(|(_, ty, _)| ty == "SQS");
                FunctionSpec {
                    logical_id: id.to_string(),
                    binary,
                    env_vars,
                    sqs_triggered,
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
        let ingest = t
            .functions()
            .into_iter()
            .find(|f| f.binary == "usage-ingest")
            .unwrap();
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

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%40b"), "a@b");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
