//! Throwaway PostgreSQL servers for Inlet's tests: a real `postgres` from
//! Debian's `postgresql-15` (or `PG_BIN`; `psql` with it), initialised in a temporary folder
//! and listening on a loopback port, with no Unix socket.
//!
//! `shared()` is one server per test process, each test taking a database of
//! its own from it (`fresh_database`); a test that stops, crashes or restarts
//! the server starts its own with `PgServer::start()`.
//!
//! The server is spawned directly, not by `pg_ctl` (which would daemonise it),
//! from a thread that lives as long as the test process, with `SIGQUIT` as its
//! parent-death signal: when the test process ends, however it ends, the
//! server shuts down at once. Folders left by earlier test processes are
//! removed when the next one starts a server. `CutProxy` sits in front of a
//! server to break its connections on demand; `Session` keeps a `psql`
//! connection open (a transaction held while Inlet works).

mod proxy;
pub use proxy::CutProxy;
mod session;
pub use session::Session;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// Where Debian's `postgresql-15` puts its programs.
const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The role every test connects as (trust authentication, loopback only).
pub const USER: &str = "inlet";

/// Prefix of each server's folder in the temporary directory; the test
/// process's id follows it, so a later process can tell stale folders.
const DIR_PREFIX: &str = "inlet-pgserver-";

/// How long a server may take to accept connections after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL server owned by this test process.
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
    settings: &'static [&'static str],
}

/// Settings for tests: nothing is synced to disk. The server process may
/// crash (its WAL stays in the page cache); the machine must not.
const FAST: &[&str] = &["-c", "fsync=off", "-c", "full_page_writes=off"];

static SHARED: OnceLock<PgServer> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The test process's common server, started on first use.
pub fn shared() -> &'static PgServer {
    SHARED.get_or_init(|| PgServer::start().expect("starting the shared test PostgreSQL server"))
}

/// A new, empty database on the shared server: its `postgres://` URL.
pub fn fresh_database() -> String {
    shared().fresh_database()
}

impl PgServer {
    /// Initialises a cluster in a new folder (UTF-8, `C.UTF-8` locale, as
    /// Inlet's README asks) and starts a server on a free loopback port,
    /// syncing nothing to disk (fast tests; it survives its own crash).
    pub fn start() -> io::Result<Self> {
        Self::start_with(FAST)
    }

    /// `start`, but every commit synced as in production (for benchmarks).
    pub fn start_durable() -> io::Result<Self> {
        Self::start_with(&[])
    }

    fn start_with(settings: &'static [&'static str]) -> io::Result<Self> {
        remove_stale_folders();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{}", std::process::id(), fastrand_suffix()));
        std::fs::create_dir(&dir)?;
        let owner = server_user()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]);
        run_as(&mut initdb, owner);
        let out = initdb.output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let server = Self {
            dir,
            port: free_port()?,
            child: Mutex::new(None),
            settings,
        };
        server.spawn()?;
        Ok(server)
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        url_at(self.port, database)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .expect("creating a test database");
        self.url(&name)
    }

    /// Runs `sql` on the database the URL `url` names (or on a database
    /// by name) with `psql`; its output, one row a line, columns split by
    /// `|`. A test's own checks use it: it works inside an async test too.
    pub fn psql(&self, database: &str, sql: &str) -> io::Result<String> {
        psql(&self.url(database.rsplit('/').next().unwrap_or(database)), sql)
    }

    /// Stops the server as an operator would (`fast` shutdown: sessions are
    /// ended, committed work is kept).
    pub fn stop_fast(&self) {
        self.stop(libc::SIGINT);
    }

    /// Stops the server as a crash would (`immediate` shutdown: no
    /// checkpoint; the next start replays the WAL).
    pub fn crash(&self) {
        self.stop(libc::SIGQUIT);
    }

    /// Starts a stopped server again on the same port and data.
    pub fn restart(&self) -> io::Result<()> {
        self.spawn()
    }

    fn stop(&self, signal: i32) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut process) = child.take() {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe { libc::kill(process.id() as i32, signal) };
            let _ = process.wait();
        }
    }

    /// Spawns `postgres` from a thread that outlives every test (see the
    /// module's comment) and waits until it accepts connections.
    fn spawn(&self) -> io::Result<()> {
        let mut command = Command::new(bin("postgres"));
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
            .args(self.settings)
            .args(["-c", "max_connections=300", "-c", "shared_buffers=32MB"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("server.log"))?);
        run_as(&mut command, server_user()?);
        let (sent, spawned) = mpsc::channel();
        std::thread::Builder::new().name("pgserver".into()).spawn(move || {
            // SAFETY: prctl in the child before exec, async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let _ = sent.send(command.spawn());
            // This thread's life bounds the server's: it never returns.
            loop {
                std::thread::park();
            }
        })?;
        let child = spawned.recv().map_err(io::Error::other)??;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.wait_accepting()
    }

    fn wait_accepting(&self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.psql("postgres", "SELECT 1").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                return Err(io::Error::other(format!("postgres did not start: {log}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop(libc::SIGQUIT);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The URL of `database` on a server (or proxy) at 127.0.0.1:`port`.
pub fn url_at(port: u16, database: &str) -> String {
    format!("postgres://{USER}@127.0.0.1:{port}/{database}")
}

/// Runs `sql` against the database at `url` with `psql` (see `PgServer::psql`).
pub fn psql(url: &str, sql: &str) -> io::Result<String> {
    run_psql(url, sql, &[])
}

/// Separates the fields, records and NULLs of `rows`' output: control
/// characters no test value holds.
const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';
const NULL: &str = "\u{1d}";

/// The rows `sql` returns from the database at `url`, each value as text
/// (`None` for NULL).
pub fn rows(url: &str, sql: &str) -> io::Result<Vec<Vec<Option<String>>>> {
    let (field, record) = (FIELD.to_string(), RECORD.to_string());
    let out = run_psql(url, sql, &["-F", &field, "-R", &record, "-P", &format!("null={NULL}")])?;
    Ok(out
        .split(RECORD)
        .filter(|line| !line.is_empty())
        .map(|line| {
            line.split(FIELD)
                .map(|value| (value != NULL).then(|| value.to_owned()))
                .collect()
        })
        .collect())
}

fn run_psql(url: &str, sql: &str, format: &[&str]) -> io::Result<String> {
    let (url, password) = without_password(url);
    let mut psql = Command::new(bin("psql"));
    psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c", sql])
        .args(format)
        .stdin(Stdio::null());
    if let Some(password) = password {
        psql.env("PGPASSWORD", password);
    }
    let out = psql.output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_owned())
    } else {
        Err(io::Error::other(format!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        )))
    }
}

/// `url` without its password, and the password decoded: psql is given it
/// in its environment, since its arguments are visible to every local user.
fn without_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_owned(), None);
    };
    let Some((user, password)) = rest[..at].split_once(':') else {
        return (url.to_owned(), None);
    };
    let password = percent_encoding::percent_decode_str(password)
        .decode_utf8_lossy()
        .into_owned();
    (format!("{scheme}://{user}{}", &rest[at..]), Some(password))
}

fn bin(program: &str) -> PathBuf {
    let dir = std::env::var_os("PG_BIN").map_or_else(|| PathBuf::from(DEFAULT_BIN), PathBuf::from);
    dir.join(program)
}

/// PostgreSQL refuses to run as root: as root (CI), the server runs as the
/// `postgres` user Debian's package creates.
fn server_user() -> io::Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .map(Some)
        .ok_or_else(|| io::Error::other("running as root, and no `postgres` user to run the server as"))
}

fn run_as(command: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn fastrand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// Removes the folders of servers whose test process has ended.
fn remove_stale_folders() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_serves_and_restarts_with_its_data() {
        let server = PgServer::start().unwrap();
        let url = server.fresh_database();
        psql(
            &url,
            "CREATE EXTENSION pg_trgm; CREATE TABLE t (x text); INSERT INTO t VALUES ('kept')",
        )
        .unwrap();
        assert_eq!(psql(&url, "SHOW server_encoding").unwrap(), "UTF8");
        server.crash();
        assert!(psql(&url, "SELECT 1").is_err());
        server.restart().unwrap();
        assert_eq!(psql(&url, "SELECT x FROM t").unwrap(), "kept");
        psql(&url, "INSERT INTO t VALUES (NULL), ('two\nlines|x')").unwrap();
        let got = rows(&url, "SELECT x, length(x) FROM t ORDER BY x NULLS LAST").unwrap();
        let text = |v: &str| Some(v.to_owned());
        assert_eq!(
            got,
            [
                vec![text("kept"), text("4")],
                vec![text("two\nlines|x"), text("11")],
                vec![None, None]
            ]
        );
    }

    #[test]
    fn a_password_leaves_the_url_decoded() {
        assert_eq!(
            without_password("postgres://inlet:p%40ss@127.0.0.1:15432/inlet"),
            (
                "postgres://inlet@127.0.0.1:15432/inlet".to_owned(),
                Some("p@ss".to_owned())
            )
        );
        for url in ["postgres://inlet@host/db", "postgres://host/db?user=a", "inlet"] {
            assert_eq!(without_password(url), (url.to_owned(), None));
        }
    }
}
