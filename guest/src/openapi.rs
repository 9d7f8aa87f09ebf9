//! `GET /openapi.json`: the HTTP API as an OpenAPI 3.1 document.
//!
//! Built from the code, not written beside it: every `Route` gets its
//! operation from an exhaustive match, the bodies are the schemas of the
//! types the handlers serialise (`ToSchema`), and the parameters and the
//! webhook body take their limits from the validators' own constants. So a
//! swapped guest describes itself. The routes the host answers for any
//! guest (`/health/live`, `/health/ready`, `/metrics`) are described too, as
//! are the host's answers on the guest's routes: 413 for a body over
//! `MAX_BODY_BYTES`, 504 past the request deadline and 500 when the guest
//! fails, all as `Detail`.

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
    AllOfBuilder, AnyOf, AnyOfBuilder, ArrayBuilder, ComponentsBuilder, KnownFormat, ObjectBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required};

use crate::access::{self, Keys, Needs};
use crate::cursor;
use crate::feed::{self, Feed};
use crate::forwarding;
use crate::listing::{MessageView, Page};
use crate::message::StoredView;
use crate::payload::{MAX_ID_CHARS, MAX_MSISDN_CHARS, MAX_TEXT_CHARS, MSISDN_PATTERN};
use crate::problem::{FieldError, ValidationProblem};
use crate::query::{DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET};
use crate::response::{Acknowledged, Detail, RETRY_AFTER_SECONDS, Response};
use crate::router::Route;
use crate::signed::{HUB_SIGNATURE, X_SIGNATURE};
use crate::stats::{SenderView, StatsView};
use crate::timestamp;
use crate::whatsapp::{MAX_MESSAGES, MAX_TIMESTAMP_DIGITS, OBJECT, TEXT_PARTS, max_timestamp};

/// The document as JSON, true to whether the host has keys configured.
pub(crate) fn handle() -> Response {
    Response::json(200, &document(access::keys()))
}

/// The whole API, as JSON.
///
/// utoipa holds a bound as a pointer-sized integer, 32 bits on wasm32, so
/// the 64-bit maxima (`offset`, a WhatsApp `timestamp`) are written into
/// the JSON instead.
pub(crate) fn document(keys: Keys) -> Value {
    let mut document = serde_json::to_value(openapi(keys)).expect("the document serializes");
    let offset = document["paths"][Route::Messages.path()]["get"]["parameters"]
        .as_array_mut()
        .and_then(|parameters| parameters.iter_mut().find(|p| p["name"] == "offset"));
    if let Some(offset) = offset {
        offset["schema"]["maximum"] = json!(MAX_OFFSET);
    }
    let message = "/components/schemas/WhatsAppNotification/properties/entry/items/properties/changes/items\
                   /properties/value/properties/messages/items/allOf/0";
    if let Some(message) = document.pointer_mut(message) {
        message["properties"]["timestamp"]["maximum"] = json!(max_timestamp());
    }
    document
}

fn openapi(keys: Keys) -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in Route::ALL {
        for (method, operation) in operations(route) {
            let operation = guarded(operation, route.needs(&verb(&method)), keys);
            paths = paths.path(route.path(), PathItem::new(method, operation));
        }
    }
    paths = paths
        .path("/health/live", PathItem::new(HttpMethod::Get, live()))
        .path("/health/ready", PathItem::new(HttpMethod::Get, readiness()))
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
        .schema("WhatsAppNotification", whatsapp_notification())
        .schema_from::<Acknowledged>()
        .schema_from::<Detail<'static>>()
        .schema_from::<FieldError>()
        .schema_from::<ValidationProblem<'static>>()
        .schema_from::<Page<'static>>()
        .schema_from::<MessageView<'static>>()
        .schema_from::<StoredView<'static>>()
        .schema_from::<Feed<'static>>()
        .schema_from::<StatsView<'static>>()
        .schema_from::<SenderView<'static>>()
        .schema_from::<forwarding::StatusView<'static>>()
        .schema_from::<forwarding::RequeuedView>()
        .schema("Ready", ready())
        .security_scheme(BEARER, bearer_scheme())
        .build()
}

/// `method` as the router names it (`GET`).
fn verb(method: &HttpMethod) -> String {
    let name = serde_json::to_value(method).expect("a method serializes");
    name.as_str().unwrap_or_default().to_ascii_uppercase()
}

/// The name the document gives its one security scheme.
const BEARER: &str = "bearer";

fn bearer_scheme() -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An API key from `API_KEYS_FILE`, as `Authorization: Bearer <key>`. Without \
             `API_KEYS_FILE` the read routes are open and the admin routes refused.",
            ))
            .build(),
    )
}

/// `operation` as its route's `needs` protects it under `keys`: the bearer
/// scheme, and the answers to a caller without the key it needs. A read
/// route without keys configured takes a key but needs none (an empty
/// alternative requirement), as it answers.
fn guarded(mut operation: Operation, needs: Needs, keys: Keys) -> Operation {
    let bearer = SecurityRequirement::new(BEARER, Vec::<String>::new());
    match (needs, keys) {
        (Needs::Nothing, _) => return operation,
        (Needs::Read, Keys::Absent) => {
            operation.security = Some(vec![bearer, SecurityRequirement::default()]);
            return operation;
        }
        (Needs::Read | Needs::Admin, _) => operation.security = Some(vec![bearer]),
    }
    let challenge = HeaderBuilder::new()
        .schema(string().examples([json!(access::CHALLENGE)]))
        .description(Some("The scheme to authenticate with"))
        .build();
    let unauthenticated = ResponseBuilder::new()
        .description("No key, a malformed `Authorization` value, or an unknown key")
        .content("application/json", json_content("Detail"))
        .header("www-authenticate", challenge)
        .build();
    let responses = &mut operation.responses.responses;
    responses.insert("401".into(), RefOr::T(unauthenticated));
    if (needs, keys) == (Needs::Admin, Keys::Configured) {
        let forbidden = json_response("The key's scope does not include this operation", "Detail");
        responses.insert("403".into(), RefOr::T(forbidden));
    }
    operation
}

/// The operations a guest route offers, one per method it answers; none
/// for the document itself, which does not describe itself (as in FastAPI).
fn operations(route: Route) -> Vec<(HttpMethod, Operation)> {
    match route {
        Route::Webhook => vec![(HttpMethod::Post, webhook())],
        Route::Messages => vec![(HttpMethod::Get, messages())],
        Route::Message => vec![(HttpMethod::Get, read_message()), (HttpMethod::Delete, erase_message())],
        Route::Feed => vec![(HttpMethod::Get, feed())],
        Route::Stats => vec![(HttpMethod::Get, stats())],
        Route::OpenApi => Vec::new(),
        Route::WhatsApp => vec![
            (HttpMethod::Get, whatsapp_handshake()),
            (HttpMethod::Post, whatsapp_delivery()),
        ],
        Route::Forwarding => vec![(HttpMethod::Get, forwarding_status())],
        Route::ForwardingRetry => vec![(HttpMethod::Post, forwarding_retry())],
    }
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
    let msisdn = || {
        string()
            .pattern(Some(MSISDN_PATTERN))
            .max_length(Some(MAX_MSISDN_CHARS))
    };
    let text = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(MAX_TEXT_CHARS))
        .description(Some("At most this many characters; absent or null for none."));
    ObjectBuilder::new()
        .property(
            "message_id",
            string()
                .min_length(Some(1))
                .max_length(Some(MAX_ID_CHARS))
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
    let header = |name, description, schema: ObjectBuilder| optional(ParameterIn::Header, name, description, schema);
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

fn whatsapp_handshake() -> Operation {
    let query = |name, description| optional(ParameterIn::Query, name, description, string());
    let challenge = ContentBuilder::new().schema(Some(string())).build();
    guest_operation("whatsapp_verify", "Meta's webhook subscription handshake")
        .parameter(query("hub.mode", "`subscribe`."))
        .parameter(query("hub.verify_token", "Must equal `WHATSAPP_VERIFY_TOKEN`."))
        .parameter(query("hub.challenge", "Echoed back when the token matches."))
        .response(
            "200",
            ResponseBuilder::new()
                .description("Verified: the challenge, as plain text")
                .content("text/plain", challenge)
                .build(),
        )
        .response("403", json_response("Not verified", "Detail"))
        .build()
}

fn whatsapp_delivery() -> Operation {
    let body = json_content("WhatsAppNotification");
    guest_operation(
        "whatsapp_ingest",
        "Store a WhatsApp Cloud API delivery, exactly once per message",
    )
    .description(Some(
        "Verified by `X-Hub-Signature-256` under any configured secret. Every message of the \
             delivery is stored in one transaction, or none; a redelivery stores nothing new. \
             Status updates are counted in `whatsapp_statuses_total`, not stored. The body may be \
             up to `WHATSAPP_MAX_BODY_BYTES`.",
    ))
    .parameter(optional(
        ParameterIn::Header,
        HUB_SIGNATURE,
        "`sha256=` and the hex HMAC-SHA256 of the raw body under Meta's app secret.",
        string().pattern(Some(hex_hmac::HUB_SIGNATURE_PATTERN)),
    ))
    .request_body(Some(
        RequestBodyBuilder::new()
            .required(Some(Required::True))
            .content("application/json", body)
            .build(),
    ))
    .response("200", json_response("Stored, or already stored", "Acknowledged"))
    .response("400", json_response("The body could not be read", "Detail"))
    .response(
        "401",
        json_response(
            "No configured secret verifies `X-Hub-Signature-256`; nothing stored",
            "Detail",
        ),
    )
    .response(
        "413",
        json_response("The body is larger than `WHATSAPP_MAX_BODY_BYTES`", "Detail"),
    )
    .response("422", validation_response())
    .response("503", unavailable_response("Storage unavailable; nothing stored"))
    .build()
}

/// What `POST /webhook/whatsapp` accepts (validated by `whatsapp`): Meta's
/// notification, the parts Inlet reads; anything else is ignored.
fn whatsapp_notification() -> Schema {
    let text_part = |field: &str| ObjectBuilder::new().property(field, string().max_length(Some(MAX_TEXT_CHARS)));
    let mut message = ObjectBuilder::new()
        .property(
            "id",
            string()
                .min_length(Some(1))
                .max_length(Some(MAX_ID_CHARS))
                .description(Some("The `wamid`: the message id.")),
        )
        .required("id")
        .property(
            "from",
            string()
                .pattern(Some("^[0-9]+$"))
                .max_length(Some(MAX_MSISDN_CHARS - 1))
                .description(Some("The sender's number, digits only; stored with a `+`.")),
        )
        .property(
            "from_user_id",
            string()
                .min_length(Some(1))
                .max_length(Some(MAX_MSISDN_CHARS))
                .description(Some(
                    "The sender's business-scoped user id, when no number is shared: stored as `from`.",
                )),
        )
        .property(
            "timestamp",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Integer]))
                .pattern(Some(format!("^[0-9]{{1,{MAX_TIMESTAMP_DIGITS}}}$")))
                .minimum(Some(0))
                .description(Some("Unix seconds.")),
        )
        .required("timestamp")
        .property("type", string());
    for (part, field) in TEXT_PARTS {
        message = message.property(part, text_part(field));
    }
    let either_sender = AnyOfBuilder::new()
        .item(ObjectBuilder::new().required("from"))
        .item(ObjectBuilder::new().required("from_user_id"));
    let message = AllOfBuilder::new().item(message).item(either_sender);
    let value = ObjectBuilder::new()
        .property(
            "metadata",
            ObjectBuilder::new()
                .property(
                    "display_phone_number",
                    string().pattern(Some("[0-9]")).max_length(Some(MAX_MSISDN_CHARS - 1)),
                )
                .required("display_phone_number"),
        )
        .required("metadata")
        .property(
            "messages",
            ArrayBuilder::new().items(message).max_items(Some(MAX_MESSAGES)),
        )
        .property("statuses", ArrayBuilder::new().items(ObjectBuilder::new()));
    let change = ObjectBuilder::new().property("value", value).required("value");
    let entry = ObjectBuilder::new().property("changes", ArrayBuilder::new().items(change));
    ObjectBuilder::new()
        .description(Some(
            "Meta's notification: every `entry[].changes[].value.messages[]` element becomes one \
             message (`text.body`, or a media `caption`, as its text); `statuses[]` are counted.",
        ))
        .property("object", string().enum_values(Some([OBJECT])))
        .required("object")
        .property("entry", ArrayBuilder::new().items(entry))
        .into()
}

fn messages() -> Operation {
    guest_operation("list_messages", "List stored messages, filtered and paged")
        .description(Some(
            "Ordered by the instant of `ts`, then `message_id`. `total` counts every match. Follow \
             `next_cursor` for the next page at the same cost at any depth.",
        ))
        .parameter(query_parameter(
            "limit",
            "Messages per page.",
            integer()
                .minimum(Some(1))
                .maximum(Some(MAX_LIMIT))
                .default(Some(json!(DEFAULT_LIMIT)))
                .into(),
        ))
        .parameter(query_parameter(
            "offset",
            "Matching messages to skip.",
            integer().minimum(Some(0)).default(Some(json!(0))).into(),
        ))
        .parameter(query_parameter(
            "from",
            "Only this sender's messages (exact match).",
            string().into(),
        ))
        .parameter(query_parameter(
            "since",
            "Only messages with `ts` at or after this instant; empty for no filter.",
            or_empty(timestamp_schema()).into(),
        ))
        .parameter(query_parameter(
            "q",
            "Only messages whose text contains this, once both are lowercased by Unicode's full \
             mapping; `%` and `_` are literal.",
            string().into(),
        ))
        .parameter(query_parameter(
            "cursor",
            "An earlier page's `next_cursor`, with the same `from`, `since` and `q` and no `offset`; \
             empty for none. Only a token this service issued is valid: any other, even of this \
             shape, is answered 422.",
            or_empty(string().pattern(Some(cursor::PATTERN))).into(),
        ))
        .response("200", json_response("One page", "Page"))
        .response("422", validation_response())
        .response("503", unavailable_response("Storage unavailable"))
        .build()
}

fn feed() -> Operation {
    guest_operation("read_feed", "Every stored message once, in the order it was stored")
        .description(Some(
            "Start without `after` and pass each answer's `next` back: every stored message comes \
             exactly once, also one delivered late with an old `ts`, and none is ever stored behind \
             a position already handed out. Removed messages are absent. With `wait`, an answer \
             that would be empty waits until a message is stored or the time is up; a follower \
             that comes straight back from a page holding fewer messages than its `limit` (but \
             some) is answered a moment later, with what was stored meanwhile as one page.",
        ))
        .parameter(query_parameter(
            "after",
            "An earlier answer's `next`; absent or empty for the start. Only a position this \
             service issued is valid: any other, even of this shape, is answered 422.",
            or_empty(string().pattern(Some(feed::PATTERN))).into(),
        ))
        .parameter(query_parameter(
            "limit",
            "Messages per answer.",
            integer()
                .minimum(Some(1))
                .maximum(Some(feed::MAX_LIMIT))
                .default(Some(json!(feed::DEFAULT_LIMIT)))
                .into(),
        ))
        .parameter(query_parameter(
            "wait",
            "Seconds to wait while nothing follows `after` (long-poll); 0 answers at once.",
            integer()
                .minimum(Some(0))
                .maximum(Some(feed::MAX_WAIT))
                .default(Some(json!(0)))
                .into(),
        ))
        .response("200", json_response("What follows `after`", "Feed"))
        .response("422", validation_response())
        .response(
            "503",
            unavailable_response("Storage unavailable, or too many requests waiting on the feed"),
        )
        .build()
}

/// The path parameter of `Route::Message`.
fn message_id() -> Parameter {
    ParameterBuilder::new()
        .name("message_id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(
            "The message's id, percent-encoded (`/` as `%2F`, `?` as `%3F`, `#` as `%23`, `%` as `%25`).",
        ))
        .schema(Some(string().min_length(Some(1))))
        .build()
}

fn read_message() -> Operation {
    guest_operation("read_message", "One stored message, with when it was stored")
        .parameter(message_id())
        .response("200", json_response("The message", "StoredMessage"))
        .response("404", json_response("No message with this id is stored", "Detail"))
        .response("503", unavailable_response("Storage unavailable"))
        .build()
}

fn erase_message() -> Operation {
    guest_operation("erase_message", "Remove a stored message for good")
        .description(Some(
            "Removed from listings, counts, search and the feed. Its id is remembered for at least \
             seven days, and as long as `RETENTION` would have kept the message, so a redelivery \
             of it is acknowledged as a duplicate and not stored again.",
        ))
        .parameter(message_id())
        .response("204", ResponseBuilder::new().description("Removed").build())
        .response("404", json_response("No message with this id is stored", "Detail"))
        .response("503", unavailable_response("Storage unavailable; nothing removed"))
        .build()
}

fn forwarding_status() -> Operation {
    guest_operation("forwarding_status", "What forwarding to `FORWARD_URL` owes")
        .description(Some(
            "Every message created while `FORWARD_URL` is set is delivered there at least once; \
             this counts those not delivered yet (`pending`) and those out of attempts (`failed`).",
        ))
        .response("200", json_response("What is owed", "Forwarding"))
        .response("404", json_response("No forwarding is configured", "Detail"))
        .response("503", unavailable_response("Storage unavailable"))
        .build()
}

fn forwarding_retry() -> Operation {
    guest_operation("forwarding_retry", "Deliver every failed message again")
        .description(Some(
            "Every `failed` message is pending again, with `FORWARD_MAX_ATTEMPTS` attempts afresh.",
        ))
        .response("200", json_response("How many were failed", "Requeued"))
        .response("404", json_response("No forwarding is configured", "Detail"))
        .response("503", unavailable_response("Storage unavailable; nothing changed"))
        .build()
}

fn stats() -> Operation {
    guest_operation("stats", "Totals, top senders and the time range")
        .response("200", json_response("The aggregates", "Stats"))
        .response("503", unavailable_response("Storage unavailable"))
        .build()
}

fn readiness() -> Operation {
    OperationBuilder::new()
        .operation_id(Some("ready"))
        .summary(Some(
            "Whether this host can serve: storage reachable, a secret set (answered by the host)",
        ))
        .response("200", json_response("Ready", "Ready"))
        .response(
            "503",
            unavailable_response("Not ready: storage unavailable, or no webhook secret configured"),
        )
        .build()
}

/// `/health/ready`'s 200: ready, and the guest the host serves.
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
            "408",
            json_response("The body did not arrive within `BODY_READ_TIMEOUT_MS`", "Detail"),
        )
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

/// An optional query parameter.
fn query_parameter(name: &str, description: &str, schema: Schema) -> Parameter {
    optional(ParameterIn::Query, name, description, schema)
}

fn integer() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer)
}

/// An optional parameter `name` in `place`.
fn optional(place: ParameterIn, name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
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
    use crate::bindings::inlet::service::storage::FeedPosition;

    #[test]
    fn every_guest_route_is_described_with_its_method() {
        let document = document(Keys::Configured);
        for route in Route::ALL.into_iter().filter(|route| *route != Route::OpenApi) {
            for method in route.methods() {
                assert!(
                    document["paths"][route.path()][method.to_ascii_lowercase()].is_object(),
                    "{method} {} is not described",
                    route.path()
                );
            }
        }
        assert_eq!(document["openapi"], "3.1.0");
    }

    #[test]
    fn every_reference_names_a_component() {
        let document = document(Keys::Configured);
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
    fn the_documented_patterns_agree_with_the_validators() {
        let timestamp = regex::Regex::new(timestamp::PATTERN).unwrap();
        for text in [
            "2025-01-15T10:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
            "0000-01-01T00:00:00.5Z",
            "2025-01-15T10:00:00z",
            "2025-01-15T10:00Z",
            "2025-01-15T10:00:00+00:00",
            "2025-01-15 10:00:00Z",
            "2025-01-15T24:00:00Z",
            "2025-01-15T10:00:60Z",
            "2025-13-01T10:00:00Z",
            "2025-01-15T10:00:00.1234567891Z",
            "2025-01-15T10:00:00.Z",
        ] {
            let accepted = crate::timestamp::parse(text).is_ok();
            assert_eq!(timestamp.is_match(text), accepted, "{text}");
        }
        let msisdn = regex::Regex::new(MSISDN_PATTERN).unwrap();
        for text in ["+1", "+919876543210", "1", "+", "+1a", " +1", "+1\n", "++1", "+١"] {
            assert_eq!(msisdn.is_match(text), crate::payload::is_msisdn(text), "{text}");
        }
        let cursor_pattern = regex::Regex::new(cursor::PATTERN).unwrap();
        let issued = cursor::Cursor {
            unix_micros: -1,
            message_id: "ü/ +%".into(),
            filters: cursor::Filters {
                from: None,
                since_unix_micros: Some(0),
                q: Some("🇺🇸".into()),
            },
        };
        assert!(cursor_pattern.is_match(&issued.encode()));
        for malformed in ["🇺🇸", " eyJ0Ijo", "eyJ0Ijo=", "a b", ""] {
            assert!(!cursor_pattern.is_match(malformed), "{malformed}");
        }
        let position = regex::Regex::new(feed::PATTERN).unwrap();
        for seq in [0, 1, 2, 3, u64::MAX] {
            assert!(position.is_match(&feed::encode(FeedPosition { epoch: seq, seq })));
        }
        for malformed in ["AAAAAAAAAAAAAAAAAAAAAB", "AAAAAAAAAAAAAAAAAAAAA", ""] {
            assert!(!position.is_match(malformed), "{malformed}");
        }
        let x_signature = regex::Regex::new(hex_hmac::X_SIGNATURE_PATTERN).unwrap();
        let hub = regex::Regex::new(hex_hmac::HUB_SIGNATURE_PATTERN).unwrap();
        let hex = "ab".repeat(32);
        for (text, x, h) in [
            (hex.clone(), true, false),
            (hex.to_uppercase(), true, false),
            (format!("sha256={hex}"), true, true),
            (hex[..62].to_owned(), false, false),
            (format!("sha1={hex}"), false, false),
        ] {
            assert_eq!(x_signature.is_match(&text), x, "{text}");
            assert_eq!(hub.is_match(&text), h, "{text}");
            // Whatever is well formed decodes to a signature of the right length.
            if x {
                assert!(inlet_signature::Signature::from_header(&text).is_some());
            }
            if h {
                assert!(inlet_signature::Signature::from_hub_header(&text).is_some());
            }
        }
    }

    #[test]
    fn protected_operations_say_what_they_need_with_and_without_keys() {
        for route in Route::ALL {
            for keys in [Keys::Configured, Keys::Absent] {
                let document = document(keys);
                for (method, _) in operations(route) {
                    let verb = verb(&method);
                    let operation = &document["paths"][route.path()][verb.to_ascii_lowercase()];
                    let (security, unauthenticated) = (&operation["security"], &operation["responses"]["401"]);
                    let forbidden = &operation["responses"]["403"];
                    if route.needs(&verb) != Needs::Nothing {
                        assert_eq!(
                            forbidden.is_object(),
                            (route.needs(&verb), keys) == (Needs::Admin, Keys::Configured),
                            "{route:?} {verb}"
                        );
                    }
                    match (route.needs(&verb), keys) {
                        (Needs::Nothing, _) => assert!(security.is_null(), "{route:?}"),
                        (Needs::Read, Keys::Absent) => {
                            assert_eq!(security, &json!([{"bearer": []}, {}]), "{route:?}");
                            assert!(unauthenticated.is_null(), "{route:?} never answers 401 without keys");
                        }
                        (Needs::Read | Needs::Admin, _) => {
                            assert_eq!(security, &json!([{"bearer": []}]), "{route:?}");
                            assert!(unauthenticated["headers"]["www-authenticate"].is_object(), "{route:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn limits_come_from_the_validators() {
        let document = document(Keys::Configured);
        let parameters = &document["paths"]["/messages"]["get"]["parameters"];
        assert_eq!(parameters[0]["schema"]["maximum"], MAX_LIMIT);
        assert_eq!(parameters[1]["schema"]["maximum"], MAX_OFFSET);
        let timestamp = document
            .pointer("/components/schemas/WhatsAppNotification/properties/entry/items/properties/changes/items/properties/value/properties/messages/items/allOf/0/properties/timestamp")
            .expect("the message schema");
        assert_eq!(timestamp["maximum"], crate::whatsapp::max_timestamp());
        let text = &document["components"]["schemas"]["WebhookMessage"]["properties"]["text"];
        assert_eq!(text["maxLength"], MAX_TEXT_CHARS);
    }
}
