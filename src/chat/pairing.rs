//! The chat-roulette state machine: queue, pairs, interests, rate limits.
//!
//! # Data structures and costs
//!
//! Clients live in a `Vec<Option<Client>>` indexed by [`ClientId`] (the
//! event loop's slab index, small and reused). Every time a client is
//! queued it gets a fresh, ever-increasing sequence number `seq`; "longest
//! waiting" means "smallest `seq`". The queued clients are indexed three
//! ways, each an ordered map keyed by `seq`:
//!
//! * `queue`: every queued client (for counts and the re-pair rule);
//! * `open`: queued clients who take anyone: no interests, or interest
//!   wait over;
//! * `by_tag`: for each tag, the queued clients with that tag.
//!
//! Queueing, leaving the queue (pairing, `next`, disconnect) and finding a
//! partner are O(log n) in the number of queued clients, whatever the queue
//! holds. The one exception, for interests: a client with k tags (k ≤ 10)
//! is in k tag maps, so queueing, leaving and searching cost
//! O(k · log n) plus k hash lookups of the tag strings. Searching never
//! scans: in any of these maps at most two entries can be unacceptable
//! (the searcher itself and its previous stranger), so the answer is among
//! the first three. Blocks (`chat::safety`) add one step per queued client
//! whose address is blocked with the searcher's, skipped in place so
//! everyone else keeps their turn; at most 1,000 such steps per map, and
//! none at all (one atomic load) while no block is in force.
//!
//! Interest waits all have the same length, so their deadlines expire in
//! the order they were set: a `VecDeque` of `(deadline, id, wait_gen)`
//! pushed at the back, popped at the front. Entries made stale by pairing or
//! leaving are not searched for; they are skipped (and dropped) when they
//! reach the front, so `next_deadline` is O(1) and exact after every call.
//!
//! # Decisions where PROTOCOL.md is silent
//!
//! * Time: `now_ms` is expected never to go backwards (a monotonic
//!   clock). If it did, nothing breaks: token buckets simply do not refill
//!   and an interest wait may end a little late.
//! * Re-pair rule: A and B count as "previous strangers" of each other
//!   while each one's most recent partner is the other. While any third
//!   client is queued (even one that cannot take either of them yet) they
//!   are not paired; when the queue shrinks to just the two of them they are
//!   paired at once (if their interests allow).
//! * `next` while already queued: the client gets `waiting` again and keeps
//!   its place in the line (and its interest wait).
//! * `interests` while queued: the new tags apply at once to the current
//!   search. The client keeps its place in line; if it now has tags, its
//!   interest wait starts again from now (an unchanged tag set changes
//!   nothing). No extra `waiting` is sent. While chatting or idle, tags are
//!   kept for the next search. An empty list clears the interests.
//! * Invalid tags in the connect query are dropped silently (see
//!   `protocol::interests_from_query`).
//! * `paired.common` lists the shared tags in sorted order.
//! * The rate limit is checked before the message is parsed, so bad
//!   messages count too. A dropped message answers `rate_limited` at most
//!   once per second while messages keep being dropped (the first drop after
//!   an accepted message always answers). Every message, dropped or not,
//!   also draws from the hard bucket; when it is empty `on_text` returns
//!   `Err(SessionError::Flooding)` (close 1008).
//! * `signal` (and an oversized one) is the exception: it draws from
//!   neither bucket (PROTOCOL.md), so messages are parsed before the rate
//!   check and a signal never reaches it. Signals have their own budget,
//!   [`SIGNAL_BUDGET`] per side per pair; over it a signal is dropped and
//!   answered `rate_limited` like a chat drop (the first drop, then at
//!   most once per second).
//! * Initiator: of the two, the one queued earlier (smaller `seq`) makes
//!   the offer. Usually that is the partner found by a newcomer's search;
//!   when an interest wait ends or tags change, the searcher may be the
//!   earlier one, and then it is the initiator.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

use slab::Slab;

use super::protocol::{interests_from_query, parse_client, ClientMsg, ErrorCode, LeftReason};
use super::video::{Ice, PairId, VideoConfig, SIGNAL_BUDGET};
use super::{ClientId, Counts, Outbox, ServerMsg, SessionError};
use crate::safety::SafetyHandle;

/// Chat settings (from the command line, and two values the driver reads
/// from the world so that the chat itself never does).
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// `--interest-wait`: how long a client with interests waits for a
    /// match before taking anyone.
    pub interest_wait_ms: u64,
    /// `--rate-limit`: sustained client messages per second (bursts of
    /// twice that; the session is closed 1008 when it goes on at 10x).
    pub rate_per_sec: u64,
    /// ICE servers and the TURN secret for `paired`.
    pub video: VideoConfig,
    /// Mixed into pair ids (see `PairId::new`): random per process in the
    /// server, fixed in tests.
    pub pair_key: u64,
    /// Unix seconds at `now_ms == 0` (for TURN credential expiry).
    pub unix_start_s: u64,
    /// Blocks, reports, bans and the word list (`chat::safety`).
    pub safety: SafetyHandle,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            interest_wait_ms: 5_000,
            rate_per_sec: DEFAULT_RATE_PER_SEC,
            video: VideoConfig::default(),
            pair_key: 0,
            unix_start_s: 0,
            safety: SafetyHandle::default(),
        }
    }
}

/// PROTOCOL.md's rate: 10 messages/s, bursts of 20.
pub(crate) const DEFAULT_RATE_PER_SEC: u64 = 10;

/// Totals since start, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChatMetrics {
    /// `message`s delivered to a partner.
    pub messages_relayed: u64,
    /// `typing` notices delivered to a partner.
    pub typing_relayed: u64,
    /// Pairs made.
    pub pairs: u64,
    /// Video `signal`s delivered to a partner.
    pub signals_relayed: u64,
    /// Refused client messages, one counter per [`ErrorCode`] in the order
    /// the enum declares them. `rate_limited` counts every dropped message,
    /// also those not answered (throttled).
    pub errors: [u64; ErrorCode::COUNT],
    /// Sessions ended with 1008 for flooding at 10x the rate limit.
    pub rate_limit_closes: u64,
}

impl ChatMetrics {
    /// All refused client messages.
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// `(code, count)` for every error code, in [`ErrorCode::ALL`] order.
    #[cfg(test)]
    pub(crate) fn errors_by_code(&self) -> impl Iterator<Item = (ErrorCode, u64)> + '_ {
        ErrorCode::ALL.into_iter().zip(self.errors.iter().copied())
    }
}

/// One message's worth of tokens (buckets count in thousandths, so a rate
/// of R messages/s refills R thousandths per ms).
const TOKEN: u64 = 1000;
/// Bursts of this many seconds' worth of messages.
const BURST_SECONDS: u64 = 2;
/// The hard limit, closing the session, is this multiple of the rate.
const HARD_FACTOR: u64 = 10;
/// At most one `rate_limited` answer per this many ms while dropping.
const NOTICE_EVERY_MS: u64 = 1000;

/// Two token buckets, integer arithmetic on injected time: the soft one
/// (rate R, burst 2R) drops messages, the hard one (10R, burst 20R) ends
/// the session.
#[derive(Clone, Copy, Debug)]
struct RateLimit {
    soft: u64,
    hard: u64,
    last_ms: u64,
    /// No `rate_limited` answer before this time (0: answer the next drop).
    quiet_until_ms: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    Drop { notify: bool },
    Close,
}

impl RateLimit {
    fn soft_cap(rate: u64) -> u64 {
        rate.saturating_mul(BURST_SECONDS * TOKEN)
    }

    fn hard_cap(rate: u64) -> u64 {
        Self::soft_cap(rate).saturating_mul(HARD_FACTOR)
    }

    fn new(now_ms: u64, rate: u64) -> RateLimit {
        RateLimit {
            soft: Self::soft_cap(rate),
            hard: Self::hard_cap(rate),
            last_ms: now_ms,
            quiet_until_ms: 0,
        }
    }

    fn check(&mut self, now_ms: u64, rate: u64) -> Verdict {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.soft =
            Self::soft_cap(rate).min(self.soft.saturating_add(elapsed.saturating_mul(rate)));
        self.hard = Self::hard_cap(rate).min(
            self.hard
                .saturating_add(elapsed.saturating_mul(rate.saturating_mul(HARD_FACTOR))),
        );
        if self.hard < TOKEN {
            return Verdict::Close;
        }
        self.hard -= TOKEN;
        if self.soft < TOKEN {
            let notify = now_ms >= self.quiet_until_ms;
            if notify {
                self.quiet_until_ms = now_ms.saturating_add(NOTICE_EVERY_MS);
            }
            return Verdict::Drop { notify };
        }
        self.soft -= TOKEN;
        self.quiet_until_ms = 0;
        Verdict::Pass
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// In the queue under key `Client::seq`.
    Queued,
    Chatting(ClientId),
    Idle,
}

#[derive(Debug)]
pub(super) struct Client {
    /// Unique per connection (ids are reused, serials are not).
    serial: u64,
    state: State,
    /// Normalised, sorted, deduplicated.
    tags: Vec<String>,
    /// Serial of the most recent partner.
    prev: Option<u64>,
    /// Queue key while queued.
    seq: u64,
    /// While queued: takes anyone (no tags, or interest wait over).
    open: bool,
    /// Identifies the current interest wait's deadline entry.
    wait_gen: u64,
    rate: RateLimit,
    /// The current pair's id (meaningful while chatting).
    pair: PairId,
    /// Signals sent within the current pair.
    signals: u32,
    /// No `rate_limited` answer for a signal before this time.
    signal_quiet_until_ms: u64,
    /// The client's address (None in tests that give none).
    pub(super) addr: Option<IpAddr>,
    /// The evidence ring of the current or last pair (`rings` key).
    pub(super) ring: Option<usize>,
    /// The last stranger, once the pair ended: for `block`/`report`.
    pub(super) recent: Option<super::safety::Recent>,
}

impl Client {
    pub(super) fn state(&self) -> State {
        self.state
    }

    pub(super) fn serial(&self) -> u64 {
        self.serial
    }
}

/// All chat clients and their state.
#[derive(Debug, Default)]
pub struct Pairing {
    pub(super) config: ChatConfig,
    clients: Vec<Option<Client>>,
    online: usize,
    chatting: usize,
    next_serial: u64,
    next_seq: u64,
    next_wait_gen: u64,
    /// Pairings made so far: the counter behind pair ids.
    next_pair: u64,
    queue: BTreeMap<u64, ClientId>,
    open: BTreeMap<u64, ClientId>,
    by_tag: HashMap<String, BTreeMap<u64, ClientId>>,
    /// `(deadline_ms, id, wait_gen)` in deadline order.
    deadlines: VecDeque<(u64, ClientId, u64)>,
    metrics: ChatMetrics,
    /// Evidence rings of pairs that talked, each shared by at most two
    /// clients (`Client::ring`): at most one per online client.
    pub(super) rings: Slab<super::safety::Ring>,
}

impl Pairing {
    /// No clients yet; `config` holds for the life of the chat.
    pub fn new(config: ChatConfig) -> Pairing {
        Pairing {
            config,
            ..Pairing::default()
        }
    }

    /// A session opened. `interests_query` is the raw query string of the
    /// upgrade request without `?` (`interests=music,rust&x=1`): every
    /// `interests` parameter counts, values are percent-decoded, invalid
    /// tags are dropped and at most 10 kept (`protocol::interests_from_query`).
    /// The client gets `waiting` at once, then `paired` if a stranger is
    /// found in the same call.
    pub fn on_connect(
        &mut self,
        id: ClientId,
        interests_query: Option<&str>,
        now_ms: u64,
        out: &mut dyn Outbox,
    ) {
        self.on_connect_from(id, interests_query, None, now_ms, out);
    }

    /// [`Pairing::on_connect`] for a client at `addr` (blocks, reports).
    pub fn on_connect_from(
        &mut self,
        id: ClientId,
        interests_query: Option<&str>,
        addr: Option<IpAddr>,
        now_ms: u64,
        out: &mut dyn Outbox,
    ) {
        if self.client(id).is_some() {
            // The loop never does this; keep the books straight if it did.
            self.on_disconnect(id, now_ms, out);
        }
        if self.clients.len() <= id {
            self.clients.resize_with(id + 1, || None);
        }
        let tags = interests_query
            .map(interests_from_query)
            .unwrap_or_default();
        let serial = self.next_serial;
        self.next_serial += 1;
        if let Some(slot) = self.clients.get_mut(id) {
            *slot = Some(Client {
                serial,
                state: State::Idle,
                tags,
                prev: None,
                seq: 0,
                open: false,
                wait_gen: 0,
                rate: RateLimit::new(now_ms, self.config.rate_per_sec),
                pair: PairId::default(),
                signals: 0,
                signal_quiet_until_ms: 0,
                addr,
                ring: None,
                recent: None,
            });
            self.online += 1;
            self.search(id, now_ms, out);
        }
        self.finish_turn(now_ms, out);
    }

    /// One text message (raw bytes, valid UTF-8) from a client.
    pub fn on_text(
        &mut self,
        id: ClientId,
        text: &[u8],
        now_ms: u64,
        out: &mut dyn Outbox,
    ) -> Result<(), SessionError> {
        let parsed = parse_client(text);
        match parsed {
            Ok(ClientMsg::Signal { pair, data }) => {
                self.signal(id, pair, data, now_ms, out);
                return Ok(());
            }
            Err(ErrorCode::SignalTooLarge) => {
                if self.client(id).is_some() {
                    self.refuse(id, ErrorCode::SignalTooLarge, out);
                }
                return Ok(());
            }
            _ => {}
        }
        let rate = self.config.rate_per_sec;
        let Some(client) = self.client_mut(id) else {
            return Ok(());
        };
        let state = client.state;
        match client.rate.check(now_ms, rate) {
            Verdict::Pass => {}
            Verdict::Drop { notify } => {
                self.drop_rate_limited(id, notify, out);
                return Ok(());
            }
            Verdict::Close => {
                self.metrics.rate_limit_closes += 1;
                return Err(SessionError::Flooding);
            }
        }
        match parsed {
            Err(code) => self.refuse(id, code, out),
            Ok(ClientMsg::Message { text }) => match state {
                State::Chatting(_) if self.blocked_word(&text) => {
                    self.refuse(id, ErrorCode::BlockedWord, out)
                }
                State::Chatting(partner) => {
                    self.metrics.messages_relayed += 1;
                    self.record(id, partner, &text);
                    out.send(partner, &ServerMsg::Message { text: &text });
                }
                _ => self.refuse(id, ErrorCode::NotPaired, out),
            },
            Ok(ClientMsg::Typing { active }) => match state {
                State::Chatting(partner) => {
                    self.metrics.typing_relayed += 1;
                    out.send(partner, &ServerMsg::Typing { active });
                }
                _ => self.refuse(id, ErrorCode::NotPaired, out),
            },
            Ok(ClientMsg::Next) => self.next(id, now_ms, out),
            Ok(ClientMsg::Block) => self.block(id, None, now_ms, out),
            Ok(ClientMsg::Report { reason, note }) => {
                self.block(id, Some((reason, note)), now_ms, out)
            }
            Ok(ClientMsg::Interests { tags }) => self.set_interests(id, tags, now_ms, out),
            // Handled above, before the rate limit.
            Ok(ClientMsg::Signal { .. }) => {}
        }
        self.finish_turn(now_ms, out);
        Ok(())
    }

    /// The client is gone (closed, dropped, or failed).
    pub fn on_disconnect(&mut self, id: ClientId, now_ms: u64, out: &mut dyn Outbox) {
        let Some(state) = self.client(id).map(|c| c.state) else {
            return;
        };
        match state {
            State::Queued => self.unindex(id),
            State::Chatting(partner) => {
                self.pair_ended(id, partner, now_ms);
                self.leave(partner, LeftReason::Disconnected, out)
            }
            State::Idle => {}
        }
        self.release_ring(id);
        if let Some(slot) = self.clients.get_mut(id) {
            *slot = None;
        }
        self.online = self.online.saturating_sub(1);
        self.finish_turn(now_ms, out);
    }

    /// Earliest time `on_tick` has work to do (an interest wait ends).
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.front().map(|&(deadline, _, _)| deadline)
    }

    /// Ends the interest waits due by `now_ms`; those clients now take
    /// anyone and are paired if someone fits.
    pub fn on_tick(&mut self, now_ms: u64, out: &mut dyn Outbox) {
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
                self.try_pair(id, now_ms, out);
            }
        }
        self.finish_turn(now_ms, out);
    }

    /// How many clients are online, queued and chatting right now (for
    /// `/stats` and `/metrics`).
    pub fn counts(&self) -> Counts {
        Counts {
            online: self.online,
            waiting: self.queue.len(),
            chatting: self.chatting,
        }
    }

    /// Totals for `/metrics`.
    pub fn metrics(&self) -> ChatMetrics {
        self.metrics
    }

    pub(super) fn client(&self, id: ClientId) -> Option<&Client> {
        self.clients.get(id).and_then(Option::as_ref)
    }

    pub(super) fn client_mut(&mut self, id: ClientId) -> Option<&mut Client> {
        self.clients.get_mut(id).and_then(Option::as_mut)
    }

    fn count_error(&mut self, code: ErrorCode) {
        if let Some(n) = self.metrics.errors.get_mut(code.index()) {
            *n += 1;
        }
    }

    pub(super) fn refuse(&mut self, id: ClientId, code: ErrorCode, out: &mut dyn Outbox) {
        self.count_error(code);
        out.send(id, &ServerMsg::Error { code });
    }

    /// A message dropped for a rate (the chat's or the signal budget): every
    /// drop is counted, the client is told only when `notify` (throttled).
    fn drop_rate_limited(&mut self, id: ClientId, notify: bool, out: &mut dyn Outbox) {
        if notify {
            self.refuse(id, ErrorCode::RateLimited, out);
        } else {
            self.count_error(ErrorCode::RateLimited);
        }
    }

    /// `signal`: relayed to the partner when `pair` is the sender's current
    /// pair and its budget lasts; otherwise dropped (silently unless over
    /// the budget).
    fn signal(
        &mut self,
        id: ClientId,
        pair: Option<PairId>,
        data: &str,
        now_ms: u64,
        out: &mut dyn Outbox,
    ) {
        let Some(c) = self.client_mut(id) else {
            return;
        };
        let State::Chatting(partner) = c.state else {
            return;
        };
        if pair != Some(c.pair) {
            return;
        }
        let pair = c.pair;
        if c.signals >= SIGNAL_BUDGET {
            let notify = now_ms >= c.signal_quiet_until_ms;
            if notify {
                c.signal_quiet_until_ms = now_ms.saturating_add(NOTICE_EVERY_MS);
            }
            self.drop_rate_limited(id, notify, out);
            return;
        }
        c.signals += 1;
        self.metrics.signals_relayed += 1;
        out.send(partner, &ServerMsg::Signal { pair, data });
    }

    /// `next`: leave the partner (if any), then search.
    fn next(&mut self, id: ClientId, now_ms: u64, out: &mut dyn Outbox) {
        match self.client(id).map(|c| c.state) {
            Some(State::Chatting(partner)) => {
                self.pair_ended(id, partner, now_ms);
                self.leave(partner, LeftReason::Next, out);
                self.search(id, now_ms, out);
            }
            Some(State::Idle) => self.search(id, now_ms, out),
            Some(State::Queued) => out.send(
                id,
                &ServerMsg::Waiting {
                    online: self.online,
                },
            ),
            None => {}
        }
    }

    /// `partner` loses its stranger (who is handled by the caller): it is
    /// told why and goes idle.
    pub(super) fn leave(&mut self, partner: ClientId, reason: LeftReason, out: &mut dyn Outbox) {
        if let Some(p) = self.client_mut(partner) {
            p.state = State::Idle;
            self.chatting = self.chatting.saturating_sub(2);
            out.send(partner, &ServerMsg::Left { reason });
        }
    }

    /// Sends `waiting`, queues the client as the newest, and pairs it if
    /// someone fits.
    pub(super) fn search(&mut self, id: ClientId, now_ms: u64, out: &mut dyn Outbox) {
        out.send(
            id,
            &ServerMsg::Waiting {
                online: self.online,
            },
        );
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(c) = self.client_mut(id) {
            c.state = State::Queued;
            c.seq = seq;
            self.index(id, now_ms);
            self.try_pair(id, now_ms, out);
        }
    }

    fn set_interests(
        &mut self,
        id: ClientId,
        tags: Vec<String>,
        now_ms: u64,
        out: &mut dyn Outbox,
    ) {
        let Some(c) = self.client_mut(id) else {
            return;
        };
        if c.tags == tags {
            return;
        }
        if c.state != State::Queued {
            c.tags = tags;
            return;
        }
        self.unindex(id);
        if let Some(c) = self.client_mut(id) {
            c.tags = tags;
            self.index(id, now_ms);
            self.try_pair(id, now_ms, out);
        }
    }

    /// Adds a client (state `Queued`, `seq` set) to the queue maps and
    /// starts its interest wait if it has tags.
    fn index(&mut self, id: ClientId, now_ms: u64) {
        let wait_ms = self.config.interest_wait_ms;
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
    fn unindex(&mut self, id: ClientId) {
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
        // The wait entry (if any) is recognised as stale by `in_wait`.
        if let Some(c) = self.client_mut(id) {
            c.open = true;
        }
    }

    /// Whether `id` is queued and still in the interest wait `wait_gen`.
    fn in_wait(&self, id: ClientId, wait_gen: u64) -> bool {
        self.client(id)
            .is_some_and(|c| c.state == State::Queued && !c.open && c.wait_gen == wait_gen)
    }

    /// The partner for queued client `x`, by the rules of PROTOCOL.md
    /// "Life of a session": the longest-waiting client sharing a tag; if
    /// none and `x` takes anyone, the longest-waiting client who takes
    /// anyone. Never `x` itself; never its previous stranger while a third
    /// client is queued; never a client whose address x's address blocked
    /// or was blocked by (`chat::safety`).
    fn find_partner(&self, x: ClientId, now_ms: u64) -> Option<ClientId> {
        let unix_ms = self.unix_ms(now_ms);
        self.config
            .safety
            .with_blocks(unix_ms, |may_pair| self.find_partner_with(x, may_pair))
    }

    fn find_partner_with(
        &self,
        x: ClientId,
        may_pair: &dyn Fn(IpAddr, IpAddr) -> bool,
    ) -> Option<ClientId> {
        let xc = self.client(x)?;
        let third_queued = self.queue.len() >= 3;
        let acceptable = |y: ClientId| {
            y != x
                && self.client(y).is_some_and(|yc| {
                    !(third_queued && xc.prev == Some(yc.serial) && yc.prev == Some(xc.serial))
                        && match (xc.addr, yc.addr) {
                            (Some(a), Some(b)) => may_pair(a, b),
                            _ => true,
                        }
                })
        };
        // Without blocks at most two entries of a map are unacceptable: x
        // and the one client that is its previous stranger. Blocked
        // clients are skipped, in order, so everyone else keeps their
        // place: the search costs one more step per blocked client ahead,
        // at most `MAX_BLOCKED_SKIPS` (beyond that x waits for a newcomer).
        let first = |m: &BTreeMap<u64, ClientId>| {
            m.iter()
                .take(3 + super::safety::MAX_BLOCKED_SKIPS)
                .find(|&(_, &y)| acceptable(y))
                .map(|(&seq, &y)| (seq, y))
        };
        let mut best: Option<(u64, ClientId)> = None;
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
    fn try_pair(&mut self, x: ClientId, now_ms: u64, out: &mut dyn Outbox) -> bool {
        let Some(y) = self.find_partner(x, now_ms) else {
            return false;
        };
        let (xs, ys, x_first, common) = match (self.client(x), self.client(y)) {
            (Some(a), Some(b)) => (
                a.serial,
                b.serial,
                a.seq < b.seq,
                common_tags(&a.tags, &b.tags),
            ),
            _ => return false,
        };
        self.unindex(x);
        self.unindex(y);
        self.release_ring(x);
        self.release_ring(y);
        let pair = PairId::new(self.next_pair, self.config.pair_key);
        self.next_pair += 1;
        for (me, partner, partner_serial) in [(x, y, ys), (y, x, xs)] {
            if let Some(c) = self.client_mut(me) {
                c.state = State::Chatting(partner);
                c.prev = Some(partner_serial);
                c.pair = pair;
                c.signals = 0;
                c.signal_quiet_until_ms = 0;
            }
        }
        self.chatting += 2;
        self.metrics.pairs += 1;
        let video = &self.config.video;
        let unix_s = self.config.unix_start_s.saturating_add(now_ms / 1000);
        let credential = video.turn_credential(pair, unix_s);
        let ice = video.has_servers().then(|| Ice {
            config: video,
            credential: credential.as_ref().map(|(u, c)| (u.as_str(), c.as_str())),
        });
        for (to, initiator) in [(x, x_first), (y, !x_first)] {
            let msg = ServerMsg::Paired {
                common: &common,
                pair,
                initiator,
                ice,
            };
            out.send(to, &msg);
        }
        true
    }

    /// End of every public call: when the queue is down to two clients,
    /// the re-pair rule no longer keeps them apart, so pair them if they
    /// fit; then drop stale deadline entries so `next_deadline` is exact.
    fn finish_turn(&mut self, now_ms: u64, out: &mut dyn Outbox) {
        if self.queue.len() == 2 {
            if let Some(&first) = self.queue.values().next() {
                self.try_pair(first, now_ms, out);
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
