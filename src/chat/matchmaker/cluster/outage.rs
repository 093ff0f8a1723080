//! Time and failures: offers that get no answer, dead and departing
//! nodes, Redis lost (the grace) and found again.

use crate::chat::matchmaker::{Gid, MatchOut, Matchmaker, State};
use crate::chat::peer::Address;
use crate::chat::protocol::LeftReason;
use crate::chat::video::PairId;
use crate::cluster::proto::Answer;

impl Matchmaker {
    /// Offers past their answer's deadline fail (x back in line).
    pub fn cluster_tick(&mut self, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        let expired: Vec<Gid> = match &self.cluster {
            Some(c) => c
                .offers
                .iter()
                .filter(|(_, p)| p.deadline_ms <= now_ms)
                .map(|(&g, _)| g)
                .collect(),
            None => return,
        };
        for gid in expired {
            self.back_in_line(gid, out);
        }
        let stale: Vec<(bool, Answer)> = match &mut self.cluster {
            Some(c) => {
                let (gone, kept) = std::mem::take(&mut c.early)
                    .into_iter()
                    .partition(|(_, _, until)| *until <= now_ms);
                c.early = kept;
                gone.into_iter().map(|(accept, a, _)| (accept, a)).collect()
            }
            None => Vec::new(),
        };
        let key = self.cluster.as_ref().map_or(0, |c| c.key);
        for (accept, a) in stale.into_iter().filter(|(accept, _)| *accept) {
            let _ = accept;
            let y = Address::on(a.node, a.y_thread, a.y_conn, a.y_serial);
            out.left_remote(y, PairId::new(a.pair, key), LeftReason::Disconnected);
        }
        let pending = match &mut self.cluster {
            Some(c) => std::mem::take(&mut c.pending_local),
            None => Vec::new(),
        };
        for gid in pending {
            if self.client(gid).is_some_and(|c| c.state == State::Queued) && !self.cluster_up() {
                self.try_pair(gid, out);
            }
        }
        self.finish_turn(now_ms, out);
    }

    /// The earliest offer deadline.
    pub fn cluster_deadline(&self) -> Option<u64> {
        let c = self.cluster.as_ref()?;
        if !c.pending_local.is_empty() {
            return Some(0);
        }
        let early = c.early.iter().map(|&(_, _, until)| until);
        c.offers.values().map(|p| p.deadline_ms).chain(early).min()
    }

    /// Nodes not in `live` are dead: every client of ours paired with or
    /// offered to one of theirs is told `left` `disconnected` (or goes
    /// back in line).
    /// Costs O(nodes) unless a node died (then one pass over the clients).
    pub fn cluster_live(&mut self, live: &[u64], out: &mut dyn MatchOut) {
        let Some(c) = &self.cluster else {
            return;
        };
        let partner_nodes = c.partners.keys().copied();
        let offered_nodes = c.offers.values().map(|p| p.y.node);
        let dead: Vec<u64> = partner_nodes
            .chain(offered_nodes)
            .filter(|n| !live.contains(n))
            .collect();
        if !dead.is_empty() {
            self.end_remote(|node| dead.contains(&node), out);
        }
    }

    /// `node` said it is shutting down.
    pub fn cluster_node_gone(&mut self, node: u64, out: &mut dyn MatchOut) {
        self.end_remote(|n| n == node, out);
    }

    /// Redis has been gone for the grace period: every cross-node pair ends.
    pub fn cluster_grace_over(&mut self, out: &mut dyn MatchOut) {
        self.end_remote(|_| true, out);
    }

    fn end_remote(&mut self, dead: impl Fn(u64) -> bool, out: &mut dyn MatchOut) {
        let mut ended = Vec::new();
        for (gid, c) in self.clients.iter().enumerate() {
            if let Some(State::Remote(a)) = c.as_ref().map(|c| c.state) {
                if dead(a.node) {
                    ended.push((gid, a));
                }
            }
        }
        for (gid, partner) in ended {
            self.end_cross(gid, partner, out);
        }
        let offered: Vec<Gid> = match &self.cluster {
            Some(c) => c
                .offers
                .iter()
                .filter(|(_, p)| dead(p.y.node))
                .map(|(&g, _)| g)
                .collect(),
            None => return,
        };
        for gid in offered {
            self.back_in_line(gid, out);
        }
        let now = self.now_ms;
        self.finish_turn(now, out);
    }

    /// Ends `gid`'s pair with `partner` on another node: our client is told
    /// `left` `disconnected`, and so is the partner, in case its node was
    /// only cut off for a while and is back (a dead node never reads it;
    /// while Redis is down here it is dropped).
    pub(super) fn end_cross(&mut self, gid: Gid, partner: Address, out: &mut dyn MatchOut) {
        let Some(c) = self.client_mut(gid) else {
            return;
        };
        c.state = State::Idle;
        let pair = c.pair;
        self.chatting = self.chatting.saturating_sub(1);
        self.partner_off(partner.node);
        if let (Some(pair), Some(m)) = (pair, self.member(gid)) {
            out.left(m, pair, LeftReason::Disconnected);
            out.left_remote(partner, pair, LeftReason::Disconnected);
        }
    }

    /// Redis came back (`up`: re-register every queued client, in line
    /// order) or went away (offers fail back to the local queue; local
    /// clients pair among themselves).
    pub fn cluster_set_up(&mut self, up: bool, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some(c) = &mut self.cluster else {
            return;
        };
        if c.up == up {
            return;
        }
        c.up = up;
        if up {
            let queued: Vec<Gid> = self.queue.values().copied().collect();
            for gid in queued {
                self.cluster_join(gid, true);
            }
            return;
        }
        c.commands.clear();
        let offered: Vec<Gid> = c.offers.keys().copied().collect();
        for gid in offered {
            self.back_in_line(gid, out);
        }
        let queued: Vec<Gid> = self.queue.values().copied().collect();
        for gid in queued {
            if self.client(gid).is_some_and(|c| c.state == State::Queued) {
                self.try_pair(gid, out);
            }
        }
        self.finish_turn(now_ms, out);
    }
}
