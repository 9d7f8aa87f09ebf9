//! The stores through the library, without a server: one test binary, one
//! module per backend, both held to the checks in `conformance`.

mod conformance;
mod postgres;
mod sqlite;
