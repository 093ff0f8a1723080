//! The matchmaker's cluster mode (`--redis`), sans-IO: while Redis is up
//! the queue that decides is the cluster's (the script in
//! `cluster/match.lua`); the matchmaker pushes [`Command`]s for the cluster
//! thread and is told the answers through the `cluster_*` calls. While
//! Redis is down it pairs this node's clients exactly as without a
//! cluster: every queued client stays in the local maps too.
//!
//! Pairing across nodes is a handshake, so that a dead node's ticket is
//! never handed to anyone and `waiting` always precedes `paired`: the
//! searcher x's script call claims y and publishes an offer to y's node;
//! y's node accepts if y still waits (y is told `paired`) or rejects; x is
//! told `paired` only on the accept, and goes back to the queue (keeping
//! its place) on a reject or after [`OFFER_TIMEOUT_MS`]. A pair Redis makes
//! between two clients of this node is delivered by x's own loop (a nudge),
//! which keeps `paired` ahead of any relay, as with threads.

use super::{Client, Gid, MatchOut, Matchmaker, Member, State};
use crate::chat::peer::Address;
use crate::chat::protocol::LeftReason;
use crate::chat::video::PairId;
use crate::cluster::proto::{self, Answer, Offer};
use crate::cluster::script::{Match, Op, Reply, Ticket};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

/// How long a searcher waits for the claimed stranger's node to answer.
pub const OFFER_TIMEOUT_MS: u64 = 2000;
/// Answers kept because they overtook the reply they answer, at most.
const MAX_EARLY: usize = 1024;

/// Wakes the cluster thread when a command is queued.
#[derive(Clone)]
pub struct Notify(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notify")
    }
}

/// What the cluster thread is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the script.
    Op(Op),
    /// Keep two addresses apart on every node for `ttl_ms`.
    Block {
        /// One address.
        a: IpAddr,
        /// The other.
        b: IpAddr,
        /// The block's lifetime.
        ttl_ms: u64,
    },
    /// Publish a control message to a node's channel.
    Publish {
        /// The node.
        node: u64,
        /// `proto` payload.
        payload: Vec<u8>,
    },
}

/// A searcher waiting for its claimed stranger's node.
#[derive(Debug)]
struct Pending {
    serial: u64,
    deadline_ms: u64,
    counter: u64,
    y: Match,
    x_first: bool,
}

/// A pair Redis made between two clients of this node, delivered by
/// x's loop when its nudge arrives.
#[derive(Debug)]
struct Delivery {
    x: Member,
    y: Member,
    pair: PairId,
    x_first: bool,
    common: Vec<String>,
}

/// The cluster's part of the matchmaker.
#[derive(Debug)]
pub(super) struct Cluster {
    node: u64,
    /// Mixed into cluster pair ids (the same on every node).
    key: u64,
    up: bool,
    /// Bound: `max_commands`; over it the cluster thread is told to
    /// resynchronise (`overflow`) and commands are dropped.
    commands: VecDeque<Command>,
    max_commands: usize,
    overflow: bool,
    notify: Notify,
    /// Bound: one per local client.
    offers: HashMap<Gid, Pending>,
    /// Bound: one per local client (keyed by x).
    deliveries: HashMap<Gid, Delivery>,
    /// Event loops of this node (a gid's loop and connection).
    threads: usize,
    /// Clients put back in line while Redis is down, to be paired here by
    /// the cluster thread's next [`Matchmaker::cluster_tick`]. Bound: one
    /// per local client (each at most once per state change).
    pending_local: Vec<Gid>,
    /// The other live nodes' counts, as the last heartbeat read them.
    others: crate::chat::Counts,
    /// Answers that came before our own script's reply naming their pair
    /// (accept, answer, give-up time). Bound: [`MAX_EARLY`].
    early: Vec<(bool, Answer, u64)>,
}

impl Matchmaker {
    /// Turns on cluster mode: this node is `node`, cluster pair ids use
    /// `key`; at most `max_commands` wait for the cluster thread, which
    /// `notify` wakes. Redis counts as down until [`Matchmaker::cluster_set_up`].
    pub fn enable_cluster(
        &mut self,
        node: u64,
        key: u64,
        threads: usize,
        max_commands: usize,
        notify: Notify,
    ) {
        self.cluster = Some(Box::new(Cluster {
            threads: threads.max(1),
            pending_local: Vec::new(),
            others: crate::chat::Counts::default(),
            early: Vec::new(),
            node,
            key,
            up: false,
            commands: VecDeque::new(),
            max_commands,
            overflow: false,
            notify,
            offers: HashMap::new(),
            deliveries: HashMap::new(),
        }));
    }

    /// `a` blocked `b` (or reported): with Redis up, the script keeps
    /// them apart on every node too.
    pub fn cluster_block(&mut self, a: IpAddr, b: IpAddr, ttl_ms: u64) {
        if self.cluster_up() {
            self.push(Command::Block { a, b, ttl_ms });
        }
    }

    fn threads(&self) -> usize {
        self.cluster.as_ref().map_or(1, |c| c.threads)
    }

    /// Pairs `id` here at the cluster thread's next tick (Redis is down).
    fn pair_later(&mut self, id: Gid) {
        if let Some(c) = &mut self.cluster {
            c.pending_local.push(id);
            (c.notify.0)();
        }
    }

    /// The other live nodes' counts (from the cluster thread's heartbeat).
    pub fn cluster_set_others(&mut self, others: crate::chat::Counts) {
        if let Some(c) = &mut self.cluster {
            c.others = others;
        }
    }

    /// The whole cluster's counts: this node's now, the others' as last
    /// published (at most a heartbeat and a refresh old: ≤ 2 s).
    pub fn cluster_counts(&self) -> crate::chat::Counts {
        let mut counts = self.counts();
        if let Some(c) = &self.cluster {
            counts.online += c.others.online;
            counts.waiting += c.others.waiting;
            counts.chatting += c.others.chatting;
        }
        counts
    }

    /// Clients online in the whole cluster (for `waiting`).
    pub(super) fn online_everywhere(&self) -> usize {
        self.online + self.cluster.as_ref().map_or(0, |c| c.others.online)
    }

    pub(super) fn cluster_up(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.up)
    }

    fn push(&mut self, command: Command) {
        if let Some(c) = &mut self.cluster {
            if c.commands.len() >= c.max_commands {
                c.overflow = true;
                return;
            }
            let was_empty = c.commands.is_empty();
            c.commands.push_back(command);
            if was_empty {
                (c.notify.0)();
            }
        }
    }

    /// The cluster thread takes every queued command; true when the queue
    /// overflowed since the last call (resynchronise: reconnect).
    pub fn cluster_commands(&mut self, into: &mut Vec<Command>) -> bool {
        match &mut self.cluster {
            Some(c) => {
                into.extend(c.commands.drain(..));
                std::mem::take(&mut c.overflow)
            }
            None => false,
        }
    }

    fn ticket(&self, id: Gid, keep: bool) -> Option<Ticket> {
        let node = self.cluster.as_ref()?.node;
        let threads = self.threads();
        let c = self.client(id)?;
        Some(Ticket {
            node,
            serial: c.serial,
            gid: id,
            thread: id % threads,
            conn: id / threads,
            prev: c.prev.map(|(n, s)| (if n == 0 { node } else { n }, s)),
            addr: c.addr,
            open: c.open,
            keep_seq: if keep { c.rseq } else { None },
            tags: c.tags.clone(),
        })
    }

    /// Queues `id`'s search in the cluster (true) if Redis is up.
    pub(super) fn cluster_join(&mut self, id: Gid, keep: bool) -> bool {
        if !self.cluster_up() {
            return false;
        }
        if let Some(t) = self.ticket(id, keep) {
            self.push(Command::Op(Op::Join(t)));
        }
        true
    }

    /// `id` (queued) searches again in the cluster, now open (true) if up.
    pub(super) fn cluster_search(&mut self, id: Gid) -> bool {
        let Some(node) = self.cluster.as_ref().filter(|c| c.up).map(|c| c.node) else {
            return false;
        };
        if let Some(c) = self.client(id) {
            let op = Op::Search {
                node,
                serial: c.serial,
                gid: id,
                open: c.open,
            };
            self.push(Command::Op(op));
        }
        true
    }

    /// `id` left the queue: its ticket goes too.
    pub(super) fn cluster_leave_queue(&mut self, id: Gid) {
        let Some(node) = self.cluster.as_ref().filter(|c| c.up).map(|c| c.node) else {
            return;
        };
        if let Some(c) = self.client(id) {
            let op = Op::Leave {
                node,
                serial: c.serial,
            };
            self.push(Command::Op(op));
        }
    }

    /// `gid` leaves (or is left by) `partner` before the pair Redis made
    /// between them was delivered: the one staying searches again. True
    /// if there was such an undelivered pair.
    /// A `left` from another node reached our client `gid`'s loop: the
    /// matchmaker forgets the pair too (if it is still the current one).
    pub fn cluster_remote_left(&mut self, gid: Gid, pair: PairId) {
        let Some(c) = self.client_mut(gid) else {
            return;
        };
        if matches!(c.state, State::Remote(_)) && c.pair == Some(pair) {
            c.state = State::Idle;
            self.chatting = self.chatting.saturating_sub(1);
        }
    }

    pub(super) fn cluster_undeliver(&mut self, gid: Gid, partner: Gid) -> bool {
        let Some(c) = &mut self.cluster else {
            return false;
        };
        let found = match c.deliveries.get(&gid) {
            Some(d) if d.y.gid == partner => c.deliveries.remove(&gid),
            _ => match c.deliveries.get(&partner) {
                Some(d) if d.y.gid == gid => c.deliveries.remove(&partner),
                _ => None,
            },
        };
        if found.is_none() {
            return false;
        }
        self.chatting = self.chatting.saturating_sub(2);
        self.requeue(partner);
        true
    }

    /// Puts `id` back in line (its old place in the cluster's queue).
    fn requeue(&mut self, id: Gid) {
        let now = self.now_ms;
        if let Some(c) = self.client_mut(id) {
            c.state = State::Queued;
            self.index(id, now);
            if !self.cluster_join(id, true) {
                self.pair_later(id);
            }
        }
    }

    /// x's loop got its nudge: delivers the pair Redis made (true).
    pub(super) fn cluster_deliver(
        &mut self,
        gid: Gid,
        serial: u64,
        out: &mut dyn MatchOut,
    ) -> bool {
        let Some(c) = &mut self.cluster else {
            return false;
        };
        match c.deliveries.remove(&gid) {
            Some(d) if d.x.serial == serial => {
                out.paired(d.x, d.y, d.pair, d.x_first, &d.common);
                true
            }
            Some(d) => {
                c.deliveries.insert(gid, d);
                false
            }
            None => false,
        }
    }

    pub(super) fn cluster_drop_offer(&mut self, gid: Gid) {
        if let Some(c) = &mut self.cluster {
            c.offers.remove(&gid);
        }
    }

    /// `gid` leaves its stranger on another node (who is told why).
    pub(super) fn leave_remote(
        &mut self,
        gid: Gid,
        partner: Address,
        reason: LeftReason,
        out: &mut dyn MatchOut,
    ) {
        self.chatting = self.chatting.saturating_sub(1);
        if let Some(pair) = self.client(gid).and_then(|c| c.pair) {
            out.left_remote(partner, pair, reason);
        }
        if let Some(c) = self.client_mut(gid) {
            c.state = State::Idle;
        }
    }

    fn valid(&self, gid: Gid, serial: u64, state: State) -> bool {
        self.client(gid)
            .is_some_and(|c| c.serial == serial && c.state == state)
    }

    /// The script answered `op`.
    pub fn cluster_reply(&mut self, op: &Op, reply: Reply, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        let (gid, serial) = match op {
            Op::Join(t) => (t.gid, t.serial),
            Op::Search { serial, gid, .. } => (*gid, *serial),
            _ => return,
        };
        let x_ok = self.valid(gid, serial, State::Queued);
        match reply {
            Reply::Queued(seq) => {
                if x_ok {
                    if let Some(c) = self.client_mut(gid) {
                        c.rseq = Some(seq);
                    }
                } else if let Some(node) = self.cluster.as_ref().map(|c| c.node) {
                    // Gone (or paired here) while the call was on its way.
                    self.push(Command::Op(Op::Leave { node, serial }));
                }
            }
            Reply::Matched(m) => self.matched(gid, serial, x_ok, m, now_ms, out),
            Reply::Gone | Reply::Done | Reply::Nodes(_) => {}
        }
        self.finish_turn(now_ms, out);
    }

    fn matched(
        &mut self,
        gid: Gid,
        serial: u64,
        x_ok: bool,
        m: Match,
        now_ms: u64,
        out: &mut dyn MatchOut,
    ) {
        let Some((node, key)) = self.cluster.as_ref().map(|c| (c.node, c.key)) else {
            return;
        };
        let pair = PairId::new(m.counter, key);
        if m.node == node {
            let y_ok = self.valid(m.gid, m.serial, State::Queued);
            match (x_ok, y_ok) {
                (true, true) => {
                    let (Some(xc), Some(yc)) = (self.client(gid), self.client(m.gid)) else {
                        return;
                    };
                    let common = super::common_tags(&xc.tags, &yc.tags);
                    let (xm, ym) = (self.member_of(gid, xc), self.member_of(m.gid, yc));
                    self.unindex(gid);
                    self.unindex(m.gid);
                    for (me, other) in [(xm, ym), (ym, xm)] {
                        if let Some(c) = self.client_mut(me.gid) {
                            c.state = State::Chatting(other.gid);
                            c.prev = Some((0, other.serial));
                            c.pair = Some(pair);
                            c.rseq = None;
                        }
                    }
                    self.chatting += 2;
                    self.next_pair += 1;
                    if let Some(c) = &mut self.cluster {
                        c.deliveries.insert(
                            gid,
                            Delivery {
                                x: xm,
                                y: ym,
                                pair,
                                x_first: m.x_initiator,
                                common,
                            },
                        );
                    }
                    out.nudge(xm);
                }
                (true, false) => self.requeue_join(gid),
                (false, true) => self.requeue_join(m.gid),
                (false, false) => {}
            }
            return;
        }
        if !x_ok {
            // The offer's accept will find x gone and end the pair.
            return;
        }
        self.unindex(gid);
        if let Some(c) = self.client_mut(gid) {
            c.state = State::Offered;
        }
        let counter = m.counter;
        if let Some(c) = &mut self.cluster {
            c.offers.insert(
                gid,
                Pending {
                    serial,
                    deadline_ms: now_ms.saturating_add(OFFER_TIMEOUT_MS),
                    counter,
                    x_first: m.x_initiator,
                    y: m,
                },
            );
        }
        if let Some((accept, a)) = self.take_early(gid, serial, counter) {
            self.cluster_answer(accept, &a, now_ms, out);
        }
    }

    /// A queued client whose search found a partner no longer there joins
    /// again, keeping its place.
    fn requeue_join(&mut self, id: Gid) {
        if !self.cluster_join(id, true) {
            self.pair_later(id);
        }
    }

    fn member_of(&self, gid: Gid, c: &Client) -> Member {
        let _ = self;
        Member {
            gid,
            serial: c.serial,
            addr: c.addr,
        }
    }

    /// Another node's script claimed our client `y` for its `x`.
    pub fn cluster_offer(&mut self, o: &Offer, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some((node, key)) = self.cluster.as_ref().map(|c| (c.node, c.key)) else {
            return;
        };
        let Some(counter) = proto::num::<u64>(&o.pair) else {
            return;
        };
        let (Some(y_serial), Some(y_gid)) =
            (proto::num::<u64>(&o.y.serial), proto::num::<Gid>(&o.y.gid))
        else {
            return;
        };
        let x_node = u64::from_str_radix(&o.x.node, 16).unwrap_or(0);
        let x = Address::on(
            x_node,
            proto::num(&o.x.thread).unwrap_or(0),
            proto::num(&o.x.conn).unwrap_or(0),
            proto::num(&o.x.serial).unwrap_or(0),
        );
        let x_gid: Gid = proto::num(&o.x.gid).unwrap_or(0);
        let threads = self.threads();
        let accept = x_node != 0 && self.cluster_up() && self.valid(y_gid, y_serial, State::Queued);
        let answer = Answer {
            pair: counter,
            x_serial: x.serial,
            x_gid,
            node,
            y_serial,
            y_thread: y_gid % threads,
            y_conn: y_gid / threads,
        };
        self.push(Command::Publish {
            node: x_node,
            payload: proto::answer(accept, &answer),
        });
        if !accept {
            return;
        }
        let pair = PairId::new(counter, key);
        let x_tags: Vec<String> = serde_json::from_str(&o.x.tags).unwrap_or_default();
        let Some(yc) = self.client(y_gid) else {
            return;
        };
        let common = super::common_tags(&yc.tags, &x_tags);
        let ym = self.member_of(y_gid, yc);
        self.unindex(y_gid);
        if let Some(c) = self.client_mut(y_gid) {
            c.state = State::Remote(x);
            c.prev = Some((x.node, x.serial));
            c.pair = Some(pair);
            c.rseq = None;
        }
        self.chatting += 1;
        self.next_pair += 1;
        out.paired_remote(
            ym,
            (x, proto::addr(&o.x.addr)),
            pair,
            o.y_init == 1,
            &common,
        );
        self.finish_turn(now_ms, out);
    }

    /// The claimed stranger's node answered our client `x`'s offer.
    pub fn cluster_answer(
        &mut self,
        accept: bool,
        a: &Answer,
        now_ms: u64,
        out: &mut dyn MatchOut,
    ) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some(key) = self.cluster.as_ref().map(|c| c.key) else {
            return;
        };
        let pair = PairId::new(a.pair, key);
        let y = Address::on(a.node, a.y_thread, a.y_conn, a.y_serial);
        let pending = match &mut self.cluster {
            Some(c) => match c.offers.get(&a.x_gid) {
                Some(p) if p.serial == a.x_serial && p.counter == a.pair => {
                    c.offers.remove(&a.x_gid)
                }
                _ => None,
            },
            None => None,
        };
        let Some(p) = pending.filter(|_| self.valid(a.x_gid, a.x_serial, State::Offered)) else {
            if self.valid(a.x_gid, a.x_serial, State::Queued) {
                // The answer overtook our own script's reply (they come on
                // two connections): kept until that reply names the pair.
                self.keep_early(accept, a, now_ms, out);
                return;
            }
            if accept {
                // x left (or timed out) meanwhile: y hears it at once.
                out.left_remote(y, pair, LeftReason::Disconnected);
            }
            return;
        };
        if !accept {
            self.back_in_line(a.x_gid, out);
            self.finish_turn(now_ms, out);
            return;
        }
        let Some(xc) = self.client(a.x_gid) else {
            return;
        };
        let common = super::common_tags(&xc.tags, &p.y.tags);
        let xm = self.member_of(a.x_gid, xc);
        if let Some(c) = self.client_mut(a.x_gid) {
            c.state = State::Remote(y);
            c.prev = Some((y.node, y.serial));
            c.pair = Some(pair);
            c.rseq = None;
        }
        self.chatting += 1;
        self.next_pair += 1;
        out.paired_remote(xm, (y, p.y.addr), pair, p.x_first, &common);
    }

    /// Keeps an answer that came before the reply it answers (bounded by
    /// [`MAX_EARLY`]; the oldest is given up first).
    fn keep_early(&mut self, accept: bool, a: &Answer, now_ms: u64, out: &mut dyn MatchOut) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if c.early.len() >= MAX_EARLY {
            let (old_accept, old, _) = c.early.remove(0);
            let key = c.key;
            if old_accept {
                let y = Address::on(old.node, old.y_thread, old.y_conn, old.y_serial);
                out.left_remote(y, PairId::new(old.pair, key), LeftReason::Disconnected);
            }
        }
        c.early
            .push((accept, a.clone(), now_ms.saturating_add(OFFER_TIMEOUT_MS)));
    }

    /// The answer kept for `gid`'s pair `counter`, if it came early.
    fn take_early(&mut self, gid: Gid, serial: u64, counter: u64) -> Option<(bool, Answer)> {
        let c = self.cluster.as_mut()?;
        let at = c
            .early
            .iter()
            .position(|(_, a, _)| a.x_gid == gid && a.x_serial == serial && a.pair == counter)?;
        let (accept, a, _) = c.early.remove(at);
        Some((accept, a))
    }

    /// An offered client goes back in line (its old place).
    fn back_in_line(&mut self, gid: Gid, out: &mut dyn MatchOut) {
        if let Some(c) = &mut self.cluster {
            c.offers.remove(&gid);
        }
        let now = self.now_ms;
        if let Some(c) = self.client_mut(gid) {
            c.state = State::Queued;
            self.index(gid, now);
            if !self.cluster_join(gid, true) {
                self.try_pair(gid, out);
            }
        }
    }

    /// The script's `leave` asks our client `serial` to search again.
    pub fn cluster_nudge(&mut self, serial: u64, gid: Gid) {
        if self.valid(gid, serial, State::Queued) {
            self.cluster_search(gid);
        }
    }

    /// Offers past their answer's deadline fail (x back in line).
    pub fn cluster_tick(&mut self, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        let expired: Vec<Gid> = match &self.cluster {
            Some(c) => c
                .offers
                .iter()
                .filter(|(_, p)| p.deadline_ms <= now_ms)
                .map(|(&g, _)| g)
                .collect(),
            None => return,
        };
        for gid in expired {
            self.back_in_line(gid, out);
        }
        let stale: Vec<(bool, Answer)> = match &mut self.cluster {
            Some(c) => {
                let (gone, kept) = std::mem::take(&mut c.early)
                    .into_iter()
                    .partition(|(_, _, until)| *until <= now_ms);
                c.early = kept;
                gone.into_iter().map(|(accept, a, _)| (accept, a)).collect()
            }
            None => Vec::new(),
        };
        let key = self.cluster.as_ref().map_or(0, |c| c.key);
        for (accept, a) in stale.into_iter().filter(|(accept, _)| *accept) {
            let _ = accept;
            let y = Address::on(a.node, a.y_thread, a.y_conn, a.y_serial);
            out.left_remote(y, PairId::new(a.pair, key), LeftReason::Disconnected);
        }
        let pending = match &mut self.cluster {
            Some(c) => std::mem::take(&mut c.pending_local),
            None => Vec::new(),
        };
        for gid in pending {
            if self.client(gid).is_some_and(|c| c.state == State::Queued) && !self.cluster_up() {
                self.try_pair(gid, out);
            }
        }
        self.finish_turn(now_ms, out);
    }

    /// The earliest offer deadline.
    pub fn cluster_deadline(&self) -> Option<u64> {
        let c = self.cluster.as_ref()?;
        if !c.pending_local.is_empty() {
            return Some(0);
        }
        let early = c.early.iter().map(|&(_, _, until)| until);
        c.offers.values().map(|p| p.deadline_ms).chain(early).min()
    }

    /// Nodes not in `live` are dead: every client of ours paired with or
    /// offered to one of theirs is told `left` `disconnected` (or goes
    /// back in line).
    pub fn cluster_live(&mut self, live: &[u64], out: &mut dyn MatchOut) {
        self.end_remote(|node| !live.contains(&node), out);
    }

    /// `node` said it is shutting down.
    pub fn cluster_node_gone(&mut self, node: u64, out: &mut dyn MatchOut) {
        self.end_remote(|n| n == node, out);
    }

    /// Redis has been gone for the grace period: every cross-node pair ends.
    pub fn cluster_grace_over(&mut self, out: &mut dyn MatchOut) {
        self.end_remote(|_| true, out);
    }

    fn end_remote(&mut self, dead: impl Fn(u64) -> bool, out: &mut dyn MatchOut) {
        let mut ended = Vec::new();
        for (gid, c) in self.clients.iter().enumerate() {
            if let Some(State::Remote(a)) = c.as_ref().map(|c| c.state) {
                if dead(a.node) {
                    ended.push((gid, a));
                }
            }
        }
        for (gid, partner) in ended {
            let Some(c) = self.client_mut(gid) else {
                continue;
            };
            c.state = State::Idle;
            let pair = c.pair;
            self.chatting = self.chatting.saturating_sub(1);
            if let (Some(pair), Some(m)) = (pair, self.member(gid)) {
                out.left(m, pair, LeftReason::Disconnected);
                // The other side too, in case that node was only cut off
                // for a while and is back (a dead node never reads it; while
                // Redis is down here it is dropped).
                out.left_remote(partner, pair, LeftReason::Disconnected);
            }
        }
        let offered: Vec<Gid> = match &self.cluster {
            Some(c) => c
                .offers
                .iter()
                .filter(|(_, p)| dead(p.y.node))
                .map(|(&g, _)| g)
                .collect(),
            None => return,
        };
        for gid in offered {
            self.back_in_line(gid, out);
        }
        let now = self.now_ms;
        self.finish_turn(now, out);
    }

    /// Redis came back (`up`: re-register every queued client, in line
    /// order) or went away (offers fail back to the local queue; local
    /// clients pair among themselves).
    pub fn cluster_set_up(&mut self, up: bool, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some(c) = &mut self.cluster else {
            return;
        };
        if c.up == up {
            return;
        }
        c.up = up;
        if up {
            let queued: Vec<Gid> = self.queue.values().copied().collect();
            for gid in queued {
                self.cluster_join(gid, true);
            }
            return;
        }
        c.commands.clear();
        let offered: Vec<Gid> = c.offers.keys().copied().collect();
        for gid in offered {
            self.back_in_line(gid, out);
        }
        let queued: Vec<Gid> = self.queue.values().copied().collect();
        for gid in queued {
            if self.client(gid).is_some_and(|c| c.state == State::Queued) {
                self.try_pair(gid, out);
            }
        }
        self.finish_turn(now_ms, out);
    }
}
