//! Two cluster nodes' engines, no thread and no Redis: the test plays both
//! cluster threads (it carries the records each engine addresses to the
//! other node, and hands the matchmakers their replies, offers and
//! answers) and Redis (it answers the script calls as `match.lua` would).
//! The loops' side of the cluster must hold every rule: `paired` on both
//! sides with one pair id after the accept, relays only to the partner,
//! nothing for an ended pair, `left` across nodes, a dead node's partners
//! told `disconnected`.

use super::*;
use crate::chat::matchmaker::{Command, Matchmaker, Notify};
use crate::cluster::proto::{self, Message, Offer, OfferFrom, OfferTo};
use crate::cluster::records::Out;
use crate::cluster::script::{Match, Op, Reply, Ticket};
use crate::engine::{forwarded, left_target};
use std::sync::Mutex;

const A: u64 = 0xa;
const B: u64 = 0xb;

/// One node: its engine (one loop) and its matchmaker.
struct Node {
    h: Harness,
    mm: Arc<Mutex<Matchmaker>>,
}

impl Node {
    fn new(id: u64) -> Node {
        let safety = crate::safety::SafetyHandle::default();
        let config = Config::default();
        let mut process = Process::new(1, 1000, 5_000, Seed::default(), safety.clone());
        let view = Arc::new(crate::cluster::view::ClusterView::default());
        process.join_cluster(view, |m| {
            m.enable_cluster(id, 77, 1, 1000, Notify(Arc::new(|| {})))
        });
        let process = Arc::new(process);
        let mm = process.matchmaker();
        let mut node = Node {
            h: Harness::threaded_with(config, process, 0, safety),
            mm,
        };
        node.decide(|m, out| m.cluster_set_up(true, 0, out));
        node
    }

    /// Runs `f` on the matchmaker as the cluster thread does, and hands
    /// the records it made for this node's loop to the engine.
    fn decide(&mut self, f: impl FnOnce(&mut Matchmaker, &mut Out<'_>)) -> Vec<u8> {
        let mut records = Vec::new();
        f(&mut self.mm.lock().unwrap(), &mut Out::new(1, &mut records));
        let mut remote = Vec::new();
        let mut at = 0;
        while let Some(len) = records.get(at..).and_then(record_len) {
            let record = &records[at..at + len];
            match forwarded(record) {
                Some(_) => remote.extend_from_slice(record),
                None => self.h.engine.cross_input(record, self.h.now),
            }
            at += len;
        }
        self.h.flush();
        remote
    }

    fn commands(&mut self) -> Vec<Command> {
        let mut c = Vec::new();
        self.mm.lock().unwrap().cluster_commands(&mut c);
        c
    }

    fn join_op(&mut self) -> Ticket {
        match self.commands().as_slice() {
            [Command::Op(Op::Join(t))] => t.clone(),
            other => panic!("{other:?}"),
        }
    }

    /// Records the engine addressed to other nodes: (node, inner record).
    fn outgoing(&mut self) -> Vec<(u64, Vec<u8>)> {
        let out = self.h.engine.cross_output().to_vec();
        self.h.engine.clear_cross_output();
        let mut got = Vec::new();
        let mut at = 0;
        while let Some(len) = out.get(at..).and_then(record_len) {
            let (node, inner) = forwarded(&out[at..at + len]).expect("for another node");
            got.push((node, inner.to_vec()));
            at += len;
        }
        got
    }

    /// A record from another node reaches this one (as the cluster thread
    /// hands it over: the matchmaker hears of a `left` too).
    fn receive(&mut self, record: &[u8]) {
        if let Some((thread, conn, pair)) = left_target(record) {
            self.mm
                .lock()
                .unwrap()
                .cluster_remote_left(conn + thread, pair);
        }
        self.h.engine.cross_input(record, self.h.now);
        self.h.flush();
    }
}

/// a waits on A; b arrives on B and its join claims a; A accepts.
fn pair_across() -> (Node, Node, ConnId, ConnId) {
    let (mut na, mut nb) = (Node::new(A), Node::new(B));
    let a = na.h.open_ws("/");
    assert_eq!(na.h.chat_types(a), ["waiting"]);
    let ta = na.join_op();
    na.decide(|m, out| m.cluster_reply(&Op::Join(ta.clone()), Reply::Queued(1), 1_000, out));
    let b = nb.h.open_ws("/");
    assert_eq!(nb.h.chat_types(b), ["waiting"]);
    let tb = nb.join_op();
    let found = Match {
        counter: 7,
        x_initiator: false,
        node: A,
        serial: ta.serial,
        gid: ta.gid,
        thread: ta.thread,
        conn: ta.conn,
        addr: None,
        tags: Vec::new(),
    };
    nb.decide(|m, out| m.cluster_reply(&Op::Join(tb.clone()), Reply::Matched(found), 1_000, out));
    assert!(nb.h.chat_types(b).is_empty(), "no paired before the accept");
    let offer = Offer {
        pair: "7".to_string(),
        y_init: 1,
        x: OfferFrom {
            node: proto::node_hex(B),
            serial: tb.serial.to_string(),
            gid: tb.gid.to_string(),
            addr: String::new(),
            thread: tb.thread.to_string(),
            conn: tb.conn.to_string(),
            tags: "[]".to_string(),
        },
        y: OfferTo {
            serial: ta.serial.to_string(),
            gid: ta.gid.to_string(),
        },
    };
    na.decide(|m, out| m.cluster_offer(&offer, 1_001, out));
    let answer = match na.commands().as_slice() {
        [Command::Publish { node: B, payload }] => match proto::parse(payload) {
            Some(Message::Accept(a)) => a,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    nb.decide(|m, out| m.cluster_answer(true, &answer, 1_002, out));
    (na, nb, a, b)
}

#[test]
fn clients_of_two_nodes_pair_after_the_accept_and_talk_only_to_each_other() {
    let (mut na, mut nb, a, b) = pair_across();
    let pa = na.h.chat(a);
    let pb = nb.h.chat(b);
    assert_eq!(
        (pa[0]["type"].as_str(), pb[0]["type"].as_str()),
        (Some("paired"), Some("paired"))
    );
    assert_eq!(pa[0]["pair"], pb[0]["pair"], "one pair id on both nodes");
    assert_eq!(
        (pa[0]["initiator"].as_bool(), pb[0]["initiator"].as_bool()),
        (Some(true), Some(false))
    );
    for i in 0..3 {
        na.h.send_json(a, &format!(r#"{{"type":"message","text":"a{i}"}}"#));
    }
    let sent = na.outgoing();
    assert_eq!(sent.len(), 3);
    for (node, record) in &sent {
        assert_eq!(*node, B);
        nb.receive(record);
    }
    let got: Vec<String> = nb.h.chat(b).iter().map(|m| m["text"].to_string()).collect();
    assert_eq!(got, [r#""a0""#, r#""a1""#, r#""a2""#]);
    // b moves on: a hears `next`, A's matchmaker forgets the pair, and a
    // relay of the ended pair that arrives late reaches no one.
    nb.h.send_json(b, r#"{"type":"next"}"#);
    for (node, record) in nb.outgoing() {
        assert_eq!(node, A);
        na.receive(&record);
    }
    let left = na.h.chat(a);
    assert_eq!(
        (left[0]["type"].as_str(), left[0]["reason"].as_str()),
        (Some("left"), Some("next"))
    );
    assert_eq!(na.mm.lock().unwrap().counts().chatting, 0);
    assert_eq!(nb.h.chat_types(b), ["waiting"]);
    nb.receive(&sent[0].1);
    assert!(
        nb.h.chat(b).is_empty(),
        "a relay of an ended pair was delivered"
    );
}

#[test]
fn a_dead_node_ends_its_pairs_with_left_disconnected() {
    let (mut na, mut nb, a, b) = pair_across();
    na.h.chat(a);
    nb.h.chat(b);
    // B is no longer among the live nodes: a hears `disconnected`, and B
    // would be told too (it is gone: the record goes nowhere).
    let to_b = na.decide(|m, out| m.cluster_live(&[A], out));
    assert_eq!(forwarded(&to_b).map(|(node, _)| node), Some(B));
    let left = na.h.chat(a);
    assert_eq!(
        (left[0]["type"].as_str(), left[0]["reason"].as_str()),
        (Some("left"), Some("disconnected"))
    );
    // a talks to no one now.
    na.h.send_json(a, r#"{"type":"message","text":"anyone?"}"#);
    assert!(na.outgoing().is_empty());
    assert_eq!(na.h.chat(a)[0]["code"], "not_paired");
}
