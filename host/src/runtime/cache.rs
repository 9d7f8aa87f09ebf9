//! An on-disk cache of compiled guests, so a restart with the same guest
//! does not compile it again.
//!
//! Entries are keyed by the component's SHA-256 and the engine's
//! compatibility hash (wasmtime version, target, settings). A missing,
//! unwritable or corrupt cache only costs a compile, never a failure.
//! The directory must be writable by Inlet alone: loading an entry trusts it
//! as compiled code.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compilation {
    /// Loaded from the cache.
    Cached,
    /// Compiled now (and stored, when the cache is writable).
    Compiled,
}

impl Compilation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cached => "cached",
            Self::Compiled => "compiled",
        }
    }
}

/// The compile cache; `None` disables it.
#[derive(Debug, Clone, Default)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// The component for `bytes` (whose hex SHA-256 is `sha256`).
    pub fn component(&self, engine: &Engine, bytes: &[u8], sha256: &str) -> anyhow::Result<(Component, Compilation)> {
        let Some(dir) = &self.dir else {
            return Ok((compile(engine, bytes)?, Compilation::Compiled));
        };
        let entry = dir.join(format!("{sha256}-{:016x}.cwasm", engine_key(engine)));
        if entry.exists() {
            // SAFETY: entries are written only by `store` below, into a
            // directory only Inlet writes; wasmtime still checks the header.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => return Ok((component, Compilation::Cached)),
                Err(error) => {
                    tracing::warn!(entry = %entry.display(), %error, "compile cache entry unusable; recompiling")
                }
            }
        }
        let serialized = engine
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)
            .context("not a valid WebAssembly component")?;
        if let Err(error) = store(dir, &entry, &serialized) {
            tracing::warn!(dir = %dir.display(), error = %format!("{error:#}"), "compile cache not writable");
        }
        // SAFETY: `serialized` was produced by this engine just now.
        let component = unsafe { Component::deserialize(engine, &serialized) }.map_err(anyhow::Error::from)?;
        Ok((component, Compilation::Compiled))
    }
}

fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("not a valid WebAssembly component")
}

/// Changes whenever compiled code from another engine would not load here.
fn engine_key(engine: &Engine) -> u64 {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// Writes an entry atomically: readers see the whole file or none.
fn store(dir: &Path, entry: &Path, serialized: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let partial = entry.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, serialized)?;
    std::fs::rename(&partial, entry)?;
    Ok(())
}
