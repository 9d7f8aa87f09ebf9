//! Reading a `wasi:http` request and writing a `Response` back.

use crate::bindings::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::response::Response;

/// Largest chunk `blocking-write-and-flush` accepts.
const WRITE_CHUNK: usize = 4096;
const READ_CHUNK: u64 = 64 * 1024;

/// The body could not be read to its end (client gone, or the host's body
/// size limit cut it off).
#[derive(Debug)]
pub(crate) struct BodyError;

pub(crate) fn method(request: &IncomingRequest) -> String {
    match request.method() {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other,
    }
}

/// The path and the raw query string (empty when there is none).
pub(crate) fn path_and_query(request: &IncomingRequest) -> (String, String) {
    let full = request.path_with_query().unwrap_or_else(|| "/".into());
    match full.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (full, String::new()),
    }
}

/// A request's headers, copied from the host at once: looking up several
/// names then costs three calls into the host in all (`headers`, `entries`,
/// the drop) instead of three per name.
pub(crate) struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    pub(crate) fn of(request: &IncomingRequest) -> Self {
        Self(request.headers().entries())
    }

    /// The first value of header `name`, in any case, if it is valid UTF-8.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        let (_, value) = self.0.iter().find(|(field, _)| field.eq_ignore_ascii_case(name))?;
        std::str::from_utf8(value).ok().map(str::to_owned)
    }
}

/// The whole body. The host bounds its size before the guest sees it.
/// A body of `Content-Length` bytes is complete once that many arrived (the
/// host's HTTP server frames it so), which spares the read that would only
/// report its end.
pub(crate) fn read_body(request: &IncomingRequest, headers: &Headers) -> Result<Vec<u8>, BodyError> {
    let length: Option<usize> = headers.get("content-length").and_then(|value| value.parse().ok());
    let body = request.consume().map_err(|()| BodyError)?;
    let stream = body.stream().map_err(|()| BodyError)?;
    let mut bytes = Vec::with_capacity(length.unwrap_or(0));
    while Some(bytes.len()) != length {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            // Closed before its declared length: the body was cut short.
            Err(StreamError::Closed) if length.is_some() => return Err(BodyError),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return Err(BodyError),
        }
    }
    Ok(bytes)
}

/// Sends `response`. Write failures (a client that hung up) are ignored:
/// there is nobody left to tell.
pub(crate) fn send(out: ResponseOutparam, response: Response) {
    let headers = Fields::new();
    // A 204 has no body, so no content headers (RFC 9110 forbids its length).
    if response.status != 204 {
        let _ = headers.set("content-type", &[response.content_type.as_bytes().to_vec()]);
        let _ = headers.set("content-length", &[response.body.len().to_string().into_bytes()]);
    }
    for (name, value) in &response.headers {
        let _ = headers.append(name, value.as_bytes());
    }
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status);
    let Ok(body) = outgoing.body() else { return };
    ResponseOutparam::set(out, Ok(outgoing));
    if let Ok(stream) = body.write() {
        for chunk in response.body.chunks(WRITE_CHUNK) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}
