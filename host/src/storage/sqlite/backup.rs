//! A consistent copy of a SQLite database that a server may be using.
//!
//! `VACUUM INTO` reads the database in one read transaction, so the copy is
//! the database as of one commit, beside a writer that goes on committing
//! (WAL). It is written to a hidden file beside the target, synced (SQLite
//! does not sync it), checked, and only then renamed over the target, so
//! the target is never a half-written copy.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};

use super::schema;

/// What a copy holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Stored messages in the copy.
    pub messages: i64,
    /// The copy's size in bytes.
    pub bytes: u64,
}

/// Copies the database at `source` to `target` (replacing it, if any).
pub fn copy(source: &Path, target: &Path) -> anyhow::Result<Copied> {
    // Never created here: a mistyped path is an error, not an empty copy.
    let conn = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("cannot open the database {}", source.display()))?;
    schema::prepare_reader(&conn)?;
    let partial = partial_path(target)?;
    let _ = std::fs::remove_file(&partial);
    let written = write_copy(&conn, &partial);
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    let copied = written?;
    std::fs::rename(&partial, target).with_context(|| format!("cannot move the copy to {}", target.display()))?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(copied)
}

/// The hidden file a copy is written to before it is complete.
fn partial_path(target: &Path) -> anyhow::Result<PathBuf> {
    let name = target
        .file_name()
        .with_context(|| format!("{} names no file", target.display()))?;
    Ok(target.with_file_name(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id())))
}

fn write_copy(conn: &Connection, partial: &Path) -> anyhow::Result<Copied> {
    let path = partial.to_str().context("the target path is not UTF-8")?;
    conn.execute("VACUUM INTO ?1", [path])
        .with_context(|| format!("cannot write {}", partial.display()))?;
    File::open(partial)?.sync_all()?;
    let copy = Connection::open_with_flags(partial, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = copy.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    anyhow::ensure!(check == "ok", "the copy failed its integrity check: {check}");
    let messages = copy.query_row("SELECT COUNT(*) FROM messages", [], |row| row.get(0))?;
    Ok(Copied {
        messages,
        bytes: std::fs::metadata(partial)?.len(),
    })
}
