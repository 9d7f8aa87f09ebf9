//! The PostgreSQL layout and its migration, safe when several hosts start
//! at once.
//!
//! Keys and searched text are `COLLATE "C"`: comparisons are of bytes, as in
//! SQLite, whatever the database's default collation (`en_US` would order ids
//! differently). `text_folded` is the text folded by `storage::fold` (see
//! `folding`); a trigram GIN index on it narrows `q`'s `LIKE`, which
//! PostgreSQL then rechecks exactly. For the trigrams of non-Latin scripts
//! the database's `LC_CTYPE` must know them (`C.UTF-8` or a real locale; the
//! README says so), or a search of such text reads every row (still exact).
//!
//! Counts are kept without a hot row: a statement-level trigger appends one
//! `count_deltas` row per (sender, hour) that an insert or delete statement
//! touched, in the statement's own transaction, so no two writers ever update
//! the same row. `compact` later folds the deltas into `sender_counts`,
//! `hourly_counts` and `totals`; reads add the deltas not folded yet. Rows
//! inserted, deleted or updated by hand (psql) are counted the same way.
//! `copy_progress` is where `inlet copy` resumes (see `copy`).
//!
//! `removed_ids` remembers the id of every deleted row (by any `DELETE`),
//! with its `created_at` and the time of its removal, until the retention
//! policy forgets it (`removals`); the insert statement skips remembered ids
//! (`rows::INSERT`), so a redelivery is `duplicate`. That statement reads
//! them in its own snapshot, which misses a removal committed while it ran
//! (one it waited for, on the row's conflict): `messages_not_removed` looks
//! again after the insert, in a snapshot of its own, and fails the statement
//! as a serialization failure (`unavailable`: the sender's retry is then a
//! `duplicate`). Retention finds aged rows by `messages_by_age`. Version 1
//! had none of these.
//!
//! `tx` and `seq` place each row in the feed (see `feed`), by
//! `messages_by_feed`. Versions 1 and 2 had neither: their rows get `tx` 1
//! and numbers in the order the table holds them (the upgrade rewrites the
//! table once).
//!
//! `forward_position` and `forward_retries` are forwarding's (see
//! `forward`), from version 4, and `forward_lead` from version 5; a retry row goes with its message (a trigger,
//! not a foreign key: a `TRUNCATE messages` by hand still works).

use tokio_postgres::{Client, GenericClient};

use crate::storage::hour_of;

/// Bumped whenever the layout changes shape; `ping` checks it.
pub(super) const VERSION: i32 = 5;

/// Serialises migrations between hosts (any constant shared by all of them).
const MIGRATION_LOCK: i64 = 0x696e_6c65_745f_6d31;

const SCHEMA: &str = concat!(
    "
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE inlet_schema (
    id      int PRIMARY KEY CHECK (id = 1),
    version int NOT NULL
);
CREATE TABLE messages (
    message_id  text COLLATE \"C\" PRIMARY KEY,
    from_msisdn text COLLATE \"C\" NOT NULL,
    to_msisdn   text COLLATE \"C\" NOT NULL,
    ts          text NOT NULL,
    text        text,
    created_at  text NOT NULL,
    ts_micros   bigint NOT NULL,
    text_folded text COLLATE \"C\",
    raw_text    bytea,
    raw_folded  bytea
);
CREATE INDEX messages_by_instant ON messages (ts_micros, message_id);
CREATE INDEX messages_by_sender ON messages (from_msisdn, ts_micros, message_id);
CREATE INDEX messages_by_trigram ON messages USING gin (text_folded gin_trgm_ops);

CREATE TABLE count_deltas (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_msisdn text COLLATE \"C\" NOT NULL,
    hour        bigint NOT NULL,
    messages    bigint NOT NULL
);
CREATE INDEX count_deltas_by_sender ON count_deltas (from_msisdn);
CREATE INDEX count_deltas_by_hour ON count_deltas (hour);
CREATE TABLE sender_counts (
    from_msisdn text COLLATE \"C\" PRIMARY KEY,
    messages    bigint NOT NULL
);
CREATE INDEX sender_counts_by_count ON sender_counts (messages DESC, from_msisdn);
CREATE TABLE hourly_counts (
    hour     bigint PRIMARY KEY,
    messages bigint NOT NULL
);
CREATE TABLE totals (
    id       int PRIMARY KEY CHECK (id = 1),
    messages bigint NOT NULL,
    senders  bigint NOT NULL
);
INSERT INTO totals VALUES (1, 0, 0);
CREATE TABLE copy_progress (
    source     text PRIMARY KEY,
    last_rowid bigint NOT NULL
);

CREATE FUNCTION inlet_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO count_deltas (from_msisdn, hour, messages)
        SELECT from_msisdn, ",
    hour_of!("ts_micros"),
    ", count(*) FROM inserted GROUP BY 1, 2;
    RETURN NULL;
END $$;
CREATE FUNCTION inlet_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO count_deltas (from_msisdn, hour, messages)
        SELECT from_msisdn, ",
    hour_of!("ts_micros"),
    ", -count(*) FROM deleted GROUP BY 1, 2;
    RETURN NULL;
END $$;
CREATE FUNCTION inlet_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO count_deltas (from_msisdn, hour, messages)
        SELECT from_msisdn, hour, sum(messages) FROM (
            SELECT from_msisdn, ",
    hour_of!("ts_micros"),
    " AS hour, -1 AS messages FROM deleted
            UNION ALL
            SELECT from_msisdn, ",
    hour_of!("ts_micros"),
    ", 1 FROM inserted) AS changed
        GROUP BY 1, 2 HAVING sum(messages) <> 0;
    RETURN NULL;
END $$;
CREATE FUNCTION inlet_count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE count_deltas, sender_counts, hourly_counts;
    UPDATE totals SET messages = 0, senders = 0;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_counted AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION inlet_count_inserted();
CREATE TRIGGER messages_uncounted AFTER DELETE ON messages
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION inlet_count_deleted();
CREATE TRIGGER messages_recounted AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS deleted NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION inlet_count_updated();
CREATE TRIGGER messages_emptied AFTER TRUNCATE ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION inlet_count_truncated();
"
);

/// From version 1 to 2: remembered ids of removed messages, and the index
/// retention reads.
const REMEMBER_REMOVED: &str = "
CREATE TABLE removed_ids (
    message_id text COLLATE \"C\" PRIMARY KEY,
    created_at text NOT NULL,
    removed_at text NOT NULL
);
CREATE INDEX removed_ids_by_age ON removed_ids (removed_at);
CREATE INDEX messages_by_age ON messages (created_at);
CREATE FUNCTION inlet_remember_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO removed_ids (message_id, created_at, removed_at)
        SELECT message_id, created_at,
               to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
        FROM deleted
        ON CONFLICT (message_id) DO UPDATE SET created_at = excluded.created_at, removed_at = excluded.removed_at;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_remembered AFTER DELETE ON messages
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION inlet_remember_deleted();
CREATE FUNCTION inlet_refuse_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted JOIN removed_ids USING (message_id)) THEN
        RAISE EXCEPTION 'a removal of a message being stored again committed meanwhile; retry'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_not_removed AFTER INSERT ON messages
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION inlet_refuse_removed();
";

/// From version 2 to 3: each row's place in the feed.
const FEED_ORDER: &str = "
CREATE SEQUENCE messages_feed_seq AS bigint;
ALTER TABLE messages
    ADD COLUMN tx xid8 NOT NULL DEFAULT '1',
    ADD COLUMN seq bigint NOT NULL DEFAULT nextval('messages_feed_seq');
ALTER TABLE messages ALTER COLUMN tx SET DEFAULT pg_current_xact_id();
ALTER SEQUENCE messages_feed_seq OWNED BY messages.seq;
CREATE UNIQUE INDEX messages_by_feed ON messages (tx, seq);
";

/// From version 3 to 4: forwarding's position and retries.
const FORWARDING: &str = "
CREATE TABLE forward_position (
    id  int PRIMARY KEY CHECK (id = 1),
    tx  xid8 NOT NULL,
    seq bigint NOT NULL
);
CREATE TABLE forward_retries (
    message_id      text COLLATE \"C\" PRIMARY KEY,
    attempts        int NOT NULL,
    next_attempt_at bigint NOT NULL,
    failed          boolean NOT NULL,
    last_error      text NOT NULL
);
CREATE INDEX forward_retries_due ON forward_retries (next_attempt_at) WHERE NOT failed;
CREATE FUNCTION inlet_forget_retries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM forward_retries r USING deleted d WHERE r.message_id = d.message_id;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_unforwarded AFTER DELETE ON messages
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION inlet_forget_retries();
CREATE FUNCTION inlet_forget_all_retries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE forward_retries;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_all_unforwarded AFTER TRUNCATE ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION inlet_forget_all_retries();
";

/// From version 4 to 5: forwarding's turn, a lease (version 4 had none).
const FORWARD_LEAD: &str = "
CREATE TABLE forward_lead (
    id     int PRIMARY KEY CHECK (id = 1),
    holder text NOT NULL,
    until  timestamptz NOT NULL
);
";

/// The steps from each version to the next: `UPGRADES[n - 1]` takes version
/// `n` to `n + 1`. A new database gets `SCHEMA` (version 1), then all of them.
const UPGRADES: [&str; 4] = [REMEMBER_REMOVED, FEED_ORDER, FORWARDING, FORWARD_LEAD];

/// Brings the database to `VERSION` in one transaction, under an advisory
/// lock so that hosts starting together apply it once (concurrent `CREATE
/// ... IF NOT EXISTS` can still collide in PostgreSQL's catalogs). Refuses a
/// database laid out by a newer release, and one not encoded in UTF-8.
pub(super) async fn migrate(client: &mut Client) -> anyhow::Result<()> {
    let encoding: String = client.query_one("SHOW server_encoding", &[]).await?.get(0);
    anyhow::ensure!(
        encoding == "UTF8",
        "the database's encoding is {encoding}; Inlet needs UTF8 (createdb -E UTF8)"
    );
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let found = match version(&tx).await? {
        None => {
            tx.batch_execute(SCHEMA).await?;
            tx.execute("INSERT INTO inlet_schema VALUES (1, 1)", &[]).await?;
            1
        }
        Some(found) if found > VERSION => {
            anyhow::bail!("the database has schema version {found}, newer than this release's {VERSION}")
        }
        Some(found) => found,
    };
    if found < VERSION {
        for upgrade in UPGRADES.iter().skip(usize::try_from(found - 1).unwrap_or(0)) {
            tx.batch_execute(upgrade).await?;
        }
        tx.execute("UPDATE inlet_schema SET version = $1", &[&VERSION]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The schema version, or `None` in a database Inlet never used.
pub(super) async fn version(client: &impl GenericClient) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('inlet_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_opt("SELECT version FROM inlet_schema", &[])
        .await?
        .map(|row| row.get(0)))
}

/// Whether a server takes writes, as the readiness probe asks it.
pub(super) enum Writable {
    /// A primary in read-write mode, with this schema version.
    Yes(Option<i32>),
    /// Why not: "a replica in recovery" or "read-only".
    No(&'static str),
}

/// Whether the server is a primary that takes writes, and its schema
/// version: one round trip, no write. A database without the schema (a
/// replica not caught up, a database recreated) fails with 42P01.
pub(super) async fn writable_version(client: &impl GenericClient) -> Result<Writable, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on',
                    (SELECT version FROM inlet_schema)",
            &[],
        )
        .await?;
    Ok(match (row.get(0), row.get(1)) {
        (true, _) => Writable::No("a replica in recovery"),
        (false, true) => Writable::No("read-only"),
        (false, false) => Writable::Yes(row.get(2)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_after_the_first_has_its_upgrade() {
        assert_eq!(UPGRADES.len(), usize::try_from(VERSION - 1).unwrap());
    }
}
