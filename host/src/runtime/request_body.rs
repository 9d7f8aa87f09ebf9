//! A request's body, received from the client by the host rather than by a
//! waiting guest instance.
//!
//! A client decides how fast its body arrives; an instance is a scarce,
//! shared resource. So the host receives every body itself, bounded in size
//! (`MAX_BODY_BYTES`) and time (`BODY_READ_TIMEOUT_MS`), and the guest reads
//! it from the host's buffer. A guest that asks for bytes still on their way
//! is noticed (`ClientBody::starved`): before any effect it may instead be
//! stopped, its instance freed, and run again from the start once the whole
//! body is here (see `invoke`). Every run reads the body from its first byte.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::sandbox::Effects;
use crate::limits::MAX_BUFFERED_BODY_BYTES;

/// Why a body did not arrive whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// It grew past its limit (413).
    TooLarge,
    /// It was not complete within `BODY_READ_TIMEOUT_MS` of the headers (408).
    TimedOut,
    /// The connection broke or the framing was invalid (the client is gone or lied).
    Broken,
    /// The host holds `MAX_BUFFERED_BODY_BYTES` of bodies already (503).
    NoRoom,
}

/// The body of one request, as received so far. Dropping it stops the
/// reception: a body nobody needs any more is not read to its end.
pub struct ClientBody {
    shared: Arc<Shared>,
    receiving: Option<JoinHandle<()>>,
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        if let Some(receiving) = &self.receiving {
            receiving.abort();
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// `true` once the body is complete or has failed.
    ended: watch::Sender<bool>,
    /// Signalled whenever a reader found no byte to read yet.
    starved: Notify,
    limit: u64,
}

#[derive(Default)]
struct State {
    chunks: Vec<Bytes>,
    received: u64,
    end: Option<Result<(), BodyFailure>>,
    readers: Vec<Waker>,
}

impl ClientBody {
    /// Starts receiving `body` on the current runtime: at most `limit`
    /// bytes, complete within `timeout`.
    pub fn receive(mut body: Incoming, limit: u64, timeout: Duration) -> Self {
        let shared = Arc::new(Shared::new(limit));
        // Most bodies arrive with their headers: taken at once, they need no
        // task, and no guest ever waits for them.
        if let Some(outcome) = take_arrived(&mut body, &shared) {
            shared.end(outcome);
            return Self {
                shared,
                receiving: None,
            };
        }
        let receiving = tokio::spawn(receive(body, shared.clone(), timeout));
        Self {
            shared,
            receiving: Some(receiving),
        }
    }

    /// A body already whole (the guest-test harness's requests).
    pub fn whole(bytes: Bytes) -> Self {
        let shared = Arc::new(Shared::new(bytes.len() as u64));
        let outcome = if bytes.is_empty() { Ok(()) } else { shared.push(bytes) };
        shared.end(outcome);
        Self {
            shared,
            receiving: None,
        }
    }

    /// A reader from the body's first byte, for one guest run.
    pub fn reader(&self) -> GuestBody {
        GuestBody {
            shared: self.shared.clone(),
            next: 0,
        }
    }

    /// How the body ended, once it has.
    pub fn outcome(&self) -> Option<Result<(), BodyFailure>> {
        self.shared.lock().end
    }

    /// Waits until the body is complete or has failed.
    pub async fn finished(&self) -> Result<(), BodyFailure> {
        let mut ended = self.shared.ended.subscribe();
        // The sender lives in `shared`, which this borrow keeps alive.
        let _ = ended.wait_for(|ended| *ended).await;
        self.outcome().unwrap_or(Err(BodyFailure::Broken))
    }

    /// Watches the body from a guest run's task.
    pub fn watch(&self) -> BodyWatch {
        BodyWatch(self.shared.clone())
    }
}

/// What a guest run's task sees of the body.
pub struct BodyWatch(Arc<Shared>);

impl BodyWatch {
    /// Resolves once a reader has asked for bytes that have not arrived
    /// while the run has had no `effects`; never after one.
    pub async fn starved_before(&self, effects: &Effects) {
        loop {
            self.0.starved.notified().await;
            if !effects.any() && self.0.lock().end.is_none() {
                return;
            }
        }
    }
}

impl Shared {
    fn new(limit: u64) -> Self {
        let (ended, _) = watch::channel(false);
        Self {
            state: Mutex::default(),
            ended,
            starved: Notify::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, chunk: Bytes) -> Result<(), BodyFailure> {
        let mut state = self.lock();
        if state.received + chunk.len() as u64 > self.limit {
            return Err(BodyFailure::TooLarge);
        }
        let size = chunk.len() as u64;
        if BUFFERED.fetch_add(size, Ordering::AcqRel) + size > MAX_BUFFERED_BODY_BYTES {
            BUFFERED.fetch_sub(size, Ordering::AcqRel);
            return Err(BodyFailure::NoRoom);
        }
        state.received += size;
        state.chunks.push(chunk);
        state.readers.drain(..).for_each(Waker::wake);
        Ok(())
    }

    /// Keeps a frame's data; trailers are not part of the body the guest reads.
    fn take(&self, frame: Result<Frame<Bytes>, hyper::Error>) -> Result<(), BodyFailure> {
        match frame.map_err(|_| BodyFailure::Broken)?.into_data() {
            Ok(data) => self.push(data),
            Err(_trailers) => Ok(()),
        }
    }

    fn end(&self, outcome: Result<(), BodyFailure>) {
        let mut state = self.lock();
        state.end.get_or_insert(outcome);
        state.readers.drain(..).for_each(Waker::wake);
        drop(state);
        self.ended.send_replace(true);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let received = self
            .state
            .get_mut()
            .map_or_else(|e| e.into_inner().received, |s| s.received);
        BUFFERED.fetch_sub(received, Ordering::AcqRel);
    }
}

/// Bytes of request bodies held now, over every request.
static BUFFERED: AtomicU64 = AtomicU64::new(0);

/// The frames that have arrived already, without waiting; the outcome if
/// the body ended with them.
fn take_arrived(body: &mut Incoming, shared: &Shared) -> Option<Result<(), BodyFailure>> {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if body.is_end_stream() {
            return Some(Ok(()));
        }
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Pending => return None,
            Poll::Ready(None) => return Some(Ok(())),
            Poll::Ready(Some(frame)) => {
                if let Err(failure) = shared.take(frame) {
                    return Some(Err(failure));
                }
            }
        }
    }
}

async fn receive(mut body: Incoming, shared: Arc<Shared>, timeout: Duration) {
    let frames = async {
        while let Some(frame) = body.frame().await {
            shared.take(frame)?;
        }
        Ok(())
    };
    let outcome = tokio::time::timeout(timeout, frames)
        .await
        .unwrap_or(Err(BodyFailure::TimedOut));
    shared.end(outcome);
}

/// The body as one guest run reads it: every byte from the first, as fast
/// as the host receives them.
pub struct GuestBody {
    shared: Arc<Shared>,
    next: usize,
}

impl Body for GuestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let shared = &this.shared;
        let mut state = shared.lock();
        if let Some(chunk) = state.chunks.get(this.next) {
            let chunk = chunk.clone();
            this.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match state.end {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(BodyFailure::TooLarge)) => Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                Some(shared.limit),
            )))),
            Some(Err(BodyFailure::TimedOut)) => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)))
            }
            Some(Err(BodyFailure::Broken)) => Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionTerminated))),
            Some(Err(BodyFailure::NoRoom)) => Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionLimitReached))),
            None => {
                if !state.readers.iter().any(|w| w.will_wake(cx.waker())) {
                    state.readers.push(cx.waker().clone());
                }
                drop(state);
                shared.starved.notify_one();
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = self.shared.lock();
        state.end == Some(Ok(())) && self.next >= state.chunks.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
