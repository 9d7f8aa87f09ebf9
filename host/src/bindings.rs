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
        "inlet:service/forwarding": async,
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

/// The `inlet:service` package and version this host serves, as `wit/`
/// declares it; guests built against any other are refused.
pub const WIT_PACKAGE: &str = "inlet:service@0.5.0";

#[cfg(test)]
mod tests {
    use super::WIT_PACKAGE;

    #[test]
    fn wit_package_is_the_one_wit_declares() {
        let wit = include_str!("../../wit/service.wit");
        assert!(
            wit.contains(&format!("\npackage {WIT_PACKAGE};\n")),
            "wit/service.wit declares another package"
        );
    }
}
