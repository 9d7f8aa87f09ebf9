//! Webhook signatures: `X-Signature` is the lowercase hex of HMAC-SHA256 over
//! the raw request body, keyed with `WEBHOOK_SECRET`.
//!
//! Shared by the guest (verification), the host (`inlet sign`) and the tests.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A signature as sent by the caller: the decoded bytes of the hex header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature(Vec<u8>);

impl Signature {
    /// Decodes a header value; `None` when it is not hex. Either hex case is
    /// accepted: the digest is what matters, not its spelling.
    pub fn from_header(value: &str) -> Option<Self> {
        hex::decode(value.trim()).ok().map(Self)
    }
}

/// The key that signs webhook bodies (`WEBHOOK_SECRET`).
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A key from the raw bytes of `secret`; any length, including empty, is accepted.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(secret.into())
    }

    /// Whether `signature` is the HMAC-SHA256 of `body` under this key.
    /// The comparison takes the same time wherever the bytes differ.
    pub fn verifies(&self, body: &[u8], signature: &Signature) -> bool {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(body);
        mac.verify_slice(&signature.0).is_ok()
    }

    /// The lowercase hex signature of `body`, as a sender computes it.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }
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
    fn verifies_own_signature_in_either_case() {
        let key = SigningKey::new("testsecret");
        let hex = key.sign(BODY);
        assert!(key.verifies(BODY, &Signature::from_header(&hex).unwrap()));
        let upper = hex.to_uppercase();
        assert!(key.verifies(BODY, &Signature::from_header(&upper).unwrap()));
    }

    #[test]
    fn rejects_wrong_key_body_length_and_junk() {
        let key = SigningKey::new("testsecret");
        let good = key.sign(BODY);
        let other_key = SigningKey::new("other").sign(BODY);
        assert!(!key.verifies(BODY, &Signature::from_header(&other_key).unwrap()));
        assert!(!key.verifies(b"{}", &Signature::from_header(&good).unwrap()));
        assert!(!key.verifies(BODY, &Signature::from_header(&good[..62]).unwrap()));
        assert!(!key.verifies(BODY, &Signature::from_header("").unwrap()));
        assert!(Signature::from_header("123").is_none());
        assert!(Signature::from_header("zz").is_none());
    }
}
