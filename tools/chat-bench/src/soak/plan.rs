//! What one soak connection will do, drawn from the seed before it starts:
//! chat or echo, how long it lives, and how it leaves.
//!
//! Each connection's choices come from its own stream (`Rng::seeded(seed,
//! serial)`), so the n-th connection of a run with a given seed is the same
//! client, leaving the same way, whatever the timing of the others.

use crate::clock::NS;
use crate::rng::Rng;

/// Milliseconds to nanoseconds.
pub const MS: u64 = 1_000_000;

/// Which door a client uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A chat-roulette client on the URL's path (PROTOCOL.md "Chat session").
    Chat,
    /// An echo client on `/echo`.
    Echo,
}

/// How a connection ends: every way a network lets a client go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Leave {
    /// A close frame, then wait for the server's close frame.
    Close,
    /// `shutdown(SHUT_WR)` without a close frame, then read to the
    /// server's EOF; `with_data`: a last message is written right before
    /// the `shutdown`, so the server usually finds the data and the EOF in
    /// one read.
    Fin { with_data: bool },
    /// `SO_LINGER` 0 and close: an RST; `with_data` as for `Fin`.
    Rst { with_data: bool },
    /// Part of a frame, then FIN (`rst` false) or RST.
    MidFrame { rst: bool },
    /// Part of the upgrade request head, then FIN or RST.
    MidHandshake { rst: bool },
    /// Stops reading (still sending) for a while, then FIN or RST.
    NeverReading { rst: bool },
}

/// Every [`Leave`] as a counter index, with the names reports use.
pub const LEAVE_NAMES: [&str; 11] = [
    "close",
    "fin",
    "fin_with_data",
    "rst",
    "rst_with_data",
    "mid_frame_fin",
    "mid_frame_rst",
    "mid_handshake_fin",
    "mid_handshake_rst",
    "never_reading_fin",
    "never_reading_rst",
];

impl Leave {
    /// Index into [`LEAVE_NAMES`].
    pub fn index(self) -> usize {
        match self {
            Leave::Close => 0,
            Leave::Fin { with_data: false } => 1,
            Leave::Fin { with_data: true } => 2,
            Leave::Rst { with_data: false } => 3,
            Leave::Rst { with_data: true } => 4,
            Leave::MidFrame { rst: false } => 5,
            Leave::MidFrame { rst: true } => 6,
            Leave::MidHandshake { rst: false } => 7,
            Leave::MidHandshake { rst: true } => 8,
            Leave::NeverReading { rst: false } => 9,
            Leave::NeverReading { rst: true } => 10,
        }
    }

    /// Whether messages this client sent may be lost without the server
    /// being at fault: an RST may discard what the server has not read yet,
    /// and a client that stops reading closes with unread data, which the
    /// kernel turns into an RST as well.
    pub fn lossy(self) -> bool {
        matches!(
            self,
            Leave::Rst { .. } | Leave::MidFrame { rst: true } | Leave::NeverReading { .. }
        )
    }
}

/// One connection's script.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub kind: Kind,
    pub leave: Leave,
    /// From the upgrade (or, for `MidHandshake`, the TCP connect) to the
    /// start of the leave.
    pub life: u64,
    /// `NeverReading`: how long it sends without reading before it goes.
    pub hold: u64,
}

impl Plan {
    /// Draws a plan. `max_life`: the longest life in nanoseconds.
    ///
    /// Shares (percent): chat 75 / echo 25; close 25, FIN 20, RST 15,
    /// mid-frame 15, mid-handshake 10, never reading 15, each FIN/RST
    /// variant half and half. A mid-handshake client goes within 0.5 s,
    /// well inside any handshake timeout, so the server sees it leave rather
    /// than timing it out; a client that stops reading holds 0.3 to 1.5 s,
    /// short of the idle timeout of the shortest configuration tried (2 s).
    pub fn draw(rng: &mut Rng, max_life: u64) -> Plan {
        let kind = if rng.chance(25) {
            Kind::Echo
        } else {
            Kind::Chat
        };
        let half = rng.chance(50);
        let leave = match rng.below(100) {
            0..=24 => Leave::Close,
            25..=44 => Leave::Fin { with_data: half },
            45..=59 => Leave::Rst { with_data: half },
            60..=74 => Leave::MidFrame { rst: half },
            75..=84 => Leave::MidHandshake { rst: half },
            _ => Leave::NeverReading { rst: half },
        };
        let life = match leave {
            Leave::MidHandshake { .. } => rng.between(0, 500) * MS,
            _ => rng.between(200 * MS, max_life.max(200 * MS)),
        };
        let hold = rng.between(300, 1500) * MS;
        Plan {
            kind,
            leave,
            life,
            hold,
        }
    }
}

/// Seconds as nanoseconds for figures printed in seconds.
pub fn secs(ns: u64) -> f64 {
    ns as f64 / NS as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_replay_from_the_seed_and_cover_every_leave() {
        let draw = |seed| {
            (0..2_000u64)
                .map(|serial| Plan::draw(&mut Rng::seeded(seed, serial), 4 * NS))
                .collect::<Vec<_>>()
        };
        let a = draw(9);
        let b = draw(9);
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| (x.kind, x.leave, x.life) == (y.kind, y.leave, y.life)));
        let mut seen = [0u32; LEAVE_NAMES.len()];
        for p in &a {
            seen[p.leave.index()] += 1;
            match p.leave {
                Leave::MidHandshake { .. } => assert!(p.life <= 500 * MS),
                _ => assert!((200 * MS..=4 * NS).contains(&p.life)),
            }
            assert!((300 * MS..=1500 * MS).contains(&p.hold));
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
        let echo = a.iter().filter(|p| p.kind == Kind::Echo).count();
        assert!((300..700).contains(&echo), "{echo}");
        assert_ne!(
            draw(10).iter().map(|p| p.leave.index()).collect::<Vec<_>>(),
            a.iter().map(|p| p.leave.index()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn leave_indices_are_distinct() {
        let all = [
            Leave::Close,
            Leave::Fin { with_data: false },
            Leave::Fin { with_data: true },
            Leave::Rst { with_data: false },
            Leave::Rst { with_data: true },
            Leave::MidFrame { rst: false },
            Leave::MidFrame { rst: true },
            Leave::MidHandshake { rst: false },
            Leave::MidHandshake { rst: true },
            Leave::NeverReading { rst: false },
            Leave::NeverReading { rst: true },
        ];
        let idx: Vec<usize> = all.iter().map(|l| l.index()).collect();
        assert_eq!(idx, (0..LEAVE_NAMES.len()).collect::<Vec<_>>());
        assert!(!Leave::Close.lossy() && !Leave::Fin { with_data: true }.lossy());
        assert!(Leave::Rst { with_data: false }.lossy());
    }
}
