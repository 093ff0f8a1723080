//! Matchmaking: the waiting queue, interests and their fallback, the
//! re-pair rule, pair ids and the initiator — the part of the chat that
//! every thread shares (behind one `Mutex` with `--threads N`, owned by
//! the one loop otherwise). What happens inside a pair (relays, rate
//! limits, video budget) is per thread, in `pairing.rs`, and never takes
//! the lock.
//!
//! # Data structures and costs
//!
//! Clients live in a `Vec<Option<Client>>` indexed by [`Gid`], a dense
//! process-wide id: `conn * threads + thread`, so with one thread it is the
//! event loop's slab index. Every time a client is queued it gets a fresh,
//! ever-increasing sequence number `seq`; "longest waiting" means "smallest
//! `seq`". The queued clients are indexed three ways, each an ordered map
//! keyed by `seq`:
//!
//! * `queue`: every queued client (for counts and the re-pair rule);
//! * `open`: queued clients who take anyone: no interests, or interest
//!   wait over;
//! * `by_tag`: for each tag, the queued clients with that tag.
//!
//! Queueing, leaving the queue and finding a partner are O(log n) in the
//! number of queued clients (O(k · log n) for a client with k ≤ 10 tags).
//! Searching never scans: in any of these maps at most two entries can be
//! unacceptable (the searcher itself and its previous stranger), so the
//! answer is among the first three.
//!
//! Interest waits all have the same length, so their deadlines expire in
//! the order they were set: a `VecDeque` of `(deadline, id, wait_gen)`
//! pushed at the back, popped at the front; stale entries are skipped when
//! they reach the front, so `next_deadline` is O(1) and exact.
//!
//! Blocks (`chat::safety`) add one step per queued client whose address is
//! blocked with the searcher's, skipped in place so everyone else keeps
//! their turn; at most [`MAX_BLOCKED_SKIPS`] such steps per map, and none
//! at all (one atomic load) while no block is in force.
//!
//! The decisions where PROTOCOL.md is silent are listed in `pairing.rs`.
//!
//! With `--redis` the node is one of a cluster (`matchmaker/cluster.rs`):
//! while Redis is up the queue that decides is the cluster's, in Redis,
//! and every queued client stays in these maps too, so that when Redis is
//! gone this node pairs its own clients exactly as above.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

use super::peer::Address;
use super::protocol::LeftReason;
use super::video::PairId;
use crate::safety::SafetyHandle;

mod cluster;
pub use cluster::{Command, Notify};
#[cfg(test)]
mod tests_cluster;

/// Most blocked clients a partner search steps over in one queue map
/// (beyond that the searcher waits for a newcomer).
pub(super) const MAX_BLOCKED_SKIPS: usize = 1000;

/// A client's process-wide matchmaking id (see the module doc).
pub type Gid = usize;

/// What matchmaking tells the clients; the caller delivers it (to a
/// session of its own thread, or through another thread's inbox).
pub trait MatchOut {
    /// `to` is queued (always the caller's own client).
    fn waiting(&mut self, to: Gid, online: usize);
    /// `x` and `y` now talk; `x_initiator` says which one offers.
    /// `x` gets its `paired` first.
    fn paired(&mut self, x: Member, y: Member, pair: PairId, x_initiator: bool, common: &[String]);
    /// `to` lost its stranger of pair `pair`.
    fn left(&mut self, to: Member, pair: PairId, reason: LeftReason);
    /// Whether `gid` lives on the caller's thread. A pair is made only by a
    /// thread holding one of the two (see [`MatchOut::nudge`]); with one
    /// thread every client is here.
    fn is_here(&self, gid: Gid) -> bool;
    /// `me` (a client of this node) now talks to `partner` on another
    /// cluster node.
    fn paired_remote(
        &mut self,
        me: Member,
        partner: (Address, Option<IpAddr>),
        pair: PairId,
        initiator: bool,
        common: &[String],
    );
    /// `to`, on another cluster node, lost its stranger (a client of this
    /// node) of pair `pair`.
    fn left_remote(&mut self, to: Address, pair: PairId, reason: LeftReason);
    /// `x` could be paired now but neither it nor its partner is on the
    /// caller's thread: ask `x`'s thread to [`Matchmaker::retry`]. Pairing
    /// from `x`'s own thread is what keeps `paired` ahead of every relay:
    /// `x` learns of the pair at once, and its partner's `paired` travels
    /// in the same inbox as everything `x` sends it afterwards.
    fn nudge(&mut self, x: Member);
}

/// A client as matchmaking names it to the outside: its id and the
/// serial of this connection (ids are reused, serials are not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The dense id.
    pub gid: Gid,
    /// Unique per connection, process-wide.
    pub serial: u64,
    /// The client's address (None in tests that give none): its partner
    /// keeps it for `block` and `report`.
    pub addr: Option<IpAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the queue under key `Client::seq`.
    Queued,
    Chatting(Gid),
    /// Chatting with a client of another cluster node.
    Remote(Address),
    /// Offered to a client of another node: its answer is awaited
    /// (`cluster.rs`); not in the queue maps.
    Offered,
    Idle,
}

#[derive(Debug)]
struct Client {
    serial: u64,
    state: State,
    /// Normalised, sorted, deduplicated.
    tags: Vec<String>,
    /// The most recent partner: (node, serial), node 0 for this one.
    prev: Option<(u64, u64)>,
    /// Its place in the cluster's queue, once Redis gave it one.
    rseq: Option<u64>,
    /// Queue key while queued.
    seq: u64,
    /// While queued: takes anyone (no tags, or interest wait over).
    open: bool,
    /// Identifies the current interest wait's deadline entry.
    wait_gen: u64,
    /// The current pair while chatting; the last one while idle.
    pair: Option<PairId>,
    /// Its address, for the block rule.
    addr: Option<IpAddr>,
}

/// The queue and who talks to whom, process-wide.
#[derive(Debug, Default)]
pub struct Matchmaker {
    interest_wait_ms: u64,
    pair_key: u64,
    clients: Vec<Option<Client>>,
    online: usize,
    chatting: usize,
    next_serial: u64,
    next_seq: u64,
    next_wait_gen: u64,
    /// Pairings made so far: the counter behind pair ids.
    next_pair: u64,
    queue: BTreeMap<u64, Gid>,
    open: BTreeMap<u64, Gid>,
    by_tag: HashMap<String, BTreeMap<u64, Gid>>,
    /// `(deadline_ms, id, wait_gen)` in deadline order.
    deadlines: VecDeque<(u64, Gid, u64)>,
    /// Blocks between addresses (and the rest of the safety state).
    safety: SafetyHandle,
    /// Unix ms at `now_ms == 0` (the safety state's clock).
    unix_start_ms: u64,
    /// The latest `now_ms` a call brought (blocks expire by it).
    now_ms: u64,
    /// `--redis`: the cluster's part (`cluster.rs`); None otherwise.
    cluster: Option<Box<cluster::Cluster>>,
}

impl Matchmaker {
    /// Empty; `interest_wait_ms` (`--interest-wait`) and `pair_key` (mixed
    /// into pair ids) hold for its life.
    pub fn new(interest_wait_ms: u64, pair_key: u64) -> Matchmaker {
        Matchmaker {
            interest_wait_ms,
            pair_key,
            ..Matchmaker::default()
        }
    }

    /// Consults `safety`'s blocks when pairing (`unix_start_ms`: Unix ms
    /// at `now_ms == 0`).
    pub fn with_safety(self, safety: SafetyHandle, unix_start_ms: u64) -> Matchmaker {
        Matchmaker {
            safety,
            unix_start_ms,
            ..self
        }
    }

    /// A client at `addr` arrived with `tags`: it is queued (and told so)
    /// and paired if someone fits. Returns its serial.
    pub fn connect(
        &mut self,
        gid: Gid,
        tags: Vec<String>,
        addr: Option<IpAddr>,
        now_ms: u64,
        out: &mut dyn MatchOut,
    ) -> u64 {
        self.now_ms = self.now_ms.max(now_ms);
        if self.clients.len() <= gid {
            self.clients.resize_with(gid + 1, || None);
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        if let Some(slot) = self.clients.get_mut(gid) {
            if slot.is_none() {
                self.online += 1;
            }
            *slot = Some(Client {
                serial,
                state: State::Idle,
                tags,
                prev: None,
                rseq: None,
                seq: 0,
                open: true,
                wait_gen: 0,
                pair: None,
                addr,
            });
        }
        self.search(gid, now_ms, out);
        self.finish_turn(now_ms, out);
        serial
    }

    /// The client is gone: its stranger (if any) is told `disconnected`.
    pub fn disconnect(&mut self, gid: Gid, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some(state) = self.client(gid).map(|c| c.state) else {
            return;
        };
        match state {
            State::Queued => {
                self.unindex(gid);
                self.cluster_leave_queue(gid);
            }
            State::Chatting(partner) => {
                if !self.cluster_undeliver(gid, partner) {
                    self.leave(partner, LeftReason::Disconnected, out);
                }
            }
            State::Remote(partner) => {
                self.leave_remote(gid, partner, LeftReason::Disconnected, out)
            }
            State::Offered => self.cluster_drop_offer(gid),
            State::Idle => {}
        }
        if let Some(slot) = self.clients.get_mut(gid) {
            *slot = None;
        }
        self.online = self.online.saturating_sub(1);
        self.finish_turn(now_ms, out);
    }

    /// `next`: leave the partner (if any), then search; a client already
    /// queued is told `waiting` again and keeps its place.
    pub fn next(&mut self, gid: Gid, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        match self.client(gid).map(|c| c.state) {
            Some(State::Chatting(partner)) => {
                if !self.cluster_undeliver(gid, partner) {
                    self.leave(partner, LeftReason::Next, out);
                }
                self.search(gid, now_ms, out);
            }
            Some(State::Remote(partner)) => {
                self.leave_remote(gid, partner, LeftReason::Next, out);
                self.search(gid, now_ms, out);
            }
            Some(State::Idle) => self.search(gid, now_ms, out),
            Some(State::Queued | State::Offered) => out.waiting(gid, self.online_everywhere()),
            None => {}
        }
        self.finish_turn(now_ms, out);
    }

    /// New interest tags (see `pairing.rs` for when they apply).
    pub fn set_interests(
        &mut self,
        gid: Gid,
        tags: Vec<String>,
        now_ms: u64,
        out: &mut dyn MatchOut,
    ) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some(c) = self.client_mut(gid) else {
            return;
        };
        if c.tags == tags {
            return;
        }
        if c.state != State::Queued {
            c.tags = tags;
            return;
        }
        self.unindex(gid);
        self.cluster_leave_queue(gid);
        if let Some(c) = self.client_mut(gid) {
            c.tags = tags;
            self.index(gid, now_ms);
            self.pair_or_join(gid, out);
        }
        self.finish_turn(now_ms, out);
    }

    /// A nudge reached `gid`'s thread: pair it if it still can be.
    pub fn retry(&mut self, gid: Gid, serial: u64, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.cluster_deliver(gid, serial, out) {
            // A pair Redis made between two clients of this node.
        } else if self
            .client(gid)
            .is_some_and(|c| c.serial == serial && c.state == State::Queued)
            && !self.cluster_up()
        {
            self.try_pair(gid, out);
        }
        self.finish_turn(now_ms, out);
    }

    /// Whether a `paired` for `member` in `pair`, arriving from another
    /// thread, is still news: the pair was not ended by `member` itself
    /// before its thread heard of it (ended by the partner, a `left` follows
    /// in the same inbox).
    pub fn is_current(&self, member: Member, pair: PairId) -> bool {
        self.client(member.gid).is_some_and(|c| {
            c.serial == member.serial
                && c.pair == Some(pair)
                && matches!(c.state, State::Chatting(_) | State::Remote(_) | State::Idle)
        })
    }

    /// The latest interest-wait deadline set (threads keep their own list
    /// of these to know when to [`Matchmaker::tick`]).
    pub fn last_deadline(&self) -> Option<u64> {
        self.deadlines.back().map(|&(deadline, _, _)| deadline)
    }

    /// Earliest time `tick` has work to do (an interest wait ends).
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.front().map(|&(deadline, _, _)| deadline)
    }

    /// Ends the interest waits due by `now_ms`; those clients now take
    /// anyone and are paired if someone fits.
    pub fn tick(&mut self, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        while let Some(&(deadline, id, wait_gen)) = self.deadlines.front() {
            if deadline > now_ms {
                break;
            }
            self.deadlines.pop_front();
            if !self.in_wait(id, wait_gen) {
                continue;
            }
            if let Some(c) = self.client_mut(id) {
                c.open = true;
                let seq = c.seq;
                self.open.insert(seq, id);
                if !self.cluster_search(id) {
                    self.try_pair(id, out);
                }
            }
        }
        self.finish_turn(now_ms, out);
    }

    /// Clients online, queued and chatting.
    pub fn counts(&self) -> super::Counts {
        super::Counts {
            online: self.online,
            waiting: self.queue.len(),
            chatting: self.chatting,
        }
    }

    /// Pairs made so far.
    pub fn pairs(&self) -> u64 {
        self.next_pair
    }

    fn client(&self, id: Gid) -> Option<&Client> {
        self.clients.get(id).and_then(Option::as_ref)
    }

    fn client_mut(&mut self, id: Gid) -> Option<&mut Client> {
        self.clients.get_mut(id).and_then(Option::as_mut)
    }

    fn member(&self, id: Gid) -> Option<Member> {
        self.client(id).map(|c| Member {
            gid: id,
            serial: c.serial,
            addr: c.addr,
        })
    }

    /// `partner` loses its stranger (who is handled by the caller): it is
    /// told why and goes idle.
    fn leave(&mut self, partner: Gid, reason: LeftReason, out: &mut dyn MatchOut) {
        let Some(member) = self.member(partner) else {
            return;
        };
        if let Some(p) = self.client_mut(partner) {
            p.state = State::Idle;
            let pair = p.pair;
            self.chatting = self.chatting.saturating_sub(2);
            if let Some(pair) = pair {
                out.left(member, pair, reason);
            }
        }
    }

    /// Sends `waiting`, queues the client as the newest, and pairs it if
    /// someone fits.
    fn search(&mut self, id: Gid, now_ms: u64, out: &mut dyn MatchOut) {
        out.waiting(id, self.online_everywhere());
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(c) = self.client_mut(id) {
            c.state = State::Queued;
            c.seq = seq;
            c.rseq = None;
            self.index(id, now_ms);
            self.pair_or_join(id, out);
        }
    }

    /// A queued client searches: in the cluster's queue while Redis is up,
    /// else here.
    fn pair_or_join(&mut self, id: Gid, out: &mut dyn MatchOut) {
        if !self.cluster_join(id, true) {
            self.try_pair(id, out);
        }
    }

    /// Adds a client (state `Queued`, `seq` set) to the queue maps and
    /// starts its interest wait if it has tags.
    fn index(&mut self, id: Gid, now_ms: u64) {
        let wait_ms = self.interest_wait_ms;
        let wait_gen = self.next_wait_gen;
        let Some(c) = self.clients.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let seq = c.seq;
        self.queue.insert(seq, id);
        c.open = c.tags.is_empty() || wait_ms == 0;
        if c.open {
            self.open.insert(seq, id);
        } else {
            c.wait_gen = wait_gen;
            self.next_wait_gen += 1;
            self.deadlines
                .push_back((now_ms.saturating_add(wait_ms), id, wait_gen));
        }
        for tag in &c.tags {
            match self.by_tag.get_mut(tag.as_str()) {
                Some(m) => {
                    m.insert(seq, id);
                }
                None => {
                    self.by_tag.insert(tag.clone(), BTreeMap::from([(seq, id)]));
                }
            }
        }
    }

    /// Removes a queued client from the queue maps (its deadline entry goes
    /// stale). The caller sets its new state.
    fn unindex(&mut self, id: Gid) {
        let Some(c) = self.clients.get(id).and_then(Option::as_ref) else {
            return;
        };
        let seq = c.seq;
        self.queue.remove(&seq);
        self.open.remove(&seq);
        for tag in &c.tags {
            if let Some(m) = self.by_tag.get_mut(tag.as_str()) {
                m.remove(&seq);
                if m.is_empty() {
                    self.by_tag.remove(tag.as_str());
                }
            }
        }
        if let Some(c) = self.client_mut(id) {
            c.open = true;
        }
    }

    /// Whether `id` is queued and still in the interest wait `wait_gen`.
    fn in_wait(&self, id: Gid, wait_gen: u64) -> bool {
        self.client(id)
            .is_some_and(|c| c.state == State::Queued && !c.open && c.wait_gen == wait_gen)
    }

    /// The partner for queued client `x`, by the rules of PROTOCOL.md
    /// "Life of a session": the longest-waiting client sharing a tag; if
    /// none and `x` takes anyone, the longest-waiting client who takes
    /// anyone. Never `x` itself; never its previous stranger while a third
    /// client is queued.
    fn find_partner(&self, x: Gid) -> Option<Gid> {
        let unix_ms = self.unix_start_ms.saturating_add(self.now_ms);
        self.safety
            .with_blocks(unix_ms, |may_pair| self.find_partner_with(x, may_pair))
    }

    /// [`Matchmaker::find_partner`], never pairing two addresses that
    /// `may_pair` keeps apart.
    fn find_partner_with(&self, x: Gid, may_pair: &dyn Fn(IpAddr, IpAddr) -> bool) -> Option<Gid> {
        let xc = self.client(x)?;
        let third_queued = self.queue.len() >= 3;
        let acceptable = |y: Gid| {
            y != x
                && self.client(y).is_some_and(|yc| {
                    !(third_queued
                        && xc.prev == Some((0, yc.serial))
                        && yc.prev == Some((0, xc.serial)))
                        && match (xc.addr, yc.addr) {
                            (Some(a), Some(b)) => may_pair(a, b),
                            _ => true,
                        }
                })
        };
        // Without blocks at most two entries of a map are unacceptable: x
        // and its previous stranger. Blocked clients are skipped, in
        // order, so everyone else keeps their place.
        let first = |m: &BTreeMap<u64, Gid>| {
            m.iter()
                .take(3 + MAX_BLOCKED_SKIPS)
                .find(|&(_, &y)| acceptable(y))
                .map(|(&seq, &y)| (seq, y))
        };
        let mut best: Option<(u64, Gid)> = None;
        for tag in &xc.tags {
            if let Some(found) = self.by_tag.get(tag.as_str()).and_then(first) {
                if best.map_or(true, |(seq, _)| found.0 < seq) {
                    best = Some(found);
                }
            }
        }
        if best.is_none() && xc.open {
            best = first(&self.open);
        }
        best.map(|(_, y)| y)
    }

    /// Pairs queued client `x` with the partner it finds, if any; the one
    /// queued earlier is the initiator.
    fn try_pair(&mut self, x: Gid, out: &mut dyn MatchOut) -> bool {
        let Some(mut y) = self.find_partner(x) else {
            return false;
        };
        let mut x = x;
        if !out.is_here(x) {
            if !out.is_here(y) {
                if let Some(m) = self.member(x) {
                    out.nudge(m);
                }
                return false;
            }
            std::mem::swap(&mut x, &mut y);
        }
        let (xm, ym, x_first, common) = match (self.client(x), self.client(y)) {
            (Some(a), Some(b)) => (
                Member {
                    gid: x,
                    serial: a.serial,
                    addr: a.addr,
                },
                Member {
                    gid: y,
                    serial: b.serial,
                    addr: b.addr,
                },
                a.seq < b.seq,
                common_tags(&a.tags, &b.tags),
            ),
            _ => return false,
        };
        self.unindex(x);
        self.unindex(y);
        let pair = PairId::new(self.next_pair, self.pair_key);
        self.next_pair += 1;
        for (me, partner, partner_serial) in [(x, y, ym.serial), (y, x, xm.serial)] {
            if let Some(c) = self.client_mut(me) {
                c.state = State::Chatting(partner);
                c.prev = Some((0, partner_serial));
                c.pair = Some(pair);
            }
        }
        self.chatting += 2;
        out.paired(xm, ym, pair, x_first, &common);
        true
    }

    /// End of every public call: when the queue is down to two clients,
    /// the re-pair rule no longer keeps them apart, so pair them if they
    /// fit; then drop stale deadline entries so `next_deadline` is exact.
    fn finish_turn(&mut self, _now_ms: u64, out: &mut dyn MatchOut) {
        // With Redis up, the script's `leave` nudges instead.
        if self.queue.len() == 2 && !self.cluster_up() {
            if let Some(&first) = self.queue.values().next() {
                self.try_pair(first, out);
            }
        }
        while let Some(&(_, id, wait_gen)) = self.deadlines.front() {
            if self.in_wait(id, wait_gen) {
                break;
            }
            self.deadlines.pop_front();
        }
    }
}

/// Tags in both sorted lists, sorted.
fn common_tags(a: &[String], b: &[String]) -> Vec<String> {
    let (mut i, mut j) = (0, 0);
    let mut common = Vec::new();
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common.push(x.clone());
                i += 1;
                j += 1;
            }
        }
    }
    common
}
