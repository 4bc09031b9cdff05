//! Configuration: quota defaults for the system and per auth source, and the admin bodies (wire) that set limits.

use super::*;

/// `Defaults` of the contract: `{platform: Limits}` for configured platforms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaDefaults(BTreeMap<Platform, Limits>);

impl QuotaDefaults {
    /// Validates a request body: every platform configured, none twice.
    pub fn from_body(body: DefaultsBody, platforms: &Platforms) -> Result<Self, Error> {
        let mut map = BTreeMap::new();
        for (name, limits) in body.0 {
            let platform = platforms.parse(&name)?;
            if map.insert(platform, limits).is_some() {
                return Err(Error::DuplicatePlatform(name));
            }
        }
        Ok(Self(map))
    }

    /// The limits configured for `platform` (all unlimited if none).
    pub fn limits(&self, platform: &Platform) -> Limits {
        self.0.get(platform).copied().unwrap_or_default()
    }

    pub fn insert(&mut self, platform: Platform, limits: Limits) {
        self.0.insert(platform, limits);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Platform, &Limits)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for QuotaDefaults {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (platform, limits) in &self.0 {
            map.serialize_entry(platform, limits)?;
        }
        map.end()
    }
}

/// A `Defaults` request body before validation: entries in body order, duplicate
/// keys kept (a JSON object parsed into a map would silently keep the last one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefaultsBody(pub Vec<(String, Limits)>);

impl<'de> Deserialize<'de> for DefaultsBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = DefaultsBody;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of platform -> limits")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DefaultsBody, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    entries.push((key, map.next_value::<Limits>()?));
                }
                Ok(DefaultsBody(entries))
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

/// Which defaults item: the system's or one auth source's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultsScope {
    System,
    Source(AuthSource),
}

impl DefaultsScope {
    /// The audit action of replacing this scope.
    pub fn audit_action(self) -> &'static str {
        match self {
            DefaultsScope::System => crate::domain::audit::ADMIN_SET_SYSTEM_QUOTA_DEFAULTS,
            DefaultsScope::Source(_) => crate::domain::audit::ADMIN_SET_SOURCE_QUOTA_DEFAULTS,
        }
    }

    /// How a stored value reads: an empty (cleared) source default is no default
    /// at all (`null`); the system default always exists (`{}` when empty).
    pub fn visible(self, defaults: &QuotaDefaults) -> Option<&QuotaDefaults> {
        match self {
            DefaultsScope::Source(_) if defaults.is_empty() => None,
            _ => Some(defaults),
        }
    }

    pub fn label(self) -> String {
        match self {
            DefaultsScope::System => "system".into(),
            DefaultsScope::Source(s) => format!("source:{s}"),
        }
    }
}

/// Every stored default: the configuration layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefaultsSet {
    pub system: QuotaDefaults,
    pub sources: BTreeMap<AuthSource, QuotaDefaults>,
}

impl DefaultsSet {
    /// What `init` from `source` aims for on `platform`: per field the source's
    /// value if set, else the system's.
    pub fn limits_for(&self, source: AuthSource, platform: &Platform) -> Limits {
        let system = self.system.limits(platform);
        match self.sources.get(&source) {
            Some(defaults) => defaults.limits(platform).merged_over(&system),
            None => system,
        }
    }

    /// `{"system": Defaults, "sources": {source: Defaults or null}}`, every source listed.
    pub fn view(&self) -> Value {
        let sources: serde_json::Map<String, Value> = AuthSource::ALL
            .iter()
            .map(|s| {
                let value = self
                    .sources
                    .get(s)
                    .map_or(Value::Null, |d| serde_json::to_value(d).unwrap_or_default());
                (s.as_str().to_string(), value)
            })
            .collect();
        json!({ "system": self.system, "sources": sources })
    }
}

/// One entry of a user replace body.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    pub platform: String,
    #[serde(default)]
    pub daily_limit_usd: Option<Usd>,
    #[serde(default)]
    pub weekly_limit_usd: Option<Usd>,
    #[serde(default)]
    pub monthly_limit_usd: Option<Usd>,
}

/// Validates a replace body: every platform configured, none twice.
pub fn replacement_limits(
    entries: Vec<LimitsEntry>,
    platforms: &Platforms,
) -> Result<BTreeMap<Platform, Limits>, Error> {
    let mut map = BTreeMap::new();
    for e in entries {
        let platform = platforms.parse(&e.platform)?;
        let limits = Limits {
            daily: e.daily_limit_usd,
            weekly: e.weekly_limit_usd,
            monthly: e.monthly_limit_usd,
        };
        if map.insert(platform, limits).is_some() {
            return Err(Error::DuplicatePlatform(e.platform));
        }
    }
    Ok(map)
}
