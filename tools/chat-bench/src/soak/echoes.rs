//! The soak's echo clients, sans IO: messages of random size and type,
//! whole or in fragments, each checked when it comes back.
//!
//! A message's bytes follow from a 64-bit seed, so a client keeps only
//! (type, length, seed) per message in flight and rebuilds the bytes to
//! compare; echoes must come back in order (RFC 6455 delivers a
//! connection's messages in order, and /echo answers each as it comes).

use std::collections::VecDeque;

use chat::ws::{encode, OpCode};

use super::plan::MS;
use super::tally::Tally;
use crate::rng::Rng;

/// Messages in flight per client at most. A client that has stopped
/// reading stops sending here too, so what it leaves unread is bounded
/// (64 × 2 KiB).
pub const MAX_IN_FLIGHT: usize = 64;
/// Largest payload sent, in bytes.
const MAX_SIZE: u64 = 2048;

#[derive(Clone, Copy)]
struct Sent {
    binary: bool,
    len: usize,
    seed: u64,
}

pub struct EchoState {
    in_flight: VecDeque<Sent>,
    scratch: Vec<u8>,
}

/// The payload for `seed`: letters for text (valid UTF-8), any byte for
/// binary.
fn fill(out: &mut Vec<u8>, binary: bool, len: usize, seed: u64) {
    let mut r = Rng::seeded(seed, 0);
    out.clear();
    out.extend((0..len).map(|_| {
        let x = r.next() as u8;
        if binary {
            x
        } else {
            b'a' + x % 26
        }
    }));
}

impl EchoState {
    pub fn new() -> EchoState {
        EchoState {
            in_flight: VecDeque::with_capacity(8),
            scratch: Vec::new(),
        }
    }

    #[cfg(test)]
    pub fn outstanding(&self) -> usize {
        self.in_flight.len()
    }

    /// Appends one masked message (a quarter of them in two fragments) to
    /// `out` unless [`MAX_IN_FLIGHT`] are out; when to send again.
    pub fn act(
        &mut self,
        now: u64,
        rng: &mut Rng,
        mask: [u8; 4],
        out: &mut Vec<u8>,
        t: &mut Tally,
    ) -> u64 {
        if self.in_flight.len() < MAX_IN_FLIGHT {
            let sent = Sent {
                binary: rng.chance(50),
                len: rng.below(MAX_SIZE + 1) as usize,
                seed: rng.next(),
            };
            fill(&mut self.scratch, sent.binary, sent.len, sent.seed);
            let op = if sent.binary {
                OpCode::Binary
            } else {
                OpCode::Text
            };
            if rng.chance(25) && sent.len >= 2 {
                // Split on a byte boundary: text fragments need not be
                // valid UTF-8 on their own, only the whole message (and
                // these are ASCII anyway).
                let cut = rng.between(1, sent.len as u64 - 1) as usize;
                let (a, b) = self.scratch.split_at(cut);
                encode::write_raw_frame(out, op, false, a, Some(mask));
                encode::write_raw_frame(out, OpCode::Continuation, true, b, Some(mask));
            } else {
                encode::write_masked_frame(out, op, &self.scratch, mask);
            }
            self.in_flight.push_back(sent);
            t.echo_sent += 1;
        }
        now + rng.between(50, 300) * MS
    }

    /// A data message came back.
    pub fn on_echo(&mut self, binary: bool, data: &[u8], t: &mut Tally) {
        t.echo_received += 1;
        let Some(sent) = self.in_flight.pop_front() else {
            return t.violation(
                |v| &mut v.echo_unexpected,
                format!("an echo of {} bytes with none in flight", data.len()),
            );
        };
        fill(&mut self.scratch, sent.binary, sent.len, sent.seed);
        if binary != sent.binary || data != &self.scratch[..] {
            t.violation(
                |v| &mut v.echo_mismatch,
                format!(
                    "echo of {} bytes (binary {binary}) for a message of {} (binary {})",
                    data.len(),
                    sent.len,
                    sent.binary
                ),
            );
        }
    }

    /// The server answered our close frame: every echo owed should have
    /// come before it.
    pub fn on_close_answered(&mut self, t: &mut Tally) {
        let owed = self.in_flight.len() as u64;
        if owed > 0 {
            t.violation(
                |v| &mut v.echo_missing,
                format!("{owed} echoes owed at the server's close frame"),
            );
            t.v.echo_missing += owed - 1;
        }
        self.in_flight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat::ws::{Decoder, Message, Role};

    /// Unmasks client frames as the server would and returns (binary, bytes).
    fn as_server_sees(bytes: &mut [u8]) -> Vec<(bool, Vec<u8>)> {
        let mut d = Decoder::new(Role::Server, 1 << 20);
        let mut msg = Vec::new();
        let mut got = Vec::new();
        let mut at = 0;
        while let Ok((n, Some(m))) = d.decode(&mut bytes[at..], &mut msg) {
            at += n;
            match m {
                Message::Text(b) => got.push((false, b.to_vec())),
                Message::Binary(b) => got.push((true, b.to_vec())),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(at, bytes.len());
        got
    }

    #[test]
    fn echoes_of_what_was_sent_pass_and_anything_else_is_counted() {
        let mut t = Tally::default();
        let mut e = EchoState::new();
        let mut rng = Rng::seeded(5, 5);
        let mut out = Vec::new();
        for _ in 0..40 {
            e.act(0, &mut rng, [9, 8, 7, 6], &mut out, &mut t);
        }
        let echoes = as_server_sees(&mut out);
        assert_eq!((echoes.len(), e.outstanding()), (40, 40));
        for (binary, data) in &echoes[..39] {
            e.on_echo(*binary, data, &mut t);
        }
        assert_eq!(t.v.total(), 0, "{}", t.v.line());
        let (binary, data) = &echoes[39];
        let mut wrong = data.clone();
        wrong.push(b'!');
        e.on_echo(*binary, &wrong, &mut t);
        assert_eq!(t.v.echo_mismatch, 1);
        e.on_echo(*binary, data, &mut t);
        assert_eq!(t.v.echo_unexpected, 1);
        assert_eq!(t.echo_received, 41);
    }

    #[test]
    fn in_flight_is_bounded_and_owed_echoes_at_close_are_missing() {
        let mut t = Tally::default();
        let mut e = EchoState::new();
        let mut rng = Rng::seeded(6, 6);
        let mut out = Vec::new();
        for _ in 0..MAX_IN_FLIGHT + 10 {
            e.act(0, &mut rng, [1, 2, 3, 4], &mut out, &mut t);
        }
        assert_eq!(e.outstanding(), MAX_IN_FLIGHT);
        assert_eq!(as_server_sees(&mut out).len(), MAX_IN_FLIGHT);
        e.on_close_answered(&mut t);
        assert_eq!(t.v.echo_missing, MAX_IN_FLIGHT as u64);
        assert_eq!(e.outstanding(), 0);
    }
}
