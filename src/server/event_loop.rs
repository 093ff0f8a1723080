//! The one edge-triggered mio loop. It owns every syscall; the protocol
//! machines (`http`, `ws`, `chat`) only see bytes and events.
//!
//! One loop turn: poll → accept / read every ready socket, feeding the bytes
//! to the machines, which append answers to connections' `out` buffers and
//! mark them dirty → fire due timers → one `write` per dirty connection.

use super::buffers::BufferPool;
use super::config::Config;
use super::connection::{Connection, State};
use super::metrics::{self, ChatTotals, Totals};
use super::routes::{self, Endpoint, Page, Route};
use super::timer::TimerWheel;
use crate::chat::pairing::ChatConfig;
use crate::chat::{protocol, ClientId, Outbox, Pairing, ServerMsg};
use crate::http::parse_request;
use crate::http::response::{self, Connection as HttpConnection, Status};
use crate::ws::{encode, handshake, CloseCode, Decoder, Message, OpCode, Role};
use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);

/// One read buffer for the whole loop.
const READ_BUFFER: usize = 64 * 1024;
/// Reads from one connection per turn before others get their go.
const READS_PER_TURN: usize = 16;
/// After EMFILE/ENFILE, accepting pauses this long instead of spinning.
const ACCEPT_BACKOFF_MS: u64 = 100;
/// How long shutdown waits for close handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The built-in browser page.
const INDEX_HTML: &str = include_str!("../chat/page/index.html");

/// A bound, not yet running server.
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: Option<Signals>,
    events: Events,
    /// (token, readable, writable) of this turn's events; reused.
    ready: Vec<(Token, bool, bool)>,
    /// The other half of `Core::read_again`, swapped in each turn.
    read_again_spare: Vec<usize>,
    read_buf: Vec<u8>,
    core: Core,
    accept_paused_until: Option<u64>,
    /// Accepts have been failing for lack of descriptors since this many
    /// retries (0: they are not); only the first is logged as a warning.
    accept_exhausted: u64,
    shutdown_deadline: Option<u64>,
}

/// Everything the handlers touch, apart from the read buffer (which holds
/// the bytes being handled).
struct Core {
    config: Config,
    registry: Registry,
    conns: Slab<Connection>,
    chat: Pairing,
    pool: BufferPool,
    wheel: TimerWheel,
    fired: Vec<(usize, u32)>,
    dirty: Vec<usize>,
    /// The batch `flush_dirty` is working through; reused.
    flushing: Vec<usize>,
    read_again: Vec<usize>,
    totals: Totals,
    /// Reused for building JSON and pages.
    scratch: Vec<u8>,
    text: String,
    start: Instant,
    now_ms: u64,
    /// A shutdown signal came: a connection that has said all it had to
    /// (Draining, output flushed) is closed instead of waiting for the
    /// peer's FIN.
    shutting_down: bool,
}

impl Server {
    /// Binds the listening socket (port 0 picks a free port).
    pub fn bind(config: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(config.listen)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let registry = poll.registry().try_clone()?;
        let chat = Pairing::new(ChatConfig {
            interest_wait_ms: duration_ms(config.interest_wait),
            rate_per_sec: config.rate_limit,
        });
        Ok(Server {
            poll,
            listener: Some(listener),
            signals: None,
            events: Events::with_capacity(1024),
            ready: Vec::with_capacity(1024),
            read_again_spare: Vec::new(),
            read_buf: vec![0; READ_BUFFER],
            accept_paused_until: None,
            accept_exhausted: 0,
            shutdown_deadline: None,
            core: Core {
                conns: Slab::with_capacity(config.max_connections.min(1 << 20)),
                config,
                registry,
                chat,
                pool: BufferPool::default(),
                wheel: TimerWheel::new(),
                fired: Vec::new(),
                dirty: Vec::new(),
                flushing: Vec::new(),
                read_again: Vec::new(),
                totals: Totals::default(),
                scratch: Vec::new(),
                text: String::new(),
                start: Instant::now(),
                now_ms: 0,
                shutting_down: false,
            },
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Some(l) => l.local_addr(),
            None => Err(io::Error::new(ErrorKind::NotConnected, "not listening")),
        }
    }

    /// Shut down gracefully on SIGINT/SIGTERM (the binary does; tests that
    /// run the server on a thread do not).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals =
            Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
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
        let busy_poll = self.core.config.busy_poll;
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
            if !busy_poll.is_zero() && !self.events.is_empty() {
                spin_until = Some(Instant::now() + busy_poll);
            }
            self.core.now_ms = duration_ms(self.core.start.elapsed());
            self.turn();
            if let Some(deadline) = self.shutdown_deadline {
                if self.core.conns.is_empty() || self.core.now_ms >= deadline {
                    info!(
                        "shut down ({} connections still open)",
                        self.core.conns.len()
                    );
                    return Ok(());
                }
            }
        }
    }

    fn turn(&mut self) {
        // Connections that used up their read budget last turn read again
        // first. Those that use it up again are queued anew in the (empty)
        // list swapped in, so none is forgotten.
        let spare = std::mem::take(&mut self.read_again_spare);
        let mut again = std::mem::replace(&mut self.core.read_again, spare);
        for &token in &again {
            self.read_ready(token);
        }
        again.clear();
        self.read_again_spare = again;
        // `events` is borrowed while handlers need `self`: copy the few
        // bits we need into a reused list first.
        let mut ready = std::mem::take(&mut self.ready);
        ready.extend(self.events.iter().map(|e| {
            let readable = e.is_readable() || e.is_read_closed() || e.is_error();
            (e.token(), readable, e.is_writable())
        }));
        for &(token, readable, writable) in &ready {
            match token {
                LISTENER => self.accept_all(),
                SIGNALS => self.on_signal(),
                Token(t) => {
                    if writable {
                        self.core.flush(t);
                    }
                    if readable {
                        self.read_ready(t);
                    }
                }
            }
        }
        ready.clear();
        self.ready = ready;
        if let Some(until) = self.accept_paused_until {
            if self.core.now_ms >= until {
                self.accept_paused_until = None;
                self.accept_all();
            }
        }
        self.core.fire_timers();
        self.core.flush_dirty();
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.core.read_again.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = duration_ms(self.core.start.elapsed());
        [
            self.core.wheel.next_wake_ms(),
            self.core.chat.next_deadline(),
            self.accept_paused_until,
            self.shutdown_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| Duration::from_millis(at.saturating_sub(now)))
    }

    fn accept_all(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((socket, _addr)) => {
                    if self.accept_exhausted > 0 {
                        info!(
                            "accepting again after {} retries",
                            self.accept_exhausted - 1
                        );
                        self.accept_exhausted = 0;
                    }
                    self.core.admit(socket)
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_resource_exhaustion(&e) => {
                    // Retried every ACCEPT_BACKOFF_MS for as long as it
                    // lasts: one warning, not ten a second.
                    if self.accept_exhausted == 0 {
                        warn!(
                            "accept: {e} ({} connections open); retrying every \
                             {ACCEPT_BACKOFF_MS} ms until descriptors free up",
                            self.core.conns.len()
                        );
                    } else {
                        debug!("accept: {e}");
                    }
                    self.accept_exhausted += 1;
                    self.accept_paused_until = Some(self.core.now_ms + ACCEPT_BACKOFF_MS);
                    return;
                }
                // ECONNABORTED and friends concern only that one connection.
                Err(e) => debug!("accept: {e}"),
            }
        }
    }

    /// Reads until WouldBlock (or the per-turn budget), handing each chunk
    /// to the connection's machine, then writes what it owes at once.
    ///
    /// Flushing right after the read (uWebSockets' cork-then-uncork) means
    /// the answers to one read leave in one `write` and the output buffer
    /// goes straight back to the pool, so one buffer serves every echo or
    /// HTTP connection of the turn. A chat partner's messages go out at the
    /// same moment rather than at the end of the turn: waiting behind every
    /// other event of a busy turn is what made relay latency's tail.
    fn read_ready(&mut self, token: usize) {
        self.read_some(token);
        self.core.flush_dirty();
    }

    fn read_some(&mut self, token: usize) {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.core.conns.get_mut(token) else {
                return;
            };
            match conn.socket.read(&mut self.read_buf) {
                Ok(0) => return self.core.on_eof(token),
                Ok(n) => {
                    self.core.totals.bytes_received += n as u64;
                    let Some(chunk) = self.read_buf.get_mut(..n) else {
                        return;
                    };
                    self.core.on_bytes(token, chunk);
                    // Edge-triggered epoll reports data that arrives after
                    // this read as a new event: a short read means drained.
                    if n < READ_BUFFER {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("read from {token}: {e}");
                    return self.core.close_now(token);
                }
            }
        }
        self.core.read_again.push(token);
    }

    fn on_signal(&mut self) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        let got = signals.pending().next();
        if got.is_none() || self.shutdown_deadline.is_some() {
            return;
        }
        info!(
            "signal received: closing {} connections (1001) and shutting down",
            self.core.conns.len()
        );
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.shutdown_deadline = Some(self.core.now_ms + duration_ms(SHUTDOWN_GRACE));
        self.core.close_all_going_away();
    }
}

impl Core {
    fn admit(&mut self, mut socket: TcpStream) {
        self.totals.connections += 1;
        if self.conns.len() >= self.config.max_connections {
            self.totals.connections_refused += 1;
            return; // dropping the socket closes it at once
        }
        let _ = socket.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        if let Err(e) = self
            .registry
            .register(&mut socket, Token(token), Interest::READABLE)
        {
            warn!("register: {e}");
            return;
        }
        entry.insert(Connection::new(socket, self.now_ms));
        self.arm(
            token,
            self.now_ms + duration_ms(self.config.handshake_timeout),
        );
    }

    // ---- input -------------------------------------------------------

    /// Feeds freshly read bytes to the connection, behind any bytes kept
    /// from earlier reads; keeps whatever is left unfinished.
    fn on_bytes(&mut self, token: usize, data: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.is_websocket() {
            conn.mark_ms = self.now_ms;
        }
        if conn.partial.is_empty() {
            let used = self.process(token, data);
            let rest = data.get(used..).unwrap_or_default();
            if let (false, Some(conn)) = (rest.is_empty(), self.conns.get_mut(token)) {
                self.pool.ensure(&mut conn.partial);
                conn.partial.extend_from_slice(rest);
            }
        } else {
            let mut buf = std::mem::take(&mut conn.partial);
            buf.extend_from_slice(data);
            let used = self.process(token, &mut buf).min(buf.len());
            buf.drain(..used);
            match self.conns.get_mut(token) {
                Some(conn) => {
                    conn.partial = buf;
                    self.pool.release(&mut conn.partial);
                }
                None => {
                    buf.clear();
                    self.pool.release(&mut buf);
                }
            }
        }
    }

    /// Runs the connection's machine over `buf`; returns the bytes used.
    fn process(&mut self, token: usize, buf: &mut [u8]) -> usize {
        let mut pos = 0;
        loop {
            let Some(state) = self.conns.get(token).map(|c| c.state) else {
                return buf.len();
            };
            let rest = buf.get_mut(pos..).unwrap_or_default();
            match state {
                State::Http => match self.on_http(token, rest) {
                    HttpStep::NeedMore => return pos,
                    HttpStep::Next(used) => pos += used,
                    HttpStep::Stop => return buf.len(),
                },
                State::Echo | State::Chat | State::AwaitingClose => {
                    return pos + self.on_frames(token, rest);
                }
                State::Draining => return buf.len(),
            }
        }
    }

    fn on_http(&mut self, token: usize, buf: &[u8]) -> HttpStep {
        let req = match parse_request(buf, self.config.max_head) {
            Ok(None) => return HttpStep::NeedMore,
            Ok(Some(req)) => req,
            Err(e) => {
                self.refuse(token, e.status(), HttpConnection::Close);
                return HttpStep::Stop;
            }
        };
        let used = req.head_len;
        let connection = match (req.keep_alive, req.minor_version) {
            (false, _) => HttpConnection::Close,
            (true, 0) => HttpConnection::KeepAlive10,
            (true, _) => HttpConnection::KeepAlive11,
        };
        if let Some(conn) = self.conns.get_mut(token) {
            conn.mark_ms = self.now_ms;
        }
        match routes::route(&req, &self.config.allowed_origins) {
            Route::Upgrade {
                endpoint,
                key,
                query,
            } => {
                self.upgrade(token, endpoint, key, query);
                HttpStep::Next(used)
            }
            Route::Serve { page, head_only } => {
                self.serve(token, page, head_only, connection);
                match connection {
                    HttpConnection::Close => HttpStep::Stop,
                    _ => HttpStep::Next(used),
                }
            }
            Route::Refuse { status, close } => {
                let connection = if close {
                    HttpConnection::Close
                } else {
                    connection
                };
                self.refuse(token, status, connection);
                match connection {
                    HttpConnection::Close => HttpStep::Stop,
                    _ => HttpStep::Next(used),
                }
            }
        }
    }

    fn upgrade(&mut self, token: usize, endpoint: Endpoint, key: &[u8], query: Option<&str>) {
        let accept = handshake::accept_key(key);
        let max_message = self.config.max_message_size;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        self.pool.ensure(&mut conn.out);
        response::write_switching_protocols(&mut conn.out, &accept);
        conn.state = match endpoint {
            Endpoint::Echo => State::Echo,
            Endpoint::Chat => State::Chat,
        };
        conn.decoder = Decoder::new(Role::Server, max_message);
        conn.mark_ms = self.now_ms;
        mark_dirty(conn, token, &mut self.dirty);
        self.totals.count_status(101);
        self.totals.websocket_sessions += 1;
        if endpoint == Endpoint::Chat {
            conn.in_chat = true;
            let (chat, mut mailer) = self.mailer();
            chat.on_connect(token, query, mailer.now_ms, &mut mailer);
        }
        self.arm(token, self.now_ms + self.idle_half());
    }

    fn serve(&mut self, token: usize, page: Page, head_only: bool, connection: HttpConnection) {
        if page == Page::Healthz {
            // The benchmarked path: one precomputed response, one copy.
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            self.pool.ensure(&mut conn.out);
            conn.out
                .extend_from_slice(response::healthz_response(head_only, connection));
            self.totals.count_status(200);
            return self.after_response(token, connection);
        }
        self.text.clear();
        let (content_type, body): (&str, &[u8]) = match page {
            Page::Index => ("text/html; charset=utf-8", INDEX_HTML.as_bytes()),
            Page::Healthz => ("text/plain", b"ok\n"),
            Page::Stats => {
                metrics::render_stats(&mut self.text, self.chat.counts());
                ("application/json", self.text.as_bytes())
            }
            Page::Metrics => {
                let chat_totals = self.chat_totals();
                metrics::render_metrics(
                    &mut self.text,
                    self.chat.counts(),
                    self.conns.len(),
                    &self.totals,
                    chat_totals,
                );
                (
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.text.as_bytes(),
                )
            }
        };
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        self.pool.ensure(&mut conn.out);
        response::write_response(
            &mut conn.out,
            Status::Ok,
            content_type,
            body,
            head_only,
            connection,
            &[],
        );
        self.totals.count_status(200);
        self.after_response(token, connection);
    }

    fn refuse(&mut self, token: usize, status: Status, connection: HttpConnection) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        self.pool.ensure(&mut conn.out);
        response::write_error(&mut conn.out, status, connection);
        self.totals.count_status(status as u16);
        self.after_response(token, connection);
    }

    fn after_response(&mut self, token: usize, connection: HttpConnection) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        mark_dirty(conn, token, &mut self.dirty);
        if connection == HttpConnection::Close {
            conn.state = State::Draining;
            conn.mark_ms = self.now_ms;
            self.arm(token, self.now_ms + duration_ms(self.config.close_timeout));
        }
    }

    /// Decodes frames; returns the bytes used.
    fn on_frames(&mut self, token: usize, buf: &mut [u8]) -> usize {
        let Some(conn) = self.conns.get_mut(token) else {
            return buf.len();
        };
        let mut decoder = std::mem::replace(&mut conn.decoder, Decoder::new(Role::Server, 0));
        let mut message = std::mem::take(&mut conn.message);
        let mut pos = 0;
        loop {
            let rest = buf.get_mut(pos..).unwrap_or_default();
            match decoder.decode(rest, &mut message) {
                Ok((used, Some(msg))) => {
                    pos += used;
                    if !self.on_message(token, msg) {
                        pos = buf.len();
                        break;
                    }
                }
                Ok((used, None)) => {
                    pos += used;
                    break;
                }
                Err(e) => {
                    debug!("connection {token}: {} ({})", e.reason(), e.close_code());
                    self.fail(token, e.close_code(), e.reason());
                    pos = buf.len();
                    break;
                }
            }
        }
        match self.conns.get_mut(token) {
            Some(conn) => {
                conn.decoder = decoder;
                conn.message = message;
                if !conn.decoder.in_message() {
                    conn.message.clear();
                    self.pool.release(&mut conn.message);
                }
            }
            None => {
                message.clear();
                self.pool.release(&mut message);
            }
        }
        pos
    }

    /// Handles one WebSocket message; false when the connection will read
    /// no further frames.
    fn on_message(&mut self, token: usize, msg: Message<'_>) -> bool {
        let Some(conn) = self.conns.get_mut(token) else {
            return false;
        };
        let state = conn.state;
        if state == State::AwaitingClose {
            // Only the peer's close frame matters now.
            if let Message::Close(..) = msg {
                self.start_draining(token);
                return false;
            }
            return true;
        }
        match msg {
            Message::Ping(payload) => {
                queue_frame(
                    conn,
                    token,
                    &mut self.pool,
                    &mut self.dirty,
                    OpCode::Pong,
                    payload,
                );
            }
            Message::Pong(_) => {}
            Message::Close(code, _reason) => {
                self.pool.ensure(&mut conn.out);
                match code {
                    Some(code) => encode::write_close(&mut conn.out, code, ""),
                    None => encode::write_frame(&mut conn.out, OpCode::Close, &[]),
                }
                self.leave_chat(token);
                self.start_draining(token);
                return false;
            }
            Message::Text(payload) if state == State::Chat => {
                let (chat, mut mailer) = self.mailer();
                if let Err(e) = chat.on_text(token, payload, mailer.now_ms, &mut mailer) {
                    self.fail(token, e.close_code(), e.reason());
                    return false;
                }
            }
            Message::Binary(_) if state == State::Chat => {
                self.fail(
                    token,
                    CloseCode::UNSUPPORTED_DATA,
                    "binary messages are not chat",
                );
                return false;
            }
            Message::Text(payload) => self.echo(token, OpCode::Text, payload),
            Message::Binary(payload) => self.echo(token, OpCode::Binary, payload),
        }
        true
    }

    fn echo(&mut self, token: usize, opcode: OpCode, payload: &[u8]) {
        if let Some(conn) = self.conns.get_mut(token) {
            self.totals.echo_messages += 1;
            queue_frame(
                conn,
                token,
                &mut self.pool,
                &mut self.dirty,
                opcode,
                payload,
            );
        }
    }

    fn on_eof(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.state == State::Http && !conn.out.is_empty() {
            // A half-closed HTTP client still gets its answers.
            self.start_draining(token);
        } else {
            self.close_now(token);
        }
    }

    // ---- closing ---------------------------------------------------

    /// Fails a WebSocket connection: close frame with `code` after all
    /// output already owed, then wait for the peer's close frame.
    fn fail(&mut self, token: usize, code: CloseCode, reason: &str) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if !conn.is_websocket() {
            return;
        }
        if matches!(
            code,
            CloseCode::PROTOCOL_ERROR
                | CloseCode::UNSUPPORTED_DATA
                | CloseCode::INVALID_PAYLOAD
                | CloseCode::MESSAGE_TOO_BIG
        ) {
            self.totals.protocol_errors += 1;
        }
        self.pool.ensure(&mut conn.out);
        encode::write_close(&mut conn.out, code, reason);
        conn.state = State::AwaitingClose;
        conn.mark_ms = self.now_ms;
        mark_dirty(conn, token, &mut self.dirty);
        self.leave_chat(token);
        self.arm(token, self.now_ms + duration_ms(self.config.close_timeout));
    }

    fn start_draining(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.state = State::Draining;
        conn.mark_ms = self.now_ms;
        mark_dirty(conn, token, &mut self.dirty);
        self.arm(token, self.now_ms + duration_ms(self.config.close_timeout));
    }

    fn leave_chat(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if !conn.in_chat {
            return;
        }
        conn.in_chat = false;
        let (chat, mut mailer) = self.mailer();
        chat.on_disconnect(token, mailer.now_ms, &mut mailer);
    }

    /// Drops the connection now (the peer is gone, or has had its chance).
    fn close_now(&mut self, token: usize) {
        if !self.conns.contains(token) {
            return;
        }
        self.leave_chat(token);
        if let Some(mut conn) = self.conns.try_remove(token) {
            conn.out.clear();
            conn.partial.clear();
            conn.message.clear();
            self.pool.release(&mut conn.out);
            self.pool.release(&mut conn.partial);
            self.pool.release(&mut conn.message);
        }
    }

    /// Shutdown: every session gets close 1001; partners are not told that
    /// their stranger left, since they are going too.
    fn close_all_going_away(&mut self) {
        self.shutting_down = true;
        let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
        for &t in &tokens {
            if let Some(conn) = self.conns.get_mut(t) {
                conn.in_chat = false;
            }
        }
        for t in tokens {
            let Some(conn) = self.conns.get(t) else {
                continue;
            };
            match conn.state {
                State::Echo | State::Chat => {
                    self.fail(t, CloseCode::GOING_AWAY, "server shutting down")
                }
                State::Http if conn.out.is_empty() => self.close_now(t),
                State::Http => self.start_draining(t),
                State::AwaitingClose => {}
                // Flushed at the end of this turn, then closed.
                State::Draining => self.start_draining(t),
            }
        }
    }

    // ---- output ----------------------------------------------------

    /// Flushes every connection marked dirty. Flushing can fail a slow
    /// reader, which queues a close frame for it and a `left` for its
    /// partner, so this goes on until nothing is dirty (a connection fails
    /// only once, so it ends).
    fn flush_dirty(&mut self) {
        while !self.dirty.is_empty() {
            std::mem::swap(&mut self.dirty, &mut self.flushing);
            for i in 0..self.flushing.len() {
                if let Some(&token) = self.flushing.get(i) {
                    self.flush(token);
                }
            }
            self.flushing.clear();
        }
    }

    /// Writes as much of `out` as the socket takes: one `write` for all a
    /// connection was owed this turn, unless the socket is full.
    fn flush(&mut self, token: usize) {
        let cap = self.config.effective_max_output();
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.dirty = false;
        let mut written = 0;
        while written < conn.out.len() {
            let pending = conn.out.get(written..).unwrap_or_default();
            match conn.socket.write(pending) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("write to {token}: {e}");
                    return self.close_now(token);
                }
            }
        }
        self.totals.bytes_sent += written as u64;
        conn.out.drain(..written);
        if conn.out.is_empty() {
            self.pool.release(&mut conn.out);
            if conn.wants_writable {
                conn.wants_writable = false;
                let _ =
                    self.registry
                        .reregister(&mut conn.socket, Token(token), Interest::READABLE);
            }
            if conn.state == State::Draining {
                if !conn.write_shut {
                    conn.write_shut = true;
                    let _ = conn.socket.shutdown(Shutdown::Write);
                }
                if self.shutting_down {
                    // The close handshake is done and our FIN is out:
                    // nothing is left to wait for.
                    self.close_now(token);
                }
            }
            return;
        }
        if !conn.wants_writable {
            conn.wants_writable = true;
            let _ = self.registry.reregister(
                &mut conn.socket,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            );
        }
        if conn.out.len() > cap && conn.is_websocket() {
            warn!(
                "connection {token}: {} bytes unsent, closing slow reader",
                conn.out.len()
            );
            self.totals.slow_readers_closed += 1;
            self.fail(token, CloseCode::POLICY_VIOLATION, "too slow to read");
        }
    }

    // ---- timers ----------------------------------------------------

    fn idle_half(&self) -> u64 {
        (duration_ms(self.config.idle_timeout) / 2).max(1)
    }

    /// Makes sure the connection's timer fires no later than `at_ms`.
    fn arm(&mut self, token: usize, at_ms: u64) {
        let tick = self.wheel.tick_for(at_ms);
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.timer_tick != 0 && conn.timer_tick <= tick {
            return;
        }
        conn.timer_tick = tick;
        self.wheel.insert(token, tick);
    }

    fn fire_timers(&mut self) {
        let now = self.now_ms;
        if let Some(at) = self.chat.next_deadline() {
            if at <= now {
                let (chat, mut mailer) = self.mailer();
                chat.on_tick(now, &mut mailer);
            }
        }
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.expire(now, &mut fired);
        for &(token, tick) in &fired {
            match self.conns.get_mut(token) {
                Some(conn) if conn.timer_tick == tick => conn.timer_tick = 0,
                _ => continue, // stale entry
            }
            self.on_timer(token);
        }
        fired.clear();
        self.fired = fired;
    }

    /// A connection's timer fired: decide from its state what is due.
    fn on_timer(&mut self, token: usize) {
        let now = self.now_ms;
        let handshake = duration_ms(self.config.handshake_timeout);
        let idle = duration_ms(self.config.idle_timeout);
        let close = duration_ms(self.config.close_timeout);
        let Some((state, mark)) = self.conns.get(token).map(|c| (c.state, c.mark_ms)) else {
            return;
        };
        let since = now.saturating_sub(mark);
        match state {
            State::Http if since >= handshake => {
                debug!("connection {token}: no complete request within the handshake timeout");
                self.close_now(token);
            }
            State::Http => self.arm(token, mark + handshake),
            State::Echo | State::Chat if since >= idle => {
                self.totals.idle_closed += 1;
                self.fail(token, CloseCode::GOING_AWAY, "idle timeout");
            }
            State::Echo | State::Chat if since >= idle / 2 => {
                if let Some(conn) = self.conns.get_mut(token) {
                    queue_frame(
                        conn,
                        token,
                        &mut self.pool,
                        &mut self.dirty,
                        OpCode::Ping,
                        b"",
                    );
                }
                self.arm(token, mark + idle);
            }
            State::Echo | State::Chat => {
                let at = mark + self.idle_half();
                self.arm(token, at);
            }
            State::AwaitingClose | State::Draining if since >= close => self.close_now(token),
            State::AwaitingClose | State::Draining => self.arm(token, mark + close),
        }
    }

    // ---- chat ------------------------------------------------------

    /// Splits off the pairing machine and a mailer that delivers its
    /// messages into connections' output buffers.
    fn mailer(&mut self) -> (&mut Pairing, Mailer<'_>) {
        (
            &mut self.chat,
            Mailer {
                conns: &mut self.conns,
                pool: &mut self.pool,
                dirty: &mut self.dirty,
                scratch: &mut self.scratch,
                now_ms: self.now_ms,
            },
        )
    }

    fn chat_totals(&self) -> ChatTotals {
        let m = self.chat.metrics();
        ChatTotals {
            messages_relayed: m.messages_relayed,
            chat_errors: m.errors_total(),
            pairs: m.pairs,
        }
    }
}

enum HttpStep {
    /// The head is incomplete.
    NeedMore,
    /// A request of this many bytes was answered; go on with the rest.
    Next(usize),
    /// The connection reads no more requests.
    Stop,
}

/// Delivers chat messages as text frames.
struct Mailer<'a> {
    conns: &'a mut Slab<Connection>,
    pool: &'a mut BufferPool,
    dirty: &'a mut Vec<usize>,
    scratch: &'a mut Vec<u8>,
    now_ms: u64,
}

impl Outbox for Mailer<'_> {
    fn send(&mut self, to: ClientId, msg: &ServerMsg<'_>) {
        let Some(conn) = self.conns.get_mut(to) else {
            return;
        };
        if conn.state != State::Chat {
            return;
        }
        self.scratch.clear();
        protocol::write_json(self.scratch, msg);
        queue_frame(conn, to, self.pool, self.dirty, OpCode::Text, self.scratch);
    }
}

fn queue_frame(
    conn: &mut Connection,
    token: usize,
    pool: &mut BufferPool,
    dirty: &mut Vec<usize>,
    opcode: OpCode,
    payload: &[u8],
) {
    pool.ensure(&mut conn.out);
    encode::write_frame(&mut conn.out, opcode, payload);
    mark_dirty(conn, token, dirty);
}

fn mark_dirty(conn: &mut Connection, token: usize, dirty: &mut Vec<usize>) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(token);
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
