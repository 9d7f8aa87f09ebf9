//! The HTTP front: accepts connections, answers the host's own endpoints
//! (`/health/live`, `/metrics`, `/docs`), bounds request bodies and hands everything
//! else to a fresh guest instance. Logs and metrics for every request are
//! written here, once the response is done.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
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
use crate::runtime::{self, Guest, GuestExit, GuestFailure, GuestReply, GuestSlot, Services};
use crate::telemetry::metrics::{HOST_DOCS, HOST_LIVE, HOST_METRICS, OTHER_ROUTE};
use crate::telemetry::request_log::{self, LogFields, RequestId, RequestInfo};

/// How long shutdown waits for requests in flight (inside `docker stop`'s
/// default 10 s grace, with the compose file's 15 s to spare).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

type Body = HyperOutgoingBody;

/// The route the host answers with the guest's help; `HOST_LIVE`,
/// `HOST_METRICS` and `HOST_DOCS` (with its files) it answers alone, and
/// every other path is the guest's.
const READY: &str = "/health/ready";

/// Everything a request needs.
pub struct App {
    /// The live guest; each request takes a snapshot, so a swap never cuts one off.
    pub guests: Arc<GuestSlot>,
    /// Storage, metrics and secret shared by every guest instance.
    pub services: Arc<Services>,
    /// One permit per guest instance the pool can hold.
    pub instances: Arc<Semaphore>,
    /// Permits in `instances`; shutdown waits until it can take them all (no guest running).
    pub max_instances: u32,
    /// Body size, header timeout and connection cap for clients.
    pub limits: HttpLimits,
    /// The API docs page.
    pub docs: Docs,
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
        let _ = app.instances.acquire_many(app.max_instances).await;
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
        self.services.metrics.request_started();
        let info = RequestInfo {
            id: RequestId::from_header(request.headers().get("x-request-id").and_then(|v| v.to_str().ok())),
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            started: Instant::now(),
        };
        let id = info.id.clone();
        let mut response = match info.path.as_str() {
            HOST_LIVE => self.host_route(info, HOST_LIVE, request.method(), || {
                json(StatusCode::OK, r#"{"status":"ok"}"#)
            }),
            HOST_METRICS => self.host_route(info, HOST_METRICS, request.method(), || self.metrics_response()),
            HOST_DOCS => self.host_route(info, HOST_DOCS, request.method(), || {
                typed(StatusCode::OK, "text/html; charset=utf-8", self.docs.page().to_owned())
            }),
            path if path.strip_prefix(HOST_DOCS).is_some_and(|rest| rest.starts_with('/')) => {
                let file = self.docs.asset(path);
                self.host_route(info, HOST_DOCS, request.method(), || docs_file(file))
            }
            READY => self.readiness(info, request).await,
            _ => self.through_guest(self.guests.current(), info, request).await,
        };
        if let Ok(value) = HeaderValue::from_str(id.as_str()) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }

    /// A GET-only endpoint the host answers itself.
    fn host_route(
        &self,
        info: RequestInfo,
        route: &'static str,
        method: &Method,
        answer: impl FnOnce() -> Response<Body>,
    ) -> Response<Body> {
        let response = if method == Method::GET {
            answer()
        } else {
            let mut response = detail_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            response.headers_mut().insert("allow", HeaderValue::from_static("GET"));
            response
        };
        let mut fields = LogFields::default();
        fields.name_route(route);
        self.complete(&info, response.status(), fields, None);
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

    /// The live guest answers `/health/ready` (storage reachable, secret
    /// set); when it says ready, the host adds which guest that is.
    async fn readiness(self: &Arc<Self>, info: RequestInfo, request: Request<Incoming>) -> Response<Body> {
        let guest = self.guests.current();
        let response = self.through_guest(guest.clone(), info, request).await;
        if response.status() != StatusCode::OK {
            return response;
        }
        let body = serde_json::json!({
            "status": "ready",
            "guest": {
                "sha256": guest.sha256,
                "loaded_at": guest.loaded_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "path": guest.path.display().to_string(),
            },
        });
        json(StatusCode::OK, body.to_string())
    }

    async fn through_guest(
        self: &Arc<Self>,
        guest: Arc<Guest>,
        info: RequestInfo,
        request: Request<Incoming>,
    ) -> Response<Body> {
        let limit = self.limits.body_limit_for(&info.path);
        if declared_length(&request).is_some_and(|len| len > limit.bytes) {
            return self.reject_too_large(info, limit);
        }
        let permit = self
            .instances
            .clone()
            .acquire_owned()
            .await
            .expect("the instance semaphore is never closed");
        let tripped = Arc::new(AtomicBool::new(false));
        let request = bounded(request, limit.bytes, tripped.clone());
        match runtime::call(guest, self.services.clone(), info.id.clone(), request).await {
            GuestReply::Response { response, exit } => {
                if tripped.load(Ordering::SeqCst) {
                    // The instance still runs: its slot is freed only when it ends.
                    tokio::spawn(async move {
                        let _ = exit.await;
                        drop(permit);
                    });
                    return self.reject_too_large(info, limit);
                }
                let app = self.clone();
                let status = response.status();
                tokio::spawn(async move {
                    let exit = exit.await.unwrap_or_else(|e| GuestExit {
                        fields: LogFields::default(),
                        result: Err(GuestFailure::Trap(format!("guest task failed: {e}"))),
                    });
                    drop(permit);
                    app.finish_guest(&info, status, exit);
                });
                response
            }
            GuestReply::Failed { .. } if tripped.load(Ordering::SeqCst) => self.reject_too_large(info, limit),
            GuestReply::Failed { fields, failure } => {
                let status = failure.status();
                let response = detail_response(status, failure.client_detail());
                let exit = GuestExit {
                    fields,
                    result: Err(failure),
                };
                self.finish_guest(&info, status, exit);
                response
            }
        }
    }

    fn reject_too_large(&self, info: RequestInfo, limit: BodyLimit) -> Response<Body> {
        let response = detail_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body is larger than {} bytes", limit.bytes),
        );
        let mut fields = LogFields::default();
        fields.set("limit", limit.variable.into());
        self.complete(&info, response.status(), fields, None);
        response
    }

    /// Logs and counts a guest run once it is over. A failure's detail goes
    /// to the log only; the client sees a generic answer.
    fn finish_guest(&self, info: &RequestInfo, status: StatusCode, exit: GuestExit) {
        let mut fields = exit.fields;
        let failure = exit.result.err();
        if let Some(failure) = &failure {
            self.services.metrics.record_guest_trap(failure.reason());
            fields.set("failure", failure.reason().into());
            if let Some(limit) = failure.limit() {
                fields.set("limit", limit.into());
            }
        }
        self.complete(info, status, fields, failure.map(|f| f.detail()).as_deref());
    }

    fn complete(&self, info: &RequestInfo, status: StatusCode, fields: LogFields, failure: Option<&str>) {
        let latency = request_log::latency_ms(info.started);
        let route = fields.route().unwrap_or(OTHER_ROUTE);
        self.services.metrics.record_request(route, status.as_u16(), latency);
        request_log::finish(info, status.as_u16(), fields, failure);
    }
}

/// Caps the body at `limit` bytes while it streams, remembering whether the
/// cap was hit. Also supplies a `Host` header when an HTTP/1.0 client sent
/// none, which `wasi:http` requires.
fn bounded(
    request: Request<Incoming>,
    limit: u64,
    tripped: Arc<AtomicBool>,
) -> Request<impl hyper::body::Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + use<>> {
    let (mut parts, body) = request.into_parts();
    if !parts.headers.contains_key(HOST) && parts.uri.authority().is_none() {
        parts.headers.insert(HOST, HeaderValue::from_static("localhost"));
    }
    let body = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).map_err(move |error| {
        if error.is::<LengthLimitError>() {
            tripped.store(true, Ordering::SeqCst);
            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit))
        } else {
            match error.downcast::<hyper::Error>() {
                Ok(error) => wasmtime_wasi_http::Error::Hyper(*error),
                Err(_) => wasmtime_wasi_http::Error::HttpRequestBodySize(None),
            }
        }
    });
    Request::from_parts(parts, body)
}

fn declared_length(request: &Request<Incoming>) -> Option<u64> {
    request.headers().get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
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
