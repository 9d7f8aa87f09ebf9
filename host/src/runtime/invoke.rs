//! One request through one fresh guest instance, within the guest limits.

use std::sync::Arc;
use std::time::Instant;

use hyper::StatusCode;
use hyper::body::{Body, Bytes};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasmtime::{Store, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::guest::Guest;
use super::instances::Instance;
use super::sandbox::{Sandbox, Services};
use crate::bindings::Service;
use crate::telemetry::request_log::{self, LogFields, RequestId};

/// Why a guest did not finish a request normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// The request ran past `REQUEST_TIMEOUT_MS`.
    Deadline,
    /// The instance tried to grow its memory past `GUEST_MEMORY_MB`.
    Memory,
    /// The guest trapped (a panic, an invalid operation) or could not be run.
    Trap(String),
    /// The guest returned without a response, or answered with a
    /// `wasi:http` error code instead of one.
    NoResponse(String),
}

impl GuestFailure {
    /// The `reason` label of `guest_traps_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Deadline => "deadline",
            Self::Memory => "memory",
            Self::Trap(_) => "trap",
            Self::NoResponse(_) => "no_response",
        }
    }

    /// The limit that stopped the guest, by its configuration variable.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            Self::Deadline => Some("REQUEST_TIMEOUT_MS"),
            Self::Memory => Some("GUEST_MEMORY_MB"),
            Self::Trap(_) | Self::NoResponse(_) => None,
        }
    }

    /// The status a client gets when the guest failed before answering.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Deadline => StatusCode::GATEWAY_TIMEOUT,
            Self::Memory | Self::Trap(_) | Self::NoResponse(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told with `status`: the details stay in the log.
    pub fn client_detail(&self) -> &'static str {
        match self {
            Self::Deadline => "request deadline exceeded",
            Self::Memory | Self::Trap(_) | Self::NoResponse(_) => "internal error",
        }
    }

    /// What the log line says went wrong.
    pub fn detail(&self) -> String {
        match self {
            Self::Deadline => "the request ran past its deadline".into(),
            Self::Memory => "the guest exceeded its memory limit".into(),
            Self::Trap(detail) | Self::NoResponse(detail) => detail.clone(),
        }
    }
}

/// How the guest's run ended, available once it has returned.
pub struct GuestExit {
    /// What the guest attached to the request's log line.
    pub fields: LogFields,
    /// `Ok` when the guest returned normally, else why it did not.
    pub result: Result<(), GuestFailure>,
}

/// What the caller gets back as soon as the guest has answered (or failed).
pub enum GuestReply {
    /// The guest set a response; `exit` resolves when the guest has finished
    /// writing its body and returned.
    Response {
        /// Status and headers as the guest set them; the body streams while the guest writes it.
        response: hyper::Response<HyperOutgoingBody>,
        /// The guest's task on the guest workers; it may still fail after the response was set.
        exit: JoinHandle<GuestExit>,
    },
    /// The guest failed before setting a response.
    Failed {
        /// What the guest attached to the request's log line before failing.
        fields: LogFields,
        /// Why it gave no response; `GuestFailure::status` says what to answer.
        failure: GuestFailure,
    },
}

/// Runs `request` in a fresh instance of `guest`, bounded by its limits.
pub async fn call<B>(
    guest: Arc<Guest>,
    services: Arc<Services>,
    id: RequestId,
    request: hyper::Request<B>,
) -> GuestReply
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let (sender, receiver) = oneshot::channel();
    let executor = guest.executor.clone();
    let task = executor.spawn(async move {
        let _deadline_clock = guest.ticker.running();
        let deadline = Instant::now() + guest.limits.request_timeout;
        let (mut store, service, served) = checkout(&guest, services, id, deadline);
        // A computing guest traps at its first epoch tick past the deadline
        // (`Guest::new_store`); one waiting on the host (storage, the
        // client's body) is abandoned here.
        let running = run(&guest, &mut store, service, request, sender);
        let result = match tokio::time::timeout_at(deadline.into(), running).await {
            Ok(Ok(service)) => Ok(service),
            Ok(Err(error)) => Err(classify(&error, store.data())),
            Err(_) => Err(GuestFailure::Deadline),
        };
        let fields = store.data_mut().take_log_fields();
        let result = result.map(|service| {
            if guest.limits.reuses_instances() {
                let served = served + 1;
                guest.idle.give_back(Instance { store, service, served });
            }
        });
        GuestExit { fields, result }
    });
    match receiver.await {
        Ok(Ok(response)) => GuestReply::Response { response, exit: task },
        Ok(Err(code)) => failed(task, Some(code)).await,
        Err(_) => failed(task, None).await,
    }
}

/// An idle instance when reuse is on and one is waiting, else a fresh store
/// (instantiated in `run`); with the requests it has served so far.
fn checkout(
    guest: &Guest,
    services: Arc<Services>,
    id: RequestId,
    deadline: Instant,
) -> (Store<Sandbox>, Option<Service>, u32) {
    match guest.idle.take() {
        Some(mut instance) => {
            guest.reset_store(&mut instance.store, id, deadline);
            (instance.store, Some(instance.service), instance.served)
        }
        None => (guest.new_store(services, id, deadline), None, 0),
    }
}

/// Handles `request` in `service`, instantiating the guest first when there
/// is none; returns the instance so the caller may keep it for reuse.
async fn run<B>(
    guest: &Guest,
    store: &mut Store<Sandbox>,
    service: Option<Service>,
    request: hyper::Request<B>,
    sender: oneshot::Sender<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>,
) -> wasmtime::Result<Service>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let service = match service {
        Some(service) => service,
        None => instantiate(guest, store).await?,
    };
    let request = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
    let out = store.data_mut().http().new_response_outparam(sender)?;
    service
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, request, out)
        .await?;
    Ok(service)
}

async fn instantiate(guest: &Guest, store: &mut Store<Sandbox>) -> wasmtime::Result<Service> {
    let started = Instant::now();
    let service = guest.pre.instantiate_async(&mut *store).await?;
    store
        .data()
        .services
        .metrics
        .record_instantiation(request_log::latency_ms(started));
    Ok(service)
}

fn classify(error: &wasmtime::Error, sandbox: &Sandbox) -> GuestFailure {
    if sandbox.limiter.exceeded() {
        GuestFailure::Memory
    } else if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        GuestFailure::Deadline
    } else {
        GuestFailure::Trap(format!("{error:#}"))
    }
}

/// Waits for a guest that did not produce a response, and explains why.
async fn failed(task: JoinHandle<GuestExit>, code: Option<ErrorCode>) -> GuestReply {
    let exit = task.await.unwrap_or_else(|join_error| GuestExit {
        fields: LogFields::default(),
        result: Err(GuestFailure::Trap(format!("guest task failed: {join_error}"))),
    });
    let failure = exit.result.err().unwrap_or_else(|| {
        GuestFailure::NoResponse(match code {
            Some(code) => format!("guest answered with error code {code:?}"),
            None => "guest returned without setting a response".into(),
        })
    });
    GuestReply::Failed {
        fields: exit.fields,
        failure,
    }
}
