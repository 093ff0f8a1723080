//! The matchmaker's decisions made on the cluster thread, as engine
//! cross records: for this node's loops, or (wrapped) for other nodes.

use crate::chat::matchmaker::{Gid, MatchOut, Member};
use crate::chat::peer::{Address, Cross};
use crate::chat::protocol::LeftReason;
use crate::chat::PairId;
use crate::engine::encode_cross;
use std::net::IpAddr;

/// Bytes of records published in one PUBLISH.
const MAX_BATCH: usize = 256 * 1024;

/// Appends `record` to `node`'s batch (a new batch past [`MAX_BATCH`]).
pub(super) fn batch(batches: &mut Vec<(u64, Vec<u8>)>, node: u64, record: &[u8]) {
    match batches
        .iter_mut()
        .rev()
        .find(|(n, b)| *n == node && b.len() + record.len() <= MAX_BATCH)
    {
        Some((_, b)) => b.extend_from_slice(record),
        None => batches.push((node, record.to_vec())),
    }
}

/// The matchmaker's decisions, made on the cluster thread, as records for
/// the loops (and, wrapped, for other nodes).
pub(crate) struct Out<'a> {
    threads: usize,
    records: &'a mut Vec<u8>,
    /// Clients paired across nodes by these decisions.
    pub(crate) pairs: u64,
}

impl<'a> Out<'a> {
    pub(crate) fn new(threads: usize, records: &'a mut Vec<u8>) -> Out<'a> {
        Out {
            threads: threads.max(1),
            records,
            pairs: 0,
        }
    }

    fn address(&self, m: Member) -> Address {
        Address::here(m.gid % self.threads, m.gid / self.threads, m.serial)
    }
}

impl MatchOut for Out<'_> {
    fn waiting(&mut self, _to: Gid, _online: usize) {}

    fn paired(&mut self, x: Member, y: Member, pair: PairId, x_initiator: bool, common: &[String]) {
        for (me, other, initiator) in [(x, y, x_initiator), (y, x, !x_initiator)] {
            let event = Cross::Paired {
                to: self.address(me),
                partner: self.address(other),
                partner_addr: other.addr,
                pair,
                initiator,
                common,
            };
            encode_cross(self.records, &event);
        }
    }

    fn left(&mut self, to: Member, pair: PairId, reason: LeftReason) {
        let event = Cross::Left {
            to: self.address(to),
            pair,
            reason,
        };
        encode_cross(self.records, &event);
    }

    fn paired_remote(
        &mut self,
        me: Member,
        (partner, partner_addr): (Address, Option<IpAddr>),
        pair: PairId,
        initiator: bool,
        common: &[String],
    ) {
        self.pairs += 1;
        let event = Cross::Paired {
            to: self.address(me),
            partner,
            partner_addr,
            pair,
            initiator,
            common,
        };
        encode_cross(self.records, &event);
    }

    fn left_remote(&mut self, to: Address, pair: PairId, reason: LeftReason) {
        encode_cross(self.records, &Cross::Left { to, pair, reason });
    }

    fn is_here(&self, _gid: Gid) -> bool {
        false
    }

    fn nudge(&mut self, x: Member) {
        let event = Cross::Nudge {
            thread: x.gid % self.threads,
            gid: x.gid,
            serial: x.serial,
        };
        encode_cross(self.records, &event);
    }
}
