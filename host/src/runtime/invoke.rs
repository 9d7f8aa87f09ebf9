//! One request through one fresh guest instance.

use std::sync::Arc;
use std::time::Instant;

use hyper::body::{Body, Bytes};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::guest::Guest;
use super::sandbox::{Sandbox, Services};
use crate::telemetry::request_log::{self, LogFields, RequestId};

/// How the guest's run ended, available once it has returned.
pub struct GuestExit {
    /// What the guest attached to the request's log line.
    pub fields: LogFields,
    /// `Err` when the guest trapped or the host could not run it.
    pub result: anyhow::Result<()>,
}

/// What the caller gets back as soon as the guest has answered (or failed).
pub enum GuestReply {
    /// The guest set a response; `exit` resolves when the guest has finished
    /// writing its body and returned.
    Response {
        response: hyper::Response<HyperOutgoingBody>,
        exit: JoinHandle<GuestExit>,
    },
    /// The guest returned or trapped without a response, or answered with a
    /// `wasi:http` error code.
    Failed { exit: GuestExit },
}

/// Runs `request` in a fresh instance of `guest`.
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
    let task = tokio::spawn(async move {
        let mut store = Store::new(guest.pre.engine(), Sandbox::new(services, id));
        let result = run(&guest, &mut store, request, sender).await;
        GuestExit {
            fields: store.into_data().fields,
            result,
        }
    });
    match receiver.await {
        Ok(Ok(response)) => GuestReply::Response { response, exit: task },
        Ok(Err(code)) => GuestReply::Failed {
            exit: failed_exit(task, Some(code)).await,
        },
        Err(_) => GuestReply::Failed {
            exit: failed_exit(task, None).await,
        },
    }
}

async fn run<B>(
    guest: &Guest,
    store: &mut Store<Sandbox>,
    request: hyper::Request<B>,
    sender: oneshot::Sender<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>,
) -> anyhow::Result<()>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let started = Instant::now();
    let service = guest.pre.instantiate_async(&mut *store).await?;
    store
        .data()
        .services
        .metrics
        .record_instantiation(request_log::latency_ms(started));
    let request = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
    let out = store.data_mut().http().new_response_outparam(sender)?;
    service
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, request, out)
        .await?;
    Ok(())
}

/// Waits for a guest that did not produce a response, and explains why.
async fn failed_exit(task: JoinHandle<GuestExit>, code: Option<ErrorCode>) -> GuestExit {
    let mut exit = match task.await {
        Ok(exit) => exit,
        Err(join_error) => panic_exit(join_error),
    };
    if exit.result.is_ok() {
        exit.result = Err(match code {
            Some(code) => anyhow::anyhow!("guest answered with error code {code:?}"),
            None => anyhow::anyhow!("guest returned without setting a response"),
        });
    }
    exit
}

fn panic_exit(join_error: tokio::task::JoinError) -> GuestExit {
    GuestExit {
        fields: LogFields::default(),
        result: Err(anyhow::anyhow!("guest task failed: {join_error}")),
    }
}
