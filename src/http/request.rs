//! Request head parsing with `httparse`.
//!
//! CONTRACT: `parse_request(buf, max_head)`:
//! * `Ok(None)`: the head is not complete yet and `buf` is still within
//!   `max_head` bytes: read more.
//! * `Ok(Some(req))`: a complete head of `req.head_len` bytes. Any body
//!   (`content_length`) follows it in the stream and is the caller's to skip.
//! * `Err(HttpError::UriTooLong)`: over `max_head` bytes and the request
//!   line itself is not finished (414).
//! * `Err(HttpError::HeadTooLarge)`: over `max_head` bytes (431), or more
//!   headers than the parser's fixed header array holds.
//! * `Err(HttpError::BadRequest)`: does not parse (400, then close);
//!   includes a bad or duplicated Content-Length and HTTP versions other
//!   than 1.0/1.1.

/// Request method, as far as routing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Anything else: answered with 405.
    Other,
}

/// What the server needs from a request head. Borrows the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// Path without the query string, e.g. `/echo`.
    pub path: &'a str,
    /// The query string after `?`, without the `?`.
    pub query: Option<&'a str>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Keep-alive per HTTP/1.1 (default on, `Connection: close` turns it
    /// off) and HTTP/1.0 (default off, `Connection: keep-alive` turns it on).
    pub keep_alive: bool,
    /// `Upgrade: websocket` (case-insensitive token) and `Connection`
    /// containing the `upgrade` token.
    pub websocket_upgrade: bool,
    pub sec_websocket_key: Option<&'a [u8]>,
    pub sec_websocket_version: Option<&'a [u8]>,
    pub origin: Option<&'a [u8]>,
    /// Declared body length (0 when absent).
    pub content_length: u64,
    /// `Transfer-Encoding` present: we do not read chunked bodies, the
    /// server answers and closes.
    pub chunked: bool,
    /// Bytes of the head, including the final CRLFCRLF.
    pub head_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    BadRequest,
    UriTooLong,
    HeadTooLarge,
}

pub fn parse_request(buf: &[u8], max_head: usize) -> Result<Option<Request<'_>>, HttpError> {
    let _ = (buf, max_head);
    Err(HttpError::BadRequest)
}
