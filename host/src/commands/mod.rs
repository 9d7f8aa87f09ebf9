//! The `inlet` subcommands.

pub mod check;
pub mod probe;
pub mod serve;
pub mod sign;
