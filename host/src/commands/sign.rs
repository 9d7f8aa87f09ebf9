//! `inlet sign`: a body's signature headers under a secret, so that testing
//! needs no openssl.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use inlet_signature::{SigningKey, hex_hmac, standard};

/// Which scheme's headers to print, named as `Scheme::label` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemeArg {
    /// `X-Signature`: prints the bare hex value (for `-H "X-Signature: $(inlet sign …)"`).
    XSignature,
    /// `X-Hub-Signature-256`: prints its `sha256=<hex>` value.
    #[value(name = "hub-signature-256")]
    HubSignature256,
    /// Standard Webhooks: prints the three header lines.
    StandardWebhooks,
}

/// What `inlet sign` signs, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct SignArgs {
    /// The signing key.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The scheme.
    #[arg(long, value_enum, default_value_t = SchemeArg::XSignature)]
    pub scheme: SchemeArg,
    /// Standard Webhooks: the `webhook-id`.
    #[arg(long, default_value = "msg_inlet_sign")]
    pub id: String,
    /// Standard Webhooks: the `webhook-timestamp` (Unix seconds); default now.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    pub timestamp: Option<i64>,
    /// The body; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
}

/// Prints the signature of the body (in `file`, or stdin) as `scheme` sends it.
pub fn run(args: &SignArgs) -> anyhow::Result<()> {
    let body = read_body(args.file.as_deref())?;
    let key = SigningKey::new(args.secret.as_str());
    match args.scheme {
        SchemeArg::XSignature => println!("{}", key.sign(&body)),
        SchemeArg::HubSignature256 => println!("{}", hex_hmac::hub_header(&key, &body)),
        SchemeArg::StandardWebhooks => {
            let timestamp = args.timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp());
            let [id_header, timestamp_header, signature_header] = standard::HEADER_NAMES;
            println!("{id_header}: {}", args.id);
            println!("{timestamp_header}: {timestamp}");
            println!(
                "{signature_header}: {}",
                standard::sign(&args.secret, &args.id, timestamp, &body)
            );
        }
    }
    Ok(())
}

fn read_body(file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(path) if path != Path::new("-") => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        }
        _ => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).context("cannot read stdin")?;
            Ok(body)
        }
    }
}
