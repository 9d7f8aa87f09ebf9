//! Reading one message by id and removing messages: one by its id (an
//! erasure), and the oldest ones by age (retention). Each removal is one
//! statement that commits by itself; the triggers of `schema` count it and
//! remember the removed ids in the same transaction.

use deadpool_postgres::GenericClient;

use super::{codec, rows};
use crate::bindings::inlet::service::storage::{Removal, StoredMessage};
use crate::storage::{Expired, Expiry};

/// The message stored under `message_id`, with its `created_at`.
pub(super) async fn get(
    client: &impl GenericClient,
    message_id: &str,
) -> Result<Option<StoredMessage>, tokio_postgres::Error> {
    let query = format!("SELECT {} FROM messages WHERE message_id = $1", rows::STORED_COLUMNS);
    let statement = client.prepare_cached(&query).await?;
    let row = client.query_opt(&statement, &[&codec::key(message_id)]).await?;
    Ok(row.as_ref().map(rows::stored))
}

/// Removes the message stored under `message_id`, durably.
pub(super) async fn remove(client: &impl GenericClient, message_id: &str) -> Result<Removal, tokio_postgres::Error> {
    let statement = client
        .prepare_cached("DELETE FROM messages WHERE message_id = $1")
        .await?;
    let removed = client.execute(&statement, &[&codec::key(message_id)]).await?;
    Ok(if removed == 0 {
        Removal::NotFound
    } else {
        Removal::Removed
    })
}

/// Removes at most `expiry.limit` of the messages stored before
/// `expiry.stored_before`, oldest first (skipping what forwarding owes when
/// `expiry.keep_owed`), then forgets at most as many
/// remembered ids `expiry` lets go. Rows another host is removing at the
/// same moment are skipped, not waited for, so hosts sharing the database
/// can run their steps at once.
pub(super) async fn expire(client: &impl GenericClient, expiry: &Expiry) -> Result<Expired, tokio_postgres::Error> {
    let limit = i64::from(expiry.limit);
    let aged = client
        .prepare_cached(
            "DELETE FROM messages WHERE message_id IN (
                 SELECT message_id FROM messages m WHERE created_at < $1
                     AND NOT ($3 AND (
                         COALESCE((m.tx, m.seq) > (SELECT p.tx, p.seq FROM forward_position p), false)
                         OR EXISTS (SELECT 1 FROM forward_retries r WHERE r.message_id = m.message_id)))
                 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .await?;
    let messages = client
        .execute(&aged, &[&expiry.stored_before, &limit, &expiry.keep_owed])
        .await?;
    let forgettable = client
        .prepare_cached(
            "DELETE FROM removed_ids WHERE message_id IN (
                 SELECT message_id FROM removed_ids WHERE removed_at < $1 AND created_at < $2
                 ORDER BY removed_at LIMIT $3 FOR UPDATE SKIP LOCKED)",
        )
        .await?;
    let forgotten_ids = client
        .execute(&forgettable, &[&expiry.removed_before, &expiry.stored_before, &limit])
        .await?;
    Ok(Expired {
        messages,
        forgotten_ids,
    })
}
