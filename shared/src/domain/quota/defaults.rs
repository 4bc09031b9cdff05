//! Configuration: quota defaults for the system and per auth source, and the admin bodies (wire) that set limits.

use super::*;

/// `Defaults` of the contract: `{platform: Limits}` for configured platforms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaDefaults(BTreeMap<Platform, Limits>);

impl QuotaDefaults {
    /// Validates a request body ([`by_platform`]).
    pub fn from_body(body: DefaultsBody, platforms: &Platforms) -> Result<Self, Error> {
        let entries = body
            .0
            .into_iter()
            .map(|(name, wire)| Ok((name, Limits::try_from(wire)?)));
        by_platform(entries, platforms).map(Self)
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
#[derive(Debug, Default)]
pub struct DefaultsBody(pub Vec<(String, LimitsWire)>);

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
                    entries.push((key, map.next_value::<LimitsWire>()?));
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

/// The three limits of one platform as sent, amounts unparsed (`TryFrom`
/// reads them, so a bad one is 400 `invalid_amount`). An omitted field or
/// `null` is unlimited. Unknown fields are refused: a misspelt limit must not
/// silently mean "unlimited".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsWire {
    #[serde(default)]
    pub daily_limit_usd: Option<Box<RawValue>>,
    #[serde(default)]
    pub weekly_limit_usd: Option<Box<RawValue>>,
    #[serde(default)]
    pub monthly_limit_usd: Option<Box<RawValue>>,
}

impl TryFrom<LimitsWire> for Limits {
    type Error = Error;
    fn try_from(wire: LimitsWire) -> Result<Self, Error> {
        let limit = |raw: Option<Box<RawValue>>| raw.map(|r| Usd::from_json(&r)).transpose();
        Ok(Limits {
            daily: limit(wire.daily_limit_usd)?,
            weekly: limit(wire.weekly_limit_usd)?,
            monthly: limit(wire.monthly_limit_usd)?,
        })
    }
}

/// One entry of a user replace body, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    pub platform: String,
    #[serde(default)]
    pub daily_limit_usd: Option<Box<RawValue>>,
    #[serde(default)]
    pub weekly_limit_usd: Option<Box<RawValue>>,
    #[serde(default)]
    pub monthly_limit_usd: Option<Box<RawValue>>,
}

/// Validates a replace body ([`by_platform`]).
pub fn replacement_limits(
    entries: Vec<LimitsEntry>,
    platforms: &Platforms,
) -> Result<BTreeMap<Platform, Limits>, Error> {
    let entries = entries.into_iter().map(|e| {
        let limits = Limits::try_from(LimitsWire {
            daily_limit_usd: e.daily_limit_usd,
            weekly_limit_usd: e.weekly_limit_usd,
            monthly_limit_usd: e.monthly_limit_usd,
        })?;
        Ok((e.platform, limits))
    });
    by_platform(entries, platforms)
}

/// Limits by platform from `(name, limits)` entries in body order: every
/// amount is read before any platform (so a bad amount is refused as one
/// wherever it stands), then every platform must be configured, none twice.
fn by_platform(
    entries: impl Iterator<Item = Result<(String, Limits), Error>>,
    platforms: &Platforms,
) -> Result<BTreeMap<Platform, Limits>, Error> {
    let entries = entries.collect::<Result<Vec<_>, Error>>()?;
    let mut map = BTreeMap::new();
    for (name, limits) in entries {
        let platform = platforms.parse(&name)?;
        if map.insert(platform, limits).is_some() {
            return Err(Error::DuplicatePlatform(name));
        }
    }
    Ok(map)
}
