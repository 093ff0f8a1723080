//! The pairing handshake across nodes: the script's replies, offers,
//! accepts and rejects (see the parent module doc), and answers that
//! overtake the reply they answer.

use super::{Command, Delivery, Pending, MAX_EARLY, OFFER_TIMEOUT_MS};
use crate::chat::matchmaker::{Gid, MatchOut, Matchmaker, State};
use crate::chat::peer::Address;
use crate::chat::protocol::LeftReason;
use crate::chat::video::PairId;
use crate::cluster::proto::{self, Answer, Offer};
use crate::cluster::script::{Match, Op, Reply};

impl Matchmaker {
    /// The script answered `op`.
    pub fn cluster_reply(&mut self, op: &Op, reply: Reply, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        let (gid, serial) = match op {
            Op::Join(t) => (t.gid, t.serial),
            Op::Search { serial, gid, .. } => (*gid, *serial),
            _ => return,
        };
        let x_ok = self.valid(gid, serial, State::Queued);
        match reply {
            Reply::Queued(seq) => {
                if x_ok {
                    if let Some(c) = self.client_mut(gid) {
                        c.rseq = Some(seq);
                    }
                } else if let Some(node) = self.cluster.as_ref().map(|c| c.node) {
                    // Gone (or paired here) while the call was on its way.
                    self.push(Command::Op(Op::Leave { node, serial }));
                }
            }
            Reply::Matched(m) => self.matched(gid, serial, x_ok, m, now_ms, out),
            Reply::Gone | Reply::Done | Reply::Nodes(_) => {}
        }
        self.finish_turn(now_ms, out);
    }

    fn matched(
        &mut self,
        gid: Gid,
        serial: u64,
        x_ok: bool,
        m: Match,
        now_ms: u64,
        out: &mut dyn MatchOut,
    ) {
        let Some((node, key)) = self.cluster.as_ref().map(|c| (c.node, c.key)) else {
            return;
        };
        let pair = PairId::new(m.counter, key);
        if m.node == node {
            let y_ok = self.valid(m.gid, m.serial, State::Queued);
            match (x_ok, y_ok) {
                (true, true) => {
                    let (Some(xc), Some(yc)) = (self.client(gid), self.client(m.gid)) else {
                        return;
                    };
                    let common = crate::chat::matchmaker::common_tags(&xc.tags, &yc.tags);
                    let (xm, ym) = (self.member_of(gid, xc), self.member_of(m.gid, yc));
                    self.unindex(gid);
                    self.unindex(m.gid);
                    for (me, other) in [(xm, ym), (ym, xm)] {
                        if let Some(c) = self.client_mut(me.gid) {
                            c.state = State::Chatting(other.gid);
                            c.prev = Some((0, other.serial));
                            c.pair = Some(pair);
                            c.rseq = None;
                        }
                    }
                    self.chatting += 2;
                    self.next_pair += 1;
                    if let Some(c) = &mut self.cluster {
                        c.deliveries.insert(
                            gid,
                            Delivery {
                                x: xm,
                                y: ym,
                                pair,
                                x_first: m.x_initiator,
                                common,
                            },
                        );
                    }
                    out.nudge(xm);
                }
                (true, false) => self.requeue_join(gid),
                (false, true) => self.requeue_join(m.gid),
                (false, false) => {}
            }
            return;
        }
        if !x_ok {
            // The offer's accept will find x gone and end the pair.
            return;
        }
        self.unindex(gid);
        if let Some(c) = self.client_mut(gid) {
            c.state = State::Offered;
        }
        let counter = m.counter;
        if let Some(c) = &mut self.cluster {
            c.offers.insert(
                gid,
                Pending {
                    serial,
                    deadline_ms: now_ms.saturating_add(OFFER_TIMEOUT_MS),
                    counter,
                    x_first: m.x_initiator,
                    y: m,
                },
            );
        }
        if let Some((accept, a)) = self.take_early(gid, serial, counter) {
            self.cluster_answer(accept, &a, now_ms, out);
        }
    }

    /// Another node's script claimed our client `y` for its `x`.
    pub fn cluster_offer(&mut self, o: &Offer, now_ms: u64, out: &mut dyn MatchOut) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some((node, key)) = self.cluster.as_ref().map(|c| (c.node, c.key)) else {
            return;
        };
        let Some(counter) = proto::num::<u64>(&o.pair) else {
            return;
        };
        let (Some(y_serial), Some(y_gid)) =
            (proto::num::<u64>(&o.y.serial), proto::num::<Gid>(&o.y.gid))
        else {
            return;
        };
        let x_node = u64::from_str_radix(&o.x.node, 16).unwrap_or(0);
        let x = Address::on(
            x_node,
            proto::num(&o.x.thread).unwrap_or(0),
            proto::num(&o.x.conn).unwrap_or(0),
            proto::num(&o.x.serial).unwrap_or(0),
        );
        let x_gid: Gid = proto::num(&o.x.gid).unwrap_or(0);
        let threads = self.threads();
        let accept = x_node != 0 && self.cluster_up() && self.valid(y_gid, y_serial, State::Queued);
        let answer = Answer {
            pair: counter,
            x_serial: x.serial,
            x_gid,
            node,
            y_serial,
            y_thread: y_gid % threads,
            y_conn: y_gid / threads,
        };
        self.push(Command::Publish {
            node: x_node,
            payload: proto::answer(accept, &answer),
        });
        if !accept {
            return;
        }
        let pair = PairId::new(counter, key);
        let x_tags: Vec<String> = serde_json::from_str(&o.x.tags).unwrap_or_default();
        let Some(yc) = self.client(y_gid) else {
            return;
        };
        let common = crate::chat::matchmaker::common_tags(&yc.tags, &x_tags);
        let ym = self.member_of(y_gid, yc);
        self.unindex(y_gid);
        if let Some(c) = self.client_mut(y_gid) {
            c.state = State::Remote(x);
            c.prev = Some((x.node, x.serial));
            c.pair = Some(pair);
            c.rseq = None;
        }
        self.partner_on(x.node);
        self.chatting += 1;
        self.next_pair += 1;
        out.paired_remote(
            ym,
            (x, proto::addr(&o.x.addr)),
            pair,
            o.y_init == 1,
            &common,
        );
        self.finish_turn(now_ms, out);
    }

    /// The claimed stranger's node answered our client `x`'s offer.
    pub fn cluster_answer(
        &mut self,
        accept: bool,
        a: &Answer,
        now_ms: u64,
        out: &mut dyn MatchOut,
    ) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some(key) = self.cluster.as_ref().map(|c| c.key) else {
            return;
        };
        let pair = PairId::new(a.pair, key);
        let y = Address::on(a.node, a.y_thread, a.y_conn, a.y_serial);
        let pending = match &mut self.cluster {
            Some(c) => match c.offers.get(&a.x_gid) {
                Some(p) if p.serial == a.x_serial && p.counter == a.pair => {
                    c.offers.remove(&a.x_gid)
                }
                _ => None,
            },
            None => None,
        };
        let Some(p) = pending.filter(|_| self.valid(a.x_gid, a.x_serial, State::Offered)) else {
            if self.valid(a.x_gid, a.x_serial, State::Queued) {
                // The answer overtook our own script's reply (they come on
                // two connections): kept until that reply names the pair.
                self.keep_early(accept, a, now_ms, out);
                return;
            }
            if accept {
                // x left (or timed out) meanwhile: y hears it at once.
                out.left_remote(y, pair, LeftReason::Disconnected);
            }
            return;
        };
        if !accept {
            self.back_in_line(a.x_gid, out);
            self.finish_turn(now_ms, out);
            return;
        }
        let Some(xc) = self.client(a.x_gid) else {
            return;
        };
        let common = crate::chat::matchmaker::common_tags(&xc.tags, &p.y.tags);
        let xm = self.member_of(a.x_gid, xc);
        if let Some(c) = self.client_mut(a.x_gid) {
            c.state = State::Remote(y);
            c.prev = Some((y.node, y.serial));
            c.pair = Some(pair);
            c.rseq = None;
        }
        self.partner_on(y.node);
        self.chatting += 1;
        self.next_pair += 1;
        out.paired_remote(xm, (y, p.y.addr), pair, p.x_first, &common);
    }

    /// Keeps an answer that came before the reply it answers (bounded by
    /// [`MAX_EARLY`]; the oldest is given up first).
    fn keep_early(&mut self, accept: bool, a: &Answer, now_ms: u64, out: &mut dyn MatchOut) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if c.early.len() >= MAX_EARLY {
            let (old_accept, old, _) = c.early.remove(0);
            let key = c.key;
            if old_accept {
                let y = Address::on(old.node, old.y_thread, old.y_conn, old.y_serial);
                out.left_remote(y, PairId::new(old.pair, key), LeftReason::Disconnected);
            }
        }
        c.early
            .push((accept, a.clone(), now_ms.saturating_add(OFFER_TIMEOUT_MS)));
    }

    /// The answer kept for `gid`'s pair `counter`, if it came early.
    fn take_early(&mut self, gid: Gid, serial: u64, counter: u64) -> Option<(bool, Answer)> {
        let c = self.cluster.as_mut()?;
        let at = c
            .early
            .iter()
            .position(|(_, a, _)| a.x_gid == gid && a.x_serial == serial && a.pair == counter)?;
        let (accept, a, _) = c.early.remove(at);
        Some((accept, a))
    }
}
