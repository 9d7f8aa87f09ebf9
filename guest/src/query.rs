//! The `GET /messages` query string: `limit`, `offset`, `from`, `since`, `q`,
//! `cursor`.
//!
//! Values are percent-decoded. `+` means a space as in HTML forms, except in
//! `from`: an MSISDN starts with a literal `+`, and callers (the evaluator's
//! curl among them) send `?from=+919876543210` without encoding it.
//! Unknown parameters are ignored; when a parameter repeats, the last wins;
//! an empty `from`, `since`, `q` or `cursor` filters nothing. A `cursor`
//! goes with the filters it was issued for and no `offset`.

use percent_encoding::percent_decode_str;

use crate::cursor::{Cursor, Filters};
use crate::problem::FieldError;
use crate::timestamp;

pub(crate) const DEFAULT_LIMIT: u32 = 50;
pub(crate) const MAX_LIMIT: u32 = 100;
/// SQLite counts rows with signed 64-bit integers.
pub(crate) const MAX_OFFSET: u64 = i64::MAX as u64;

/// A validated listing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListingQuery {
    pub limit: u32,
    pub offset: u64,
    pub from: Option<String>,
    pub since: Option<timestamp::UtcTimestamp>,
    pub q: Option<String>,
    /// Where the previous page ended, when the client continues from there.
    pub cursor: Option<Cursor>,
}

impl ListingQuery {
    /// The filters, as a cursor records them.
    pub(crate) fn filters(&self) -> Filters {
        Filters {
            from: self.from.clone(),
            since_unix_micros: self.since.as_ref().map(|ts| ts.unix_micros),
            q: self.q.clone(),
        }
    }
}

/// The raw values, decoded but not yet validated.
#[derive(Default)]
struct RawParams {
    limit: Option<String>,
    offset: Option<String>,
    from: Option<String>,
    since: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
}

/// Parses a query string (without the `?`), collecting every invalid parameter.
pub(crate) fn parse(query: &str) -> Result<ListingQuery, Vec<FieldError>> {
    let raw = collect(query);
    let mut errors = Vec::new();
    let limit = number(
        raw.limit,
        "limit",
        DEFAULT_LIMIT.into(),
        1,
        MAX_LIMIT.into(),
        &mut errors,
    ) as u32;
    let offset = number(raw.offset, "offset", 0, 0, MAX_OFFSET, &mut errors);
    let since = raw
        .since
        .filter(|s| !s.is_empty())
        .and_then(|s| match timestamp::parse(&s) {
            Ok(ts) => Some(ts),
            Err(why) => {
                errors.push(FieldError::new(
                    "query",
                    Some("since"),
                    "value_error",
                    format!("Value error, since {}", why.message()),
                ));
                None
            }
        });
    let token = raw.cursor.filter(|s| !s.is_empty());
    let decoded = token.map(|token| cursor_alone(&token, offset)).transpose();
    if let Err(error) = &decoded {
        errors.push(error.clone());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut query = ListingQuery {
        limit,
        offset,
        from: raw.from.filter(|s| !s.is_empty()),
        since,
        q: raw.q.filter(|s| !s.is_empty()),
        cursor: None,
    };
    if let Ok(Some(cursor)) = decoded {
        if cursor.filters != query.filters() {
            return Err(vec![cursor_error(
                "cursor was issued for other filters (from, since, q)",
            )]);
        }
        query.cursor = Some(cursor);
    }
    Ok(query)
}

/// The cursor `token` names, if this service issued it and no `offset`
/// comes with it (whether its filters are this request's is checked once
/// they are parsed).
fn cursor_alone(token: &str, offset: u64) -> Result<Cursor, FieldError> {
    let cursor = Cursor::decode(token).ok_or_else(|| cursor_error("cursor is not one this service issued"))?;
    if offset != 0 {
        return Err(cursor_error("cursor cannot be combined with a non-zero offset"));
    }
    Ok(cursor)
}

fn cursor_error(msg: &str) -> FieldError {
    FieldError::new("query", Some("cursor"), "value_error", format!("Value error, {msg}"))
}

fn collect(query: &str) -> RawParams {
    let mut raw = RawParams::default();
    for (key, value) in pairs(query) {
        let (slot, plus_is_space) = match key.as_str() {
            "limit" => (&mut raw.limit, true),
            "offset" => (&mut raw.offset, true),
            "from" => (&mut raw.from, false),
            "since" => (&mut raw.since, true),
            "q" => (&mut raw.q, true),
            "cursor" => (&mut raw.cursor, true),
            _ => continue,
        };
        *slot = Some(decode(value, plus_is_space));
    }
    raw
}

/// A query string's parameters in order: each key decoded (`+` a space),
/// its value as sent (decoded by the caller, which knows what `+` means in it).
pub(crate) fn pairs(query: &str) -> impl Iterator<Item = (String, &str)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key, true), value)
    })
}

/// A query string's key or value, percent-decoded (`+` as a space when
/// `plus_is_space`), invalid UTF-8 replaced.
pub(crate) fn decode(text: &str, plus_is_space: bool) -> String {
    let spaced;
    let text = if plus_is_space {
        spaced = text.replace('+', " ");
        spaced.as_str()
    } else {
        text
    };
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// An integer parameter in `min..=max`, or `default` when absent.
pub(crate) fn number(
    raw: Option<String>,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
    errors: &mut Vec<FieldError>,
) -> u64 {
    let Some(text) = raw else { return default };
    let error = |kind, msg: String| FieldError::new("query", Some(name), kind, msg);
    // i128 holds every u64 and every negative a caller may send, so range
    // errors are reported as range errors, not as parse failures.
    match text.trim().parse::<i128>() {
        Ok(value) if value < i128::from(min) => errors.push(error(
            "greater_than_equal",
            format!("Input should be greater than or equal to {min}"),
        )),
        Ok(value) if value > i128::from(max) => errors.push(error(
            "less_than_equal",
            format!("Input should be less than or equal to {max}"),
        )),
        Ok(value) => return value as u64,
        Err(_) => errors.push(error(
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer".into(),
        )),
    }
    default
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(query: &str) -> Vec<(String, &'static str)> {
        parse(query)
            .unwrap_err()
            .into_iter()
            .map(|e| (serde_json::to_string(&e.loc).unwrap(), e.kind))
            .collect()
    }

    #[test]
    fn defaults() {
        let q = parse("").unwrap();
        assert_eq!((q.limit, q.offset, q.from, q.since, q.q), (50, 0, None, None, None));
    }

    #[test]
    fn unencoded_plus_in_from_is_kept() {
        assert_eq!(
            parse("from=+919876543210").unwrap().from.as_deref(),
            Some("+919876543210")
        );
        assert_eq!(
            parse("from=%2B919876543210").unwrap().from.as_deref(),
            Some("+919876543210")
        );
    }

    #[test]
    fn plus_is_a_space_elsewhere() {
        assert_eq!(parse("q=hello+world").unwrap().q.as_deref(), Some("hello world"));
        assert_eq!(parse("q=a%2Bb").unwrap().q.as_deref(), Some("a+b"));
        assert_eq!(parse("q=caf%C3%A9").unwrap().q.as_deref(), Some("café"));
    }

    #[test]
    fn all_parameters_together() {
        let q = parse("limit=2&offset=4&from=+1&since=2025-01-15T09:30:00Z&q=Hi&other=x").unwrap();
        assert_eq!((q.limit, q.offset), (2, 4));
        assert_eq!(q.from.as_deref(), Some("+1"));
        assert_eq!(q.since.unwrap().text, "2025-01-15T09:30:00Z");
        assert_eq!(q.q.as_deref(), Some("Hi"));
    }

    #[test]
    fn last_repeat_wins_and_empty_filters_nothing() {
        assert_eq!(parse("limit=5&limit=7").unwrap().limit, 7);
        let q = parse("from=&since=&q=").unwrap();
        assert_eq!((q.from, q.since, q.q), (None, None, None));
    }

    #[test]
    fn limit_bounds() {
        assert_eq!(parse("limit=1").unwrap().limit, 1);
        assert_eq!(parse("limit=100").unwrap().limit, 100);
        assert_eq!(
            kinds("limit=0"),
            [(r#"["query","limit"]"#.into(), "greater_than_equal")]
        );
        assert_eq!(kinds("limit=101"), [(r#"["query","limit"]"#.into(), "less_than_equal")]);
        assert_eq!(
            kinds("limit=-1"),
            [(r#"["query","limit"]"#.into(), "greater_than_equal")]
        );
        assert_eq!(kinds("limit=abc"), [(r#"["query","limit"]"#.into(), "int_parsing")]);
        assert_eq!(kinds("limit="), [(r#"["query","limit"]"#.into(), "int_parsing")]);
        assert_eq!(kinds("limit=2.5"), [(r#"["query","limit"]"#.into(), "int_parsing")]);
        assert_eq!(
            kinds("limit=99999999999999999999"),
            [(r#"["query","limit"]"#.into(), "less_than_equal")]
        );
        assert_eq!(
            kinds("limit=999999999999999999999999999999999999999999"),
            [(r#"["query","limit"]"#.into(), "int_parsing")]
        );
    }

    #[test]
    fn offset_bounds() {
        assert_eq!(parse("offset=0").unwrap().offset, 0);
        assert_eq!(parse("offset=1000000").unwrap().offset, 1_000_000);
        assert_eq!(
            kinds("offset=-1"),
            [(r#"["query","offset"]"#.into(), "greater_than_equal")]
        );
        assert_eq!(
            kinds("offset=18446744073709551616"),
            [(r#"["query","offset"]"#.into(), "less_than_equal")]
        );
        assert_eq!(kinds("offset=x"), [(r#"["query","offset"]"#.into(), "int_parsing")]);
    }

    #[test]
    fn a_cursor_continues_only_its_own_filters() {
        let issued = |query: &str| {
            let query = parse(query).unwrap();
            Cursor {
                unix_micros: 7,
                message_id: "m7".into(),
                filters: query.filters(),
            }
            .encode()
        };
        let token = issued("from=+1&q=hi");
        let continued = parse(&format!("q=hi&from=+1&limit=3&cursor={token}")).unwrap();
        assert_eq!(
            continued.cursor.map(|c| (c.unix_micros, c.message_id)),
            Some((7, "m7".into()))
        );
        assert!(parse("cursor=").unwrap().cursor.is_none(), "empty means none");
        for query in [
            format!("from=+1&cursor={token}"),
            format!("from=+2&q=hi&cursor={token}"),
            format!("from=+1&q=hi&offset=5&cursor={token}"),
            "cursor=garbage".to_owned(),
        ] {
            assert_eq!(
                kinds(&query),
                [(r#"["query","cursor"]"#.into(), "value_error")],
                "{query}"
            );
        }
        assert_eq!(kinds("limit=0&cursor=garbage").len(), 2, "reported beside other errors");
    }

    #[test]
    fn bad_since_and_several_errors() {
        assert_eq!(
            kinds("since=yesterday"),
            [(r#"["query","since"]"#.into(), "value_error")]
        );
        assert_eq!(kinds("limit=0&offset=-5&since=2025-13-01T00:00:00Z").len(), 3);
    }
}
