//! One wasmtime engine and linker for the life of the process.

use std::time::Duration;

use anyhow::Context;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::sandbox::Sandbox;
use crate::bindings::inlet::service::{log, metrics, storage};
use crate::limits::GuestLimits;

/// How often the engine's epoch advances; request deadlines are counted in
/// these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The compiled-code engine and the linker every guest is checked against.
#[derive(Clone)]
pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<Sandbox>,
    pub limits: GuestLimits,
}

impl Runtime {
    pub fn new(limits: GuestLimits) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&limits))
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        start_epoch_ticker(&engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        storage::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        log::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        metrics::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        Ok(Self { engine, linker, limits })
    }

    /// The request deadline in epoch ticks.
    pub fn deadline_ticks(&self) -> u64 {
        (self.limits.request_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}

/// Advances the epoch every `EPOCH_TICK` until the engine is dropped, so a
/// guest running past its deadline is interrupted.
fn start_epoch_ticker(engine: &Engine) -> anyhow::Result<()> {
    let engine = engine.weak();
    std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
        while let Some(engine) = engine.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    })?;
    Ok(())
}

/// Bytes of a freed instance's tables reset with `memset` instead of
/// `madvise`. A guest's tables are a few KiB, so this covers them whole: the
/// system call, its TLB shootdown on the other core and the page faults on
/// reuse go away (hello guest here: about 9k -> 11.5k req/s, peak RSS
/// unchanged). Doing the same for linear memory cost 30 MiB of RSS for little
/// more.
const TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;

/// The pooling allocator keeps instance slots (memories, tables) mapped and
/// reuses them, which makes a fresh instance per request cheap.
fn engine_config(limits: &GuestLimits) -> Config {
    // Idle instances kept for reuse hold slots too: at most as many as run.
    let instances = if limits.reuses_instances() {
        limits.max_instances.saturating_mul(2)
    } else {
        limits.max_instances
    };
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances);
    pool.total_core_instances(instances * 4);
    pool.total_memories(instances * 2);
    pool.total_tables(instances * 4);
    pool.max_memory_size(limits.memory_bytes);
    pool.table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}
