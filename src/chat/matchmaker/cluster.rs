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

mod handshake;
mod outage;
mod reconcile;

use super::{Client, Gid, MatchOut, Matchmaker, Member, State};
use crate::chat::peer::Address;
use crate::chat::protocol::LeftReason;
use crate::chat::video::PairId;
use crate::cluster::proto::Answer;
use crate::cluster::script::{Match, Op, Ticket};
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
    /// Per other node, how many of our clients talk to one of its clients
    /// (so the heartbeat finds dead partners' nodes without a scan).
    /// Bound: one entry per live node with a partner.
    partners: HashMap<u64, usize>,
    /// The pairs we listed to each node after Redis came back, until its
    /// answer (`reconcile.rs`). Bound: one list per live node, no more
    /// pairs in all than this node has clients.
    synced: HashMap<u64, Vec<PairId>>,
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
            partners: HashMap::new(),
            synced: HashMap::new(),
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

    /// A `left` from another node reached our client `gid`'s loop: the
    /// matchmaker forgets the pair too (if it is still the current one).
    pub fn cluster_remote_left(&mut self, gid: Gid, pair: PairId) {
        let Some(c) = self.client_mut(gid) else {
            return;
        };
        if let (State::Remote(a), true) = (c.state, c.pair == Some(pair)) {
            c.state = State::Idle;
            self.chatting = self.chatting.saturating_sub(1);
            self.partner_off(a.node);
        }
    }

    /// One more client of ours talks to a client of `node`.
    fn partner_on(&mut self, node: u64) {
        if let Some(c) = &mut self.cluster {
            *c.partners.entry(node).or_insert(0) += 1;
        }
    }

    /// One fewer.
    fn partner_off(&mut self, node: u64) {
        if let Some(c) = &mut self.cluster {
            if let Some(n) = c.partners.get_mut(&node) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.partners.remove(&node);
                }
            }
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
        self.partner_off(partner.node);
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
}
