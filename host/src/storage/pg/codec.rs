//! How values that PostgreSQL's `text` cannot hold are stored.
//!
//! A `text` value never holds the character U+0000, which the storage
//! interface allows in every string (and the SQLite backend stores as is).
//! Keys (`message_id`, `from`, `to`) are compared and ordered, so they go
//! through an escape that keeps byte order and is prefix-free: U+0000 becomes
//! `\x01\x01` and U+0001 becomes `\x01\x02`. Under `COLLATE "C"` (bytes) the
//! escaped keys sort exactly as the originals do, so `ORDER BY message_id`
//! and the cursor's row comparison agree with SQLite's.
//!
//! A message text is searched, not ordered, and an escape would let a needle
//! match across an escape sequence. So a text holding U+0000 is stored with
//! U+FFFD in its place (what `LIKE` and the trigram index see) and its exact
//! bytes beside it (`raw_text`, `raw_folded`), which decide.

use std::borrow::Cow;

/// The byte that starts an escape sequence in a stored key.
const ESCAPE: char = '\u{1}';

/// `key` as stored: U+0000 and U+0001 escaped, order kept.
pub(super) fn key(key: &str) -> Cow<'_, str> {
    if !key.contains(['\0', ESCAPE]) {
        return Cow::Borrowed(key);
    }
    let mut stored = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        match c {
            '\0' => stored.push_str("\u{1}\u{1}"),
            ESCAPE => stored.push_str("\u{1}\u{2}"),
            c => stored.push(c),
        }
    }
    Cow::Owned(stored)
}

/// A stored key as it was given (the inverse of `key`). A U+0001 that
/// starts no escape (a key written by hand) is kept, with what follows it.
pub(super) fn unkey(stored: String) -> String {
    if !stored.contains(ESCAPE) {
        return stored;
    }
    let mut key = String::with_capacity(stored.len());
    let mut chars = stored.chars().peekable();
    while let Some(c) = chars.next() {
        let escaped = match chars.peek() {
            Some('\u{1}') if c == ESCAPE => Some('\0'),
            Some('\u{2}') if c == ESCAPE => Some(ESCAPE),
            _ => None,
        };
        match escaped {
            Some(original) => {
                key.push(original);
                chars.next();
            }
            None => key.push(c),
        }
    }
    key
}

/// A text as `LIKE` and the trigram index see it: U+0000 as U+FFFD.
pub(super) fn searchable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The exact bytes of a text that `searchable` changed; `None` when it kept it.
pub(super) fn raw(text: &str) -> Option<Vec<u8>> {
    text.contains('\0').then(|| text.as_bytes().to_vec())
}

/// A stored text as it was given: its raw bytes when it has them.
pub(super) fn text(searchable: Option<String>, raw: Option<Vec<u8>>) -> Option<String> {
    match raw {
        Some(bytes) => String::from_utf8(bytes).ok().or(searchable),
        None => searchable,
    }
}

/// `needle` as a `LIKE` pattern for "contains": `\`, `%` and `_` literal.
pub(super) fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in searchable(needle).chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_keep_their_byte_order() {
        let mut keys = vec![
            "", "\0", "\0\0", "\u{1}", "\u{1}\0", "\u{2}", "a", "a\0", "a\0b", "a\u{1}", "a\u{2}", "ab", "é",
        ];
        keys.sort_unstable();
        for k in &keys {
            assert!(!key(k).contains('\0'), "{k:?}");
            assert_eq!(unkey(key(k).into_owned()), *k);
        }
        let mut stored: Vec<String> = keys.iter().map(|k| key(k).into_owned()).collect();
        stored.sort_unstable();
        let back: Vec<String> = stored.into_iter().map(unkey).collect();
        assert_eq!(back, keys);
    }

    #[test]
    fn a_stray_escape_byte_written_by_hand_is_kept() {
        assert_eq!(unkey("a\u{1}b".into()), "a\u{1}b");
        assert_eq!(unkey("a\u{1}".into()), "a\u{1}");
        assert_eq!(unkey("\u{1}\u{1}\u{1}x".into()), "\0\u{1}x");
    }

    #[test]
    fn texts_with_nul_keep_their_bytes() {
        assert_eq!(searchable("a\0b"), "a\u{FFFD}b");
        let raw_bytes = raw("a\0b");
        assert_eq!(text(Some("a\u{FFFD}b".into()), raw_bytes).as_deref(), Some("a\0b"));
        assert_eq!(raw("plain"), None);
        assert_eq!(text(Some("plain".into()), None).as_deref(), Some("plain"));
    }

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(contains_pattern("100%_x\\"), "%100\\%\\_x\\\\%");
        assert_eq!(contains_pattern(""), "%%");
        assert_eq!(contains_pattern("\0by"), "%\u{FFFD}by%");
    }
}
