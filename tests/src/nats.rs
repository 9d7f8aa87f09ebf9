//! A real NATS server with JetStream (Debian's `nats-server -js`, or the
//! binary `NATS_SERVER` names) on 127.0.0.1 for forwarding tests, and a
//! client (`Streams`, for it or the cluster's broker) that binds a stream to
//! a subject and reads what reached it. The server can be stopped and
//! started again on the same port and store.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use tempfile::TempDir;

/// How long the server gets to listen after it starts.
const STARTS_WITHIN: Duration = Duration::from_secs(10);

/// One message a stream holds.
#[derive(Debug, Clone)]
pub struct Published {
    /// Its `Nats-Msg-Id` header.
    pub message_id: Option<String>,
    /// The payload, as sent.
    pub body: String,
}

/// A `nats-server -js`; killed when dropped.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    store: TempDir,
    streams: Streams,
}

impl Broker {
    /// A server on a free port, listening before this returns.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut broker = Self {
            child: None,
            port,
            store: tempfile::tempdir().expect("a store directory"),
            streams: Streams::at(&format!("127.0.0.1:{port}")),
        };
        broker.up();
        broker
    }

    /// `nats://127.0.0.1:PORT/SUBJECT`.
    pub fn url(&self, subject: &str) -> String {
        format!("nats://127.0.0.1:{}/{subject}", self.port)
    }

    /// The server's process id (0 while it is down).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its streams.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Kills the server (SIGKILL): the port refuses connections.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn up(&mut self) {
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary} (tests/deps.sh installs nats-server): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + STARTS_WITHIN;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
    }
}

/// JetStream's streams on the server at an address, from blocking code.
pub struct Streams {
    address: String,
    runtime: tokio::runtime::Runtime,
}

impl Streams {
    /// The server at `address` (`HOST:PORT`); connects per call.
    pub fn at(address: &str) -> Self {
        Self {
            address: address.to_owned(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
        }
    }

    /// Binds stream `name` to `subject` (created unless it exists),
    /// dropping a repeated `Nats-Msg-Id` within `duplicate_window`.
    pub fn bind(&self, name: &str, subject: &str, duplicate_window: Duration) -> anyhow::Result<()> {
        let config = stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.to_owned()],
            duplicate_window,
            ..Default::default()
        };
        self.runtime.block_on(async {
            let jetstream = self.jetstream().await?;
            jetstream
                .get_or_create_stream(config)
                .await
                .map_err(|e| anyhow::anyhow!("binding stream {name}: {e}"))?;
            Ok(())
        })
    }

    /// The sequence number of the last message stream `name` holds.
    pub fn last_sequence(&self, name: &str) -> anyhow::Result<u64> {
        self.runtime.block_on(async {
            let mut stream = self.stream(name).await?;
            let info = stream.info().await.map_err(|e| anyhow::anyhow!("stream {name}: {e}"))?;
            Ok(info.state.last_sequence)
        })
    }

    /// Every message stream `name` holds after sequence `after`, in order.
    pub fn messages_after(&self, name: &str, after: u64) -> anyhow::Result<Vec<Published>> {
        self.runtime.block_on(async {
            let mut stream = self.stream(name).await?;
            let state = stream
                .info()
                .await
                .map_err(|e| anyhow::anyhow!("stream {name}: {e}"))?
                .state
                .clone();
            let mut messages = Vec::new();
            if state.messages == 0 {
                return Ok(messages);
            }
            for sequence in state.first_sequence.max(after + 1)..=state.last_sequence {
                let message = stream
                    .get_raw_message(sequence)
                    .await
                    .map_err(|e| anyhow::anyhow!("message {sequence} of {name}: {e}"))?;
                messages.push(Published {
                    message_id: message
                        .headers
                        .get(async_nats::header::NATS_MESSAGE_ID)
                        .map(|value| value.as_str().to_owned()),
                    body: String::from_utf8_lossy(&message.payload).into_owned(),
                });
            }
            Ok(messages)
        })
    }

    async fn stream(&self, name: &str) -> anyhow::Result<jetstream::stream::Stream> {
        let jetstream = self.jetstream().await?;
        jetstream
            .get_stream(name)
            .await
            .map_err(|e| anyhow::anyhow!("stream {name}: {e}"))
    }

    async fn jetstream(&self) -> anyhow::Result<jetstream::Context> {
        let client = async_nats::connect(self.address.as_str())
            .await
            .map_err(|e| anyhow::anyhow!("connecting to nats at {}: {e}", self.address))?;
        Ok(jetstream::new(client))
    }
}
