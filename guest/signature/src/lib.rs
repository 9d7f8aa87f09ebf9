//! Webhook signatures as senders make them, verified against every
//! configured secret (several during a rotation).
//!
//! Three schemes, each an HMAC-SHA256 over the raw body bytes:
//!
//! - `X-Signature: <hex>` (Inlet's own): either case, optionally `sha256=`.
//! - `X-Hub-Signature-256: sha256=<hex>` (Meta, GitHub).
//! - Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature`; Svix's `svix-*` names too), see [`standard`]:
//!   signed content `id.timestamp.body`, and a timestamp that must be
//!   within a tolerance of the verifier's clock.
//!
//! When a delivery carries headers of several schemes, the strongest one
//! present decides alone: Standard Webhooks (it also binds the time), then
//! `X-Hub-Signature-256`, then `X-Signature`. Comparisons take the same
//! time wherever the bytes differ.
//!
//! Shared by the guest (verification), the host (`inlet sign`) and the tests.

pub mod hex_hmac;
pub mod standard;

pub use hex_hmac::{Signature, SigningKey};

/// Which scheme verified a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `X-Signature`.
    XSignature,
    /// `X-Hub-Signature-256`.
    HubSignature256,
    /// Standard Webhooks.
    StandardWebhooks,
}

impl Scheme {
    /// The name logs and `inlet sign --scheme` use.
    pub fn label(self) -> &'static str {
        match self {
            Self::XSignature => "x-signature",
            Self::HubSignature256 => "hub-signature-256",
            Self::StandardWebhooks => "standard-webhooks",
        }
    }
}

/// Why a delivery was not verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// It carries no signature header of any scheme.
    Missing,
    /// The deciding scheme's headers are not in its format.
    Malformed(Scheme),
    /// No configured secret made its signature.
    Mismatch(Scheme),
    /// Its Standard Webhooks timestamp is outside the tolerance.
    OutsideTolerance,
}

/// The signature headers a delivery carried, by scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignatureHeaders<'a> {
    /// `X-Signature`.
    pub x_signature: Option<&'a str>,
    /// `X-Hub-Signature-256`.
    pub hub_signature_256: Option<&'a str>,
    /// Standard Webhooks' three headers, when `webhook-signature` (or
    /// `svix-signature`) is present.
    pub standard: Option<standard::Headers<'a>>,
}

/// A signature as a delivery's headers present it: well formed (and, for
/// Standard Webhooks, timely), to be checked against the body once it is
/// here. A delivery whose headers present none is refused before its body
/// is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a>(Presentation<'a>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Presentation<'a> {
    Standard(standard::Presented<'a>),
    Hex(Scheme, Signature),
}

/// The signature `headers` present; the strongest scheme present decides.
pub fn present<'a>(headers: &SignatureHeaders<'a>, clock: standard::Clock) -> Result<Presented<'a>, Rejection> {
    if let Some(standard) = &headers.standard {
        return standard::present(standard, clock).map(|p| Presented(Presentation::Standard(p)));
    }
    let (scheme, value) = match (headers.hub_signature_256, headers.x_signature) {
        (Some(value), _) => (Scheme::HubSignature256, value),
        (None, Some(value)) => (Scheme::XSignature, value),
        (None, None) => return Err(Rejection::Missing),
    };
    let signature = match scheme {
        Scheme::HubSignature256 => Signature::from_hub_header(value),
        _ => Signature::from_header(value),
    }
    .ok_or(Rejection::Malformed(scheme))?;
    Ok(Presented(Presentation::Hex(scheme, signature)))
}

impl Presented<'_> {
    /// Verifies `body` against every secret in `secrets` (raw text, as configured).
    pub fn verify<S: AsRef<str>>(&self, body: &[u8], secrets: &[S]) -> Result<Scheme, Rejection> {
        match &self.0 {
            Presentation::Standard(presented) => presented.verify(body, secrets).map(|()| Scheme::StandardWebhooks),
            Presentation::Hex(scheme, signature) => secrets
                .iter()
                .any(|secret| SigningKey::new(secret.as_ref()).verifies(body, signature))
                .then_some(*scheme)
                .ok_or(Rejection::Mismatch(*scheme)),
        }
    }
}

/// Verifies `body` as delivered with `headers` against every secret in
/// `secrets`; `clock` bounds Standard Webhooks' timestamp.
pub fn verify<S: AsRef<str>>(
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    secrets: &[S],
    clock: standard::Clock,
) -> Result<Scheme, Rejection> {
    present(headers, clock)?.verify(body, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"message_id":"m1"}"#;
    const CLOCK: standard::Clock = standard::Clock {
        now_unix: 1_700_000_000,
        tolerance_seconds: 300,
    };

    fn hex(secret: &str) -> String {
        SigningKey::new(secret).sign(BODY)
    }

    #[test]
    fn any_configured_secret_verifies() {
        let signature = hex("new");
        let headers = SignatureHeaders {
            x_signature: Some(&signature),
            ..Default::default()
        };
        assert_eq!(verify(&headers, BODY, &["old", "new"], CLOCK), Ok(Scheme::XSignature));
        assert_eq!(
            verify(&headers, BODY, &["old"], CLOCK),
            Err(Rejection::Mismatch(Scheme::XSignature))
        );
        let none: [&str; 0] = [];
        assert_eq!(
            verify(&headers, BODY, &none, CLOCK),
            Err(Rejection::Mismatch(Scheme::XSignature))
        );
    }

    #[test]
    fn x_signature_takes_either_case_and_a_prefix() {
        let lower = hex("s");
        for value in [
            lower.clone(),
            lower.to_uppercase(),
            format!("sha256={lower}"),
            format!("sha256={}", lower.to_uppercase()),
        ] {
            let headers = SignatureHeaders {
                x_signature: Some(&value),
                ..Default::default()
            };
            assert_eq!(verify(&headers, BODY, &["s"], CLOCK), Ok(Scheme::XSignature), "{value}");
        }
    }

    #[test]
    fn hub_signature_needs_its_prefix() {
        let bare = hex("s");
        let prefixed = format!("sha256={bare}");
        for (value, expected) in [
            (&prefixed, Ok(Scheme::HubSignature256)),
            (&bare, Err(Rejection::Malformed(Scheme::HubSignature256))),
        ] {
            let headers = SignatureHeaders {
                hub_signature_256: Some(value),
                ..Default::default()
            };
            assert_eq!(verify(&headers, BODY, &["s"], CLOCK), expected, "{value}");
        }
    }

    #[test]
    fn the_strongest_scheme_present_decides() {
        let good = hex("s");
        let hub = format!("sha256={}", hex("wrong"));
        // A valid X-Signature does not rescue a wrong X-Hub-Signature-256.
        let headers = SignatureHeaders {
            x_signature: Some(&good),
            hub_signature_256: Some(&hub),
            standard: None,
        };
        assert_eq!(
            verify(&headers, BODY, &["s"], CLOCK),
            Err(Rejection::Mismatch(Scheme::HubSignature256))
        );
        let headers = SignatureHeaders {
            x_signature: Some(&good),
            standard: Some(standard::Headers {
                id: "msg_1",
                timestamp: "1700000000",
                signature: "v1,AAAA",
            }),
            ..Default::default()
        };
        assert_eq!(
            verify(&headers, BODY, &["s"], CLOCK),
            Err(Rejection::Mismatch(Scheme::StandardWebhooks))
        );
    }

    #[test]
    fn no_signature_is_missing() {
        assert_eq!(
            verify(&SignatureHeaders::default(), BODY, &["s"], CLOCK),
            Err(Rejection::Missing)
        );
    }
}
