//! What goes to Redis: heartbeats, script calls, publishes (records
//! batched per node, control messages, bans) and blocks.

use super::{ClusterThread, Sent, BEAT_MS};
use crate::chat::matchmaker::Command;
use crate::cluster::conn::MAX_UNSENT;
use crate::cluster::proto::{self, node_hex};
use crate::cluster::records::batch;
use crate::cluster::script::Op;
use crate::cluster::view::ClusterView;
use crate::engine::{forwarded, record_len};
use std::net::IpAddr;

impl ClusterThread {
    pub(super) fn beat(&mut self, now: u64) {
        self.next_beat_ms = now + BEAT_MS;
        let counts = self.lock().counts();
        self.beat_sent_ms = now;
        let op = Op::Beat {
            node: self.setup.node,
            counts,
        };
        self.eval(op, Sent::Beat, now);
        let probe = format!("P{now}");
        if let Some(cmd) = &mut self.cmd {
            cmd.send(&[b"PUBLISH", &self.channel, probe.as_bytes()]);
            self.inflight.push_back((Sent::Ignore, now));
        }
    }

    pub(super) fn eval(&mut self, op: Op, sent: Sent, now: u64) {
        let Some(cmd) = &mut self.cmd else {
            return;
        };
        let args = op.args();
        let mut all: Vec<&[u8]> = vec![b"EVALSHA", self.sha.as_bytes(), b"1", &self.prefix];
        all.extend(args.iter().map(Vec::as_slice));
        cmd.send(&all);
        let sent = match sent {
            Sent::Op(_) => Sent::Op(op),
            other => other,
        };
        self.inflight.push_back((sent, now));
    }

    pub(super) fn send_commands(&mut self, now: u64) {
        let commands = std::mem::take(&mut self.commands);
        for c in commands {
            if !self.up() {
                break;
            }
            match c {
                Command::Op(op) => self.eval(op.clone(), Sent::Op(op), now),
                Command::Publish { node, payload } => self.publish(node, &payload, now),
                Command::Block { a, b, ttl_ms } => self.block(a, b, ttl_ms, now),
            }
        }
    }

    /// Bans made here since the last turn, to every node (while down they
    /// stay on this node only).
    pub(super) fn share_bans(&mut self, now: u64) {
        let bans = self.setup.safety.take_shared_bans();
        if bans.is_empty() || !self.up() {
            return;
        }
        for ban in bans {
            let from = proto::BanFrom {
                node: self.setup.node,
                ban,
            };
            let mut payload = vec![b'B'];
            let _ = serde_json::to_writer(&mut payload, &from);
            if let Some(cmd) = &mut self.cmd {
                cmd.send(&[b"PUBLISH", &self.bans_channel, &payload]);
                self.inflight.push_back((Sent::Ignore, now));
            }
        }
    }

    /// `{NAME}:blk:<a>|<b>` (sorted pair) for the block's lifetime: the
    /// script pairs neither way while it exists.
    pub(super) fn block(&mut self, a: IpAddr, b: IpAddr, ttl_ms: u64, now: u64) {
        let Some(cmd) = &mut self.cmd else {
            return;
        };
        let (a, b) = (a.to_string(), b.to_string());
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let key = format!("{}:blk:{lo}|{hi}", String::from_utf8_lossy(&self.prefix));
        let ttl = ttl_ms.max(1).to_string();
        cmd.send(&[b"SET", key.as_bytes(), b"1", b"PX", ttl.as_bytes()]);
        self.inflight.push_back((Sent::Ignore, now));
    }

    pub(super) fn publish(&mut self, node: u64, payload: &[u8], now: u64) {
        let Some(cmd) = &mut self.cmd else {
            return;
        };
        let channel = format!(
            "{}:n:{}",
            String::from_utf8_lossy(&self.prefix),
            node_hex(node)
        );
        cmd.send(&[b"PUBLISH", channel.as_bytes(), payload]);
        self.inflight.push_back((Sent::Ignore, now));
    }

    /// The matchmaker's records: those for other nodes join the batches,
    /// the rest go to the loops.
    pub(super) fn route_decided(&mut self) {
        let up = self.up();
        let mut at = 0;
        let mut dropped = 0;
        while let Some(len) = self.decided.get(at..).and_then(record_len) {
            if let Some(record) = self.decided.get(at..at + len) {
                match forwarded(record) {
                    Some((node, inner)) if up => batch(&mut self.batches, node, inner),
                    Some(_) => dropped += 1,
                    None => self.to_loops.extend_from_slice(record),
                }
            }
            at += len;
        }
        self.decided.clear();
        ClusterView::add(&self.view.dropped, dropped);
    }

    pub(super) fn publish_batches(&mut self, now: u64) {
        let batches = std::mem::take(&mut self.batches);
        for (node, records) in &batches {
            let mut count = 0;
            let mut at = 0;
            while let Some(len) = records.get(at..).and_then(record_len) {
                count += 1;
                at += len;
            }
            let over = self
                .cmd
                .as_ref()
                .is_some_and(|c| c.unsent.len() > MAX_UNSENT);
            if over || !self.up() {
                ClusterView::add(&self.view.dropped, count);
                continue;
            }
            let mut payload = Vec::with_capacity(records.len() + 1);
            payload.push(b'R');
            payload.extend_from_slice(records);
            self.publish(*node, &payload, now);
            ClusterView::add(&self.view.messages_out, count);
        }
        // Keep the allocations for the next turn.
        self.batches = batches;
        self.batches.clear();
    }
}
