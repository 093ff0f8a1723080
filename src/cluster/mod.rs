//! `--redis URL`: several `chat` nodes pairing strangers as one cluster,
//! with Redis as the one linearizable place that holds the waiting queue
//! (the design: README "Cluster", docs/operations.md).
//!
//! * `resp`: the Redis wire format (sans-IO);
//! * `script` + `match.lua`: matchmaking, atomically in Redis;
//! * `proto`: what nodes tell each other over pub/sub;
//! * `node`: the cluster thread, the one place that talks to Redis;
//! * `view`: its counters for `/metrics`.

mod conn;
pub mod node;
pub mod proto;
pub(crate) mod records;
pub mod resp;
pub mod script;
mod url;
pub mod view;

pub use url::RedisUrl;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests_script;

/// The key mixed into cluster pair ids: the same on every node of cluster
/// `name` (FNV-1a of the name), so both sides of a pair compute one id.
pub fn pair_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
