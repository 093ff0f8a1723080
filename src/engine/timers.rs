//! What each deadline does. A connection has at most one live wheel entry;
//! when it fires, the connection's phase and marks decide what is due, so
//! re-arming never needs to cancel anything.
//!
//! | phase | due | then |
//! |---|---|---|
//! | Http | handshake timeout since the request began | close |
//! | Open | half the idle timeout of silence | ping |
//! | Open | the whole idle timeout of silence | close 1001, wait for the peer's close |
//! | Closing, Draining | the close wait since closing began | close |

use super::ending::Ending;
use super::session::Phase;
use super::{duration_ms, ConnId, Engine};
use crate::ws::OpCode;
use std::num::NonZeroU32;

impl Engine {
    /// Makes sure the connection's timer fires no later than `at_ms`.
    pub(super) fn arm(&mut self, id: ConnId, at_ms: u64) {
        let tick = self.wheel.tick_for(at_ms);
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        if let Some(live) = session.timer {
            if self.wheel.not_later(live, tick) {
                return;
            }
        }
        session.timer = Some(tick);
        self.wheel.insert(id, tick);
    }

    pub(super) fn fire_timers(&mut self) {
        let now = self.now_ms;
        if self.chat.next_deadline().is_some_and(|at| at <= now) {
            let (chat, mut mailer) = self.mailer();
            chat.on_tick(now, &mut mailer);
        }
        let mut fired = std::mem::take(&mut self.fired);
        let sessions = &self.sessions;
        self.wheel.expire(now, &mut fired, |id| {
            sessions.get(id).and_then(|s| s.timer).map(NonZeroU32::get)
        });
        for &(id, tick) in &fired {
            match self.sessions.get_mut(id) {
                Some(session) if session.timer.is_some_and(|t| t.get() == tick) => {
                    session.timer = None;
                }
                _ => continue, // stale entry
            }
            self.on_timer(id);
        }
        fired.clear();
        self.fired = fired;
    }

    /// A connection's timer fired: decide from its phase what is due.
    fn on_timer(&mut self, id: ConnId) {
        let now = self.now_ms;
        let handshake = duration_ms(self.config.handshake_timeout);
        let idle = duration_ms(self.config.idle_timeout);
        let close = duration_ms(self.config.close_timeout);
        let Some(session) = self.sessions.get(id) else {
            return;
        };
        match *session.phase() {
            Phase::Http {
                request_since_ms, ..
            } => {
                if now.saturating_sub(request_since_ms) >= handshake {
                    log::debug!(
                        "connection {id}: no complete request within the handshake timeout"
                    );
                    self.close_now(id);
                } else {
                    self.arm(id, request_since_ms + handshake);
                }
            }
            Phase::Open { last_heard_ms, .. } => {
                let silent = now.saturating_sub(last_heard_ms);
                if silent >= idle {
                    self.totals.idle_closed += 1;
                    self.go_away(id, Ending::IdleTimeout);
                } else if silent >= idle / 2 {
                    self.queue_frame(id, OpCode::Ping, b"");
                    self.arm(id, last_heard_ms + idle);
                } else {
                    let half = self.idle_half_ms();
                    self.arm(id, last_heard_ms + half);
                }
            }
            Phase::Closing { since_ms, .. } | Phase::Draining { since_ms, .. } => {
                if now.saturating_sub(since_ms) >= close {
                    self.close_now(id);
                } else {
                    self.arm(id, since_ms + close);
                }
            }
        }
    }
}
