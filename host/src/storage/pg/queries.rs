//! The read queries on PostgreSQL: filtered pages and aggregates, each read
//! in one `REPEATABLE READ READ ONLY` transaction so that a page and its
//! total (or the parts of the stats) agree. Counts come from the summaries
//! `compact` keeps plus the deltas it has not folded yet (see `schema`).

use deadpool_postgres::{Client, Transaction};
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;

use super::{codec, rows};
use crate::bindings::inlet::service::storage::{Message, MessageFilter, MessageStats, Page, PageRequest, SenderCount};
use crate::storage::{MICROS_PER_HOUR, fold};

type Value = Box<dyn ToSql + Sync + Send>;

/// A `WHERE` clause being built, with the values its `$n` placeholders take.
#[derive(Default)]
struct Conditions {
    clauses: Vec<String>,
    values: Vec<Value>,
}

impl Conditions {
    /// Adds `value` as the next parameter; its placeholder.
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    fn of(filter: &MessageFilter) -> Self {
        let mut conditions = Self::default();
        if let Some(from) = &filter.from {
            let from = conditions.bind(codec::key(from).into_owned());
            conditions.clauses.push(format!("from_msisdn = {from}"));
        }
        if let Some(since) = filter.since_unix_micros {
            let since = conditions.bind(since);
            conditions.clauses.push(format!("ts_micros >= {since}"));
        }
        if let Some(needle) = &filter.text_contains {
            conditions.holding(&fold(needle));
        }
        conditions
    }

    /// `q`: `LIKE` on the searchable folded text (narrowed by the trigram
    /// index), and the exact bytes where a text held U+0000 (see `codec`).
    fn holding(&mut self, folded: &str) {
        let pattern = self.bind(codec::contains_pattern(folded));
        self.clauses.push(format!("text_folded LIKE {pattern}"));
        let exact = self.bind(folded.as_bytes().to_vec());
        self.clauses.push(format!(
            "(raw_folded IS NULL OR position({exact}::bytea IN raw_folded) > 0)"
        ));
        if folded.contains('\0') {
            self.clauses.push("raw_folded IS NOT NULL".into());
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// Starts the snapshot a read runs in.
async fn snapshot(client: &mut Client) -> Result<Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

/// One page and the filtered total, from one snapshot (sent together).
pub(super) async fn list(client: &mut Client, request: &PageRequest) -> Result<Page, tokio_postgres::Error> {
    let tx = snapshot(client).await?;
    let (total, (messages, more)) = tokio::try_join!(count(&tx, &request.filter), page(&tx, request))?;
    tx.commit().await?;
    Ok(Page {
        messages,
        total: total as u64,
        more,
    })
}

/// The sum of `messages` in `table` (`sender_counts`, `hourly_counts` or
/// `count_deltas`) where `condition` holds, as a bigint, 0 when none.
fn summed(table: &str, condition: &str) -> String {
    format!("COALESCE((SELECT sum(messages) FROM {table} {condition}), 0)::bigint")
}

/// How many rows match: the common shapes from the summaries and deltas,
/// the rest by counting rows through an index.
async fn count(tx: &Transaction<'_>, filter: &MessageFilter) -> Result<i64, tokio_postgres::Error> {
    let (sql, values): (String, Conditions) = match (&filter.from, filter.since_unix_micros, &filter.text_contains) {
        (None, None, None) => (
            format!("SELECT {} + {}", summed("totals", ""), summed("count_deltas", "")),
            Conditions::default(),
        ),
        (Some(from), None, None) => {
            let mut values = Conditions::default();
            let from = values.bind(codec::key(from).into_owned());
            let condition = format!("WHERE from_msisdn = {from}");
            (
                format!(
                    "SELECT {} + {}",
                    summed("sender_counts", &condition),
                    summed("count_deltas", &condition)
                ),
                values,
            )
        }
        (None, Some(since), None) => {
            // Whole hours after the one holding `since` from the summaries;
            // that hour's rows one by one.
            let hour = since.div_euclid(MICROS_PER_HOUR);
            let mut values = Conditions::default();
            let later = format!("WHERE hour > {}", values.bind(hour));
            let (since, until) = (
                values.bind(since),
                values.bind((hour + 1).saturating_mul(MICROS_PER_HOUR)),
            );
            (
                format!(
                    "SELECT {} + {} + (SELECT count(*) FROM messages WHERE ts_micros >= {since} AND ts_micros < {until})",
                    summed("hourly_counts", &later),
                    summed("count_deltas", &later)
                ),
                values,
            )
        }
        _ => {
            let conditions = Conditions::of(filter);
            (
                format!("SELECT count(*) FROM messages {}", conditions.sql()),
                conditions,
            )
        }
    };
    let statement = tx.prepare_cached(&sql).await?;
    Ok(tx.query_one(&statement, &values.params()).await?.get(0))
}

/// The rows of one page, and whether another matching row follows them
/// (one row more is read to know).
async fn page(tx: &Transaction<'_>, request: &PageRequest) -> Result<(Vec<Message>, bool), tokio_postgres::Error> {
    let mut conditions = Conditions::of(&request.filter);
    if let Some(after) = &request.after {
        let micros = conditions.bind(after.unix_micros);
        let id = conditions.bind(codec::key(&after.message_id).into_owned());
        conditions
            .clauses
            .push(format!("(ts_micros, message_id) > ({micros}, {id})"));
    }
    let limit = conditions.bind(i64::from(request.limit) + 1);
    let offset = conditions.bind(i64::try_from(request.offset).unwrap_or(i64::MAX));
    // The inner query finds the page's keys from an index alone where it
    // can, so rows a deep offset skips are never read from the table.
    let sql = format!(
        "SELECT {} FROM messages WHERE (ts_micros, message_id) IN (
             SELECT ts_micros, message_id FROM messages {}
             ORDER BY ts_micros, message_id LIMIT {limit} OFFSET {offset})
         ORDER BY ts_micros, message_id",
        rows::MESSAGE_COLUMNS,
        conditions.sql()
    );
    let statement = tx.prepare_cached(&sql).await?;
    let rows = tx.query(&statement, &conditions.params()).await?;
    let mut messages: Vec<Message> = rows.iter().map(rows::message).collect();
    let limit = request.limit as usize;
    let more = messages.len() > limit;
    messages.truncate(limit);
    Ok((messages, more))
}

/// Each sender's messages not folded yet, with its folded count.
const CHANGED_SENDERS: &str = "
WITH delta AS (
    SELECT from_msisdn, sum(messages)::bigint AS messages FROM count_deltas GROUP BY from_msisdn
), changed AS (
    SELECT delta.from_msisdn, COALESCE(s.messages, 0) AS folded, COALESCE(s.messages, 0) + delta.messages AS messages
    FROM delta LEFT JOIN sender_counts s USING (from_msisdn)
)";

/// Totals, top senders (count descending, sender ascending) and the first
/// and last `ts` by instant, from one snapshot (sent together).
pub(super) async fn stats(client: &mut Client, top_senders: u32) -> Result<MessageStats, tokio_postgres::Error> {
    let tx = snapshot(client).await?;
    let totals = format!(
        "{CHANGED_SENDERS}
         SELECT t.messages + COALESCE((SELECT sum(messages - folded) FROM changed), 0)::bigint,
                t.senders + (SELECT count(*) FILTER (WHERE messages > 0) - count(*) FILTER (WHERE folded > 0) FROM changed)
         FROM totals t"
    );
    // A sender without deltas has its final count in `sender_counts`: the
    // first N of those, merged with every changed sender, hold the top N.
    let top = format!(
        "{CHANGED_SENDERS}, unchanged AS (
            SELECT from_msisdn, messages FROM sender_counts s
            WHERE NOT EXISTS (SELECT 1 FROM delta WHERE delta.from_msisdn = s.from_msisdn)
            ORDER BY messages DESC, from_msisdn LIMIT $1
         )
         SELECT from_msisdn, messages FROM unchanged
         UNION ALL SELECT from_msisdn, messages FROM changed WHERE messages > 0
         ORDER BY messages DESC, from_msisdn LIMIT $1"
    );
    let limit = i64::from(top_senders);
    let top_params: [&(dyn ToSql + Sync); 1] = [&limit];
    let (totals, top, first, last) = tokio::try_join!(
        tx.query_one(&totals, &[]),
        tx.query(&top, &top_params),
        tx.query_opt("SELECT ts FROM messages ORDER BY ts_micros, message_id LIMIT 1", &[]),
        tx.query_opt(
            "SELECT ts FROM messages ORDER BY ts_micros DESC, message_id DESC LIMIT 1",
            &[]
        ),
    )?;
    tx.commit().await?;
    Ok(MessageStats {
        total_messages: totals.get::<_, i64>(0) as u64,
        senders_count: totals.get::<_, i64>(1) as u64,
        top_senders: top
            .into_iter()
            .map(|row| SenderCount {
                from: codec::unkey(row.get(0)),
                count: row.get::<_, i64>(1) as u64,
            })
            .collect(),
        first_ts: first.map(|row| codec::unkey(row.get(0))),
        last_ts: last.map(|row| codec::unkey(row.get(0))),
    })
}
