//! HTTP/1.1 over a bare socket, for what a client library will not send:
//! broken headers, lying lengths, bodies that trickle or never come.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::Server;

/// How long a raw read waits for the server.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to `server`, with reads bounded by `READ_TIMEOUT`.
pub fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("read timeout");
    stream
}

/// Writes `request` as is and reads until the server closes the connection.
pub fn exchange(server: &Server, request: &[u8]) -> String {
    let mut stream = connect(server);
    // A server may answer and close before reading everything we send.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// Reads one response's head from `stream` and returns its status; `None`
/// when the connection closed or timed out first.
pub fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    status_line(&String::from_utf8_lossy(&head))
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// The first line of a response.
pub fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

/// What follows a response's head.
pub fn body_of(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default()
}
