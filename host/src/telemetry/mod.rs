//! Logs and metrics: JSON lines on stdout and Prometheus exposition.

pub mod logging;
pub mod metrics;
pub mod request_log;
pub mod stdout;
