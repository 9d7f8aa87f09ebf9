//! The `inlet` subcommands.

pub mod check;
pub mod copy;
pub mod probe;
pub mod seed;
pub mod serve;
pub mod sign;
