//! Which handler a method and path go to.

use crate::access::Needs;
use crate::response::Response;

/// The guest's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Webhook,
    Messages,
    /// One message, its id the rest of the path (see `message`).
    Message,
    Feed,
    Stats,
    OpenApi,
    WhatsApp,
    Forwarding,
    ForwardingRetry,
}

/// How a path template names its one parameter, at its end.
const MESSAGE_ID: &str = "{message_id}";

impl Route {
    pub(crate) const ALL: [Self; 9] = [
        Self::Webhook,
        Self::Messages,
        Self::Message,
        Self::Feed,
        Self::Stats,
        Self::OpenApi,
        Self::WhatsApp,
        Self::Forwarding,
        Self::ForwardingRetry,
    ];

    /// The route at `path`, whatever the method.
    pub(crate) fn at(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|route| route.parameter(path).is_some())
    }

    /// Its path (a template for `Message`), which is also the name the host
    /// counts it under.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Self::Webhook => "/webhook",
            Self::Messages => "/messages",
            Self::Message => "/messages/{message_id}",
            Self::Feed => "/feed",
            Self::Stats => "/stats",
            Self::OpenApi => "/openapi.json",
            Self::WhatsApp => "/webhook/whatsapp",
            Self::Forwarding => "/forwarding",
            Self::ForwardingRetry => "/forwarding/retry",
        }
    }

    /// Whether `path` is this route's: the path parameter as it was sent
    /// (still percent-encoded, never empty), or `""` for a route without one.
    pub(crate) fn parameter(self, path: &str) -> Option<&str> {
        match self.path().strip_suffix(MESSAGE_ID) {
            Some(prefix) => path.strip_prefix(prefix).filter(|rest| !rest.is_empty()),
            None => (path == self.path()).then_some(""),
        }
    }

    /// What it asks of a caller using `method`.
    pub(crate) fn needs(self, method: &str) -> Needs {
        match self {
            Self::Message if method == "DELETE" => Needs::Admin,
            Self::Forwarding | Self::ForwardingRetry => Needs::Admin,
            Self::Messages | Self::Message | Self::Feed | Self::Stats => Needs::Read,
            // Signed deliveries are authenticated by their signatures.
            Self::Webhook | Self::WhatsApp | Self::OpenApi => Needs::Nothing,
        }
    }

    /// The methods it answers (`Allow` lists them on a 405).
    pub(crate) fn methods(self) -> &'static [&'static str] {
        match self {
            Self::Webhook | Self::ForwardingRetry => &["POST"],
            Self::Messages | Self::Feed | Self::Stats | Self::OpenApi | Self::Forwarding => &["GET"],
            Self::Message => &["GET", "DELETE"],
            Self::WhatsApp => &["GET", "POST"],
        }
    }
}

/// The route for `method` and `path`, or the 404/405 answer.
pub(crate) fn route(method: &str, path: &str) -> Result<Route, Response> {
    let route = Route::at(path).ok_or_else(|| Response::detail(404, "Not Found"))?;
    if route.methods().contains(&method) {
        Ok(route)
    } else {
        Err(Response::detail(405, "Method Not Allowed").with_header("allow", route.methods().join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_routes() {
        assert_eq!(route("POST", "/webhook").unwrap(), Route::Webhook);
        assert_eq!(route("GET", "/messages").unwrap(), Route::Messages);
        assert_eq!(route("GET", "/stats").unwrap(), Route::Stats);
        assert_eq!(
            route("GET", "/health/ready").unwrap_err().status,
            404,
            "the host answers it"
        );
        assert_eq!(route("GET", "/openapi.json").unwrap(), Route::OpenApi);
        assert_eq!(route("GET", "/webhook/whatsapp").unwrap(), Route::WhatsApp);
        assert_eq!(route("POST", "/webhook/whatsapp").unwrap(), Route::WhatsApp);
        assert_eq!(route("GET", "/messages/m%2F1").unwrap(), Route::Message);
        assert_eq!(route("DELETE", "/messages/a/b").unwrap(), Route::Message);
        assert_eq!(route("GET", "/forwarding").unwrap(), Route::Forwarding);
        assert_eq!(route("POST", "/forwarding/retry").unwrap(), Route::ForwardingRetry);
        assert_eq!(route("GET", "/forwarding/retry").unwrap_err().status, 405);
    }

    #[test]
    fn a_message_path_carries_its_id_as_sent() {
        assert_eq!(Route::Message.parameter("/messages/m%2F1"), Some("m%2F1"));
        assert_eq!(Route::Message.parameter("/messages/"), None);
        assert_eq!(Route::Message.parameter("/messagesx"), None);
        assert_eq!(Route::Messages.parameter("/messages"), Some(""));
        assert_eq!(Route::Messages.parameter("/messages/x"), None);
    }

    #[test]
    fn erasing_needs_more_than_reading() {
        assert_eq!(Route::Message.needs("GET"), Needs::Read);
        assert_eq!(Route::Message.needs("DELETE"), Needs::Admin);
        assert_eq!(Route::Webhook.needs("POST"), Needs::Nothing);
        assert_eq!(Route::Forwarding.needs("GET"), Needs::Admin);
        assert_eq!(Route::ForwardingRetry.needs("POST"), Needs::Admin);
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_405() {
        assert_eq!(route("GET", "/nope").unwrap_err().status, 404);
        assert_eq!(route("GET", "/messages/").unwrap_err().status, 404);
        let wrong = route("GET", "/webhook").unwrap_err();
        assert_eq!(wrong.status, 405);
        assert_eq!(wrong.headers, [("allow", "POST".to_owned())]);
        assert_eq!(route("DELETE", "/messages").unwrap_err().status, 405);
        let one = route("POST", "/messages/m1").unwrap_err();
        assert_eq!(one.headers, [("allow", "GET, DELETE".to_owned())]);
        let both = route("PUT", "/webhook/whatsapp").unwrap_err();
        assert_eq!(both.headers, [("allow", "GET, POST".to_owned())]);
    }
}
