//! Configuration from the environment (12-factor): `Settings` lists every
//! variable, `Config` is what they mean. Every bad value stops start-up with
//! one line naming the variable and the reason.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::forwarding::{Destination, ForwardSettings};
use crate::limits::{GuestLimits, HttpLimits};
use crate::secrets::{SecretSource, WebhookSecret};

/// The default database: the file `/data/app.db`, where the Docker volume is.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:////data/app.db";
const DEFAULT_PORT: u16 = 8000;
/// How far a Standard Webhooks timestamp may be from now (every reference
/// library's value).
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

/// The largest value of each numeric setting: beyond them a value is a
/// mistake (or would overflow a clock or an allocator), and start-up stops.
const MAX_TOLERANCE_SECONDS: u64 = 366 * 24 * 3600;
const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// A wasm32 memory's whole address space.
const MAX_GUEST_MEMORY_MB: usize = 4096;
const MAX_INSTANCES: u32 = 4096;
const MAX_INSTANCE_REUSE: u32 = 1_000_000;
const MAX_BODY_BYTES: u64 = 1 << 30;
const MAX_CONNECTIONS: usize = 1_000_000;
/// Long-polls of `/feed` waiting at once, by default (`FEED_WAITERS`).
const DEFAULT_FEED_WAITERS: usize = 1000;
/// Forwarding's defaults (the contract's) and bounds.
const DEFAULT_FORWARD_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_FORWARD_MAX_ATTEMPTS: u32 = 15;
const MAX_FORWARD_ATTEMPTS: u32 = 1000;
const DEFAULT_FORWARD_CONCURRENCY: usize = 16;
const MAX_FORWARD_CONCURRENCY: usize = 1024;

/// Everything `inlet serve` needs to start.
#[derive(Clone)]
pub struct Config {
    /// Where the keys of `/webhook` signatures come from (`WEBHOOK_SECRET`,
    /// `WEBHOOK_SECRET_FILE`); at least one of them is set.
    pub secrets: SecretSource,
    /// How far a Standard Webhooks timestamp may be from now, in seconds
    /// (`WEBHOOK_TOLERANCE_SECONDS`).
    pub tolerance_seconds: u64,
    /// What Meta's handshake must present (`WHATSAPP_VERIFY_TOKEN`), if set.
    pub whatsapp_verify_token: Option<WebhookSecret>,
    /// The API keys' file (`API_KEYS_FILE`), if set; read by `ApiKeys::load`.
    pub api_keys_file: Option<PathBuf>,
    /// How long messages are kept (`RETENTION`); `None`: until erased.
    pub retention: Option<Duration>,
    /// Long-polls of `/feed` waiting at once, at most (`FEED_WAITERS`).
    pub feed_waiters: usize,
    /// Where and how messages are forwarded (`FORWARD_*`); `None`: not at all.
    pub forwarding: Option<ForwardSettings>,
    /// Where messages are stored, from `DATABASE_URL`.
    pub database: Database,
    /// Least severe level logged for Inlet's own events (`LOG_LEVEL`); dependencies log `warn` and up.
    pub log_level: tracing::Level,
    /// TCP port to listen on (`PORT`); 0 lets the system pick one.
    pub port: u16,
    /// Interface to listen on: all of them unless `BIND_ADDRESS` says otherwise.
    pub bind_address: IpAddr,
    /// The guest `.wasm` component served and watched for replacement (`GUEST_COMPONENT`).
    pub guest: PathBuf,
    /// Where compiled guests are cached; `None` when caching is off.
    pub guest_cache: Option<PathBuf>,
    /// What one request's guest instance may use.
    pub guest_limits: GuestLimits,
    /// What one client connection or request may cost.
    pub http_limits: HttpLimits,
}

/// A configuration variable with a bad value.
#[derive(Debug, Error)]
#[error("invalid configuration: {variable} {reason}")]
pub struct ConfigError {
    /// The environment variable at fault, e.g. `PORT`.
    pub variable: &'static str,
    /// What is wrong with its value and what was expected.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            reason: reason.into(),
        }
    }
}

/// `inlet serve`'s settings, each read from its environment variable (or
/// the flag of the same name). This is the one list of them: `inlet serve
/// --help` prints it, and the README's table is checked against that.
/// Values stay text here, so that a bad one is reported by `Config` as one
/// line naming its variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// HMAC-SHA256 key for `/webhook`; non-empty when set. This or `WEBHOOK_SECRET_FILE` is
    /// required, or start-up stops.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// A file of further secrets, one per line (`#` comments); re-read when it changes, so
    /// secrets rotate without a restart. Any configured secret verifies a request.
    #[arg(long, env = "WEBHOOK_SECRET_FILE")]
    webhook_secret_file: Option<String>,
    /// A file of API keys, one `NAME SCOPE KEY` line each (`#` comments); re-read when it
    /// changes. When set, the read routes need a `read` or `admin` key and the admin routes an
    /// `admin` key; unset, reads are open and the admin routes refused.
    #[arg(long, env = "API_KEYS_FILE")]
    api_keys_file: Option<String>,
    /// Seconds a Standard Webhooks `webhook-timestamp` may be from now, either way.
    #[arg(long, env = "WEBHOOK_TOLERANCE_SECONDS", default_value_t = DEFAULT_TOLERANCE_SECONDS.to_string())]
    webhook_tolerance_seconds: String,
    /// Where messages are stored. A SQLite file: `sqlite:////data/app.db` and
    /// `sqlite:///data/app.db` both mean `/data/app.db`; `sqlite:///./app.db` means `./app.db`.
    /// Or a PostgreSQL database shared by several hosts: `postgres://user:pass@host:5432/db`
    /// (libpq-style; several `host`s with `target_session_attrs=read-write` find the primary).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// A file whose first line is the PostgreSQL password, for a `postgres://` `DATABASE_URL`
    /// without one (a container's secret file, kept out of its environment); read at start-up.
    #[arg(long, env = "DATABASE_PASSWORD_FILE")]
    database_password_file: Option<String>,
    /// `DEBUG`, `INFO`, `WARNING` (or `WARN`) or `ERROR`, in any case.
    #[arg(long, env = "LOG_LEVEL", default_value = "INFO")]
    log_level: String,
    /// How long messages are kept: `<n>s`, `<n>m`, `<n>h` or `<n>d` (e.g. `30d`), from when
    /// they were stored; an older one is removed within a minute of reaching that age. Unset
    /// or empty: kept until erased.
    #[arg(long, env = "RETENTION")]
    retention: Option<String>,
    /// Requests long-polling `GET /feed` (`wait`) at once; one more is answered 503. A waiting
    /// request holds its connection but no guest instance (apart from `MAX_INSTANCES`).
    #[arg(long, env = "FEED_WAITERS", default_value_t = DEFAULT_FEED_WAITERS.to_string())]
    feed_waiters: String,
    /// Where every new message is delivered, at least once: `http://…` or `https://…` (a
    /// signed `POST`), or `nats://HOST:PORT/SUBJECT` (a JetStream publish). Unset: not forwarded.
    #[arg(long, env = "FORWARD_URL")]
    forward_url: Option<String>,
    /// The Standard Webhooks key HTTP(S) deliveries are signed with (`whsec_<base64>`, or any
    /// other string as UTF-8 bytes); required with an HTTP(S) `FORWARD_URL`.
    #[arg(long, env = "FORWARD_SECRET", hide_env_values = true)]
    forward_secret: Option<String>,
    /// Time one delivery attempt may take, in milliseconds; past it the attempt failed.
    #[arg(long, env = "FORWARD_TIMEOUT_MS", default_value_t = DEFAULT_FORWARD_TIMEOUT_MS.to_string())]
    forward_timeout_ms: String,
    /// Attempts at one message before it is `failed` (until `POST /forwarding/retry`).
    #[arg(long, env = "FORWARD_MAX_ATTEMPTS", default_value_t = DEFAULT_FORWARD_MAX_ATTEMPTS.to_string())]
    forward_max_attempts: String,
    /// Delivery attempts under way at once.
    #[arg(long, env = "FORWARD_CONCURRENCY", default_value_t = DEFAULT_FORWARD_CONCURRENCY.to_string())]
    forward_concurrency: String,
    /// TCP port to listen on; 0 lets the system choose (the `listening` log line names it).
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT.to_string())]
    port: String,
    /// Interface to listen on.
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: String,
    /// The guest `.wasm` component to serve; a replaced file is swapped in while serving.
    /// Default: `guest.wasm` next to the binary if present, else the `make build` output.
    #[arg(long, env = "GUEST_COMPONENT")]
    guest_component: Option<String>,
    /// Directory of compiled guests (native code: used only when private to this user);
    /// `off` disables it. Default: `guest-cache/` next to a SQLite database; off with PostgreSQL.
    #[arg(long, env = "GUEST_CACHE_DIR")]
    guest_cache_dir: Option<String>,
    /// Wall-clock budget of one request from its arrival (from its body's, for a body that came
    /// slowly), the wait for a guest instance included, in milliseconds; past it: 504 (503
    /// when no instance came free).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = GuestLimits::default().request_timeout.as_millis().to_string())]
    request_timeout_ms: String,
    /// Linear memory one guest instance may grow to, in MiB; past it: 500.
    #[arg(long, env = "GUEST_MEMORY_MB", default_value_t = (GuestLimits::default().memory_bytes >> 20).to_string())]
    guest_memory_mb: String,
    /// Guest instances alive at once; further requests wait for one within their
    /// `REQUEST_TIMEOUT_MS`.
    #[arg(long, env = "MAX_INSTANCES", default_value_t = GuestLimits::default().max_instances.to_string())]
    max_instances: String,
    /// Requests one guest instance serves. 1 is a fresh instance per request; above 1 an
    /// instance keeps its memory between requests (faster, but one request can read what the
    /// last left behind).
    #[arg(long, env = "GUEST_INSTANCE_REUSE", default_value_t = GuestLimits::default().requests_per_instance.to_string())]
    guest_instance_reuse: String,
    /// Largest request body in bytes, declared or streamed; past it: 413 (except on
    /// `/webhook/whatsapp`).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = HttpLimits::default().max_body_bytes.to_string())]
    max_body_bytes: String,
    /// Largest body of a WhatsApp Cloud API delivery (`/webhook/whatsapp`), in bytes.
    #[arg(long, env = "WHATSAPP_MAX_BODY_BYTES", default_value_t = HttpLimits::default().max_whatsapp_body_bytes.to_string())]
    whatsapp_max_body_bytes: String,
    /// The token Meta's webhook handshake must present (`hub.verify_token`); unset, every
    /// handshake is refused.
    #[arg(long, env = "WHATSAPP_VERIFY_TOKEN", hide_env_values = true)]
    whatsapp_verify_token: Option<String>,
    /// Time a client has to send a request's headers, in milliseconds; also the keep-alive
    /// idle timeout.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = HttpLimits::default().header_read_timeout.as_millis().to_string())]
    header_read_timeout_ms: String,
    /// Time a client has to send a request's whole body after its headers, in milliseconds;
    /// past it: 408. The host receives bodies, so a slow one holds no guest instance.
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = HttpLimits::default().body_read_timeout.as_millis().to_string())]
    body_read_timeout_ms: String,
    /// Time a response may wait for the client to read any of it, in milliseconds; past it
    /// the connection is closed.
    #[arg(long, env = "SEND_TIMEOUT_MS", default_value_t = HttpLimits::default().send_timeout.as_millis().to_string())]
    send_timeout_ms: String,
    /// Open client connections at once; further clients wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = HttpLimits::default().max_connections.to_string())]
    max_connections: String,
}

impl Settings {
    /// The settings from the environment alone (`inlet` without a subcommand).
    pub fn from_env() -> Self {
        use clap::{Args, FromArgMatches};
        let matches = Self::augment_args(clap::Command::new("inlet")).get_matches_from(["inlet"]);
        Self::from_arg_matches(&matches).expect("every setting has a default or is optional")
    }
}

impl Config {
    /// Checks every setting; the first bad one is the error.
    pub fn from_settings(settings: Settings) -> Result<Self, ConfigError> {
        let database = Database::parse(&settings.database_url)?;
        let forwarding = forwarding(&settings)?;
        let secrets = secret_source(settings.webhook_secret, settings.webhook_secret_file)?;
        let database = with_password_file(database, settings.database_password_file.filter(|f| !f.is_empty()))?;
        Ok(Self {
            secrets,
            tolerance_seconds: ranged(
                "WEBHOOK_TOLERANCE_SECONDS",
                &settings.webhook_tolerance_seconds,
                0,
                MAX_TOLERANCE_SECONDS,
            )?,
            whatsapp_verify_token: settings
                .whatsapp_verify_token
                .filter(|token| !token.is_empty())
                .map(WebhookSecret::new),
            api_keys_file: api_keys_file(settings.api_keys_file)?,
            retention: parse_retention(settings.retention.as_deref().unwrap_or_default())?,
            feed_waiters: ranged("FEED_WAITERS", &settings.feed_waiters, 1, MAX_CONNECTIONS)?,
            forwarding,
            guest_cache: guest_cache_dir(settings.guest_cache_dir, &database),
            database,
            log_level: parse_log_level(&settings.log_level)?,
            port: parse("PORT", &settings.port)?,
            bind_address: parse_bind_address(&settings.bind_address)?,
            guest: settings
                .guest_component
                .map(PathBuf::from)
                .unwrap_or_else(default_guest_path),
            guest_limits: GuestLimits {
                request_timeout: millis("REQUEST_TIMEOUT_MS", &settings.request_timeout_ms)?,
                memory_bytes: ranged::<usize>("GUEST_MEMORY_MB", &settings.guest_memory_mb, 1, MAX_GUEST_MEMORY_MB)?
                    << 20,
                max_instances: ranged("MAX_INSTANCES", &settings.max_instances, 1, MAX_INSTANCES)?,
                requests_per_instance: ranged(
                    "GUEST_INSTANCE_REUSE",
                    &settings.guest_instance_reuse,
                    1,
                    MAX_INSTANCE_REUSE,
                )?,
            },
            http_limits: HttpLimits {
                max_body_bytes: ranged("MAX_BODY_BYTES", &settings.max_body_bytes, 1, MAX_BODY_BYTES)?,
                max_whatsapp_body_bytes: ranged(
                    "WHATSAPP_MAX_BODY_BYTES",
                    &settings.whatsapp_max_body_bytes,
                    1,
                    MAX_BODY_BYTES,
                )?,
                header_read_timeout: millis("HEADER_READ_TIMEOUT_MS", &settings.header_read_timeout_ms)?,
                body_read_timeout: millis("BODY_READ_TIMEOUT_MS", &settings.body_read_timeout_ms)?,
                send_timeout: millis("SEND_TIMEOUT_MS", &settings.send_timeout_ms)?,
                max_connections: ranged("MAX_CONNECTIONS", &settings.max_connections, 1, MAX_CONNECTIONS)?,
            },
        })
    }
}

/// The `FORWARD_*` settings, when `FORWARD_URL` is set.
fn forwarding(settings: &Settings) -> Result<Option<ForwardSettings>, ConfigError> {
    let Some(destination) = Destination::parse(settings.forward_url.as_deref(), settings.forward_secret.as_deref())?
    else {
        return Ok(None);
    };
    Ok(Some(ForwardSettings {
        destination,
        timeout: millis("FORWARD_TIMEOUT_MS", &settings.forward_timeout_ms)?,
        max_attempts: ranged(
            "FORWARD_MAX_ATTEMPTS",
            &settings.forward_max_attempts,
            1,
            MAX_FORWARD_ATTEMPTS,
        )?,
        concurrency: ranged(
            "FORWARD_CONCURRENCY",
            &settings.forward_concurrency,
            1,
            MAX_FORWARD_CONCURRENCY,
        )?,
    }))
}

/// Longest `RETENTION`, in days: beyond it the calendar, not the policy, decides.
const MAX_RETENTION_DAYS: u64 = 100 * 366;

/// `RETENTION`: a whole number and a unit; empty for none.
fn parse_retention(text: &str) -> Result<Option<Duration>, ConfigError> {
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || {
        ConfigError::new(
            "RETENTION",
            format!("is {text:?}; expected a whole number of s, m, h or d, e.g. 30d or 12h"),
        )
    };
    let unit_at = text.len() - text.chars().last().map_or(0, char::len_utf8);
    let (number, unit) = text.split_at(unit_at);
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let count: u64 = number
        .parse()
        .ok()
        .filter(|n| *n > 0 && number.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(bad)?;
    let seconds = count.saturating_mul(seconds_per_unit);
    if seconds > MAX_RETENTION_DAYS * 86_400 {
        return Err(ConfigError::new(
            "RETENTION",
            format!("is {text:?}; at most {MAX_RETENTION_DAYS}d"),
        ));
    }
    Ok(Some(Duration::from_secs(seconds)))
}

/// `API_KEYS_FILE`, unless unset. Set but empty is refused rather than
/// read as unset: a compose file's `${API_KEYS_FILE}` with the variable
/// missing would otherwise open the reads to anyone.
fn api_keys_file(file: Option<String>) -> Result<Option<PathBuf>, ConfigError> {
    match file {
        Some(file) if file.is_empty() => Err(ConfigError::new(
            "API_KEYS_FILE",
            "is empty; unset it to leave reads open, or name a file of keys",
        )),
        file => Ok(file.map(PathBuf::from)),
    }
}

/// `WEBHOOK_SECRET` (non-empty when set) and `WEBHOOK_SECRET_FILE`; one is
/// needed. Whether the file holds a secret is checked when it is read.
fn secret_source(inline: Option<String>, file: Option<String>) -> Result<SecretSource, ConfigError> {
    let file = file.filter(|f| !f.is_empty()).map(PathBuf::from);
    match inline {
        Some(secret) if secret.is_empty() => Err(ConfigError::new(
            "WEBHOOK_SECRET",
            "is empty; set it to the webhook signing key",
        )),
        // Almost always a file pasted whole: several secrets meant as a list,
        // or one with a trailing newline that no sender signs with.
        Some(secret) if secret.contains(['\n', '\r']) => Err(ConfigError::new(
            "WEBHOOK_SECRET",
            "holds a line break; put several secrets in WEBHOOK_SECRET_FILE, one per line",
        )),
        None if file.is_none() => Err(ConfigError::new(
            "WEBHOOK_SECRET",
            "is not set; set it to the webhook signing key, or WEBHOOK_SECRET_FILE to a file of keys",
        )),
        inline => Ok(SecretSource {
            inline: inline.map(WebhookSecret::new),
            file,
        }),
    }
}

/// Where messages are stored.
#[derive(Clone, Debug)]
pub enum Database {
    /// A SQLite file, for one host; its directory is created if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database, which several hosts may share.
    Postgres(PgUrl),
}

impl Database {
    /// `DATABASE_URL` (and the URLs `inlet seed` and `inlet copy` take): a
    /// `sqlite:///` file (`parse_sqlite_url`) or a `postgres://` /
    /// `postgresql://` URL. A bad PostgreSQL URL is reported without echoing
    /// it, since it may hold a password.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return parse_sqlite_url(url).map(Self::Sqlite);
        }
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            ConfigError::new(
                "DATABASE_URL",
                format!("is not a valid PostgreSQL URL ({e}); expected e.g. postgres://user:password@host:5432/inlet"),
            )
        })?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "asks for sslmode=require, but this build connects without TLS; use a private network",
            ));
        }
        Ok(Self::Postgres(PgUrl(Box::new(config))))
    }

    /// The database for logs and messages: a path, or a URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => format!("{url:?}"),
        }
    }
}

/// A `postgres://` URL, parsed. Its `Debug` names the user, hosts and
/// database only: the password never reaches a log.
#[derive(Clone)]
pub struct PgUrl(pub Box<tokio_postgres::Config>);

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<String> = self
            .0
            .get_hosts()
            .iter()
            .zip(self.0.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(host, port)| match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(dir) => format!("{}:{port}", dir.display()),
            })
            .collect();
        write!(
            f,
            "postgres://{}@{}/{}",
            self.0.get_user().unwrap_or(""),
            hosts.join(","),
            self.0.get_dbname().unwrap_or("")
        )
    }
}

/// `DATABASE_PASSWORD_FILE`: the password of a PostgreSQL URL that names
/// none. Refused beside a SQLite file or a URL with its own password, where
/// one of the two would be silently ignored.
fn with_password_file(database: Database, file: Option<String>) -> Result<Database, ConfigError> {
    let error = |reason: String| ConfigError::new("DATABASE_PASSWORD_FILE", reason);
    let (mut url, file) = match (database, file) {
        (database, None) => return Ok(database),
        (Database::Sqlite(_), Some(_)) => return Err(error("applies to a postgres:// DATABASE_URL only".into())),
        (Database::Postgres(PgUrl(url)), Some(file)) => (url, file),
    };
    if url.get_password().is_some() {
        return Err(error(
            "is set, but DATABASE_URL holds a password too; keep one of them".into(),
        ));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| error(format!("cannot be read ({file}: {e})")))?;
    let password = text.lines().next().unwrap_or_default();
    if password.is_empty() {
        return Err(error(format!("holds no password on its first line ({file})")));
    }
    url.password(password);
    Ok(Database::Postgres(PgUrl(url)))
}

/// `sqlite:///data/app.db` and `sqlite:////data/app.db` both mean `/data/app.db`
/// (the evaluator writes either); `sqlite:///./app.db` means `./app.db`.
fn parse_sqlite_url(url: &str) -> Result<PathBuf, ConfigError> {
    // Anything but a sqlite: URL may be a mistyped PostgreSQL one holding a
    // password: only its scheme is echoed.
    let shown = if url.starts_with("sqlite:") {
        format!("{url:?}")
    } else {
        format!("scheme {:?}", url.split(':').next().unwrap_or_default())
    };
    let error = |reason: &str| {
        ConfigError::new(
            "DATABASE_URL",
            format!("{reason} (got {shown}; expected e.g. sqlite:////data/app.db or postgres://…)"),
        )
    };
    let rest = url
        .strip_prefix("sqlite:///")
        .ok_or_else(|| error("must start with sqlite:/// or postgres://"))?;
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    if path.is_empty() || path == "/" {
        return Err(error("has no file path"));
    }
    if path.starts_with("./") || path.starts_with("../") {
        Ok(PathBuf::from(path))
    } else {
        Ok(Path::new("/").join(path.trim_start_matches('/')))
    }
}

fn parse_bind_address(text: &str) -> Result<IpAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        ConfigError::new(
            "BIND_ADDRESS",
            format!("must be an IP address like 0.0.0.0 (got {text:?})"),
        )
    })
}

/// `DEBUG`, `INFO`, `WARNING`/`WARN` or `ERROR`, in any case.
pub fn parse_log_level(text: &str) -> Result<tracing::Level, ConfigError> {
    match text.trim().to_ascii_uppercase().as_str() {
        "DEBUG" => Ok(tracing::Level::DEBUG),
        "INFO" => Ok(tracing::Level::INFO),
        "WARNING" | "WARN" => Ok(tracing::Level::WARN),
        "ERROR" => Ok(tracing::Level::ERROR),
        _ => Err(ConfigError::new(
            "LOG_LEVEL",
            format!("must be DEBUG, INFO, WARNING or ERROR (got {text:?})"),
        )),
    }
}

/// A whole number.
fn parse<T: std::str::FromStr>(variable: &'static str, text: &str) -> Result<T, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| ConfigError::new(variable, format!("must be a whole number in range (got {text:?})")))
}

/// A whole number from `min` to `max`.
fn ranged<T>(variable: &'static str, text: &str, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match text.trim().parse::<T>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            variable,
            format!("must be a whole number from {min} to {max} (got {text:?})"),
        )),
    }
}

/// A duration in milliseconds, from 1 ms to `MAX_TIMEOUT_MS`.
fn millis(variable: &'static str, text: &str) -> Result<Duration, ConfigError> {
    ranged(variable, text, 1, MAX_TIMEOUT_MS).map(Duration::from_millis)
}

/// `GUEST_CACHE_DIR`; `off` (or empty) disables the cache. Unset, it is
/// `guest-cache` next to a SQLite database, which is writable by design; a
/// host on PostgreSQL is stateless and has no such folder, so it compiles.
fn guest_cache_dir(value: Option<String>, database: &Database) -> Option<PathBuf> {
    match (value.as_deref().map(str::trim), database) {
        (Some("" | "off"), _) | (None, Database::Postgres(_)) => None,
        (Some(dir), _) => Some(PathBuf::from(dir)),
        (None, Database::Sqlite(path)) => Some(path.parent().unwrap_or(Path::new(".")).join("guest-cache")),
    }
}

/// `guest.wasm` next to the binary when it exists (the Docker image and
/// release archives), else the `make build` output.
fn default_guest_path() -> PathBuf {
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("guest.wasm")));
    match beside_binary {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("target/wasm32-wasip2/release/inlet_guest.wasm"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration from `vars` alone (not the process environment),
    /// each passed as the flag of the setting whose variable it is.
    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        use clap::{Args, FromArgMatches};
        let command = Settings::augment_args(clap::Command::new("inlet"));
        let mut args = vec!["inlet".to_owned()];
        for (name, value) in vars {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_env().is_some_and(|env| env == *name))
                .unwrap_or_else(|| panic!("no setting reads {name}"));
            args.push(format!("--{}={value}", arg.get_long().expect("settings are flags")));
        }
        let matches = command.mut_args(|arg| arg.env(None::<&str>)).get_matches_from(args);
        Config::from_settings(Settings::from_arg_matches(&matches).unwrap())
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            parse_sqlite_url("sqlite:////data/app.db").unwrap(),
            Path::new("/data/app.db")
        );
        assert_eq!(
            parse_sqlite_url("sqlite:///data/app.db").unwrap(),
            Path::new("/data/app.db")
        );
        assert_eq!(parse_sqlite_url("sqlite:///./app.db").unwrap(), Path::new("./app.db"));
        assert_eq!(
            parse_sqlite_url("sqlite:///../x/app.db").unwrap(),
            Path::new("../x/app.db")
        );
        assert_eq!(
            parse_sqlite_url("sqlite:////tmp/a.db?mode=rwc").unwrap(),
            Path::new("/tmp/a.db")
        );
        for bad in [
            "",
            "mysql://x",
            "sqlite://app.db",
            "sqlite:///",
            "sqlite:////",
            "/data/app.db",
        ] {
            let error = parse_sqlite_url(bad).unwrap_err();
            assert_eq!(error.variable, "DATABASE_URL", "{bad}");
        }
    }

    #[test]
    fn postgres_urls_are_parsed_and_never_echo_the_password() {
        let c = config(&[
            ("WEBHOOK_SECRET", "s"),
            (
                "DATABASE_URL",
                "postgres://inlet:hunter2@db1:5433,db2/app?target_session_attrs=read-write",
            ),
        ])
        .unwrap();
        let Database::Postgres(url) = &c.database else {
            panic!("not PostgreSQL: {:?}", c.database)
        };
        assert_eq!(c.database.describe(), "postgres://inlet@db1:5433,db2:5432/app");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(c.guest_cache, None, "a stateless host compiles its guest");
        for bad in [
            "postgres://inlet:hunter2@db:notaport/app",
            "postgresql://inlet:hunter2@db/app?sslmode=require",
            "postgress://inlet:hunter2@db/app",
            "postgres:/inlet:hunter2@db/app",
        ] {
            let error = config(&[("WEBHOOK_SECRET", "s"), ("DATABASE_URL", bad)]).err().unwrap();
            assert_eq!(error.variable, "DATABASE_URL");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn log_levels() {
        assert_eq!(parse_log_level("debug").unwrap(), tracing::Level::DEBUG);
        assert_eq!(parse_log_level("Info").unwrap(), tracing::Level::INFO);
        assert_eq!(parse_log_level("WARNING").unwrap(), tracing::Level::WARN);
        assert_eq!(parse_log_level("warn").unwrap(), tracing::Level::WARN);
        assert_eq!(parse_log_level("ERROR").unwrap(), tracing::Level::ERROR);
        assert_eq!(parse_log_level("verbose").unwrap_err().variable, "LOG_LEVEL");
    }

    #[test]
    fn defaults_and_overrides() {
        let c = config(&[("WEBHOOK_SECRET", "s")]).unwrap();
        assert!(matches!(&c.database, Database::Sqlite(path) if path == Path::new("/data/app.db")));
        assert_eq!(c.guest_cache.as_deref(), Some(Path::new("/data/guest-cache")));
        assert_eq!(
            (c.port, c.log_level, c.http_limits.max_body_bytes),
            (8000, tracing::Level::INFO, 1024 * 1024)
        );
        let c = config(&[
            ("WEBHOOK_SECRET", "s"),
            ("PORT", "9001"),
            ("GUEST_COMPONENT", "/g.wasm"),
        ])
        .unwrap();
        assert_eq!((c.port, c.guest.as_path()), (9001, Path::new("/g.wasm")));
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(config(&[]).err().unwrap().variable, "WEBHOOK_SECRET");
        assert_eq!(
            config(&[("WEBHOOK_SECRET", "")]).err().unwrap().variable,
            "WEBHOOK_SECRET"
        );
        for (var, value) in [
            ("PORT", "http"),
            ("PORT", "-1"),
            ("PORT", "70000"),
            ("MAX_BODY_BYTES", "-1"),
            ("REQUEST_TIMEOUT_MS", "soon"),
            ("GUEST_MEMORY_MB", "0"),
            ("GUEST_INSTANCE_REUSE", "0"),
            ("MAX_CONNECTIONS", "many"),
            ("MAX_CONNECTIONS", "4294967296"),
            ("MAX_INSTANCES", "100000"),
            ("GUEST_MEMORY_MB", "5000"),
            ("REQUEST_TIMEOUT_MS", "18446744073709551615"),
            ("HEADER_READ_TIMEOUT_MS", "0"),
            ("BODY_READ_TIMEOUT_MS", "99999999999"),
            ("SEND_TIMEOUT_MS", "-1"),
            ("MAX_BODY_BYTES", "2000000000"),
            ("WEBHOOK_TOLERANCE_SECONDS", "9223372036854775807"),
            ("LOG_LEVEL", "loud"),
        ] {
            let error = config(&[("WEBHOOK_SECRET", "s"), (var, value)]).err().unwrap();
            assert_eq!(error.variable, var);
        }
    }

    #[test]
    fn a_password_file_completes_a_postgres_url_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "hunter2\n").unwrap();
        let file = file.to_str().unwrap();
        let url = "postgres://inlet@db/inlet";
        let c = config(&[
            ("WEBHOOK_SECRET", "s"),
            ("DATABASE_URL", url),
            ("DATABASE_PASSWORD_FILE", file),
        ])
        .unwrap();
        let Database::Postgres(PgUrl(parsed)) = &c.database else {
            panic!("not PostgreSQL")
        };
        assert_eq!(parsed.get_password(), Some(&b"hunter2"[..]));
        assert!(!c.database.describe().contains("hunter2"));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        for (url, file) in [
            ("postgres://inlet:other@db/inlet", file),
            ("sqlite:///./app.db", file),
            (url, "/nonexistent/password"),
            (url, empty.to_str().unwrap()),
        ] {
            let vars = [
                ("WEBHOOK_SECRET", "s"),
                ("DATABASE_URL", url),
                ("DATABASE_PASSWORD_FILE", file),
            ];
            assert_eq!(
                config(&vars).err().unwrap().variable,
                "DATABASE_PASSWORD_FILE",
                "{url} {file}"
            );
        }
    }

    #[test]
    fn secret_is_redacted_in_debug() {
        let c = config(&[("WEBHOOK_SECRET", "hunter2")]).unwrap();
        assert!(!format!("{:?}", c.secrets).contains("hunter2"));
    }

    #[test]
    fn an_empty_api_keys_file_is_refused_not_read_as_unset() {
        let error = config(&[("WEBHOOK_SECRET", "s"), ("API_KEYS_FILE", "")]).err().unwrap();
        assert_eq!(error.variable, "API_KEYS_FILE");
        let c = config(&[("WEBHOOK_SECRET", "s"), ("API_KEYS_FILE", "/run/secrets/keys")]).unwrap();
        assert_eq!(c.api_keys_file, Some(PathBuf::from("/run/secrets/keys")));
    }

    #[test]
    fn a_secret_with_a_line_break_is_refused() {
        let error = config(&[("WEBHOOK_SECRET", "one\ntwo")]).err().unwrap();
        assert_eq!(error.variable, "WEBHOOK_SECRET");
    }

    #[test]
    fn retention_takes_a_number_and_a_unit() {
        for (text, seconds) in [("30d", 30 * 86_400), ("12h", 43_200), ("90m", 5_400), ("45s", 45)] {
            let c = config(&[("WEBHOOK_SECRET", "s"), ("RETENTION", text)]).unwrap();
            assert_eq!(c.retention, Some(Duration::from_secs(seconds)), "{text}");
        }
        for unset in [
            &[("WEBHOOK_SECRET", "s")][..],
            &[("WEBHOOK_SECRET", "s"), ("RETENTION", "")],
        ] {
            assert_eq!(config(unset).unwrap().retention, None);
        }
        for bad in [
            "30",
            "d",
            "0d",
            "-1d",
            "+1d",
            "1.5h",
            "1w",
            "30 d",
            "3e1s",
            "99999999999999999999d",
            "36601d",
            "7日",
        ] {
            let error = config(&[("WEBHOOK_SECRET", "s"), ("RETENTION", bad)]).err().unwrap();
            assert_eq!(error.variable, "RETENTION", "{bad}");
        }
    }

    #[test]
    fn a_secret_file_alone_is_enough_and_the_tolerance_is_read() {
        let c = config(&[("WEBHOOK_SECRET_FILE", "/run/secrets/webhook")]).unwrap();
        assert!(c.secrets.inline.is_none());
        assert_eq!(c.secrets.file.as_deref(), Some(Path::new("/run/secrets/webhook")));
        assert_eq!(c.tolerance_seconds, DEFAULT_TOLERANCE_SECONDS);
        let c = config(&[("WEBHOOK_SECRET", "s"), ("WEBHOOK_TOLERANCE_SECONDS", "60")]).unwrap();
        assert_eq!(c.tolerance_seconds, 60);
        let error = config(&[("WEBHOOK_SECRET", "s"), ("WEBHOOK_TOLERANCE_SECONDS", "-5")])
            .err()
            .unwrap();
        assert_eq!(error.variable, "WEBHOOK_TOLERANCE_SECONDS");
    }
}
