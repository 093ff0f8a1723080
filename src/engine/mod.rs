//! The connection engine: every rule of every connection, and no I/O.
//!
//! The engine owns the connections' state, the chat pairing, the timer
//! wheel, the buffer pool and the counters. It never touches a socket and
//! never reads a clock: a driver (`server/`) feeds it bytes, ends of
//! stream and the current time, writes what [`Engine::output`] holds, and
//! carries out the [`Action`]s it asks for. Tests drive it the same way on
//! a fake clock (`tests.rs`).
//!
//! ```text
//! driver                                   engine
//!   accept ───────────────────────────────▶ accept(now) → id
//!   read into ReadBuffer ─────────────────▶ receive(id, buf, n, now)
//!   read → Ok(0) ─────────────────────────▶ receive_eof(id, now)
//!   poll timeout ◀──────────────────────── next_deadline()
//!   timeout ──────────────────────────────▶ handle_timeout(now)
//!   take_dirty → write(output(id)) ───────▶ written(id, n), then flushed(id)
//!   act on poll_action()                    (Close, ShutdownWrite, Writable, Resume)
//! ```
//!
//! Ids are slab keys; the driver stores its socket under the same id. An
//! id is freed when the engine emits [`Action::Close`] for it and may be
//! handed out again by the next `accept`, so the driver carries out every
//! action before it accepts again.

mod cross;
mod ending;
mod http;
mod metrics;
mod output;
mod pool;
mod process;
mod routes;
mod safety;
mod session;
mod timers;
mod websocket;
mod wheel;

#[cfg(test)]
mod tests;

pub(crate) use cross::encode as encode_cross;
pub use cross::{forwarded, left_target, record_len, record_thread, relay_sender, REMOTE};
pub use process::Process;

use crate::chat::pairing::ChatConfig;
use crate::chat::peer::Cross;
use crate::chat::{protocol, ClientId, Outbox, Pairing, ServerMsg, VideoConfig};
use crate::config::Config;
use crate::safety::SafetyHandle;
use crate::ws::deflate::Codec;
use crate::ws::{encode, OpCode};
use ending::Ending;
pub use metrics::ExtraMetrics;
use metrics::Totals;
use pool::BufferPool;
use session::{Phase, Session};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use wheel::TimerWheel;

/// A connection's handle, shared by the engine and its driver.
pub type ConnId = usize;

/// What the engine asks its driver to do with a connection's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ask for WRITABLE readiness (true: the output is stuck) or stop
    /// asking (false: it drained).
    Writable(bool),
    /// Shut down our sending side: every byte owed is already written.
    ShutdownWrite,
    /// Close the socket and forget the id.
    Close,
    /// Read this connection again although no new readiness came: it
    /// stopped reading to let its answers drain, and they have.
    Resume,
}

/// Bytes the driver reads into per read, and the room kept in front of
/// them, where the engine puts a connection's leftover bytes back in front
/// of the new ones without copying either into a buffer of its own.
const READ_SIZE: usize = 64 * 1024;
/// Room for the largest leftover in the common case: an unfinished request
/// head (at most the default 8 KiB head limit) or frame (at most 14 + 125
/// bytes). A larger leftover (a raised head limit, or pipelined requests
/// kept while paused) is joined with the new bytes in a buffer of its own.
const READ_HEADROOM: usize = 8 * 1024 + 256;

/// The one read buffer of a driver's loop.
pub struct ReadBuffer {
    buf: Box<[u8]>,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        ReadBuffer {
            buf: vec![0; READ_HEADROOM + READ_SIZE].into_boxed_slice(),
        }
    }
}

impl ReadBuffer {
    /// A buffer whose reads take at most `read_size` bytes (tests that
    /// need a read budget small enough to be used up for certain).
    #[cfg(test)]
    pub(crate) fn with_read_size(read_size: usize) -> ReadBuffer {
        ReadBuffer {
            buf: vec![0; READ_HEADROOM + read_size].into_boxed_slice(),
        }
    }

    /// Where the next read goes.
    pub fn space(&mut self) -> &mut [u8] {
        self.buf.get_mut(READ_HEADROOM..).unwrap_or_default()
    }
}

/// What only the driver can learn from the world, handed to the engine at
/// start so that the engine itself reads no clock and no randomness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seed {
    /// The wall clock (Unix seconds) at `now_ms == 0`: TURN credentials
    /// expire at `unix_start_s + now_ms / 1000 + --turn-ttl`.
    pub unix_start_s: u64,
    /// A random key per process, mixed into pair ids.
    pub pair_key: u64,
}

/// The connection engine (see the module documentation).
pub struct Engine {
    config: Config,
    sessions: Slab<Session>,
    chat: Pairing,
    pool: BufferPool,
    wheel: TimerWheel,
    /// Timer entries due this turn; reused.
    fired: Vec<(usize, u32)>,
    /// Connections with output to flush, in the order they got it.
    dirty: Vec<ConnId>,
    /// Actions for the driver, in order. Bounded by the connections'
    /// number: the driver drains it after every call into the engine.
    actions: VecDeque<(ConnId, Action)>,
    totals: Totals,
    /// Reused for building JSON and pages.
    scratch: Vec<u8>,
    text: String,
    now_ms: u64,
    /// Set by [`Engine::begin_shutdown`]: when the grace ends.
    shutdown_deadline_ms: Option<u64>,
    /// The driver's own counters, shown at the end of `/metrics`.
    extra_metrics: Option<Arc<dyn ExtraMetrics>>,
    /// permessage-deflate for every session of this loop: no context
    /// takeover, so one codec serves them all (`ws/deflate.rs`).
    codec: Codec,
    /// The message being inflated; reused. Never over
    /// `--max-message-size` + 1 bytes; kept at most [`KEPT_INFLATED`].
    inflated: Vec<u8>,
    /// Client addresses, limits and bans (`safety.rs`).
    safety: SafetyHandle,
    /// Connection id → its peer and client address (`safety.rs`), only
    /// while it is needed: until the WebSocket upgrade, and for as long as
    /// the connection counts toward `--max-connections-per-ip`. An idle
    /// WebSocket with the limits off costs nothing here (a chat session's
    /// address is the chat's). Bound: one entry per open connection.
    addrs: HashMap<ConnId, safety::ConnAddr>,
    /// The ban generation last acted on, and Unix ms at `now_ms == 0`.
    bans_seen: u64,
    unix_start_ms: u64,
    next_sweep_ms: u64,
    /// This loop's index (0 with one loop).
    thread: usize,
    /// Shared with the other loops (`--threads N`); None with one loop.
    process: Option<Arc<Process>>,
    /// Records for other loops (see `cross.rs`).
    cross_out: Vec<u8>,
}

/// Capacity the inflate buffer keeps between messages: enough for the
/// default message size limit, so steady traffic reallocates nothing.
const KEPT_INFLATED: usize = crate::config::DEFAULT_MAX_MESSAGE_SIZE;

impl Engine {
    /// An engine with no connections, a zero [`Seed`] (tests: pair ids
    /// and TURN expiry are then fixed functions of the pairing count and
    /// `now_ms`).
    #[cfg(test)]
    pub fn new(config: Config) -> Engine {
        Engine::seeded(config, Seed::default())
    }

    /// An engine with no connections, its clock's Unix origin and its pair
    /// key given by the driver, and the safety state `config` describes.
    #[cfg(test)]
    pub fn seeded(config: Config, seed: Seed) -> Engine {
        let safety = SafetyHandle::new(config.safety.clone(), seed.unix_start_s * 1000)
            .unwrap_or_else(|e| {
                log::error!("{e}");
                SafetyHandle::default()
            });
        Engine::with_safety(config, seed, safety)
    }

    /// [`Engine::seeded`] sharing `safety` (with the admin door).
    pub fn with_safety(config: Config, seed: Seed, safety: SafetyHandle) -> Engine {
        let chat = Pairing::new(chat_config(&config, seed, &safety));
        Engine::with_chat(config, seed, chat, 0, None, safety)
    }

    /// Loop `thread` of a process whose loops share `process` and `safety`
    /// (made with the same `config` and `seed` for every loop).
    pub fn threaded(
        config: Config,
        seed: Seed,
        process: Arc<Process>,
        thread: usize,
        safety: SafetyHandle,
    ) -> Engine {
        let chat = Pairing::shared(
            chat_config(&config, seed, &safety),
            process.matchmaker.clone(),
            thread,
            process.threads(),
        );
        Engine::with_chat(config, seed, chat, thread, Some(process), safety)
    }

    fn with_chat(
        config: Config,
        seed: Seed,
        chat: Pairing,
        thread: usize,
        process: Option<Arc<Process>>,
        safety: SafetyHandle,
    ) -> Engine {
        Engine {
            sessions: Slab::with_capacity(config.max_connections.min(1 << 16)),
            config,
            chat,
            pool: BufferPool::default(),
            wheel: TimerWheel::new(),
            // The first timers to fire must not allocate mid-traffic
            // either (tests/zero_alloc.rs); it grows past this only when
            // more fire in one turn than ever before.
            fired: Vec::with_capacity(64),
            dirty: Vec::new(),
            actions: VecDeque::new(),
            totals: Totals::default(),
            scratch: Vec::new(),
            text: String::new(),
            now_ms: 0,
            shutdown_deadline_ms: None,
            extra_metrics: None,
            codec: Codec::default(),
            inflated: Vec::new(),
            bans_seen: safety.ban_generation(),
            safety,
            addrs: HashMap::new(),
            unix_start_ms: seed.unix_start_s.saturating_mul(1000),
            next_sweep_ms: 0,
            thread,
            process,
            cross_out: Vec::new(),
        }
    }

    /// Copies this loop's counters where the other loops' `/metrics` read
    /// them (a no-op with one loop). The driver calls it before it writes,
    /// so a client that saw an answer finds it counted.
    pub fn publish(&self) {
        if let Some(mut slot) = self.process.as_ref().and_then(|p| p.snapshot(self.thread)) {
            slot.totals.clone_from(&self.totals);
            slot.chat = self.chat.local_metrics();
            slot.open = self.sessions.len();
        }
    }

    /// Shows the driver's counters (TLS) at the end of `/metrics`.
    pub fn set_extra_metrics(&mut self, extra: Arc<dyn ExtraMetrics>) {
        self.extra_metrics = Some(extra);
    }

    /// Open connections of any kind.
    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    /// Bytes read from every connection so far (driver tests).
    #[cfg(test)]
    pub(crate) fn bytes_received(&self) -> u64 {
        self.totals.bytes_received
    }

    /// A connection from a loopback peer was accepted (tests; see
    /// [`Engine::accept_from`]).
    #[cfg(test)]
    pub fn accept(&mut self, now_ms: u64) -> Option<ConnId> {
        self.accept_from(std::net::Ipv4Addr::LOCALHOST.into(), now_ms)
    }

    /// A connection from `peer` (the TCP peer's address) was accepted: its
    /// id, or None when it must be closed at once (`--max-connections`, or
    /// shutting down).
    pub fn accept_from(&mut self, peer: std::net::IpAddr, now_ms: u64) -> Option<ConnId> {
        self.now_ms = now_ms;
        self.totals.connections += 1;
        let full = match &self.process {
            None => self.sessions.len() >= self.config.max_connections,
            Some(p) => self.shutdown_deadline_ms.is_none() && !p.try_open(),
        };
        if full || self.shutdown_deadline_ms.is_some() {
            self.totals.connections_refused += 1;
            return None;
        }
        let id = self.sessions.insert(Session::new(now_ms));
        self.note_peer(id, peer);
        self.arm(id, now_ms + duration_ms(self.config.handshake_timeout));
        Some(id)
    }

    /// `n` bytes were read into `buf.space()` for connection `id`.
    pub fn receive(&mut self, id: ConnId, buf: &mut ReadBuffer, n: usize, now_ms: u64) {
        self.now_ms = now_ms;
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        self.totals.bytes_received += n as u64;
        session.heard(now_ms);
        let leftover = session.take_leftover();
        let end = READ_HEADROOM.saturating_add(n).min(buf.buf.len());
        if let Some(start) = READ_HEADROOM.checked_sub(leftover.len()) {
            // The usual case: put the leftover back in front, in place.
            let Some(front) = buf.buf.get_mut(start..READ_HEADROOM) else {
                return;
            };
            front.copy_from_slice(&leftover);
            drop(leftover);
            let Some(input) = buf.buf.get_mut(start..end) else {
                return;
            };
            self.consume_input(id, input);
        } else {
            let fresh = buf.buf.get(READ_HEADROOM..end).unwrap_or_default();
            let mut joined = Vec::with_capacity(leftover.len() + fresh.len());
            joined.extend_from_slice(&leftover);
            joined.extend_from_slice(fresh);
            drop(leftover);
            self.consume_input(id, &mut joined);
        }
    }

    /// Runs the connection's machine over `input`; keeps what it left.
    fn consume_input(&mut self, id: ConnId, input: &mut [u8]) {
        let used = self.process(id, input);
        let rest = input.get(used..).unwrap_or_default();
        if let (false, Some(session)) = (rest.is_empty(), self.sessions.get_mut(id)) {
            session.keep_leftover(rest);
        }
    }

    /// Hands `input` to the phase's handler until it stops; the bytes used.
    fn process(&mut self, id: ConnId, input: &mut [u8]) -> usize {
        let mut pos = 0;
        loop {
            let Some(session) = self.sessions.get(id) else {
                return input.len();
            };
            let rest = input.get_mut(pos..).unwrap_or_default();
            match session.phase() {
                Phase::Http { paused: true, .. } => return pos,
                Phase::Http { .. } => match self.on_request(id, rest) {
                    http::Step::NeedMore => return pos,
                    http::Step::Next(used) => pos += used,
                    http::Step::Stop => return input.len(),
                },
                Phase::Open { .. } | Phase::Closing { .. } => {
                    return pos + self.on_frames(id, rest);
                }
                // Failed or finished: input is discarded unread.
                Phase::Draining { .. } => return input.len(),
            }
        }
    }

    /// False while the connection takes no input (the driver stops reading
    /// it until [`Action::Resume`]).
    pub fn wants_input(&self, id: ConnId) -> bool {
        self.sessions.get(id).is_some_and(Session::wants_input)
    }

    /// The peer ended its stream (read returned 0).
    pub fn receive_eof(&mut self, id: ConnId, now_ms: u64) {
        self.now_ms = now_ms;
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        match session.phase() {
            // A half-closed HTTP client still gets the answers it is owed,
            // and the connection goes as soon as they are out.
            Phase::Http { .. } if !session.out.is_empty() => {
                session.start_draining(now_ms, &mut self.pool);
                session.peer_closed();
                self.arm(id, now_ms + duration_ms(self.config.close_timeout));
            }
            _ => self.close_now(id),
        }
    }

    /// The socket failed (a read or write error): the connection is gone.
    pub fn connection_lost(&mut self, id: ConnId, now_ms: u64) {
        self.now_ms = now_ms;
        self.close_now(id);
    }

    // ---- output ------------------------------------------------------

    /// Moves the connections with output to flush into `into` (emptied
    /// first), in the order they got it.
    pub fn take_dirty(&mut self, into: &mut Vec<ConnId>) {
        into.clear();
        std::mem::swap(&mut self.dirty, into);
        for &id in into.iter() {
            if let Some(s) = self.sessions.get_mut(id) {
                s.dirty = false;
            }
        }
    }

    /// The bytes connection `id` is owed (empty if none, or if it is gone).
    pub fn output(&self, id: ConnId) -> &[u8] {
        self.sessions
            .get(id)
            .map(|s| s.out.unsent())
            .unwrap_or_default()
    }

    /// `n` bytes of [`Engine::output`] were written.
    pub fn written(&mut self, id: ConnId, n: usize) {
        if let Some(session) = self.sessions.get_mut(id) {
            self.totals.bytes_sent += n as u64;
            session.out.consume(n, &mut self.pool);
        }
    }

    /// The driver wrote all the socket would take of [`Engine::output`]:
    /// either everything (what comes after the output happens now), or the
    /// socket is full (ask for WRITABLE; close a reader that let too much
    /// pile up).
    pub fn flushed(&mut self, id: ConnId) {
        let Some(session) = self.sessions.get(id) else {
            return;
        };
        if session.out.is_empty() {
            self.drained(id);
        } else {
            self.write_blocked(id);
        }
    }

    /// Everything owed went out.
    fn drained(&mut self, id: ConnId) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        if session.wants_writable {
            session.wants_writable = false;
            self.actions.push_back((id, Action::Writable(false)));
        }
        match session.phase() {
            Phase::Http { paused: true, .. } => self.resume(id),
            Phase::Draining { peer_closed, .. } => {
                let close = *peer_closed || self.shutdown_deadline_ms.is_some();
                if session.shut_write() {
                    self.actions.push_back((id, Action::ShutdownWrite));
                }
                if close {
                    // Nothing is left to wait for.
                    self.close_now(id);
                }
            }
            _ => {}
        }
    }

    fn write_blocked(&mut self, id: ConnId) {
        let cap = self.config.effective_max_output();
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        if !session.wants_writable {
            session.wants_writable = true;
            self.actions.push_back((id, Action::Writable(true)));
        }
        let unsent = session.out.unsent_len();
        if unsent <= cap {
            return;
        }
        match session.phase() {
            Phase::Open { .. } => {
                log::warn!("connection {id}: {unsent} bytes unsent, closing slow reader");
                self.totals.slow_readers_closed += 1;
                self.fail(id, Ending::SlowReader);
            }
            // Pipelining pauses long before this; a client that still
            // gets here reads nothing at all.
            Phase::Http { .. } => self.close_now(id),
            // Already closing: the close wait ends it.
            Phase::Closing { .. } | Phase::Draining { .. } => {}
        }
    }

    /// The next thing for the driver to do, in order.
    pub fn poll_action(&mut self) -> Option<(ConnId, Action)> {
        self.actions.pop_front()
    }

    // ---- time --------------------------------------------------------

    /// The earliest time [`Engine::handle_timeout`] is due, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        [
            self.wheel.next_wake_ms(),
            self.chat.next_deadline(),
            self.shutdown_deadline_ms,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every timer due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.fire_timers();
        self.safety_turn();
    }

    // ---- shutdown ----------------------------------------------------

    /// SIGTERM: every session gets close 1001, HTTP connections finish
    /// their answers; partners are not told that their stranger left,
    /// since they are going too. Accepts are refused from now on.
    pub fn begin_shutdown(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        if self.shutdown_deadline_ms.is_some() {
            return;
        }
        self.shutdown_deadline_ms = Some(now_ms + duration_ms(self.config.shutdown_grace));
        let ids: Vec<ConnId> = self.sessions.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.leave_chat_silently(id);
            let Some(session) = self.sessions.get(id) else {
                continue;
            };
            match session.phase() {
                Phase::Open { .. } => self.go_away(id, Ending::ShuttingDown),
                Phase::Http { .. } if session.out.is_empty() => self.close_now(id),
                Phase::Http { .. } => self.drain(id),
                Phase::Closing { .. } => {}
                Phase::Draining { .. } if session.out.is_empty() => self.close_now(id),
                Phase::Draining { .. } => {}
            }
        }
    }

    /// Shutdown is over: every connection is gone or the grace has passed.
    pub fn shutdown_complete(&self, now_ms: u64) -> bool {
        self.shutdown_deadline_ms
            .is_some_and(|deadline| self.sessions.is_empty() || now_ms >= deadline)
    }

    // ---- closing -----------------------------------------------------

    /// Drops the connection now (the peer is gone, or has had its chance).
    fn close_now(&mut self, id: ConnId) {
        if !self.sessions.contains(id) {
            return;
        }
        self.leave_chat(id);
        self.forget_peer(id);
        if let Some(session) = self.sessions.try_remove(id) {
            if let Some(p) = &self.process {
                p.closed();
            }
            session.release(&mut self.pool);
            self.actions.push_back((id, Action::Close));
        }
    }

    /// Answers are out once flushed; then our FIN; then wait for the
    /// peer's (or the close wait).
    fn drain(&mut self, id: ConnId) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        session.start_draining(self.now_ms, &mut self.pool);
        self.mark_dirty(id);
        self.arm(id, self.now_ms + duration_ms(self.config.close_timeout));
    }

    fn resume(&mut self, id: ConnId) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        session.set_paused(false);
        // Requests already read wait in the leftover: answer them now.
        let mut kept = session.take_leftover();
        if !kept.is_empty() {
            self.consume_input(id, &mut kept);
        }
        if self.wants_input(id) {
            self.actions.push_back((id, Action::Resume));
        }
    }

    // ---- shared helpers ------------------------------------------------

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(session) = self.sessions.get_mut(id) {
            if !session.dirty {
                session.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Appends one frame to the connection's output (the echo path: one
    /// slab lookup per message). A data frame goes through the loop's
    /// codec only on a session that negotiated compression.
    fn queue_frame(&mut self, id: ConnId, opcode: OpCode, payload: &[u8]) {
        if let Some(session) = self.sessions.get_mut(id) {
            let deflate = session.deflate();
            let out = session.out.writer(&mut self.pool);
            match deflate {
                Some(window) if !opcode.is_control() => self.codec.write_message(
                    out,
                    opcode,
                    payload,
                    Some(window),
                    self.config.deflate_min_size,
                ),
                _ => encode::write_frame(out, opcode, payload),
            }
            if !session.dirty {
                session.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Splits off the pairing machine and a mailer that delivers its
    /// messages into connections' output.
    fn mailer(&mut self) -> (&mut Pairing, Mailer<'_>) {
        (
            &mut self.chat,
            Mailer {
                sessions: &mut self.sessions,
                pool: &mut self.pool,
                dirty: &mut self.dirty,
                scratch: &mut self.scratch,
                codec: &mut self.codec,
                deflate_min_size: self.config.deflate_min_size,
                cross: &mut self.cross_out,
            },
        )
    }

    /// The chat forgets the client; its partner is told it left.
    fn leave_chat(&mut self, id: ConnId) {
        if self.sessions.get(id).is_some_and(Session::is_chatting) {
            let now = self.now_ms;
            let (chat, mut mailer) = self.mailer();
            chat.on_disconnect(id, now, &mut mailer);
        }
    }

    /// The chat forgets the client without telling anyone (shutdown).
    fn leave_chat_silently(&mut self, id: ConnId) {
        if self.sessions.get(id).is_some_and(Session::is_chatting) {
            self.chat.on_disconnect(id, self.now_ms, &mut Discard);
        }
    }
}

/// Delivers chat messages as text frames to open chat sessions.
struct Mailer<'a> {
    sessions: &'a mut Slab<Session>,
    pool: &'a mut BufferPool,
    dirty: &'a mut Vec<ConnId>,
    scratch: &'a mut Vec<u8>,
    codec: &'a mut Codec,
    deflate_min_size: usize,
    cross: &'a mut Vec<u8>,
}

impl Outbox for Mailer<'_> {
    fn send(&mut self, to: ClientId, msg: &ServerMsg<'_>) {
        let Some(session) = self.sessions.get_mut(to) else {
            return;
        };
        if !session.is_chatting() {
            return;
        }
        self.scratch.clear();
        protocol::write_json(self.scratch, msg);
        let deflate = session.deflate();
        self.codec.write_message(
            session.out.writer(self.pool),
            OpCode::Text,
            self.scratch,
            deflate,
            self.deflate_min_size,
        );
        if !session.dirty {
            session.dirty = true;
            self.dirty.push(to);
        }
    }

    fn cross(&mut self, event: &Cross<'_>) {
        self.encode_cross(event);
    }
}

/// An outbox that delivers nothing (clients leaving at shutdown).
struct Discard;

impl Outbox for Discard {
    fn send(&mut self, _to: ClientId, _msg: &ServerMsg<'_>) {}
}

/// The chat's settings from the server's.
fn chat_config(config: &Config, seed: Seed, safety: &SafetyHandle) -> ChatConfig {
    ChatConfig {
        interest_wait_ms: duration_ms(config.interest_wait),
        rate_per_sec: config.rate_limit,
        video: VideoConfig::new(
            &config.ice_servers,
            config.turn_secret.clone(),
            config.turn_ttl.as_secs(),
        ),
        pair_key: seed.pair_key,
        unix_start_s: seed.unix_start_s,
        safety: safety.clone(),
    }
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
