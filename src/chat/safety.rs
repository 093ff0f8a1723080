//! The chat's share of safety (PROTOCOL.md "Safety"): `block` and
//! `report`, the per-pair evidence ring, the word list. The rules and
//! tables themselves live in `crate::safety`; this file is how the
//! pairing uses them.
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
//! * The evidence is the pair's ring as it is when the report is made, so
//!   a report within 60 s after the pair ended still carries the messages.
//! * A client with no address (unit tests) can block and report, but
//!   nothing is recorded.

use super::pairing::{Pairing, State};
use super::protocol::{ErrorCode, LeftReason};
use super::{ClientId, Outbox, ServerMsg};
use crate::safety::evidence::Evidence;
use crate::safety::reports::Said;
use crate::safety::{ReportInput, RECENT_STRANGER_MS};
use std::net::IpAddr;

/// Most blocked clients a partner search steps over in one queue map.
pub(super) const MAX_BLOCKED_SKIPS: usize = 1000;

/// The last stranger of a client whose pair ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Recent {
    addr: Option<IpAddr>,
    ended_ms: u64,
}

/// A pair's evidence ring and how many of its two clients still hold it.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    evidence: Evidence,
    refs: u8,
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

    /// Keeps a relayed message in the pair's ring (made on the pair's
    /// first message, shared by both).
    pub(super) fn record(&mut self, from: ClientId, to: ClientId, text: &str) {
        let Some(serial) = self.client(from).map(|c| c.serial()) else {
            return;
        };
        let key = match self.client(from).and_then(|c| c.ring) {
            Some(key) => key,
            None => {
                let key = self.rings.insert(Ring {
                    evidence: Evidence::default(),
                    refs: 2,
                });
                for id in [from, to] {
                    if let Some(c) = self.client_mut(id) {
                        c.ring = Some(key);
                    }
                }
                key
            }
        };
        if let Some(ring) = self.rings.get_mut(key) {
            ring.evidence.push(serial, text);
        }
    }

    /// `a` and `b` stop talking: each remembers the other as its recent
    /// stranger.
    pub(super) fn pair_ended(&mut self, a: ClientId, b: ClientId, now_ms: u64) {
        let (addr_a, addr_b) = (
            self.client(a).and_then(|c| c.addr),
            self.client(b).and_then(|c| c.addr),
        );
        for (id, addr) in [(a, addr_b), (b, addr_a)] {
            if let Some(c) = self.client_mut(id) {
                c.recent = Some(Recent {
                    addr,
                    ended_ms: now_ms,
                });
            }
        }
    }

    /// The client lets go of its pair's ring; the last one frees it.
    pub(super) fn release_ring(&mut self, id: ClientId) {
        let Some(key) = self.client_mut(id).and_then(|c| c.ring.take()) else {
            return;
        };
        let last = match self.rings.get_mut(key) {
            Some(ring) => {
                ring.refs = ring.refs.saturating_sub(1);
                ring.refs == 0
            }
            None => false,
        };
        if last {
            self.rings.try_remove(key);
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
        let Some(c) = self.client(id) else {
            return;
        };
        let (state, me, serial, ring) = (c.state(), c.addr, c.serial(), c.ring);
        let (stranger, partner) = match (state, c.recent) {
            (State::Chatting(p), _) => (self.client(p).and_then(|pc| pc.addr), Some(p)),
            (_, Some(r)) if now_ms.saturating_sub(r.ended_ms) <= RECENT_STRANGER_MS => {
                (r.addr, None)
            }
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
        if let Some(p) = partner {
            self.pair_ended(id, p, now_ms);
            self.leave(p, LeftReason::Next, out);
        }
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
        match state {
            State::Queued => out.send(
                id,
                &ServerMsg::Waiting {
                    online: self.counts().online,
                },
            ),
            _ => self.search(id, now_ms, out),
        }
    }
}
