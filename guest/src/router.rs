//! Which handler a method and path go to.

use crate::response::Response;

/// The guest's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Webhook,
    Messages,
    Stats,
    Ready,
}

/// The route for `method` and `path`, or the 404/405 answer.
pub fn route(method: &str, path: &str) -> Result<Route, Response> {
    let (route, allowed) = match path {
        "/webhook" => (Route::Webhook, "POST"),
        "/messages" => (Route::Messages, "GET"),
        "/stats" => (Route::Stats, "GET"),
        "/health/ready" => (Route::Ready, "GET"),
        _ => return Err(Response::detail(404, "Not Found")),
    };
    if method == allowed {
        Ok(route)
    } else {
        Err(Response::detail(405, "Method Not Allowed").with_header("allow", allowed))
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
        assert_eq!(route("GET", "/health/ready").unwrap(), Route::Ready);
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_405() {
        assert_eq!(route("GET", "/nope").unwrap_err().status, 404);
        assert_eq!(route("GET", "/messages/").unwrap_err().status, 404);
        let wrong = route("GET", "/webhook").unwrap_err();
        assert_eq!(wrong.status, 405);
        assert_eq!(wrong.headers, [("allow", "POST".to_owned())]);
        assert_eq!(route("DELETE", "/messages").unwrap_err().status, 405);
    }
}
