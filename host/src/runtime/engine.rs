//! One wasmtime engine and linker for the life of the process.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::epoch::EpochTicker;
use super::executor::GuestExecutor;
use super::sandbox::Sandbox;
use crate::bindings::inlet::service::{access, forwarding, log, metrics, settings, storage};
use crate::limits::GuestLimits;

/// The compiled-code engine and the linker every guest is checked against.
#[derive(Clone)]
pub struct Runtime {
    /// Compiles guests and runs their instances (pooling allocator, epoch interruption).
    pub engine: Engine,
    /// Host imports (WASI, `wasi:http`, `inlet:service`) a guest may use; others fail linking.
    pub linker: Linker<Sandbox>,
    /// The limits the engine's pool was sized for; every guest loaded by it runs under them.
    pub limits: GuestLimits,
    /// How freed instance memory is reset on this kernel; detected when the runtime is built.
    pub memory_reset: MemoryReset,
    /// Advances the epoch while guests run, for their yields and deadlines.
    pub ticker: EpochTicker,
    /// The guest worker threads, apart from the server's.
    pub executor: GuestExecutor,
    /// One permit per instance a request may run in (`MAX_INSTANCES`); the
    /// pool holds one slot more, for trying out a new guest (see `reload`).
    pub instances: Arc<Semaphore>,
}

/// How a freed instance's linear memory is made fresh for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryReset {
    /// The pages it wrote are found with the kernel's `PAGEMAP_SCAN` (Linux
    /// 6.7+) and copied back from the guest's initial image, up to
    /// `MEMORY_KEEP_RESIDENT_BYTES`; they stay mapped for the next instance.
    CopyDirtyPages,
    /// Everything is handed back to the kernel (`madvise`) and faulted in
    /// again by the next instance.
    Decommit,
}

impl MemoryReset {
    fn detect() -> Self {
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            Self::CopyDirtyPages
        } else {
            Self::Decommit
        }
    }

    /// The name in the `engine ready` log line's `memory_reset` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CopyDirtyPages => "copy_dirty_pages",
            Self::Decommit => "decommit",
        }
    }
}

impl Runtime {
    /// Builds the engine for `limits`, starts the ticker and the guest workers, and links the host imports.
    /// Fails when wasmtime rejects the engine configuration, linking fails or a thread cannot start.
    pub fn new(limits: GuestLimits) -> anyhow::Result<Self> {
        let memory_reset = MemoryReset::detect();
        let engine = Engine::new(&engine_config(&limits, memory_reset))
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        let ticker = EpochTicker::start(&engine)?;
        let executor = GuestExecutor::start()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        storage::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        log::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        metrics::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        settings::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        access::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        forwarding::add_to_linker::<_, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        Ok(Self {
            engine,
            linker,
            limits,
            memory_reset,
            ticker,
            executor,
            instances: Arc::new(Semaphore::new(limits.max_instances as usize)),
        })
    }
}

/// Bytes of a freed instance's tables reset with `memset` instead of
/// `madvise`. A guest's tables are a few KiB, so this covers them whole: the
/// system call, its TLB shootdown on the other core and the page faults on
/// reuse go away, at no cost in resident memory.
const TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;

/// Most bytes of a freed instance's linear memory copied back instead of
/// decommitted, when only written pages are copied (`CopyDirtyPages`); any
/// more is decommitted as before. It makes a fresh instance much cheaper for
/// one working set of resident memory per warm slot; a larger bound measured
/// no faster, so the smaller one. Without the scan the same setting would
/// `memset` the first bytes whether written or not (more memory and slower),
/// so it is only used with it.
const MEMORY_KEEP_RESIDENT_BYTES: usize = 256 << 10;

/// The pooling allocator keeps instance slots (memories, tables) mapped and
/// reuses them, which makes a fresh instance per request cheap.
fn engine_config(limits: &GuestLimits, memory_reset: MemoryReset) -> Config {
    // Idle instances kept for reuse hold slots too: at most as many as run.
    // One more slot is a swap's trial instance, which so never waits for a
    // request's slot nor takes one.
    let running = if limits.reuses_instances() {
        limits.max_instances.saturating_mul(2)
    } else {
        limits.max_instances
    };
    let instances = running + 1;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances);
    pool.total_core_instances(instances * 4);
    pool.total_memories(instances * 2);
    pool.total_tables(instances * 4);
    pool.max_memory_size(limits.memory_bytes);
    pool.table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);
    if memory_reset == MemoryReset::CopyDirtyPages {
        pool.pagemap_scan(Enabled::Yes);
        pool.linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_BYTES);
    }
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}
