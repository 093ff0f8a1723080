//! One client connection of the loop, the set of them that handlers write
//! to, and the handler interface the modes implement.

use std::io::{self, Write};

use chat::ws::{encode, Message, OpCode};

use crate::rng::Rng;
use crate::target::Target;
use crate::tls::Stream;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    NotStarted,
    Connecting,
    Handshake,
    Open,
    /// We sent a close frame and wait for the server's close or EOF.
    Closing,
    Done,
}

/// Why a connection ended.
pub enum Fail {
    Connect(io::Error),
    Io(io::Error),
    Eof,
    Handshake(String),
    Protocol(u16, &'static str),
    ServerClose(Option<u16>),
}

pub struct Conn {
    pub stream: Option<Stream>,
    pub phase: Phase,
    /// Sec-WebSocket-Key, until the handshake is done.
    pub key: String,
    /// Unprocessed input tail (an incomplete frame header or response head).
    pub partial: Vec<u8>,
    pub out: Vec<u8>,
    pub out_pos: usize,
    pub mask: [u8; 4],
    pub dirty: bool,
}

impl Conn {
    /// Writes pending output until done or the socket would block.
    pub fn write_out(&mut self) -> Result<(), Fail> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        while self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(Fail::Eof),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fail::Io(e)),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::new();
        }
        Ok(())
    }
}

/// The connections and their pending output: what handlers may write to.
pub struct Conns {
    pub list: Vec<Conn>,
    pub dirty: Vec<usize>,
    /// Kernel receive time (CLOCK_REALTIME ns) of the bytes whose messages
    /// are being handled, when `Net::rx_timestamps` is on; else 0.
    pub rx_stamp: u64,
}

impl Conns {
    /// The output buffer of `idx`, marked for flushing at the end of the turn.
    pub fn out(&mut self, idx: usize) -> &mut Vec<u8> {
        let c = &mut self.list[idx];
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(idx);
        }
        &mut c.out
    }

    pub fn send(&mut self, idx: usize, op: OpCode, payload: &[u8]) {
        let mask = self.list[idx].mask;
        encode::write_masked_frame(self.out(idx), op, payload, mask);
    }

    /// Writes what `idx` owes right now instead of at the end of the turn,
    /// so a timestamp taken just before is the time the bytes left. Whatever
    /// cannot go now (would block, or a fault) stays for the turn's flush,
    /// which also reports faults.
    pub fn write_now(&mut self, idx: usize) {
        let c = &mut self.list[idx];
        if c.phase == Phase::Open {
            let _ = c.write_out();
        }
    }

    pub fn mask(&self, idx: usize) -> [u8; 4] {
        self.list[idx].mask
    }

    pub fn is_open(&self, idx: usize) -> bool {
        self.list[idx].phase == Phase::Open
    }
}

/// What a benchmark does with its connections.
pub trait Handler {
    /// The handshake completed.
    fn opened(&mut self, _conns: &mut Conns, _idx: usize, _now: u64) {}
    /// A data message or a pong (pings are answered by the loop).
    fn message(&mut self, _conns: &mut Conns, _idx: usize, _msg: &Message<'_>, _now: u64) {}
    /// The connection failed or the server closed it (not counted while we close).
    fn lost(&mut self, _idx: usize, _now: u64) {}
    /// The earliest timer deadline, if any.
    fn next_timer(&self) -> Option<u64> {
        None
    }
    fn fire_timers(&mut self, _conns: &mut Conns, _now: u64) {}
}

/// A fresh Sec-WebSocket-Key: 16 random bytes in base64.
pub fn new_key(rng: &mut Rng) -> String {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&rng.next().to_ne_bytes());
    key[8..].copy_from_slice(&rng.next().to_ne_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)
}

/// The upgrade request for `target` with Sec-WebSocket-Key `key`.
pub fn handshake_request(target: &Target, key: &str) -> String {
    let extensions = target.extensions.map_or(String::new(), |e| {
        format!("Sec-WebSocket-Extensions: {e}\r\n")
    });
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n",
        target.path, target.host, key
    )
}

/// Parses the server's handshake response: `Some(head length)` once complete.
pub fn parse_handshake(data: &[u8], key: &str) -> Result<Option<usize>, Fail> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(data) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(n)) => n,
        Err(e) => return Err(Fail::Handshake(format!("bad response: {e}"))),
    };
    if resp.code != Some(101) {
        return Err(Fail::Handshake(format!(
            "status {} instead of 101",
            resp.code.unwrap_or(0)
        )));
    }
    let accept = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .ok_or_else(|| Fail::Handshake("no Sec-WebSocket-Accept".into()))?;
    let expected = chat::ws::handshake::accept_key(key.as_bytes());
    if accept.value.trim_ascii() != expected.as_bytes() {
        return Err(Fail::Handshake("wrong Sec-WebSocket-Accept".into()));
    }
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_response() {
        // RFC 6455 section 1.3's example key and accept value.
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81";
        assert!(matches!(parse_handshake(ok, key), Ok(Some(n)) if n == ok.len() - 1));
        assert!(matches!(parse_handshake(&ok[..40], key), Ok(None)));
        let wrong = b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        assert!(matches!(
            parse_handshake(wrong, key),
            Err(Fail::Handshake(_))
        ));
        let refused = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            parse_handshake(refused, key),
            Err(Fail::Handshake(_))
        ));
    }
}
