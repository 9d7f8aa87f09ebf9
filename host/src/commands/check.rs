//! `inlet check`: whether a component can be served, without serving it.

use std::path::Path;

use crate::limits::GuestLimits;
use crate::runtime::{CompileCache, Guest, Runtime};

/// Compiles and links `path` exactly as `inlet serve` would. Prints the
/// verdict; `Ok(false)` means the guest cannot be served.
pub fn run(path: &Path) -> anyhow::Result<bool> {
    let runtime = Runtime::new(GuestLimits::default())?;
    match Guest::load(&runtime, path, &CompileCache::default()) {
        Ok(guest) => {
            println!("ok: {} can be served (sha256 {})", path.display(), guest.sha256);
            Ok(true)
        }
        Err(error) => {
            println!("error: {error:#}");
            Ok(false)
        }
    }
}
