//! What comes from Redis: replies on the command connection, and what
//! other nodes publish on the subscription.

use super::{ClusterThread, Phase, Sent, JUDGE_AFTER_MS};
use crate::chat::matchmaker::Gid;
use crate::cluster::proto::{self, Message};
use crate::cluster::records::Out;
use crate::cluster::resp::Value;
use crate::cluster::script::{self, Op, Reply};
use crate::cluster::view::ClusterView;
use crate::engine::{left_target, record_len, record_thread};
use log::info;
use std::sync::atomic::Ordering;

impl ClusterThread {
    pub(super) fn on_cmd(&mut self, now: u64) -> Result<(), String> {
        loop {
            let Some(cmd) = &mut self.cmd else {
                return Ok(());
            };
            let drained = cmd.fill().map_err(|e| format!("read: {e}"))?;
            cmd.flush().map_err(|e| format!("write: {e}"))?;
            loop {
                let Some(cmd) = &mut self.cmd else {
                    return Ok(());
                };
                let Some(reply) = cmd
                    .next()
                    .map_err(|_| "a reply that is not RESP".to_string())?
                else {
                    break;
                };
                let Some((sent, _)) = self.inflight.pop_front() else {
                    return Err("a reply nobody asked for".to_string());
                };
                self.on_reply(sent, reply, now)?;
            }
            if drained {
                return Ok(());
            }
        }
    }

    fn on_reply(&mut self, sent: Sent, reply: Value, now: u64) -> Result<(), String> {
        if let Value::Error(e) = &reply {
            let text = String::from_utf8_lossy(e).into_owned();
            if let (true, Sent::Op(op)) = (text.starts_with("NOSCRIPT"), &sent) {
                // Redis lost the script (restarted, or SCRIPT FLUSH).
                if let Some(cmd) = &mut self.cmd {
                    cmd.send(&[b"SCRIPT", b"LOAD", script::SOURCE.as_bytes()]);
                }
                self.inflight.push_back((Sent::Ignore, now));
                let op = op.clone();
                self.eval(op.clone(), Sent::Op(op), now);
                return Ok(());
            }
            return Err(format!("Redis answered: {text}"));
        }
        match sent {
            Sent::Ignore => {}
            Sent::Load => {
                if reply.bytes() != Some(self.sha.as_bytes()) {
                    return Err("SCRIPT LOAD gave another SHA".to_string());
                }
                if let Phase::Connecting { loaded, .. } = &mut self.phase {
                    *loaded = true;
                }
                self.maybe_up(now);
            }
            Sent::Beat => {
                self.beat_ok_ms = self.beat_sent_ms;
                let rtt = now.saturating_sub(self.beat_sent_ms);
                self.view
                    .rtt_us
                    .store(rtt.saturating_mul(1000), Ordering::Relaxed);
                let op = Op::Beat {
                    node: self.setup.node,
                    counts: crate::chat::Counts::default(),
                };
                if let Some(Reply::Nodes(nodes)) = op.parse(&reply) {
                    self.on_nodes(&nodes, now);
                }
            }
            Sent::Op(op) => {
                if let Some(parsed) = op.parse(&reply) {
                    let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
                    let mut out = Out::new(self.setup.threads, &mut self.decided);
                    mm.cluster_reply(&op, parsed, now, &mut out);
                    ClusterView::add(&self.view.pairs, out.pairs);
                    mm.cluster_commands(&mut self.commands);
                }
            }
        }
        Ok(())
    }

    fn on_nodes(&mut self, nodes: &[(u64, crate::chat::Counts)], now: u64) {
        let me = self.setup.node;
        let mut others = crate::chat::Counts::default();
        for (id, c) in nodes.iter().filter(|(id, _)| *id != me) {
            let _ = id;
            others.online += c.online;
            others.waiting += c.waiting;
            others.chatting += c.chatting;
        }
        self.view
            .nodes
            .store(nodes.len().max(1) as u64, Ordering::Relaxed);
        self.live = nodes.iter().map(|(id, _)| *id).collect();
        let judge =
            matches!(self.phase, Phase::Up { since_ms } if now >= since_ms + JUDGE_AFTER_MS);
        let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
        mm.cluster_set_others(others);
        if judge {
            let mut out = Out::new(self.setup.threads, &mut self.decided);
            mm.cluster_live(&self.live, &mut out);
        }
        mm.cluster_commands(&mut self.commands);
    }

    pub(super) fn on_sub(&mut self, now: u64) -> Result<(), String> {
        loop {
            let Some(sub) = &mut self.sub else {
                return Ok(());
            };
            let drained = sub.fill().map_err(|e| format!("subscriber read: {e}"))?;
            sub.flush().map_err(|e| format!("subscriber write: {e}"))?;
            self.parse_sub(now)?;
            // What came in goes to the loops now: `to_loops` never holds
            // more than one read budget's worth.
            self.flush_to_loops();
            if drained {
                return Ok(());
            }
        }
    }

    /// Every complete message read so far on the subscriber connection.
    fn parse_sub(&mut self, now: u64) -> Result<(), String> {
        loop {
            let Some(sub) = &mut self.sub else {
                return Ok(());
            };
            let Some(v) = sub
                .next()
                .map_err(|_| "a message that is not RESP".to_string())?
            else {
                return Ok(());
            };
            if let Value::Error(e) = &v {
                return Err(format!("subscriber: {}", String::from_utf8_lossy(e)));
            }
            let Some(items) = v.array() else {
                continue;
            };
            match items.first().and_then(Value::bytes) {
                Some(b"subscribe") => {
                    if let Phase::Connecting { subscribed, .. } = &mut self.phase {
                        *subscribed = true;
                    }
                    self.maybe_up(now);
                }
                Some(b"message") => {
                    if let Some(payload) = items.get(2).and_then(Value::bytes) {
                        let payload = payload.to_vec();
                        self.on_message(&payload, now);
                    }
                }
                _ => {}
            }
        }
    }

    fn on_message(&mut self, payload: &[u8], now: u64) {
        let Some(message) = proto::parse(payload) else {
            return;
        };
        let threads = self.setup.threads;
        if let Message::Records(records) = message {
            // What the matchmaker decided so far (a `paired` from the accept
            // that came just before these records, in the same read) goes to
            // the loops first: a record must never overtake the decision that
            // makes it current, or its loop drops it as stale.
            self.route_decided();
            let mut at = 0;
            let mut n = 0;
            let mut lefts = Vec::new();
            while let Some(len) = records.get(at..).and_then(record_len) {
                // Only records for one of our loops (never one to be
                // forwarded again, nor for a loop we do not have).
                let ours = |r: &&[u8]| record_thread(r).is_some_and(|t| t < threads);
                if let Some(r) = records.get(at..at + len).filter(ours) {
                    if let Some((thread, conn, pair)) = left_target(r) {
                        lefts.push((conn.saturating_mul(threads).saturating_add(thread), pair));
                    }
                    self.to_loops.extend_from_slice(r);
                    n += 1;
                }
                at += len;
            }
            ClusterView::add(&self.view.messages_in, n);
            if !lefts.is_empty() {
                let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
                for (gid, pair) in lefts {
                    mm.cluster_remote_left(gid, pair);
                }
            }
            return;
        }
        if let Message::Probe(_) = message {
            self.probe_seen_ms = now;
            return;
        }
        if let Message::Ban(b) = &message {
            if b.node != self.setup.node {
                let unix_ms = crate::sys::unix_now_s().saturating_mul(1000);
                self.setup.safety.apply_shared_ban(&b.ban, unix_ms);
            }
            return;
        }
        let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Out::new(threads, &mut self.decided);
        match message {
            Message::Offer(o) => mm.cluster_offer(&o, now, &mut out),
            Message::Accept(a) => mm.cluster_answer(true, &a, now, &mut out),
            Message::Reject(a) => mm.cluster_answer(false, &a, now, &mut out),
            Message::Nudge(n) => {
                if let (Some(serial), Some(gid)) =
                    (proto::num(&n.serial), proto::num::<Gid>(&n.gid))
                {
                    mm.cluster_nudge(serial, gid);
                }
            }
            Message::Gone(node) => mm.cluster_node_gone(node, &mut out),
            Message::Sync {
                from,
                answer,
                pairs,
            } => {
                let ended = mm.cluster_sync(from, answer, proto::sync_pairs(pairs), &mut out);
                if ended > 0 {
                    info!(
                        "cluster: {ended} pairs with node {} ended: only this node still \
                         held them after an outage",
                        proto::node_hex(from)
                    );
                }
                ClusterView::add(&self.view.reconciled, ended);
            }
            Message::Records(_) | Message::Probe(_) | Message::Ban(_) => {}
        }
        ClusterView::add(&self.view.pairs, out.pairs);
        mm.cluster_commands(&mut self.commands);
    }
}
