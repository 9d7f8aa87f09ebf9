//! Strict ISO-8601 UTC timestamps: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
//!
//! The shape is checked byte by byte (no offsets, no lowercase `t`/`z`, no
//! missing seconds) and the date and time must exist on the calendar.

use chrono::{NaiveDate, NaiveTime};

/// The shape `parse` accepts, as a JSON Schema pattern (the calendar check
/// is `format: date-time`'s): the OpenAPI document states it.
pub(crate) const PATTERN: &str =
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z$";

/// A timestamp that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UtcTimestamp {
    /// The text exactly as received.
    pub text: String,
    /// The instant, in microseconds since the Unix epoch (sub-microsecond
    /// digits are truncated).
    pub unix_micros: i64,
}

/// Why a string is not an accepted timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimestampError {
    /// Not of the form `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
    Shape,
    /// Well formed, but no such date or time exists (e.g. February 30th).
    NotOnCalendar,
}

impl TimestampError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Shape => "must be an ISO-8601 UTC timestamp like 2025-01-15T10:00:00Z",
            Self::NotOnCalendar => "is not a real date and time",
        }
    }
}

/// Parses `text` as a strict ISO-8601 UTC timestamp.
pub(crate) fn parse(text: &str) -> Result<UtcTimestamp, TimestampError> {
    let bytes = text.as_bytes();
    let body = bytes.strip_suffix(b"Z").ok_or(TimestampError::Shape)?;
    if body.len() < 19 {
        return Err(TimestampError::Shape);
    }
    let (main, fraction) = body.split_at(19);
    let field = |at: usize, len: usize| digits(&main[at..at + len]);
    let separators_ok = main[4] == b'-' && main[7] == b'-' && main[10] == b'T' && main[13] == b':' && main[16] == b':';
    if !separators_ok {
        return Err(TimestampError::Shape);
    }
    let (year, month, day) = (field(0, 4), field(5, 2), field(8, 2));
    let (hour, minute, second) = (field(11, 2), field(14, 2), field(17, 2));
    let nanos = parse_fraction(fraction)?;
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (year, month, day, hour, minute, second)
    else {
        return Err(TimestampError::Shape);
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day);
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos);
    match (date, time) {
        (Some(date), Some(time)) => Ok(UtcTimestamp {
            text: text.to_owned(),
            unix_micros: date.and_time(time).and_utc().timestamp_micros(),
        }),
        _ => Err(TimestampError::NotOnCalendar),
    }
}

/// The value of a run of ASCII digits, or `None` if any byte is not a digit.
fn digits(run: &[u8]) -> Option<u32> {
    run.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Nanoseconds from an optional `.` followed by 1 to 9 digits.
fn parse_fraction(fraction: &[u8]) -> Result<u32, TimestampError> {
    let Some(run) = fraction.strip_prefix(b".") else {
        return if fraction.is_empty() {
            Ok(0)
        } else {
            Err(TimestampError::Shape)
        };
    };
    if run.is_empty() || run.len() > 9 {
        return Err(TimestampError::Shape);
    }
    let value = digits(run).ok_or(TimestampError::Shape)?;
    Ok(value * 10u32.pow(9 - run.len() as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_spec_example() {
        let ts = parse("2025-01-15T10:00:00Z").unwrap();
        assert_eq!(ts.text, "2025-01-15T10:00:00Z");
        assert_eq!(ts.unix_micros, 1_736_935_200_000_000);
    }

    #[test]
    fn fractions_order_by_instant() {
        let whole = parse("2025-01-15T10:00:00Z").unwrap();
        let half = parse("2025-01-15T10:00:00.5Z").unwrap();
        let nanos = parse("2025-01-15T10:00:00.123456789Z").unwrap();
        assert_eq!(half.unix_micros - whole.unix_micros, 500_000);
        assert_eq!(nanos.unix_micros - whole.unix_micros, 123_456);
    }

    #[test]
    fn accepts_leap_day_and_epoch_edges() {
        assert!(parse("2024-02-29T23:59:59Z").is_ok());
        assert_eq!(parse("1970-01-01T00:00:00Z").unwrap().unix_micros, 0);
        assert!(parse("1969-12-31T23:59:59Z").unwrap().unix_micros < 0);
    }

    #[test]
    fn rejects_bad_shapes() {
        for text in [
            "",
            "Z",
            "2025-01-15",
            "2025-01-15T10:00:00",
            "2025-01-15T10:00:00+00:00",
            "2025-01-15t10:00:00Z",
            "2025-01-15T10:00:00z",
            "2025-01-15 10:00:00Z",
            "2025-1-15T10:00:00Z",
            "25-01-15T10:00:00Z",
            "2025-01-15T10:00Z",
            "2025-01-15T10:00:00.Z",
            "2025-01-15T10:00:00.1234567891Z",
            "2025-01-15T10:00:00,5Z",
            "2025-01-15T10:0a:00Z",
            "+2025-01-15T10:00:00Z",
            "2025-01-15T10:00:00ZZ",
            "２０２５-01-15T10:00:00Z",
        ] {
            assert_eq!(parse(text), Err(TimestampError::Shape), "{text:?}");
        }
    }

    #[test]
    fn rejects_impossible_dates_and_times() {
        for text in [
            "2025-02-29T10:00:00Z",
            "2025-02-30T10:00:00Z",
            "2025-13-01T10:00:00Z",
            "2025-00-10T10:00:00Z",
            "2025-01-00T10:00:00Z",
            "2025-01-15T24:00:00Z",
            "2025-01-15T10:60:00Z",
            "2025-01-15T10:00:60Z",
        ] {
            assert_eq!(parse(text), Err(TimestampError::NotOnCalendar), "{text:?}");
        }
    }
}
