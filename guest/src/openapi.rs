//! `GET /openapi.json`: the HTTP API as an OpenAPI 3.1 document.
//!
//! Built from the code, not written beside it: every `Route` gets its
//! operation from an exhaustive match, the bodies are the schemas of the
//! types the handlers serialise (`ToSchema`), and the parameters and the
//! webhook body take their limits from the validators' own constants. So a
//! swapped guest describes itself. Two routes the host answers for any
//! guest (`/health/live`, `/metrics`) are described too, as are the host's
//! answers on the guest's routes: 413 for a body over `MAX_BODY_BYTES`, 504
//! past the request deadline and 500 when the guest fails, all as `Detail`.

use inlet_signature::{hex_hmac, standard};
use serde_json::{Value, json};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::schema::{
    AnyOf, AnyOfBuilder, ComponentsBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required};

use crate::listing::{MessageView, Page};
use crate::payload::{MAX_TEXT_CHARS, MSISDN_PATTERN};
use crate::problem::{FieldError, ValidationProblem};
use crate::query::{DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET};
use crate::response::{Acknowledged, Detail, RETRY_AFTER_SECONDS, Response};
use crate::router::Route;
use crate::stats::{SenderView, StatsView};
use crate::timestamp;
use crate::webhook::{HUB_SIGNATURE, X_SIGNATURE};

/// The document as JSON.
pub(crate) fn handle() -> Response {
    Response::json(200, &document())
}

/// The whole API, as JSON.
///
/// utoipa holds a bound as a `usize`, 32 bits on wasm32, so `offset`'s
/// 64-bit maximum is written into the JSON instead.
pub(crate) fn document() -> Value {
    let mut document = serde_json::to_value(openapi()).expect("the document serializes");
    let offset = document["paths"][Route::Messages.path()]["get"]["parameters"]
        .as_array_mut()
        .and_then(|parameters| parameters.iter_mut().find(|p| p["name"] == "offset"));
    if let Some(offset) = offset {
        offset["schema"]["maximum"] = json!(MAX_OFFSET);
    }
    document
}

fn openapi() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in Route::ALL {
        let method = match route.method() {
            "POST" => HttpMethod::Post,
            _ => HttpMethod::Get,
        };
        if let Some(operation) = operation(route) {
            paths = paths.path(route.path(), PathItem::new(method, operation));
        }
    }
    paths = paths
        .path("/health/live", PathItem::new(HttpMethod::Get, live()))
        .path("/metrics", PathItem::new(HttpMethod::Get, metrics()));
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Inlet")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Ingests signed webhook messages exactly once and lists, filters and counts them.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components()))
        .build()
}

/// The named schemas the operations refer to.
fn components() -> utoipa::openapi::Components {
    ComponentsBuilder::new()
        .schema("WebhookMessage", webhook_message())
        .schema_from::<Acknowledged>()
        .schema_from::<Detail<'static>>()
        .schema_from::<FieldError>()
        .schema_from::<ValidationProblem<'static>>()
        .schema_from::<Page<'static>>()
        .schema_from::<MessageView<'static>>()
        .schema_from::<StatsView<'static>>()
        .schema_from::<SenderView<'static>>()
        .schema("Ready", ready())
        .build()
}

/// The operation a guest route offers; `None` for the document itself,
/// which does not describe itself (as in FastAPI).
fn operation(route: Route) -> Option<Operation> {
    let operation = match route {
        Route::Webhook => webhook(),
        Route::Messages => messages(),
        Route::Stats => stats(),
        Route::Ready => ready_operation(),
        Route::OpenApi => return None,
    };
    Some(operation)
}

fn webhook() -> Operation {
    let body = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content("application/json", json_content("WebhookMessage"))
        .build();
    guest_operation("ingest", "Store a signed message, exactly once")
        .description(Some(
            "Signed by one of three schemes, each an HMAC-SHA256 over the raw body under any configured \
             secret: `X-Signature`, `X-Hub-Signature-256`, or Standard Webhooks (`webhook-id`, \
             `webhook-timestamp` within `WEBHOOK_TOLERANCE_SECONDS`, `webhook-signature`; `svix-*` \
             too). The strongest scheme present decides: Standard Webhooks, then \
             `X-Hub-Signature-256`, then `X-Signature`. The signature is checked before the body is \
             parsed. A message whose `message_id` is already stored is acknowledged without change.",
        ))
        .parameters(Some(signature_headers()))
        .request_body(Some(body))
        .response("200", json_response("Stored, or already stored", "Acknowledged"))
        .response("400", json_response("The body could not be read", "Detail"))
        .response(
            "401",
            json_response(
                "No configured secret verifies the signature (or none is configured); nothing stored",
                "Detail",
            ),
        )
        .response("422", validation_response())
        .response("503", unavailable_response("Storage unavailable; nothing stored"))
        .build()
}

/// What `POST /webhook` accepts (validated by `payload`; unknown fields are
/// ignored).
fn webhook_message() -> Schema {
    let msisdn = || string().pattern(Some(MSISDN_PATTERN));
    let text = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(MAX_TEXT_CHARS))
        .description(Some("At most this many characters; absent or null for none."));
    ObjectBuilder::new()
        .property(
            "message_id",
            string()
                .min_length(Some(1))
                .description(Some("Unique per message: a repeat is a duplicate.")),
        )
        .required("message_id")
        .property("from", msisdn().description(Some("The sender: `+` and digits.")))
        .required("from")
        .property("to", msisdn().description(Some("The recipient: `+` and digits.")))
        .required("to")
        .property("ts", timestamp_schema().description(Some("When it was sent.")))
        .required("ts")
        .property("text", text)
        .examples([json!({
            "message_id": "m1", "from": "+919876543210", "to": "+14155550100",
            "ts": "2025-01-15T10:00:00Z", "text": "Hello"
        })])
        .into()
}

/// The signature headers, all optional: which are present picks the scheme.
fn signature_headers() -> Vec<Parameter> {
    let header = |name: &str, description: &str, schema: ObjectBuilder| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema))
            .build()
    };
    let [id, timestamp, signature] = standard::HEADER_NAMES;
    vec![
        header(
            X_SIGNATURE,
            "Hex HMAC-SHA256 of the raw body, either case, optionally after `sha256=`.",
            string().pattern(Some(hex_hmac::X_SIGNATURE_PATTERN)),
        ),
        header(
            HUB_SIGNATURE,
            "`sha256=` and the hex HMAC-SHA256 of the raw body (Meta, GitHub).",
            string().pattern(Some(hex_hmac::HUB_SIGNATURE_PATTERN)),
        ),
        header(id, "Standard Webhooks: the message's id.", string().min_length(Some(1))),
        header(
            timestamp,
            "Standard Webhooks: Unix seconds of this attempt.",
            string().pattern(Some(standard::TIMESTAMP_PATTERN)),
        ),
        header(
            signature,
            "Standard Webhooks: space-separated `v1,<base64>` entries over `id.timestamp.body`.",
            string().min_length(Some(1)),
        ),
    ]
}

fn messages() -> Operation {
    let query = |name: &str, description: &str, schema: Schema| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema))
    };
    let integer = || ObjectBuilder::new().schema_type(Type::Integer);
    guest_operation("list_messages", "List stored messages, filtered and paged")
        .description(Some(
            "Ordered by the instant of `ts`, then `message_id`. `total` counts every match. Follow \
             `next_cursor` for the next page at the same cost at any depth.",
        ))
        .parameter(query(
            "limit",
            "Messages per page.",
            integer()
                .minimum(Some(1))
                .maximum(Some(MAX_LIMIT))
                .default(Some(json!(DEFAULT_LIMIT)))
                .into(),
        ))
        .parameter(query(
            "offset",
            "Matching messages to skip.",
            integer().minimum(Some(0)).default(Some(json!(0))).into(),
        ))
        .parameter(query(
            "from",
            "Only this sender's messages (exact match).",
            string().into(),
        ))
        .parameter(query(
            "since",
            "Only messages with `ts` at or after this instant; empty for no filter.",
            or_empty(timestamp_schema()).into(),
        ))
        .parameter(query(
            "q",
            "Only messages whose text contains this, once both are lowercased by Unicode's full \
             mapping; `%` and `_` are literal.",
            string().into(),
        ))
        .parameter(query(
            "cursor",
            "An earlier page's `next_cursor`, with the same `from`, `since` and `q` and no `offset`.",
            string().into(),
        ))
        .response("200", json_response("One page", "Page"))
        .response("422", validation_response())
        .response("503", unavailable_response("Storage unavailable"))
        .build()
}

fn stats() -> Operation {
    guest_operation("stats", "Totals, top senders and the time range")
        .response("200", json_response("The aggregates", "Stats"))
        .response("503", unavailable_response("Storage unavailable"))
        .build()
}

fn ready_operation() -> Operation {
    guest_operation("ready", "Whether this host can serve: storage reachable, a secret set")
        .response("200", json_response("Ready", "Ready"))
        .response(
            "503",
            unavailable_response("Not ready: storage unavailable, or no webhook secret configured"),
        )
        .build()
}

/// `/health/ready`'s 200 as a client gets it: the guest's `ready`, to
/// which the host adds the guest it serves.
fn ready() -> Schema {
    let guest = ObjectBuilder::new()
        .description(Some("The guest component this host serves."))
        .property(
            "sha256",
            string().description(Some("Hex SHA-256 of the component file.")),
        )
        .required("sha256")
        .property(
            "loaded_at",
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .required("loaded_at")
        .property("path", string().description(Some("The file it was loaded from.")))
        .required("path");
    ObjectBuilder::new()
        .property("status", string().examples([json!("ready")]))
        .required("status")
        .property("guest", guest)
        .required("guest")
        .into()
}

fn live() -> Operation {
    OperationBuilder::new()
        .operation_id(Some("live"))
        .summary(Some("Whether the process is up (answered by the host)"))
        .response("200", json_response("Up", "Acknowledged"))
        .build()
}

fn metrics() -> Operation {
    let text = ContentBuilder::new().schema(Some(string())).build();
    OperationBuilder::new()
        .operation_id(Some("metrics"))
        .summary(Some("Prometheus metrics (answered by the host)"))
        .response(
            "200",
            ResponseBuilder::new()
                .description("OpenMetrics text exposition")
                .content("application/openmetrics-text", text)
                .build(),
        )
        .build()
}

/// An operation served through the guest, with the host's answers when the
/// guest could not give its own.
fn guest_operation(id: &str, summary: &str) -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(summary))
        .response(
            "413",
            json_response("The body is larger than `MAX_BODY_BYTES`", "Detail"),
        )
        .response(
            "500",
            json_response("The guest failed; details are in the log", "Detail"),
        )
        .response(
            "504",
            json_response("The request ran past `REQUEST_TIMEOUT_MS`", "Detail"),
        )
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// `schema`, or the empty string (an empty query parameter filters nothing).
fn or_empty(schema: ObjectBuilder) -> AnyOf {
    AnyOfBuilder::new()
        .item(string().max_length(Some(0)))
        .item(schema)
        .build()
}

/// An ISO-8601 UTC timestamp as `timestamp::parse` accepts it: RFC 3339's
/// shape with `Z`, seconds, optional fraction, and a date on the calendar.
fn timestamp_schema() -> ObjectBuilder {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .pattern(Some(timestamp::PATTERN))
        .examples([json!("2025-01-15T10:00:00Z")])
}

fn json_content(schema: &str) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(RefOr::Ref(Ref::from_schema_name(schema))))
        .build()
}

fn json_response(description: &str, schema: &str) -> ApiResponse {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", json_content(schema))
        .build()
}

fn validation_response() -> ApiResponse {
    json_response("Invalid input: every reason, FastAPI's shape", "ValidationProblem")
}

fn unavailable_response(description: &str) -> ApiResponse {
    let retry_after = HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .examples([json!(RETRY_AFTER_SECONDS)]),
        )
        .description(Some("Seconds to wait before retrying"))
        .build();
    ResponseBuilder::new()
        .description(format!("{description}: retry later"))
        .content("application/json", json_content("Detail"))
        .header("retry-after", retry_after)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_route_is_described_with_its_method() {
        let document = document();
        for route in Route::ALL.into_iter().filter(|route| *route != Route::OpenApi) {
            let method = route.method().to_ascii_lowercase();
            assert!(
                document["paths"][route.path()][&method].is_object(),
                "{} {} is not described",
                route.method(),
                route.path()
            );
        }
        assert_eq!(document["openapi"], "3.1.0");
    }

    #[test]
    fn every_reference_names_a_component() {
        let document = document();
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{name} is referenced but missing"
            );
        }
    }

    #[test]
    fn limits_come_from_the_validators() {
        let document = document();
        let parameters = &document["paths"]["/messages"]["get"]["parameters"];
        assert_eq!(parameters[0]["schema"]["maximum"], MAX_LIMIT);
        assert_eq!(parameters[1]["schema"]["maximum"], MAX_OFFSET);
        let text = &document["components"]["schemas"]["WebhookMessage"]["properties"]["text"];
        assert_eq!(text["maxLength"], MAX_TEXT_CHARS);
    }
}
