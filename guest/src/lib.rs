//! Inlet's HTTP application as a `wasi:http/incoming-handler` component.
//!
//! Routing, validation, signature checks and JSON live here; storage, logs
//! and metrics are the host's, reached through the `inlet:service` imports.
//! The pure modules, and the decisions of those that call the host (such
//! as `access::decide`), are unit-tested natively.

mod access;
pub mod bindings;
mod cursor;
mod feed;
mod forwarding;
#[cfg(test)]
mod fuzz;
mod http_io;
mod listing;
mod message;
mod openapi;
mod payload;
mod problem;
mod query;
mod response;
mod router;
mod signed;
mod stats;
mod timestamp;
mod webhook;
mod whatsapp;

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};

use response::Response;
use router::Route;
use signed::Accepted;

struct Component;

impl Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        handle(request, response_out);
    }
}

/// Answers one request. Public for guests that embed this one without its
/// export (feature `export` off), such as the tests' misbehaving guest.
pub fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    let response = respond(&request);
    http_io::send(response_out, response);
}

fn respond(request: &IncomingRequest) -> Response {
    let method = http_io::method(request);
    let (path, query) = http_io::path_and_query(request);
    if let Some(route) = Route::at(&path) {
        bindings::inlet::service::metrics::name_route(route.path());
    }
    let route = match router::route(&method, &path) {
        Ok(route) => route,
        Err(response) => return response,
    };
    if let Err(refused) = access::admit(request, route.needs(&method)) {
        return refused;
    }
    let parameter = route.parameter(&path).unwrap_or_default();
    match route {
        Route::Webhook => signed::delivery(request, Accepted::AnyScheme, webhook::handle),
        Route::Messages => listing::handle(&query),
        Route::Message if method == "DELETE" => message::erase(parameter),
        Route::Message => message::read(parameter),
        Route::Feed => feed::handle(&query),
        Route::Stats => stats::handle(),
        Route::OpenApi => openapi::handle(),
        Route::WhatsApp if method == "GET" => whatsapp::verify_subscription(&query),
        Route::WhatsApp => signed::delivery(request, Accepted::HubOnly, whatsapp::handle),
        Route::Forwarding => forwarding::status(),
        Route::ForwardingRetry => forwarding::retry(),
    }
}

// Natively the crate is only unit-tested: exporting symbols named like
// `wasi:http/incoming-handler@0.2.12#handle` would break the native linker.
// What the macro generates is only for the component's export table.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
#[allow(unreachable_pub)]
mod export {
    use super::{Component, bindings};
    bindings::export!(Component with_types_in bindings);
}
