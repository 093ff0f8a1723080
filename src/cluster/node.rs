//! The cluster thread: the one place that talks to Redis (`--redis`).
//!
//! Its own `mio::Poll`, two non-blocking connections (commands: EVALSHA,
//! PUBLISH, heartbeats; subscriber: this node's channel), timers and
//! reconnects. It is one more participant of the loops' mesh
//! (`server/link.rs`): records the loops address to other nodes arrive in
//! its rings, are batched per node per turn and published in order on the
//! one command connection (so per-sender order holds); what other nodes
//! publish to this one is pushed into the loops' rings. The matchmaker
//! (shared, behind its lock) queues script calls for it and hears the
//! answers, offers, accepts and deaths from it. The event loops never
//! wait on Redis.
//!
//! # Timers and failure handling
//!
//! * Every [`BEAT_MS`]: the `beat` script (node key with counts, `PX
//!   3000`; every live node's counts back) and a probe published on our own
//!   channel. No probe back within [`PROBE_MS`]: the subscriber is silently
//!   dead, reconnect.
//! * Every command has [`TIMEOUT_MS`] from send to reply, and connecting
//!   (to the subscription confirmed and the script loaded) the same; a
//!   timeout, an error reply or a closed socket drops both connections.
//!   What is waiting in the sockets is read before a deadline is judged,
//!   and time this thread did not run is not counted (`node/deadlines.rs`).
//! * Down: reconnect after a backoff of 100 ms doubling to 2 s. Records
//!   for other nodes are dropped and counted; after `--redis-grace`
//!   cross-node pairs end with `left` `disconnected`. Up again: the script
//!   is loaded, the node key set, the cross-node pairs compared with every
//!   live node's (`chat/matchmaker/cluster/reconcile.rs`), every queued
//!   client re-joined.
//! * Other nodes are judged dead (absent from `beat`) only once this node
//!   has been connected for [`JUDGE_AFTER_MS`].
//!
//! `node/inbound.rs` handles what Redis sends back, `conn.rs` is one
//! connection, `records.rs` turns the matchmaker's decisions into records.

mod deadlines;
mod inbound;
mod lifecycle;
mod outbound;

use super::conn::{Conn, MAX_UNSENT};
use super::proto::node_hex;
use super::records::{batch, Out};
use super::script::{self, Op};
use super::view::ClusterView;
use super::RedisUrl;
use crate::chat::matchmaker::{Command, Matchmaker};
use crate::engine::{forwarded, record_len};
use crate::server::link::Link;
use log::warn;
use mio::{Events, Poll, Token};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The waker's token (the loops and the matchmaker wake the thread).
pub const WAKER: Token = Token(0);
const CMD: Token = Token(1);
const SUB: Token = Token(2);

/// Heartbeat period.
pub const BEAT_MS: u64 = 1000;
/// A probe must come back within this.
pub const PROBE_MS: u64 = 3000;
/// Every Redis call (and connecting) must be answered within this.
pub const TIMEOUT_MS: u64 = 1000;
/// Connected this long before other nodes are judged dead.
pub const JUDGE_AFTER_MS: u64 = 3000;
const BACKOFF_MIN_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 2000;
/// How long SIGTERM waits for the goodbye to be written.
const FLUSH_MS: u64 = 1000;

/// What the cluster thread is given at start.
pub struct Setup {
    /// Where Redis is.
    pub url: RedisUrl,
    /// `--cluster`.
    pub name: String,
    /// `--redis-grace` in ms.
    pub grace_ms: u64,
    /// This node's id.
    pub node: u64,
    /// Event loops of the node.
    pub threads: usize,
    /// The process's time zero (the loops' `now_ms`).
    pub start: Instant,
    /// Bans made here go to the other nodes and theirs come here.
    pub safety: crate::safety::SafetyHandle,
}

/// What a command-connection reply answers.
enum Sent {
    Ignore,
    Load,
    Op(Op),
    Beat,
}

enum Phase {
    Down {
        retry_ms: u64,
    },
    Connecting {
        since_ms: u64,
        loaded: bool,
        subscribed: bool,
    },
    Up {
        since_ms: u64,
    },
}

/// The cluster thread (see the module doc).
pub struct ClusterThread {
    poll: Poll,
    setup: Setup,
    prefix: Vec<u8>,
    channel: Vec<u8>,
    bans_channel: Vec<u8>,
    sha: String,
    link: Link,
    matchmaker: Arc<Mutex<Matchmaker>>,
    view: Arc<ClusterView>,
    cmd: Option<Conn>,
    sub: Option<Conn>,
    /// Bound: the commands written and not answered, each answered or
    /// timed out within [`TIMEOUT_MS`].
    inflight: VecDeque<(Sent, u64)>,
    phase: Phase,
    backoff_ms: u64,
    /// When Redis was lost (None while up); the grace runs from here.
    down_since_ms: Option<u64>,
    grace_done: bool,
    ever_up: bool,
    next_beat_ms: u64,
    beat_sent_ms: u64,
    /// When the last answered heartbeat was sent: our node key lives
    /// until `NODE_TTL_MS` after it.
    beat_ok_ms: u64,
    probe_seen_ms: u64,
    /// Live nodes of the last heartbeat (the goodbye goes to them).
    live: Vec<u64>,
    /// Records per node this turn. Bound: one turn's worth of the loops'
    /// rings.
    batches: Vec<(u64, Vec<u8>)>,
    /// Records for the loops (from other nodes, and the matchmaker's),
    /// pushed into their rings after every read slice and every turn.
    /// Bound: one read budget's worth (`conn::READ_BUDGET`) plus one
    /// turn's decisions.
    to_loops: Vec<u8>,
    /// The matchmaker's records, routed every turn (reused).
    decided: Vec<u8>,
    /// The matchmaker's commands, sent every turn. Bound: its queue's.
    commands: Vec<Command>,
}

impl ClusterThread {
    /// A thread polling `poll` (whose waker, [`WAKER`], the matchmaker and
    /// the loops hold), speaking for `setup.node` through `link`.
    pub fn new(
        poll: Poll,
        setup: Setup,
        link: Link,
        matchmaker: Arc<Mutex<Matchmaker>>,
        view: Arc<ClusterView>,
    ) -> ClusterThread {
        let prefix = format!("{{{}}}", setup.name).into_bytes();
        let channel = format!("{{{}}}:n:{}", setup.name, node_hex(setup.node)).into_bytes();
        let bans_channel = format!("{{{}}}:bans", setup.name).into_bytes();
        ClusterThread {
            poll,
            bans_channel,
            prefix,
            channel,
            sha: script::sha1_hex(),
            link,
            matchmaker,
            view,
            cmd: None,
            sub: None,
            inflight: VecDeque::new(),
            phase: Phase::Down { retry_ms: 0 },
            backoff_ms: BACKOFF_MIN_MS,
            down_since_ms: Some(0),
            grace_done: true,
            ever_up: false,
            next_beat_ms: 0,
            beat_sent_ms: 0,
            beat_ok_ms: 0,
            probe_seen_ms: 0,
            live: Vec::new(),
            batches: Vec::new(),
            to_loops: Vec::new(),
            decided: Vec::new(),
            commands: Vec::new(),
            setup,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.setup.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs until the process shuts down.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(16);
        loop {
            let before = self.now_ms();
            let timeout = self.timeout(before);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    warn!("cluster: poll failed: {e}");
                    return;
                }
            }
            let now = self.now_ms();
            self.forgive(deadlines::stalled_ms(before, timeout, now));
            // Read before judging a deadline: the answer may be waiting in
            // the socket. Declaring Redis lost then would drop the reply to
            // a join whose stranger's node has already accepted: a pair
            // only one side knows.
            let io = events.iter().any(|e| e.token() == CMD || e.token() == SUB);
            if io || self.failure_due(now).is_some() {
                // Replies first, then what other nodes published: an answer
                // to our offer comes after our script's reply on the wire,
                // on the other connection (a reordering is still handled:
                // the matchmaker keeps early answers). The subscription is
                // read even when the command connection failed: an accept
                // already there still reaches the matchmaker.
                let cmd = self.on_cmd(now);
                let sub = self.on_sub(now);
                if let Err(why) = cmd.and(sub) {
                    self.down(now, &why);
                }
            }
            if self.link.shutting_down() {
                self.goodbye();
                return;
            }
            self.turn(now);
            let end = self.now_ms();
            self.forgive(deadlines::stalled_ms(now, Duration::ZERO, end));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Matchmaker> {
        self.matchmaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn up(&self) -> bool {
        matches!(self.phase, Phase::Up { .. })
    }

    /// One turn: records from the loops, the matchmaker's commands and
    /// timers, then everything written out.
    fn turn(&mut self, now: u64) {
        let up = self.up();
        let mut dropped = 0;
        {
            let incoming = self.link.take_incoming();
            let mut at = 0;
            while let Some(len) = incoming.get(at..).and_then(record_len) {
                if let Some((node, inner)) = incoming.get(at..at + len).and_then(forwarded) {
                    if up {
                        batch(&mut self.batches, node, inner);
                    } else {
                        dropped += 1;
                    }
                }
                at += len;
            }
        }
        let overflow = {
            let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Out::new(self.setup.threads, &mut self.decided);
            mm.cluster_tick(now, &mut out);
            ClusterView::add(&self.view.pairs, out.pairs);
            mm.cluster_commands(&mut self.commands)
        };
        if overflow {
            self.down(now, "the command queue overflowed");
        }
        self.timers(now);
        self.send_commands(now);
        self.share_bans(now);
        self.route_decided();
        self.publish_batches(now);
        ClusterView::add(&self.view.dropped, dropped);
        self.flush(now);
        self.flush_to_loops();
    }

    /// Records for the loops go into their rings (relays that do not fit
    /// are dropped and counted; `paired`/`left` wait in the backlog).
    fn flush_to_loops(&mut self) {
        if !self.to_loops.is_empty() || self.link.has_backlog() {
            let lost = self.link.push_records(&self.to_loops);
            ClusterView::add(&self.view.dropped, lost);
            self.to_loops.clear();
        }
    }

    fn flush(&mut self, now: u64) {
        for which in [CMD, SUB] {
            let conn = if which == CMD {
                &mut self.cmd
            } else {
                &mut self.sub
            };
            if let Some(c) = conn {
                if let Err(e) = c.flush() {
                    self.down(now, &format!("write: {e}"));
                    return;
                }
                if c.unsent.len() > 2 * MAX_UNSENT {
                    self.down(now, "Redis does not take what we send");
                    return;
                }
            }
        }
    }
}
