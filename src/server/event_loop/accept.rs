//! Accepting: drain the listener on each readiness, admit each socket to
//! the engine, and back off (one warning, not ten a second) while the
//! process is out of descriptors.

use super::tls_io::TlsConn;
use super::{Server, Slot, ACCEPT_BACKOFF};
use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io::{self, ErrorKind};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Loops of the process out of descriptors right now: with `--threads N`
/// they all run out together, and the operator is told once, not N times.
static EXHAUSTED_LOOPS: AtomicUsize = AtomicUsize::new(0);

impl Server {
    pub(super) fn accept_all(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((socket, addr)) => {
                    self.recovered();
                    self.admit(socket, addr.ip());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.recovered();
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_resource_exhaustion(&e) => {
                    // Retried every ACCEPT_BACKOFF for as long as it
                    // lasts: one warning, not ten a second.
                    let first = self.accept_exhausted == 0
                        && EXHAUSTED_LOOPS.fetch_add(1, Ordering::AcqRel) == 0;
                    if first {
                        warn!(
                            "accept: {e} ({} connections open); retrying every \
                             {} ms until descriptors free up",
                            self.engine.connection_count(),
                            ACCEPT_BACKOFF.as_millis()
                        );
                    } else {
                        debug!("accept: {e}");
                    }
                    self.accept_exhausted += 1;
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
                // ECONNABORTED and friends concern only that one connection.
                Err(e) => debug!("accept: {e}"),
            }
        }
    }

    /// Accepting works (again): the last loop to recover says so.
    fn recovered(&mut self) {
        if self.accept_exhausted > 0 {
            if EXHAUSTED_LOOPS.fetch_sub(1, Ordering::AcqRel) == 1 {
                info!(
                    "accepting again after {} retries",
                    self.accept_exhausted - 1
                );
            }
            self.accept_exhausted = 0;
        }
    }

    fn admit(&mut self, mut socket: TcpStream, peer: IpAddr) {
        // Dropping the socket closes it at once.
        let Some(id) = self.engine.accept_from(peer, self.now_ms()) else {
            return;
        };
        let _ = socket.set_nodelay(true);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, Token(id), Interest::READABLE)
        {
            warn!("register: {e}");
            self.engine.connection_lost(id, self.now_ms());
            self.apply_actions();
            return;
        }
        if self.slots.len() <= id {
            self.slots.resize_with(id + 1, || None);
        }
        let tls = match &self.tls {
            None => None,
            Some(acceptor) => match acceptor.accept() {
                Some(conn) => Some(Box::new(TlsConn::new(conn, acceptor.metrics().clone()))),
                None => {
                    self.engine.connection_lost(id, self.now_ms());
                    self.apply_actions();
                    return;
                }
            },
        };
        if tls.is_some() {
            if self.tls_conns.len() <= id {
                self.tls_conns.resize_with(id + 1, || None);
            }
            if let Some(at) = self.tls_conns.get_mut(id) {
                *at = tls;
            }
        }
        if let Some(slot) = self.slots.get_mut(id) {
            *slot = Some(Slot {
                socket,
                read_queued: false,
            });
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}
