//! The hex schemes: `X-Signature` and `X-Hub-Signature-256` carry the hex
//! HMAC-SHA256 of the raw body, keyed with the secret's UTF-8 bytes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Bytes of an HMAC-SHA256 digest.
const DIGEST_BYTES: usize = 32;

/// The prefix Meta and GitHub put before the hex digest.
const SHA256_PREFIX: &str = "sha256=";

/// A well-formed `X-Signature`, as a JSON Schema pattern.
pub const X_SIGNATURE_PATTERN: &str = "^(sha256=)?[0-9a-fA-F]{64}$";
/// A well-formed `X-Hub-Signature-256`, as a JSON Schema pattern.
pub const HUB_SIGNATURE_PATTERN: &str = "^sha256=[0-9a-fA-F]{64}$";

/// A signature as sent by the caller: the decoded bytes of a hex header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature(Vec<u8>);

impl Signature {
    /// Decodes an `X-Signature` value: 64 hex digits in either case (the
    /// digest is what matters, not its spelling), optionally after `sha256=`;
    /// `None` when it is not.
    pub fn from_header(value: &str) -> Option<Self> {
        let value = value.trim();
        Self::from_hex(value.strip_prefix(SHA256_PREFIX).unwrap_or(value))
    }

    /// Decodes an `X-Hub-Signature-256` value, which must be `sha256=<hex>`.
    pub fn from_hub_header(value: &str) -> Option<Self> {
        Self::from_hex(value.trim().strip_prefix(SHA256_PREFIX)?)
    }

    /// Exactly a SHA-256 digest's 64 hex digits.
    fn from_hex(digits: &str) -> Option<Self> {
        let mut digest = [0u8; DIGEST_BYTES];
        hex::decode_to_slice(digits, &mut digest).ok()?;
        Some(Self(digest.to_vec()))
    }
}

/// A key for the hex schemes: a secret's raw bytes.
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A key from the raw bytes of `secret`; any length, including empty, is accepted.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(secret.into())
    }

    /// Whether `signature` is the HMAC-SHA256 of `body` under this key.
    /// The comparison takes the same time wherever the bytes differ.
    pub fn verifies(&self, body: &[u8], signature: &Signature) -> bool {
        self.mac(body).verify_slice(&signature.0).is_ok()
    }

    /// The lowercase hex signature of `body`, as a sender computes it
    /// (`X-Signature`; `X-Hub-Signature-256` puts `sha256=` before it).
    pub fn sign(&self, body: &[u8]) -> String {
        hex::encode(self.mac(body).finalize().into_bytes())
    }

    fn mac(&self, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(body);
        mac
    }
}

/// The `X-Hub-Signature-256` value of `body` under `key`.
pub fn hub_header(key: &SigningKey, body: &[u8]) -> String {
    format!("{SHA256_PREFIX}{}", key.sign(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] =
        br#"{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"Hello"}"#;

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2.
        let key = SigningKey::new("Jefe");
        assert_eq!(
            key.sign(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_own_signature_in_either_case_with_or_without_prefix() {
        let key = SigningKey::new("testsecret");
        let hex = key.sign(BODY);
        for value in [hex.clone(), hex.to_uppercase(), format!("sha256={hex}")] {
            assert!(key.verifies(BODY, &Signature::from_header(&value).unwrap()), "{value}");
        }
        assert!(key.verifies(BODY, &Signature::from_hub_header(&hub_header(&key, BODY)).unwrap()));
        assert!(
            Signature::from_hub_header(&hex).is_none(),
            "the hub header needs its prefix"
        );
    }

    #[test]
    fn rejects_wrong_key_body_length_and_junk() {
        let key = SigningKey::new("testsecret");
        let good = key.sign(BODY);
        let other_key = SigningKey::new("other").sign(BODY);
        assert!(!key.verifies(BODY, &Signature::from_header(&other_key).unwrap()));
        assert!(!key.verifies(b"{}", &Signature::from_header(&good).unwrap()));
        assert!(
            Signature::from_header(&good[..62]).is_none(),
            "too short to be a digest"
        );
        assert!(Signature::from_header(&format!("{good}00")).is_none(), "too long");
        assert!(Signature::from_header("").is_none());
        assert!(Signature::from_header("123").is_none());
        assert!(Signature::from_header("zz").is_none());
        assert!(Signature::from_header("sha1=00").is_none());
    }
}
