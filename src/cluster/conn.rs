//! One non-blocking connection to Redis and its buffers (the cluster
//! thread has two: commands and the subscription).

use super::resp::{self, Value};
use mio::net::TcpStream;
use std::io::{self, ErrorKind, Read, Write};

/// Unsent bytes past which records for other nodes are dropped rather
/// than queued (Redis does not keep up); at twice this (script calls and
/// control messages, bounded by the matchmaker's command queue, go on
/// being queued) the connection is dropped. Nothing is buffered without
/// bound, and every call is answered within 1 s or the connection goes.
pub(super) const MAX_UNSENT: usize = 8 * 1024 * 1024;
/// Unparsed reply bytes a connection may hold (a reply is bounded by
/// `resp::MAX_BULK`, and at most [`READ_BUDGET`] is read before parsing).
pub(super) const MAX_UNREAD: usize = resp::MAX_BULK + READ_BUDGET + 64 * 1024;
/// Bytes read from a connection before what they hold is handled.
pub(super) const READ_BUDGET: usize = 1024 * 1024;

/// A non-blocking connection to Redis with its buffers.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) unsent: Vec<u8>,
    unread: Vec<u8>,
    /// How much of `unread` is parsed (dropped at the next read).
    parsed: usize,
}

impl Conn {
    /// Writes what it can; Err: the connection is lost.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        while !self.unsent.is_empty() {
            match self.stream.write(&self.unsent) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads up to [`READ_BUDGET`] more bytes: Ok(true) when the socket
    /// is drained (WouldBlock), Ok(false) when the budget ran out first
    /// (parse, then read again); Err: lost, closed, or one reply over
    /// [`MAX_UNREAD`].
    pub(super) fn fill(&mut self) -> io::Result<bool> {
        if self.parsed > 0 {
            self.unread.drain(..self.parsed.min(self.unread.len()));
            self.parsed = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let mut read = 0;
        while read < READ_BUDGET {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    read += n;
                    self.unread
                        .extend_from_slice(chunk.get(..n).unwrap_or_default());
                    if self.unread.len() > MAX_UNREAD {
                        return Err(ErrorKind::InvalidData.into());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// The next complete reply; Err: not RESP.
    pub(super) fn next(&mut self) -> Result<Option<Value>, resp::Error> {
        let rest = self.unread.get(self.parsed..).unwrap_or_default();
        match resp::decode(rest)? {
            Some((v, used)) => {
                self.parsed += used;
                Ok(Some(v))
            }
            None => Ok(None),
        }
    }

    pub(super) fn send(&mut self, args: &[&[u8]]) {
        resp::encode(&mut self.unsent, args);
    }
}

impl Conn {
    /// A connection over a socket that is connecting.
    pub(super) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            unsent: Vec::new(),
            unread: Vec::new(),
            parsed: 0,
        }
    }
}
