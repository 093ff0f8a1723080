//! The matchmaker's cluster mode, deterministic: two nodes' matchmakers,
//! no threads and no Redis; the test plays Redis (answers the commands the
//! way the script would) and carries the offers and answers between them.

use super::{Command, Gid, MatchOut, Matchmaker, Member, Notify};
use crate::chat::peer::Address;
use crate::chat::protocol::LeftReason;
use crate::chat::video::PairId;
use crate::cluster::proto::{self, Message, Offer, OfferFrom, OfferTo};
use crate::cluster::script::{Match, Op, Reply};
use std::net::IpAddr;
use std::sync::Arc;

const A: u64 = 0xa;
const B: u64 = 0xb;
const KEY: u64 = 7;

/// What the matchmaker told the clients, in order.
#[derive(Default)]
struct Log(Vec<String>);

impl MatchOut for Log {
    fn waiting(&mut self, to: Gid, online: usize) {
        self.0.push(format!("waiting {to} {online}"));
    }
    fn paired(&mut self, x: Member, y: Member, _: PairId, x_initiator: bool, _: &[String]) {
        self.0
            .push(format!("paired {} {} {x_initiator}", x.gid, y.gid));
    }
    fn left(&mut self, to: Member, _: PairId, reason: LeftReason) {
        self.0.push(format!("left {} {reason:?}", to.gid));
    }
    fn paired_remote(
        &mut self,
        me: Member,
        (partner, _): (Address, Option<IpAddr>),
        _: PairId,
        initiator: bool,
        common: &[String],
    ) {
        self.0.push(format!(
            "paired_remote {} {:x}:{} {initiator} {common:?}",
            me.gid, partner.node, partner.serial
        ));
    }
    fn left_remote(&mut self, to: Address, _: PairId, reason: LeftReason) {
        self.0.push(format!(
            "left_remote {:x}:{} {reason:?}",
            to.node, to.serial
        ));
    }
    fn is_here(&self, _: Gid) -> bool {
        true
    }
    fn nudge(&mut self, x: Member) {
        self.0.push(format!("nudge {}", x.gid));
    }
}

fn node(id: u64) -> Matchmaker {
    let mut m = Matchmaker::new(5000, 1);
    m.enable_cluster(id, KEY, 1, 100, Notify(Arc::new(|| {})));
    m.cluster_set_up(true, 0, &mut Log::default());
    m
}

fn commands(m: &mut Matchmaker) -> Vec<Command> {
    let mut c = Vec::new();
    assert!(!m.cluster_commands(&mut c));
    c
}

fn only_op(m: &mut Matchmaker) -> Op {
    match commands(m).as_slice() {
        [Command::Op(op)] => op.clone(),
        other => panic!("{other:?}"),
    }
}

/// `y` (of `node`) was claimed by `x`'s script call: the offer it sends.
fn offer(x_node: u64, x_serial: u64, x_gid: usize, y_serial: u64, y_gid: usize) -> Offer {
    Offer {
        pair: "42".to_string(),
        y_init: 1,
        x: OfferFrom {
            node: format!("{x_node:x}"),
            serial: x_serial.to_string(),
            gid: x_gid.to_string(),
            addr: String::new(),
            thread: "0".to_string(),
            conn: x_gid.to_string(),
            tags: "[]".to_string(),
        },
        y: OfferTo {
            serial: y_serial.to_string(),
            gid: y_gid.to_string(),
        },
    }
}

fn matched_y_on(node: u64, serial: u64, gid: usize) -> Reply {
    Reply::Matched(Match {
        counter: 42,
        x_initiator: false,
        node,
        serial,
        gid,
        thread: 0,
        conn: gid,
        addr: None,
        tags: Vec::new(),
    })
}

/// The answer the offer's receiver published.
fn answer(m: &mut Matchmaker) -> (bool, proto::Answer) {
    match commands(m).as_slice() {
        [Command::Publish { node, payload }] => {
            assert_eq!(*node, B);
            match proto::parse(payload) {
                Some(Message::Accept(a)) => (true, a),
                Some(Message::Reject(a)) => (false, a),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
}

/// y waits on A; x arrives on B and its search claims y: A accepts and
/// tells y; B, on the accept, tells x. Returns (a, b, their logs).
fn cross_pair() -> (Matchmaker, Matchmaker, Log, Log) {
    let (mut a, mut b) = (node(A), node(B));
    let (mut la, mut lb) = (Log::default(), Log::default());
    let y_serial = a.connect(0, Vec::new(), None, 0, &mut la);
    let join = only_op(&mut a);
    a.cluster_reply(&join, Reply::Queued(1), 0, &mut la);
    assert!(commands(&mut a).is_empty());
    let x_serial = b.connect(3, Vec::new(), None, 10, &mut lb);
    let join = only_op(&mut b);
    b.cluster_reply(&join, matched_y_on(A, y_serial, 0), 10, &mut lb);
    assert_eq!(lb.0, vec!["waiting 3 1"], "no paired before the accept");
    a.cluster_offer(&offer(B, x_serial, 3, y_serial, 0), 11, &mut la);
    let (accepted, ans) = answer(&mut a);
    assert!(accepted);
    b.cluster_answer(true, &ans, 12, &mut lb);
    (a, b, la, lb)
}

#[test]
fn a_pair_across_nodes_is_told_only_after_the_accept_with_one_initiator() {
    let (a, b, la, lb) = cross_pair();
    assert_eq!(la.0, vec!["waiting 0 1", "paired_remote 0 b:0 true []"]);
    assert_eq!(lb.0, vec!["waiting 3 1", "paired_remote 3 a:0 false []"]);
    assert_eq!(a.counts().chatting, 1);
    assert_eq!(b.counts().chatting, 1);
}

#[test]
fn a_rejected_offer_puts_the_searcher_back_in_line_in_its_place() {
    let (mut a, mut b) = (node(A), node(B));
    let (mut la, mut lb) = (Log::default(), Log::default());
    let y_serial = a.connect(0, Vec::new(), None, 0, &mut la);
    let join = only_op(&mut a);
    a.cluster_reply(&join, Reply::Queued(1), 0, &mut la);
    let x_serial = b.connect(3, Vec::new(), None, 10, &mut lb);
    let join = only_op(&mut b);
    b.cluster_reply(&join, Reply::Queued(5), 10, &mut lb);
    let search = Op::Search {
        node: B,
        serial: x_serial,
        gid: 3,
        open: true,
    };
    b.cluster_reply(&search, matched_y_on(A, y_serial, 0), 11, &mut lb);
    // y left A before the offer arrived.
    a.disconnect(0, 11, &mut la);
    let _leave = commands(&mut a);
    a.cluster_offer(&offer(B, x_serial, 3, y_serial, 0), 12, &mut la);
    let (accepted, ans) = answer(&mut a);
    assert!(!accepted);
    b.cluster_answer(false, &ans, 13, &mut lb);
    match only_op(&mut b) {
        Op::Join(t) => assert_eq!((t.serial, t.keep_seq), (x_serial, Some(5))),
        other => panic!("{other:?}"),
    }
    assert_eq!(lb.0, vec!["waiting 3 1"]);
    assert_eq!(b.counts().waiting, 1);
}

#[test]
fn an_offer_unanswered_for_two_seconds_fails_and_a_late_accept_ends_the_pair() {
    let (mut a, mut b) = (node(A), node(B));
    let (mut la, mut lb) = (Log::default(), Log::default());
    let y_serial = a.connect(0, Vec::new(), None, 0, &mut la);
    let join = only_op(&mut a);
    a.cluster_reply(&join, Reply::Queued(1), 0, &mut la);
    let x_serial = b.connect(3, Vec::new(), None, 10, &mut lb);
    let join = only_op(&mut b);
    b.cluster_reply(&join, matched_y_on(A, y_serial, 0), 10, &mut lb);
    assert_eq!(
        b.cluster_deadline(),
        Some(10 + super::cluster::OFFER_TIMEOUT_MS)
    );
    b.cluster_tick(10 + super::cluster::OFFER_TIMEOUT_MS, &mut lb);
    assert!(matches!(only_op(&mut b), Op::Join(_)), "back in line");
    // A's accept comes late. x waits again, so the accept could still be
    // one that overtook a reply: it is kept, and once no reply claims it
    // within the offer timeout, y is told its stranger is gone.
    a.cluster_offer(&offer(B, x_serial, 3, y_serial, 0), 3000, &mut la);
    let (accepted, ans) = answer(&mut a);
    assert!(accepted);
    b.cluster_answer(true, &ans, 3001, &mut lb);
    assert_eq!(
        b.cluster_deadline(),
        Some(3001 + super::cluster::OFFER_TIMEOUT_MS)
    );
    b.cluster_tick(3001 + super::cluster::OFFER_TIMEOUT_MS, &mut lb);
    assert_eq!(lb.0.last().unwrap(), "left_remote a:0 Disconnected");
    assert_eq!(b.counts().chatting, 0);
}

#[test]
fn cross_node_pairs_outlive_a_lost_redis_until_the_grace_ends() {
    let (mut a, _b, mut la, _lb) = cross_pair();
    a.cluster_set_up(false, 100, &mut la);
    assert_eq!(a.counts().chatting, 1, "still chatting while Redis is gone");
    // Meanwhile this node's own clients pair here.
    a.connect(1, Vec::new(), None, 101, &mut la);
    a.connect(2, Vec::new(), None, 102, &mut la);
    assert_eq!(la.0.last().unwrap(), "paired 2 1 false");
    assert!(commands(&mut a).is_empty(), "nothing for Redis while down");
    a.cluster_grace_over(&mut la);
    assert_eq!(la.0[la.0.len() - 2], "left 0 Disconnected");
    assert_eq!(a.counts().chatting, 2);
    // Back: every queued client is re-joined in line order.
    a.connect(4, Vec::new(), None, 200, &mut la);
    a.connect(5, vec!["z".to_string()], None, 201, &mut la);
    a.cluster_set_up(true, 300, &mut la);
    let joined: Vec<usize> = commands(&mut a)
        .into_iter()
        .map(|c| match c {
            Command::Op(Op::Join(t)) => t.gid,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(joined, vec![4, 5]);
}

#[test]
fn a_dead_node_ends_its_pairs_and_a_departing_one_too() {
    let (mut a, mut b, mut la, mut lb) = cross_pair();
    a.cluster_live(&[A, B], &mut la);
    assert_eq!(a.counts().chatting, 1, "B is alive");
    a.cluster_live(&[A], &mut la);
    let n = la.0.len();
    assert_eq!(
        la.0[n - 2..],
        ["left 0 Disconnected", "left_remote b:0 Disconnected"]
    );
    assert_eq!(a.counts().chatting, 0);
    b.cluster_node_gone(A, &mut lb);
    assert_eq!(lb.0[lb.0.len() - 2], "left 3 Disconnected");
    assert_eq!(b.counts().chatting, 0);
}

#[test]
fn next_across_nodes_tells_the_other_node_and_its_matchmaker_forgets_the_pair() {
    let (mut a, mut b, la, mut lb) = cross_pair();
    b.next(3, 20, &mut lb);
    assert_eq!(lb.0[2], "left_remote a:0 Next");
    assert_eq!(lb.0[3], "waiting 3 1");
    let pair = PairId::new(42, KEY);
    a.cluster_remote_left(0, pair);
    assert_eq!(a.counts().chatting, 0);
    // A same-node match found by the script is delivered by x's loop.
    let _ = commands(&mut b);
    let y = b.connect(6, Vec::new(), None, 30, &mut lb);
    let join = only_op(&mut b);
    b.cluster_reply(&join, matched_y_on(B, 0, 3), 30, &mut lb);
    assert_eq!(lb.0.last().unwrap(), "nudge 6");
    b.retry(6, y, 31, &mut lb);
    assert_eq!(lb.0.last().unwrap(), "paired 6 3 false");
    let _ = la;
}

/// A partner's address on another node costs no more than one on another
/// loop did before the cluster: 32 bytes in every chat session.
#[test]
fn a_peer_is_still_32_bytes() {
    assert_eq!(std::mem::size_of::<crate::chat::peer::Peer>(), 32);
}

#[test]
fn an_accept_that_overtakes_our_own_script_reply_is_kept_for_it() {
    let (mut a, mut b) = (node(A), node(B));
    let (mut la, mut lb) = (Log::default(), Log::default());
    let y_serial = a.connect(0, Vec::new(), None, 0, &mut la);
    let join = only_op(&mut a);
    a.cluster_reply(&join, Reply::Queued(1), 0, &mut la);
    let x_serial = b.connect(3, Vec::new(), None, 10, &mut lb);
    let join = only_op(&mut b);
    a.cluster_offer(&offer(B, x_serial, 3, y_serial, 0), 11, &mut la);
    let (accepted, ans) = answer(&mut a);
    assert!(accepted);
    // B hears the accept before its own join's reply.
    b.cluster_answer(true, &ans, 12, &mut lb);
    assert_eq!(lb.0, vec!["waiting 3 1"]);
    b.cluster_reply(&join, matched_y_on(A, y_serial, 0), 13, &mut lb);
    assert_eq!(lb.0.last().unwrap(), "paired_remote 3 a:0 false []");
    assert_eq!(b.cluster_deadline(), None, "nothing left waiting");
}
