//! What a guest writes to stderr, kept for the request's log line.
//!
//! A Rust guest prints its panic message there ("panicked at src/…: …"); the
//! trap itself only carries a wasm backtrace. The first `KEPT_BYTES` of each
//! request are kept and the rest counted. Writes never fail, whatever their
//! size: a guest's `eprintln!` panics when stderr reports an error, so a
//! bounded pipe that refuses writes would turn chatty logging into traps.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of stderr kept per request: a panic message with its location and
/// a few lines of context.
const KEPT_BYTES: usize = 2048;

/// Largest write a guest is invited to make at once; larger ones are
/// accepted too.
const WRITE_BUDGET: usize = 64 << 10;

/// The guest's stderr. Clones share one buffer: the sandbox keeps one to
/// read, WASI hands the others to the guest.
#[derive(Debug, Clone, Default)]
pub(super) struct GuestStderr(Arc<Mutex<Captured>>);

#[derive(Debug, Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: usize,
}

impl GuestStderr {
    /// What was written since the last call, as text (invalid UTF-8
    /// replaced, trailing whitespace trimmed, a note of any bytes beyond the
    /// kept ones), or `None` when nothing was.
    pub(super) fn take(&self) -> Option<String> {
        let Captured { kept, dropped } = std::mem::take(&mut *self.lock());
        if kept.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&kept);
        let text = text.trim_end();
        Some(if dropped == 0 {
            text.to_owned()
        } else {
            format!("{text}… ({dropped} more bytes not kept)")
        })
    }

    fn append(&self, bytes: &[u8]) {
        let mut captured = self.lock();
        let room = KEPT_BYTES.saturating_sub(captured.kept.len());
        let (kept, dropped) = bytes.split_at(room.min(bytes.len()));
        captured.kept.extend_from_slice(kept);
        captured.dropped += dropped.len();
    }

    /// A guest that panicked mid-write leaves no broken invariant here.
    fn lock(&self) -> MutexGuard<'_, Captured> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl IsTerminal for GuestStderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStderr {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestStderr {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestStderr {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl AsyncWrite for GuestStderr {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, bytes: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_head_and_counts_the_rest() {
        let stderr = GuestStderr::default();
        assert_eq!(stderr.take(), None);
        let mut stream = stderr.p2_stream();
        stream.write(Bytes::from("panicked at src/lib.rs:1:1:\n")).unwrap();
        stream.write(Bytes::from(vec![b'x'; KEPT_BYTES])).unwrap();
        let text = stderr.take().expect("something was written");
        assert!(text.starts_with("panicked at src/lib.rs:1:1:\nxxx"), "{text}");
        assert!(text.ends_with("… (28 more bytes not kept)"), "{text}");
        assert_eq!(stderr.take(), None, "each request reads only its own output");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let stderr = GuestStderr::default();
        stderr
            .p2_stream()
            .write(Bytes::from_static(b"bad \xff byte\n"))
            .unwrap();
        assert_eq!(stderr.take().as_deref(), Some("bad \u{fffd} byte"));
    }
}
