//! The chat clients' side of PROTOCOL.md and the checks on what arrives:
//! every relayed message names its sender, a sequence number and a send
//! stamp, so misrouting, reordering and loss are counted, not guessed.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

use chat::ws::{Message, OpCode};
use serde::Deserialize;

use super::layout::{is_across, Layout};
use crate::clock::{wall_ns, NS};
use crate::conn::{Conns, Handler};
use crate::rng::Rng;
use crate::stats::Latency;

/// What the server sends (PROTOCOL.md); unknown fields are ignored.
#[derive(Deserialize)]
pub struct ServerMsg<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub code: Option<Cow<'a, str>>,
}

/// A client's identity on the wire: (process tag, index).
pub type Id = (u32, u32);

#[derive(Default, Clone)]
pub struct Client {
    pub paired: bool,
    pub partner: Option<Id>,
    /// Next sequence number this client sends to its current partner.
    pub seq_out: u64,
    /// Next sequence number expected from the partner.
    pub expect: u64,
    pub lost: bool,
}

#[derive(Default)]
pub struct Violations {
    /// A message from someone other than the partner (or before its hello).
    pub misrouted: u64,
    /// Partner knowledge that is not mutual (A hears B, B hears C).
    pub asymmetric: u64,
    /// A sequence number below the one expected (late or duplicate).
    pub out_of_order: u64,
    /// Sequence numbers skipped, and, after the drain, never delivered.
    pub missing: u64,
    /// A chat message while not paired.
    pub not_paired: u64,
    /// `paired` while already paired (no `left` in between).
    pub double_paired: u64,
    /// Not JSON, unknown type, binary, or an unparsable relay text.
    pub malformed: u64,
}

impl Violations {
    pub fn total(&self) -> u64 {
        self.misrouted
            + self.asymmetric
            + self.out_of_order
            + self.missing
            + self.not_paired
            + self.double_paired
            + self.malformed
    }
}

pub struct ChatApp {
    pub tag: u32,
    pub clients: Vec<Client>,
    /// Send period per client (`None`: ping-pong).
    pub period: Option<u64>,
    pub timers: BinaryHeap<Reverse<(u64, u32)>>,
    pub rng: Rng,
    pub scratch: Vec<u8>,
    pub sending: bool,
    pub window: (u64, u64),
    pub start: u64,
    pub paired_events: u64,
    pub last_paired: u64,
    pub sent: u64,
    pub delivered: u64,
    pub counted: u64,
    /// Send → the receiving client's handler (includes this tool's wake-up).
    pub latency: Latency,
    /// Send → the bytes' arrival in the receiving socket (kernel timestamp):
    /// the relay itself, without this tool's own scheduling delay.
    pub socket_latency: Latency,
    /// With a cluster `--layout`: the two figures again, split by the kind
    /// of pair the receiver is in ([0] on one node, [1] across nodes).
    pub layout: Layout,
    pub latency_by_kind: [Latency; 2],
    pub socket_latency_by_kind: [Latency; 2],
    /// With a layout: clients whose partner was not the one planned (a
    /// client that waited out its interest wait took someone else).
    pub unplanned: u64,
    /// Wall clock at the start of the measured window.
    pub window_wall: u64,
    /// Counted messages without a kernel receive timestamp.
    pub stamps_missing: u64,
    /// Kernel timestamps outside [send, handled]: the stamp is not trusted.
    pub stamps_inconsistent: u64,
    pub waiting: u64,
    pub left: u64,
    pub rate_limited: u64,
    pub other_errors: u64,
    pub v: Violations,
}

pub fn parse_id(s: &str) -> Option<Id> {
    let (t, i) = s.split_once(':')?;
    Some((t.parse().ok()?, i.parse().ok()?))
}

impl ChatApp {
    pub fn new(tag: u32, clients: usize, period: Option<u64>, start: u64) -> ChatApp {
        ChatApp {
            tag,
            clients: vec![Client::default(); clients],
            period,
            timers: BinaryHeap::new(),
            rng: Rng::new(),
            scratch: Vec::with_capacity(128),
            sending: true,
            window: (u64::MAX, u64::MAX),
            start,
            paired_events: 0,
            last_paired: start,
            sent: 0,
            delivered: 0,
            counted: 0,
            latency: Latency::new(),
            socket_latency: Latency::new(),
            layout: Layout::Any,
            latency_by_kind: [Latency::new(), Latency::new()],
            socket_latency_by_kind: [Latency::new(), Latency::new()],
            unplanned: 0,
            window_wall: u64::MAX,
            stamps_missing: 0,
            stamps_inconsistent: 0,
            waiting: 0,
            left: 0,
            rate_limited: 0,
            other_errors: 0,
            v: Violations::default(),
        }
    }

    pub fn me(&self, idx: usize) -> Id {
        (self.tag, idx as u32)
    }

    pub fn send_json(&mut self, conns: &mut Conns, idx: usize, text: std::fmt::Arguments<'_>) {
        self.scratch.clear();
        let _ = self.scratch.write_fmt(text);
        conns.send(idx, OpCode::Text, &self.scratch);
    }

    /// Sends the next numbered message, stamped with the wall clock and
    /// written at once: the stamp is when the bytes left this process.
    pub fn send_relay(&mut self, conns: &mut Conns, idx: usize) {
        let c = &mut self.clients[idx];
        let seq = c.seq_out;
        c.seq_out += 1;
        self.sent += 1;
        let tag = self.tag;
        let stamp = wall_ns();
        self.send_json(
            conns,
            idx,
            format_args!(r#"{{"type":"message","text":"m {tag}:{idx} {seq} {stamp}"}}"#),
        );
        conns.write_now(idx);
    }

    pub fn on_relay_text(&mut self, conns: &mut Conns, idx: usize, text: &str, now: u64) {
        let mut parts = text.split(' ');
        let kind = parts.next();
        let Some(from) = parts.next().and_then(parse_id) else {
            self.v.malformed += 1;
            return;
        };
        let me = self.me(idx);
        if !self.clients[idx].paired {
            self.v.not_paired += 1;
        }
        match kind {
            Some("h") => {
                if self.clients[idx].partner.is_some() {
                    self.v.misrouted += 1;
                }
                self.clients[idx].partner = Some(from);
                if self.layout != Layout::Any && from != (self.tag, (idx ^ 1) as u32) {
                    self.unplanned += 1;
                }
                if from.0 == self.tag {
                    if let Some(theirs) = self.clients.get(from.1 as usize).and_then(|p| p.partner)
                    {
                        if theirs != me {
                            self.v.asymmetric += 1;
                        }
                    }
                }
                if !self.sending {
                    return;
                }
                match self.period {
                    Some(p) => {
                        let first = now + self.rng.next() % p.max(1);
                        self.timers.push(Reverse((first, idx as u32)));
                    }
                    None if me < from => self.send_relay(conns, idx),
                    None => {}
                }
            }
            Some("m") => {
                let (Some(seq), Some(ts)) = (
                    parts.next().and_then(|s| s.parse::<u64>().ok()),
                    parts.next().and_then(|s| s.parse::<u64>().ok()),
                ) else {
                    self.v.malformed += 1;
                    return;
                };
                self.delivered += 1;
                let c = &mut self.clients[idx];
                if c.partner != Some(from) {
                    self.v.misrouted += 1;
                } else if seq >= c.expect {
                    self.v.missing += seq - c.expect;
                    c.expect = seq + 1;
                } else {
                    self.v.out_of_order += 1;
                    self.v.missing = self.v.missing.saturating_sub(1);
                }
                if now >= self.window.0 && now < self.window.1 {
                    self.counted += 1;
                    self.record_latency(idx, ts, conns.rx_stamp);
                }
                if self.period.is_none() && self.sending {
                    self.send_relay(conns, idx);
                }
            }
            _ => self.v.malformed += 1,
        }
    }

    /// Relay latency of a message stamped `sent` (wall clock): to its arrival
    /// in the receiving socket (`rx_stamp`, the kernel's receive time) and to
    /// this handler. Messages sent before the window (`window_wall`) are
    /// not counted. `idx` is the receiver (its pair's kind, with a layout).
    pub fn record_latency(&mut self, idx: usize, sent: u64, rx_stamp: u64) {
        if sent < self.window_wall {
            return;
        }
        let kind = usize::from(is_across(self.layout, idx));
        let handled = wall_ns();
        self.latency.record(handled.saturating_sub(sent));
        self.latency_by_kind[kind].record(handled.saturating_sub(sent));
        if rx_stamp == 0 {
            self.stamps_missing += 1;
        } else if rx_stamp < sent || rx_stamp > handled {
            self.stamps_inconsistent += 1;
        } else {
            self.socket_latency.record(rx_stamp - sent);
            self.socket_latency_by_kind[kind].record(rx_stamp - sent);
        }
    }

    /// Sequence numbers the partner sent that never arrived (after the drain).
    pub fn count_undelivered(&mut self) {
        for idx in 0..self.clients.len() {
            let c = &self.clients[idx];
            if c.lost {
                continue;
            }
            if let Some((tag, p)) = c.partner {
                if tag != self.tag {
                    continue;
                }
                let Some(partner) = self.clients.get(p as usize) else {
                    continue;
                };
                if partner.partner == Some(self.me(idx)) && !partner.lost {
                    self.v.missing += partner.seq_out.saturating_sub(c.expect);
                }
            }
        }
    }
}

impl Handler for ChatApp {
    fn message(&mut self, conns: &mut Conns, idx: usize, msg: &Message<'_>, now: u64) {
        let data = match *msg {
            Message::Text(d) => d,
            Message::Binary(_) => {
                self.v.malformed += 1;
                return;
            }
            _ => return,
        };
        let Ok(m) = serde_json::from_slice::<ServerMsg<'_>>(data) else {
            self.v.malformed += 1;
            return;
        };
        match &*m.kind {
            "waiting" => self.waiting += 1,
            "paired" => {
                let c = &mut self.clients[idx];
                if c.paired {
                    self.v.double_paired += 1;
                }
                c.paired = true;
                c.partner = None;
                c.seq_out = 0;
                c.expect = 0;
                self.paired_events += 1;
                self.last_paired = now;
                let tag = self.tag;
                self.send_json(
                    conns,
                    idx,
                    format_args!(r#"{{"type":"message","text":"h {tag}:{idx}"}}"#),
                );
            }
            "message" => match m.text {
                Some(text) => self.on_relay_text(conns, idx, &text, now),
                None => self.v.malformed += 1,
            },
            "left" => {
                self.left += 1;
                let c = &mut self.clients[idx];
                c.paired = false;
                c.partner = None;
                if self.sending {
                    self.send_json(conns, idx, format_args!(r#"{{"type":"next"}}"#));
                }
            }
            "typing" => {}
            "error" if m.code.as_deref() == Some("rate_limited") => {
                self.rate_limited += 1;
                // The refused message was this client's last one: take its
                // number back so the partner sees no gap, and (ping-pong)
                // try again shortly so the pair does not stall.
                let c = &mut self.clients[idx];
                if c.seq_out > 0 {
                    c.seq_out -= 1;
                    self.sent -= 1;
                }
                if self.period.is_none() {
                    self.timers.push(Reverse((now + NS / 10, idx as u32)));
                }
            }
            "error" => self.other_errors += 1,
            _ => self.v.malformed += 1,
        }
    }

    fn lost(&mut self, idx: usize, _now: u64) {
        self.clients[idx].lost = true;
    }

    fn next_timer(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn fire_timers(&mut self, conns: &mut Conns, now: u64) {
        while let Some(&Reverse((t, idx))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let idx = idx as usize;
            let c = &self.clients[idx];
            if !self.sending || c.lost || c.partner.is_none() || !conns.is_open(idx) {
                continue;
            }
            self.send_relay(conns, idx);
            if let Some(p) = self.period {
                self.timers.push(Reverse((t + p, idx as u32)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::conn::{Conn, Phase};

    #[test]
    fn relay_ids() {
        assert_eq!(parse_id("12:34"), Some((12, 34)));
        assert_eq!(parse_id("12"), None);
        assert_eq!(parse_id("x:1"), None);
    }

    /// Connections without sockets: handlers only append to their `out`.
    fn offline(n: usize) -> Conns {
        let list = (0..n)
            .map(|_| Conn {
                stream: None,
                phase: Phase::Open,
                key: String::new(),
                partial: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
                mask: [1, 2, 3, 4],
                dirty: false,
            })
            .collect();
        Conns {
            list,
            dirty: Vec::new(),
            rx_stamp: 0,
        }
    }

    fn feed(app: &mut ChatApp, conns: &mut Conns, idx: usize, json: &str) {
        app.message(conns, idx, &Message::Text(json.as_bytes()), 1000);
    }

    fn text(app: &mut ChatApp, conns: &mut Conns, idx: usize, text: &str) {
        let json = format!(r#"{{"type":"message","text":"{text}"}}"#);
        feed(app, conns, idx, &json);
    }

    /// Clients 0 and 1 of tag 7 paired, each knowing the other.
    fn paired_pair() -> (ChatApp, Conns) {
        let mut app = ChatApp::new(7, 4, Some(NS), 0);
        let mut conns = offline(4);
        for idx in 0..2 {
            feed(
                &mut app,
                &mut conns,
                idx,
                r#"{"type":"waiting","online":2}"#,
            );
            feed(
                &mut app,
                &mut conns,
                idx,
                r#"{"type":"paired","common":[]}"#,
            );
        }
        text(&mut app, &mut conns, 0, "h 7:1");
        text(&mut app, &mut conns, 1, "h 7:0");
        (app, conns)
    }

    #[test]
    fn chat_checks_pass_a_clean_relay() {
        let (mut app, mut conns) = paired_pair();
        // Each paired client introduced itself on its own connection.
        assert!(!conns.list[0].out.is_empty() && !conns.list[1].out.is_empty());
        app.clients[1].seq_out = 2;
        text(&mut app, &mut conns, 0, "m 7:1 0 900");
        text(&mut app, &mut conns, 0, "m 7:1 1 950");
        app.count_undelivered();
        assert_eq!(app.v.total(), 0);
        assert_eq!(app.delivered, 2);
    }

    #[test]
    fn chat_checks_count_violations() {
        let (mut app, mut conns) = paired_pair();
        text(&mut app, &mut conns, 0, "m 7:2 0 900"); // not the partner
        assert_eq!(app.v.misrouted, 1);
        text(&mut app, &mut conns, 0, "m 7:1 0 900");
        text(&mut app, &mut conns, 0, "m 7:1 2 900"); // 1 skipped
        assert_eq!(app.v.missing, 1);
        text(&mut app, &mut conns, 0, "m 7:1 1 900"); // late
        assert_eq!((app.v.out_of_order, app.v.missing), (1, 0));
        text(&mut app, &mut conns, 2, "m 7:3 0 900"); // never paired
        assert_eq!(app.v.not_paired, 1);
        feed(&mut app, &mut conns, 2, r#"{"type":"paired","common":[]}"#);
        text(&mut app, &mut conns, 2, "h 7:0"); // 0 is with 1, not 2
        assert_eq!(app.v.asymmetric, 1);
        feed(&mut app, &mut conns, 2, r#"{"type":"paired","common":[]}"#);
        assert_eq!(app.v.double_paired, 1);
        feed(&mut app, &mut conns, 3, "not json");
        assert_eq!(app.v.malformed, 1);
        // 1 sent 5 messages; 0 got seqs 0..=2: two never arrived.
        app.clients[1].seq_out = 5;
        app.count_undelivered();
        assert_eq!(app.v.missing, 2);
    }
}
