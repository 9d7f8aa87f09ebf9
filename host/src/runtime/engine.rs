//! One wasmtime engine and linker for the life of the process.

use anyhow::Context;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::sandbox::Sandbox;
use crate::bindings::inlet::service::{log, metrics, storage};

/// How many guest instances may exist at once; requests beyond it wait.
pub const MAX_INSTANCES: u32 = 256;

/// The compiled-code engine and the linker every guest is checked against.
#[derive(Clone)]
pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<Sandbox>,
}

impl Runtime {
    pub fn new() -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config())
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        storage::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        log::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        metrics::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        Ok(Self { engine, linker })
    }
}

/// The pooling allocator keeps instance slots (memories, tables) mapped and
/// reuses them, which makes a fresh instance per request cheap.
fn engine_config() -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_INSTANCES);
    pool.total_core_instances(MAX_INSTANCES * 4);
    pool.total_memories(MAX_INSTANCES * 2);
    pool.total_tables(MAX_INSTANCES * 4);
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}
