//! Which callers a route admits: the scope it needs, checked against the
//! caller the host identifies from the request's `Authorization` value
//! (the key set stays in the host), and the 401 or 403 of a caller refused.

use crate::bindings::inlet::service::access::{self, Caller, Scope};
use crate::bindings::inlet::service::log::{self, Level};
use crate::bindings::wasi::http::types::IncomingRequest;
use crate::http_io;
use crate::response::Response;

/// The header a caller presents its key in.
const AUTHORIZATION: &str = "authorization";
/// The challenge a 401 carries (RFC 6750).
pub(crate) const CHALLENGE: &str = "Bearer";

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Nothing: open to anyone (probes, the document, signed webhooks).
    Nothing,
    /// A `read` or `admin` key, when keys are configured; without keys the
    /// route is open, as the assignment's API is.
    Read,
    /// An `admin` key; without keys configured the route is closed.
    Admin,
}

/// Whether the host has API keys configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// Callers present keys; read routes need one.
    Configured,
    /// Nobody has a key; read routes are open, admin routes closed.
    Absent,
}

/// Whether keys are configured now: a caller presenting nothing is
/// anonymous only when there are none.
pub(crate) fn keys() -> Keys {
    match access::identify(None) {
        Caller::Anonymous => Keys::Absent,
        Caller::Holder(_) | Caller::Unauthenticated => Keys::Configured,
    }
}

/// Why a caller is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No usable key: 401.
    NotAuthenticated,
    /// A key without the scope: 403.
    Forbidden,
}

/// Admits the request's caller to a route that `needs` it, or answers the
/// refusal.
pub(crate) fn admit(request: &IncomingRequest, needs: Needs) -> Result<(), Response> {
    if needs == Needs::Nothing {
        return Ok(());
    }
    let authorization = http_io::Headers::of(request).get(AUTHORIZATION);
    let caller = access::identify(authorization.as_deref());
    decide(needs, &caller).map_err(|refusal| {
        log::escalate(Level::Warn);
        refusal.response()
    })
}

/// Whether `caller` may use a route that `needs` it.
pub(crate) fn decide(needs: Needs, caller: &Caller) -> Result<(), Refusal> {
    match (needs, caller) {
        (Needs::Nothing, _) | (Needs::Read, Caller::Anonymous | Caller::Holder(_)) => Ok(()),
        (Needs::Admin, Caller::Holder(holder)) if holder.scope == Scope::Admin => Ok(()),
        (Needs::Admin, Caller::Holder(_)) => Err(Refusal::Forbidden),
        (Needs::Read | Needs::Admin, Caller::Anonymous | Caller::Unauthenticated) => Err(Refusal::NotAuthenticated),
    }
}

impl Refusal {
    /// The answer, as the contract gives it.
    pub(crate) fn response(self) -> Response {
        match self {
            Self::NotAuthenticated => {
                Response::detail(401, "not authenticated").with_header("www-authenticate", CHALLENGE)
            }
            Self::Forbidden => Response::detail(403, "forbidden"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::inlet::service::access::KeyHolder;

    fn holder(scope: Scope) -> Caller {
        Caller::Holder(KeyHolder {
            name: "ci".into(),
            scope,
        })
    }

    #[test]
    fn each_route_class_admits_whom_the_contract_says() {
        use Refusal::{Forbidden, NotAuthenticated};
        let callers = [
            Caller::Anonymous,
            Caller::Unauthenticated,
            holder(Scope::Read),
            holder(Scope::Admin),
        ];
        let expected = [
            (Needs::Nothing, [Ok(()), Ok(()), Ok(()), Ok(())]),
            (Needs::Read, [Ok(()), Err(NotAuthenticated), Ok(()), Ok(())]),
            (
                Needs::Admin,
                [Err(NotAuthenticated), Err(NotAuthenticated), Err(Forbidden), Ok(())],
            ),
        ];
        for (needs, outcomes) in expected {
            for (caller, outcome) in callers.iter().zip(outcomes) {
                assert_eq!(decide(needs, caller), outcome, "{needs:?} {caller:?}");
            }
        }
    }

    #[test]
    fn a_refusal_answers_as_the_contract_says() {
        let unauthenticated = Refusal::NotAuthenticated.response();
        assert_eq!(unauthenticated.status, 401);
        assert_eq!(unauthenticated.headers, [("www-authenticate", "Bearer".to_owned())]);
        assert_eq!(unauthenticated.body, br#"{"detail":"not authenticated"}"#);
        let forbidden = Refusal::Forbidden.response();
        assert_eq!((forbidden.status, forbidden.headers.len()), (403, 0));
        assert_eq!(forbidden.body, br#"{"detail":"forbidden"}"#);
    }
}
