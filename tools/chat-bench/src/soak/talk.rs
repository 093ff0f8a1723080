//! The soak's chat clients (PROTOCOL.md "Chat session") and the checks on
//! what they hear, sans IO: text in, text out.
//!
//! The tool owns both ends of every pair. On `paired` a client says hello
//! with its talk id (`h SERIAL.TALK`: its connection serial and how many
//! times it has been paired), then numbers its messages (`m SERIAL.TALK
//! SEQ`). The partner checks that messages come from the one who said hello,
//! in order, without gaps. When a client ends a talk (`next`, or by leaving
//! the connection) it writes in the [`Ledger`] how many messages it sent
//! and how it went; the partner's `left` is checked against that entry: the
//! reason must match, and, unless the leave may lose data (an RST), every
//! message must have arrived before the `left`.
//!
//! Crossings are normal and not violations: a client that sent `next` still
//! hears the old partner until its `waiting` arrives (the server relayed
//! those before it read the `next`), may get a `left` for that old talk,
//! and a message sent as the partner leaves comes back as `not_paired`.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::io::Write;

use serde::Deserialize;

use super::plan::MS;
use super::tally::Tally;
use crate::clock::NS;
use crate::rng::Rng;

/// One pairing as one side sees it: (connection serial, talk number).
pub type TalkId = (u64, u32);

/// How a talk ended, as its `left` must say.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum How {
    Next,
    Disconnected,
}

struct Ended {
    sent: u64,
    how: How,
    lossy: bool,
}

/// Entries older than this are dropped unread: their partner left too.
const ENDED_KEEP: u64 = 30 * NS;
/// And never more than this many (a bound whatever the churn rate).
const ENDED_MAX: usize = 200_000;

/// Shared between the chat clients: talks that ended, and who is paired
/// with whom right now (for the symmetry check).
#[derive(Default)]
pub struct Ledger {
    ended: HashMap<TalkId, Ended>,
    /// Insertion order, for expiry.
    order: VecDeque<(u64, TalkId)>,
    /// Live chat connections: serial → (current talk, partner if known).
    /// One entry per open chat connection: bounded by `--clients`.
    live: HashMap<u64, (u32, Option<TalkId>)>,
}

impl Ledger {
    fn end(&mut self, talk: TalkId, e: Ended, now: u64) {
        self.ended.insert(talk, e);
        self.order.push_back((now, talk));
        while let Some(&(at, t)) = self.order.front() {
            if at + ENDED_KEEP > now && self.order.len() <= ENDED_MAX {
                break;
            }
            self.order.pop_front();
            self.ended.remove(&t);
        }
    }

    /// The connection `serial` is gone.
    pub fn gone(&mut self, serial: u64) {
        self.live.remove(&serial);
    }
}

/// What the server sends; unknown fields are ignored.
#[derive(Deserialize)]
struct ServerMsg<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
}

/// One side of a pairing.
#[derive(Clone, Copy)]
struct Talk {
    partner: Option<TalkId>,
    /// Next sequence number expected from the partner.
    expect: u64,
}

/// Messages a client sends per second, in bursts of twice that: under the
/// server's default limit (10/s, bursts of 20) with room for timing.
const RATE: u64 = 4;

/// Filler that varies the length of chat lines.
const PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// One chat client's state.
pub struct ChatState {
    serial: u64,
    /// Pairings so far; the current talk's number when paired.
    talk: u32,
    current: Option<Talk>,
    /// The talk this client left with `next`, until `waiting` arrives.
    prev: Option<Talk>,
    seq_out: u64,
    hello_due: bool,
    next_due: bool,
    /// Token bucket in milli-messages (see [`RATE`]).
    tokens: u64,
    refilled: u64,
    scratch: Vec<u8>,
}

fn parse_talk(s: &str) -> Option<TalkId> {
    let (serial, talk) = s.split_once('.')?;
    Some((serial.parse().ok()?, talk.parse().ok()?))
}

impl ChatState {
    pub fn new(serial: u64, now: u64) -> ChatState {
        ChatState {
            serial,
            talk: 0,
            current: None,
            prev: None,
            seq_out: 0,
            hello_due: false,
            next_due: false,
            tokens: 2 * RATE * 1000,
            refilled: now,
            scratch: Vec::with_capacity(256),
        }
    }

    fn me(&self) -> TalkId {
        (self.serial, self.talk)
    }

    /// Paired, and the hello is out: a message may follow (before the
    /// hello the partner would rightly take it for a stranger's).
    pub fn introduced(&self) -> bool {
        self.current.is_some() && !self.hello_due
    }

    fn take_token(&mut self, now: u64) -> bool {
        let gained = now.saturating_sub(self.refilled) * RATE / 1_000_000;
        self.tokens = (self.tokens + gained).min(2 * RATE * 1000);
        self.refilled = now;
        if self.tokens >= 1000 {
            self.tokens -= 1000;
            true
        } else {
            false
        }
    }

    fn emit(&mut self, send: &mut dyn FnMut(&[u8]), text: std::fmt::Arguments<'_>) {
        self.scratch.clear();
        let _ = self.scratch.write_fmt(text);
        send(&self.scratch);
    }

    /// The next numbered message of the current talk (`pad` filler bytes).
    pub fn send_message(&mut self, pad: usize, t: &mut Tally, send: &mut dyn FnMut(&[u8])) {
        let (serial, talk, seq) = (self.serial, self.talk, self.seq_out);
        self.seq_out += 1;
        t.chat_sent += 1;
        let pad = PAD.get(..pad).unwrap_or(PAD);
        self.emit(
            send,
            format_args!(r#"{{"type":"message","text":"m {serial}.{talk} {seq} {pad}"}}"#),
        );
    }

    /// A message frame's text that is never counted: for leaving mid-frame.
    pub fn doomed_message(&self) -> String {
        format!(
            r#"{{"type":"message","text":"m {}.{} {} cut"}}"#,
            self.serial, self.talk, self.seq_out
        )
    }

    /// The timer: says hello, asks for the next stranger, or talks. Returns
    /// when to act again.
    pub fn act(
        &mut self,
        now: u64,
        rng: &mut Rng,
        ledger: &mut Ledger,
        t: &mut Tally,
        send: &mut dyn FnMut(&[u8]),
    ) -> u64 {
        if !(self.hello_due || self.next_due || self.current.is_some()) {
            return now + 500 * MS;
        }
        if !self.take_token(now) {
            return now + 100 * MS;
        }
        if self.hello_due {
            self.hello_due = false;
            let (s, k) = self.me();
            self.emit(
                send,
                format_args!(r#"{{"type":"message","text":"h {s}.{k}"}}"#),
            );
            return now + rng.between(50, 300) * MS;
        }
        if self.next_due {
            self.next_due = false;
            t.nexts_sent += 1;
            send(br#"{"type":"next"}"#);
            return now + 500 * MS;
        }
        match rng.below(100) {
            0..=69 => self.send_message(rng.below(65) as usize, t, send),
            70..=89 => {
                t.typing_sent += 1;
                let on = rng.chance(50);
                self.emit(send, format_args!(r#"{{"type":"typing","active":{on}}}"#));
            }
            _ => {
                // Leave this stranger for the next one.
                self.end_talk(How::Next, false, now, ledger);
                self.prev = self.current.take();
                t.nexts_sent += 1;
                send(br#"{"type":"next"}"#);
                ledger.live.insert(self.serial, (self.talk, None));
            }
        }
        now + rng.between(250, 600) * MS
    }

    /// Writes the current talk's end in the ledger (`lossy`: messages may
    /// be lost without the server's fault).
    pub fn end_talk(&mut self, how: How, lossy: bool, now: u64, ledger: &mut Ledger) {
        if self.current.is_some() {
            let e = Ended {
                sent: self.seq_out,
                how,
                lossy,
            };
            ledger.end(self.me(), e, now);
        }
    }

    /// One text message from the server.
    /// `act_at`: when [`ChatState::act`] is due; moved earlier when
    /// something is to be said (a hello, a `next`).
    pub fn on_text(
        &mut self,
        data: &[u8],
        now: u64,
        rng: &mut Rng,
        ledger: &mut Ledger,
        t: &mut Tally,
        act_at: &mut u64,
    ) {
        let Ok(m) = serde_json::from_slice::<ServerMsg<'_>>(data) else {
            let shown = String::from_utf8_lossy(&data[..data.len().min(80)]).into_owned();
            return t.violation(|v| &mut v.malformed, format!("not JSON: {shown}"));
        };
        match &*m.kind {
            "waiting" => {
                t.waiting += 1;
                self.prev = None;
            }
            "paired" => {
                t.paired += 1;
                if self.current.is_some() {
                    t.violation(|v| &mut v.double_paired, "paired while paired".into());
                }
                self.talk += 1;
                self.seq_out = 0;
                self.prev = None;
                self.current = Some(Talk {
                    partner: None,
                    expect: 0,
                });
                self.hello_due = true;
                *act_at = now;
                ledger.live.insert(self.serial, (self.talk, None));
            }
            "message" => match m.text {
                Some(text) => self.on_relay(&text, ledger, t),
                None => t.violation(|v| &mut v.malformed, "message without text".into()),
            },
            "typing" => {
                t.typing_received += 1;
                if self.current.is_none() && self.prev.is_none() {
                    t.violation(|v| &mut v.not_paired, "typing while not paired".into());
                }
            }
            "left" => {
                if self.on_left(m.reason.as_deref(), ledger, t) {
                    // Idle now: ask for the next stranger after a moment.
                    self.next_due = true;
                    *act_at = now + rng.below(300) * MS;
                }
            }
            "error" if m.code.as_deref() == Some("not_paired") => t.not_paired_errors += 1,
            "error" => {
                let code = m.code.as_deref().unwrap_or("?").to_string();
                t.violation(|v| &mut v.server_errors, format!("server error {code}"));
            }
            other => {
                let what = format!("unknown type {other}");
                t.violation(|v| &mut v.malformed, what);
            }
        }
    }

    /// Checks a `left` against the ledger; whether it ended the current
    /// talk (rather than one this client had already left).
    fn on_left(&mut self, reason: Option<&str>, ledger: &mut Ledger, t: &mut Tally) -> bool {
        match reason {
            Some("next") => t.left_next += 1,
            Some("disconnected") => t.left_disconnected += 1,
            _ => t.violation(|v| &mut v.malformed, format!("left reason {reason:?}")),
        }
        let (talk, current) = if let Some(talk) = self.current.take() {
            ledger.live.insert(self.serial, (self.talk, None));
            (talk, true)
        } else if let Some(talk) = self.prev.take() {
            (talk, false) // we had sent `next` too; the server took theirs first
        } else {
            t.violation(|v| &mut v.not_paired, "left while not paired".into());
            return false;
        };
        let Some(e) = talk.partner.and_then(|p| ledger.ended.remove(&p)) else {
            t.left_unverified += 1;
            return current;
        };
        t.left_verified += 1;
        let said = match reason {
            Some("next") => How::Next,
            _ => How::Disconnected,
        };
        if said != e.how {
            let what = format!("left {reason:?} for a partner that left by {:?}", e.how);
            t.violation(|v| &mut v.wrong_left_reason, what);
        }
        if !e.lossy && e.sent > talk.expect {
            t.v.missing += e.sent - talk.expect;
            t.note(format!(
                "{} of {} messages never arrived before left",
                e.sent - talk.expect,
                e.sent
            ));
        }
        current
    }

    /// `h TALK` or `m TALK SEQ ...` from the partner.
    fn on_relay(&mut self, text: &str, ledger: &mut Ledger, t: &mut Tally) {
        let mut parts = text.split(' ');
        let (kind, from) = (parts.next(), parts.next().and_then(parse_talk));
        let Some(from) = from else {
            return t.violation(|v| &mut v.malformed, format!("relay text {text:.60}"));
        };
        let me = self.me();
        // The talk this belongs to: the current one, or the one being left.
        let hello = kind == Some("h");
        let slot = match (&mut self.current, &mut self.prev) {
            (Some(c), _) if hello || c.partner == Some(from) => c,
            (None, Some(p)) if p.partner == Some(from) || (hello && p.partner.is_none()) => p,
            (None, None) => {
                return t.violation(|v| &mut v.not_paired, format!("{text:.40} while unpaired"));
            }
            _ => return t.violation(|v| &mut v.misrouted, format!("{text:.40} to {me:?}")),
        };
        match kind {
            Some("h") => {
                if slot.partner.is_some() {
                    return t.violation(|v| &mut v.misrouted, format!("second hello {text:.40}"));
                }
                slot.partner = Some(from);
                if let Some(&(talk, Some(theirs))) = ledger.live.get(&from.0) {
                    if talk == from.1 && theirs != me {
                        let what = format!("{from:?} is paired with {theirs:?}, not {me:?}");
                        t.violation(|v| &mut v.asymmetric, what);
                    }
                }
                if self.current.is_some() {
                    ledger.live.insert(self.serial, (self.talk, Some(from)));
                }
            }
            Some("m") => {
                t.chat_received += 1;
                let Some(seq) = parts.next().and_then(|s| s.parse::<u64>().ok()) else {
                    return t.violation(|v| &mut v.malformed, format!("relay text {text:.60}"));
                };
                if seq >= slot.expect {
                    if seq > slot.expect {
                        let gap = seq - slot.expect;
                        t.v.missing += gap;
                        t.note(format!("{gap} messages skipped before {text:.40}"));
                    }
                    slot.expect = seq + 1;
                } else {
                    t.violation(
                        |v| &mut v.out_of_order,
                        format!("{text:.40} after a later one"),
                    );
                }
            }
            _ => t.violation(|v| &mut v.malformed, format!("relay text {text:.60}")),
        }
    }
}

#[cfg(test)]
#[path = "talk_tests.rs"]
mod tests;
