//! The `inlet` subcommands.

pub mod check;
pub mod serve;
pub mod sign;
