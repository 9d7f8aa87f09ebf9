//! Running the guest component: the engine, loading and swapping guests, the
//! per-request sandbox, and the host side of the `inlet:service` imports.

mod cache;
mod engine;
mod epoch;
mod executor;
mod guest;
mod imports;
mod instances;
mod invoke;
mod parking;
mod reload;
mod request_body;
mod sandbox;
mod stderr;

pub use cache::{Compilation, CompileCache};
pub use engine::Runtime;
pub use executor::{GuestExecutor, WORKER_NAME};
pub use guest::{Guest, GuestSlot};
pub use invoke::{GuestExit, GuestFailure, GuestReply, GuestRequest, GuestTask, call};
pub use parking::Parking;
pub use reload::{ReloadOutcome, Reloader, Trigger};
pub use request_body::{BodyFailure, ClientBody, GuestBody};
pub use sandbox::Services;
