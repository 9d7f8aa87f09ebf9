//! Signed deliveries (`/webhook`, `/webhook/whatsapp`): the signature
//! headers a request presents, refused before its body is read when none is
//! usable, then the body verified under any secret the host's `settings`
//! give; the 401 and the log fields and outcome of a refusal.

use inlet_signature::{Presented, Rejection, SignatureHeaders, standard};

use crate::bindings::inlet::service::log::{self, FieldValue, Level};
use crate::bindings::inlet::service::metrics::{self, WebhookResult};
use crate::bindings::inlet::service::settings;
use crate::bindings::wasi::http::types::IncomingRequest;
use crate::http_io;
use crate::response::Response;

/// `X-Signature`: the hex HMAC of the body.
pub(crate) const X_SIGNATURE: &str = "x-signature";
/// `X-Hub-Signature-256`: Meta's and GitHub's `sha256=<hex>`.
pub(crate) const HUB_SIGNATURE: &str = "x-hub-signature-256";
/// The names Svix senders give Standard Webhooks' headers (id, timestamp,
/// signature), accepted as a set when `webhook-signature` is absent.
const SVIX_HEADERS: [&str; 3] = ["svix-id", "svix-timestamp", "svix-signature"];

/// A request's signature headers, as received.
#[derive(Debug, Default)]
pub(crate) struct SignatureFields {
    x_signature: Option<String>,
    hub_signature: Option<String>,
    standard: [Option<String>; 3],
}

impl SignatureFields {
    /// Reads them through `header`, which gives a header's value by its
    /// lowercase name.
    pub(crate) fn read(header: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            x_signature: header(X_SIGNATURE),
            hub_signature: header(HUB_SIGNATURE),
            standard: Self::standard(&header),
        }
    }

    /// The headers of the schemes `accepted` takes.
    fn accepted(&self, accepted: Accepted) -> SignatureHeaders<'_> {
        match accepted {
            Accepted::AnyScheme => self.headers(),
            // The one scheme Meta signs with.
            Accepted::HubOnly => SignatureHeaders {
                hub_signature_256: self.hub_signature.as_deref(),
                ..SignatureHeaders::default()
            },
        }
    }

    /// Standard Webhooks' three headers by one set of names: `webhook-*`
    /// when `webhook-signature` is there, else `svix-*` (never a mix).
    fn standard(header: &impl Fn(&str) -> Option<String>) -> [Option<String>; 3] {
        let [_, _, signature] = standard::HEADER_NAMES;
        let names = if header(signature).is_some() {
            standard::HEADER_NAMES
        } else {
            SVIX_HEADERS
        };
        names.map(header)
    }

    fn headers(&self) -> SignatureHeaders<'_> {
        let [id, timestamp, signature] = self.standard.each_ref().map(Option::as_deref);
        SignatureHeaders {
            x_signature: self.x_signature.as_deref(),
            hub_signature_256: self.hub_signature.as_deref(),
            standard: signature.map(|signature| standard::Headers {
                id: id.unwrap_or_default(),
                timestamp: timestamp.unwrap_or_default(),
                signature,
            }),
        }
    }
}

/// Which signature schemes a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// Any of them (`/webhook`).
    AnyScheme,
    /// `X-Hub-Signature-256` alone (`/webhook/whatsapp`).
    HubOnly,
}

/// A signed delivery: the signature its headers present (refused before
/// the body is read when there is none usable), then its body, handed to
/// `handle` once it verifies under one of the secrets.
pub(crate) fn delivery(request: &IncomingRequest, accepted: Accepted, handle: fn(&[u8]) -> Response) -> Response {
    let headers = http_io::Headers::of(request);
    let fields = SignatureFields::read(|name| headers.get(name));
    let settings = settings::webhook();
    let presented = match present(&fields, accepted, settings.tolerance_seconds) {
        Ok(presented) => presented,
        Err(refused) => return refused,
    };
    let Ok(body) = http_io::read_body(request, &headers) else {
        return Response::detail(400, "could not read the request body");
    };
    match authenticate(&presented, &body, &settings.secrets) {
        Ok(()) => handle(&body),
        Err(refused) => refused,
    }
}

/// The signature a delivery's headers present, checked before its body is
/// read: a delivery without a usable one is refused (401, counted as such)
/// without waiting for a body that may never come.
fn present(signature: &SignatureFields, accepted: Accepted, tolerance_seconds: u64) -> Result<Presented<'_>, Response> {
    inlet_signature::present(&signature.accepted(accepted), clock(tolerance_seconds)).map_err(refuse)
}

/// Verifies the body against the presented signature under any of
/// `secrets` (none: refused), saying in the log which scheme did; a refusal
/// is the 401 to answer.
fn authenticate(signature: &Presented<'_>, body: &[u8], secrets: &[String]) -> Result<(), Response> {
    let scheme = signature.verify(body, secrets).map_err(refuse)?;
    log::annotate("scheme", &FieldValue::Text(scheme.label().to_owned()));
    Ok(())
}

/// The 401 for `rejection`, saying in the log why (never which secret).
fn refuse(rejection: Rejection) -> Response {
    log::escalate(Level::Error);
    log::annotate("signature", &FieldValue::Text(rejection_label(rejection).to_owned()));
    record_outcome(WebhookResult::InvalidSignature, None);
    Response::detail(401, "invalid signature")
}

/// Now, from the host's wall clock, and the tolerance it configured.
fn clock(tolerance_seconds: u64) -> standard::Clock {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    standard::Clock {
        now_unix: i64::try_from(now).unwrap_or(i64::MAX),
        tolerance_seconds,
    }
}

/// What the log line says about a refused signature (never which secret).
fn rejection_label(rejection: Rejection) -> &'static str {
    match rejection {
        Rejection::Missing => "missing",
        Rejection::Malformed(_) => "malformed",
        Rejection::Mismatch(_) => "mismatch",
        Rejection::OutsideTolerance => "outside_tolerance",
    }
}

/// Records a delivery's outcome (the host logs it as `result` too) and its
/// log fields.
pub(crate) fn record_outcome(result: WebhookResult, message_id: Option<&str>) {
    metrics::record_webhook(result);
    if let Some(id) = message_id {
        log::annotate("message_id", &FieldValue::Text(id.to_owned()));
    }
    log::annotate("dup", &FieldValue::Flag(result == WebhookResult::Duplicate));
}
