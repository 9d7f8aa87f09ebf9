//! One request through one fresh guest instance, within the guest limits.
//!
//! An instance is held only while its guest works: waiting for a free
//! instance is bounded by the request deadline, a guest that asks for a
//! body still on its way is stopped and run again once the body is here
//! (see `request_body`), a guest that long-polls the feed is stopped while
//! the host waits and run again after (see `parking`), and a client that
//! goes away stops its guest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wasmtime::{Store, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::guest::Guest;
use super::instances::Instance;
use super::parking::{FeedPause, Parking};
use super::request_body::{BodyFailure, ClientBody, GuestBody};
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
    /// The guest trapped (a panic, an invalid operation, a host limit it
    /// exceeded) or could not be run.
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
        exit: GuestTask,
    },
    /// The guest failed before setting a response.
    Failed {
        /// What the guest attached to the request's log line before failing.
        fields: LogFields,
        /// Why it gave no response; `GuestFailure::status` says what to answer.
        failure: GuestFailure,
    },
    /// No instance came free within the request deadline: the guest never ran.
    Busy,
    /// The guest needed the whole body, which did not arrive: it never ran to an answer.
    Body(BodyFailure),
}

/// A request as the host received it: the head, and the body the host receives.
pub struct GuestRequest {
    /// Method, URI, version and headers.
    pub head: http::request::Parts,
    /// The body, received by the host (see `request_body`).
    pub body: ClientBody,
    /// Its long-poll of the feed, if its guest asks for one.
    pub parking: Parking,
}

impl GuestRequest {
    /// A copy of the request for one run, reading the body from its start.
    fn for_run(&self) -> hyper::Request<GuestBody> {
        let mut request = hyper::Request::new(self.body.reader());
        *request.method_mut() = self.head.method.clone();
        *request.uri_mut() = self.head.uri.clone();
        *request.version_mut() = self.head.version;
        *request.headers_mut() = self.head.headers.clone();
        request
    }
}

/// A guest's task that has answered; it ends once the guest has written its
/// body and returned.
pub struct GuestTask(JoinHandle<RunEnd>);

impl GuestTask {
    /// How the guest's run ended.
    pub async fn exit(self) -> GuestExit {
        match self.0.await {
            Ok(RunEnd::Exit(exit)) => exit,
            // A guest that answered is never run again; one stopped because
            // its client left has nothing more to say.
            Ok(RunEnd::Paused(_) | RunEnd::Cancelled) => GuestExit {
                fields: LogFields::default(),
                result: Ok(()),
            },
            Err(join_error) => task_failed(&join_error),
        }
    }
}

fn task_failed(join_error: &tokio::task::JoinError) -> GuestExit {
    GuestExit {
        fields: LogFields::default(),
        result: Err(GuestFailure::Trap(format!("guest task failed: {join_error}"))),
    }
}

/// How one run ended, inside the guest's task.
enum RunEnd {
    /// The guest returned or failed.
    Exit(GuestExit),
    /// The guest was stopped before it had done anything a second run
    /// would repeat, to run again once the host has waited for it.
    Paused(Pause),
    /// `cancel` fired: the client is gone.
    Cancelled,
}

/// What a stopped run waits for before the request runs again.
enum Pause {
    /// The guest asked for body bytes not yet here: the whole body.
    Body,
    /// The guest asked to wait on the feed, or to be paced.
    Feed(FeedPause),
}

/// Runs `request`, which `arrived` then, in an instance of `guest`, bounded
/// by its limits; stops when `cancel` fires. Holds an instance only while
/// the guest works. `REQUEST_TIMEOUT_MS` runs from the request's arrival,
/// waiting for an instance included, and starts again once a body the guest
/// was stopped for is whole, or a wait on the feed (or its pacing) is over.
pub async fn call(
    guest: Arc<Guest>,
    services: Arc<Services>,
    id: RequestId,
    request: &GuestRequest,
    arrived: Instant,
    cancel: &CancellationToken,
) -> GuestReply {
    let mut deadline = arrived + guest.limits.request_timeout;
    // A body a moment behind its headers (a client's second write) is
    // waited for here, holding nothing, rather than by a run it would stop.
    if let Ok(Err(failure)) = tokio::time::timeout(BODY_GRACE, request.body.finished()).await {
        return GuestReply::Body(failure);
    }
    // The caller drops this future when its client goes away (and fires
    // `cancel`): the waits here then simply end; a guest task stops itself.
    loop {
        let queued = guest.instances.clone().acquire_owned();
        let Ok(permit) = tokio::time::timeout_at(deadline.into(), queued).await else {
            return GuestReply::Busy;
        };
        let permit = permit.expect("the instance semaphore is never closed");
        let run = Run {
            permit,
            deadline,
            cancel: cancel.clone(),
        };
        match run_once(guest.clone(), services.clone(), id.clone(), request, run).await {
            Ok(reply) => return reply,
            // The body is not here yet; no instance waits for it. Once it is
            // whole, the next run cannot be stopped for it again.
            Err(Pause::Body) => {
                if let Err(failure) = request.body.finished().await {
                    return GuestReply::Body(failure);
                }
            }
            // The next run's `wait-feed` returns at once, with this outcome.
            Err(Pause::Feed(FeedPause::Wait { after, until })) => {
                let outcome = services.feed.wait(after, until).await;
                request.parking.waited(outcome);
            }
            // The next run's `pace-feed` returns at once.
            Err(Pause::Feed(FeedPause::Pace { until })) => {
                services.feed.pace(until).await;
                request.parking.paced();
            }
        }
        deadline = Instant::now() + guest.limits.request_timeout;
    }
}

/// How long a request waits for its body before its guest runs anyway
/// (and may refuse it from its headers alone).
const BODY_GRACE: Duration = Duration::from_millis(20);

/// What one run of the guest holds and is bounded by.
struct Run {
    /// Its instance's slot, the guest task's until it ends.
    permit: OwnedSemaphorePermit,
    /// When its time is up.
    deadline: Instant,
    /// Fires when its client has gone away.
    cancel: CancellationToken,
}

/// One run of the guest, or why it was stopped to run again.
async fn run_once(
    guest: Arc<Guest>,
    services: Arc<Services>,
    id: RequestId,
    request: &GuestRequest,
    run_limits: Run,
) -> Result<GuestReply, Pause> {
    let (sender, receiver) = oneshot::channel();
    let watch = request.body.watch();
    let parking = request.parking.clone();
    let http_request = request.for_run();
    let executor = guest.executor.clone();
    let task = executor.spawn(async move {
        let Run {
            permit: _permit,
            deadline,
            cancel,
        } = run_limits;
        let _deadline_clock = guest.ticker.running();
        let (mut store, service, served) = checkout(&guest, services, id, deadline);
        store.data_mut().parking = parking.clone();
        let effects = store.data().effects.clone();
        let running = run(&guest, &mut store, service, http_request, sender);
        // A computing guest traps at its first epoch tick past the deadline
        // (`Guest::new_store`); one waiting on the host (storage) is abandoned here.
        let outcome = tokio::select! {
            biased;
            outcome = tokio::time::timeout_at(deadline.into(), running) => outcome,
            () = watch.starved_before(&effects) => return RunEnd::Paused(Pause::Body),
            wait = parking.asked() => return RunEnd::Paused(Pause::Feed(wait)),
            () = cancel.cancelled() => return RunEnd::Cancelled,
        };
        let result = match outcome {
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
        RunEnd::Exit(GuestExit { fields, result })
    });
    match receiver.await {
        Ok(Ok(response)) => Ok(GuestReply::Response {
            response,
            exit: GuestTask(task),
        }),
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
async fn run(
    guest: &Guest,
    store: &mut Store<Sandbox>,
    service: Option<Service>,
    request: hyper::Request<GuestBody>,
    sender: oneshot::Sender<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>,
) -> wasmtime::Result<Service> {
    let service = match service {
        Some(service) => service,
        None => instantiate(guest, store).await?,
    };
    let request = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
    // Answering is an effect: a guest that answered is never run again.
    let effects = store.data().effects.clone();
    let out = store
        .data_mut()
        .http()
        .new_response_outparam_from_callback(move |response| {
            effects.mark();
            let _ = sender.send(response);
        })?;
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

/// Waits for a guest that did not produce a response, and explains why;
/// or why it was stopped to run again.
async fn failed(exit: JoinHandle<RunEnd>, code: Option<ErrorCode>) -> Result<GuestReply, Pause> {
    let exit = match exit.await {
        Ok(RunEnd::Exit(exit)) => exit,
        Ok(RunEnd::Paused(pause)) => return Err(pause),
        // Only a caller already gone fires `cancel`: nobody reads this.
        Ok(RunEnd::Cancelled) => GuestExit {
            fields: LogFields::default(),
            result: Err(GuestFailure::NoResponse("the client went away".into())),
        },
        Err(join_error) => task_failed(&join_error),
    };
    let failure = exit.result.err().unwrap_or_else(|| {
        GuestFailure::NoResponse(match code {
            Some(code) => format!("guest answered with error code {code:?}"),
            None => "guest returned without setting a response".into(),
        })
    });
    Ok(GuestReply::Failed {
        fields: exit.fields,
        failure,
    })
}
