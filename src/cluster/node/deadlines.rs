//! Timers: when Redis has missed a deadline, and the heartbeat, reconnect
//! and grace timers.
//!
//! A deadline measures Redis, not us: time this thread did not run (the
//! process stopped, the machine starved of CPU) is forgiven. Without that,
//! a node stalled between writing a join and reading its reply took Redis
//! for lost and dropped the reply while the stranger's node had already
//! accepted: a pair only one side knew (CI caught it once).

use super::{ClusterThread, Phase, BEAT_MS, PROBE_MS, TIMEOUT_MS};
use crate::cluster::records::Out;
use log::info;
use std::time::Duration;

/// A turn, or a poll past its timeout, running this much longer than asked
/// means the thread was not running: the overrun is forgiven. The cluster
/// thread's turns take microseconds to a few milliseconds.
pub const STALL_MS: u64 = 100;

/// How long this thread was stalled between `from` and `at`, given that it
/// was allowed to sleep for `allowed` (a poll's timeout; zero for a turn):
/// the overrun when it exceeds [`STALL_MS`], else 0.
pub fn stalled_ms(from: u64, allowed: Duration, at: u64) -> u64 {
    let allowed = u64::try_from(allowed.as_millis()).unwrap_or(u64::MAX);
    let overrun = at.saturating_sub(from.saturating_add(allowed));
    if overrun > STALL_MS {
        overrun
    } else {
        0
    }
}

impl ClusterThread {
    /// Moves the deadlines Redis must meet `ms` later (a stall of ours).
    pub(super) fn forgive(&mut self, ms: u64) {
        if ms == 0 {
            return;
        }
        for (_, sent) in &mut self.inflight {
            *sent = sent.saturating_add(ms);
        }
        if let Phase::Connecting { since_ms, .. } = &mut self.phase {
            *since_ms = since_ms.saturating_add(ms);
        }
        self.probe_seen_ms = self.probe_seen_ms.saturating_add(ms);
    }

    /// How long the next poll may sleep: until the first timer.
    pub(super) fn timeout(&self, now: u64) -> Duration {
        let mut at = now + BEAT_MS;
        match self.phase {
            Phase::Down { retry_ms } => at = at.min(retry_ms),
            Phase::Connecting { since_ms, .. } => at = at.min(since_ms + TIMEOUT_MS),
            Phase::Up { .. } => at = at.min(self.next_beat_ms),
        }
        if let Some(&(_, sent)) = self.inflight.front() {
            at = at.min(sent + TIMEOUT_MS);
        }
        if let (Some(since), false) = (self.down_since_ms, self.grace_done) {
            at = at.min(since + self.setup.grace_ms);
        }
        if let Some(d) = self.lock().cluster_deadline() {
            at = at.min(d);
        }
        if self.link.has_backlog() {
            at = at.min(now + 10);
        }
        Duration::from_millis(at.saturating_sub(now))
    }

    /// The deadline Redis has missed at `now`, if any: connecting, our own
    /// probe, or the oldest call's answer.
    pub(super) fn failure_due(&self, now: u64) -> Option<&'static str> {
        match self.phase {
            Phase::Connecting { since_ms, .. } if now >= since_ms + TIMEOUT_MS => {
                return Some("connecting timed out");
            }
            Phase::Up { since_ms }
                if now >= since_ms + PROBE_MS && now >= self.probe_seen_ms + PROBE_MS =>
            {
                return Some("our own probe did not come back (subscriber lost)");
            }
            _ => {}
        }
        self.inflight
            .front()
            .filter(|&&(_, sent)| now >= sent + TIMEOUT_MS)
            .map(|_| "a call timed out")
    }

    pub(super) fn timers(&mut self, now: u64) {
        if let Some(why) = self.failure_due(now) {
            self.down(now, why);
        }
        match self.phase {
            Phase::Down { retry_ms } if now >= retry_ms => self.connect(now),
            Phase::Up { .. } if now >= self.next_beat_ms => self.beat(now),
            _ => {}
        }
        if let (Some(since), false) = (self.down_since_ms, self.grace_done) {
            if now >= since + self.setup.grace_ms {
                self.grace_done = true;
                info!("cluster: Redis gone for the grace period: cross-node pairs end");
                let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
                mm.cluster_grace_over(&mut Out::new(self.setup.threads, &mut self.decided));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_that_returns_late_by_more_than_the_slack_is_a_stall() {
        let allowed = Duration::from_millis(1000);
        assert_eq!(stalled_ms(5000, allowed, 6000), 0, "on time");
        assert_eq!(stalled_ms(5000, allowed, 5200), 0, "early (an event)");
        assert_eq!(
            stalled_ms(5000, allowed, 6000 + STALL_MS),
            0,
            "within the slack"
        );
        assert_eq!(stalled_ms(5000, allowed, 7500), 1500, "stopped 1.5 s");
    }

    #[test]
    fn a_turn_that_takes_more_than_the_slack_is_a_stall() {
        assert_eq!(stalled_ms(5000, Duration::ZERO, 5003), 0);
        assert_eq!(stalled_ms(5000, Duration::ZERO, 6200), 1200);
        assert_eq!(
            stalled_ms(u64::MAX - 1, Duration::MAX, u64::MAX),
            0,
            "no overflow"
        );
    }
}
