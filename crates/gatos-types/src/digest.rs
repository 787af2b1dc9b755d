//! Digests, Git object ids and key ids: validated once, strings on the wire.

use std::fmt;
use std::str::FromStr;

/// Why an identifier did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct ParseError {
    /// What was being parsed ("digest", "object id", …).
    pub kind: &'static str,
    /// The offending text, shortened to 80 characters.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ParseError {
    pub(crate) fn new(kind: &'static str, value: &str, reason: &'static str) -> Self {
        let value: String = value.chars().take(80).collect();
        ParseError {
            kind,
            value,
            reason,
        }
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex_encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// Writes bytes as lowercase hex to `f` without allocating: ids are formatted into every
/// commit a batch writes.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    for part in bytes.chunks(32) {
        for (i, b) in part.iter().enumerate() {
            buf[2 * i] = HEX[usize::from(b >> 4)];
            buf[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        f.write_str(std::str::from_utf8(&buf[..2 * part.len()]).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

fn hex_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = char::from(chunk[0]).to_digit(16)?;
        let lo = char::from(chunk[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// Encodes bytes as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    hex_encode(bytes)
}

/// A BLAKE3 digest, written `blake3:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Returns the digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }
    /// Returns the digest of the parts' bytes one after another, as [`Digest::of`] of their
    /// concatenation, without making it.
    pub fn of_parts(parts: &[&[u8]]) -> Digest {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(p);
        }
        Digest(*h.finalize().as_bytes())
    }
    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }
    /// Returns the raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Returns the 64 hex characters without the `blake3:` prefix.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("blake3:")?;
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let hex = s
            .strip_prefix("blake3:")
            .ok_or_else(|| ParseError::new("digest", s, "must start with 'blake3:'"))?;
        hex_decode::<32>(hex)
            .map(Digest)
            .ok_or_else(|| ParseError::new("digest", s, "must be 64 lowercase hex digits"))
    }
}

/// A Git object id (SHA-1), written as 40 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oid([u8; 20]);

impl Oid {
    /// The all-zero id that Git uses for "no object".
    pub const NULL: Oid = Oid([0; 20]);

    /// Wraps raw id bytes.
    pub fn from_bytes(bytes: [u8; 20]) -> Oid {
        Oid(bytes)
    }
    /// Returns the raw id bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
    /// Returns the first `n` hex digits, for human output.
    pub fn short(&self, n: usize) -> String {
        let mut s = hex_encode(&self.0);
        s.truncate(n.min(40));
        s
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Oid {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        hex_decode::<20>(s)
            .map(Oid)
            .ok_or_else(|| ParseError::new("object id", s, "must be 40 lowercase hex digits"))
    }
}

/// An ed25519 public key id, written `ed25519:<64 lowercase hex of the public key>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 32]);

impl KeyId {
    /// Wraps the raw public key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> KeyId {
        KeyId(bytes)
    }
    /// Returns the raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Returns the 64 hex characters of the key, as used in `trust/keys/<hex>`.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }
    /// Parses the bare 64-hex form.
    ///
    /// # Errors
    /// When `s` is not 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Result<KeyId, ParseError> {
        hex_decode::<32>(s)
            .map(KeyId)
            .ok_or_else(|| ParseError::new("key id", s, "must be 64 lowercase hex digits"))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ed25519:")?;
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for KeyId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let hex = s
            .strip_prefix("ed25519:")
            .ok_or_else(|| ParseError::new("key id", s, "must start with 'ed25519:'"))?;
        KeyId::from_hex(hex)
    }
}

/// Serde by `Display`/`FromStr`, and a JSON Schema string with `$what` as its description
/// and, given, the `pattern` (ECMA-262, as JSON Schema's) that holds exactly for the texts
/// `FromStr` takes, so a client or a property-based test can make valid values.
macro_rules! string_serde {
    ($t:ty, $what:expr) => {
        crate::digest::string_serde!($t, $what, schema = {"type": "string", "description": $what});
    };
    ($t:ty, $what:expr, pattern = $pattern:expr) => {
        crate::digest::string_serde!($t, $what, schema = {"type": "string", "description": $what, "pattern": $pattern});
    };
    ($t:ty, $what:expr, schema = $schema:tt) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$t, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
        impl schemars::JsonSchema for $t {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($t).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!($schema)
            }
        }
    };
}
pub(crate) use string_serde;

string_serde!(
    Digest,
    "a digest 'blake3:<64 hex>'",
    pattern = "^blake3:[0-9a-f]{64}$"
);
string_serde!(Oid, "a 40-hex object id", pattern = "^[0-9a-f]{40}$");
string_serde!(
    KeyId,
    "a key id 'ed25519:<64 hex>'",
    pattern = "^ed25519:[0-9a-f]{64}$"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_and_rejects_bad_forms() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert!("blake3:ABC".parse::<Digest>().is_err());
        assert!(d.to_hex().parse::<Digest>().is_err());
        assert!(d.to_string().to_uppercase().parse::<Digest>().is_err());
    }

    #[test]
    fn oid_and_key_id_round_trip() {
        let o: Oid = "0123456789abcdef0123456789abcdef01234567"
            .parse()
            .expect("valid");
        assert_eq!(o.to_string(), "0123456789abcdef0123456789abcdef01234567");
        assert!("0123".parse::<Oid>().is_err());
        let k = KeyId::from_bytes([7; 32]);
        assert_eq!(k.to_string().parse::<KeyId>(), Ok(k));
        assert_eq!(KeyId::from_hex(&k.to_hex()), Ok(k));
        assert_eq!(serde_json::to_string(&k).expect("json"), format!("\"{k}\""));
    }
}
