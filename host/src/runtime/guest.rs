//! A loaded guest component, and the slot that holds the live one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::Component;
use wasmtime::{Engine, Store, UpdateDeadline};

use super::cache::{Compilation, CompileCache};
use super::engine::Runtime;
use super::epoch::EpochTicker;
use super::executor::GuestExecutor;
use super::instances::IdleInstances;
use super::sandbox::{Sandbox, Services};
use crate::bindings::{ServicePre, WIT_PACKAGE};
use crate::limits::GuestLimits;
use crate::telemetry::request_log::RequestId;

/// A compiled, pre-linked guest ready to instantiate per request.
pub struct Guest {
    /// The component linked against the host's imports; instantiated once per fresh instance.
    pub pre: ServicePre<Sandbox>,
    /// Hex SHA-256 of the component file: which build is serving.
    pub sha256: String,
    /// The component file it was loaded from.
    pub path: PathBuf,
    /// When it finished loading (compiled or taken from the cache, and checked).
    pub loaded_at: DateTime<Utc>,
    /// Whether its native code was compiled now or taken from the compile cache.
    pub compilation: Compilation,
    /// The limits of the runtime that loaded it.
    pub limits: GuestLimits,
    /// Advances the epoch, at which instances yield, while they run.
    pub ticker: EpochTicker,
    /// Where its instances run.
    pub executor: GuestExecutor,
    /// Instances waiting for their next request (none unless reuse is on).
    pub idle: IdleInstances,
    /// The runtime's instance permits, shared by every guest it loads.
    pub instances: Arc<Semaphore>,
}

impl Guest {
    /// Compiles (or takes from `cache`) the component at `path` and checks it
    /// against the host: it must be built against the host's `inlet:service`
    /// version, export `wasi:http/incoming-handler`, and every import must be
    /// one the host provides.
    pub fn load(runtime: &Runtime, path: &Path, cache: &CompileCache) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read guest component {}", path.display()))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let (component, compilation) = cache
            .component(&runtime.engine, &bytes, &sha256)
            .with_context(|| format!("{} is not a valid WebAssembly component", path.display()))?;
        check_contract(&runtime.engine, &component).with_context(|| format!("{} cannot be served", path.display()))?;
        let instance_pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{} needs an import the host does not provide", path.display()))?;
        let pre = ServicePre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{} does not export wasi:http/incoming-handler", path.display()))?;
        Ok(Self {
            pre,
            sha256,
            path: path.to_owned(),
            loaded_at: Utc::now(),
            compilation,
            limits: runtime.limits,
            ticker: runtime.ticker.clone(),
            executor: runtime.executor.clone(),
            idle: IdleInstances::new(
                runtime.limits.max_instances as usize,
                runtime.limits.requests_per_instance,
            ),
            instances: runtime.instances.clone(),
        })
    }

    /// A fresh store for request `id`: the sandbox, its memory cap and
    /// its `deadline`. At every epoch tick a computing instance traps if
    /// its deadline has passed, and otherwise yields its worker, so that
    /// computing guests take turns with everything else on the workers.
    pub fn new_store(&self, services: Arc<Services>, id: RequestId, deadline: Instant) -> Store<Sandbox> {
        let sandbox = Sandbox::new(services, id, deadline, self.limits.memory_bytes);
        let mut store = Store::new(self.pre.engine(), sandbox);
        store.limiter(|sandbox| &mut sandbox.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            Ok(if Instant::now() >= store.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                // tokio's own yield, as wasmtime advises: it also lets the
                // worker see timers and I/O before this guest's next turn.
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store
    }

    /// Readies a reused store for request `id`: its own log line, a clean
    /// memory-limit flag and its `deadline`.
    pub fn reset_store(&self, store: &mut Store<Sandbox>, id: RequestId, deadline: Instant) {
        store.data_mut().begin_request(id, deadline);
    }
}

/// Refuses a component built against another `inlet:service` package than
/// the host's: linking would fail too, but saying which versions meet tells
/// the operator what to rebuild.
fn check_contract(engine: &Engine, component: &Component) -> anyhow::Result<()> {
    let (package, served) = WIT_PACKAGE.split_once('@').expect("WIT_PACKAGE is name@version");
    let prefix = format!("{package}/");
    for (import, _) in component.component_type().imports(engine) {
        let Some(interface) = import.strip_prefix(&prefix) else {
            continue;
        };
        match interface.split_once('@') {
            Some((_, version)) if version == served => {}
            Some((_, version)) => {
                anyhow::bail!("it was built against {package}@{version}; this host serves {WIT_PACKAGE}")
            }
            None => anyhow::bail!("it was built against an unversioned {package}; this host serves {WIT_PACKAGE}"),
        }
    }
    Ok(())
}

/// The live guest. Readers take a cheap snapshot per request; a swap
/// replaces it atomically, so requests in flight finish on the old one.
pub struct GuestSlot(ArcSwap<Guest>);

impl GuestSlot {
    /// A slot with `guest` live.
    pub fn new(guest: Guest) -> Self {
        Self(ArcSwap::from_pointee(guest))
    }

    /// The live guest; stays valid for the caller even if a swap replaces it meanwhile.
    pub fn current(&self) -> Arc<Guest> {
        self.0.load_full()
    }

    /// Makes `guest` the live one; returns the one it replaced.
    pub fn replace(&self, guest: Guest) -> Arc<Guest> {
        self.0.swap(Arc::new(guest))
    }
}
