//! Per-connection state: small, because there are many.

use crate::ws::{Decoder, Role};
use mio::net::TcpStream;

/// Where a connection is in its life.
///
/// `Http` covers both a WebSocket handshake in progress and plain keep-alive
/// HTTP: the request decides. The 101 answer is queued in `out` and the
/// connection moves straight to its WebSocket state, so frames a client
/// sends right behind its handshake are not lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for (the rest of) a request head.
    Http,
    /// WebSocket on `/echo`.
    Echo,
    /// WebSocket on `/`, a chat-roulette session.
    Chat,
    /// We sent a close frame first; waiting for the peer's close frame.
    AwaitingClose,
    /// Nothing more to say: flush `out`, shut down our side, discard input
    /// until the peer closes or the close timeout passes.
    Draining,
}

#[derive(Debug)]
pub struct Connection {
    pub socket: TcpStream,
    pub state: State,
    pub decoder: Decoder,
    /// Bytes of an unfinished request head or frame header, kept across reads.
    pub partial: Vec<u8>,
    /// A WebSocket message being reassembled (fragmented or split).
    pub message: Vec<u8>,
    /// Bytes owed to the socket.
    pub out: Vec<u8>,
    /// `Http`: when the current request began; WebSocket: when bytes last
    /// arrived; closing states: when closing began.
    pub mark_ms: u64,
    /// The wheel tick this connection's live timer entry is for (0: none).
    pub timer_tick: u32,
    /// Queued for a flush at the end of this loop turn.
    pub dirty: bool,
    /// Registered for WRITABLE (only while `out` could not be drained).
    pub wants_writable: bool,
    /// Joined the chat: `Pairing::on_disconnect` is owed when it goes.
    pub in_chat: bool,
    /// Our write side is shut down.
    pub write_shut: bool,
}

impl Connection {
    pub fn new(socket: TcpStream, now_ms: u64) -> Connection {
        Connection {
            socket,
            state: State::Http,
            decoder: Decoder::new(Role::Server, 0),
            partial: Vec::new(),
            message: Vec::new(),
            out: Vec::new(),
            mark_ms: now_ms,
            timer_tick: 0,
            dirty: false,
            wants_writable: false,
            in_chat: false,
            write_shut: false,
        }
    }

    pub fn is_websocket(&self) -> bool {
        matches!(self.state, State::Echo | State::Chat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection costs this much in the slab; keep it honest.
    #[test]
    fn connection_stays_small() {
        let size = std::mem::size_of::<Connection>();
        println!("size_of::<Connection>() = {size}");
        assert!(size <= 160, "Connection grew to {size} bytes");
    }
}
