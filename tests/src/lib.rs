//! Harness for the end-to-end tests: starts the real `inlet` binary with the
//! real guest component on a free 127.0.0.1 port and a fresh database, and
//! talks to it over real HTTP.
//!
//! Build first (`make build`); the tests use `target/release/inlet` and
//! `target/wasm32-wasip2/release/inlet_guest.wasm`, or `INLET_BIN` and
//! `INLET_GUEST` when set.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inlet_signature::SigningKey;
use serde_json::{Value, json};
use tempfile::TempDir;

pub mod swap;

pub const SECRET: &str = "testsecret";

/// How long a server may take to become live.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The `inlet` binary under test.
pub fn inlet_bin() -> PathBuf {
    std::env::var_os("INLET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/inlet"))
}

/// The guest component under test.
pub fn guest_wasm() -> PathBuf {
    std::env::var_os("INLET_GUEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/wasm32-wasip2/release/inlet_guest.wasm"))
}

/// The lowercase hex `X-Signature` of `body` under the test secret.
pub fn sign(body: &str) -> String {
    SigningKey::new(SECRET).sign(body.as_bytes())
}

/// A valid webhook body.
pub fn message(id: &str, from: &str, ts: &str, text: Option<&str>) -> String {
    json!({"message_id": id, "from": from, "to": "+14155550100", "ts": ts, "text": text}).to_string()
}

/// A running `inlet serve`, killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    dir: TempDir,
    client: ureq::Agent,
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Server {
    /// Starts a server with the test secret and a fresh database.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra environment variables.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, env)
    }

    /// Starts a server whose database lives in `dir` (to restart on the same data).
    pub fn start_in(dir: TempDir, env: &[(&str, &str)]) -> Self {
        let mut server = Self::launch_in(dir, env);
        server.wait_live();
        server
    }

    /// Spawns a server in `dir` without waiting for it to listen.
    pub fn launch_in(dir: TempDir, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let stdout = File::options()
            .create(true)
            .append(true)
            .open(dir.path().join("stdout.log"))
            .expect("log file");
        let mut command = Command::new(inlet_bin());
        command
            .env_clear()
            .env("WEBHOOK_SECRET", SECRET)
            .env(
                "DATABASE_URL",
                format!("sqlite:///{}", dir.path().join("app.db").display()),
            )
            .env("PORT", port.to_string())
            .env("BIND_ADDRESS", "127.0.0.1")
            .env("GUEST_COMPONENT", guest_wasm())
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(Stdio::inherit());
        end_with_starting_thread(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", inlet_bin().display()));
        let client = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self {
            child,
            port,
            dir,
            client,
        }
    }

    /// Polls `/health/ready` every millisecond until it answers 200; how long
    /// that took from the call.
    pub fn wait_ready(&mut self) -> Duration {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("inlet exited during start-up ({status}); logs:\n{}", self.raw_logs());
            }
            if self.try_get("/health/ready").is_some_and(|r| r.status == 200) {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("inlet was not ready in {START_TIMEOUT:?}; logs:\n{}", self.raw_logs());
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_live(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("inlet exited during start-up ({status}); logs:\n{}", self.raw_logs());
            }
            if self.try_get("/health/live").is_some_and(|r| r.status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "inlet did not become live in {START_TIMEOUT:?}; logs:\n{}",
            self.raw_logs()
        );
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    /// The directory holding the database (and, by default, the guest cache).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("app.db")
    }

    fn try_get(&self, path_and_query: &str) -> Option<Reply> {
        self.client.get(self.url(path_and_query)).call().ok().map(read_reply)
    }

    /// `GET`; the path and query are sent exactly as given.
    pub fn get(&self, path_and_query: &str) -> Reply {
        let response = self.client.get(self.url(path_and_query)).call();
        read_reply(response.unwrap_or_else(|e| panic!("GET {path_and_query}: {e}")))
    }

    /// `POST /webhook` with `body` and, when given, `X-Signature`.
    pub fn webhook(&self, body: &str, signature: Option<&str>) -> Reply {
        let mut request = self.client.post(self.url("/webhook")).content_type("application/json");
        if let Some(signature) = signature {
            request = request.header("X-Signature", signature);
        }
        read_reply(request.send(body).unwrap_or_else(|e| panic!("POST /webhook: {e}")))
    }

    /// `POST /webhook` with a correct signature; asserts a 200.
    pub fn deliver(&self, body: &str) {
        let reply = self.webhook(body, Some(&sign(body)));
        assert_eq!(reply.status, 200, "delivery of {body} failed: {}", reply.body);
    }

    /// Any method and path, with optional body.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path))
            .body(body.unwrap_or_default().to_owned())
            .expect("request");
        read_reply(
            self.client
                .run(request)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}")),
        )
    }

    /// `/metrics` once it shows every line in `expected`, or after 5 s as
    /// it is then. A request is counted when its guest has finished, just
    /// after its response, so the next request can arrive first.
    pub fn metrics_showing(&self, expected: &[String]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let reply = self.get("/metrics");
            assert_eq!(reply.status, 200);
            if expected.iter().all(|line| reply.body.contains(line)) || Instant::now() > deadline {
                return reply.body;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `messages` table's row count, read from the SQLite file itself.
    pub fn stored_rows(&self) -> i64 {
        let conn = rusqlite::Connection::open_with_flags(self.database(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open database");
        conn.query_row("SELECT COUNT(*) FROM messages", [], |row| row.get(0))
            .expect("count rows")
    }

    /// Everything the server printed on stdout so far.
    pub fn raw_logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Stdout, one parsed JSON object per line; panics on any other line.
    pub fn logs(&self) -> Vec<Value> {
        let file = File::open(self.dir.path().join("stdout.log")).expect("log file");
        BufReader::new(file)
            .lines()
            .map(|line| {
                let line = line.expect("log line");
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// Request log lines (those with a `status`) except the start-up polls
    /// of `/health/live`, waiting until there are `expected` of them: a line
    /// is written once the guest has finished, just after the response.
    pub fn request_logs(&self, expected: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<Value> = self
                .logs()
                .into_iter()
                .filter(|l| l.get("status").is_some() && l["path"] != "/health/live")
                .collect();
            if lines.len() >= expected || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`, `HUP`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the server to exit; its exit code, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops the server (SIGKILL) and hands back its directory.
    pub fn kill(mut self) -> TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_reply(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = response.body_mut().read_to_string().expect("response body");
    Reply { status, headers, body }
}

/// The server gets SIGTERM when the thread that started it ends. `Drop`
/// stops it when a test or `make bench` ends normally; this covers a runner
/// killed by a signal (a `pkill`, a CI timeout), which otherwise left the
/// server running and holding its port and temporary directory. Servers are
/// owned by the thread that starts them, so that thread outlives them.
fn end_with_starting_thread(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes one async-signal-safe system call.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// The misbehaving guest fixture (`make fixtures`).
pub fn misbehaving_guest() -> PathBuf {
    let path = workspace_root().join("target/fixtures/wasm32-wasip2/release/inlet_fixture_misbehaving.wasm");
    assert!(path.exists(), "{} is missing: run `make fixtures`", path.display());
    path
}
