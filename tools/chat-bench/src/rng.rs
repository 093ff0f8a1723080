//! A small PRNG: masks, keys and send phases need no crypto, and the soak's
//! choices must replay from a seed.

use crate::clock::now_ns;

/// xorshift64*: masks, keys and send phases need no crypto.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock and the pid: a different stream every run.
    pub fn new() -> Rng {
        Rng(now_ns() ^ (u64::from(std::process::id()) << 32) | 1)
    }

    /// The stream for `seed` and `stream`: the same pair gives the same
    /// numbers on every run, and neighbouring pairs give unrelated streams
    /// (both go through SplitMix64's finaliser, so seed 1 stream 2 and
    /// seed 2 stream 1 differ too).
    pub fn seeded(seed: u64, stream: u64) -> Rng {
        let x = splitmix(splitmix(seed) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        // xorshift has one fixed point, 0.
        Rng(if x == 0 { 0x9E37_79B9_7F4A_7C15 } else { x })
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0). The modulo bias is below 2^-40
    /// for the small `n` used here.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// SplitMix64's output function: spreads nearby seeds over the whole range.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(mut r: Rng, n: usize) -> Vec<u64> {
        (0..n).map(|_| r.next()).collect()
    }

    #[test]
    fn a_seed_replays_and_streams_differ() {
        assert_eq!(first(Rng::seeded(7, 3), 8), first(Rng::seeded(7, 3), 8));
        assert_ne!(first(Rng::seeded(7, 3), 8), first(Rng::seeded(7, 4), 8));
        assert_ne!(first(Rng::seeded(1, 2), 8), first(Rng::seeded(2, 1), 8));
        // Seed 0 is a seed like any other, not xorshift's stuck state.
        let zeros = first(Rng::seeded(0, 0), 8);
        assert!(zeros.iter().all(|&x| x != 0), "{zeros:?}");
    }

    #[test]
    fn ranges_hold_their_bounds() {
        let mut r = Rng::seeded(42, 0);
        let mut seen = [false; 5];
        for _ in 0..10_000 {
            let x = r.between(3, 7);
            assert!((3..=7).contains(&x));
            seen[(x - 3) as usize] = true;
            assert!(r.below(10) < 10);
        }
        assert_eq!(seen, [true; 5]);
        assert_eq!(r.below(0), 0);
        assert_eq!(r.between(5, 2), 5);
        let hits = (0..10_000).filter(|_| r.chance(30)).count();
        assert!((2_500..3_500).contains(&hits), "{hits}");
    }
}
