//! Inlet's host as a library: the `inlet` binary is a thin CLI over it, and
//! test harnesses (`inlet-harness`) run guests with the same engine,
//! sandbox and imports.

pub mod api_keys;
pub mod bindings;
pub mod commands;
pub mod config;
pub mod docs;
pub mod feed_watch;
pub mod file_watch;
pub mod forwarding;
pub mod limits;
pub mod retention;
pub mod runtime;
pub mod secrets;
pub mod server;
pub mod storage;
pub mod telemetry;
