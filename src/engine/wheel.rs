//! A hashed timer wheel: arming is O(1) and each loop turn touches only
//! the slots that expired, however many connections are idle.
//!
//! Entries are hints, not commitments: when one fires, the loop looks at
//! the connection's own state to decide whether anything is due, and the
//! connection remembers which tick its live entry is for, so stale entries
//! (re-armed or closed connections) are recognised and dropped.
//!
//! An entry is the connection's token alone, 4 bytes: the tick it is for
//! is the one the connection remembers, which [`TimerWheel::expire`] asks
//! for when the entry's slot comes up (an entry whose connection remembers
//! no tick, or a tick of another slot, is stale). At 15,000 idle
//! connections that is 60 kB of slot lists, not 120 kB (BENCHMARKS.md,
//! "Idle memory with two loops").

use std::num::NonZeroU32;

/// Width of one slot.
pub const TICK_MS: u64 = 50;
const SLOTS: usize = 1024;
/// Entries are never armed further ahead than this many ticks (about 620
/// days): a later deadline gets an earlier entry, which is harmless since
/// entries are hints. It keeps every live tick within half the u32 range
/// of now, so ticks stored in 32 bits compare correctly across the wrap
/// (every 6.8 years of uptime) instead of saturating.
const MAX_AHEAD_TICKS: u64 = 1 << 30;

#[derive(Debug)]
pub struct TimerWheel {
    /// Tokens; the tick of each is the one its connection remembers.
    slots: Vec<Vec<u32>>,
    /// The next tick not yet expired (absolute).
    next_tick: u64,
    len: usize,
    /// Emptied slots' lists, kept with their capacity and handed to the
    /// next slot that gets its first entry: a connection re-armed into a
    /// slot nobody used yet must not allocate (tests/zero_alloc.rs). Bound:
    /// every list is in a slot or here, so at most [`SLOTS`] lists, whose
    /// capacities sum to at most the most entries ever live at once.
    emptied: Vec<Vec<u32>>,
}

impl Default for TimerWheel {
    fn default() -> Self {
        Self::new()
    }
}

/// `a` comes no later than `b` on the wrapping 32-bit tick line.
fn wrapping_le(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) < 1 << 31
}

impl TimerWheel {
    pub fn new() -> TimerWheel {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            next_tick: 0,
            len: 0,
            // Room for the lists of a few dozen slots up front, so that
            // the pool itself does not grow in steady state either.
            emptied: Vec::with_capacity(64),
        }
    }

    /// The tick an entry for time `at_ms` fires on (never in the past;
    /// tick 0 of each wrap is taken as tick 1, a tick late).
    pub fn tick_for(&self, at_ms: u64) -> NonZeroU32 {
        let tick = at_ms.div_ceil(TICK_MS).clamp(
            self.next_tick,
            self.next_tick.saturating_add(MAX_AHEAD_TICKS),
        );
        NonZeroU32::new(tick as u32).unwrap_or(NonZeroU32::MIN)
    }

    /// True when tick `a` fires no later than tick `b` (both live).
    pub fn not_later(&self, a: NonZeroU32, b: NonZeroU32) -> bool {
        wrapping_le(a.get(), b.get())
    }

    /// Arms an entry for `token` at `tick` (from [`tick_for`](Self::tick_for)).
    pub fn insert(&mut self, token: usize, tick: NonZeroU32) {
        let Ok(token) = u32::try_from(token) else {
            return;
        };
        let slot = tick.get() as usize % SLOTS;
        if let Some(s) = self.slots.get_mut(slot) {
            if s.capacity() == 0 {
                if let Some(list) = self.emptied.pop() {
                    *s = list;
                }
            }
            s.push(token);
            self.len += 1;
        }
    }

    /// Collects `(token, tick)` of every entry due at `now_ms`; `live`
    /// gives the tick a token's connection remembers (None: none, or no
    /// such connection). A token may come out twice (an old entry and a
    /// new one in the same slot): the caller acts on the first only.
    pub fn expire(
        &mut self,
        now_ms: u64,
        fired: &mut Vec<(usize, u32)>,
        live: impl Fn(usize) -> Option<u32>,
    ) {
        let now_tick = now_ms / TICK_MS;
        if self.len == 0 {
            self.next_tick = self.next_tick.max(now_tick + 1);
            return;
        }
        // Walk at most one revolution: older ticks share slots with newer.
        let first = self
            .next_tick
            .max((now_tick + 1).saturating_sub(SLOTS as u64));
        let now32 = now_tick as u32;
        for tick in first..=now_tick {
            let slot = (tick % SLOTS as u64) as usize;
            let Some(entries) = self.slots.get_mut(slot) else {
                continue;
            };
            if entries.is_empty() {
                continue;
            }
            let len = &mut self.len;
            entries.retain(|&token| {
                let keep = match live(token as usize) {
                    // Its live entry, or an older one in the same slot.
                    Some(at) if at as usize % SLOTS == slot => {
                        let due = wrapping_le(at, now32);
                        if due {
                            fired.push((token as usize, at));
                        }
                        !due
                    }
                    _ => false, // stale
                };
                if !keep {
                    *len -= 1;
                }
                keep
            });
            if entries.is_empty() {
                self.emptied.push(std::mem::take(entries));
            }
        }
        self.next_tick = self.next_tick.max(now_tick + 1);
    }

    /// When the loop must wake next to look at the wheel, if it holds anything.
    pub fn next_wake_ms(&self) -> Option<u64> {
        (self.len > 0).then_some(self.next_tick.saturating_mul(TICK_MS))
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// What the engine's sessions remember: token → live tick.
    #[derive(Default)]
    struct Live(HashMap<usize, u32>);

    impl Live {
        fn arm(&mut self, w: &mut TimerWheel, token: usize, tick: NonZeroU32) {
            self.0.insert(token, tick.get());
            w.insert(token, tick);
        }

        /// Expires like the engine: fired entries are no longer live.
        fn expire(&mut self, w: &mut TimerWheel, now_ms: u64, fired: &mut Vec<(usize, u32)>) {
            let from = fired.len();
            w.expire(now_ms, fired, |t| self.0.get(&t).copied());
            for (t, _) in fired.iter().skip(from) {
                self.0.remove(t);
            }
        }
    }

    #[test]
    fn fires_only_when_due() {
        let mut w = TimerWheel::new();
        let mut live = Live::default();
        let t = w.tick_for(1_000);
        live.arm(&mut w, 7, t);
        let mut fired = Vec::new();
        live.expire(&mut w, 999, &mut fired);
        assert!(fired.is_empty());
        live.expire(&mut w, 1_000, &mut fired);
        assert_eq!(fired, vec![(7, t.get())]);
        assert!(w.is_empty());
    }

    #[test]
    fn entries_beyond_one_revolution_wait_their_turn() {
        let mut w = TimerWheel::new();
        let mut live = Live::default();
        let far = SLOTS as u64 * TICK_MS * 3 + 10;
        let t = w.tick_for(far);
        live.arm(&mut w, 1, t);
        let mut fired = Vec::new();
        let mut now = 0;
        while now < far - TICK_MS {
            live.expire(&mut w, now, &mut fired);
            now += TICK_MS;
        }
        assert!(fired.is_empty());
        live.expire(&mut w, far + TICK_MS, &mut fired);
        assert_eq!(fired.len(), 1);
    }

    #[test]
    fn a_long_sleep_still_fires_everything_due() {
        let mut w = TimerWheel::new();
        let mut live = Live::default();
        for i in 0..100u64 {
            let t = w.tick_for(i * 1000);
            live.arm(&mut w, i as usize, t);
        }
        let mut fired = Vec::new();
        live.expire(&mut w, 10_000_000, &mut fired);
        assert_eq!(fired.len(), 100);
    }

    #[test]
    fn past_deadlines_fire_on_the_next_turn() {
        let mut w = TimerWheel::new();
        let mut live = Live::default();
        let mut fired = Vec::new();
        live.expire(&mut w, 5_000, &mut fired);
        let t = w.tick_for(10);
        live.arm(&mut w, 3, t);
        assert_eq!(w.next_wake_ms(), Some(u64::from(t.get()) * TICK_MS));
        live.expire(&mut w, 5_000 + TICK_MS, &mut fired);
        assert_eq!(fired.len(), 1);
    }

    /// After 2^32 ticks (6.8 years at 50 ms) the tick counter wraps: an
    /// entry armed across the wrap fires when due, not at once and not on
    /// every turn after.
    #[test]
    fn ticks_wrap_after_six_years() {
        let mut w = TimerWheel::new();
        let mut live = Live::default();
        let mut fired = Vec::new();
        let start_tick = u64::from(u32::MAX) - 10;
        live.expire(&mut w, start_tick * TICK_MS, &mut fired);
        // Due 20 ticks later, past the wrap.
        let due_ms = (start_tick + 20) * TICK_MS;
        let t = w.tick_for(due_ms);
        live.arm(&mut w, 1, t);
        // And one due two seconds later still.
        let later = w.tick_for(due_ms + 2_000);
        live.arm(&mut w, 2, later);
        assert!(w.not_later(t, later));
        assert!(!w.not_later(later, t));
        let mut now = start_tick * TICK_MS;
        while now < due_ms {
            now += TICK_MS;
            live.expire(&mut w, now.min(due_ms - 1), &mut fired);
        }
        assert!(fired.is_empty(), "fired early: {fired:?}");
        live.expire(&mut w, due_ms, &mut fired);
        assert_eq!(fired, vec![(1, t.get())]);
        fired.clear();
        for step in 1..=10 {
            live.expire(&mut w, due_ms + step * TICK_MS, &mut fired);
        }
        assert!(fired.is_empty(), "the later entry fired early: {fired:?}");
        live.expire(&mut w, due_ms + 2_000, &mut fired);
        assert_eq!(fired, vec![(2, later.get())]);
    }

    /// A re-armed connection leaves its old entry behind; it is dropped
    /// when its slot comes up, whatever the connection's tick is now.
    #[test]
    fn stale_entries_are_dropped_not_fired() {
        let mut w = TimerWheel::new();
        let mut live = Live::default();
        let mut fired = Vec::new();
        let late = w.tick_for(2_000);
        live.arm(&mut w, 5, late);
        // Re-armed earlier, then fired: the entry for `late` is stale.
        let early = w.tick_for(1_000);
        live.arm(&mut w, 5, early);
        live.expire(&mut w, 1_000, &mut fired);
        assert_eq!(fired, vec![(5, early.get())]);
        fired.clear();
        live.expire(&mut w, 3_000, &mut fired);
        assert!(fired.is_empty(), "{fired:?}");
        assert!(w.is_empty());
        // A token re-armed a revolution later in the same slot keeps its
        // older entry until then; both come out then (the engine acts on
        // the first: `session.timer` is cleared by it).
        let now = 3_000;
        let next = w.tick_for(now + 100);
        let same_slot = w.tick_for(now + 100 + SLOTS as u64 * TICK_MS);
        live.arm(&mut w, 9, same_slot);
        w.insert(9, next);
        live.expire(&mut w, now + 100, &mut fired);
        assert!(fired.is_empty(), "{fired:?}");
        live.expire(&mut w, now + 100 + SLOTS as u64 * TICK_MS, &mut fired);
        fired.dedup();
        assert_eq!(fired, vec![(9, same_slot.get())]);
        assert!(w.is_empty());
    }

    #[test]
    fn far_deadlines_are_clamped_not_saturated() {
        let w = TimerWheel::new();
        let far = w.tick_for(u64::MAX);
        let near = w.tick_for(1_000);
        assert!(w.not_later(near, far));
    }
}
