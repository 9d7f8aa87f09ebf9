//! The `inlet:service/service` world's bindings, generated from `wit/` and
//! documented there; public so that a test guest can embed this one (see
//! `handle`).
#![allow(missing_docs, unreachable_pub)]

wit_bindgen::generate!({
    path: "../wit",
    world: "inlet:service/service",
    generate_all,
    pub_export_macro: true,
});
