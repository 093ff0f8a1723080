//! The chat's share of safety (PROTOCOL.md "Safety"): `block` and
//! `report`, the evidence ring, the word list. The rules and tables
//! themselves live in `crate::safety`; this file is how a loop's sessions
//! use them. The block rule inside the search is the matchmaker's
//! (`matchmaker.rs`), which every loop shares.
//!
//! Decisions where PROTOCOL.md is silent:
//! * "The last stranger" is the one of the pair that ended most recently,
//!   however it ended (`next` by either side, a disconnect); `block` or
//!   `report` names it for 60 s after, while the sender is not in a new
//!   chat. Sent while queued, the sender keeps its place and gets
//!   `waiting` again (as `next` while queued does).
//! * Blocking the same stranger again renews the 24 h; a second report
//!   of the same stranger by the same address is recorded but counts once
//!   toward an automatic ban.
//! * The evidence is the ring as it is when the report is made, so a
//!   report within 60 s after the pair ended still carries the messages.
//!   Two strangers on one loop share one ring; with `--threads N` two
//!   strangers on different loops each keep one (what they sent and what
//!   reached them), so the reporter's ring holds the whole conversation.
//! * A client with no address (unit tests) can block and report, but
//!   nothing is recorded.

use super::pairing::{Chat, Pairing};
use super::peer::Peer;
use super::protocol::ErrorCode;
use super::{ClientId, Outbox, ServerMsg};
use crate::safety::evidence::Evidence;
use crate::safety::reports::Said;
use crate::safety::{ReportInput, RECENT_STRANGER_MS};
use std::net::IpAddr;

/// The speaker id of a message that reached this loop from a stranger on
/// another loop: never a serial (serials count up from 0), so never the
/// reporter.
const FROM_ELSEWHERE: u64 = u64::MAX;

/// The last stranger of a client whose pair ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Recent {
    addr: Option<IpAddr>,
    ended_ms: u64,
}

impl Recent {
    pub(super) fn new(addr: Option<IpAddr>, ended_ms: u64) -> Recent {
        Recent { addr, ended_ms }
    }
}

/// An evidence ring and how many of this loop's clients still hold it.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    evidence: Evidence,
    refs: u8,
}

impl Ring {
    /// One holder lets go; true when it was the last.
    pub(super) fn release(&mut self) -> bool {
        self.refs = self.refs.saturating_sub(1);
        self.refs == 0
    }
}

impl Pairing {
    /// The safety state's clock: Unix milliseconds.
    pub(super) fn unix_ms(&self, now_ms: u64) -> u64 {
        self.config
            .unix_start_s
            .saturating_mul(1000)
            .saturating_add(now_ms)
    }

    /// Whether `text` matches the operator's word list (counted if so).
    pub(super) fn blocked_word(&self, text: &str) -> bool {
        let safety = &self.config.safety;
        let hit = safety.words().is_some_and(|w| w.matches(text));
        if hit {
            safety.count_blocked_word();
        }
        hit
    }

    /// The ring `id` records into, made on the pair's first message: shared
    /// with a stranger on this loop, its own otherwise.
    fn ring_of(&mut self, id: ClientId, partner: Option<Peer>) -> Option<usize> {
        if let Some(key) = self.session(id)?.ring {
            return Some(key);
        }
        let here = match partner {
            Some(Peer::Here { conn }) => self.session(conn).is_some().then_some(conn),
            _ => None,
        };
        let key = self.rings.insert(Ring {
            evidence: Evidence::default(),
            refs: if here.is_some() { 2 } else { 1 },
        });
        for holder in [Some(id), here].into_iter().flatten() {
            if let Some(s) = self.session_mut(holder) {
                s.ring = Some(key);
            }
        }
        Some(key)
    }

    /// Keeps a message `from` sends in `chat` in its ring. Allocates only
    /// the pair's first time.
    pub(super) fn record(&mut self, from: ClientId, chat: Chat, text: &str) {
        let Some(serial) = self.session(from).map(|s| s.serial) else {
            return;
        };
        if let Some(key) = self.ring_of(from, Some(chat.partner)) {
            if let Some(ring) = self.rings.get_mut(key) {
                ring.evidence.push(serial, text);
            }
        }
    }

    /// Keeps a `message` relayed to `conn` from a stranger on another loop
    /// (`json`: the message as it will be framed) in `conn`'s ring. Other
    /// relays (`typing`, `signal`) are not evidence.
    pub fn record_in(&mut self, conn: ClientId, json: &[u8]) {
        let Some(literal) = json
            .strip_prefix(br#"{"type":"message","text":"#)
            .and_then(|rest| rest.strip_suffix(b"}"))
        else {
            return;
        };
        if let Some(key) = self.ring_of(conn, None) {
            if let Some(ring) = self.rings.get_mut(key) {
                ring.evidence.push_json(FROM_ELSEWHERE, literal);
            }
        }
    }

    /// `id` leaves its current chat itself (`next`, `block`, `report`): the
    /// stranger becomes its recent one.
    pub(super) fn end_own_chat(&mut self, id: ClientId, now_ms: u64) {
        if let Some(s) = self.session_mut(id) {
            if let Some(c) = s.chat.take() {
                s.recent = Some(Recent::new(c.partner_addr, now_ms));
            }
        }
    }

    /// `block` (report None) or `report`: leave the current or recent
    /// stranger like `next`, keep the two addresses apart, file the report.
    pub(super) fn block(
        &mut self,
        id: ClientId,
        report: Option<(&'static str, String)>,
        now_ms: u64,
        out: &mut dyn Outbox,
    ) {
        let Some(s) = self.session(id) else {
            return;
        };
        let (me, serial, ring) = (s.addr, s.serial, s.ring);
        let stranger = match (s.chat, s.recent) {
            (Some(c), _) => c.partner_addr,
            (None, Some(r)) if now_ms.saturating_sub(r.ended_ms) <= RECENT_STRANGER_MS => r.addr,
            _ => return self.refuse(id, ErrorCode::NotPaired, out),
        };
        let messages: Vec<Said> = match (&report, ring.and_then(|k| self.rings.get(k))) {
            (Some(_), Some(ring)) => ring
                .evidence
                .messages()
                .into_iter()
                .map(|(from, text)| Said {
                    from: if from == serial {
                        "reporter"
                    } else {
                        "reported"
                    },
                    text,
                })
                .collect(),
            _ => Vec::new(),
        };
        // The block is in force before the search below, so the two are
        // never paired again by it.
        let unix_ms = self.unix_ms(now_ms);
        if let (Some(me), Some(stranger)) = (me, stranger) {
            let safety = self.config.safety.clone();
            safety.block(me, stranger, unix_ms);
            if let Some((reason, note)) = &report {
                safety.report(
                    ReportInput {
                        reporter: me,
                        reported: stranger,
                        reason: (*reason).to_string(),
                        note: note.clone(),
                        messages,
                    },
                    unix_ms,
                );
            }
        }
        if report.is_some() {
            out.send(id, &ServerMsg::Reported);
        }
        // Like `next`: the stranger (if still there) is told `left`
        // `next`, and the sender searches (or, queued, hears `waiting`).
        self.end_own_chat(id, now_ms);
        let gid = self.gid(id);
        let block_ms = self.config.safety.block_ms();
        let cluster_block = me.zip(stranger);
        self.matchmake(now_ms, out, |m, d| {
            // With `--redis`, the block holds on every node (a Redis key
            // with the block's lifetime) before the search below.
            if let Some((a, b)) = cluster_block {
                m.cluster_block(a, b, block_ms);
            }
            m.next(gid, now_ms, d)
        });
    }
}
