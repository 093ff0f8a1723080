//! The one edge-triggered mio loop: poll, accept, read, write, signals.
//!
//! One loop turn: poll → for each ready socket, write what it is owed if it
//! became writable, read it until WouldBlock (or its end of stream, or its
//! read budget) feeding the engine, then write everything the engine queued
//! → run due timers → write again. Every rule (what to answer, when to
//! close) is the engine's; this file only moves bytes and carries out the
//! engine's actions.

use super::link::Link;
use crate::config::Config;
use crate::engine::{Action, ConnId, Engine, ReadBuffer, Seed};
use crate::safety::SafetyHandle;
use crate::server::tls::TlsAcceptor;
use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

mod accept;
mod tls_io;

const LISTENER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
/// Another loop of the process wrote to this one's inbox (`--threads N`),
/// or a ban was made elsewhere (the admin door): the turn that follows
/// closes this loop's banned sessions (`Engine::handle_timeout`). mio
/// allows one waker per `Poll`, so both share it.
pub(super) const WAKER: Token = Token(usize::MAX - 3);

/// Reads from one connection per turn before others get their go.
const READS_PER_TURN: usize = 16;
/// The accept queue asked of the kernel (which caps it at
/// `net.core.somaxconn`). mio's `bind` asks for 128, like std: a burst of
/// connects (every client reconnecting after a restart) then overflows it
/// while the loop is busy, and each dropped SYN costs its client a 1 s, 3 s,
/// 7 s... retry.
pub(super) const LISTEN_BACKLOG: libc::c_int = 4096;
/// After EMFILE/ENFILE, accepting pauses this long instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A connection's socket, under the engine's id for it.
struct Slot {
    socket: TcpStream,
    /// In `read_again` already: read it there, not twice in one turn.
    read_queued: bool,
}

/// A bound, not yet running server.
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: Option<Signals>,
    events: Events,
    /// (token, readable, read closed, writable) of this turn's events.
    ready: Vec<(Token, bool, bool, bool)>,
    /// Sockets by connection id (the slab key the engine hands out).
    slots: Vec<Option<Slot>>,
    /// Connections to read again next turn (budget used up, or resumed),
    /// each once; and the list being walked this turn.
    read_again: Vec<ConnId>,
    reading_again: Vec<ConnId>,
    /// Connections being flushed; reused.
    flushing: Vec<ConnId>,
    read_buf: ReadBuffer,
    engine: Engine,
    start: Instant,
    busy_poll: Duration,
    accept_paused_until: Option<Instant>,
    /// Accepts have been failing for lack of descriptors for this many
    /// retries (0: they are not); only the first is logged as a warning.
    accept_exhausted: u64,
    /// `--tls-cert`/`--tls-key`: every accepted connection speaks TLS.
    tls: Option<TlsAcceptor>,
    /// The TLS connections' shared record buffers (empty without TLS).
    tls_buffers: tls_io::Buffers,
    /// Per connection id, its TLS state between the socket and the engine:
    /// beside the slots rather than in them, so that without `--tls-cert`
    /// (this stays empty) a connection's slot is the socket and a flag,
    /// 8 bytes, not 16.
    tls_conns: Vec<Option<Box<tls_io::TlsConn>>>,
    /// The other loops of the process (`--threads N`); None with one loop.
    link: Option<Link>,
}

impl Server {
    /// Binds the listening socket (port 0 picks a free port), with the
    /// safety state the config describes (an unreadable ban file or word
    /// list is an `InvalidData` error).
    pub fn bind(config: Config) -> io::Result<Server> {
        let now_ms = crate::sys::unix_now_s().saturating_mul(1000);
        let safety = SafetyHandle::new(config.safety.clone(), now_ms)
            .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
        Server::bind_with_safety(config, safety)
    }

    /// [`Server::bind`] sharing `safety` with the admin door.
    pub fn bind_with_safety(config: Config, safety: SafetyHandle) -> io::Result<Server> {
        let poll = Poll::new()?;
        safety.add_waker(std::sync::Arc::new(mio::Waker::new(
            poll.registry(),
            WAKER,
        )?));
        let listener = TcpListener::bind(config.listen)?;
        // Calling listen again on a listening socket sets its backlog.
        // SAFETY: listen(2) on a descriptor we own; no memory is passed.
        if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
            warn!("listen backlog: {}", io::Error::last_os_error());
        }
        let engine = Engine::with_safety(
            config.clone(),
            Seed {
                unix_start_s: crate::sys::unix_now_s(),
                pair_key: crate::sys::random_u64(),
            },
            safety,
        );
        Server::with_parts(config, poll, listener, engine, Instant::now(), None)
    }

    /// One loop of several: its own poll (with the waker the others use),
    /// listener, engine and link; `start` is the process's time zero,
    /// shared so that every engine's `now_ms` means the same instant.
    pub(super) fn with_parts(
        config: Config,
        poll: Poll,
        mut listener: TcpListener,
        engine: Engine,
        start: Instant,
        link: Option<Link>,
    ) -> io::Result<Server> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener: Some(listener),
            signals: None,
            events: Events::with_capacity(1024),
            ready: Vec::with_capacity(1024),
            // Reserved, not touched: pages become resident as ids are
            // used, and growing never copies the slots.
            slots: Vec::with_capacity(config.max_connections.min(1 << 16)),
            read_again: Vec::new(),
            reading_again: Vec::new(),
            flushing: Vec::new(),
            read_buf: ReadBuffer::default(),
            busy_poll: config.busy_poll,
            // The engine's time zero and its Unix origin, read together.
            start,
            engine,
            accept_paused_until: None,
            accept_exhausted: 0,
            tls: None,
            tls_buffers: tls_io::Buffers::none(),
            tls_conns: Vec::new(),
            link,
        })
    }

    /// From now on every accepted connection speaks TLS with `acceptor`'s
    /// certificate (one acceptor can be shared by several servers).
    pub fn set_tls(&mut self, acceptor: TlsAcceptor) {
        self.engine
            .set_extra_metrics(acceptor.metrics().clone() as std::sync::Arc<_>);
        self.tls = Some(acceptor);
        self.tls_buffers = tls_io::Buffers::new();
    }

    /// The address actually bound (how a caller that asked for port 0
    /// learns the port); an error once shutdown has closed the listener.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Some(l) => l.local_addr(),
            None => Err(io::Error::new(ErrorKind::NotConnected, "not listening")),
        }
    }

    /// Shut down gracefully on SIGINT/SIGTERM and reload the TLS
    /// certificate on SIGHUP (the binary does; tests that run the server on
    /// a thread do not). The signals themselves are handled in
    /// [`Server::on_signal`].
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Runs until shut down by a signal (then returns Ok) or until polling
    /// itself fails.
    pub fn run(mut self) -> io::Result<()> {
        // `--busy-poll`: after a turn with events, poll without sleeping
        // until this instant. A sleeping (halted) CPU takes tens of
        // microseconds to wake, and a virtual one on a busy host can take
        // milliseconds; one that keeps polling sees the next message at once.
        let mut spin_until: Option<Instant> = None;
        loop {
            let mut timeout = self.poll_timeout();
            if let Some(until) = spin_until {
                if Instant::now() < until {
                    timeout = Some(Duration::ZERO);
                } else {
                    spin_until = None;
                }
            }
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if !self.busy_poll.is_zero() && !self.events.is_empty() {
                spin_until = Some(Instant::now() + self.busy_poll);
            }
            self.turn();
            let now = self.now_ms();
            if self.engine.shutdown_complete(now) {
                info!(
                    "shut down ({} connections still open)",
                    self.engine.connection_count()
                );
                return Ok(());
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn turn(&mut self) {
        // Connections that used up their read budget last turn (or were
        // resumed) read first; those that use it up again are queued anew.
        std::mem::swap(&mut self.read_again, &mut self.reading_again);
        for i in 0..self.reading_again.len() {
            if let Some(&id) = self.reading_again.get(i) {
                if let Some(Some(slot)) = self.slots.get_mut(id) {
                    slot.read_queued = false;
                }
                self.read_ready(id, true);
            }
        }
        self.reading_again.clear();
        // `events` is borrowed while handlers need `self`: copy the few
        // bits needed into a reused list first.
        let mut ready = std::mem::take(&mut self.ready);
        ready.extend(self.events.iter().map(|e| {
            let closed = e.is_read_closed() || e.is_error();
            (
                e.token(),
                e.is_readable() || closed,
                closed,
                e.is_writable(),
            )
        }));
        for &(token, readable, read_closed, writable) in &ready {
            match token {
                LISTENER => self.accept_all(),
                SIGNALS => self.on_signal(),
                WAKER => self.on_wake(),
                Token(id) => {
                    if writable {
                        self.flush(id);
                        self.apply_actions();
                    }
                    if readable {
                        self.read_ready(id, read_closed);
                    }
                }
            }
        }
        ready.clear();
        self.ready = ready;
        if self
            .accept_paused_until
            .is_some_and(|until| Instant::now() >= until)
        {
            self.accept_paused_until = None;
            self.accept_all();
        }
        self.engine.handle_timeout(self.now_ms());
        self.flush_dirty();
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.read_again.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = self.now_ms();
        let engine = self
            .engine
            .next_deadline()
            .map(|at| Duration::from_millis(at.saturating_sub(now)));
        let accept = self
            .accept_paused_until
            .map(|until| until.saturating_duration_since(Instant::now()));
        engine.into_iter().chain(accept).min()
    }

    /// Reads the connection, then writes at once everything the engine
    /// queued (uWebSockets' cork-then-uncork: the answers to one read leave
    /// in one `write`, and a chat partner's message goes out now rather
    /// than behind every other event of a busy turn).
    fn read_ready(&mut self, id: ConnId, read_closed: bool) {
        self.read_some(id, read_closed);
        self.flush_dirty();
    }

    /// Reads until WouldBlock or the per-turn budget. A short read means
    /// drained unless the peer's end of stream is pending: then read on to
    /// the 0 (data and FIN that arrive together make a single edge).
    fn read_some(&mut self, id: ConnId, read_closed: bool) {
        if matches!(self.tls_conns.get(id), Some(Some(_))) {
            return self.read_some_tls(id);
        }
        for _ in 0..READS_PER_TURN {
            let Some(Some(slot)) = self.slots.get_mut(id) else {
                return;
            };
            if slot.read_queued || !self.engine.wants_input(id) {
                return;
            }
            let space = self.read_buf.space();
            let capacity = space.len();
            match slot.socket.read(space) {
                Ok(0) => return self.engine.receive_eof(id, self.now_ms()),
                Ok(n) => {
                    let now = self.now_ms();
                    self.engine.receive(id, &mut self.read_buf, n, now);
                    if n < capacity && !read_closed {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("read from {id}: {e}");
                    return self.engine.connection_lost(id, self.now_ms());
                }
            }
        }
        self.queue_read(id);
    }

    fn queue_read(&mut self, id: ConnId) {
        if let Some(Some(slot)) = self.slots.get_mut(id) {
            if !slot.read_queued {
                slot.read_queued = true;
                self.read_again.push(id);
            }
        }
    }

    /// Writes every connection the engine has output for, until none has
    /// (flushing can queue more: a failed slow reader's partner is told).
    fn flush_dirty(&mut self) {
        loop {
            if let Some(link) = &mut self.link {
                // Counted before anyone can see the effect: before the
                // other loops get the records, before the sockets the bytes.
                self.engine.publish();
                let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
                link.send(&mut self.engine, now);
            }
            self.engine.take_dirty(&mut self.flushing);
            if self.flushing.is_empty() {
                break;
            }
            for i in 0..self.flushing.len() {
                if let Some(&id) = self.flushing.get(i) {
                    self.flush(id);
                }
            }
        }
        self.apply_actions();
    }

    /// Writes as much of the connection's output as the socket takes: one
    /// `write` for all it was owed, unless the socket is full.
    fn flush(&mut self, id: ConnId) {
        let Some(Some(slot)) = self.slots.get_mut(id) else {
            return;
        };
        if matches!(self.tls_conns.get(id), Some(Some(_))) {
            return self.flush_tls(id);
        }
        loop {
            let pending = self.engine.output(id);
            if pending.is_empty() {
                break;
            }
            match slot.socket.write(pending) {
                Ok(0) => break,
                Ok(n) => self.engine.written(id, n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("write to {id}: {e}");
                    let now = self.now_ms();
                    return self.engine.connection_lost(id, now);
                }
            }
        }
        self.engine.flushed(id);
    }

    fn apply_actions(&mut self) {
        while let Some((id, action)) = self.engine.poll_action() {
            let Some(Some(slot)) = self.slots.get_mut(id) else {
                continue;
            };
            match action {
                Action::Writable(want) if matches!(self.tls_conns.get(id), Some(Some(_))) => {
                    self.tls_engine_writable(id, want)
                }
                Action::ShutdownWrite if matches!(self.tls_conns.get(id), Some(Some(_))) => {
                    self.tls_shutdown_write(id)
                }
                Action::Writable(want) => {
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
                Action::ShutdownWrite => {
                    let _ = slot.socket.shutdown(Shutdown::Write);
                }
                Action::Close => {
                    if let Some(mut slot) = self.slots.get_mut(id).and_then(Option::take) {
                        self.tls_close(id, &mut slot);
                        let _ = self.poll.registry().deregister(&mut slot.socket);
                    }
                }
                Action::Resume => self.queue_read(id),
            }
        }
    }

    /// The one place signals are handled: SIGHUP reloads the TLS
    /// certificate, SIGINT/SIGTERM shut down.
    fn on_signal(&mut self) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        let mut shut_down = false;
        for signal in signals.pending() {
            if signal == signal_hook::consts::SIGHUP {
                match &self.tls {
                    Some(tls) => tls.reload(),
                    None => info!("SIGHUP ignored: no --tls-cert to reload"),
                }
            } else {
                shut_down = true;
            }
        }
        if !shut_down {
            return;
        }
        if let Some(link) = &self.link {
            // One loop receives the signals; it tells the others.
            link.shut_down_all();
        }
        self.shut_down();
    }

    /// Stops accepting and closes every session (1001).
    fn shut_down(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            info!(
                "shutting down: closing {} connections (1001)",
                self.engine.connection_count()
            );
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.engine.begin_shutdown(self.now_ms());
        self.flush_dirty();
    }

    /// Another loop wrote to this one's inbox, or asks it to shut down.
    fn on_wake(&mut self) {
        let Some(link) = &mut self.link else {
            return;
        };
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        link.receive(&mut self.engine, now);
        if link.shutting_down() {
            self.shut_down();
        }
        self.flush_dirty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver's share of an open connection: the socket and a flag,
    /// 8 bytes in a release build (mio's socket carries a registry check of
    /// 16 more bytes in debug builds); TLS state lives beside the slots.
    #[test]
    fn a_socket_slot_is_the_socket_and_a_flag() {
        let slot = std::mem::size_of::<Option<Slot>>();
        let socket = std::mem::size_of::<TcpStream>();
        println!("size_of::<Option<Slot>>() = {slot}, size_of::<TcpStream>() = {socket}");
        assert!(slot <= socket + std::mem::align_of::<TcpStream>(), "{slot}");
    }

    /// A connection that uses up its read budget while already queued to
    /// read again (data keeps coming, so turns also bring it new readiness
    /// events) is read at most its budget per turn and queued once: before,
    /// the event read it again in the same turn and queued it a second time.
    #[test]
    fn a_busy_connection_is_read_at_most_its_budget_per_turn() {
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        let mut server = Server::bind(config).unwrap();
        // Reads of 4 KiB: a budget of 64 KiB per turn, which the kernel's
        // buffers hold many times over while the writer below runs, so it
        // is used up however the two threads are scheduled (with 64 KiB
        // reads, a writer slowed by a busy machine never got 1 MiB ahead).
        server.read_buf = ReadBuffer::with_read_size(4096);
        let addr = server.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // A request head that never ends: answered 431, then everything
        // else is read and discarded, as fast as it comes.
        let writer = std::thread::spawn(move || {
            let _ = client.write_all(b"GET / HTTP/1.1\r\nX: ");
            let junk = vec![b'x'; 64 * 1024];
            for _ in 0..400 {
                if client.write_all(&junk).is_err() {
                    break;
                }
            }
        });
        let budget = (READS_PER_TURN * server.read_buf.space().len()) as u64;
        let mut busy_turns = 0;
        for _ in 0..2_000 {
            let before = server.engine.bytes_received();
            server
                .poll
                .poll(&mut server.events, Some(Duration::from_millis(200)))
                .unwrap();
            server.turn();
            let read = server.engine.bytes_received() - before;
            assert!(read <= budget, "read {read} bytes in one turn");
            let mut queued = server.read_again.clone();
            queued.dedup();
            assert_eq!(queued.len(), server.read_again.len(), "queued twice");
            if read == budget {
                busy_turns += 1;
            }
            if writer.is_finished() && server.read_again.is_empty() {
                break;
            }
        }
        assert!(busy_turns > 1, "the budget was never used up");
        writer.join().unwrap();
    }
}
