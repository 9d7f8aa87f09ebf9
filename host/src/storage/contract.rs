//! The bounds of the storage interface that every backend enforces, so that
//! a buggy guest gets `invalid-argument` rather than a database error (see
//! `wit/service.wit`).

use std::time::Duration;

use super::StoreError;
use crate::bindings::inlet::service::storage::{FeedPosition, Message, PageRequest};

/// Most messages one `insert_batch` takes (a WhatsApp delivery carries up to 1000).
pub const MAX_INSERT_BATCH: usize = 1000;

/// Longest `message-id`, in bytes of UTF-8. Keys are indexed, and an index
/// entry must fit a third of a PostgreSQL page even when every byte is
/// escaped to two (see `pg::codec`).
pub const MAX_ID_BYTES: usize = 1024;

/// Longest `from` and `to`, in bytes of UTF-8 (indexed beside the id).
pub const MAX_MSISDN_BYTES: usize = 256;

/// Longest one read (a page, the stats) may run before the backend stops
/// it (`unavailable`). A request past its deadline is abandoned, but its
/// query would otherwise run on, holding a reader or a connection.
pub const READ_TIME_LIMIT: Duration = Duration::from_secs(15);

/// Largest `limit` and `top-senders` the storage interface accepts.
const MAX_PAGE: u32 = 100;

/// Rejects, as `InvalidArgument`, a message whose keys are longer than the
/// interface allows.
pub fn check_message(message: &Message) -> Result<(), StoreError> {
    let fields = [
        ("message-id", &message.message_id, MAX_ID_BYTES),
        ("from", &message.from, MAX_MSISDN_BYTES),
        ("to", &message.to, MAX_MSISDN_BYTES),
    ];
    match fields.into_iter().find(|(_, value, most)| value.len() > *most) {
        None => Ok(()),
        Some((field, value, most)) => Err(StoreError::InvalidArgument(format!(
            "{field} is {} bytes; at most {most}",
            value.len()
        ))),
    }
}

/// Whether a message with `message_id` could be stored at all: a longer id
/// is not looked up (it is simply not found).
pub fn is_storable_id(message_id: &str) -> bool {
    message_id.len() <= MAX_ID_BYTES
}

/// Rejects, as `InvalidArgument`, a batch of more than `MAX_INSERT_BATCH`
/// messages, or one with a message `check_message` refuses.
pub fn check_insert_batch(messages: &[Message]) -> Result<(), StoreError> {
    if messages.len() > MAX_INSERT_BATCH {
        return Err(StoreError::InvalidArgument(format!(
            "{} messages in one batch; at most {MAX_INSERT_BATCH}",
            messages.len()
        )));
    }
    messages.iter().try_for_each(check_message)
}

/// Rejects, as `InvalidArgument`, a `limit` outside 1..=100 or an `offset` above `i64::MAX`.
pub fn check_page_request(request: &PageRequest) -> Result<(), StoreError> {
    check_count("limit", request.limit, MAX_PAGE)?;
    if i64::try_from(request.offset).is_err() {
        return Err(StoreError::InvalidArgument(format!(
            "offset {} is too large",
            request.offset
        )));
    }
    Ok(())
}

/// Largest `limit` of one feed read.
pub const MAX_FEED_LIMIT: u32 = 1000;

/// Longest wait on the feed, in seconds.
const MAX_FEED_WAIT_SECONDS: u32 = 25;

/// Rejects, as `InvalidArgument`, a feed read's `limit` outside 1..=`MAX_FEED_LIMIT`.
pub fn check_feed_limit(limit: u32) -> Result<(), StoreError> {
    check_count("limit", limit, MAX_FEED_LIMIT)
}

/// Rejects, as `InvalidArgument`, a feed wait outside 1..=`MAX_FEED_WAIT_SECONDS`.
pub fn check_feed_wait(seconds: u32) -> Result<(), StoreError> {
    check_count("timeout-seconds", seconds, MAX_FEED_WAIT_SECONDS)
}

/// Rejects, as `InvalidArgument`, an argument `what` outside 1..=`most`.
fn check_count(what: &str, value: u32, most: u32) -> Result<(), StoreError> {
    if (1..=most).contains(&value) {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "{what} {value} is not in 1..={most}"
        )))
    }
}

/// Whether the feed holds something after `after` when its last message is
/// at `head` (positions order by epoch, then seq).
pub fn follows(head: FeedPosition, after: FeedPosition) -> bool {
    (head.epoch, head.seq) > (after.epoch, after.seq)
}

/// Rejects, as `InvalidArgument`, a `top_senders` outside 1..=100.
pub fn check_top_senders(top_senders: u32) -> Result<(), StoreError> {
    check_count("top-senders", top_senders, MAX_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outside_their_bounds_are_invalid_arguments() {
        for (checked, most) in [
            (check_feed_limit as fn(u32) -> Result<(), StoreError>, MAX_FEED_LIMIT),
            (check_feed_wait, MAX_FEED_WAIT_SECONDS),
            (check_top_senders, MAX_PAGE),
        ] {
            assert!(checked(1).is_ok() && checked(most).is_ok());
            for outside in [0, most + 1] {
                assert!(
                    matches!(checked(outside), Err(StoreError::InvalidArgument(_))),
                    "{outside}"
                );
            }
        }
    }
}
