//! A webhook receiver on 127.0.0.1 for forwarding tests: records every
//! delivery and answers as the test says (a status, or a stall), and can go
//! down and come back on the same port.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
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
}

/// The receiver; stops when dropped.
///
/// HTTP/1.1 by hand over std sockets, a thread per connection: tiny_http's
/// pool left whole keep-alive connections unread when many opened at once
/// (requests never answered), which is what these tests must rule out.
pub struct Receiver {
    port: u16,
    shared: Arc<Mutex<Shared>>,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Receiver {
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

    /// Every request so far.
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
        let shared = self.shared.lock().unwrap();
        let accepted = shared.deliveries.iter().filter(|d| (200..300).contains(&d.status));
        accepted
            .filter_map(|d| d.header("webhook-id"))
            .collect::<HashSet<_>>()
            .len()
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

    /// Stops listening and drops every connection: connections are
    /// refused until `up`.
    pub fn down(&mut self) {
        if let Some((stopping, thread)) = self.running.take() {
            stopping.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
    }

    /// Listens again, on the same port once it had one.
    pub fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("binding the receiver");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        self.port = listener.local_addr().expect("its address").port();
        let stopping = Arc::new(AtomicBool::new(false));
        let shared = self.shared.clone();
        let stop = stopping.clone();
        let thread = std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (shared, stop) = (shared.clone(), stop.clone());
                        std::thread::spawn(move || serve(stream, &shared, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.running = Some((stopping, thread));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// Requests on one connection until it closes or the receiver goes down.
fn serve(stream: TcpStream, shared: &Mutex<Shared>, stopping: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut writer = stream.try_clone().expect("a second handle");
    let mut reader = BufReader::new(stream);
    while !stopping.load(Ordering::SeqCst) {
        let Some((headers, body)) = read_request(&mut reader, stopping) else {
            return;
        };
        let arrived = Instant::now();
        let status = answer(shared, &body);
        let reply = format!("HTTP/1.1 {status} Answer\r\ncontent-length: 0\r\n\r\n");
        // Only what was answered counts (as far as a write can tell).
        if stopping.load(Ordering::SeqCst) || writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
        let delivery = Delivery {
            headers,
            body,
            status,
            arrived,
        };
        shared.lock().unwrap().deliveries.push(delivery);
    }
}

/// One request's headers (names in lower case) and body; none once the
/// connection closed.
fn read_request(reader: &mut BufReader<TcpStream>, stopping: &AtomicBool) -> Option<(Vec<(String, String)>, String)> {
    let mut headers = Vec::new();
    let mut line = String::new();
    let mut started = false;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if stopping.load(Ordering::SeqCst) {
                    return None;
                }
                continue;
            }
            Err(_) => return None,
        }
        let trimmed = line.trim_end();
        if !started {
            started = true; // the request line
            continue;
        }
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.get_ref().set_read_timeout(Some(Duration::from_secs(10)));
    reader.read_exact(&mut body).ok()?;
    let _ = reader.get_ref().set_read_timeout(Some(Duration::from_millis(100)));
    Some((headers, String::from_utf8_lossy(&body).into_owned()))
}

/// The status for `body` as the test set the answer, after any stall.
fn answer(shared: &Mutex<Shared>, body: &str) -> u16 {
    let answer = shared.lock().unwrap().answer.unwrap_or(Answer::Status(204));
    match answer {
        Answer::Status(status) => status,
        Answer::StallPrefix(prefix, stall) => {
            let message: Value = serde_json::from_str(body).unwrap_or_default();
            if message["message_id"].as_str().is_some_and(|id| id.starts_with(prefix)) {
                std::thread::sleep(stall);
            }
            204
        }
    }
}
