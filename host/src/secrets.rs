//! The webhook secrets guests verify signatures with: `WEBHOOK_SECRET` and
//! the lines of `WEBHOOK_SECRET_FILE`, re-read while serving so that a
//! rotation needs no restart.
//!
//! The file holds one secret per line, the way Docker and Kubernetes mount
//! secrets; each line is trimmed (a mounted secret usually ends in a
//! newline), and blank lines and lines starting with `#` are skipped. The
//! watcher polls the file and loads it again once it changed and held still;
//! each request takes the set current when it starts (in a reused instance
//! too), so a swap never cuts one off. A file that becomes unreadable or holds no secret
//! keeps the last good set, with an `error` line. Logs say how many secrets
//! there are, never which.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;

use crate::file_watch::{Absence, FileWatch, SETTINGS_POLL_INTERVAL, Stamp};

/// A webhook secret: never printed, not even by `Debug`.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Wraps `secret` as is; emptiness is checked by `config`, not here.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for signing and for the guest's `settings`; keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Where the secrets come from.
#[derive(Debug, Clone)]
pub struct SecretSource {
    /// `WEBHOOK_SECRET`, when set.
    pub inline: Option<WebhookSecret>,
    /// `WEBHOOK_SECRET_FILE`, when set.
    pub file: Option<PathBuf>,
}

/// One consistent set of secrets, never empty once loaded from the configuration.
pub struct SecretSet(Vec<String>);

impl SecretSet {
    fn new(secrets: Vec<String>) -> Option<Self> {
        (!secrets.is_empty()).then_some(Self(secrets))
    }

    /// The secrets themselves, for the guest's `settings`; keep them out of logs.
    pub fn expose(&self) -> &[String] {
        &self.0
    }

    /// How many there are.
    pub fn count(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretSet({} secrets, <redacted>)", self.count())
    }
}

/// The live set and where it comes from.
pub struct Secrets {
    source: SecretSource,
    current: ArcSwap<SecretSet>,
    /// The file's version when it was first read, so that a change right
    /// after start-up is not missed.
    loaded: Option<Stamp>,
}

impl Secrets {
    /// Loads the set once; an unreadable file or no secret at all is an error.
    pub fn load(source: SecretSource) -> anyhow::Result<Self> {
        let loaded = source.file.as_deref().map(Stamp::of);
        let set = read(&source)?;
        tracing::info!(secrets = set.count(), "webhook secrets loaded");
        Ok(Self {
            source,
            current: ArcSwap::from_pointee(set),
            loaded,
        })
    }

    /// A fixed set of `secrets` (no file) for a test harness; unlike a
    /// loaded set it may be empty, to show a guest with no secret at all.
    pub fn fixed(secrets: &[WebhookSecret]) -> Self {
        let set = SecretSet(secrets.iter().map(|s| s.expose().to_owned()).collect());
        Self {
            source: SecretSource {
                inline: None,
                file: None,
            },
            current: ArcSwap::from_pointee(set),
            loaded: None,
        }
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<SecretSet> {
        self.current.load_full()
    }

    /// Follows the secret file until the process ends (returns at once
    /// without one).
    pub async fn watch(self: Arc<Self>) {
        let (Some(path), Some(loaded)) = (&self.source.file, self.loaded) else {
            return;
        };
        let mut file = FileWatch::from(path, loaded, SETTINGS_POLL_INTERVAL, Absence::Reported);
        loop {
            file.changed().await;
            self.reload();
        }
    }

    /// Reads the sources again: the new set replaces the old, or on failure
    /// the old one stays.
    fn reload(&self) {
        match read(&self.source) {
            Ok(set) => {
                tracing::info!(secrets = set.count(), "webhook secrets reloaded");
                self.current.store(Arc::new(set));
            }
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                secrets = self.current().count(),
                "webhook secrets not reloaded; the last good set stays"
            ),
        }
    }
}

/// The union of both sources; an error when the file cannot be read or no
/// secret results.
fn read(source: &SecretSource) -> anyhow::Result<SecretSet> {
    let mut secrets: Vec<String> = source.inline.iter().map(|s| s.expose().to_owned()).collect();
    let mut from_file = Vec::new();
    if let Some(path) = &source.file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("WEBHOOK_SECRET_FILE {} cannot be read", path.display()))?;
        from_file = parse(&text);
        if from_file.is_empty() {
            anyhow::bail!("WEBHOOK_SECRET_FILE {} holds no secret", path.display());
        }
    }
    for secret in from_file {
        if !secrets.contains(&secret) {
            secrets.push(secret);
        }
    }
    SecretSet::new(secrets).context("no webhook secret is configured (WEBHOOK_SECRET or WEBHOOK_SECRET_FILE)")
}

/// The secrets in a file's text.
fn parse(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_holds_one_secret_per_line() {
        let text = "# rotated 2026-12-01\nold-secret\n\n  new-secret  \r\n#not-a-secret\n";
        assert_eq!(parse(text), ["old-secret", "new-secret"]);
    }

    #[test]
    fn both_sources_join_without_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets");
        std::fs::write(&file, "b\na\n").unwrap();
        let source = SecretSource {
            inline: Some(WebhookSecret::new("a")),
            file: Some(file.clone()),
        };
        assert_eq!(read(&source).unwrap().expose(), ["a", "b"]);
        std::fs::write(&file, "# nothing\n").unwrap();
        assert!(format!("{:#}", read(&source).unwrap_err()).contains("holds no secret"));
        std::fs::remove_file(&file).unwrap();
        assert!(format!("{:#}", read(&source).unwrap_err()).contains("cannot be read"));
    }

    #[test]
    fn the_set_is_never_printed() {
        let set = SecretSet::new(vec!["hunter2".into()]).unwrap();
        assert!(!format!("{set:?}").contains("hunter2"));
    }
}
