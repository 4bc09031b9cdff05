//! Codes: generation, normalisation to the lookup key, prefixes and batch ids.

use super::*;

/// The normalised form a code is stored and matched under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CodeKey(String);

impl CodeKey {
    /// Any input a user or admin typed. Outside the contract's id alphabet → 400
    /// `invalid_id`; anything inside it is a lookup (which may find nothing).
    pub fn parse(input: &str) -> Result<Self, Error> {
        validate_id("code", input)?;
        Ok(Self(normalise(input)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key read back from the store (already normalised).
    pub fn from_stored(key: &str) -> Self {
        Self(key.to_string())
    }
}

impl fmt::Display for CodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn normalise(input: &str) -> String {
    input
        .chars()
        .filter(|c| *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'I' | 'L' => '1',
            'O' => '0',
            other => other,
        })
        .collect()
}

/// A freshly generated code: what the admin hands out and what it is stored under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedCode {
    pub display: String,
    pub key: CodeKey,
}

/// Draws one code from `rng` (the caller passes the OS CSPRNG). 256 is a
/// multiple of 32, so masking a byte keeps every symbol equally likely.
pub fn generate_code(prefix: Option<&Prefix>, rng: &mut impl RngCore) -> GeneratedCode {
    let mut bytes = [0u8; RANDOM_SYMBOLS];
    rng.fill_bytes(&mut bytes);
    let mut display = String::with_capacity(MAX_PREFIX_LEN + 1 + RANDOM_SYMBOLS * 5 / 4);
    if let Some(p) = prefix {
        display.push_str(p.as_str());
        display.push('-');
    }
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % GROUP == 0 {
            display.push('-');
        }
        display.push(CODE_ALPHABET[(b & 31) as usize] as char);
    }
    let key = CodeKey(normalise(&display));
    GeneratedCode { display, key }
}

/// An admin-chosen code prefix: 1–16 ASCII letters or digits, kept upper case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.is_empty()
            || text.len() > MAX_PREFIX_LEN
            || !text.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(Error::InvalidRequest(format!(
                "prefix must be 1-{MAX_PREFIX_LEN} letters or digits"
            )));
        }
        Ok(Self(text.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

id_newtype!(
    /// The plan a subscription grant extends.
    PlanId,
    "plan_id"
);
id_newtype!(
    /// One batch of generated codes.
    BatchId,
    "batch_id"
);

impl BatchId {
    /// A fresh random id: 128 bits from the OS CSPRNG, lower-case base32.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(base32_lower(&bytes))
    }

    /// The id of the batch `actor` creates with Idempotency-Key `key`: a retry
    /// with the same key finds the batch the first attempt (partly) wrote.
    pub fn for_idempotency_key(actor: &str, key: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"spendguard redemption batch\n")
            .chain_update(actor.as_bytes())
            .chain_update(b"\n")
            .chain_update(key.as_bytes())
            .finalize();
        Self(base32_lower(&digest[..16]))
    }
}

/// Crockford base32 of `bytes`, lower case (26 symbols for 16 bytes).
pub(super) fn base32_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(CODE_ALPHABET[((acc >> bits) & 31) as usize].to_ascii_lowercase() as char);
        }
    }
    if bits > 0 {
        out.push(CODE_ALPHABET[((acc << (5 - bits)) & 31) as usize].to_ascii_lowercase() as char);
    }
    out
}
