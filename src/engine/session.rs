//! One connection's state: small, because there are many.
//!
//! A connection is in exactly one [`Phase`]; each phase carries the data
//! only it needs (the HTTP phase has no frame decoder, a draining
//! connection has no reassembly buffer), and the phase changes only through
//! the named transitions below.

use super::output::SendBuffer;
use super::pool::BufferPool;
use super::routes::Endpoint;
use crate::ws::{Decoder, Role};
use std::num::NonZeroU32;

/// Where a connection is in its life.
#[derive(Debug)]
pub(super) enum Phase {
    /// Reading request heads: a WebSocket handshake, or keep-alive HTTP.
    Http {
        /// When the current request began (the connect, or the end of the
        /// previous request): it must be complete within the handshake
        /// timeout of this, however the bytes dribble in.
        request_since_ms: u64,
        /// Further pipelined requests wait while the answers owed are over
        /// the pipelining threshold; reading resumes once they drain.
        paused: bool,
    },
    /// An open WebSocket session.
    Open {
        endpoint: Endpoint,
        /// permessage-deflate was negotiated: the window (bits) our
        /// compressed messages may use. One byte: the codec is the loop's.
        deflate: Option<u8>,
        ws: WsState,
        /// When bytes last arrived (the idle timer counts from here).
        last_heard_ms: u64,
    },
    /// We sent a close frame (idle timeout, shutdown) and read on only to
    /// find the peer's.
    Closing { ws: WsState, since_ms: u64 },
    /// Nothing more to say or hear: the output owed is flushed, our side is
    /// shut down, whatever else arrives is discarded without decoding, and
    /// the socket is closed on the peer's end of stream or after the close
    /// wait.
    Draining {
        since_ms: u64,
        /// Our FIN is out.
        write_shut: bool,
        /// The peer's FIN came: close as soon as the output is out.
        peer_closed: bool,
    },
}

/// The WebSocket decoder and the message it is reassembling.
#[derive(Debug)]
pub(super) struct WsState {
    pub(super) decoder: Decoder,
    /// Fragments of a message in progress; empty (no allocation) otherwise.
    pub(super) message: Vec<u8>,
}

impl WsState {
    fn new(max_message_size: usize) -> WsState {
        WsState {
            decoder: Decoder::new(Role::Server, max_message_size),
            message: Vec::new(),
        }
    }

    /// A placeholder left in the session while the real state is lent out.
    pub(super) fn placeholder() -> WsState {
        WsState::new(0)
    }

    /// Gives the reassembly buffer back unless a message is in progress,
    /// and shrinks it when it holds far less than its capacity.
    pub(super) fn tidy(&mut self, pool: &mut BufferPool) {
        if !self.decoder.in_message() {
            self.message.clear();
            pool.release(&mut self.message);
        } else if self.message.capacity() > self.message.len().saturating_mul(4) + 4096 {
            self.message.shrink_to(self.message.len().saturating_mul(2));
        }
    }

    pub(super) fn release(mut self, pool: &mut BufferPool) {
        self.message.clear();
        pool.release(&mut self.message);
    }
}

#[derive(Debug)]
pub(super) struct Session {
    phase: Phase,
    /// Bytes of an unfinished request head or frame header kept across
    /// reads: a leftover of n bytes costs n bytes (and a Vec header behind
    /// one pointer, so an empty one costs 8 bytes here), never a pooled
    /// buffer.
    // A thin pointer on purpose: the Vec header lives on the heap only
    // while there is a leftover.
    #[allow(clippy::box_collection)]
    leftover: Option<Box<Vec<u8>>>,
    /// Bytes owed to the socket.
    pub(super) out: SendBuffer,
    /// The wheel tick of this connection's live timer entry, if any.
    pub(super) timer: Option<NonZeroU32>,
    /// Queued for a flush.
    pub(super) dirty: bool,
    /// The driver was asked for WRITABLE readiness (output is stuck).
    pub(super) wants_writable: bool,
}

impl Session {
    pub(super) fn new(now_ms: u64) -> Session {
        Session {
            phase: Phase::Http {
                request_since_ms: now_ms,
                paused: false,
            },
            leftover: None,
            out: SendBuffer::default(),
            timer: None,
            dirty: false,
            wants_writable: false,
        }
    }

    pub(super) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The chat session on `/`, while it is open.
    pub(super) fn is_chatting(&self) -> bool {
        matches!(
            self.phase,
            Phase::Open {
                endpoint: Endpoint::Chat,
                ..
            }
        )
    }

    /// False while input must wait (pipelined requests paused behind
    /// unsent answers).
    pub(super) fn wants_input(&self) -> bool {
        !matches!(self.phase, Phase::Http { paused: true, .. })
    }

    // ---- leftovers ---------------------------------------------------

    pub(super) fn take_leftover(&mut self) -> Vec<u8> {
        self.leftover.take().map(|b| *b).unwrap_or_default()
    }

    /// Keeps `rest` (exactly its size) for the next read.
    pub(super) fn keep_leftover(&mut self, rest: &[u8]) {
        self.leftover = Some(Box::new(rest.to_vec()));
    }

    #[cfg(test)]
    pub(super) fn leftover_len(&self) -> usize {
        self.leftover.as_ref().map_or(0, |b| b.len())
    }

    // ---- transitions -------------------------------------------------

    /// Http: a request was answered; the next one's clock starts now.
    pub(super) fn next_request(&mut self, now_ms: u64) {
        if let Phase::Http {
            request_since_ms, ..
        } = &mut self.phase
        {
            *request_since_ms = now_ms;
        }
    }

    /// Http: stop (true) or resume (false) taking pipelined requests.
    pub(super) fn set_paused(&mut self, pause: bool) {
        if let Phase::Http { paused, .. } = &mut self.phase {
            *paused = pause;
        }
    }

    /// Http → Open: the handshake was answered with 101 (with
    /// permessage-deflate when `deflate` is Some: our window, in bits).
    pub(super) fn open(
        &mut self,
        endpoint: Endpoint,
        max_message_size: usize,
        deflate: Option<u8>,
        now_ms: u64,
    ) {
        let mut ws = WsState::new(max_message_size);
        if deflate.is_some() {
            ws.decoder.allow_compressed();
        }
        self.phase = Phase::Open {
            endpoint,
            deflate,
            ws,
            last_heard_ms: now_ms,
        };
    }

    /// The window our compressed messages may use, if this session
    /// negotiated permessage-deflate and is open.
    pub(super) fn deflate(&self) -> Option<u8> {
        match self.phase {
            Phase::Open { deflate, .. } => deflate,
            _ => None,
        }
    }

    /// Open: bytes arrived.
    pub(super) fn heard(&mut self, now_ms: u64) {
        if let Phase::Open { last_heard_ms, .. } = &mut self.phase {
            *last_heard_ms = now_ms;
        }
    }

    /// Open → Closing: we sent our close frame and wait for the peer's.
    pub(super) fn start_closing(&mut self, now_ms: u64, pool: &mut BufferPool) {
        let phase = std::mem::replace(&mut self.phase, Self::draining(now_ms));
        self.phase = match phase {
            Phase::Open { ws, .. } => Phase::Closing {
                ws,
                since_ms: now_ms,
            },
            other => {
                Self::release_phase(other, pool);
                Self::draining(now_ms)
            }
        };
    }

    /// Any phase → Draining (answers out, then FIN, then wait for the
    /// peer's FIN). The decoder and any reassembly buffer are dropped.
    pub(super) fn start_draining(&mut self, now_ms: u64, pool: &mut BufferPool) {
        let peer_closed = matches!(
            self.phase,
            Phase::Draining {
                peer_closed: true,
                ..
            }
        );
        let write_shut = matches!(
            self.phase,
            Phase::Draining {
                write_shut: true,
                ..
            }
        );
        let old = std::mem::replace(
            &mut self.phase,
            Phase::Draining {
                since_ms: now_ms,
                write_shut,
                peer_closed,
            },
        );
        Self::release_phase(old, pool);
        self.leftover = None;
    }

    /// Draining: the peer's FIN came.
    pub(super) fn peer_closed(&mut self) {
        if let Phase::Draining { peer_closed, .. } = &mut self.phase {
            *peer_closed = true;
        }
    }

    /// Draining: our FIN is to be sent now (once only: false if it was).
    pub(super) fn shut_write(&mut self) -> bool {
        match &mut self.phase {
            Phase::Draining { write_shut, .. } if !*write_shut => {
                *write_shut = true;
                true
            }
            _ => false,
        }
    }

    /// Lends the WebSocket state out (Open, Closing), leaving a placeholder.
    pub(super) fn take_ws(&mut self) -> Option<WsState> {
        match &mut self.phase {
            Phase::Open { ws, .. } | Phase::Closing { ws, .. } => {
                Some(std::mem::replace(ws, WsState::placeholder()))
            }
            _ => None,
        }
    }

    /// Takes lent WebSocket state back; dropped if the phase moved on.
    pub(super) fn return_ws(&mut self, mut lent: WsState, pool: &mut BufferPool) {
        match &mut self.phase {
            Phase::Open { ws, .. } | Phase::Closing { ws, .. } => {
                lent.tidy(pool);
                *ws = lent;
            }
            _ => lent.release(pool),
        }
    }

    /// Gives every buffer back (the connection is going away).
    pub(super) fn release(mut self, pool: &mut BufferPool) {
        self.out.clear(pool);
        Self::release_phase(self.phase, pool);
    }

    fn release_phase(phase: Phase, pool: &mut BufferPool) {
        if let Phase::Open { ws, .. } | Phase::Closing { ws, .. } = phase {
            ws.release(pool);
        }
    }

    fn draining(now_ms: u64) -> Phase {
        Phase::Draining {
            since_ms: now_ms,
            write_shut: false,
            peer_closed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection costs this much in the engine's slab (the
    /// driver adds an 8-byte socket slot); keep it honest. Before the
    /// engine/driver split the whole `Connection`, socket included, was
    /// 144 bytes; now it is 120 + 8.
    #[test]
    fn session_stays_small() {
        let size = std::mem::size_of::<Session>();
        println!("size_of::<Session>() = {size}");
        assert!(size <= 120, "Session grew to {size} bytes");
    }

    #[test]
    fn leftovers_cost_what_they_hold() {
        let mut s = Session::new(0);
        s.keep_leftover(&[1]);
        assert_eq!(s.leftover_len(), 1);
        let taken = s.take_leftover();
        assert_eq!(&*taken, &[1]);
        assert_eq!(s.leftover_len(), 0);
    }
}
