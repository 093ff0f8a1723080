//! A loop's chat sessions: relays, rate limits and the video budget of
//! each of its clients, in front of the matchmaking they share.
//!
//! [`Pairing`] is one event loop's part of the chat. Joining, `next`,
//! interests, leaving and the interest-wait timer go to the
//! [`Matchmaker`] (owned with one thread; behind one `Mutex` shared by every
//! loop with `--threads N`). A relayed `message`, `typing` or `signal`
//! needs only the sender's own session here: its partner's [`Peer`]
//! address, its pair id and its buckets; it never takes the lock. A partner
//! on another loop is reached through a [`Cross`] event the driver carries.
//!
//! Sessions live in a `Vec<Option<Session>>` indexed by [`ClientId`] (the
//! loop's slab index, small and reused).
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

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use slab::Slab;

use super::matchmaker::{Gid, MatchOut, Matchmaker, Member};
use super::peer::{Address, Cross, Peer};
use super::protocol::{interests_from_query, parse_client, ClientMsg, ErrorCode, LeftReason};
use super::safety::{Recent, Ring};
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
    /// Relays (`message`, `typing`, `signal`) to a partner on another loop.
    pub cross_relayed: u64,
}

impl ChatMetrics {
    /// Adds another loop's totals.
    pub fn add(&mut self, o: &ChatMetrics) {
        self.messages_relayed += o.messages_relayed;
        self.typing_relayed += o.typing_relayed;
        self.pairs += o.pairs;
        self.signals_relayed += o.signals_relayed;
        for (a, b) in self.errors.iter_mut().zip(o.errors) {
            *a += b;
        }
        self.rate_limit_closes += o.rate_limit_closes;
        self.cross_relayed += o.cross_relayed;
    }

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

/// A chat client of this loop.
#[derive(Debug)]
pub(super) struct Session {
    /// Its serial from the matchmaker.
    pub(super) serial: u64,
    rate: RateLimit,
    /// The current pair, while chatting.
    pub(super) chat: Option<Chat>,
    /// The client's address (None in tests that give none).
    pub(super) addr: Option<IpAddr>,
    /// The evidence ring of the current or last pair (`rings` key).
    pub(super) ring: Option<usize>,
    /// The last stranger, once the pair ended: for `block`/`report`.
    pub(super) recent: Option<Recent>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Chat {
    pub(super) partner: Peer,
    /// The stranger's address (for `block` and `report`).
    pub(super) partner_addr: Option<IpAddr>,
    pub(super) pair: PairId,
    /// Signals sent within this pair.
    signals: u32,
    /// No `rate_limited` answer for a signal before this time.
    signal_quiet_until_ms: u64,
}

/// The matchmaker, owned or shared. One per loop, never moved once
/// built: the size of the owned one does not matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Matchmaking {
    Own(Matchmaker),
    Shared(Arc<Mutex<Matchmaker>>),
}

/// Which loop this is, of how many.
#[derive(Clone, Copy, Debug)]
struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    fn gid(self, conn: ClientId) -> Gid {
        conn.saturating_mul(self.count).saturating_add(self.index)
    }

    fn is_here(self, gid: Gid) -> bool {
        gid % self.count == self.index
    }

    fn address(self, m: Member) -> Address {
        Address::here(m.gid % self.count, m.gid / self.count, m.serial)
    }

    fn peer(self, m: Member) -> Peer {
        if self.is_here(m.gid) {
            Peer::Here {
                conn: m.gid / self.count,
            }
        } else {
            Peer::Thread(self.address(m))
        }
    }
}

/// One loop's chat clients (see the module doc).
#[derive(Debug)]
pub struct Pairing {
    pub(super) config: ChatConfig,
    shard: Shard,
    matchmaking: Matchmaking,
    pub(super) sessions: Vec<Option<Session>>,
    /// Evidence rings of this loop's pairs that talked, each held by at
    /// most the pair's two clients (`Session::ring`; one when the stranger
    /// is on another loop, which keeps its own): at most one per online
    /// client.
    pub(super) rings: Slab<Ring>,
    /// Shared matchmaking only: interest-wait deadlines this loop has seen
    /// set, increasing, each once. Bound: they lie within one
    /// `--interest-wait` of now and are whole milliseconds, so at most
    /// `interest_wait_ms + 1` entries.
    deadlines: VecDeque<u64>,
    metrics: ChatMetrics,
}

impl Pairing {
    /// The chat of a server with one loop; `config` holds for its life.
    pub fn new(config: ChatConfig) -> Pairing {
        let matchmaker = Matchmaker::new(config.interest_wait_ms, config.pair_key).with_safety(
            config.safety.clone(),
            config.unix_start_s.saturating_mul(1000),
        );
        Pairing::with(config, Matchmaking::Own(matchmaker), 0, 1)
    }

    /// Loop `index` of `count`, sharing `matchmaker` with the others.
    pub fn shared(
        config: ChatConfig,
        matchmaker: Arc<Mutex<Matchmaker>>,
        index: usize,
        count: usize,
    ) -> Pairing {
        Pairing::with(config, Matchmaking::Shared(matchmaker), index, count.max(1))
    }

    fn with(config: ChatConfig, matchmaking: Matchmaking, index: usize, count: usize) -> Pairing {
        Pairing {
            config,
            shard: Shard { index, count },
            matchmaking,
            sessions: Vec::new(),
            rings: Slab::new(),
            deadlines: VecDeque::new(),
            metrics: ChatMetrics::default(),
        }
    }

    /// Runs `f` on the matchmaker (under its lock when shared) with a
    /// deliverer for what it decides.
    pub(super) fn matchmake<R>(
        &mut self,
        now_ms: u64,
        out: &mut dyn Outbox,
        f: impl FnOnce(&mut Matchmaker, &mut Deliver<'_>) -> R,
    ) -> R {
        let mut deliver = Deliver {
            config: &self.config,
            shard: self.shard,
            sessions: &mut self.sessions,
            rings: &mut self.rings,
            now_ms,
            out,
        };
        match &mut self.matchmaking {
            Matchmaking::Own(m) => f(m, &mut deliver),
            Matchmaking::Shared(shared) => {
                // A panic elsewhere cannot leave the queue half-updated in a
                // way that matters more than stopping the chat would.
                let mut m = shared.lock().unwrap_or_else(|e| e.into_inner());
                let result = f(&mut m, &mut deliver);
                if let Some(at) = m.last_deadline() {
                    if self.deadlines.back().map_or(true, |&last| at > last) {
                        self.deadlines.push_back(at);
                    }
                }
                result
            }
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
        let tags = interests_query
            .map(interests_from_query)
            .unwrap_or_default();
        if self.sessions.len() <= id {
            self.sessions.resize_with(id + 1, || None);
        }
        if let Some(slot) = self.sessions.get_mut(id) {
            *slot = Some(Session {
                serial: u64::MAX,
                rate: RateLimit::new(now_ms, self.config.rate_per_sec),
                chat: None,
                addr,
                ring: None,
                recent: None,
            });
        }
        let gid = self.shard.gid(id);
        // The serial is needed before `paired` can be delivered: the
        // matchmaker hands it to the deliverer first.
        let serial = self.matchmake(now_ms, out, |m, d| m.connect(gid, tags, addr, now_ms, d));
        if let Some(s) = self.session_mut(id) {
            s.serial = serial;
        }
    }

    /// One text message from client `id`. `Err` asks the caller to close
    /// the session (see [`SessionError`]).
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
                if self.session(id).is_some() {
                    self.refuse(id, ErrorCode::SignalTooLarge, out);
                }
                return Ok(());
            }
            _ => {}
        }
        let rate = self.config.rate_per_sec;
        let Some(session) = self.session_mut(id) else {
            return Ok(());
        };
        let chat = session.chat;
        match session.rate.check(now_ms, rate) {
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
            Ok(ClientMsg::Message { text }) => match chat {
                Some(_) if self.blocked_word(&text) => self.refuse(id, ErrorCode::BlockedWord, out),
                Some(chat) => {
                    self.metrics.messages_relayed += 1;
                    self.record(id, chat, &text);
                    relay(
                        id,
                        chat,
                        &ServerMsg::Message { text: &text },
                        &mut self.metrics,
                        out,
                    );
                }
                None => self.refuse(id, ErrorCode::NotPaired, out),
            },
            Ok(ClientMsg::Typing { active }) => match chat {
                Some(chat) => {
                    self.metrics.typing_relayed += 1;
                    relay(
                        id,
                        chat,
                        &ServerMsg::Typing { active },
                        &mut self.metrics,
                        out,
                    );
                }
                None => self.refuse(id, ErrorCode::NotPaired, out),
            },
            Ok(ClientMsg::Next) => {
                self.end_own_chat(id, now_ms);
                let gid = self.shard.gid(id);
                self.matchmake(now_ms, out, |m, d| m.next(gid, now_ms, d));
            }
            Ok(ClientMsg::Interests { tags }) => {
                let gid = self.shard.gid(id);
                self.matchmake(now_ms, out, |m, d| m.set_interests(gid, tags, now_ms, d));
            }
            Ok(ClientMsg::Block) => self.block(id, None, now_ms, out),
            Ok(ClientMsg::Report { reason, note }) => {
                self.block(id, Some((reason, note)), now_ms, out)
            }
            // Handled above, before the rate limit.
            Ok(ClientMsg::Signal { .. }) => {}
        }
        Ok(())
    }

    /// The client is gone (closed, dropped, or failed).
    pub fn on_disconnect(&mut self, id: ClientId, now_ms: u64, out: &mut dyn Outbox) {
        let Some(session) = self.sessions.get_mut(id).and_then(Option::take) else {
            return;
        };
        release_ring(&mut self.rings, session.ring);
        let gid = self.shard.gid(id);
        self.matchmake(now_ms, out, |m, d| m.disconnect(gid, now_ms, d));
    }

    /// Earliest time `on_tick` has work to do (an interest wait ends).
    pub fn next_deadline(&self) -> Option<u64> {
        match &self.matchmaking {
            Matchmaking::Own(m) => m.next_deadline(),
            Matchmaking::Shared(_) => self.deadlines.front().copied(),
        }
    }

    /// Ends the interest waits due by `now_ms`; those clients now take
    /// anyone and are paired if someone fits.
    pub fn on_tick(&mut self, now_ms: u64, out: &mut dyn Outbox) {
        while self.deadlines.front().is_some_and(|&at| at <= now_ms) {
            self.deadlines.pop_front();
        }
        self.matchmake(now_ms, out, |m, d| m.tick(now_ms, d));
    }

    /// How many clients are online, queued and chatting right now, in
    /// the whole process (for `/stats` and `/metrics`).
    pub fn counts(&self) -> Counts {
        match &self.matchmaking {
            Matchmaking::Own(m) => m.counts(),
            Matchmaking::Shared(m) => m.lock().unwrap_or_else(|e| e.into_inner()).counts(),
        }
    }

    /// [`Pairing::counts`] over the whole cluster with `--redis` (`/stats`).
    pub fn cluster_counts(&self) -> Counts {
        match &self.matchmaking {
            Matchmaking::Own(m) => m.counts(),
            Matchmaking::Shared(m) => m.lock().unwrap_or_else(|e| e.into_inner()).cluster_counts(),
        }
    }

    /// Totals for `/metrics`: this loop's, with the pairs made process-wide.
    pub fn metrics(&self) -> ChatMetrics {
        let pairs = match &self.matchmaking {
            Matchmaking::Own(m) => m.pairs(),
            Matchmaking::Shared(m) => m.lock().unwrap_or_else(|e| e.into_inner()).pairs(),
        };
        ChatMetrics {
            pairs,
            ..self.metrics
        }
    }

    /// This loop's totals alone (`pairs` is 0: it is process-wide).
    pub fn local_metrics(&self) -> ChatMetrics {
        self.metrics
    }

    // ---- events from other loops ----------------------------------------

    /// Whether a message relayed from another loop for `conn` in `pair`
    /// is to be delivered: `pair` is its current pair.
    pub fn relay_in(&self, conn: ClientId, pair: PairId) -> bool {
        self.session(conn)
            .and_then(|s| s.chat)
            .is_some_and(|c| c.pair == pair)
    }

    /// `to` (a client of this loop) was paired by another loop.
    #[allow(clippy::too_many_arguments)]
    pub fn paired_in(
        &mut self,
        to: Address,
        (partner, partner_addr): (Address, Option<IpAddr>),
        pair: PairId,
        initiator: bool,
        common: &[String],
        now_ms: u64,
        out: &mut dyn Outbox,
    ) {
        let member = Member {
            gid: self.shard.gid(to.conn()),
            serial: to.serial,
            addr: None,
        };
        let current = match &self.matchmaking {
            Matchmaking::Own(m) => m.is_current(member, pair),
            Matchmaking::Shared(m) => m
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_current(member, pair),
        };
        if !current {
            return;
        }
        let peer = if partner.node != 0 {
            Peer::Node(partner)
        } else if partner.thread() == self.shard.index {
            Peer::Here {
                conn: partner.conn(),
            }
        } else {
            Peer::Thread(partner)
        };
        let mut d = Deliver {
            config: &self.config,
            shard: self.shard,
            sessions: &mut self.sessions,
            rings: &mut self.rings,
            now_ms,
            out,
        };
        d.start_chat(
            to.conn(),
            to.serial,
            (peer, partner_addr),
            pair,
            initiator,
            common,
        );
    }

    /// `to`'s stranger of `pair` left.
    pub fn left_in(
        &mut self,
        to: Address,
        pair: PairId,
        reason: LeftReason,
        now_ms: u64,
        out: &mut dyn Outbox,
    ) {
        end_chat(&mut self.sessions, to.conn(), pair, reason, now_ms, out);
    }

    /// Another loop asks this one to pair its client `gid`.
    pub fn nudge_in(&mut self, gid: Gid, serial: u64, now_ms: u64, out: &mut dyn Outbox) {
        self.matchmake(now_ms, out, |m, d| m.retry(gid, serial, now_ms, d));
    }

    /// A relay from `id` found the partner's inbox full: it was dropped,
    /// and the sender hears `rate_limited` as for any dropped message.
    pub fn relay_refused(&mut self, id: ClientId, out: &mut dyn Outbox) {
        if self.session(id).is_some() {
            self.refuse(id, ErrorCode::RateLimited, out);
        }
    }

    /// The address a chat client of this loop connected from.
    pub fn client_addr(&self, id: ClientId) -> Option<IpAddr> {
        self.session(id).and_then(|s| s.addr)
    }

    /// `id`'s matchmaking id.
    pub(super) fn gid(&self, id: ClientId) -> Gid {
        self.shard.gid(id)
    }

    pub(super) fn session(&self, id: ClientId) -> Option<&Session> {
        self.sessions.get(id).and_then(Option::as_ref)
    }

    pub(super) fn session_mut(&mut self, id: ClientId) -> Option<&mut Session> {
        self.sessions.get_mut(id).and_then(Option::as_mut)
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
        let Some(Some(c)) = self.session_mut(id).map(|s| s.chat.as_mut()) else {
            return;
        };
        if pair != Some(c.pair) {
            return;
        }
        if c.signals >= SIGNAL_BUDGET {
            let notify = now_ms >= c.signal_quiet_until_ms;
            if notify {
                c.signal_quiet_until_ms = now_ms.saturating_add(NOTICE_EVERY_MS);
            }
            self.drop_rate_limited(id, notify, out);
            return;
        }
        c.signals += 1;
        let chat = *c;
        self.metrics.signals_relayed += 1;
        relay(
            id,
            chat,
            &ServerMsg::Signal {
                pair: chat.pair,
                data,
            },
            &mut self.metrics,
            out,
        );
    }
}

/// Sends `msg` from `from` to its partner, wherever it is.
fn relay(
    from: ClientId,
    chat: Chat,
    msg: &ServerMsg<'_>,
    metrics: &mut ChatMetrics,
    out: &mut dyn Outbox,
) {
    match chat.partner {
        Peer::Here { conn } => out.send(conn, msg),
        Peer::Thread(to) | Peer::Node(to) => {
            metrics.cross_relayed += 1;
            out.cross(&Cross::Relay {
                to,
                from,
                pair: chat.pair,
                msg,
            });
        }
    }
}

/// Ends `conn`'s chat in `pair` (if that is its current one) and tells it;
/// the stranger stays its recent one (`block`/`report`).
fn end_chat(
    sessions: &mut [Option<Session>],
    conn: ClientId,
    pair: PairId,
    reason: LeftReason,
    now_ms: u64,
    out: &mut dyn Outbox,
) {
    let Some(Some(s)) = sessions.get_mut(conn) else {
        return;
    };
    if let Some(c) = s.chat.filter(|c| c.pair == pair) {
        s.chat = None;
        s.recent = Some(Recent::new(c.partner_addr, now_ms));
        out.send(conn, &ServerMsg::Left { reason });
    }
}

/// A client lets go of a ring; the last holder frees it.
pub(super) fn release_ring(rings: &mut Slab<Ring>, key: Option<usize>) {
    let Some(key) = key else {
        return;
    };
    if rings.get_mut(key).is_some_and(Ring::release) {
        rings.try_remove(key);
    }
}

/// Carries the matchmaker's decisions to this loop's sessions, and to
/// other loops' as [`Cross`] events.
pub(super) struct Deliver<'a> {
    config: &'a ChatConfig,
    shard: Shard,
    sessions: &'a mut Vec<Option<Session>>,
    rings: &'a mut Slab<Ring>,
    now_ms: u64,
    out: &'a mut dyn Outbox,
}

impl Deliver<'_> {
    /// `conn` talks to `partner` in `pair` from now on, and is told so.
    fn start_chat(
        &mut self,
        conn: ClientId,
        serial: u64,
        (partner, partner_addr): (Peer, Option<IpAddr>),
        pair: PairId,
        initiator: bool,
        common: &[String],
    ) {
        let Some(Some(s)) = self.sessions.get_mut(conn) else {
            return;
        };
        if s.serial != serial {
            return;
        }
        // The last pair's evidence is let go: a new pair, a new ring.
        release_ring(self.rings, s.ring.take());
        s.recent = None;
        s.chat = Some(Chat {
            partner,
            partner_addr,
            pair,
            signals: 0,
            signal_quiet_until_ms: 0,
        });
        let video = &self.config.video;
        let unix_s = self.config.unix_start_s.saturating_add(self.now_ms / 1000);
        let credential = video.turn_credential(pair, unix_s);
        let ice = video.has_servers().then(|| Ice {
            config: video,
            credential: credential.as_ref().map(|(u, c)| (u.as_str(), c.as_str())),
        });
        let msg = ServerMsg::Paired {
            common,
            pair,
            initiator,
            ice,
        };
        self.out.send(conn, &msg);
    }
}

impl MatchOut for Deliver<'_> {
    fn waiting(&mut self, to: Gid, online: usize) {
        let conn = to / self.shard.count;
        self.out.send(conn, &ServerMsg::Waiting { online });
    }

    fn paired(&mut self, x: Member, y: Member, pair: PairId, x_initiator: bool, common: &[String]) {
        for (me, other, initiator) in [(x, y, x_initiator), (y, x, !x_initiator)] {
            let conn = me.gid / self.shard.count;
            if self.shard.is_here(me.gid) {
                if let Some(Some(s)) = self.sessions.get_mut(conn) {
                    // A client paired in the call that connected it.
                    if s.serial == u64::MAX {
                        s.serial = me.serial;
                    }
                }
                let peer = self.shard.peer(other);
                self.start_chat(conn, me.serial, (peer, other.addr), pair, initiator, common);
            } else {
                self.out.cross(&Cross::Paired {
                    to: self.shard.address(me),
                    partner: self.shard.address(other),
                    partner_addr: other.addr,
                    pair,
                    initiator,
                    common,
                });
            }
        }
    }

    fn left(&mut self, to: Member, pair: PairId, reason: LeftReason) {
        if self.shard.is_here(to.gid) {
            end_chat(
                self.sessions,
                to.gid / self.shard.count,
                pair,
                reason,
                self.now_ms,
                self.out,
            );
        } else {
            self.out.cross(&Cross::Left {
                to: self.shard.address(to),
                pair,
                reason,
            });
        }
    }

    fn paired_remote(
        &mut self,
        me: Member,
        (partner, partner_addr): (Address, Option<IpAddr>),
        pair: PairId,
        initiator: bool,
        common: &[String],
    ) {
        if self.shard.is_here(me.gid) {
            let conn = me.gid / self.shard.count;
            let peer = (Peer::Node(partner), partner_addr);
            self.start_chat(conn, me.serial, peer, pair, initiator, common);
        } else {
            self.out.cross(&Cross::Paired {
                to: self.shard.address(me),
                partner,
                partner_addr,
                pair,
                initiator,
                common,
            });
        }
    }

    fn left_remote(&mut self, to: Address, pair: PairId, reason: LeftReason) {
        self.out.cross(&Cross::Left { to, pair, reason });
    }

    fn is_here(&self, gid: Gid) -> bool {
        self.shard.is_here(gid)
    }

    fn nudge(&mut self, x: Member) {
        self.out.cross(&Cross::Nudge {
            thread: x.gid % self.shard.count,
            gid: x.gid,
            serial: x.serial,
        });
    }
}
