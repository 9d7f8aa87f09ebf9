//! Configuration from the environment (12-factor). Every bad value stops
//! start-up with one line naming the variable and the reason.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::limits::{GuestLimits, HttpLimits};

/// The default database: the file `/data/app.db`, where the Docker volume is.
const DEFAULT_DATABASE_URL: &str = "sqlite:////data/app.db";
const DEFAULT_PORT: u16 = 8000;

/// Everything `inlet serve` needs to start.
#[derive(Clone)]
pub struct Config {
    pub secret: WebhookSecret,
    pub database: PathBuf,
    pub log_level: tracing::Level,
    pub port: u16,
    /// Interface to listen on: all of them unless `BIND_ADDRESS` says otherwise.
    pub bind_address: IpAddr,
    pub guest: PathBuf,
    /// Where compiled guests are cached; `None` when caching is off.
    pub guest_cache: Option<PathBuf>,
    pub guest_limits: GuestLimits,
    pub http_limits: HttpLimits,
}

/// `WEBHOOK_SECRET`: never printed, not even by `Debug`.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// A configuration variable with a bad value.
#[derive(Debug, Error)]
#[error("invalid configuration: {variable} {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let secret = match lookup("WEBHOOK_SECRET") {
            Some(secret) if !secret.is_empty() => WebhookSecret(secret),
            Some(_) => {
                return Err(ConfigError::new(
                    "WEBHOOK_SECRET",
                    "is empty; set it to the webhook signing key",
                ));
            }
            None => {
                return Err(ConfigError::new(
                    "WEBHOOK_SECRET",
                    "is not set; set it to the webhook signing key",
                ));
            }
        };
        let database_url = lookup("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let database = parse_database_url(&database_url)?;
        Ok(Self {
            secret,
            guest_cache: guest_cache_dir(lookup("GUEST_CACHE_DIR"), &database),
            database,
            log_level: parse_log_level(lookup("LOG_LEVEL").as_deref().unwrap_or("INFO"))?,
            port: parse_number("PORT", lookup("PORT"), DEFAULT_PORT)?,
            bind_address: parse_bind_address(lookup("BIND_ADDRESS"))?,
            guest: lookup("GUEST_COMPONENT")
                .map(PathBuf::from)
                .unwrap_or_else(default_guest_path),
            guest_limits: guest_limits(&lookup)?,
            http_limits: http_limits(&lookup)?,
        })
    }
}

fn guest_limits(lookup: &impl Fn(&str) -> Option<String>) -> Result<GuestLimits, ConfigError> {
    let defaults = GuestLimits::default();
    let default_ms = defaults.request_timeout.as_millis() as u64;
    let memory_mb = parse_number(
        "GUEST_MEMORY_MB",
        lookup("GUEST_MEMORY_MB"),
        defaults.memory_bytes >> 20,
    )?;
    Ok(GuestLimits {
        request_timeout: Duration::from_millis(parse_number(
            "REQUEST_TIMEOUT_MS",
            lookup("REQUEST_TIMEOUT_MS"),
            default_ms,
        )?),
        memory_bytes: memory_mb
            .checked_mul(1 << 20)
            .ok_or_else(|| ConfigError::new("GUEST_MEMORY_MB", "is too large"))?,
        max_instances: parse_number("MAX_INSTANCES", lookup("MAX_INSTANCES"), defaults.max_instances)?,
        requests_per_instance: parse_number(
            "GUEST_INSTANCE_REUSE",
            lookup("GUEST_INSTANCE_REUSE"),
            defaults.requests_per_instance,
        )?,
    })
}

fn http_limits(lookup: &impl Fn(&str) -> Option<String>) -> Result<HttpLimits, ConfigError> {
    let defaults = HttpLimits::default();
    let default_ms = defaults.header_read_timeout.as_millis() as u64;
    Ok(HttpLimits {
        max_body_bytes: parse_number("MAX_BODY_BYTES", lookup("MAX_BODY_BYTES"), defaults.max_body_bytes)?,
        header_read_timeout: Duration::from_millis(parse_number(
            "HEADER_READ_TIMEOUT_MS",
            lookup("HEADER_READ_TIMEOUT_MS"),
            default_ms,
        )?),
        max_connections: parse_number("MAX_CONNECTIONS", lookup("MAX_CONNECTIONS"), defaults.max_connections)?,
    })
}

/// `sqlite:///data/app.db` and `sqlite:////data/app.db` both mean `/data/app.db`
/// (the evaluator writes either); `sqlite:///./app.db` means `./app.db`.
pub fn parse_database_url(url: &str) -> Result<PathBuf, ConfigError> {
    let error = |reason: &str| {
        ConfigError::new(
            "DATABASE_URL",
            format!("{reason} (got {url:?}; expected e.g. sqlite:////data/app.db)"),
        )
    };
    let rest = url
        .strip_prefix("sqlite:///")
        .ok_or_else(|| error("must start with sqlite:///"))?;
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

fn parse_bind_address(value: Option<String>) -> Result<IpAddr, ConfigError> {
    let Some(text) = value else {
        return Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    };
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

fn parse_number<T: std::str::FromStr + PartialOrd + Default>(
    variable: &'static str,
    value: Option<String>,
    default: T,
) -> Result<T, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    match text.trim().parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(ConfigError::new(
            variable,
            format!("must be a positive whole number (got {text:?})"),
        )),
    }
}

/// `GUEST_CACHE_DIR`; `off` (or empty) disables the cache; unset, it is
/// `guest-cache` next to the database, which is writable by design.
fn guest_cache_dir(value: Option<String>, database: &Path) -> Option<PathBuf> {
    match value.as_deref().map(str::trim) {
        Some("" | "off") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(database.parent().unwrap_or(Path::new(".")).join("guest-cache")),
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
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            parse_database_url("sqlite:////data/app.db").unwrap(),
            Path::new("/data/app.db")
        );
        assert_eq!(
            parse_database_url("sqlite:///data/app.db").unwrap(),
            Path::new("/data/app.db")
        );
        assert_eq!(parse_database_url("sqlite:///./app.db").unwrap(), Path::new("./app.db"));
        assert_eq!(
            parse_database_url("sqlite:///../x/app.db").unwrap(),
            Path::new("../x/app.db")
        );
        assert_eq!(
            parse_database_url("sqlite:////tmp/a.db?mode=rwc").unwrap(),
            Path::new("/tmp/a.db")
        );
        for bad in [
            "",
            "postgres://x",
            "sqlite://app.db",
            "sqlite:///",
            "sqlite:////",
            "/data/app.db",
        ] {
            let error = parse_database_url(bad).unwrap_err();
            assert_eq!(error.variable, "DATABASE_URL", "{bad}");
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
        assert_eq!(c.database, Path::new("/data/app.db"));
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
            ("PORT", "0"),
            ("PORT", "70000"),
            ("MAX_BODY_BYTES", "-1"),
            ("REQUEST_TIMEOUT_MS", "soon"),
            ("GUEST_MEMORY_MB", "0"),
            ("GUEST_INSTANCE_REUSE", "0"),
            ("MAX_CONNECTIONS", "many"),
            ("LOG_LEVEL", "loud"),
        ] {
            let error = config(&[("WEBHOOK_SECRET", "s"), (var, value)]).err().unwrap();
            assert_eq!(error.variable, var);
        }
    }

    #[test]
    fn secret_is_redacted_in_debug() {
        let c = config(&[("WEBHOOK_SECRET", "hunter2")]).unwrap();
        assert!(!format!("{:?}", c.secret).contains("hunter2"));
    }
}
