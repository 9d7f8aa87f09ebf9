//! The native reference server (`../shared/reference/native-ingest`): the
//! same ingest work without WebAssembly, which `make bench` builds into
//! target/reference and runs beside Inlet under the same load, so that
//! Inlet's ingest rate reads as a ratio to what a user would otherwise write.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How the reference commits (its `MODE`).
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// One commit per request.
    Naive,
    /// Up to 512 rows per transaction, as Inlet's writer does.
    Group,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Naive => "naive",
            Self::Group => "group",
        }
    }
}

/// Where `make reference` leaves the binary.
pub(crate) fn binary() -> Option<PathBuf> {
    let path = inlet_e2e::workspace_root().join("target/reference/release/native-ingest");
    path.exists().then_some(path)
}

/// A running reference server on a fresh database, stopped when dropped.
pub(crate) struct Reference {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// How long the reference may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

impl Reference {
    pub(crate) fn start(binary: &Path, mode: Mode) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("WEBHOOK_SECRET", inlet_e2e::SECRET)
            .env("DATABASE_PATH", dir.path().join("ref.db"))
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("MODE", mode.name())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log"))?);
        inlet_e2e::end_with_starting_thread(&mut command);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let port = loop {
            if let Some(port) = inlet_e2e::listening_port(child.id()) {
                break port;
            }
            if let Some(status) = child.try_wait()? {
                let said = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                anyhow::bail!("the reference exited during start-up ({status}): {said}");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the reference did not listen in {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(Self { child, port, _dir: dir })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
