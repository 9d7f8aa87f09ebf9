//! `inlet key new`: a fresh API key, and the line that lets it in, so that
//! nobody invents keys by hand.

use anyhow::Context;

use crate::api_keys::{KeyHolder, Scope, digest_line};

/// What every generated key starts with, so that secret scanners and
/// people can tell an Inlet key on sight.
const KEY_PREFIX: &str = "inlet_";
/// Random bytes in a key.
const KEY_BYTES: usize = 32;

/// `inlet key`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    action: KeyAction,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum KeyAction {
    /// Print a new key (shown only now: give it to its caller), then the
    /// line that admits it, holding only its SHA-256 (append it to
    /// `API_KEYS_FILE`).
    New {
        /// The name log lines give the caller: 1 to 64 of A-Z a-z 0-9 _ . -
        name: String,
        /// What the key may do.
        #[arg(long, value_enum)]
        scope: Scope,
    },
}

/// Prints the key and its line.
pub fn run(args: &KeyArgs) -> anyhow::Result<()> {
    let KeyAction::New { name, scope } = &args.action;
    let holder = KeyHolder::new(name, *scope).map_err(anyhow::Error::msg)?;
    let key = new_key()?;
    println!("{key}");
    println!("{}", digest_line(&holder, &key));
    Ok(())
}

/// `KEY_PREFIX` and `KEY_BYTES` random bytes as base64url.
fn new_key() -> anyhow::Result<String> {
    use base64::Engine;
    let mut bytes = [0; KEY_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("no randomness for a key")?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_keys::{KeySet, is_key};

    #[test]
    fn a_new_key_is_admitted_by_its_line_alone() {
        let key = new_key().unwrap();
        assert!(is_key(&key) && key.starts_with(KEY_PREFIX), "{key}");
        assert_ne!(key, new_key().unwrap());
        let holder = KeyHolder::new("ci", Scope::Read).unwrap();
        let line = digest_line(&holder, &key);
        assert!(!line.contains(&key[KEY_PREFIX.len()..]), "{line}");
        let set = KeySet::parse(&line).unwrap();
        assert_eq!(set.len(), 1);
    }
}
