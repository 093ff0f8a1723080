//! TLS between a connection's socket and the engine's bytes: records in,
//! plaintext to the engine; the engine's output in, records out.
//!
//! rustls's unbuffered API: the loop owns the buffers, so an idle
//! connection holds no record buffer at all (the buffered
//! `ServerConnection` keeps a 4 KiB one between reads, about half of an
//! idle wss connection's cost). Records are read into the loop's one input
//! buffer and encrypted into its one output buffer; a connection keeps
//! bytes of its own only while they are in flight: a partial record, the
//! plaintext a paused engine did not take, the records a full socket did
//! not take. Each of those is freed as soon as it is empty.
//!
//! The rules that keep an edge-triggered loop from losing anything:
//! - records are read until WouldBlock (or the read budget, then the
//!   connection is queued to read again);
//! - plaintext the engine did not take (it paused) stays in `plain`, and
//!   the engine's `Resume` brings the loop back here, which hands it over
//!   before reading the socket again; the peer's end (close_notify, or a
//!   bare FIN) is told to the engine only after the plaintext before it;
//! - plaintext is encrypted only once earlier records are out, so what a
//!   connection holds is bounded, and the engine hears "flushed" only when
//!   the bytes really left: its draining and closing steps never cut
//!   records still waiting for the socket;
//! - alerts and close_notify are written before the socket is shut or
//!   closed (best effort: a full socket at close loses them, as it would
//!   lose any last bytes).

use super::{Server, Slot};
use crate::server::tls::{HandshakeFailure, TlsMetrics};
use log::debug;
use mio::net::TcpStream;
use mio::{Interest, Token};
use pump::{close_notify, drain_outgoing, pump, AppWrite, Pumped};
use rustls::server::UnbufferedServerConnection;
use std::io::{ErrorKind, Read};
use std::net::Shutdown;
use std::sync::Arc;

mod pump;

/// Socket reads per TLS connection per turn (each up to `TLS_READ`).
const TLS_READS_PER_TURN: usize = 16;
/// Bytes read from a TLS socket at once.
const TLS_READ: usize = 64 * 1024;
/// The most a connection may keep between reads once established: one
/// partial record (a TLS record is at most 18,437 bytes on the wire).
const MAX_LEFTOVER: usize = 18 * 1024 + 64;
/// ... and while handshaking: a ClientHello rustls is joining across
/// records, up to 32 KiB (real ones are a few KiB, post-quantum key shares
/// included), plus a partial record. rustls itself would join up to 64 KiB;
/// the lower cap bounds what a connection that never finishes its
/// handshake can hold until the handshake timeout.
const MAX_LEFTOVER_HANDSHAKE: usize = 32 * 1024 + MAX_LEFTOVER;

/// The loop's TLS buffers, shared by all its connections.
pub(super) struct Buffers {
    /// Leftover ciphertext, then the new read.
    input: Box<[u8]>,
    /// Records to write; grows to what rustls asks (bounded by one
    /// `TLS_OUTPUT_LIMIT` of plaintext or one handshake flight).
    output: Vec<u8>,
}

impl Buffers {
    /// None yet: a loop without TLS allocates nothing.
    pub(super) fn none() -> Buffers {
        Buffers {
            input: Box::default(),
            output: Vec::new(),
        }
    }

    pub(super) fn new() -> Buffers {
        Buffers {
            input: vec![0; MAX_LEFTOVER_HANDSHAKE + TLS_READ].into_boxed_slice(),
            output: Vec::new(),
        }
    }
}

/// One connection's TLS state (boxed in the slot: plain connections pay
/// a pointer for it).
pub(super) struct TlsConn {
    conn: UnbufferedServerConnection,
    metrics: Arc<TlsMetrics>,
    /// Ciphertext read but not yet used up: a partial record, or a
    /// handshake message being joined. At most `MAX_LEFTOVER` (established)
    /// or `MAX_LEFTOVER_HANDSHAKE`.
    incoming: Vec<u8>,
    /// Plaintext the engine did not take yet (it paused). Records are not
    /// read while it holds any, so it is at most one read's worth.
    plain: Vec<u8>,
    /// Records the socket did not take (written first, on WRITABLE).
    outgoing: Vec<u8>,
    /// The handshake completed (and was counted).
    established: bool,
    /// rustls failed the connection (its alert went out already).
    failed: bool,
    /// The peer's end: close_notify, or a FIN.
    peer_closed: bool,
    /// Our close_notify is written (or queued in `outgoing`).
    close_notify_sent: bool,
    /// The engine asked for WRITABLE (its output is stuck).
    engine_writable: bool,
    /// WRITABLE is registered (engine_writable || outgoing, as last set).
    registered_writable: bool,
    /// The engine asked for our FIN: sent once the records are out.
    shutdown_pending: bool,
}

impl TlsConn {
    pub(super) fn new(conn: UnbufferedServerConnection, metrics: Arc<TlsMetrics>) -> TlsConn {
        TlsConn {
            conn,
            metrics,
            incoming: Vec::new(),
            plain: Vec::new(),
            outgoing: Vec::new(),
            established: false,
            failed: false,
            peer_closed: false,
            close_notify_sent: false,
            engine_writable: false,
            registered_writable: false,
            shutdown_pending: false,
        }
    }

    fn handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }
}

/// Our close_notify, then the FIN, each once nothing waits before it (the
/// rest happens when the socket takes what waits: `flush_tls`).
fn try_shutdown(tls: &mut TlsConn, socket: &mut TcpStream, output: &mut Vec<u8>) {
    if !tls.outgoing.is_empty() {
        return;
    }
    close_notify(tls, socket, output);
    if tls.outgoing.is_empty() {
        tls.shutdown_pending = false;
        let _ = socket.shutdown(Shutdown::Write);
    }
}

impl Server {
    /// `read_some` for a TLS connection: hands over plaintext the engine
    /// did not take, then reads records, until WouldBlock or the budget.
    pub(super) fn read_some_tls(&mut self, id: usize) {
        for _ in 0..TLS_READS_PER_TURN {
            let now = self.now_ms();
            let Some(Some(slot)) = self.slots.get_mut(id) else {
                return;
            };
            if slot.read_queued {
                return;
            }
            let Some(tls) = self.tls_conns.get_mut(id).and_then(|t| t.as_deref_mut()) else {
                return;
            };
            if !tls.plain.is_empty() {
                if !self.engine.wants_input(id) {
                    // Resume brings us back for the rest.
                    return;
                }
                let space = self.read_buf.space();
                let n = tls.plain.len().min(space.len());
                if let (Some(dst), Some(src)) = (space.get_mut(..n), tls.plain.get(..n)) {
                    dst.copy_from_slice(src);
                }
                if n == tls.plain.len() {
                    tls.plain = Vec::new();
                } else {
                    tls.plain.drain(..n);
                }
                self.engine.receive(id, &mut self.read_buf, n, now);
                self.flush_tls(id);
                continue;
            }
            if !self.engine.wants_input(id) {
                // Paused: it still holds input of its own (pipelined
                // requests), which comes before the peer's end too.
                return;
            }
            if tls.peer_closed {
                if tls.handshaking() && !tls.failed {
                    return self.handshake_gone(id, HandshakeFailure::Eof, now);
                }
                return self.engine.receive_eof(id, now);
            }
            // The leftover, then the new bytes, in the loop's buffer.
            let input = &mut self.tls_buffers.input;
            let kept = tls.incoming.len();
            match input.get_mut(..kept) {
                Some(front) => front.copy_from_slice(&tls.incoming),
                None => return self.tls_failed(id, HandshakeFailure::BadMessage, now),
            }
            let room = input
                .get_mut(kept..)
                .map(|r| r.len().min(TLS_READ))
                .unwrap_or(0);
            let read = match input.get_mut(kept..kept + room) {
                Some(space) => slot.socket.read(space),
                None => Ok(0),
            };
            let filled = match read {
                Ok(0) => {
                    // The FIN: what came before it is handled below.
                    tls.peer_closed = true;
                    kept
                }
                Ok(n) => kept + n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("TLS read from {id}: {e}");
                    if tls.handshaking() {
                        return self.handshake_gone(id, HandshakeFailure::Eof, now);
                    }
                    return self.engine.connection_lost(id, now);
                }
            };
            let Some(data) = input.get_mut(..filled) else {
                return;
            };
            let pumped = pump(
                tls,
                &mut slot.socket,
                data,
                &mut self.tls_buffers.output,
                AppWrite::Nothing,
            );
            let used = match pumped {
                Pumped::Ok { used, .. } => used,
                Pumped::Failed(e) => {
                    debug!("TLS from {id}: {e}");
                    let kind = HandshakeFailure::of(&e);
                    return self.tls_failed(id, kind, now);
                }
            };
            let rest = data.get(used..).unwrap_or_default();
            let cap = if tls.handshaking() {
                MAX_LEFTOVER_HANDSHAKE
            } else {
                MAX_LEFTOVER
            };
            if rest.len() > cap {
                return self.tls_failed(id, HandshakeFailure::BadMessage, now);
            }
            tls.incoming.clear();
            if rest.is_empty() {
                tls.incoming = Vec::new();
            } else {
                tls.incoming.extend_from_slice(rest);
            }
            if !tls.established && !tls.handshaking() {
                tls.established = true;
                tls.metrics.handshake_done();
            }
            if tls.peer_closed && tls.plain.is_empty() && !tls.incoming.is_empty() {
                // A FIN in the middle of a record: nothing more will come.
                tls.incoming = Vec::new();
            }
            // The engine's answers (and the handshake's records) go now.
            self.flush_tls(id);
        }
        self.queue_read(id);
    }

    /// rustls refused the connection (its alert is written): counted if
    /// the handshake was not done, then closed.
    fn tls_failed(&mut self, id: usize, kind: HandshakeFailure, now: u64) {
        if let Some(Some(tls)) = self.tls_conns.get_mut(id) {
            tls.failed = true;
            if !tls.established {
                tls.metrics.handshake_failed(kind);
            }
        }
        self.engine.connection_lost(id, now);
    }

    /// A handshake that will not complete: counted, then closed.
    fn handshake_gone(&mut self, id: usize, kind: HandshakeFailure, now: u64) {
        self.tls_failed(id, kind, now);
    }

    /// `flush` for a TLS connection: waiting records first, then the
    /// engine's output through rustls, until all is out or the socket is full.
    pub(super) fn flush_tls(&mut self, id: usize) {
        let Some(Some(slot)) = self.slots.get_mut(id) else {
            return;
        };
        let Some(tls) = self.tls_conns.get_mut(id).and_then(|t| t.as_deref_mut()) else {
            return;
        };
        let mut stuck = !drain_outgoing(tls, &mut slot.socket);
        while !stuck && !tls.handshaking() && !tls.failed {
            let pending = self.engine.output(id);
            if pending.is_empty() {
                break;
            }
            let pumped = pump(
                tls,
                &mut slot.socket,
                &mut [],
                &mut self.tls_buffers.output,
                AppWrite::Data(pending),
            );
            match pumped {
                Pumped::Ok { encrypted: 0, .. } => break,
                Pumped::Ok { encrypted, .. } => self.engine.written(id, encrypted),
                Pumped::Failed(e) => {
                    debug!("TLS to {id}: {e}");
                    tls.failed = true;
                    let now = self.now_ms();
                    return self.engine.connection_lost(id, now);
                }
            }
            stuck = !tls.outgoing.is_empty();
        }
        if tls.shutdown_pending {
            try_shutdown(tls, &mut slot.socket, &mut self.tls_buffers.output);
        }
        // Records (tickets, a key update, close_notify) may have been left
        // however the loop ended.
        let stuck = !tls.outgoing.is_empty();
        self.update_interest(id);
        // The engine hears "flushed" only with every record out, or with
        // its own output stuck behind them (then it asks for WRITABLE and
        // checks its cap).
        if !stuck || !self.engine.output(id).is_empty() {
            self.engine.flushed(id);
        }
    }

    /// Registers WRITABLE while the engine or the records need it.
    fn update_interest(&mut self, id: usize) {
        let Some(Some(slot)) = self.slots.get_mut(id) else {
            return;
        };
        let Some(tls) = self.tls_conns.get_mut(id).and_then(|t| t.as_deref_mut()) else {
            return;
        };
        let want = tls.engine_writable || !tls.outgoing.is_empty();
        if want == tls.registered_writable {
            return;
        }
        tls.registered_writable = want;
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let _ = self
            .poll
            .registry()
            .reregister(&mut slot.socket, Token(id), interest);
    }

    /// `Action::Writable` for a TLS connection.
    pub(super) fn tls_engine_writable(&mut self, id: usize, want: bool) {
        if let Some(Some(tls)) = self.tls_conns.get_mut(id) {
            tls.engine_writable = want;
        }
        self.update_interest(id);
    }

    /// `Action::ShutdownWrite` for a TLS connection: close_notify, then
    /// the FIN once every record is out.
    pub(super) fn tls_shutdown_write(&mut self, id: usize) {
        let Some(Some(slot)) = self.slots.get_mut(id) else {
            return;
        };
        let Some(tls) = self.tls_conns.get_mut(id).and_then(|t| t.as_deref_mut()) else {
            return;
        };
        tls.shutdown_pending = true;
        try_shutdown(tls, &mut slot.socket, &mut self.tls_buffers.output);
        self.update_interest(id);
    }

    /// `Action::Close` for a TLS connection, before its socket is dropped:
    /// a handshake cut short is counted (the engine's handshake timeout,
    /// or shutdown), and an established connection says close_notify if it
    /// has not (best effort: the socket may be full or gone).
    pub(super) fn tls_close(&mut self, id: usize, slot: &mut Slot) {
        let Some(mut tls) = self.tls_conns.get_mut(id).and_then(Option::take) else {
            return;
        };
        if tls.failed {
            return;
        }
        if tls.handshaking() {
            tls.metrics.handshake_failed(HandshakeFailure::Timeout);
            return;
        }
        if drain_outgoing(&mut tls, &mut slot.socket) {
            close_notify(&mut tls, &mut slot.socket, &mut self.tls_buffers.output);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle TLS connection holds beyond a plain one, as far as
    /// sizes tell (BENCHMARKS.md has the measured RSS): the boxed state
    /// here and rustls's heap parts (traffic keys); no buffer.
    #[test]
    fn the_tls_state_of_a_connection_is_one_box() {
        let tls = std::mem::size_of::<TlsConn>();
        let conn = std::mem::size_of::<UnbufferedServerConnection>();
        println!("size_of::<TlsConn>() = {tls}, size_of::<UnbufferedServerConnection>() = {conn}");
        assert!(tls <= conn + 128, "{tls}");
    }
}
