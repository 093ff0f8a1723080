//! The admin door (PROTOCOL.md "The admin door"): a listening socket of
//! its own (`--admin-listen`), bearer-token requests, JSON in and out.
//!
//! It runs on a thread of its own with blocking sockets, one request per
//! connection (`Connection: close`), one connection at a time: admin
//! traffic is rare, and this keeps it out of the event loop entirely. Each
//! connection has 5 s to send its request and to take the answer; heads
//! are at most 8 KiB and bodies at most 16 KiB (413 over it), so a stuck
//! or hostile admin client holds the door for at most 10 s and costs at
//! most 24 KiB. Changes reach the event loops through the shared
//! [`SafetyHandle`] (a ban wakes them: `safety` module documentation).
//!
//! Decisions where PROTOCOL.md is silent:
//! * Every request is authenticated first: without the right token any
//!   path answers 401 (with `WWW-Authenticate: Bearer`), so the door does
//!   not say which paths exist.
//! * Errors are `{"error":"…"}`; a known path with another method is 405.
//! * `minutes` defaults to 60 and `reason` to empty when left out.

pub mod client;
mod routes;

use crate::safety::SafetyHandle;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

pub use routes::{handle, Answer};

/// Largest request head.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest request body (PROTOCOL.md).
pub const MAX_BODY: usize = 16 * 1024;
/// How long a connection may take to send its request or take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads an admin token (or any secret) file: whole, trimmed, not empty,
/// and readable by its owner only. `Err` is a message for the operator.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "token file {} is readable by others than its owner (mode {mode:03o}); run: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("token file {} is empty", path.display()));
    }
    Ok(token.to_string())
}

/// Binds the admin door and serves it on a thread of its own; returns
/// the address bound (port 0 picks one).
pub fn spawn(addr: SocketAddr, token: String, safety: SafetyHandle) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("admin".to_string())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(e) = serve(stream, &token, &safety) {
                            log::debug!("admin connection: {e}");
                        }
                    }
                    Err(e) => {
                        log::warn!("admin accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(local)
}

fn serve(mut stream: TcpStream, token: &str, safety: &SafetyHandle) -> io::Result<()> {
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let peer = stream.peer_addr().ok();
    let deadline = Instant::now() + IO_TIMEOUT;
    let answer = match read_request(&mut stream, deadline)? {
        Ok((head, body)) => {
            let now_ms = crate::sys::unix_now_s().saturating_mul(1000);
            routes::answer(&head, &body, token, safety, now_ms)
        }
        Err(answer) => answer,
    };
    log::info!("admin {peer:?}: {}", answer.status);
    stream.write_all(&answer.to_bytes())?;
    stream.flush()
}

/// The head and body of one request, or the error answer for it.
/// A request's head and body, or the answer refusing it.
type Request = Result<(Vec<u8>, Vec<u8>), Answer>;

/// Reads until the request is whole or `deadline` passes (the whole
/// request, not each read: a client dribbling bytes cannot hold the door).
fn read_request(stream: &mut TcpStream, deadline: Instant) -> io::Result<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Ok(Err(Answer::error(431, "request head over 8 KiB")));
        }
        let n = read_by(stream, &mut chunk, deadline)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let length = match routes::content_length(buf.get(..head_len).unwrap_or_default()) {
        Ok(n) => n,
        Err(answer) => return Ok(Err(answer)),
    };
    if length > MAX_BODY {
        return Ok(Err(Answer::error(413, "request body over 16 KiB")));
    }
    while buf.len() < head_len + length {
        let n = read_by(stream, &mut chunk, deadline)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let body = buf
        .get(head_len..head_len + length)
        .unwrap_or_default()
        .to_vec();
    buf.truncate(head_len);
    Ok(Ok((buf, body)))
}

fn read_by(stream: &mut TcpStream, chunk: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left))?;
    stream.read(chunk)
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}
