//! A consistent copy of a SQLite database that a server may be using.
//!
//! `VACUUM INTO` reads the database in one read transaction, so the copy is
//! the database as of one commit, beside a writer that goes on committing
//! (WAL). It is written to a hidden file beside the target, synced (SQLite
//! does not sync it), checked, and only then put in place, so the target is
//! never a half-written copy.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};

use super::schema;

/// What to do about a file already at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Keep it: the copy fails (also when the file appears while copying).
    Keep,
    /// Replace it, once the copy is complete.
    Replace,
}

/// What a copy holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Stored messages in the copy.
    pub messages: i64,
    /// The copy's size in bytes.
    pub bytes: u64,
}

/// Copies the database at `source` to `target`.
pub fn copy(source: &Path, target: &Path, existing: Existing) -> anyhow::Result<Copied> {
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
    place(&partial, target, existing)?;
    Ok(copied)
}

/// Puts the complete copy at `target`, durably.
fn place(partial: &Path, target: &Path, existing: Existing) -> anyhow::Result<()> {
    let placed = match existing {
        Existing::Replace => std::fs::rename(partial, target),
        // A link is made only where no file is: never over one that appeared.
        Existing::Keep => std::fs::hard_link(partial, target).and_then(|()| std::fs::remove_file(partial)),
    };
    if let Err(error) = placed {
        let _ = std::fs::remove_file(partial);
        return Err(error).with_context(|| format!("cannot put the copy at {}", target.display()));
    }
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
    Ok(())
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
