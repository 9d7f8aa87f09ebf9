//! Where messages are forwarded (`FORWARD_URL`): an HTTP(S) endpoint, or a
//! NATS JetStream subject. Parsed once at start-up; a malformed value stops
//! it, as every bad setting does.

use std::fmt;

use crate::config::ConfigError;
use crate::secrets::WebhookSecret;

const VARIABLE: &str = "FORWARD_URL";

/// A parsed `FORWARD_URL`.
#[derive(Clone)]
pub enum Destination {
    /// `POST` to this endpoint, signed with the secret (`FORWARD_SECRET`).
    Http {
        /// The endpoint, as given.
        url: url::Url,
        /// The Standard Webhooks key deliveries are signed with.
        secret: WebhookSecret,
    },
    /// A JetStream publish to `subject` on the server at `address`.
    Nats {
        /// `HOST:PORT`.
        address: String,
        /// The subject a stream is bound to.
        subject: String,
    },
}

impl Destination {
    /// `FORWARD_URL` with `FORWARD_SECRET`; `None` when the URL is unset or
    /// empty (no forwarding).
    pub fn parse(url: Option<&str>, secret: Option<&str>) -> Result<Option<Self>, ConfigError> {
        let Some(text) = url.filter(|url| !url.is_empty()) else {
            return Ok(None);
        };
        let url = url::Url::parse(text).map_err(|e| bad(format!("is not a URL ({e})")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("names no host".into()));
        }
        match url.scheme() {
            "http" | "https" => {
                let secret = secret.filter(|secret| !secret.is_empty()).ok_or_else(|| {
                    ConfigError::new(
                        "FORWARD_SECRET",
                        "is not set; an HTTP(S) FORWARD_URL needs a signing key",
                    )
                })?;
                Ok(Some(Self::Http {
                    url,
                    secret: WebhookSecret::new(secret.to_owned()),
                }))
            }
            "nats" => Self::nats(&url).map(Some),
            scheme => Err(bad(format!(
                "has scheme {scheme:?}; expected http://, https:// or nats://HOST:PORT/SUBJECT"
            ))),
        }
    }

    /// `nats://HOST:PORT/SUBJECT`: one subject, no wildcards (a publish
    /// names a single subject) and nothing the URL had to percent-encode.
    fn nats(url: &url::Url) -> Result<Self, ConfigError> {
        let subject = url.path().trim_start_matches('/');
        let tokens_ok = subject
            .split('.')
            .all(|token| !token.is_empty() && !token.contains(['*', '>', '%']) && !token.contains(char::is_whitespace));
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "names NATS credentials, which forwarding cannot use yet: nats://HOST:PORT/SUBJECT".into(),
            ));
        }
        if subject.is_empty() || !tokens_ok || url.query().is_some() {
            return Err(bad(
                "needs one subject without wildcards: nats://HOST:PORT/SUBJECT, e.g. nats://localhost:4222/inlet.messages"
                    .into(),
            ));
        }
        let host = url.host_str().unwrap_or_default();
        let port = url.port().unwrap_or(DEFAULT_NATS_PORT);
        Ok(Self::Nats {
            address: format!("{host}:{port}"),
            subject: subject.to_owned(),
        })
    }
}

/// NATS's own port, when the URL names none.
const DEFAULT_NATS_PORT: u16 = 4222;

/// The destination as `GET /forwarding` and the logs show it: without
/// credentials or query, which may hold secrets.
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http { url, .. } => {
                let port = url.port().map(|port| format!(":{port}")).unwrap_or_default();
                let host = url.host_str().unwrap_or_default();
                write!(f, "{}://{host}{port}{}", url.scheme(), url.path())
            }
            Self::Nats { address, subject } => write!(f, "nats://{address}/{subject}"),
        }
    }
}

fn bad(reason: String) -> ConfigError {
    // The URL itself is not echoed: it may hold credentials.
    ConfigError::new(VARIABLE, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str, secret: Option<&str>) -> Result<Option<String>, String> {
        Destination::parse(Some(url), secret)
            .map(|destination| destination.map(|d| d.to_string()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn unset_or_empty_is_no_forwarding() {
        assert!(Destination::parse(None, None).unwrap().is_none());
        assert!(Destination::parse(Some(""), Some("s")).unwrap().is_none());
    }

    #[test]
    fn an_http_endpoint_needs_a_secret_and_is_shown_without_credentials() {
        let shown = parsed("https://user:pw@example.com:8443/hooks/in?token=x", Some("whsec_AAAA"));
        assert_eq!(shown.unwrap().unwrap(), "https://example.com:8443/hooks/in");
        let error = parsed("http://example.com/in", None).unwrap_err();
        assert!(error.contains("FORWARD_SECRET"), "{error}");
        let error = parsed("http://example.com/in", Some("")).unwrap_err();
        assert!(error.contains("FORWARD_SECRET"), "{error}");
    }

    #[test]
    fn a_nats_url_names_one_subject() {
        assert_eq!(
            parsed("nats://127.0.0.1:4333/inlet.messages", None).unwrap().unwrap(),
            "nats://127.0.0.1:4333/inlet.messages"
        );
        assert_eq!(
            parsed("nats://broker/inlet", None).unwrap().unwrap(),
            "nats://broker:4222/inlet"
        );
        for bad in [
            "nats://broker:4222/",
            "nats://broker:4222/inlet.*",
            "nats://broker:4222/inlet.>",
            "nats://broker:4222/inlet..x",
            "nats://broker:4222/a?b=c",
            "nats://user:pw@broker:4222/inlet",
        ] {
            let error = parsed(bad, None).unwrap_err();
            assert!(
                error.contains("FORWARD_URL") && error.contains("SUBJECT"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn other_values_are_refused_without_echoing_them() {
        for bad in ["ftp://host/x", "not a url", "https://", "https://user:secretpw@/x"] {
            let error = parsed(bad, Some("k")).unwrap_err();
            assert!(error.contains("FORWARD_URL"), "{bad}: {error}");
            assert!(!error.contains("secretpw"), "{error}");
        }
    }
}
