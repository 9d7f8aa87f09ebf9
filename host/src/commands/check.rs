//! `inlet check`: whether a component can be served, without serving it.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::limits::GuestLimits;
use crate::runtime::{CompileCache, Guest, Runtime};

/// `inlet check`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Path to the guest `.wasm` component.
    guest: PathBuf,
}

/// Compiles and links the guest exactly as `inlet serve` would and prints
/// the verdict; a guest that cannot be served is a failure exit.
pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(GuestLimits::default())?;
    match Guest::load(&runtime, &args.guest, &CompileCache::default()) {
        Ok(guest) => {
            println!("ok: {} can be served (sha256 {})", args.guest.display(), guest.sha256);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("error: {error:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}
