//! The `inlet` subcommands.

pub mod backup;
pub mod check;
pub mod copy;
pub mod key;
pub mod probe;
pub mod seed;
pub mod serve;
pub mod sign;
