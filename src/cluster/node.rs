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
//! * Down: reconnect after a backoff of 100 ms doubling to 2 s. Records
//!   for other nodes are dropped and counted; after `--redis-grace`
//!   cross-node pairs end with `left` `disconnected`. Up again: the script
//!   is loaded, the node key set, every queued client re-joined.
//! * Other nodes are judged dead (absent from `beat`) only once this node
//!   has been connected for [`JUDGE_AFTER_MS`].

use super::proto::{self, node_hex, Message};
use super::resp::{self, Value};
use super::script::{self, Op, Reply};
use super::view::ClusterView;
use super::RedisUrl;
use crate::chat::matchmaker::{Command, Gid, MatchOut, Matchmaker, Member};
use crate::chat::peer::{Address, Cross};
use crate::chat::protocol::LeftReason;
use crate::chat::PairId;
use crate::engine::{encode_cross, forwarded, left_target, record_len};
use crate::server::link::Link;
use log::{info, warn};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
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
/// Unsent bytes a connection may hold; over it the connection is dropped
/// (Redis does not keep up: nothing is buffered without bound).
const MAX_UNSENT: usize = 8 * 1024 * 1024;
/// Unparsed reply bytes a connection may hold (a reply is bounded by
/// `resp::MAX_BULK`, and at most [`READ_BUDGET`] is read before parsing).
const MAX_UNREAD: usize = resp::MAX_BULK + READ_BUDGET + 64 * 1024;
/// Bytes read from a connection before what they hold is handled.
const READ_BUDGET: usize = 1024 * 1024;
/// Bytes of records published in one PUBLISH.
const MAX_BATCH: usize = 256 * 1024;
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

/// A non-blocking connection to Redis with its buffers.
struct Conn {
    stream: TcpStream,
    unsent: Vec<u8>,
    unread: Vec<u8>,
    /// How much of `unread` is parsed (dropped at the next read).
    parsed: usize,
}

impl Conn {
    /// Writes what it can; Err: the connection is lost.
    fn flush(&mut self) -> io::Result<()> {
        while !self.unsent.is_empty() {
            match self.stream.write(&self.unsent) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads up to [`READ_BUDGET`] more bytes: Ok(true) when the socket
    /// is drained (WouldBlock), Ok(false) when the budget ran out first
    /// (parse, then read again); Err: lost, closed, or one reply over
    /// [`MAX_UNREAD`].
    fn fill(&mut self) -> io::Result<bool> {
        if self.parsed > 0 {
            self.unread.drain(..self.parsed.min(self.unread.len()));
            self.parsed = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let mut read = 0;
        while read < READ_BUDGET {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    read += n;
                    self.unread
                        .extend_from_slice(chunk.get(..n).unwrap_or_default());
                    if self.unread.len() > MAX_UNREAD {
                        return Err(ErrorKind::InvalidData.into());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// The next complete reply; Err: not RESP.
    fn next(&mut self) -> Result<Option<Value>, resp::Error> {
        let rest = self.unread.get(self.parsed..).unwrap_or_default();
        match resp::decode(rest)? {
            Some((v, used)) => {
                self.parsed += used;
                Ok(Some(v))
            }
            None => Ok(None),
        }
    }

    fn send(&mut self, args: &[&[u8]]) {
        resp::encode(&mut self.unsent, args);
    }
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
    /// Records for the loops (from other nodes, and the matchmaker's).
    to_loops: Vec<u8>,
    /// The matchmaker's records (reused).
    decided: Vec<u8>,
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
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    warn!("cluster: poll failed: {e}");
                    return;
                }
            }
            let now = self.now_ms();
            let io = events.iter().any(|e| e.token() == CMD || e.token() == SUB);
            if io {
                // Replies first, then what other nodes published: an answer
                // to our offer comes after our script's reply on the wire,
                // on the other connection (a reordering is still handled:
                // the matchmaker keeps early answers).
                let result = self.on_cmd(now).and_then(|()| self.on_sub(now));
                if let Err(why) = result {
                    self.down(now, &why);
                }
            }
            if self.link.shutting_down() {
                self.goodbye();
                return;
            }
            self.turn(now);
        }
    }

    fn timeout(&self) -> Duration {
        let now = self.now_ms();
        let mut at = now + BEAT_MS;
        match self.phase {
            Phase::Down { retry_ms } => at = at.min(retry_ms),
            Phase::Connecting { since_ms, .. } => at = at.min(since_ms + TIMEOUT_MS),
            Phase::Up { .. } => at = at.min(self.next_beat_ms),
        }
        if let Some(&(_, sent)) = self.inflight.front() {
            at = at.min(sent + TIMEOUT_MS);
        }
        if let (Some(since), false) = (self.down_since_ms, self.grace_done) {
            at = at.min(since + self.setup.grace_ms);
        }
        if let Some(d) = self.lock().cluster_deadline() {
            at = at.min(d);
        }
        if self.link.has_backlog() {
            at = at.min(now + 10);
        }
        Duration::from_millis(at.saturating_sub(now))
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

    fn timers(&mut self, now: u64) {
        match self.phase {
            Phase::Down { retry_ms } if now >= retry_ms => self.connect(now),
            Phase::Connecting { since_ms, .. } if now >= since_ms + TIMEOUT_MS => {
                self.down(now, "connecting timed out")
            }
            Phase::Up { since_ms } => {
                if now >= since_ms + PROBE_MS && now >= self.probe_seen_ms + PROBE_MS {
                    self.down(now, "our own probe did not come back (subscriber lost)");
                } else if now >= self.next_beat_ms {
                    self.beat(now);
                }
            }
            _ => {}
        }
        if self
            .inflight
            .front()
            .is_some_and(|&(_, sent)| now >= sent + TIMEOUT_MS)
        {
            self.down(now, "a call timed out");
        }
        if let (Some(since), false) = (self.down_since_ms, self.grace_done) {
            if now >= since + self.setup.grace_ms {
                self.grace_done = true;
                info!("cluster: Redis gone for the grace period: cross-node pairs end");
                let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
                mm.cluster_grace_over(&mut Out::new(self.setup.threads, &mut self.decided));
            }
        }
    }

    fn beat(&mut self, now: u64) {
        self.next_beat_ms = now + BEAT_MS;
        let counts = self.lock().counts();
        self.beat_sent_ms = now;
        let op = Op::Beat {
            node: self.setup.node,
            counts,
        };
        self.eval(op, Sent::Beat, now);
        let probe = format!("P{now}");
        if let Some(cmd) = &mut self.cmd {
            cmd.send(&[b"PUBLISH", &self.channel, probe.as_bytes()]);
            self.inflight.push_back((Sent::Ignore, now));
        }
    }

    fn eval(&mut self, op: Op, sent: Sent, now: u64) {
        let Some(cmd) = &mut self.cmd else {
            return;
        };
        let args = op.args();
        let mut all: Vec<&[u8]> = vec![b"EVALSHA", self.sha.as_bytes(), b"1", &self.prefix];
        all.extend(args.iter().map(Vec::as_slice));
        cmd.send(&all);
        let sent = match sent {
            Sent::Op(_) => Sent::Op(op),
            other => other,
        };
        self.inflight.push_back((sent, now));
    }

    fn send_commands(&mut self, now: u64) {
        let commands = std::mem::take(&mut self.commands);
        for c in commands {
            if !self.up() {
                break;
            }
            match c {
                Command::Op(op) => self.eval(op.clone(), Sent::Op(op), now),
                Command::Publish { node, payload } => self.publish(node, &payload, now),
                Command::Block { a, b, ttl_ms } => self.block(a, b, ttl_ms, now),
            }
        }
    }

    /// Bans made here since the last turn, to every node (while down they
    /// stay on this node only).
    fn share_bans(&mut self, now: u64) {
        let bans = self.setup.safety.take_shared_bans();
        if bans.is_empty() || !self.up() {
            return;
        }
        for ban in bans {
            let from = proto::BanFrom {
                node: self.setup.node,
                ban,
            };
            let mut payload = vec![b'B'];
            let _ = serde_json::to_writer(&mut payload, &from);
            if let Some(cmd) = &mut self.cmd {
                cmd.send(&[b"PUBLISH", &self.bans_channel, &payload]);
                self.inflight.push_back((Sent::Ignore, now));
            }
        }
    }

    /// `{NAME}:blk:<a>|<b>` (sorted pair) for the block's lifetime: the
    /// script pairs neither way while it exists.
    fn block(&mut self, a: IpAddr, b: IpAddr, ttl_ms: u64, now: u64) {
        let Some(cmd) = &mut self.cmd else {
            return;
        };
        let (a, b) = (a.to_string(), b.to_string());
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let key = format!("{}:blk:{lo}|{hi}", String::from_utf8_lossy(&self.prefix));
        let ttl = ttl_ms.max(1).to_string();
        cmd.send(&[b"SET", key.as_bytes(), b"1", b"PX", ttl.as_bytes()]);
        self.inflight.push_back((Sent::Ignore, now));
    }

    fn publish(&mut self, node: u64, payload: &[u8], now: u64) {
        let Some(cmd) = &mut self.cmd else {
            return;
        };
        let channel = format!(
            "{}:n:{}",
            String::from_utf8_lossy(&self.prefix),
            node_hex(node)
        );
        cmd.send(&[b"PUBLISH", channel.as_bytes(), payload]);
        self.inflight.push_back((Sent::Ignore, now));
    }

    /// The matchmaker's records: those for other nodes join the batches,
    /// the rest go to the loops.
    fn route_decided(&mut self) {
        let up = self.up();
        let mut at = 0;
        let mut dropped = 0;
        while let Some(len) = self.decided.get(at..).and_then(record_len) {
            if let Some(record) = self.decided.get(at..at + len) {
                match forwarded(record) {
                    Some((node, inner)) if up => batch(&mut self.batches, node, inner),
                    Some(_) => dropped += 1,
                    None => self.to_loops.extend_from_slice(record),
                }
            }
            at += len;
        }
        self.decided.clear();
        ClusterView::add(&self.view.dropped, dropped);
    }

    fn publish_batches(&mut self, now: u64) {
        let batches = std::mem::take(&mut self.batches);
        for (node, records) in &batches {
            let mut count = 0;
            let mut at = 0;
            while let Some(len) = records.get(at..).and_then(record_len) {
                count += 1;
                at += len;
            }
            let over = self
                .cmd
                .as_ref()
                .is_some_and(|c| c.unsent.len() > MAX_UNSENT);
            if over || !self.up() {
                ClusterView::add(&self.view.dropped, count);
                continue;
            }
            let mut payload = Vec::with_capacity(records.len() + 1);
            payload.push(b'R');
            payload.extend_from_slice(records);
            self.publish(*node, &payload, now);
            ClusterView::add(&self.view.messages_out, count);
        }
        // Keep the allocations for the next turn.
        self.batches = batches;
        self.batches.clear();
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
            }
        }
    }

    fn connect(&mut self, now: u64) {
        let url = &self.setup.url;
        let addr = match (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map(|mut a| a.next())
        {
            Ok(Some(a)) => a,
            Ok(None) | Err(_) => {
                self.retry_later(now, &format!("cannot resolve {}", url.host));
                return;
            }
        };
        let open = |token| -> io::Result<Conn> {
            let mut stream = TcpStream::connect(addr)?;
            self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            let _ = stream.set_nodelay(true);
            Ok(Conn {
                stream,
                unsent: Vec::new(),
                unread: Vec::new(),
                parsed: 0,
            })
        };
        let (mut cmd, mut sub) = match (open(CMD), open(SUB)) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => {
                self.retry_later(now, &format!("connect to {addr}: {e}"));
                return;
            }
        };
        self.inflight.clear();
        let auth = |c: &mut Conn| match (&url.user, &url.password) {
            (Some(u), Some(p)) => c.send(&[b"AUTH", u.as_bytes(), p.as_bytes()]),
            (None, Some(p)) => c.send(&[b"AUTH", p.as_bytes()]),
            _ => {}
        };
        auth(&mut cmd);
        auth(&mut sub);
        if url.password.is_some() {
            self.inflight.push_back((Sent::Ignore, now));
        }
        if url.db != 0 {
            cmd.send(&[b"SELECT", url.db.to_string().as_bytes()]);
            self.inflight.push_back((Sent::Ignore, now));
        }
        cmd.send(&[b"SCRIPT", b"LOAD", script::SOURCE.as_bytes()]);
        self.inflight.push_back((Sent::Load, now));
        sub.send(&[b"SUBSCRIBE", &self.channel, &self.bans_channel]);
        self.cmd = Some(cmd);
        self.sub = Some(sub);
        self.phase = Phase::Connecting {
            since_ms: now,
            loaded: false,
            subscribed: false,
        };
    }

    fn retry_later(&mut self, now: u64, why: &str) {
        if !self.ever_up && self.backoff_ms == BACKOFF_MIN_MS {
            warn!("cluster: {why}; pairing this node's clients alone until Redis answers");
        }
        self.phase = Phase::Down {
            retry_ms: now + self.backoff_ms,
        };
        self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_MAX_MS);
    }

    /// Both connections are dropped; reconnect after the backoff.
    fn down(&mut self, now: u64, why: &str) {
        for conn in [self.cmd.take(), self.sub.take()].into_iter().flatten() {
            let mut stream = conn.stream;
            let _ = self.poll.registry().deregister(&mut stream);
        }
        self.inflight.clear();
        let was_up = self.up();
        if was_up {
            warn!("cluster: Redis lost ({why}); pairing this node's clients alone");
            self.down_since_ms = Some(now);
            self.grace_done = false;
            self.view.connected.store(false, Ordering::Relaxed);
            self.view.nodes.store(1, Ordering::Relaxed);
            let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
            // Other nodes' counts are unknown from here: `/stats` shows ours.
            mm.cluster_set_others(crate::chat::Counts::default());
            mm.cluster_set_up(
                false,
                now,
                &mut Out::new(self.setup.threads, &mut self.decided),
            );
        }
        if matches!(self.phase, Phase::Down { .. }) {
            return;
        }
        self.retry_later(now, why);
    }

    fn maybe_up(&mut self, now: u64) {
        let Phase::Connecting {
            loaded: true,
            subscribed: true,
            ..
        } = self.phase
        else {
            return;
        };
        info!(
            "cluster: node {} joined cluster '{}' on {}",
            node_hex(self.setup.node),
            self.setup.name,
            self.setup.url
        );
        if self.ever_up {
            self.view.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        // Cross-node pairs still running (the grace has not ended them)
        // though our node key expired while we were away.
        let expired =
            self.ever_up && !self.grace_done && now >= self.beat_ok_ms + script::NODE_TTL_MS;
        self.ever_up = true;
        self.phase = Phase::Up { since_ms: now };
        self.backoff_ms = BACKOFF_MIN_MS;
        self.down_since_ms = None;
        self.grace_done = true;
        self.probe_seen_ms = now;
        self.view.connected.store(true, Ordering::Relaxed);
        // The node key first: other nodes skip tickets of nodes without one.
        self.beat(now);
        let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
        if expired {
            // Our key expired while we were away: the other nodes have
            // ended our cross-node pairs (and their `left` could not reach
            // us), so ours end too, before anything else.
            mm.cluster_grace_over(&mut Out::new(self.setup.threads, &mut self.decided));
        }
        mm.cluster_set_up(
            true,
            now,
            &mut Out::new(self.setup.threads, &mut self.decided),
        );
        mm.cluster_commands(&mut self.commands);
    }

    fn on_cmd(&mut self, now: u64) -> Result<(), String> {
        loop {
            let Some(cmd) = &mut self.cmd else {
                return Ok(());
            };
            let drained = cmd.fill().map_err(|e| format!("read: {e}"))?;
            cmd.flush().map_err(|e| format!("write: {e}"))?;
            loop {
                let Some(cmd) = &mut self.cmd else {
                    return Ok(());
                };
                let Some(reply) = cmd
                    .next()
                    .map_err(|_| "a reply that is not RESP".to_string())?
                else {
                    break;
                };
                let Some((sent, _)) = self.inflight.pop_front() else {
                    return Err("a reply nobody asked for".to_string());
                };
                self.on_reply(sent, reply, now)?;
            }
            if drained {
                return Ok(());
            }
        }
    }

    fn on_reply(&mut self, sent: Sent, reply: Value, now: u64) -> Result<(), String> {
        if let Value::Error(e) = &reply {
            let text = String::from_utf8_lossy(e).into_owned();
            if let (true, Sent::Op(op)) = (text.starts_with("NOSCRIPT"), &sent) {
                // Redis lost the script (restarted, or SCRIPT FLUSH).
                if let Some(cmd) = &mut self.cmd {
                    cmd.send(&[b"SCRIPT", b"LOAD", script::SOURCE.as_bytes()]);
                }
                self.inflight.push_back((Sent::Ignore, now));
                let op = op.clone();
                self.eval(op.clone(), Sent::Op(op), now);
                return Ok(());
            }
            return Err(format!("Redis answered: {text}"));
        }
        match sent {
            Sent::Ignore => {}
            Sent::Load => {
                if reply.bytes() != Some(self.sha.as_bytes()) {
                    return Err("SCRIPT LOAD gave another SHA".to_string());
                }
                if let Phase::Connecting { loaded, .. } = &mut self.phase {
                    *loaded = true;
                }
                self.maybe_up(now);
            }
            Sent::Beat => {
                self.beat_ok_ms = self.beat_sent_ms;
                let rtt = now.saturating_sub(self.beat_sent_ms);
                self.view
                    .rtt_us
                    .store(rtt.saturating_mul(1000), Ordering::Relaxed);
                let op = Op::Beat {
                    node: self.setup.node,
                    counts: crate::chat::Counts::default(),
                };
                if let Some(Reply::Nodes(nodes)) = op.parse(&reply) {
                    self.on_nodes(&nodes, now);
                }
            }
            Sent::Op(op) => {
                if let Some(parsed) = op.parse(&reply) {
                    let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
                    let mut out = Out::new(self.setup.threads, &mut self.decided);
                    mm.cluster_reply(&op, parsed, now, &mut out);
                    ClusterView::add(&self.view.pairs, out.pairs);
                    mm.cluster_commands(&mut self.commands);
                }
            }
        }
        Ok(())
    }

    fn on_nodes(&mut self, nodes: &[(u64, crate::chat::Counts)], now: u64) {
        let me = self.setup.node;
        let mut others = crate::chat::Counts::default();
        for (id, c) in nodes.iter().filter(|(id, _)| *id != me) {
            let _ = id;
            others.online += c.online;
            others.waiting += c.waiting;
            others.chatting += c.chatting;
        }
        self.view
            .nodes
            .store(nodes.len().max(1) as u64, Ordering::Relaxed);
        self.live = nodes.iter().map(|(id, _)| *id).collect();
        let judge =
            matches!(self.phase, Phase::Up { since_ms } if now >= since_ms + JUDGE_AFTER_MS);
        let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
        mm.cluster_set_others(others);
        if judge {
            let mut out = Out::new(self.setup.threads, &mut self.decided);
            mm.cluster_live(&self.live, &mut out);
        }
        mm.cluster_commands(&mut self.commands);
    }

    fn on_sub(&mut self, now: u64) -> Result<(), String> {
        loop {
            let Some(sub) = &mut self.sub else {
                return Ok(());
            };
            let drained = sub.fill().map_err(|e| format!("subscriber read: {e}"))?;
            sub.flush().map_err(|e| format!("subscriber write: {e}"))?;
            self.parse_sub(now)?;
            // What came in goes to the loops now: `to_loops` never holds
            // more than one read budget's worth.
            self.flush_to_loops();
            if drained {
                return Ok(());
            }
        }
    }

    /// Every complete message read so far on the subscriber connection.
    fn parse_sub(&mut self, now: u64) -> Result<(), String> {
        loop {
            let Some(sub) = &mut self.sub else {
                return Ok(());
            };
            let Some(v) = sub
                .next()
                .map_err(|_| "a message that is not RESP".to_string())?
            else {
                return Ok(());
            };
            if let Value::Error(e) = &v {
                return Err(format!("subscriber: {}", String::from_utf8_lossy(e)));
            }
            let Some(items) = v.array() else {
                continue;
            };
            match items.first().and_then(Value::bytes) {
                Some(b"subscribe") => {
                    if let Phase::Connecting { subscribed, .. } = &mut self.phase {
                        *subscribed = true;
                    }
                    self.maybe_up(now);
                }
                Some(b"message") => {
                    if let Some(payload) = items.get(2).and_then(Value::bytes) {
                        let payload = payload.to_vec();
                        self.on_message(&payload, now);
                    }
                }
                _ => {}
            }
        }
    }

    fn on_message(&mut self, payload: &[u8], now: u64) {
        let Some(message) = proto::parse(payload) else {
            return;
        };
        let threads = self.setup.threads;
        if let Message::Records(records) = message {
            let mut at = 0;
            let mut n = 0;
            let mut lefts = Vec::new();
            while let Some(len) = records.get(at..).and_then(record_len) {
                if let Some(r) = records.get(at..at + len) {
                    if let Some((thread, conn, pair)) = left_target(r) {
                        lefts.push((conn.saturating_mul(threads).saturating_add(thread), pair));
                    }
                    self.to_loops.extend_from_slice(r);
                    n += 1;
                }
                at += len;
            }
            ClusterView::add(&self.view.messages_in, n);
            if !lefts.is_empty() {
                let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
                for (gid, pair) in lefts {
                    mm.cluster_remote_left(gid, pair);
                }
            }
            return;
        }
        if let Message::Probe(_) = message {
            self.probe_seen_ms = now;
            return;
        }
        if let Message::Ban(b) = &message {
            if b.node != self.setup.node {
                let unix_ms = crate::sys::unix_now_s().saturating_mul(1000);
                self.setup.safety.apply_shared_ban(&b.ban, unix_ms);
            }
            return;
        }
        let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Out::new(threads, &mut self.decided);
        match message {
            Message::Offer(o) => mm.cluster_offer(&o, now, &mut out),
            Message::Accept(a) => mm.cluster_answer(true, &a, now, &mut out),
            Message::Reject(a) => mm.cluster_answer(false, &a, now, &mut out),
            Message::Nudge(n) => {
                if let (Some(serial), Some(gid)) =
                    (proto::num(&n.serial), proto::num::<Gid>(&n.gid))
                {
                    mm.cluster_nudge(serial, gid);
                }
            }
            Message::Gone(node) => mm.cluster_node_gone(node, &mut out),
            Message::Records(_) | Message::Probe(_) | Message::Ban(_) => {}
        }
        ClusterView::add(&self.view.pairs, out.pairs);
        mm.cluster_commands(&mut self.commands);
    }

    /// SIGTERM: tell the live nodes now, remove our key, write it out
    /// (bounded by [`FLUSH_MS`]).
    fn goodbye(&mut self) {
        if !self.up() {
            return;
        }
        let now = self.now_ms();
        let me = self.setup.node;
        let gone = format!("G{}", node_hex(me));
        for node in self.live.clone() {
            if node != me {
                self.publish(node, gone.as_bytes(), now);
            }
        }
        let key = format!(
            "{}:node:{}",
            String::from_utf8_lossy(&self.prefix),
            node_hex(me)
        );
        if let Some(cmd) = &mut self.cmd {
            cmd.send(&[b"DEL", key.as_bytes()]);
        }
        let deadline = Instant::now() + Duration::from_millis(FLUSH_MS);
        let mut events = Events::with_capacity(4);
        while let Some(cmd) = &mut self.cmd {
            if cmd.flush().is_err() || cmd.unsent.is_empty() || Instant::now() >= deadline {
                break;
            }
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(50)));
        }
        info!("cluster: node {} left the cluster", node_hex(me));
    }
}

/// Appends `record` to `node`'s batch (a new batch past [`MAX_BATCH`]).
fn batch(batches: &mut Vec<(u64, Vec<u8>)>, node: u64, record: &[u8]) {
    match batches
        .iter_mut()
        .rev()
        .find(|(n, b)| *n == node && b.len() + record.len() <= MAX_BATCH)
    {
        Some((_, b)) => b.extend_from_slice(record),
        None => batches.push((node, record.to_vec())),
    }
}

/// The matchmaker's decisions, made on the cluster thread, as records for
/// the loops (and, wrapped, for other nodes).
struct Out<'a> {
    threads: usize,
    records: &'a mut Vec<u8>,
    pairs: u64,
}

impl<'a> Out<'a> {
    fn new(threads: usize, records: &'a mut Vec<u8>) -> Out<'a> {
        Out {
            threads: threads.max(1),
            records,
            pairs: 0,
        }
    }

    fn address(&self, m: Member) -> Address {
        Address::here(m.gid % self.threads, m.gid / self.threads, m.serial)
    }
}

impl MatchOut for Out<'_> {
    fn waiting(&mut self, _to: Gid, _online: usize) {}

    fn paired(&mut self, x: Member, y: Member, pair: PairId, x_initiator: bool, common: &[String]) {
        for (me, other, initiator) in [(x, y, x_initiator), (y, x, !x_initiator)] {
            let event = Cross::Paired {
                to: self.address(me),
                partner: self.address(other),
                partner_addr: other.addr,
                pair,
                initiator,
                common,
            };
            encode_cross(self.records, &event);
        }
    }

    fn left(&mut self, to: Member, pair: PairId, reason: LeftReason) {
        let event = Cross::Left {
            to: self.address(to),
            pair,
            reason,
        };
        encode_cross(self.records, &event);
    }

    fn paired_remote(
        &mut self,
        me: Member,
        (partner, partner_addr): (Address, Option<IpAddr>),
        pair: PairId,
        initiator: bool,
        common: &[String],
    ) {
        self.pairs += 1;
        let event = Cross::Paired {
            to: self.address(me),
            partner,
            partner_addr,
            pair,
            initiator,
            common,
        };
        encode_cross(self.records, &event);
    }

    fn left_remote(&mut self, to: Address, pair: PairId, reason: LeftReason) {
        encode_cross(self.records, &Cross::Left { to, pair, reason });
    }

    fn is_here(&self, _gid: Gid) -> bool {
        false
    }

    fn nudge(&mut self, x: Member) {
        let event = Cross::Nudge {
            thread: x.gid % self.threads,
            gid: x.gid,
            serial: x.serial,
        };
        encode_cross(self.records, &event);
    }
}
