//! The exact test behind `q`, as the SQL function
//! `contains_folded(text, needle)`: `text` holds `needle` with ASCII letters
//! compared regardless of case (other characters byte for byte), as the
//! storage interface promises. A NULL text holds nothing.
//!
//! SQLite's `instr(lower(text), lower(?))` answers the same, but allocates a
//! folded copy of every text and folds the needle again for each row; the
//! first count of a common word checks a fifth of a million rows. Here the
//! folded needle is compiled once per statement (SQLite keeps it as the
//! argument's auxiliary data) and a short text is folded on the stack.

use memchr::memmem::Finder;
use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{FromSqlError, ValueRef};

/// Texts up to this many bytes are folded without allocating.
const FOLD_ON_STACK: usize = 512;

/// Makes `contains_folded` available on `conn`.
pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "contains_folded",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS,
        contains_folded,
    )
}

fn contains_folded(ctx: &mut Context<'_>) -> rusqlite::Result<bool> {
    let needle = ctx.get_or_create_aux(1, |needle| {
        Ok::<_, FromSqlError>(Finder::new(&needle.as_bytes()?.to_ascii_lowercase()).into_owned())
    })?;
    Ok(match ctx.get_raw(0) {
        ValueRef::Text(text) => holds(&needle, text),
        _ => false,
    })
}

/// Whether `text`, ASCII-lowercased, contains what `needle` finds.
fn holds(needle: &Finder<'_>, text: &[u8]) -> bool {
    if text.len() <= FOLD_ON_STACK {
        let mut buffer = [0u8; FOLD_ON_STACK];
        let folded = &mut buffer[..text.len()];
        folded.copy_from_slice(text);
        folded.make_ascii_lowercase();
        needle.find(folded).is_some()
    } else {
        needle.find(&text.to_ascii_lowercase()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    fn contains(text: Option<&str>, needle: &str) -> bool {
        let conn = Connection::open_in_memory().expect("in-memory database");
        super::register(&conn).expect("function registered");
        conn.query_row("SELECT contains_folded(?1, ?2)", (text, needle), |row| row.get(0))
            .expect("function runs")
    }

    #[test]
    fn folds_ascii_letters_only() {
        assert!(contains(Some("Where is my REFUND?"), "refund"));
        assert!(contains(Some("where is my refund?"), "ReFuNd"));
        assert!(!contains(Some("ÉCOLE"), "école"), "non-ASCII letters compare exactly");
        assert!(contains(Some("ÉCOLE"), "École"));
        assert!(!contains(Some("refun d"), "refund"));
        assert!(!contains(None, "refund"));
        assert!(contains(Some("anything"), ""));
    }

    #[test]
    fn long_texts_are_searched_whole() {
        let text = format!("{}Needle", "x".repeat(super::FOLD_ON_STACK * 3));
        assert!(contains(Some(&text), "nEEDLE"));
        assert!(!contains(Some(&text), "needles"));
    }

    #[test]
    fn agrees_with_instr_of_lower() {
        let conn = Connection::open_in_memory().expect("in-memory database");
        super::register(&conn).expect("function registered");
        let texts = ["Hello World", "hello", "HELLO wörld", "Wörld", "%_\\", "a\u{212A}b", ""];
        let needles = ["hello", "WORLD", "ö", "Ö", "%_", "\\", "K", "k", "o w", "lo w"];
        for text in texts {
            for needle in needles {
                let (ours, sqlite): (bool, bool) = conn
                    .query_row(
                        "SELECT contains_folded(?1, ?2), instr(lower(?1), lower(?2)) > 0",
                        (text, needle),
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .expect("both run");
                assert_eq!(ours, sqlite, "{text:?} contains {needle:?}");
            }
        }
    }
}
