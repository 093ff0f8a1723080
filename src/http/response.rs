//! Response writing. Every response carries `Content-Length`.

/// HTTP statuses the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 200,
    SwitchingProtocols = 101,
    BadRequest = 400,
    Forbidden = 403,
    NotFound = 404,
    MethodNotAllowed = 405,
    UriTooLong = 414,
    UpgradeRequired = 426,
    HeadTooLarge = 431,
    ServiceUnavailable = 503,
}

/// How the connection continues after this response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1 default: no header needed.
    KeepAlive11,
    /// HTTP/1.0 with keep-alive: `Connection: keep-alive` is sent.
    KeepAlive10,
    /// `Connection: close` is sent; the server closes after writing.
    Close,
}

/// Appends a complete response. `head_only` (HEAD requests) sends the
/// headers, including the body's `Content-Length`, but not the body.
/// `extra_headers` are written as `Name: value\r\n` each.
pub fn write_response(
    out: &mut Vec<u8>,
    status: Status,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    connection: Connection,
    extra_headers: &[(&str, &str)],
) {
    let _ = (
        out,
        status,
        content_type,
        body,
        head_only,
        connection,
        extra_headers,
    );
}

/// Appends the 101 response completing a WebSocket handshake.
pub fn write_switching_protocols(out: &mut Vec<u8>, accept_key: &str) {
    let _ = (out, accept_key);
}
