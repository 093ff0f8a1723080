//! Response writing. Every response carries `Content-Length`.

use super::request::{HttpError, Request};

/// One row per status the server sends: the code, the variant and the
/// reason phrase. Every other fact about a status (status line, error
/// body) is derived from this table, so a phrase is written down once.
macro_rules! statuses {
    ($($(#[$doc:meta])* $name:ident = $code:literal $phrase:literal,)*) => {
        /// HTTP statuses the server sends.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Status {
            $($(#[$doc])* $name = $code,)*
        }

        impl Status {
            /// Every status, for tests and tables.
            #[cfg(test)]
            pub(crate) const ALL: &'static [Status] = &[$(Status::$name,)*];

            /// The reason phrase, e.g. `Not Found` (tests check the status
            /// line against it).
            #[cfg(test)]
            pub(crate) fn reason_phrase(self) -> &'static str {
                match self {
                    $(Status::$name => $phrase,)*
                }
            }

            /// The whole status line, CRLF included, e.g.
            /// `HTTP/1.1 200 OK\r\n`.
            pub(crate) fn status_line(self) -> &'static [u8] {
                match self {
                    $(Status::$name => concat!(
                        "HTTP/1.1 ", stringify!($code), " ", $phrase, "\r\n"
                    ).as_bytes(),)*
                }
            }

            /// The reason phrase and a newline: the plain-text body of most
            /// error answers.
            fn phrase_line(self) -> &'static str {
                match self {
                    $(Status::$name => concat!($phrase, "\n"),)*
                }
            }
        }
    };
}

statuses! {
    Ok = 200 "OK",
    SwitchingProtocols = 101 "Switching Protocols",
    BadRequest = 400 "Bad Request",
    Forbidden = 403 "Forbidden",
    NotFound = 404 "Not Found",
    MethodNotAllowed = 405 "Method Not Allowed",
    UriTooLong = 414 "URI Too Long",
    UpgradeRequired = 426 "Upgrade Required",
    TooManyRequests = 429 "Too Many Requests",
    HeadTooLarge = 431 "Request Header Fields Too Large",
    // Never sent: over `--max-connections` a connection is closed without
    // an answer. Left in the table (and its tests) rather than removed
    // while narrowing visibility; whether to drop it is a separate choice.
    #[allow(dead_code)]
    ServiceUnavailable = 503 "Service Unavailable",
}

impl Status {
    /// The numeric status code.
    pub(crate) fn code(self) -> u16 {
        self as u16
    }

    /// The `text/plain` body of an error answer ([`write_error`]): the
    /// reason phrase on a line, except for 426, which says what to
    /// upgrade to. Empty for the statuses that are not errors.
    pub(crate) fn error_body(self) -> &'static str {
        match self {
            Status::Ok | Status::SwitchingProtocols => "",
            Status::UpgradeRequired => {
                "Upgrade Required: this endpoint speaks WebSocket (version 13)\n"
            }
            _ => self.phrase_line(),
        }
    }
}

impl HttpError {
    /// The status answering a request that failed to parse (the
    /// connection is then closed).
    pub(crate) fn status(self) -> Status {
        match self {
            HttpError::BadRequest => Status::BadRequest,
            HttpError::UriTooLong => Status::UriTooLong,
            HttpError::HeadTooLarge => Status::HeadTooLarge,
        }
    }
}

impl From<HttpError> for Status {
    fn from(e: HttpError) -> Status {
        e.status()
    }
}

/// How the connection continues after this response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Connection {
    /// HTTP/1.1 default: no header needed.
    KeepAlive11,
    /// HTTP/1.0 with keep-alive: `Connection: keep-alive` is sent.
    KeepAlive10,
    /// `Connection: close` is sent; the server closes after writing.
    Close,
}

impl Connection {
    /// What a parsed request asks for: `Close` unless it is keep-alive,
    /// then `KeepAlive11` or `KeepAlive10` by its HTTP version. (The server
    /// may still choose `Close`, e.g. for chunked bodies or errors.)
    pub(crate) fn for_request(req: &Request<'_>) -> Connection {
        match (req.keep_alive, req.minor_version) {
            (false, _) => Connection::Close,
            (true, 0) => Connection::KeepAlive10,
            (true, _) => Connection::KeepAlive11,
        }
    }

    /// The header line to send, empty for `KeepAlive11`.
    pub(crate) fn header_line(self) -> &'static [u8] {
        match self {
            Connection::KeepAlive11 => b"",
            Connection::KeepAlive10 => b"Connection: keep-alive\r\n",
            Connection::Close => b"Connection: close\r\n",
        }
    }

    /// The header line for an answer that carries an `Upgrade` header
    /// (426): `Upgrade` is hop-by-hop, so `Connection` must name it (RFC
    /// 9110 §7.8), in the same one line that says how the connection goes
    /// on: a second `Connection` line would be legal but easy to misread.
    pub(crate) fn upgrade_header_line(self) -> &'static [u8] {
        match self {
            Connection::KeepAlive11 => b"Connection: Upgrade\r\n",
            Connection::KeepAlive10 => b"Connection: keep-alive, Upgrade\r\n",
            Connection::Close => b"Connection: close, Upgrade\r\n",
        }
    }
}

/// Appends a complete response. `head_only` (HEAD requests) sends the
/// headers, including the body's `Content-Length`, but not the body.
/// `extra_headers` are written as `Name: value\r\n` each.
///
/// Header order: status line, `Content-Type` (left out when
/// `content_type` is empty), `Content-Length`, `Connection` (per
/// `connection`), then `extra_headers` in order. Allocates nothing beyond
/// growing `out`.
pub(crate) fn write_response(
    out: &mut Vec<u8>,
    status: Status,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    connection: Connection,
    extra_headers: &[(&str, &str)],
) {
    let connection_line = connection.header_line();
    write_with(
        out,
        status,
        content_type,
        body,
        head_only,
        connection_line,
        extra_headers,
    );
}

/// [`write_response`] with the `Connection` header line given whole.
fn write_with(
    out: &mut Vec<u8>,
    status: Status,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    connection_line: &[u8],
    extra_headers: &[(&str, &str)],
) {
    out.extend_from_slice(status.status_line());
    if !content_type.is_empty() {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: ");
    let mut digits = [0u8; 20];
    out.extend_from_slice(format_decimal(body.len() as u64, &mut digits));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(connection_line);
    for (name, value) in extra_headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Appends an error answer: the status line, `text/plain` with
/// [`Status::error_body`], and the headers the status calls for: `Allow`
/// for 405 (RFC 9110 §15.5.6); `Sec-WebSocket-Version`, `Upgrade` and
/// `Upgrade` in `Connection` for 426 (RFC 6455 §4.4, RFC 9110 §15.5.22).
///
/// The body goes out even when the request was HEAD, which RFC 9110 §9.3.2
/// forbids: a keep-alive HEAD client then reads it as the start of the
/// next response. Not fixed here, since it changes bytes on the wire; it
/// needs a `head_only` argument from the caller.
pub(crate) fn write_error(out: &mut Vec<u8>, status: Status, connection: Connection) {
    let (connection_line, extra): (_, &[(&str, &str)]) = match status {
        Status::MethodNotAllowed => (connection.header_line(), &[("Allow", "GET, HEAD")]),
        Status::UpgradeRequired => (
            connection.upgrade_header_line(),
            &[("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")],
        ),
        _ => (connection.header_line(), &[]),
    };
    write_with(
        out,
        status,
        "text/plain; charset=utf-8",
        status.error_body().as_bytes(),
        false,
        connection_line,
        extra,
    );
}

/// Appends the 101 response completing a WebSocket handshake. (A 1xx
/// response has no body and must not carry `Content-Length`.)
pub(crate) fn write_switching_protocols(
    out: &mut Vec<u8>,
    accept_key: &str,
    deflate: Option<crate::ws::extension::Agreement>,
) {
    out.extend_from_slice(Status::SwitchingProtocols.status_line());
    out.extend_from_slice(
        b"Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(agreed) = deflate {
        crate::ws::extension::write_response(out, agreed);
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, written into the end of `buf` (u64::MAX has 20 digits).
fn format_decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut len = 0;
    for slot in buf.iter_mut().rev() {
        *slot = b'0' | (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.get(buf.len() - len..).unwrap_or_default()
}

macro_rules! healthz {
    ($conn:literal, $body:literal) => {
        concat!(
            "HTTP/1.1 200 OK\r\n",
            "Content-Type: text/plain\r\n",
            "Content-Length: 3\r\n",
            $conn,
            "\r\n",
            $body
        )
        .as_bytes()
    };
}

/// `GET /healthz`, HTTP/1.1 keep-alive.
pub(crate) const HEALTHZ_KEEP_ALIVE_11: &[u8] = healthz!("", "ok\n");
/// `GET /healthz`, HTTP/1.0 keep-alive.
pub(crate) const HEALTHZ_KEEP_ALIVE_10: &[u8] = healthz!("Connection: keep-alive\r\n", "ok\n");
/// `GET /healthz`, closing.
pub(crate) const HEALTHZ_CLOSE: &[u8] = healthz!("Connection: close\r\n", "ok\n");
/// `HEAD /healthz`, HTTP/1.1 keep-alive.
pub(crate) const HEALTHZ_HEAD_KEEP_ALIVE_11: &[u8] = healthz!("", "");
/// `HEAD /healthz`, HTTP/1.0 keep-alive.
pub(crate) const HEALTHZ_HEAD_KEEP_ALIVE_10: &[u8] = healthz!("Connection: keep-alive\r\n", "");
/// `HEAD /healthz`, closing.
pub(crate) const HEALTHZ_HEAD_CLOSE: &[u8] = healthz!("Connection: close\r\n", "");

/// The complete, precomputed `/healthz` response (`200`, `text/plain`,
/// body `ok\n`): byte-for-byte what `write_response(out, Status::Ok,
/// "text/plain", b"ok\n", head_only, connection, &[])` appends.
pub(crate) fn healthz_response(head_only: bool, connection: Connection) -> &'static [u8] {
    match (head_only, connection) {
        (false, Connection::KeepAlive11) => HEALTHZ_KEEP_ALIVE_11,
        (false, Connection::KeepAlive10) => HEALTHZ_KEEP_ALIVE_10,
        (false, Connection::Close) => HEALTHZ_CLOSE,
        (true, Connection::KeepAlive11) => HEALTHZ_HEAD_KEEP_ALIVE_11,
        (true, Connection::KeepAlive10) => HEALTHZ_HEAD_KEEP_ALIVE_10,
        (true, Connection::Close) => HEALTHZ_HEAD_CLOSE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(
        status: Status,
        content_type: &str,
        body: &[u8],
        head_only: bool,
        connection: Connection,
        extra: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        write_response(
            &mut out,
            status,
            content_type,
            body,
            head_only,
            connection,
            extra,
        );
        out
    }

    #[test]
    fn ok_keep_alive_11() {
        let out = response(
            Status::Ok,
            "application/json",
            b"{}",
            false,
            Connection::KeepAlive11,
            &[],
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
              Content-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn method_not_allowed_close_with_extra() {
        let out = response(
            Status::MethodNotAllowed,
            "text/plain",
            b"method not allowed\n",
            false,
            Connection::Close,
            &[("Allow", "GET, HEAD")],
        );
        assert_eq!(
            out,
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\n\
              Content-Length: 19\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\n\
              method not allowed\n"
        );
    }

    #[test]
    fn keep_alive_10_and_appends() {
        let mut out = b"previous".to_vec();
        write_response(
            &mut out,
            Status::NotFound,
            "",
            b"",
            false,
            Connection::KeepAlive10,
            &[],
        );
        assert_eq!(
            out,
            b"previousHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\
              Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn head_has_content_length_but_no_body() {
        let body = vec![b'x'; 12345];
        let out = response(
            Status::Ok,
            "text/html; charset=utf-8",
            &body,
            true,
            Connection::KeepAlive11,
            &[],
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
              Content-Length: 12345\r\n\r\n"
        );
    }

    #[test]
    fn switching_protocols() {
        let mut out = Vec::new();
        write_switching_protocols(&mut out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", None);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn status_lines_match_codes_and_reasons() {
        assert_eq!(Status::ALL.len(), 11);
        for &s in Status::ALL {
            let line = format!("HTTP/1.1 {} {}\r\n", s.code(), s.reason_phrase());
            assert_eq!(s.status_line(), line.as_bytes());
        }
        assert_eq!(
            Status::HeadTooLarge.status_line(),
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        );
        assert_eq!(Status::SwitchingProtocols.code(), 101);
    }

    #[test]
    fn error_bodies_are_what_they_were() {
        // The bodies the event loop's `format_reason` wrote: pinned, since
        // clients and tests may compare them.
        let want = [
            (Status::Ok, ""),
            (Status::SwitchingProtocols, ""),
            (Status::BadRequest, "Bad Request\n"),
            (Status::Forbidden, "Forbidden\n"),
            (Status::NotFound, "Not Found\n"),
            (Status::MethodNotAllowed, "Method Not Allowed\n"),
            (Status::UriTooLong, "URI Too Long\n"),
            (
                Status::UpgradeRequired,
                "Upgrade Required: this endpoint speaks WebSocket (version 13)\n",
            ),
            (Status::HeadTooLarge, "Request Header Fields Too Large\n"),
            (Status::TooManyRequests, "Too Many Requests\n"),
            (Status::ServiceUnavailable, "Service Unavailable\n"),
        ];
        assert_eq!(want.len(), Status::ALL.len());
        for (status, body) in want {
            assert_eq!(status.error_body(), body, "{status:?}");
        }
    }

    #[test]
    fn error_answers() {
        let error = |status, connection| {
            let mut out = Vec::new();
            write_error(&mut out, status, connection);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            error(Status::NotFound, Connection::KeepAlive11),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 10\r\n\r\nNot Found\n"
        );
        assert_eq!(
            error(Status::BadRequest, Connection::Close),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n"
        );
        assert_eq!(
            error(Status::MethodNotAllowed, Connection::KeepAlive10),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 19\r\nConnection: keep-alive\r\nAllow: GET, HEAD\r\n\r\n\
             Method Not Allowed\n"
        );
        assert_eq!(
            error(Status::UpgradeRequired, Connection::KeepAlive11),
            "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 62\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\n\
             Upgrade Required: this endpoint speaks WebSocket (version 13)\n"
        );
    }

    #[test]
    fn upgrade_required_has_one_connection_line_naming_upgrade() {
        for (connection, value) in [
            (Connection::KeepAlive11, "Upgrade"),
            (Connection::KeepAlive10, "keep-alive, Upgrade"),
            (Connection::Close, "close, Upgrade"),
        ] {
            let mut out = Vec::new();
            write_error(&mut out, Status::UpgradeRequired, connection);
            let text = String::from_utf8(out).unwrap();
            let head = text.split("\r\n\r\n").next().unwrap();
            let lines: Vec<&str> = head
                .lines()
                .filter(|l| l.to_ascii_lowercase().starts_with("connection:"))
                .collect();
            assert_eq!(lines, [format!("Connection: {value}")], "{connection:?}");
            assert!(head.lines().any(|l| l == "Upgrade: websocket"), "{head}");
            assert!(
                head.lines().any(|l| l == "Sec-WebSocket-Version: 13"),
                "{head}"
            );
        }
        // No other error answer names Upgrade.
        for &status in Status::ALL {
            if status != Status::UpgradeRequired {
                let mut out = Vec::new();
                write_error(&mut out, status, Connection::KeepAlive11);
                assert!(!String::from_utf8(out).unwrap().contains("Upgrade"));
            }
        }
    }

    #[test]
    fn decimal() {
        let mut buf = [0u8; 20];
        for n in [0u64, 7, 10, 99, 100, 12345, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(format_decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn healthz_matches_write_response() {
        for head_only in [false, true] {
            for c in [
                Connection::KeepAlive11,
                Connection::KeepAlive10,
                Connection::Close,
            ] {
                let expected = response(Status::Ok, "text/plain", b"ok\n", head_only, c, &[]);
                assert_eq!(healthz_response(head_only, c), &expected[..]);
            }
        }
        assert_eq!(
            HEALTHZ_KEEP_ALIVE_11,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
        );
    }

    #[test]
    fn errors_map_to_statuses() {
        assert_eq!(Status::from(HttpError::BadRequest), Status::BadRequest);
        assert_eq!(Status::from(HttpError::UriTooLong), Status::UriTooLong);
        assert_eq!(Status::from(HttpError::HeadTooLarge), Status::HeadTooLarge);
        assert_eq!(HttpError::HeadTooLarge.status(), Status::HeadTooLarge);
    }

    #[test]
    fn connection_for_request() {
        let parse = |b: &'static [u8]| match crate::http::parse_request(b, 8192) {
            Ok(Some(r)) => Connection::for_request(&r),
            other => panic!("{other:?}"),
        };
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Connection::KeepAlive11);
        assert_eq!(
            parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            Connection::KeepAlive10
        );
        assert_eq!(parse(b"GET / HTTP/1.0\r\n\r\n"), Connection::Close);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
            Connection::Close
        );
    }
}
