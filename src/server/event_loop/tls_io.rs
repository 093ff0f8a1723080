//! TLS between a connection's socket and the engine's bytes: records in,
//! plaintext to the engine; the engine's output in, records out.
//!
//! The rules that keep an edge-triggered loop from losing anything:
//! - records are read until WouldBlock (or the read budget, then the
//!   connection is queued to read again), never "until a short read":
//!   rustls reads a few KiB at a time whatever the kernel holds;
//! - plaintext that rustls decrypted but the engine did not take (it
//!   paused) stays in rustls, and the engine's `Resume` brings the loop
//!   back here, which hands it over before reading the socket again; the
//!   peer's end (close_notify, or a bare FIN) is told to the engine only
//!   after the plaintext before it;
//! - plaintext goes into rustls only once its earlier records are out, so
//!   what it holds is bounded (`TLS_OUTPUT_LIMIT`) and the engine hears
//!   "flushed" only when the bytes really left: its draining and closing
//!   steps then never cut records still waiting for the socket;
//! - alerts and close_notify are written before the socket is shut or
//!   closed (best effort: a full socket at close loses them, as it would
//!   lose any last bytes).

use super::{Server, Slot};
use crate::server::tls::{HandshakeFailure, TlsMetrics};
use log::debug;
use mio::net::TcpStream;
use mio::{Interest, Token};
use rustls::ServerConnection;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

/// Record reads from one TLS connection per turn. rustls reads at most
/// about 4 KiB per call, so this is about the plain budget's 16 × 64 KiB
/// divided by four.
const TLS_READS_PER_TURN: usize = 64;

/// One connection's TLS state (boxed in the slot: plain connections pay
/// a pointer for it).
pub(super) struct TlsConn {
    conn: ServerConnection,
    metrics: Arc<TlsMetrics>,
    /// The handshake completed (and was counted).
    established: bool,
    /// rustls failed the connection (its alert is already queued).
    failed: bool,
    /// The engine asked for WRITABLE (its output is stuck).
    engine_writable: bool,
    /// Records wait for the socket: WRITABLE is asked for them.
    records_stuck: bool,
    /// WRITABLE is registered (engine_writable || records_stuck, as last set).
    registered_writable: bool,
    /// The engine asked for our FIN: sent once the records are out.
    shutdown_pending: bool,
}

impl TlsConn {
    pub(super) fn new(conn: ServerConnection, metrics: Arc<TlsMetrics>) -> TlsConn {
        TlsConn {
            conn,
            metrics,
            established: false,
            failed: false,
            engine_writable: false,
            records_stuck: false,
            registered_writable: false,
            shutdown_pending: false,
        }
    }
}

/// What writing records to the socket came to.
enum Records {
    /// All written.
    Out,
    /// The socket is full.
    Stuck,
    /// The socket failed.
    Lost,
}

/// Writes every record rustls holds, until done or the socket is full.
fn write_records(socket: &mut TcpStream, tls: &mut TlsConn) -> Records {
    while tls.conn.wants_write() {
        match tls.conn.write_tls(socket) {
            Ok(0) => return Records::Stuck,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Records::Stuck,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                debug!("TLS write: {e}");
                return Records::Lost;
            }
        }
    }
    Records::Out
}

impl Server {
    /// `read_some` for a TLS connection: hands over decrypted plaintext,
    /// then reads records, until WouldBlock or the budget.
    pub(super) fn read_some_tls(&mut self, id: usize) {
        for _ in 0..TLS_READS_PER_TURN {
            let now = self.now_ms();
            let Some(Some(slot)) = self.slots.get_mut(id) else {
                return;
            };
            if slot.read_queued {
                return;
            }
            let Some(tls) = slot.tls.as_deref_mut() else {
                return;
            };
            // Plaintext first: what rustls holds came before anything
            // still in the socket.
            loop {
                if !self.engine.wants_input(id) {
                    // Resume brings us back for the rest.
                    return;
                }
                match tls.conn.reader().read(self.read_buf.space()) {
                    Ok(0) => {
                        // close_notify: a clean end of stream.
                        return self.engine.receive_eof(id, now);
                    }
                    Ok(n) => self.engine.receive(id, &mut self.read_buf, n, now),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // UnexpectedEof: a FIN without close_notify, after
                        // the last plaintext. Truncation cannot hide
                        // anything from a WebSocket or HTTP peer here
                        // (both frame their own messages), so it is an end.
                        return self.engine.receive_eof(id, now);
                    }
                }
            }
            match tls.conn.read_tls(&mut slot.socket) {
                // The FIN: rustls reports it through the reader above,
                // after any plaintext still in it.
                Ok(0) => {
                    if tls.conn.is_handshaking() {
                        return self.handshake_gone(id, HandshakeFailure::Eof, now);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("TLS read from {id}: {e}");
                    if tls.conn.is_handshaking() {
                        return self.handshake_gone(id, HandshakeFailure::Eof, now);
                    }
                    return self.engine.connection_lost(id, now);
                }
            }
            match tls.conn.process_new_packets() {
                Ok(_) => {
                    if !tls.established && !tls.conn.is_handshaking() {
                        tls.established = true;
                        tls.metrics.handshake_done();
                    }
                }
                Err(e) => {
                    debug!("TLS from {id}: {e}");
                    tls.failed = true;
                    if !tls.established {
                        tls.metrics.handshake_failed(HandshakeFailure::of(&e));
                    }
                    // The alert rustls queued for this error goes first.
                    let _ = write_records(&mut slot.socket, tls);
                    return self.engine.connection_lost(id, now);
                }
            }
            if tls.conn.wants_write() {
                // Handshake messages (and tickets) to send now.
                self.flush_tls(id);
            }
        }
        self.queue_read(id);
    }

    /// A handshake that will not complete: counted, then closed.
    fn handshake_gone(&mut self, id: usize, kind: HandshakeFailure, now: u64) {
        if let Some(Some(Slot { tls: Some(tls), .. })) = self.slots.get_mut(id) {
            tls.failed = true;
            tls.metrics.handshake_failed(kind);
        }
        self.engine.connection_lost(id, now);
    }

    /// `flush` for a TLS connection: records out first, then the engine's
    /// output through rustls, until all is out or the socket is full.
    pub(super) fn flush_tls(&mut self, id: usize) {
        let Some(Some(slot)) = self.slots.get_mut(id) else {
            return;
        };
        let Some(tls) = slot.tls.as_deref_mut() else {
            return;
        };
        let stuck = loop {
            match write_records(&mut slot.socket, tls) {
                Records::Out => {}
                Records::Stuck => break true,
                Records::Lost => {
                    let now = self.now_ms();
                    return self.engine.connection_lost(id, now);
                }
            }
            if tls.conn.is_handshaking() {
                break false;
            }
            let pending = self.engine.output(id);
            if pending.is_empty() {
                break false;
            }
            match tls.conn.writer().write(pending) {
                Ok(0) | Err(_) => break true,
                Ok(n) => self.engine.written(id, n),
            }
        };
        tls.records_stuck = stuck;
        if !stuck && tls.shutdown_pending {
            tls.shutdown_pending = false;
            let _ = slot.socket.shutdown(Shutdown::Write);
        }
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
        let Some(tls) = slot.tls.as_deref_mut() else {
            return;
        };
        let want = tls.engine_writable || tls.records_stuck;
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
        if let Some(Some(Slot { tls: Some(tls), .. })) = self.slots.get_mut(id) {
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
        let Some(tls) = slot.tls.as_deref_mut() else {
            return;
        };
        tls.conn.send_close_notify();
        match write_records(&mut slot.socket, tls) {
            Records::Out => {
                let _ = slot.socket.shutdown(Shutdown::Write);
            }
            Records::Stuck => {
                tls.records_stuck = true;
                tls.shutdown_pending = true;
                self.update_interest(id);
            }
            Records::Lost => {}
        }
    }
}

/// `Action::Close` for a TLS connection, before its socket is dropped:
/// a handshake cut short is counted (the engine's handshake timeout, or
/// shutdown), and an established connection says close_notify if it has
/// not (best effort: the socket may be full or gone).
pub(super) fn tls_close(slot: &mut Slot) {
    let Some(mut tls) = slot.tls.take() else {
        return;
    };
    if tls.failed {
        return;
    }
    if tls.conn.is_handshaking() {
        tls.metrics.handshake_failed(HandshakeFailure::Timeout);
        return;
    }
    tls.conn.send_close_notify();
    let _ = write_records(&mut slot.socket, &mut tls);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle TLS connection holds beyond a plain one, as far as
    /// sizes tell (BENCHMARKS.md has the measured RSS): the boxed state
    /// here, plus rustls's heap parts (its 4 KiB record read buffer, which
    /// it keeps between reads, and the traffic keys).
    #[test]
    fn the_tls_state_of_a_connection_is_one_box() {
        let tls = std::mem::size_of::<TlsConn>();
        let conn = std::mem::size_of::<ServerConnection>();
        println!("size_of::<TlsConn>() = {tls}, size_of::<ServerConnection>() = {conn}");
        assert!(tls <= conn + 64, "{tls}");
    }
}
