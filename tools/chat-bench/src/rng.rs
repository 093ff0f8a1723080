//! A small PRNG: masks, keys and send phases need no crypto.

use crate::clock::now_ns;

/// xorshift64*: masks, keys and send phases need no crypto.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        Rng(now_ns() ^ (u64::from(std::process::id()) << 32) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
