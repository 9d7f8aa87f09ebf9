//! Host-side bindings generated from `wit/` (world `inlet:service/service`).
//!
//! WASI types come from wasmtime-wasi and wasmtime-wasi-http, so the exported
//! `wasi:http/incoming-handler` takes their request and outparam resources.
//! The generated items are documented where they are defined, in the WIT.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "inlet:service/service",
    imports: {
        "inlet:service/storage": async,
        "inlet:service/log.annotate": trappable,
        "inlet:service/log.event": trappable,
    },
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
    additional_derives: [PartialEq, Eq, Hash],
    require_store_data_send: true,
});
