//! Harness for the end-to-end tests: starts the real `inlet` binary with the
//! real guest component on a free 127.0.0.1 port and a fresh database, and
//! talks to it over real HTTP.
//!
//! Build first (`make build`); the tests use `target/release/inlet` and
//! `target/wasm32-wasip2/release/inlet_guest.wasm`, or `INLET_BIN` and
//! `INLET_GUEST` when set. The database is a SQLite file, or a fresh
//! PostgreSQL database when `INLET_E2E_BACKEND=postgres` (see `Backend`).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use inlet_signature::SigningKey;
use serde_json::{Value, json};
use tempfile::TempDir;

pub mod cluster;
pub mod feed;
pub mod nats;
pub mod raw;
pub mod receiver;
pub mod swap;
pub mod whatsapp;

/// The `WEBHOOK_SECRET` every test server is started with; `sign` uses it.
pub const SECRET: &str = "testsecret";

/// How long a server may take to become live.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest a log line may lag what it reports: lines reach stdout
/// through a writer thread, a moment after the socket, the reload or the
/// answer they tell of.
const LOG_LAG: Duration = Duration::from_secs(10);

/// Whether `done` holds within `within`, asked every 20 ms: for what the
/// server does a moment after the answer or the event a test saw.
pub fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// The workspace root (the parent of `tests/`): where `target/` and `README.md` are.
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

/// Where test servers keep their messages: SQLite unless
/// `INLET_E2E_BACKEND=postgres`, which gives each server directory a fresh
/// database on the test process's PostgreSQL server (`inlet-pgserver`), so
/// that the same suites prove both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `app.db` in the server's directory.
    Sqlite,
    /// A database of its own on a throwaway PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend this test run proves.
    pub fn under_test() -> Self {
        match std::env::var("INLET_E2E_BACKEND").as_deref() {
            Ok("postgres") => Self::Postgres,
            Ok("sqlite") | Err(_) => Self::Sqlite,
            Ok(other) => panic!("INLET_E2E_BACKEND must be sqlite or postgres, not {other:?}"),
        }
    }
}

/// The `DATABASE_URL` of the server in `dir`: the same data on a restart.
fn database_url(dir: &Path) -> String {
    match Backend::under_test() {
        Backend::Sqlite => format!("sqlite:///{}", dir.join("app.db").display()),
        Backend::Postgres => {
            let file = dir.join("database-url");
            std::fs::read_to_string(&file).unwrap_or_else(|_| {
                let url = inlet_pgserver::fresh_database();
                std::fs::write(&file, &url).expect("remembering the database");
                url
            })
        }
    }
}

/// The sum of `/stats`' per-sender counts.
pub fn per_sender_sum(stats: &Value) -> u64 {
    let senders = stats["messages_per_sender"].as_array().expect("messages_per_sender");
    senders.iter().map(|s| s["count"].as_u64().expect("a count")).sum()
}

/// A valid webhook body.
pub fn message(id: &str, from: &str, ts: &str, text: Option<&str>) -> String {
    json!({"message_id": id, "from": from, "to": "+14155550100", "ts": ts, "text": text}).to_string()
}

/// A running `inlet serve`, killed on drop.
pub struct Server {
    child: Child,
    /// The port it bound (it is started with `PORT=0`), once it has said so.
    port: OnceLock<u16>,
    /// Log lines of earlier servers in the same directory.
    earlier_lines: usize,
    dir: TempDir,
    client: ureq::Agent,
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers as (name, value), one pair per value; values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The whole body, decoded lossily as UTF-8.
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The first header called `name`, compared case-insensitively.
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

    /// Starts a server with extra environment variables and an
    /// `API_KEYS_FILE` (`keys` in its directory) holding `keys`.
    pub fn start_with_keys(keys: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("keys");
        std::fs::write(&file, keys).expect("writing the key file");
        let file = file.to_str().expect("UTF-8 path").to_owned();
        let mut env = env.to_vec();
        env.push(("API_KEYS_FILE", &file));
        Self::start_in(dir, &env)
    }

    /// Starts a server whose database lives in `dir` (to restart on the same data).
    pub fn start_in(dir: TempDir, env: &[(&str, &str)]) -> Self {
        let mut server = Self::launch_in(dir, env);
        server.wait_live();
        server
    }

    /// Starts another build's `binary` (its guest named in `env`) with a
    /// fresh database: a baseline to measure this build against.
    pub fn start_binary(binary: &Path, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self::launch(binary, dir, env);
        server.wait_live();
        server
    }

    /// Spawns a server in `dir` without waiting for it to listen.
    pub fn launch_in(dir: TempDir, env: &[(&str, &str)]) -> Self {
        Self::launch(&inlet_bin(), dir, env)
    }

    fn launch(binary: &Path, dir: TempDir, env: &[(&str, &str)]) -> Self {
        let earlier_lines = std::fs::read_to_string(dir.path().join("stdout.log")).map_or(0, |log| log.lines().count());
        let stdout = File::options()
            .create(true)
            .append(true)
            .open(dir.path().join("stdout.log"))
            .expect("log file");
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("WEBHOOK_SECRET", SECRET)
            .env("DATABASE_URL", database_url(dir.path()))
            .env("PORT", "0")
            .env("BIND_ADDRESS", "127.0.0.1")
            .env("GUEST_COMPONENT", guest_wasm())
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(Stdio::inherit());
        end_with_starting_thread(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let client = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self {
            child,
            port: OnceLock::new(),
            earlier_lines,
            dir,
            client,
        }
    }

    /// The port the server listens on (it is started with `PORT=0`), from
    /// the kernel's socket table, so at any `LOG_LEVEL`; waits until it
    /// listens.
    pub fn port(&self) -> u16 {
        *self.port.get_or_init(|| {
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if let Some(port) = listening_port(self.pid()) {
                    return port;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            panic!("inlet did not listen in {START_TIMEOUT:?}; logs:\n{}", self.raw_logs());
        })
    }

    /// The port this start's `listening` log line names (a restart in the
    /// same directory appends a new one); waits for the line as
    /// `wait_for_line` does: the socket can listen before it is written.
    pub fn logged_port(&self) -> Option<u16> {
        let line = self.wait_for_line(|line| line["msg"] == "listening");
        line["address"].as_str()?.rsplit_once(':')?.1.parse().ok()
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

    /// The full URL of `path_and_query` on this server (waits until the port is known).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port())
    }

    /// The directory holding the database (and, by default, the guest cache).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite database file (with `Backend::Sqlite`).
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("app.db")
    }

    /// The rows `sql` returns, read from the database itself (SQLite or
    /// PostgreSQL, without the server), each value as text; `None` is NULL.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match Backend::under_test() {
            Backend::Sqlite => sqlite_rows(&self.database(), sql),
            Backend::Postgres => {
                inlet_pgserver::rows(&database_url(self.dir()), sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        }
    }

    fn try_get(&self, path_and_query: &str) -> Option<Reply> {
        self.client.get(self.url(path_and_query)).call().ok().map(read_reply)
    }

    /// `GET`; the path and query are sent exactly as given.
    pub fn get(&self, path_and_query: &str) -> Reply {
        self.get_with(path_and_query, &[])
    }

    /// `GET` with these headers (an `Authorization`, say).
    pub fn get_with(&self, path_and_query: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.client.get(self.url(path_and_query));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read_reply(request.call().unwrap_or_else(|e| panic!("GET {path_and_query}: {e}")))
    }

    /// `POST /webhook` with `body` and, when given, `X-Signature`.
    pub fn webhook(&self, body: &str, signature: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = signature.map(|s| ("X-Signature", s)).into_iter().collect();
        self.webhook_with(body, &headers)
    }

    /// `POST /webhook` with `body` and these headers (a signature scheme's).
    pub fn webhook_with(&self, body: &str, headers: &[(&str, &str)]) -> Reply {
        self.post_json("/webhook", body, headers)
    }

    /// `POST path` with a JSON `body` and these headers.
    pub fn post_json(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.client.post(self.url(path)).content_type("application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read_reply(request.send(body).unwrap_or_else(|e| panic!("POST {path}: {e}")))
    }

    /// `POST /webhook` with a correct signature; `None` when no answer came
    /// (the connection was refused or broke: the server died).
    pub fn try_deliver(&self, body: &str) -> Option<Reply> {
        let request = self.client.post(self.url("/webhook")).content_type("application/json");
        let request = request.header("X-Signature", sign(body));
        request.send(body).ok().map(read_reply)
    }

    /// `POST /webhook` with a correct signature; asserts a 200.
    pub fn deliver(&self, body: &str) {
        let reply = self.webhook(body, Some(&sign(body)));
        assert_eq!(reply.status, 200, "delivery of {body} failed: {}", reply.body);
    }

    /// Any method and path, with optional body.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.request_with(method, path, body, &[])
    }

    /// Any method and path, with optional body and these headers.
    pub fn request_with(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let mut request = ureq::http::Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body.unwrap_or_default().to_owned()).expect("request");
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

    /// The value of one series on `/metrics` now: its name with any labels
    /// exactly as exposed (`forward_deliveries_total{result="delivered"}`);
    /// `None` when the server does not show it, or not as a number.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics").body;
        text.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.split(' ').next()?.parse().ok()
        })
    }

    /// How many guest instances the server has created (`guest_instantiation_ms_count`).
    pub fn instantiations(&self) -> u64 {
        match self.metric("guest_instantiation_ms_count") {
            Some(count) => count as u64,
            None => panic!("no guest_instantiation_ms_count in:\n{}", self.get("/metrics").body),
        }
    }

    /// The `messages` table's row count, read from the database itself.
    pub fn stored_rows(&self) -> i64 {
        let count = self.query("SELECT COUNT(*) FROM messages");
        count[0][0].as_deref().and_then(|n| n.parse().ok()).expect("a count")
    }

    /// Everything the server printed on stdout so far.
    pub fn raw_logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Stdout's complete lines, one parsed JSON object each; panics on any
    /// other line. A last line without its newline is still being written
    /// (a long line can reach the file in pieces) and is left for later.
    pub fn logs(&self) -> Vec<Value> {
        let text = self.raw_logs();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}")))
            .collect()
    }

    /// The first log line of this start that `matches` accepts, waiting up
    /// to `LOG_LAG` for it. Panics with the logs when none comes.
    pub fn wait_for_line(&self, matches: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        let logged = wait_until(LOG_LAG, || {
            found = self.logs().into_iter().skip(self.earlier_lines).find(&matches);
            found.is_some()
        });
        assert!(logged, "no such line in {LOG_LAG:?}; logs:\n{}", self.raw_logs());
        found.expect("found when logged")
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

    /// Sends a request with `send`, then waits until the server has logged
    /// it. The line is written once the guest has returned, so with
    /// `GUEST_INSTANCE_REUSE` the next request finds its instance idle (a
    /// keep-alive client can otherwise be faster than the instance's return).
    pub fn settled<R>(&self, send: impl FnOnce(&Self) -> R) -> R {
        let logged = self.request_line_count();
        let reply = send(self);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.request_line_count() <= logged && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        reply
    }

    fn request_line_count(&self) -> usize {
        self.logs().iter().filter(|l| l.get("status").is_some()).count()
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

/// `Server::query` on a SQLite file, opened read-only.
fn sqlite_rows(path: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    use rusqlite::types::ValueRef;
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open database");
    let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            (0..columns)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        ValueRef::Null => None,
                        ValueRef::Integer(n) => Some(n.to_string()),
                        ValueRef::Real(x) => Some(x.to_string()),
                        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
                    })
                })
                .collect()
        })
        .and_then(|rows| rows.collect())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn read_reply(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    // Lossy: the docs page's icons are not text.
    let body = String::from_utf8_lossy(&response.body_mut().read_to_vec().expect("response body")).into_owned();
    Reply { status, headers, body }
}

/// The server gets SIGTERM when the thread that started it ends. `Drop`
/// stops it when a test or `make bench` ends normally; this covers a runner
/// killed by a signal (a `pkill`, a CI timeout), which otherwise left the
/// server running and holding its port and temporary directory. Servers are
/// owned by the thread that starts them, so that thread outlives them.
pub fn end_with_starting_thread(command: &mut Command) {
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

/// The TCP port process `pid` listens on, once it does.
pub fn listening_port(pid: u32) -> Option<u16> {
    let sockets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| Some(target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned()))
        .collect();
    // Columns: sl, local_address (hex ip:port), rem_address, st (0A: LISTEN), ..., inode (10th).
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|row| {
        let columns: Vec<&str> = row.split_whitespace().collect();
        let listening = columns.get(3) == Some(&"0A") && sockets.iter().any(|s| Some(&s.as_str()) == columns.get(9));
        let port = columns.get(1)?.rsplit_once(':')?.1;
        listening.then(|| u16::from_str_radix(port, 16).ok()).flatten()
    })
}

/// The misbehaving guest fixture (`make fixtures`).
pub fn misbehaving_guest() -> PathBuf {
    fixture("inlet_fixture_misbehaving")
}

/// What the host says of the fixture guest built against the previous WIT.
pub const OLD_WIT_REFUSAL: &str = "built against inlet:service@0.1.0; this host serves inlet:service@0.5.0";

/// The fixture guest built against the previous WIT (`make fixtures`).
pub fn old_wit_guest() -> PathBuf {
    fixture("inlet_fixture_old_wit")
}

fn fixture(name: &str) -> PathBuf {
    let path = workspace_root().join(format!("target/fixtures/wasm32-wasip2/release/{name}.wasm"));
    assert!(path.exists(), "{} is missing: run `make fixtures`", path.display());
    path
}
