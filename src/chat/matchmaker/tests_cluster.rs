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

/// Two nodes where y (gid 0) waits on A, its ticket queued in Redis, and
/// x (gid 3) has just connected on B: its join is on its way to Redis.
/// (A, B, A's log, B's log, y's serial, x's serial, x's join.)
type Searching = (Matchmaker, Matchmaker, Log, Log, u64, u64, Op);

/// [`Searching`], with `first` done to A before anything else.
fn x_searching_after(first: impl FnOnce(&mut Matchmaker)) -> Searching {
    let (mut a, mut b) = (node(A), node(B));
    first(&mut a);
    let (mut la, mut lb) = (Log::default(), Log::default());
    let y_serial = a.connect(0, Vec::new(), None, 0, &mut la);
    let join = only_op(&mut a);
    a.cluster_reply(&join, Reply::Queued(1), 0, &mut la);
    assert!(commands(&mut a).is_empty());
    let x_serial = b.connect(3, Vec::new(), None, 10, &mut lb);
    let x_join = only_op(&mut b);
    (a, b, la, lb, y_serial, x_serial, x_join)
}

fn x_searching() -> Searching {
    x_searching_after(|_| {})
}

/// y waits on A; x arrives on B and its search claims y: A accepts and
/// tells y; B, on the accept, tells x. Returns (a, b, their logs).
fn cross_pair() -> (Matchmaker, Matchmaker, Log, Log) {
    cross_pair_after(|_| {})
}

/// [`cross_pair`], with `first` done to A before anything else.
fn cross_pair_after(first: impl FnOnce(&mut Matchmaker)) -> (Matchmaker, Matchmaker, Log, Log) {
    let (mut a, mut b, mut la, mut lb, y_serial, x_serial, x_join) = x_searching_after(first);
    b.cluster_reply(&x_join, matched_y_on(A, y_serial, 0), 10, &mut lb);
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
    let (mut a, mut b, mut la, mut lb, y_serial, x_serial, join) = x_searching();
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
    let (mut a, mut b, mut la, mut lb, y_serial, x_serial, join) = x_searching();
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
    let (mut a, mut b, mut la, mut lb, y_serial, x_serial, join) = x_searching();
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

/// A sync message's parts: (from, answer, pairs).
fn sync_of(payload: &[u8]) -> (u64, bool, Vec<PairId>) {
    match proto::parse(payload) {
        Some(Message::Sync {
            from,
            answer,
            pairs,
        }) => (from, answer, proto::sync_pairs(pairs).collect()),
        other => panic!("{other:?}"),
    }
}

/// The one sync published by `m` (other commands are skipped).
fn published_sync(m: &mut Matchmaker, to: u64) -> (u64, bool, Vec<PairId>) {
    let syncs: Vec<_> = commands(m)
        .into_iter()
        .filter_map(|c| match c {
            Command::Publish { node, payload } if payload.first() == Some(&b'S') => {
                assert_eq!(node, to);
                Some(sync_of(&payload))
            }
            _ => None,
        })
        .collect();
    match syncs.as_slice() {
        [one] => one.clone(),
        other => panic!("{other:?}"),
    }
}

/// The request `m` sends `to` when Redis is back.
fn sync_request(m: &mut Matchmaker, to: u64) -> Vec<PairId> {
    match m.cluster_sync_start(&[to]).as_slice() {
        [(node, payload)] => {
            assert_eq!(*node, to);
            let (_, answer, pairs) = sync_of(payload);
            assert!(!answer);
            pairs
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_sync_message_round_trips_and_a_malformed_one_is_ignored() {
    let pairs = [PairId(1), PairId(u64::MAX)];
    let wire = proto::sync(true, 0xab, &pairs);
    assert_eq!(sync_of(&wire), (0xab, true, pairs.to_vec()));
    let empty = proto::sync(false, 0xab, &[]);
    assert_eq!(sync_of(&empty), (0xab, false, Vec::new()));
    assert_eq!(proto::parse(b"S?00ab"), None, "a short node id");
    assert_eq!(proto::parse(b"Sx00000000000000ab"), None, "neither ? nor !");
    let (_, _, cut) = sync_of(&wire[..wire.len() - 3]);
    assert_eq!(cut, vec![PairId(1)], "a partial id is ignored");
}

/// B's script call claimed y on A and A accepted, but B lost Redis before
/// the reply and the accept reached it: y talks to nobody until B is back
/// and lists its pairs with A (none); then y is told `left`.
#[test]
fn a_stranger_whose_searcher_never_heard_of_the_pair_is_told_left_when_its_node_is_back() {
    let (mut a, mut b, mut la, mut lb, y_serial, x_serial, _never_answered) = x_searching();
    a.cluster_offer(&offer(B, x_serial, 3, y_serial, 0), 11, &mut la);
    assert!(answer(&mut a).0);
    assert_eq!(
        la.0.last().unwrap(),
        &format!("paired_remote 0 b:{x_serial} true []")
    );
    b.cluster_set_up(false, 20, &mut lb);
    b.cluster_set_up(true, 30, &mut lb);
    assert_eq!(sync_request(&mut b, A), Vec::new(), "B holds no pair");
    let ended = a.cluster_sync(B, false, std::iter::empty(), &mut la);
    assert_eq!(ended, 1);
    let n = la.0.len();
    assert_eq!(
        la.0[n - 2..],
        [
            "left 0 Disconnected".to_string(),
            format!("left_remote b:{x_serial} Disconnected")
        ]
    );
    assert_eq!(a.counts().chatting, 0);
    assert_eq!(published_sync(&mut a, B), (A, true, Vec::new()));
    assert_eq!(b.cluster_sync(A, true, std::iter::empty(), &mut lb), 0);
    assert_eq!(b.counts().waiting, 1, "x still waits");
}

/// A lost Redis while B's client left the pair: B's `left` never reached
/// A. Back, A lists the pair; B answers without it; A ends it.
#[test]
fn a_pair_ended_on_one_node_during_the_other_nodes_outage_ends_there_when_it_is_back() {
    let (mut a, mut b, mut la, mut lb) = cross_pair();
    let pair = PairId::new(42, KEY);
    a.cluster_set_up(false, 100, &mut la);
    b.next(3, 110, &mut lb);
    let _lost = commands(&mut b);
    a.cluster_set_up(true, 120, &mut la);
    let _rejoins = commands(&mut a);
    assert_eq!(sync_request(&mut a, B), vec![pair]);
    let request = proto::sync(false, A, &[pair]);
    let (_, _, listed) = sync_of(&request);
    assert_eq!(b.cluster_sync(A, false, listed.into_iter(), &mut lb), 0);
    let (from, is_answer, theirs) = published_sync(&mut b, A);
    assert_eq!((from, is_answer, theirs.as_slice()), (B, true, &[][..]));
    assert_eq!(a.counts().chatting, 1);
    assert_eq!(a.cluster_sync(B, true, theirs.into_iter(), &mut la), 1);
    assert_eq!(la.0[la.0.len() - 2], "left 0 Disconnected");
    assert_eq!(a.counts().chatting, 0);
}

/// Pairs both nodes hold go on; a pair made after our request was sent is
/// not in it, so an answer that lacks it does not end it.
#[test]
fn pairs_both_nodes_hold_go_on_and_one_made_after_the_request_is_kept() {
    let (mut a, mut b, mut la, mut lb) = cross_pair();
    let pair = PairId::new(42, KEY);
    assert_eq!(sync_request(&mut a, B), vec![pair]);
    assert_eq!(b.cluster_sync(A, false, [pair].into_iter(), &mut lb), 0);
    let (_, _, theirs) = published_sync(&mut b, A);
    assert_eq!(theirs, vec![pair]);
    assert_eq!(a.cluster_sync(B, true, theirs.into_iter(), &mut la), 0);
    assert_eq!((a.counts().chatting, b.counts().chatting), (1, 1));
    let mut listed = None;
    let (mut a, _b, mut la, _lb) = cross_pair_after(|a| listed = Some(sync_request(a, B)));
    assert_eq!(listed, Some(Vec::new()), "the request went before the pair");
    assert_eq!(a.cluster_sync(B, true, std::iter::empty(), &mut la), 0);
    assert_eq!(a.counts().chatting, 1);
    assert_eq!(
        a.cluster_sync(B, true, std::iter::empty(), &mut la),
        0,
        "an answer nobody asked for ends nothing"
    );
}
