//! A webhook receiver on 127.0.0.1 for forwarding tests: records every
//! delivery and answers as the test says (a status, or a stall), and can go
//! down and come back on the same port.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// At once, with this status.
    Status(u16),
    /// 204, after this long, for ids starting with the prefix; at once for others.
    StallPrefix(&'static str, Duration),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body as sent.
    pub body: String,
    /// What the receiver answered.
    pub status: u16,
    /// When it arrived.
    pub arrived: Instant,
}

impl Delivery {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body's `message_id`.
    pub fn message_id(&self) -> String {
        let body: Value = serde_json::from_str(&self.body).expect("a JSON body");
        body["message_id"].as_str().expect("a message_id").to_owned()
    }
}

#[derive(Default)]
struct Shared {
    answer: Option<Answer>,
    deliveries: Vec<Delivery>,
    /// The `webhook-id`s of those answered 2xx.
    delivered: HashSet<String>,
}

/// The receiver; stops when dropped.
///
/// hyper's HTTP/1.1 server on a current-thread runtime in one thread: it
/// answers every connection at once however many open (keep-alive
/// included), and costs little beside the server under test, sharing its
/// cores in the bench.
pub struct Receiver {
    port: u16,
    shared: Arc<Mutex<Shared>>,
    running: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Receiver {
    /// The name of its thread (a CPU count per thread finds it by it).
    pub const THREAD_NAME: &'static str = "receiver";

    /// A receiver answering 204 on a free port.
    pub fn start() -> Self {
        let mut receiver = Self {
            port: 0,
            shared: Arc::default(),
            running: None,
        };
        receiver.up();
        receiver
    }

    /// The URL to forward to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/inlet", self.port)
    }

    /// Answers from now on as `answer` says.
    pub fn answer(&self, answer: Answer) {
        self.shared.lock().unwrap().answer = Some(answer);
    }

    /// Every request answered so far (one whose client left while it
    /// stalled is not).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().unwrap().deliveries.clone()
    }

    /// The ids of the deliveries answered 2xx, in arrival order (repeats kept).
    pub fn delivered_ids(&self) -> Vec<String> {
        let deliveries = self.deliveries();
        let accepted = deliveries.iter().filter(|d| (200..300).contains(&d.status));
        accepted.map(Delivery::message_id).collect()
    }

    /// How many distinct messages were delivered (2xx) so far, by `webhook-id`.
    pub fn distinct_delivered(&self) -> usize {
        self.shared.lock().unwrap().delivered.len()
    }

    /// Waits until `ids` have all been delivered (2xx), at most `within`;
    /// the ones still missing.
    pub fn wait_for(&self, ids: &[String], within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let delivered: HashSet<String> = self.delivered_ids().into_iter().collect();
            let missing: Vec<String> = ids.iter().filter(|id| !delivered.contains(*id)).cloned().collect();
            if missing.is_empty() || Instant::now() > deadline {
                return missing;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops listening and drops every connection, answered or not:
    /// connections are refused until `up`.
    pub fn down(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }

    /// Listens again, on the same port once it had one.
    pub fn up(&mut self) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("binding the receiver");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        self.port = listener.local_addr().expect("its address").port();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name(Self::THREAD_NAME.into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the receiver's runtime");
                // Leaving drops the runtime, and with it every connection.
                runtime.block_on(listen(listener, shared, stopped));
            })
            .expect("the receiver's thread");
        self.running = Some((stop, thread));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// Accepts connections until `stopped`, serving each in its own task.
async fn listen(
    listener: std::net::TcpListener,
    shared: Arc<Mutex<Shared>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors, say: not a reason to spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
            _ = &mut stopped => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| receive(request, shared.clone()));
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// Reads one request, answers it as the test set the answer (after any
/// stall), and records it.
async fn receive(
    request: hyper::Request<hyper::body::Incoming>,
    shared: Arc<Mutex<Shared>>,
) -> Result<hyper::Response<http_body_util::Empty<bytes::Bytes>>, hyper::Error> {
    use http_body_util::BodyExt as _;
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = request.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    let arrived = Instant::now();
    let status = answer(&shared, &body).await;
    let delivery = Delivery {
        headers,
        body,
        status,
        arrived,
    };
    {
        let mut shared = shared.lock().unwrap();
        if let Some(id) = delivery.header("webhook-id").filter(|_| (200..300).contains(&status)) {
            shared.delivered.insert(id.to_owned());
        }
        shared.deliveries.push(delivery);
    }
    let mut response = hyper::Response::new(http_body_util::Empty::new());
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("a status the test chose");
    Ok(response)
}

/// The status for `body` as the test set the answer, after any stall.
async fn answer(shared: &Mutex<Shared>, body: &str) -> u16 {
    let answer = shared.lock().unwrap().answer.unwrap_or(Answer::Status(204));
    match answer {
        Answer::Status(status) => status,
        Answer::StallPrefix(prefix, stall) => {
            let message: Value = serde_json::from_str(body).unwrap_or_default();
            if message["message_id"].as_str().is_some_and(|id| id.starts_with(prefix)) {
                tokio::time::sleep(stall).await;
            }
            204
        }
    }
}
