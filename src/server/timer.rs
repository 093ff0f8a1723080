//! A hashed timer wheel: arming is O(1) and each loop turn touches only
//! the slots that expired, however many connections are idle.
//!
//! Entries are hints, not commitments: when one fires, the loop looks at
//! the connection's own state to decide whether anything is due, and the
//! connection remembers which tick its live entry is for, so stale entries
//! (re-armed or closed connections) are recognised and dropped.

/// Width of one slot.
pub const TICK_MS: u64 = 50;
const SLOTS: usize = 1024;

#[derive(Debug)]
pub struct TimerWheel {
    slots: Vec<Vec<(u32, u32)>>,
    /// The next tick not yet expired.
    next_tick: u64,
    len: usize,
    spare: Vec<(u32, u32)>,
}

impl Default for TimerWheel {
    fn default() -> Self {
        Self::new()
    }
}

impl TimerWheel {
    pub fn new() -> TimerWheel {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            next_tick: 0,
            len: 0,
            spare: Vec::new(),
        }
    }

    /// The tick an entry for time `at_ms` fires on (never in the past).
    pub fn tick_for(&self, at_ms: u64) -> u32 {
        let tick = at_ms.div_ceil(TICK_MS).max(self.next_tick);
        u32::try_from(tick).unwrap_or(u32::MAX)
    }

    /// Arms an entry for `token` at `tick` (from [`tick_for`](Self::tick_for)).
    pub fn insert(&mut self, token: usize, tick: u32) {
        let Ok(token) = u32::try_from(token) else {
            return;
        };
        let slot = tick as usize % SLOTS;
        if let Some(s) = self.slots.get_mut(slot) {
            s.push((token, tick));
            self.len += 1;
        }
    }

    /// Collects `(token, tick)` of every entry due at `now_ms`.
    pub fn expire(&mut self, now_ms: u64, fired: &mut Vec<(usize, u32)>) {
        let now_tick = now_ms / TICK_MS;
        if self.len == 0 {
            self.next_tick = now_tick + 1;
            return;
        }
        // Walk at most one revolution: older ticks share slots with newer.
        let first = self
            .next_tick
            .max((now_tick + 1).saturating_sub(SLOTS as u64));
        for tick in first..=now_tick {
            let slot = (tick % SLOTS as u64) as usize;
            let Some(entries) = self.slots.get_mut(slot) else {
                continue;
            };
            if entries.is_empty() {
                continue;
            }
            std::mem::swap(entries, &mut self.spare);
            for &(token, at) in &self.spare {
                if u64::from(at) <= now_tick {
                    fired.push((token as usize, at));
                    self.len -= 1;
                } else {
                    entries.push((token, at));
                }
            }
            self.spare.clear();
        }
        self.next_tick = now_tick + 1;
    }

    /// When the loop must wake next to look at the wheel, if it holds anything.
    pub fn next_wake_ms(&self) -> Option<u64> {
        (self.len > 0).then_some(self.next_tick * TICK_MS)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_only_when_due() {
        let mut w = TimerWheel::new();
        let t = w.tick_for(1_000);
        w.insert(7, t);
        let mut fired = Vec::new();
        w.expire(999, &mut fired);
        assert!(fired.is_empty());
        w.expire(1_000, &mut fired);
        assert_eq!(fired, vec![(7, t)]);
        assert!(w.is_empty());
    }

    #[test]
    fn entries_beyond_one_revolution_wait_their_turn() {
        let mut w = TimerWheel::new();
        let far = SLOTS as u64 * TICK_MS * 3 + 10;
        let t = w.tick_for(far);
        w.insert(1, t);
        let mut fired = Vec::new();
        let mut now = 0;
        while now < far - TICK_MS {
            w.expire(now, &mut fired);
            now += TICK_MS;
        }
        assert!(fired.is_empty());
        w.expire(far + TICK_MS, &mut fired);
        assert_eq!(fired.len(), 1);
    }

    #[test]
    fn a_long_sleep_still_fires_everything_due() {
        let mut w = TimerWheel::new();
        for i in 0..100u64 {
            let t = w.tick_for(i * 1000);
            w.insert(i as usize, t);
        }
        let mut fired = Vec::new();
        w.expire(10_000_000, &mut fired);
        assert_eq!(fired.len(), 100);
    }

    #[test]
    fn past_deadlines_fire_on_the_next_turn() {
        let mut w = TimerWheel::new();
        let mut fired = Vec::new();
        w.expire(5_000, &mut fired);
        let t = w.tick_for(10);
        w.insert(3, t);
        assert_eq!(w.next_wake_ms(), Some(u64::from(t) * TICK_MS));
        w.expire(5_000 + TICK_MS, &mut fired);
        assert_eq!(fired.len(), 1);
    }
}
