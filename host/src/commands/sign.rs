//! `inlet sign`: the `X-Signature` for a body, so testing needs no openssl.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use inlet_signature::SigningKey;

/// Prints the lowercase hex HMAC-SHA256 of the body in `file` (stdin for
/// `-` or none) under `secret`.
pub fn run(secret: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let body = match file {
        Some(path) if path != Path::new("-") => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        _ => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).context("cannot read stdin")?;
            body
        }
    };
    println!("{}", SigningKey::new(secret).sign(&body));
    Ok(())
}
