//! `GET /feed`: every stored message once, in the order it became durable,
//! from an opaque position; `wait` long-polls while nothing follows it.
//!
//! A position is base64url of the host's `feed-position` (epoch, then seq,
//! each 8 bytes big-endian): opaque to clients, and the guest never orders
//! or compares positions, only hands back what storage returned.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use utoipa::ToSchema;

use crate::bindings::inlet::service::storage::{self, FeedPage, FeedPosition, FeedWait};
use crate::message::StoredView;
use crate::problem::FieldError;
use crate::query::{self, number};
use crate::response::Response;

pub(crate) const DEFAULT_LIMIT: u32 = 100;
pub(crate) const MAX_LIMIT: u32 = 1000;
/// The longest long-poll, in seconds.
pub(crate) const MAX_WAIT: u32 = 25;

/// What a position token decodes to.
const POSITION_BYTES: usize = 16;

/// What every issued position matches (base64url of `POSITION_BYTES`,
/// whose last character carries two bits), as `/openapi.json` describes it.
pub(crate) const PATTERN: &str = "^[A-Za-z0-9_-]{21}[AQgw]$";

/// One answer of the feed.
#[derive(Serialize, ToSchema)]
pub(crate) struct Feed<'a> {
    /// Messages in the order they were stored, at most `limit`.
    data: Vec<StoredView<'a>>,
    /// Pass it back as `after` for what follows: the position after the
    /// last message of `data`, or `after` again when `data` is empty.
    next: String,
}

/// A validated feed request.
#[derive(Debug)]
pub(crate) struct FeedQuery {
    after: FeedPosition,
    limit: u32,
    /// Seconds to wait while nothing follows `after`; 0 answers at once.
    wait: u32,
}

pub(crate) fn handle(query_string: &str) -> Response {
    let query = match parse(query_string) {
        Ok(query) => query,
        Err(errors) => return Response::unprocessable(&errors),
    };
    if query.wait > 0 {
        storage::pace_feed(query.after);
    }
    let mut page = match read(&query) {
        Ok(page) => page,
        Err(refused) => return refused,
    };
    if page.messages.is_empty() && query.wait > 0 {
        match storage::wait_feed(query.after, query.wait) {
            Ok(FeedWait::Arrived) => match read(&query) {
                Ok(again) => page = again,
                Err(refused) => return refused,
            },
            Ok(FeedWait::TimedOut) => {}
            Ok(FeedWait::Full) => return Response::unavailable("too many requests are waiting on the feed"),
            Err(error) => return Response::storage_failure(&error),
        }
    }
    let feed = Feed {
        data: page.messages.iter().map(StoredView::of).collect(),
        next: encode(page.next),
    };
    Response::json(200, &feed)
}

/// One page after `query.after`, or the answer refusing it.
fn read(query: &FeedQuery) -> Result<FeedPage, Response> {
    match storage::read_feed(query.after, query.limit) {
        Ok(Some(page)) => Ok(page),
        Ok(None) => Err(Response::unprocessable(&[after_error(
            "after is not a position of this feed",
        )])),
        Err(error) => Err(Response::storage_failure(&error)),
    }
}

/// Parses `after`, `limit` and `wait` (others are ignored; the last of a
/// repeated one wins; an empty `after` is the start).
pub(crate) fn parse(query_string: &str) -> Result<FeedQuery, Vec<FieldError>> {
    let (mut after, mut limit, mut wait) = (None, None, None);
    for (key, value) in query::pairs(query_string) {
        let slot = match key.as_str() {
            "after" => &mut after,
            "limit" => &mut limit,
            "wait" => &mut wait,
            _ => continue,
        };
        *slot = Some(query::decode(value, true));
    }
    let mut errors = Vec::new();
    let limit = number(limit, "limit", DEFAULT_LIMIT.into(), 1, MAX_LIMIT.into(), &mut errors) as u32;
    let wait = number(wait, "wait", 0, 0, MAX_WAIT.into(), &mut errors) as u32;
    let after = match after.filter(|token| !token.is_empty()) {
        None => START,
        Some(token) => decode(&token).unwrap_or_else(|| {
            errors.push(after_error("after is not a position this service issued"));
            START
        }),
    };
    if errors.is_empty() {
        Ok(FeedQuery { after, limit, wait })
    } else {
        Err(errors)
    }
}

/// Before every message.
const START: FeedPosition = FeedPosition { epoch: 0, seq: 0 };

fn after_error(msg: &str) -> FieldError {
    FieldError::new("query", Some("after"), "value_error", format!("Value error, {msg}"))
}

/// The token a client sends back as `after`.
pub(crate) fn encode(position: FeedPosition) -> String {
    let mut bytes = [0; POSITION_BYTES];
    bytes[..8].copy_from_slice(&position.epoch.to_be_bytes());
    bytes[8..].copy_from_slice(&position.seq.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The position `token` stands for, or `None` when it is none this service
/// could have issued.
fn decode(token: &str) -> Option<FeedPosition> {
    let bytes: [u8; POSITION_BYTES] = URL_SAFE_NO_PAD.decode(token).ok()?.try_into().ok()?;
    let (epoch, seq) = bytes.split_at(8);
    Some(FeedPosition {
        epoch: u64::from_be_bytes(epoch.try_into().ok()?),
        seq: u64::from_be_bytes(seq.try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(|e| e.loc.join(".")).collect()
    }

    /// A query as plain numbers: (epoch, seq, limit, wait).
    fn plain(query: &FeedQuery) -> (u64, u64, u32, u32) {
        (query.after.epoch, query.after.seq, query.limit, query.wait)
    }

    fn decoded(token: &str) -> Option<(u64, u64)> {
        decode(token).map(|p| (p.epoch, p.seq))
    }

    #[test]
    fn positions_round_trip_opaquely() {
        for position in [
            START,
            FeedPosition { epoch: 7, seq: 3 },
            FeedPosition {
                epoch: u64::MAX,
                seq: u64::MAX,
            },
        ] {
            let token = encode(position);
            assert_eq!(token.len(), 22);
            assert_eq!(decoded(&token), Some((position.epoch, position.seq)));
        }
    }

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(plain(&parse("").unwrap()), (0, 0, 100, 0));
        let token = encode(FeedPosition { epoch: 0, seq: 9 });
        let query = parse(&format!("after={token}&limit=1000&wait=25")).unwrap();
        assert_eq!(plain(&query), (0, 9, 1000, 25));
        let errors = parse("limit=0&wait=26").unwrap_err();
        assert_eq!(fields(&errors), ["query.limit", "query.wait"]);
        assert_eq!(parse("limit=1001").unwrap_err()[0].kind, "less_than_equal");
        assert_eq!(parse("wait=-1").unwrap_err()[0].kind, "greater_than_equal");
    }

    #[test]
    fn malformed_positions_are_refused_at_after() {
        let long = URL_SAFE_NO_PAD.encode([0u8; 17]);
        for token in ["x", "!!!!", long.as_str(), "AAAAAAAAAAAAAAAAAAAAAA=="] {
            let errors = parse(&format!("after={token}")).unwrap_err();
            assert_eq!(fields(&errors), ["query.after"], "{token}");
        }
        assert_eq!(plain(&parse("after=").unwrap()), (0, 0, 100, 0));
    }
}
