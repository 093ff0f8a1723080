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
//!   includes a bad or duplicated Content-Length, HTTP versions other
//!   than 1.0/1.1, and a header that may appear only once appearing
//!   twice: `Host` (RFC 9112 §3.2) and `Sec-WebSocket-Key` or
//!   `Sec-WebSocket-Version` (RFC 6455 §11.3.1, §11.3.5): with two
//!   values there is no telling which one the client meant.
//!
//! An absolute-form target (`GET http://host/stats?x HTTP/1.1`, RFC 9112
//! §3.2.2, what a client talking to a proxy sends) yields the same `path`
//! and `query` as its origin form (`/stats`, `x`). Other targets (`*`,
//! anything not `http://` or `https://` with a host) are passed on as
//! they are, and routing answers 404 or 405.

/// Request method, as far as routing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`: what pages and WebSocket upgrades take.
    Get,
    /// `HEAD`: answered like `GET` without the body (RFC 9110 §9.3.2).
    Head,
    /// Anything else: answered with 405.
    Other,
}

/// What the server needs from a request head. Borrows the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method, reduced to what routing distinguishes.
    pub method: Method,
    /// Path without the query string, e.g. `/echo` (also for an
    /// absolute-form target).
    pub path: &'a str,
    /// The query string after `?`, without the `?`.
    pub query: Option<&'a str>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The `Host` header's value: routing refuses an HTTP/1.1 request
    /// without one (RFC 9112 §3.2).
    pub host: Option<&'a [u8]>,
    /// Keep-alive per HTTP/1.1 (default on, `Connection: close` turns it
    /// off) and HTTP/1.0 (default off, `Connection: keep-alive` turns it on).
    pub keep_alive: bool,
    /// `Upgrade: websocket` (case-insensitive token) and `Connection`
    /// containing the `upgrade` token.
    pub websocket_upgrade: bool,
    /// The `Sec-WebSocket-Key` header's raw value; an upgrade is answered
    /// 400 unless it is base64 of 16 bytes (RFC 6455 §4.2.1).
    pub sec_websocket_key: Option<&'a [u8]>,
    /// The `Sec-WebSocket-Version` header's raw value; an upgrade with
    /// anything but `13` is answered 426 (RFC 6455 §4.4).
    pub sec_websocket_version: Option<&'a [u8]>,
    /// The first `Sec-WebSocket-Extensions` header's value (RFC 6455
    /// §9.1): the extensions a client offers, e.g. permessage-deflate.
    /// Clients send their offers on one line; offers on a further line
    /// are not read (so not accepted, which is always allowed).
    pub sec_websocket_extensions: Option<&'a [u8]>,
    /// The `Origin` header's raw value, checked against
    /// `--allowed-origins` when that list is not empty (403 otherwise).
    pub origin: Option<&'a [u8]>,
    /// Declared body length (0 when absent).
    pub content_length: u64,
    /// `Transfer-Encoding` present: we do not read chunked bodies, the
    /// server answers and closes.
    pub chunked: bool,
    /// Bytes of the head, including the final CRLFCRLF.
    pub head_len: usize,
}

/// Why a request head cannot be answered normally; each maps to one
/// status (`HttpError::status`, in `response.rs`) and a closed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Does not parse, or breaks a rule of the head (400).
    BadRequest,
    /// Over the head limit before the request line ended (414).
    UriTooLong,
    /// Over the head limit, or over `MAX_HEADERS` (32) headers (431).
    HeadTooLarge,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HttpError::BadRequest => "malformed request head",
            HttpError::UriTooLong => "request line over the head limit",
            HttpError::HeadTooLarge => "request head over the limit",
        })
    }
}

impl std::error::Error for HttpError {}

/// How many headers a request may carry; one more is `HeadTooLarge`.
/// The array lives on the stack for the duration of one parse.
const MAX_HEADERS: usize = 32;

/// The default limit on a request head (PROTOCOL.md, "Limits").
pub const DEFAULT_MAX_HEAD: usize = 8 * 1024;

/// Parses the request head at the start of `buf`, looking at no more than
/// `max_head` bytes: `Ok(None)` while it is incomplete and within the
/// limit (read more), `Ok(Some(req))` once complete (`req.head_len` bytes;
/// a pipelined request after it is left alone), `Err` for a head to refuse
/// with a status and then close.
pub fn parse_request(buf: &[u8], max_head: usize) -> Result<Option<Request<'_>>, HttpError> {
    // Never look past `max_head` bytes: a head that is not complete within
    // them is too large whatever follows, and this bounds the work done on
    // every read. Pipelined requests after a complete head are ignored here.
    let window = buf.get(..max_head).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_head {
                return Err(if has_line_end(window) {
                    HttpError::HeadTooLarge
                } else {
                    HttpError::UriTooLong
                });
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::BadRequest),
    };

    let method = match parsed.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some(_) => Method::Other,
        None => return Err(HttpError::BadRequest),
    };
    let target = parsed.path.ok_or(HttpError::BadRequest)?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = absolute_form_path(path).unwrap_or(path);
    let minor_version = match parsed.version {
        Some(v @ (0 | 1)) => v,
        _ => return Err(HttpError::BadRequest),
    };

    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut conn_upgrade = false;
    let mut upgrade_websocket = false;
    let mut host = None;
    let mut sec_websocket_key = None;
    let mut sec_websocket_version = None;
    let mut origin = None;
    let mut sec_websocket_extensions = None;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;

    for h in parsed.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                } else if t.eq_ignore_ascii_case(b"upgrade") {
                    conn_upgrade = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            if tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"websocket")) {
                upgrade_websocket = true;
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(h.value).ok_or(HttpError::BadRequest)?;
            match content_length {
                Some(prev) if prev != n => return Err(HttpError::BadRequest),
                _ => content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            set_once(&mut host, h.value)?;
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            // The handshake validates the value.
            set_once(&mut sec_websocket_key, h.value)?;
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            set_once(&mut sec_websocket_version, h.value)?;
        } else if name.eq_ignore_ascii_case(b"origin") {
            origin.get_or_insert(trim_ows(h.value));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-extensions") {
            sec_websocket_extensions.get_or_insert(trim_ows(h.value));
        }
    }

    let keep_alive = if conn_close {
        false
    } else if minor_version == 1 {
        true
    } else {
        conn_keep_alive
    };

    Ok(Some(Request {
        method,
        path,
        query,
        minor_version,
        host,
        keep_alive,
        websocket_upgrade: upgrade_websocket && conn_upgrade,
        sec_websocket_key,
        sec_websocket_version,
        sec_websocket_extensions,
        origin,
        content_length: content_length.unwrap_or(0),
        chunked,
        head_len,
    }))
}

/// Records the value of a header that may appear only once; a second one
/// makes the request bad.
fn set_once<'a>(slot: &mut Option<&'a [u8]>, value: &'a [u8]) -> Result<(), HttpError> {
    if slot.is_some() {
        return Err(HttpError::BadRequest);
    }
    *slot = Some(trim_ows(value));
    Ok(())
}

/// The path of an absolute-form target (`http://host:8080/stats` →
/// `/stats`; no path at all is `/`), or None when `target` is not one: the
/// scheme must be `http` or `https` (any case) and the host non-empty
/// (RFC 9110 §4.2.1 makes `http:///x` invalid). `target` has its query
/// already split off; an authority cannot contain `?`, so that split is
/// the same in both forms.
fn absolute_form_path(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    Some(path)
}

/// Whether the request line ends within `window` (httparse skips empty
/// lines before the request line, so those do not count).
fn has_line_end(window: &[u8]) -> bool {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    window
        .get(start..)
        .is_some_and(|rest| rest.contains(&b'\n'))
}

/// A comma-separated header value as its non-empty, OWS-trimmed elements.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// `1*DIGIT`, surrounding whitespace allowed, no overflow.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let digits = trim_ows(value);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = DEFAULT_MAX_HEAD;

    fn parse(buf: &[u8]) -> Request<'_> {
        match parse_request(buf, MAX) {
            Ok(Some(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn get_simple() {
        let buf = b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n";
        let r = parse(buf);
        assert_eq!(
            r,
            Request {
                method: Method::Get,
                path: "/echo",
                query: None,
                minor_version: 1,
                host: Some(b"x"),
                keep_alive: true,
                websocket_upgrade: false,
                sec_websocket_key: None,
                sec_websocket_version: None,
                sec_websocket_extensions: None,
                origin: None,
                content_length: 0,
                chunked: false,
                head_len: buf.len(),
            }
        );
    }

    #[test]
    fn head_method() {
        assert_eq!(parse(b"HEAD / HTTP/1.1\r\n\r\n").method, Method::Head);
    }

    #[test]
    fn other_methods() {
        for m in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
            let buf = format!("{m} / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
            assert_eq!(parse(buf.as_bytes()).method, Method::Other, "{m}");
        }
    }

    #[test]
    fn query_split() {
        let r = parse(b"GET /stats?x=1&y=2?z HTTP/1.1\r\n\r\n");
        assert_eq!(r.path, "/stats");
        assert_eq!(r.query, Some("x=1&y=2?z"));
        let r = parse(b"GET /? HTTP/1.1\r\n\r\n");
        assert_eq!((r.path, r.query), ("/", Some("")));
    }

    #[test]
    fn http10_default_close() {
        let r = parse(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(r.minor_version, 0);
        assert!(!r.keep_alive);
    }

    #[test]
    fn http10_keep_alive() {
        let r = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!(r.minor_version, 0);
        assert!(r.keep_alive);
    }

    #[test]
    fn http11_connection_close() {
        assert!(!parse(b"GET / HTTP/1.1\r\nconnection: CLOSE\r\n\r\n").keep_alive);
        assert!(!parse(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n").keep_alive);
        // Close wins over keep-alive.
        assert!(!parse(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
        // A token only counts whole.
        assert!(parse(b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n").keep_alive);
    }

    #[test]
    fn pipelined() {
        let first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let second = b"HEAD /b?q HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut buf = first.to_vec();
        buf.extend_from_slice(second);
        let r1 = parse(&buf);
        assert_eq!(
            (r1.method, r1.path, r1.head_len),
            (Method::Get, "/a", first.len())
        );
        let rest = &buf[r1.head_len..];
        let r2 = parse(rest);
        assert_eq!(
            (r2.method, r2.path, r2.query),
            (Method::Head, "/b", Some("q"))
        );
        assert!(!r2.keep_alive);
        assert_eq!(r2.head_len, rest.len());
    }

    #[test]
    fn pipelined_beyond_max_head() {
        // A complete first head followed by more than max_head bytes.
        let mut buf = b"GET /a HTTP/1.1\r\n\r\n".to_vec();
        let n = buf.len();
        buf.extend(std::iter::repeat(b'x').take(100));
        assert_eq!(
            parse_request(&buf, 64).map(|r| r.map(|r| r.head_len)),
            Ok(Some(n))
        );
    }

    #[test]
    fn incomplete_is_none() {
        for buf in [
            &b""[..],
            b"G",
            b"GET / HTTP/1.1",
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r",
        ] {
            assert_eq!(parse_request(buf, MAX), Ok(None), "{buf:?}");
        }
    }

    #[test]
    fn split_at_every_offset() {
        let buf: &[u8] = b"GET /echo?x=y HTTP/1.1\r\nHost: example.com\r\n\
            Upgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\r\n";
        let whole = parse(buf);
        assert_eq!(whole.head_len, buf.len());
        for i in 0..buf.len() {
            assert_eq!(parse_request(&buf[..i], MAX), Ok(None), "prefix {i}");
        }
        // And with the full buffer plus a following request.
        let mut more = buf.to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&more), whole);
    }

    #[test]
    fn over_long_request_line() {
        let mut buf = b"GET /".to_vec();
        buf.extend(std::iter::repeat(b'a').take(MAX));
        assert_eq!(parse_request(&buf, MAX), Err(HttpError::UriTooLong));
        // Complete, but the request line alone is over the limit.
        buf.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(parse_request(&buf, MAX), Err(HttpError::UriTooLong));
        // Exactly at the limit still waits.
        assert_eq!(parse_request(&buf[..MAX], MAX), Ok(None));
    }

    #[test]
    fn over_long_headers() {
        let mut buf = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        buf.extend(std::iter::repeat(b'a').take(MAX));
        assert_eq!(parse_request(&buf, MAX), Err(HttpError::HeadTooLarge));
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&buf, MAX), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn head_exactly_max_is_fine() {
        let buf = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(parse_request(buf, buf.len()), Ok(Some(_))));
        assert_eq!(
            parse_request(buf, buf.len() - 1),
            Err(HttpError::HeadTooLarge)
        );
    }

    #[test]
    fn leading_empty_lines_do_not_count_as_line_end() {
        let mut buf = b"\r\n\r\nGET /".to_vec();
        buf.extend(std::iter::repeat(b'a').take(64));
        assert_eq!(parse_request(&buf, 32), Err(HttpError::UriTooLong));
    }

    #[test]
    fn too_many_headers() {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            buf.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&buf, MAX), Err(HttpError::HeadTooLarge));
        // Exactly MAX_HEADERS is fine.
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            buf.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert!(matches!(parse_request(&buf, MAX), Ok(Some(_))));
    }

    #[test]
    fn garbage() {
        for buf in [
            &b"\x00\x01\x02\x03 garbage\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.2\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n: novalue\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert_eq!(
                parse_request(buf, MAX),
                Err(HttpError::BadRequest),
                "{buf:?}"
            );
        }
    }

    #[test]
    fn content_length() {
        let r = parse(b"POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\nbody");
        assert_eq!(r.content_length, 42);
        let r = parse(b"POST / HTTP/1.1\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n");
        assert_eq!(r.content_length, 7);
        let r = parse(b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(r.content_length, u64::MAX);
    }

    #[test]
    fn bad_content_length() {
        for cl in [
            "-1",
            "+1",
            "1.0",
            "0x10",
            "",
            "1 2",
            "5, 5",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            let buf = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            assert_eq!(
                parse_request(buf.as_bytes(), MAX),
                Err(HttpError::BadRequest),
                "{cl:?}"
            );
        }
        let buf = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(parse_request(buf, MAX), Err(HttpError::BadRequest));
    }

    #[test]
    fn transfer_encoding_is_chunked() {
        let r = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(r.chunked);
        assert!(!parse(b"GET / HTTP/1.1\r\n\r\n").chunked);
    }

    #[test]
    fn websocket_upgrade() {
        let buf = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\
            Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: abc==\r\n\
            Sec-WebSocket-Version: 13\r\nOrigin: http://x\r\n\r\n";
        let r = parse(buf);
        assert!(r.websocket_upgrade);
        assert!(r.keep_alive);
        assert_eq!(r.sec_websocket_key, Some(&b"abc=="[..]));
        assert_eq!(r.sec_websocket_version, Some(&b"13"[..]));
        assert_eq!(r.origin, Some(&b"http://x"[..]));

        let r = parse(b"GET / HTTP/1.1\r\nupgrade: h2c, websocket\r\nCONNECTION: UPGRADE\r\n\r\n");
        assert!(r.websocket_upgrade);
        // Connection split over two header lines.
        let r = parse(
            b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection:upgrade\r\n\
              Upgrade:websocket\r\n\r\n",
        );
        assert!(r.websocket_upgrade);
    }

    #[test]
    fn once_only_headers_twice_are_bad() {
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        for twice in [
            format!("{key}{key}"),
            format!("{key}{}", key.to_ascii_lowercase()),
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n".into(),
            "Sec-WebSocket-Version: 13\r\nsec-websocket-version: 8\r\n".into(),
            "Host: a\r\nHost: a\r\n".into(),
            "Host: a\r\nHOST: b\r\n".into(),
        ] {
            let buf = format!(
                "GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{twice}\r\n"
            );
            assert_eq!(
                parse_request(buf.as_bytes(), MAX),
                Err(HttpError::BadRequest),
                "{twice:?}"
            );
        }
        // Once each is fine.
        let r = parse(
            b"GET /echo HTTP/1.1\r\nHost: a \r\nSec-WebSocket-Key: k\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        );
        assert_eq!(
            (r.host, r.sec_websocket_key, r.sec_websocket_version),
            (Some(&b"a"[..]), Some(&b"k"[..]), Some(&b"13"[..]))
        );
    }

    #[test]
    fn host_is_recorded() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nhost:  example.com:80 \r\n\r\n").host,
            Some(&b"example.com:80"[..])
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n").host, None);
        assert_eq!(parse(b"GET / HTTP/1.0\r\n\r\n").host, None);
    }

    #[test]
    fn absolute_form_targets_use_their_path_and_query() {
        for (target, path, query) in [
            ("http://example.com/stats", "/stats", None),
            ("http://example.com:8080/stats?x=1", "/stats", Some("x=1")),
            ("HTTPS://example.com/echo?a?b", "/echo", Some("a?b")),
            ("http://u@example.com/a/b/", "/a/b/", None),
            ("http://example.com", "/", None),
            ("http://example.com?x", "/", Some("x")),
            ("http://[::1]:80/metrics", "/metrics", None),
            // Not absolute-form: passed on as they are.
            ("*", "*", None),
            ("/plain?q", "/plain", Some("q")),
            ("ftp://example.com/stats", "ftp://example.com/stats", None),
            ("http:///stats", "http:///stats", None),
            ("http:/x/stats", "http:/x/stats", None),
            ("stats", "stats", None),
            ("http://", "http://", None),
        ] {
            let buf = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            let r = parse_request(buf.as_bytes(), MAX);
            let got = r.as_ref().map(|r| r.as_ref().map(|r| (r.path, r.query)));
            assert_eq!(got, Ok(Some((path, query))), "{target}");
        }
    }

    #[test]
    fn not_websocket_upgrade() {
        for buf in [
            &b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websockets\r\nConnection: Upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgraded\r\n\r\n",
        ] {
            assert!(!parse(buf).websocket_upgrade, "{buf:?}");
        }
    }

    #[test]
    fn no_panic_on_any_prefix_of_noise() {
        // Cheap deterministic noise; every byte value, every prefix length.
        let mut x: u32 = 0x1234_5678;
        let noise: Vec<u8> = (0..512)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for i in 0..noise.len() {
            for max in [0, 1, 16, 256] {
                let _ = parse_request(&noise[..i], max);
            }
        }
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let e: Box<dyn std::error::Error> = Box::new(HttpError::UriTooLong);
        assert_eq!(e.to_string(), "request line over the head limit");
        assert_eq!(HttpError::BadRequest.to_string(), "malformed request head");
        assert_eq!(
            HttpError::HeadTooLarge.to_string(),
            "request head over the limit"
        );
    }

    #[test]
    fn zero_max_head() {
        assert_eq!(parse_request(b"", 0), Ok(None));
        assert_eq!(parse_request(b"G", 0), Err(HttpError::UriTooLong));
    }
}
