//! One client place of the soak: a connection at a time, from connect to
//! leave, then the next one.
//!
//! The socket side lives here (connect, upgrade, frames, the six ways to
//! leave); what a client says and checks is in `talk` (chat) and `echoes`.
//! Stages after the leave has begun are bounded: a close frame waits at
//! most [`ANSWER_WAIT`] for the server's, a FIN as long for its EOF; a
//! connect or upgrade that takes longer than that counts as a failure.
//!
//! `input` reads (the response head, frames, the EOF after a FIN); `leave`
//! talks and leaves.

use std::io::{self, Write};
use std::net::Shutdown;

use chat::ws::{Decoder, Role};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::echoes::EchoState;
use super::plan::{Kind, Leave, Plan, MS};
use super::talk::{ChatState, Ledger};
use super::tally::Tally;
use crate::conn::{handshake_request, new_key};
use crate::rng::Rng;
use crate::socket::connect_nonblocking;
use crate::target::Target;

mod input;
mod leave;

/// How long the server has to answer a close frame or a FIN, and to
/// accept and upgrade a connection.
pub const ANSWER_WAIT: u64 = 5_000 * MS;
/// A response head larger than this is refused.
const MAX_HEAD: usize = 16 * 1024;
/// Pending output beyond which a client stops adding more (nothing it
/// sends comes near: chat lines are short, echoes are bounded in flight).
const MAX_OUT: usize = 256 * 1024;
/// Largest message accepted from the server.
const MAX_MESSAGE: usize = 1 << 20;

pub enum Stage {
    /// No connection; the next one starts at this time (`u64::MAX`: never).
    Free(u64),
    Connecting,
    Handshake,
    Open,
    /// Our close frame is out; waiting for the server's until then.
    Closing(u64),
    /// Our FIN is out; reading to the server's EOF until then.
    Draining(u64),
    /// Stopped reading and sent FIN; the socket is closed then.
    Holding(u64),
}

enum App {
    Chat(ChatState),
    Echo(EchoState),
}

/// What the run lends a slot for one step.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub buf: &'a mut [u8],
    pub ledger: &'a mut Ledger,
    pub t: &'a mut Tally,
    pub chat: &'a Target,
    pub echo: &'a Target,
    pub sources: u8,
    pub seed: u64,
    pub max_life: u64,
    /// The run is ending: leave now, start nothing new.
    pub stopping: bool,
    pub now: u64,
}

pub struct Slot {
    pub stage: Stage,
    token: Token,
    stream: Option<TcpStream>,
    serial: u64,
    rng: Rng,
    plan: Plan,
    mask: [u8; 4],
    key: String,
    /// Mid-handshake: only part of the request head went out.
    request_cut: bool,
    reading: bool,
    /// Connect and upgrade must be done by then.
    limit: u64,
    leave_at: u64,
    act_at: u64,
    /// Unprocessed input: a response head, or (decoder contract) at most a
    /// frame header or control frame.
    partial: Vec<u8>,
    decoder: Decoder,
    message: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    shut_after_flush: bool,
    app: App,
}

impl Slot {
    pub fn new(token: usize) -> Slot {
        Slot {
            stage: Stage::Free(0),
            token: Token(token),
            stream: None,
            serial: 0,
            rng: Rng::seeded(0, 0),
            plan: Plan::draw(&mut Rng::seeded(0, 0), 0),
            mask: [0; 4],
            key: String::new(),
            request_cut: false,
            reading: true,
            limit: 0,
            leave_at: 0,
            act_at: 0,
            partial: Vec::new(),
            decoder: Decoder::new(Role::Client, MAX_MESSAGE),
            message: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            shut_after_flush: false,
            app: App::Echo(EchoState::new()),
        }
    }

    /// When this slot next needs its timer.
    pub fn deadline(&self) -> u64 {
        match self.stage {
            Stage::Free(at) | Stage::Closing(at) | Stage::Draining(at) | Stage::Holding(at) => at,
            Stage::Connecting => self.limit,
            Stage::Handshake if self.request_cut => self.leave_at,
            Stage::Handshake => self.limit,
            Stage::Open => self.leave_at.min(self.act_at),
        }
    }

    /// The run is ending: start no new connection, and leave now.
    pub fn hurry(&mut self, now: u64) {
        match self.stage {
            Stage::Free(_) => self.stage = Stage::Free(u64::MAX),
            Stage::Open | Stage::Handshake => self.leave_at = self.leave_at.min(now),
            _ => {}
        }
    }

    /// Connection `serial` takes this place.
    pub fn start(&mut self, serial: u64, cx: &mut Ctx<'_>) {
        self.serial = serial;
        self.rng = Rng::seeded(cx.seed, serial);
        self.plan = Plan::draw(&mut self.rng, cx.max_life);
        self.mask = (self.rng.next() as u32).to_ne_bytes();
        self.key = new_key(&mut self.rng);
        self.request_cut = false;
        self.reading = true;
        self.limit = cx.now + ANSWER_WAIT;
        self.partial.clear();
        self.decoder = Decoder::new(Role::Client, MAX_MESSAGE);
        self.message = Vec::new();
        self.out.clear();
        self.out_pos = 0;
        self.shut_after_flush = false;
        self.app = match self.plan.kind {
            Kind::Chat => App::Chat(ChatState::new(serial, cx.now)),
            Kind::Echo => App::Echo(EchoState::new()),
        };
        cx.t.started += 1;
        let target = self.target(cx);
        let connected = connect_nonblocking(target.addr, serial as usize, cx.sources, false)
            .and_then(|mut s| {
                let interest = Interest::READABLE | Interest::WRITABLE;
                cx.registry.register(&mut s, self.token, interest)?;
                Ok(s)
            });
        match connected {
            Ok(s) => {
                self.stream = Some(s);
                self.stage = Stage::Connecting;
            }
            Err(e) => {
                cx.t.violation(|v| &mut v.connect, format!("connect: {e}"));
                self.finish(cx);
            }
        }
    }

    pub(super) fn target<'t>(&self, cx: &Ctx<'t>) -> &'t Target {
        match self.plan.kind {
            Kind::Chat => cx.chat,
            Kind::Echo => cx.echo,
        }
    }

    /// The connection is gone (or never came): the place frees up.
    pub(super) fn finish(&mut self, cx: &mut Ctx<'_>) {
        if let Some(mut s) = self.stream.take() {
            let _ = cx.registry.deregister(&mut s);
        }
        if let App::Chat(_) = self.app {
            cx.ledger.gone(self.serial);
        }
        self.out = Vec::new();
        self.partial = Vec::new();
        self.message = Vec::new();
        let pause = self.rng.below(100) * MS;
        self.stage = Stage::Free(if cx.stopping {
            u64::MAX
        } else {
            cx.now + pause
        });
    }

    /// Socket readiness (`readable` includes the peer's close and errors).
    /// Pending output is written whatever the event: after a connect
    /// completes the request is queued, and a flush with nothing pending
    /// costs nothing.
    pub fn on_event(&mut self, readable: bool, cx: &mut Ctx<'_>) {
        match self.stage {
            Stage::Connecting => self.on_connecting(cx),
            Stage::Handshake if readable => self.read_head(cx),
            Stage::Open | Stage::Closing(_) if readable && self.reading => self.read_frames(cx),
            Stage::Draining(_) if readable => self.read_to_eof(cx),
            _ => {}
        }
        self.flush(cx);
    }

    /// Deadlines due by `cx.now`.
    pub fn on_timer(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now;
        match self.stage {
            Stage::Free(at) if at <= now => {} // started by the run, which has the serial
            Stage::Connecting | Stage::Handshake if self.request_cut && self.leave_at <= now => {
                self.leave(cx)
            }
            Stage::Connecting | Stage::Handshake if self.limit <= now => {
                cx.t.violation(|v| &mut v.connect, "connect/upgrade took over 5 s".into());
                self.finish(cx);
            }
            Stage::Open => {
                if self.act_at <= now {
                    self.act(cx);
                }
                if self.leave_at <= now && matches!(self.stage, Stage::Open) {
                    self.leave(cx);
                }
            }
            Stage::Closing(until) if until <= now => {
                cx.t.closes_unanswered += 1;
                self.finish(cx);
            }
            Stage::Draining(until) if until <= now => {
                cx.t.fins_unanswered += 1;
                self.finish(cx);
            }
            Stage::Holding(until) if until <= now => self.finish(cx),
            _ => {}
        }
        self.flush(cx);
    }

    fn on_connecting(&mut self, cx: &mut Ctx<'_>) {
        let Some(s) = self.stream.as_ref() else {
            return;
        };
        let failed = match s.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match s.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failed {
            cx.t.violation(|v| &mut v.connect, format!("connect: {e}"));
            return self.finish(cx);
        }
        let request = handshake_request(self.target(cx), &self.key);
        let mut bytes = request.as_bytes();
        if let Leave::MidHandshake { .. } = self.plan.leave {
            let cut = self.rng.between(1, bytes.len() as u64 - 1) as usize;
            bytes = bytes.get(..cut).unwrap_or(bytes);
            self.request_cut = true;
            self.leave_at = cx.now + self.plan.life;
            if cx.stopping {
                self.leave_at = cx.now;
            }
        }
        self.out.extend_from_slice(bytes);
        self.stage = Stage::Handshake;
    }

    /// Writes pending output; the FIN follows it when one is asked for.
    pub(super) fn flush(&mut self, cx: &mut Ctx<'_>) {
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        while self.out_pos < self.out.len() {
            match s.write(self.out.get(self.out_pos..).unwrap_or_default()) {
                Ok(0) => return, // nothing taken: try again on the next edge
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if matches!(self.stage, Stage::Open | Stage::Closing(_)) {
                        cx.t.violation(|v| &mut v.bad_close, format!("write: {e}"));
                    }
                    return self.finish(cx);
                }
            }
        }
        self.out.clear();
        self.out_pos = 0;
        if self.shut_after_flush {
            self.shut_after_flush = false;
            let _ = s.shutdown(Shutdown::Write);
        }
    }
}
