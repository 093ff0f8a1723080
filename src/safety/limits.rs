//! Per-address limits (PROTOCOL.md "Client address and per-address
//! limits"): open connections, and new WebSocket sessions per minute in
//! bursts of half that, both off at 0.
//!
//! One table entry per address (IPv4) or /64 (IPv6) that has an open
//! connection or a session bucket not yet full again. The table holds at
//! most [`MAX_ADDRESSES`] entries (about 40 bytes each plus the map's own
//! overhead: a few MiB at the bound); entries with no open connection and a
//! full bucket are stale and are dropped by [`Limits::sweep`] (the engine
//! calls it once a minute; it walks the table once). When the table is
//! full of live entries, a new address is let through uncounted rather
//! than refused: the bound is above `--max-connections`' default reach per
//! address, and refusing every newcomer would let one who holds that many
//! addresses lock everyone else out.

use super::addr::AddrKey;
use std::collections::HashMap;

/// Most addresses tracked at once.
pub const MAX_ADDRESSES: usize = 200_000;
/// `Retry-After` (seconds) on a refusal for too many open connections:
/// nothing says when one of them will close, so a short, fixed wait.
pub const CONNECTIONS_RETRY_AFTER_S: u64 = 10;
/// A session bucket counts in 1/60,000 of a session, so a rate of N per
/// minute refills exactly N units per millisecond.
const UNIT: u64 = 60_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    open: u32,
    /// Session tokens in units of 1/[`UNIT`]; `None`: full (never used).
    tokens: Option<u64>,
    last_ms: u64,
}

/// The limit settings and the per-address table.
#[derive(Debug, Default)]
pub struct Limits {
    max_connections: u32,
    sessions_per_minute: u32,
    table: HashMap<AddrKey, Entry>,
}

impl Limits {
    /// `--max-connections-per-ip` and `--sessions-per-minute-per-ip` (0: off).
    pub fn new(max_connections: u32, sessions_per_minute: u32) -> Limits {
        Limits {
            max_connections,
            sessions_per_minute,
            table: HashMap::new(),
        }
    }

    /// Either limit is on.
    pub fn enabled(&self) -> bool {
        self.max_connections > 0 || self.sessions_per_minute > 0
    }

    /// Addresses tracked now (tests and `/metrics`).
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    fn burst(&self) -> u64 {
        u64::from(self.sessions_per_minute.div_ceil(2)) * UNIT
    }

    /// A connection from `key` opens. `Ok(true)`: counted (call
    /// [`Limits::close`] when it goes); `Ok(false)`: not counted (limit off
    /// or table full); `Err(retry_after_s)`: over the limit, not counted.
    pub fn open(&mut self, key: AddrKey, now_ms: u64) -> Result<bool, u64> {
        if self.max_connections == 0 {
            return Ok(false);
        }
        let max = self.max_connections;
        let Some(entry) = self.entry(key, now_ms) else {
            return Ok(false);
        };
        if entry.open >= max {
            return Err(CONNECTIONS_RETRY_AFTER_S);
        }
        entry.open += 1;
        Ok(true)
    }

    /// A connection counted by [`Limits::open`] closed.
    pub fn close(&mut self, key: AddrKey) {
        if let Some(e) = self.table.get_mut(&key) {
            e.open = e.open.saturating_sub(1);
        }
    }

    /// A WebSocket session from `key` opens: `Err(retry_after_s)` when
    /// its bucket is empty.
    pub fn new_session(&mut self, key: AddrKey, now_ms: u64) -> Result<(), u64> {
        let rate = u64::from(self.sessions_per_minute);
        if rate == 0 {
            return Ok(());
        }
        let burst = self.burst();
        let Some(entry) = self.entry(key, now_ms) else {
            return Ok(());
        };
        let elapsed = now_ms.saturating_sub(entry.last_ms);
        entry.last_ms = entry.last_ms.max(now_ms);
        let tokens = entry.tokens.map_or(burst, |t| {
            burst.min(t.saturating_add(elapsed.saturating_mul(rate)))
        });
        if tokens < UNIT {
            entry.tokens = Some(tokens);
            let wait_ms = (UNIT - tokens).div_ceil(rate);
            return Err(wait_ms.div_ceil(1000).max(1));
        }
        entry.tokens = Some(tokens - UNIT);
        Ok(())
    }

    /// Drops the entries that hold nothing: no open connection and a
    /// bucket that has refilled by `now_ms`.
    pub fn sweep(&mut self, now_ms: u64) {
        let rate = u64::from(self.sessions_per_minute);
        let burst = self.burst();
        self.table.retain(|_, e| {
            let full = e.tokens.map_or(true, |t| {
                t.saturating_add(now_ms.saturating_sub(e.last_ms).saturating_mul(rate)) >= burst
            });
            e.open > 0 || !full
        });
    }

    fn entry(&mut self, key: AddrKey, now_ms: u64) -> Option<&mut Entry> {
        if self.table.len() >= MAX_ADDRESSES && !self.table.contains_key(&key) {
            self.sweep(now_ms);
            if self.table.len() >= MAX_ADDRESSES {
                return None;
            }
        }
        Some(self.table.entry(key).or_insert(Entry {
            open: 0,
            tokens: None,
            last_ms: now_ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> AddrKey {
        AddrKey::V4(n)
    }

    #[test]
    fn off_by_default() {
        let mut l = Limits::new(0, 0);
        assert!(!l.enabled());
        for _ in 0..1000 {
            assert_eq!(l.open(key(1), 0), Ok(false));
            assert_eq!(l.new_session(key(1), 0), Ok(()));
        }
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn open_connections_per_address() {
        let mut l = Limits::new(2, 0);
        assert_eq!(l.open(key(1), 0), Ok(true));
        assert_eq!(l.open(key(1), 0), Ok(true));
        assert_eq!(l.open(key(1), 0), Err(CONNECTIONS_RETRY_AFTER_S));
        assert_eq!(l.open(key(2), 0), Ok(true));
        l.close(key(1));
        assert_eq!(l.open(key(1), 0), Ok(true));
        l.close(key(1));
        l.close(key(1));
        l.close(key(2));
        l.sweep(1);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn sessions_per_minute_in_bursts_of_half() {
        // 60 a minute: bursts of 30, then one a second.
        let mut l = Limits::new(0, 60);
        for i in 0..30 {
            assert_eq!(l.new_session(key(1), 0), Ok(()), "{i}");
        }
        assert_eq!(l.new_session(key(1), 0), Err(1));
        assert_eq!(l.new_session(key(2), 0), Ok(()));
        assert_eq!(l.new_session(key(1), 999), Err(1));
        assert_eq!(l.new_session(key(1), 1000), Ok(()));
        assert_eq!(l.new_session(key(1), 1000), Err(1));
        // 3 a minute: bursts of 2, then one every 20 s.
        let mut l = Limits::new(0, 3);
        assert_eq!(l.new_session(key(1), 0), Ok(()));
        assert_eq!(l.new_session(key(1), 0), Ok(()));
        assert_eq!(l.new_session(key(1), 0), Err(20));
        assert_eq!(l.new_session(key(1), 15_000), Err(5));
        assert_eq!(l.new_session(key(1), 20_000), Ok(()));
    }

    #[test]
    fn stale_entries_go_away() {
        let mut l = Limits::new(5, 60);
        assert_eq!(l.new_session(key(1), 0), Ok(()));
        assert_eq!(l.open(key(2), 0), Ok(true));
        l.sweep(100);
        assert_eq!(
            l.tracked(),
            2,
            "a bucket still refilling and an open connection stay"
        );
        l.sweep(1_000);
        assert_eq!(l.tracked(), 1, "the refilled bucket went");
        l.close(key(2));
        l.sweep(1_000);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut l = Limits::new(1, 0);
        for n in 0..MAX_ADDRESSES as u32 {
            assert_eq!(l.open(key(n), 0), Ok(true));
        }
        // Full of live entries: a newcomer is let through uncounted.
        assert_eq!(l.open(key(u32::MAX), 0), Ok(false));
        assert_eq!(l.tracked(), MAX_ADDRESSES);
    }
}
