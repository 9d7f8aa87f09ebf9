//! The HTTP front: accepts connections, answers the host's own endpoints
//! (`/health/live`, `/health/ready`, `/metrics`, `/docs`), receives request
//! bodies and hands everything else to a guest instance. Logs and metrics
//! for every request are written once it is done (see `exchange`).
//!
//! What a client may cost is bounded here: connections (`MAX_CONNECTIONS`),
//! the time to send headers and bodies, body sizes, and the time a response
//! may wait for the client to read it (`send_timeout`).

mod exchange;
mod readiness;
mod send_timeout;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioTimer;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::docs::{Asset, Docs};
use crate::limits::{BodyLimit, HttpLimits};
use crate::runtime::{
    self, BodyFailure, ClientBody, GuestExit, GuestReply, GuestRequest, GuestSlot, Parking, Services,
};
use crate::telemetry::metrics::{HOST_DOCS, HOST_LIVE, HOST_METRICS, HOST_READY};
use crate::telemetry::request_log::{LogFields, RequestId, RequestInfo};
use exchange::Exchange;
use readiness::Readiness;
use send_timeout::SendTimeout;

/// How long shutdown waits for requests in flight (inside `docker stop`'s
/// default 10 s grace, with the compose file's 15 s to spare).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client told to come back later (503) is told to wait, in seconds.
const RETRY_AFTER_SECONDS: &str = "1";

type Body = HyperOutgoingBody;

/// Everything a request needs.
pub struct App {
    /// The live guest; each request takes a snapshot, so a swap never cuts one off.
    pub guests: Arc<GuestSlot>,
    /// Storage, metrics and secret shared by every guest instance.
    pub services: Arc<Services>,
    /// Body size, timeouts and connection cap for clients.
    pub limits: HttpLimits,
    /// The API docs page.
    pub docs: Docs,
    /// The shared outcome of readiness checks.
    readiness: Readiness,
}

impl App {
    /// The server's state around the live guest and shared services.
    pub fn new(guests: Arc<GuestSlot>, services: Arc<Services>, limits: HttpLimits, docs: Docs) -> Self {
        Self {
            guests,
            services,
            limits,
            docs,
            readiness: Readiness::default(),
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then waits (bounded) for
/// requests in flight.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let connections = Arc::new(Semaphore::new(app.limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        // At the connection cap, stop accepting: new clients wait in the backlog.
        let (permit, stream) = tokio::select! {
            accepted = accept(&listener, &connections) => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let stream = SendTimeout::new(stream, app.limits.send_timeout);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(app.limits.header_read_timeout)
            .serve_connection(
                TokioIo::new(stream),
                service_fn({
                    let app = app.clone();
                    move |request| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(app.handle(request).await) }
                    }
                }),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Requests in flight finish and their responses are sent; idle
    // keep-alive connections close; then the last log lines are written.
    let drained = async {
        graceful.shutdown().await;
        let guest = app.guests.current();
        let _ = guest.instances.acquire_many(guest.limits.max_instances).await;
        // A guest's permit goes just before its request's line is written.
        while app.services.metrics.requests_in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!("shutdown: requests still running after {DRAIN_TIMEOUT:?}");
    }
}

/// The next connection, once a connection slot is free.
async fn accept(listener: &TcpListener, connections: &Arc<Semaphore>) -> (OwnedSemaphorePermit, TcpStream) {
    let permit = connections
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // A response larger than one write would otherwise wait for
                // the client's delayed ACK (Nagle): 40 ms on Linux.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::warn!(%error, "cannot set TCP_NODELAY");
                }
                return (permit, stream);
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

impl App {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let info = RequestInfo {
            id: RequestId::from_header(request.headers().get("x-request-id").and_then(|v| v.to_str().ok())),
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            started: Instant::now(),
        };
        let id = info.id.clone();
        let exchange = Exchange::begin(self.services.clone(), info);
        let mut response = if !valid_host(&request) {
            self.refuse(
                exchange,
                StatusCode::BAD_REQUEST,
                "invalid Host header",
                LogFields::default(),
            )
        } else {
            match exchange.info().path.as_str() {
                HOST_LIVE => self.host_route(exchange, HOST_LIVE, request.method(), || {
                    json(StatusCode::OK, r#"{"status":"ok"}"#)
                }),
                HOST_METRICS => self.host_route(exchange, HOST_METRICS, request.method(), || self.metrics_response()),
                HOST_DOCS => self.host_route(exchange, HOST_DOCS, request.method(), || {
                    typed(StatusCode::OK, "text/html; charset=utf-8", self.docs.page().to_owned())
                }),
                path if path.strip_prefix(HOST_DOCS).is_some_and(|rest| rest.starts_with('/')) => {
                    let file = self.docs.asset(path);
                    self.host_route(exchange, HOST_DOCS, request.method(), || docs_file(file))
                }
                HOST_READY if request.method() == Method::GET => self.readiness(exchange).await,
                HOST_READY => self.host_route(exchange, HOST_READY, request.method(), method_not_allowed),
                _ => self.through_guest(exchange, request).await,
            }
        };
        if let Ok(value) = HeaderValue::from_str(id.as_str()) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }

    /// A GET-only endpoint the host answers itself.
    fn host_route(
        &self,
        exchange: Exchange,
        route: &'static str,
        method: &Method,
        answer: impl FnOnce() -> Response<Body>,
    ) -> Response<Body> {
        let response = if method == Method::GET {
            answer()
        } else {
            method_not_allowed()
        };
        let mut fields = LogFields::default();
        fields.name_route(route);
        exchange.finish(response.status(), fields, None);
        response
    }

    fn metrics_response(&self) -> Response<Body> {
        let mut response = Response::new(full(self.services.metrics.render()));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        response
    }

    /// Ready: storage answers, a secret is set, and which guest serves.
    async fn readiness(&self, exchange: Exchange) -> Response<Body> {
        let checked = self.readiness.check(&self.services).await;
        let mut fields = LogFields::default();
        fields.name_route(HOST_READY);
        if let Err(not_ready) = checked {
            return self.refuse(exchange, StatusCode::SERVICE_UNAVAILABLE, not_ready.detail(), fields);
        }
        let guest = self.guests.current();
        let body = serde_json::json!({
            "status": "ready",
            "guest": {
                "sha256": guest.sha256,
                "loaded_at": guest.loaded_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "path": guest.path.display().to_string(),
            },
        });
        exchange.finish(StatusCode::OK, fields, None);
        json(StatusCode::OK, body.to_string())
    }

    async fn through_guest(self: &Arc<Self>, exchange: Exchange, request: Request<Incoming>) -> Response<Body> {
        let limit = self.limits.body_limit_for(&exchange.info().path);
        if declared_length(&request).is_some_and(|len| len > limit.bytes) {
            return self.refuse_body(exchange, BodyFailure::TooLarge, limit);
        }
        let (mut head, body) = request.into_parts();
        // `wasi:http` needs an authority; an HTTP/1.0 client may send none.
        if !head.headers.contains_key(HOST) && head.uri.authority().is_none() {
            head.headers.insert(HOST, HeaderValue::from_static("localhost"));
        }
        let request = GuestRequest {
            head,
            body: ClientBody::receive(body, limit.bytes, self.limits.body_read_timeout),
            parking: Parking::default(),
        };
        let guest = self.guests.current();
        let (id, arrived) = (exchange.info().id.clone(), exchange.info().started);
        let reply = runtime::call(
            guest,
            self.services.clone(),
            id,
            &request,
            arrived,
            exchange.cancellation(),
        )
        .await;
        let body_failed = request.body.outcome().and_then(Result::err);
        match (reply, body_failed) {
            // A body that failed decides the answer, whatever the guest made of it.
            (GuestReply::Body(failure), _)
            | (GuestReply::Response { .. } | GuestReply::Failed { .. }, Some(failure)) => {
                // A guest still running on a body that failed has nobody to answer.
                exchange.cancellation().cancel();
                self.refuse_body(exchange, failure, limit)
            }
            (GuestReply::Response { response, exit }, None) => {
                let status = response.status();
                // The exchange ends when the guest has written its body and
                // returned; the body it reads lives as long.
                tokio::spawn(async move {
                    let GuestExit { fields, result } = exit.exit().await;
                    drop(request);
                    finish_guest(exchange, status, fields, result.err());
                });
                response
            }
            (GuestReply::Failed { fields, failure }, None) => {
                let status = failure.status();
                let response = detail_response(status, failure.client_detail());
                finish_guest(exchange, status, fields, Some(failure));
                response
            }
            (GuestReply::Busy, _) => self.refuse(
                exchange,
                StatusCode::SERVICE_UNAVAILABLE,
                "no guest instance came free in time, retry later",
                LogFields::default(),
            ),
        }
    }

    /// The host's own answer to a request it will not serve.
    fn refuse(&self, exchange: Exchange, status: StatusCode, detail: &str, fields: LogFields) -> Response<Body> {
        let mut response = detail_response(status, detail);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        exchange.finish(status, fields, None);
        response
    }

    /// 413 for a body past `limit`, 408 for one too slow, 400 for a broken
    /// one, 503 when the host holds too many bodies already.
    fn refuse_body(&self, exchange: Exchange, failure: BodyFailure, limit: BodyLimit) -> Response<Body> {
        let mut fields = LogFields::default();
        let (status, detail) = match failure {
            BodyFailure::TooLarge => {
                fields.set("limit", limit.variable.into());
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is larger than {} bytes", limit.bytes),
                )
            }
            BodyFailure::TimedOut => {
                fields.set("limit", "BODY_READ_TIMEOUT_MS".into());
                (
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time".to_owned(),
                )
            }
            BodyFailure::Broken => (StatusCode::BAD_REQUEST, "could not read the request body".to_owned()),
            BodyFailure::NoRoom => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many request bodies are arriving, retry later".to_owned(),
            ),
        };
        let mut response = self.refuse(exchange, status, &detail, fields);
        // The rest of that body is never read: the connection cannot carry another request.
        response
            .headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// Logs and counts a guest run once it is over. A failure's detail goes
/// to the log only; the client sees a generic answer.
fn finish_guest(exchange: Exchange, status: StatusCode, mut fields: LogFields, failure: Option<runtime::GuestFailure>) {
    let Some(failure) = failure else {
        return exchange.finish(status, fields, None);
    };
    exchange.services().metrics.record_guest_trap(failure.reason());
    fields.set("failure", failure.reason().into());
    if let Some(limit) = failure.limit() {
        fields.set("limit", limit.into());
    }
    exchange.finish(status, fields, Some(&failure.detail()));
}

/// At most one `Host`, and a valid authority: anything else is the
/// client's error, and `wasi:http` could not carry it to the guest.
fn valid_host(request: &Request<Incoming>) -> bool {
    let mut hosts = request.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => true,
        (Some(host), None) => http::uri::Authority::try_from(host.as_bytes()).is_ok(),
        (Some(_), Some(_)) => false,
    }
}

fn declared_length(request: &Request<Incoming>) -> Option<u64> {
    request.headers().get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn method_not_allowed() -> Response<Body> {
    let mut response = detail_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    response.headers_mut().insert("allow", HeaderValue::from_static("GET"));
    response
}

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    typed(status, "application/json", body)
}

fn typed(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// One of the docs page's files, or 404.
fn docs_file(file: Option<Asset>) -> Response<Body> {
    match file {
        Some(file) => typed(StatusCode::OK, file.content_type, file.bytes),
        None => detail_response(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// `{"detail": "..."}` like the guest's own errors.
fn detail_response(status: StatusCode, detail: &str) -> Response<Body> {
    json(status, detail_body(detail))
}

/// The body of the host's own error answers (the guest writes its own).
pub fn detail_body(detail: &str) -> String {
    serde_json::json!({ "detail": detail }).to_string()
}
