//! Running the guest component: the engine, loading and swapping guests, the
//! per-request sandbox, and the host side of the `inlet:service` imports.

mod engine;
mod guest;
mod imports;
mod invoke;
mod sandbox;

pub use engine::{MAX_INSTANCES, Runtime};
pub use guest::{Guest, GuestSlot};
pub use invoke::{GuestExit, GuestReply, call};
pub use sandbox::Services;
