//! Who may read: the API keys of `API_KEYS_FILE`, re-read while serving.
//!
//! A line is `NAME SCOPE KEY`: the name the log line gives the caller,
//! `read` or `admin`, and the key itself or `sha256:` and its digest. The
//! set holds only digests, so a presented key is checked by hashing it and
//! looking the digest up: the time taken says nothing about any key. The
//! set never enters a guest: the guest hands the host the `Authorization`
//! value its request presented and learns who holds that key
//! (`inlet:service/access`), then decides per route.
//!
//! Without `API_KEYS_FILE` every caller is anonymous: the guest leaves its
//! read routes open and refuses its admin routes. A file that becomes
//! unreadable, malformed or empty of keys while serving keeps the last good
//! set, with an `error` line naming the line at fault, never a key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::file_watch::{Absence, FileWatch, SETTINGS_POLL_INTERVAL, Stamp};

/// The longest key name.
const MAX_NAME_CHARS: usize = 64;
/// The shortest key accepted, so that a key cannot be guessed.
const MIN_KEY_CHARS: usize = 32;
/// How a line gives a key by its digest.
const DIGEST_PREFIX: &str = "sha256:";
/// The variable naming the file.
const VARIABLE: &str = "API_KEYS_FILE";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// The read routes.
    Read,
    /// Everything `Read` may, plus the admin routes.
    Admin,
}

impl Scope {
    /// The word a key line uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        [Self::Read, Self::Admin]
            .into_iter()
            .find(|scope| scope.as_str() == word)
    }
}

/// Who holds a configured key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHolder {
    /// The line's `NAME`, as log lines give it.
    pub name: String,
    /// What the key may do.
    pub scope: Scope,
}

impl KeyHolder {
    /// `name` with `scope`, if `name` is one a key line may give.
    pub fn new(name: &str, scope: Scope) -> Result<Self, String> {
        let valid = (1..=MAX_NAME_CHARS).contains(&name.len()) && name.chars().all(is_name_char);
        if !valid {
            return Err(format!("NAME must be 1 to {MAX_NAME_CHARS} of A-Z a-z 0-9 _ . -"));
        }
        Ok(Self {
            name: name.to_owned(),
            scope,
        })
    }
}

/// Who presented a request's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No keys are configured: nobody is known, and nobody is asked to be.
    Anonymous,
    /// The request presented this holder's key.
    Holder(Arc<KeyHolder>),
    /// Keys are configured, and the request presented none, a malformed
    /// `Authorization` value or an unknown key.
    Unauthenticated,
}

/// The SHA-256 of a key.
type KeyDigest = [u8; 32];

/// One file's keys, by digest. Its `Debug` gives the names only.
pub struct KeySet(HashMap<KeyDigest, Arc<KeyHolder>>);

impl KeySet {
    /// The keys of a file's `text`, or the first line at fault.
    pub fn parse(text: &str) -> Result<Self, LineError> {
        let mut keys = HashMap::new();
        let mut names = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let fault = |reason: String| LineError { line_number, reason };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (holder, digest) = parse_line(line).map_err(fault)?;
            if let Some(first) = names.insert(holder.name.clone(), line_number) {
                return Err(fault(format!("NAME repeats line {first}'s")));
            }
            if keys.insert(digest, Arc::new(holder)).is_some() {
                return Err(fault("KEY repeats an earlier line's".to_owned()));
            }
        }
        Ok(Self(keys))
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Who holds the key an `Authorization` value presents.
    fn holder(&self, authorization: Option<&str>) -> Option<Arc<KeyHolder>> {
        let key = bearer_token(authorization?)?;
        self.0.get(&digest(key)).cloned()
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.values().map(|holder| &holder.name))
            .finish()
    }
}

/// A line of the file that is not a key line; its text is never repeated,
/// since it may hold a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The line's number, from 1.
    pub line_number: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// `NAME SCOPE KEY`.
fn parse_line(line: &str) -> Result<(KeyHolder, KeyDigest), String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [name, scope, key] = fields[..] else {
        return Err("must be NAME SCOPE KEY".into());
    };
    let scope = Scope::parse(scope).ok_or("SCOPE must be read or admin")?;
    let holder = KeyHolder::new(name, scope)?;
    let digest = match key.strip_prefix(DIGEST_PREFIX) {
        Some(hex_digest) => parse_digest(hex_digest).ok_or("a sha256: KEY must be 64 lowercase hex digits")?,
        None if is_key(key) => digest(key),
        None => {
            return Err(format!(
                "KEY must be {MIN_KEY_CHARS} or more of A-Z a-z 0-9 _ . ~ + / = -"
            ));
        }
    };
    Ok((holder, digest))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Whether `key` has a key's shape (RFC 6750's token characters).
pub(crate) fn is_key(key: &str) -> bool {
    key.len() >= MIN_KEY_CHARS
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '~' | '+' | '/' | '=' | '-'))
}

fn parse_digest(text: &str) -> Option<KeyDigest> {
    let lowercase_hex = text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut digest = [0; 32];
    (lowercase_hex && hex::decode_to_slice(text, &mut digest).is_ok()).then_some(digest)
}

/// The digest a line may give instead of `key`.
fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// The line that gives `key` to `holder` by its digest only.
pub fn digest_line(holder: &KeyHolder, key: &str) -> String {
    let digest = hex::encode(digest(key));
    format!("{} {} {DIGEST_PREFIX}{digest}", holder.name, holder.scope.as_str())
}

/// The token of `Bearer <token>` (the scheme in any case); `None` for
/// anything else.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    let single = !token.is_empty() && !token.contains(char::is_whitespace);
    (scheme.eq_ignore_ascii_case("bearer") && single).then_some(token)
}

/// The keys in force, when keys are configured (`None`: nobody needs one).
pub struct ApiKeys(Option<Configured>);

/// A configured set and, unless it is fixed, the file it follows.
struct Configured {
    current: ArcSwap<KeySet>,
    file: Option<(PathBuf, Stamp)>,
}

impl ApiKeys {
    /// Nobody needs a key.
    pub fn none() -> Self {
        Self(None)
    }

    /// A fixed set (no file), e.g. for a test harness.
    pub fn fixed(set: KeySet) -> Self {
        Self(Some(Configured {
            current: ArcSwap::from_pointee(set),
            file: None,
        }))
    }

    /// The keys of `file` (or none needed without one); a file that cannot
    /// be read, holds a malformed line or no key is an `API_KEYS_FILE` error.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = file else {
            tracing::warn!("{VARIABLE} is not set: reads are unauthenticated and the admin routes refused");
            return Ok(Self::none());
        };
        let stamp = Stamp::of(path);
        let set = read(path).map_err(|reason| ConfigError::new(VARIABLE, reason))?;
        tracing::info!(keys = set.len(), "API keys loaded");
        Ok(Self(Some(Configured {
            current: ArcSwap::from_pointee(set),
            file: Some((path.to_owned(), stamp)),
        })))
    }

    /// Who presented the `Authorization` value of a request.
    pub fn identify(&self, authorization: Option<&str>) -> Caller {
        let Some(configured) = &self.0 else {
            return Caller::Anonymous;
        };
        match configured.current.load().holder(authorization) {
            Some(holder) => Caller::Holder(holder),
            None => Caller::Unauthenticated,
        }
    }

    /// Follows the file until the process ends (returns at once without one).
    pub async fn watch(self: Arc<Self>) {
        let Some(Configured {
            current,
            file: Some((path, loaded)),
        }) = &self.0
        else {
            return;
        };
        let mut file = FileWatch::from(path, *loaded, SETTINGS_POLL_INTERVAL, Absence::Reported);
        loop {
            file.changed().await;
            match read(path) {
                Ok(set) => {
                    tracing::info!(keys = set.len(), "API keys reloaded");
                    current.store(Arc::new(set));
                }
                Err(error) => tracing::error!(
                    error,
                    keys = current.load().len(),
                    "API keys not reloaded; the last good set stays"
                ),
            }
        }
    }
}

/// The key set of the file at `path`, or what is wrong with it. A file
/// without a key is refused: it is far likelier a file caught mid-write or
/// emptied by mistake than a wish to refuse every caller.
fn read(path: &Path) -> Result<KeySet, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
    let set = KeySet::parse(&text).map_err(|e| format!("{} line {}: {}", path.display(), e.line_number, e.reason))?;
    if set.is_empty() {
        return Err(format!("{} holds no key line", path.display()));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k3y-of-at-least-thirty-two-chars_0123456789";

    fn holder(set: &KeySet, authorization: &str) -> Option<(String, Scope)> {
        let found = set.holder(Some(authorization))?;
        Some((found.name.clone(), found.scope))
    }

    #[test]
    fn a_key_is_found_by_itself_or_by_its_digest() {
        let other = "another-key-of-at-least-thirty-two-chars";
        let ops = KeyHolder {
            name: "ops".into(),
            scope: Scope::Admin,
        };
        let text = format!("# keys\n\nci read {KEY}\n  {}  \n", digest_line(&ops, other));
        let set = KeySet::parse(&text).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(holder(&set, &format!("Bearer {KEY}")), Some(("ci".into(), Scope::Read)));
        assert_eq!(
            holder(&set, &format!("bearer   {other}")),
            Some(("ops".into(), Scope::Admin))
        );
        for refused in [
            format!("Basic {KEY}"),
            format!("Bearer {KEY} extra"),
            format!("Bearer{KEY}"),
            "Bearer ".to_owned(),
            format!("Bearer {KEY}x"),
        ] {
            assert_eq!(holder(&set, &refused), None, "{refused}");
        }
    }

    #[test]
    fn a_malformed_line_is_named_by_number_and_never_quoted() {
        let cases = [
            (format!("ci read {KEY}\nci admin {KEY}x"), 2),
            (format!("ci read {KEY}\nops admin {KEY}"), 2),
            (format!("ci write {KEY}"), 1),
            ("ci read short".to_owned(), 1),
            (format!("c!i read {KEY}"), 1),
            (format!("{} read {KEY}", "n".repeat(65)), 1),
            (format!("ci read {KEY} more"), 1),
            (format!("\n\nci read sha256:{}", "A".repeat(64)), 3),
            ("ci read sha256:abc".to_owned(), 1),
        ];
        for (text, line_number) in cases {
            let error = KeySet::parse(&text).unwrap_err();
            assert_eq!(error.line_number, line_number, "{text}");
            let line = text.lines().nth(line_number - 1).unwrap();
            for field in line.split_whitespace() {
                assert!(!error.reason.contains(field), "{} quotes {field}", error.reason);
            }
        }
    }

    #[test]
    fn without_a_file_everyone_is_anonymous_and_the_set_prints_names_only() {
        assert_eq!(
            ApiKeys::none().identify(Some(&format!("Bearer {KEY}"))),
            Caller::Anonymous
        );
        let set = KeySet::parse(&format!("ci read {KEY}")).unwrap();
        assert_eq!(format!("{set:?}"), r#"["ci"]"#);
    }
}
