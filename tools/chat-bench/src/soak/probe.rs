//! The server's own account, read over plain HTTP: `/stats` and the
//! `chat_open_connections` gauge of `/metrics`.
//!
//! One short blocking request per reading (`Connection: close`), bounded by
//! socket timeouts. The gauge counts every open TCP connection, the asking
//! one included, and a reading is taken the same way at the start and at
//! the end, so the two compare as they are. The connection of the previous
//! reading may still be closing in the server for a moment: the end checks
//! poll until the figures settle rather than trust one reading.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Deserialize;

/// A response larger than this is not the server's /metrics.
const MAX_RESPONSE: usize = 1 << 20;
/// Each of connect, write and every read.
const TIMEOUT: Duration = Duration::from_secs(2);

/// `/stats`.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stats {
    pub online: u64,
    pub waiting: u64,
    pub chatting: u64,
}

impl Stats {
    pub fn is_empty(&self) -> bool {
        *self
            == Stats {
                online: 0,
                waiting: 0,
                chatting: 0,
            }
    }
}

/// GET `path`; the body of a 200 response.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{path}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("{path}: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{path}: {e}"))?;
    let mut resp = Vec::new();
    (&mut s)
        .take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut resp)
        .map_err(|e| format!("{path}: {e}"))?;
    if resp.len() > MAX_RESPONSE {
        return Err(format!("{path}: response over {MAX_RESPONSE} bytes"));
    }
    body_of(&resp).map_err(|e| format!("{path}: {e}"))
}

/// The body of a complete `200` response (Content-Length, or to EOF).
fn body_of(resp: &[u8]) -> Result<Vec<u8>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let head = match r.parse(resp) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("response cut short".into()),
        Err(e) => return Err(format!("bad response: {e}")),
    };
    if r.code != Some(200) {
        return Err(format!("status {}", r.code.unwrap_or(0)));
    }
    let body = resp.get(head..).unwrap_or_default();
    let length = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    match length {
        Some(n) => body
            .get(..n)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| format!("body of {} bytes, {n} announced", body.len())),
        None => Ok(body.to_vec()),
    }
}

pub fn stats(addr: SocketAddr, host: &str) -> Result<Stats, String> {
    let body = get(addr, host, "/stats")?;
    serde_json::from_slice(&body).map_err(|e| format!("/stats: {e}"))
}

/// One unlabelled sample of the Prometheus text format.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}

/// `chat_open_connections` (this reading's own connection included).
pub fn open_connections(addr: SocketAddr, host: &str) -> Result<u64, String> {
    let body = get(addr, host, "/metrics")?;
    let text = String::from_utf8_lossy(&body);
    metric(&text, "chat_open_connections")
        .ok_or_else(|| "/metrics: no chat_open_connections sample".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `response` to one request on a loopback port.
    fn serve_once(response: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap() == 1 {
                head.push(b[0]);
            }
            assert!(head.starts_with(b"GET /"), "{head:?}");
            s.write_all(response.as_bytes()).unwrap();
        });
        addr
    }

    #[test]
    fn stats_and_the_open_connections_gauge_are_read() {
        let addr = serve_once(
            "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"online\":3,\"waiting\":1,\"chatting\":2}   ",
        );
        let s = stats(addr, "x").unwrap();
        assert_eq!((s.online, s.waiting, s.chatting), (3, 1, 2));
        assert!(!s.is_empty());
        let metrics = "HTTP/1.1 200 OK\r\n\r\n# HELP chat_open_connections_x x\n\
                       chat_open_connections_x 9\nchat_open_connections 17\n";
        assert_eq!(open_connections(serve_once(metrics), "x"), Ok(17));
    }

    #[test]
    fn faults_are_errors_not_figures() {
        let e = stats(serve_once("HTTP/1.1 404 Not Found\r\n\r\n"), "x");
        assert_eq!(e, Err("/stats: status 404".into()));
        let cut = "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}";
        assert!(stats(serve_once(cut), "x")
            .unwrap_err()
            .contains("announced"));
        let none = "HTTP/1.1 200 OK\r\n\r\nchat_online 1\n";
        assert!(open_connections(serve_once(none), "x").is_err());
        assert_eq!(metric("a 1\nb x\n", "b"), None);
    }
}
