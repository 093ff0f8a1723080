//! `--redis URL`: several `chat` nodes pairing strangers as one cluster,
//! with Redis as the one linearizable place that holds the waiting queue
//! (the design: README "Cluster", docs/operations.md).
//!
//! * `resp`: the Redis wire format (sans-IO);
//! * `script` + `match.lua`: matchmaking, atomically in Redis;
//! * `proto`: what nodes tell each other over pub/sub.

pub mod proto;
pub mod resp;
pub mod script;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests_script;
