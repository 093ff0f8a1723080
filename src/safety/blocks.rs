//! The no-rematch list (PROTOCOL.md "Block"): after `block` or `report`,
//! the two addresses are not paired for `--block-hours`, in either
//! direction.
//!
//! A block is one unordered pair of address keys with an expiry. Every
//! block lasts the same time, so expiries come in the order blocks were
//! made: a queue in that order drops expired ones from the front in O(1)
//! each. At most [`MAX_BLOCKS`] pairs are kept (about 100 bytes each with
//! the map and the queue: ~10 MiB at the bound); when full, the oldest
//! block goes first. Blocking a pair again renews it.

use super::addr::AddrKey;
use std::collections::{HashMap, VecDeque};

/// Most blocked pairs kept.
pub const MAX_BLOCKS: usize = 100_000;

/// The blocked pairs.
#[derive(Debug, Default)]
pub struct Blocks {
    /// Pair (smaller key first) → expiry (Unix ms).
    pairs: HashMap<(AddrKey, AddrKey), u64>,
    /// `(expiry, pair)` in the order made; an entry whose expiry no longer
    /// matches the map (renewed) is stale and skipped.
    order: VecDeque<(u64, (AddrKey, AddrKey))>,
}

fn ordered(a: AddrKey, b: AddrKey) -> (AddrKey, AddrKey) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Blocks {
    /// `a` and `b` are not to be paired until `until_ms`.
    pub fn add(&mut self, a: AddrKey, b: AddrKey, until_ms: u64) {
        let pair = ordered(a, b);
        if !self.pairs.contains_key(&pair) && self.pairs.len() >= MAX_BLOCKS {
            self.evict_oldest();
        }
        self.pairs.insert(pair, until_ms);
        self.order.push_back((until_ms, pair));
        if self.order.len() > MAX_BLOCKS.saturating_mul(2) {
            // Renewals leave stale entries behind: compact.
            let pairs = &self.pairs;
            self.order.retain(|(t, p)| pairs.get(p) == Some(t));
        }
    }

    /// Whether `a` and `b` may be paired at `now_ms`.
    pub fn blocked(&self, a: AddrKey, b: AddrKey, now_ms: u64) -> bool {
        self.pairs
            .get(&ordered(a, b))
            .is_some_and(|&until| until > now_ms)
    }

    /// Pairs in force (for `/metrics` and tests).
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// No pair is blocked.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Drops the blocks expired by `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        while let Some(&(until, pair)) = self.order.front() {
            if until > now_ms {
                break;
            }
            self.order.pop_front();
            if self.pairs.get(&pair) == Some(&until) {
                self.pairs.remove(&pair);
            }
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((until, pair)) = self.order.pop_front() {
            if self.pairs.get(&pair) == Some(&until) {
                self.pairs.remove(&pair);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H24: u64 = 24 * 3600 * 1000;

    #[test]
    fn a_block_holds_both_ways_until_it_expires() {
        let (a, b, c) = (AddrKey::V4(1), AddrKey::V4(2), AddrKey::V6(3));
        let mut blocks = Blocks::default();
        blocks.add(b, a, H24);
        assert!(blocks.blocked(a, b, 0));
        assert!(blocks.blocked(b, a, H24 - 1));
        assert!(!blocks.blocked(a, c, 0));
        assert!(!blocks.blocked(a, b, H24));
        blocks.expire(H24 - 1);
        assert_eq!(blocks.len(), 1);
        blocks.expire(H24);
        assert_eq!(blocks.len(), 0);
    }

    #[test]
    fn renewing_a_block_extends_it() {
        let (a, b) = (AddrKey::V4(1), AddrKey::V4(2));
        let mut blocks = Blocks::default();
        blocks.add(a, b, 100);
        blocks.add(a, b, 200);
        blocks.expire(150);
        assert!(blocks.blocked(a, b, 150));
        blocks.expire(200);
        assert_eq!(blocks.len(), 0);
    }

    #[test]
    fn the_oldest_goes_when_full() {
        let mut blocks = Blocks::default();
        for n in 0..MAX_BLOCKS as u32 {
            blocks.add(AddrKey::V4(0), AddrKey::V4(n + 1), 1000 + u64::from(n));
        }
        blocks.add(AddrKey::V4(7), AddrKey::V4(8), 5_000_000);
        assert_eq!(blocks.len(), MAX_BLOCKS);
        assert!(!blocks.blocked(AddrKey::V4(0), AddrKey::V4(1), 0));
        assert!(blocks.blocked(AddrKey::V4(0), AddrKey::V4(2), 0));
        assert!(blocks.blocked(AddrKey::V4(7), AddrKey::V4(8), 0));
    }
}
