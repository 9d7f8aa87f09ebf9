//! Which handler a method and path go to.

use crate::access::Needs;
use crate::response::Response;

/// The guest's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Webhook,
    Messages,
    Stats,
    OpenApi,
    WhatsApp,
}

impl Route {
    pub(crate) const ALL: [Self; 5] = [
        Self::Webhook,
        Self::Messages,
        Self::Stats,
        Self::OpenApi,
        Self::WhatsApp,
    ];

    /// The route at `path`, whatever the method.
    pub(crate) fn at(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|route| route.path() == path)
    }

    /// Its path, which is also the name the host counts it under.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Self::Webhook => "/webhook",
            Self::Messages => "/messages",
            Self::Stats => "/stats",
            Self::OpenApi => "/openapi.json",
            Self::WhatsApp => "/webhook/whatsapp",
        }
    }

    /// What it asks of its caller (the same for each of its methods).
    pub(crate) fn needs(self) -> Needs {
        match self {
            Self::Messages | Self::Stats => Needs::Read,
            // Signed deliveries are authenticated by their signatures.
            Self::Webhook | Self::WhatsApp | Self::OpenApi => Needs::Nothing,
        }
    }

    /// The methods it answers (`Allow` lists them on a 405).
    pub(crate) fn methods(self) -> &'static [&'static str] {
        match self {
            Self::Webhook => &["POST"],
            Self::Messages | Self::Stats | Self::OpenApi => &["GET"],
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
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_405() {
        assert_eq!(route("GET", "/nope").unwrap_err().status, 404);
        assert_eq!(route("GET", "/messages/").unwrap_err().status, 404);
        let wrong = route("GET", "/webhook").unwrap_err();
        assert_eq!(wrong.status, 405);
        assert_eq!(wrong.headers, [("allow", "POST".to_owned())]);
        assert_eq!(route("DELETE", "/messages").unwrap_err().status, 405);
        let both = route("PUT", "/webhook/whatsapp").unwrap_err();
        assert_eq!(both.headers, [("allow", "GET, POST".to_owned())]);
    }
}
