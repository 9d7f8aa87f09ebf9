//! `inlet probe`: exit 0 when the local server is ready. The container
//! health check, so the runtime image needs no curl.

use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::Empty;
use hyper::Request;
use hyper::body::Bytes;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;

/// The whole probe, connection included, must finish within this.
const TIMEOUT: Duration = Duration::from_secs(3);

/// `inlet probe`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// Port the server listens on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    port: u16,
    /// Path to GET.
    #[arg(long, default_value = "/health/ready")]
    path: String,
}

/// GETs the path on 127.0.0.1 at the port; succeeds on a 2xx answer.
pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let (port, path) = (args.port, args.path.as_str());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let status = runtime
        .block_on(async { tokio::time::timeout(TIMEOUT, get(port, path)).await })
        .with_context(|| format!("no answer from 127.0.0.1:{port} within {TIMEOUT:?}"))??;
    if !status.is_success() {
        bail!("{path} answered {status}");
    }
    println!("{path}: {status}");
    Ok(())
}

async fn get(port: u16, path: &str) -> anyhow::Result<hyper::StatusCode> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())?;
    Ok(sender.send_request(request).await?.status())
}
