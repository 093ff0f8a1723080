//! After Redis comes back: the cross-node pairs this node holds are
//! compared with what every other live node holds, and a pair only one
//! side holds ends on that side.
//!
//! An outage can leave such pairs behind, because pub/sub drops what is
//! published to a node that is not subscribed and a node drops what it
//! could not send:
//!
//! * our searcher's script call claimed a stranger whose node accepted, but
//!   the reply (or the accept) never reached us: the stranger talks to
//!   nobody;
//! * we accepted an offer but the accept was never published: the searcher
//!   went back in line and our client talks to nobody;
//! * one side's `left` was lost: the other side still chats.
//!
//! A node keeps such a pair only while it runs and the other node's key
//! lives (the heartbeat, `cluster_live`); a node back within its key's
//! lifetime needs this.
//!
//! The node that got Redis back sends every live node a request listing
//! the pairs it holds with that node's clients, before it re-joins anyone
//! (so no pair made after the list can reach the other node before it).
//! The receiver ends its pairs with us that the list lacks and answers with
//! its own list; we end the pairs of our request's list that the answer
//! lacks (pairs made since we sent it are not in the list, so they are
//! safe). Bound: the lists kept for the answers are one per live node and
//! hold no more pairs than this node has clients; a list over
//! [`MAX_SYNC_PAIRS`] (a message Redis would carry but our subscriber
//! would refuse) is not sent, and those pairs are left as they are.

use super::super::{Gid, MatchOut, Matchmaker, State};
use super::Command;
use crate::chat::peer::Address;
use crate::chat::video::PairId;
use crate::cluster::proto;
use std::collections::HashMap;

/// The most pair ids one sync message carries: 8 bytes each, under the
/// subscriber's largest bulk string (`resp::MAX_BULK`, 8 MiB).
pub const MAX_SYNC_PAIRS: usize = 1_000_000;

impl Matchmaker {
    /// Redis is back after an outage: the requests to send, one per node of
    /// `nodes` (the live ones; nodes our clients are paired with are added)
    /// with the pairs we hold with it. Each list is kept until its answer.
    pub fn cluster_sync_start(&mut self, nodes: &[u64]) -> Vec<(u64, Vec<u8>)> {
        let Some(me) = self.cluster.as_ref().map(|c| c.node) else {
            return Vec::new();
        };
        let mut held = self.cross_pairs(|_| true);
        for &n in nodes {
            held.entry(n).or_default();
        }
        held.remove(&me);
        held.retain(|_, pairs| pairs.len() <= MAX_SYNC_PAIRS);
        let mut requests = Vec::with_capacity(held.len());
        for (node, pairs) in &mut held {
            pairs.sort_unstable_by_key(|p| p.0);
            requests.push((*node, proto::sync(false, me, pairs)));
        }
        if let Some(c) = &mut self.cluster {
            c.synced = held;
        }
        requests
    }

    /// Node `from` listed the pairs it holds with our clients: a request
    /// (our pairs with it that it lacks end, our list goes back) or the
    /// answer to ours (the pairs of our request it lacks end). Returns how
    /// many of our pairs ended.
    pub fn cluster_sync(
        &mut self,
        from: u64,
        answer: bool,
        theirs: impl Iterator<Item = PairId>,
        out: &mut dyn MatchOut,
    ) -> u64 {
        let Some(me) = self.cluster.as_ref().map(|c| c.node) else {
            return 0;
        };
        if from == me {
            return 0;
        }
        let mut theirs: Vec<PairId> = theirs.collect();
        theirs.sort_unstable_by_key(|p| p.0);
        let has = |list: &[PairId], p: PairId| list.binary_search_by_key(&p.0, |q| q.0).is_ok();
        let ours = if answer {
            match self.cluster.as_mut().and_then(|c| c.synced.remove(&from)) {
                Some(sent) => sent,
                None => return 0,
            }
        } else {
            Vec::new()
        };
        let ended: Vec<(Gid, Address)> = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(gid, c)| match (c.as_ref()?.state, c.as_ref()?.pair) {
                (State::Remote(a), Some(p)) if a.node == from => Some((gid, a, p)),
                _ => None,
            })
            .filter(|&(_, _, p)| !has(&theirs, p) && (!answer || has(&ours, p)))
            .map(|(gid, a, _)| (gid, a))
            .collect();
        for &(gid, partner) in &ended {
            self.end_cross(gid, partner, out);
        }
        if !answer {
            let mut mine = self
                .cross_pairs(|n| n == from)
                .remove(&from)
                .unwrap_or_default();
            mine.sort_unstable_by_key(|p| p.0);
            if mine.len() <= MAX_SYNC_PAIRS {
                self.push(Command::Publish {
                    node: from,
                    payload: proto::sync(true, me, &mine),
                });
            }
        }
        let now = self.now_ms;
        self.finish_turn(now, out);
        ended.len() as u64
    }

    /// Our cross-node pairs, per partner node (those `node` accepts).
    fn cross_pairs(&self, node: impl Fn(u64) -> bool) -> HashMap<u64, Vec<PairId>> {
        let mut held: HashMap<u64, Vec<PairId>> = HashMap::new();
        for c in self.clients.iter().flatten() {
            if let (State::Remote(a), Some(p)) = (c.state, c.pair) {
                if node(a.node) {
                    held.entry(a.node).or_default().push(p);
                }
            }
        }
        held
    }
}
