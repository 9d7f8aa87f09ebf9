//! The one definition of how `q` ignores case: a message matches when the
//! needle is a substring of its text after both are lowercased by Unicode's
//! full mapping, as Rust's `str::to_lowercase` does it (`É`→`é`, `Σ`→`σ` or
//! a final `ς`, `İ`→`i̇`, two characters).
//!
//! The writer stores each text folded this way beside the text
//! (`messages.text_folded`) and the trigram index holds that copy; a search
//! folds its needle with the same function and compares bytes. So no
//! database's own `lower()` or collation takes part, and every backend can
//! agree on the answer. The schema's triggers read the stored copy only, so
//! the database stays editable with the `sqlite3` shell (a row inserted
//! there without `text_folded` is simply not found by `q`).

/// `text` as `q` compares it.
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}
