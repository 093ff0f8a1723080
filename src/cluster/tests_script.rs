//! `match.lua` against a real redis-server: every rule of the partner
//! search, the offer published with the claim, dead nodes' tickets skipped
//! and deleted, and the heartbeat.

use super::proto::{self, node_hex, Message};
use super::resp::Value;
use super::script::{self, Match, Op, Reply, Ticket};
use super::testing::{Client, Redis};
use crate::chat::Counts;

const A: u64 = 0xa;
const B: u64 = 0xb;
const P: &[u8] = b"{t}";

struct Script {
    c: Client,
    sha: String,
}

impl Script {
    fn load(redis: &Redis) -> Script {
        let mut c = redis.client();
        let sha = c.cmd(&[b"SCRIPT", b"LOAD", script::SOURCE.as_bytes()]);
        assert_eq!(sha.bytes().unwrap(), script::sha1_hex().as_bytes());
        Script {
            c,
            sha: script::sha1_hex(),
        }
    }

    fn run(&mut self, op: Op) -> Reply {
        let args = op.args();
        let mut all: Vec<&[u8]> = vec![b"EVALSHA", self.sha.as_bytes(), b"1", P];
        all.extend(args.iter().map(Vec::as_slice));
        let reply = self.c.cmd(&all);
        op.parse(&reply)
            .unwrap_or_else(|| panic!("{op:?} → {reply:?}"))
    }

    fn alive(&mut self, node: u64) {
        self.run(Op::Beat {
            node,
            counts: Counts::default(),
        });
    }

    fn card(&mut self, key: &str) -> i64 {
        self.c.cmd(&[b"ZCARD", key.as_bytes()]).int().unwrap()
    }
}

fn ticket(node: u64, serial: u64, tags: &[&str], open: bool) -> Ticket {
    Ticket {
        node,
        serial,
        gid: serial as usize,
        thread: 0,
        conn: serial as usize,
        prev: None,
        addr: None,
        open,
        keep_seq: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// A subscriber on `node`'s channel.
fn subscribe(redis: &Redis, node: u64) -> Client {
    let mut c = redis.client();
    let channel = format!("{{t}}:n:{}", node_hex(node));
    let ok = c.cmd(&[b"SUBSCRIBE", channel.as_bytes()]);
    assert_eq!(ok.array().unwrap().len(), 3);
    c
}

fn next_message(sub: &mut Client) -> Vec<u8> {
    let v = sub.read();
    let items = v.array().unwrap();
    assert_eq!(items[0].bytes().unwrap(), b"message");
    items[2].bytes().unwrap().to_vec()
}

fn matched(r: Reply) -> Match {
    match r {
        Reply::Matched(m) => m,
        other => panic!("not matched: {other:?}"),
    }
}

#[test]
fn longest_waiting_sharing_a_tag_then_open_and_offers_go_with_the_claim() {
    let redis = Redis::start();
    let mut s = Script::load(&redis);
    s.alive(A);
    s.alive(B);
    let mut sub_a = subscribe(&redis, A);
    assert!(matches!(
        s.run(Op::Join(ticket(A, 1, &["music"], false))),
        Reply::Queued(_)
    ));
    assert!(matches!(
        s.run(Op::Join(ticket(B, 2, &["rust"], false))),
        Reply::Queued(_)
    ));
    assert!(matches!(
        s.run(Op::Join(ticket(A, 3, &[], true))),
        Reply::Queued(_)
    ));
    // Shares tags with 1 and 2: the longest-waiting of them.
    let m = matched(s.run(Op::Join(ticket(B, 4, &["music", "rust"], false))));
    assert_eq!((m.node, m.serial, m.x_initiator), (A, 1, false));
    assert_eq!(m.tags, vec!["music".to_string()]);
    // The offer reached 1's node in the same step.
    let offer = next_message(&mut sub_a);
    let Some(Message::Offer(o)) = proto::parse(&offer) else {
        panic!("{offer:?}")
    };
    assert_eq!((o.pair, o.y_init), (m.counter.to_string(), 1));
    assert_eq!((o.x.serial.as_str(), o.y.serial.as_str()), ("4", "1"));
    assert_eq!(o.x.tags, r#"["music","rust"]"#);
    assert_eq!(s.card("{t}:q"), 2);
    // 2's interest wait ends: it takes anyone, 3 is the open one; 2 was
    // queued first, so it is the initiator. Both tickets are gone.
    let m = matched(s.run(Op::Search {
        node: B,
        serial: 2,
        gid: 2,
        open: true,
    }));
    assert_eq!((m.node, m.serial, m.x_initiator), (A, 3, true));
    assert_eq!(s.card("{t}:q"), 0);
    assert_eq!(s.card("{t}:open"), 0);
    assert_eq!(s.card("{t}:t:rust"), 0);
    let Some(Message::Offer(o)) = proto::parse(&next_message(&mut sub_a)) else {
        panic!()
    };
    assert_eq!((o.y.serial.as_str(), o.y_init), ("3", 0));
    // A same-node match publishes nothing: the next message is ours.
    assert!(matches!(
        s.run(Op::Join(ticket(A, 5, &[], true))),
        Reply::Queued(_)
    ));
    let m = matched(s.run(Op::Join(ticket(A, 6, &[], true))));
    assert_eq!(m.serial, 5);
    s.c.cmd(&[b"PUBLISH", b"{t}:n:000000000000000a", b"Pmarker"]);
    assert_eq!(next_message(&mut sub_a), b"Pmarker");
}

#[test]
fn the_re_pair_rule_holds_with_three_and_a_leave_down_to_two_nudges() {
    let redis = Redis::start();
    let mut s = Script::load(&redis);
    s.alive(A);
    s.alive(B);
    let mut sub_b = subscribe(&redis, B);
    let mut q = ticket(B, 1, &[], true);
    q.prev = Some((A, 2));
    assert!(matches!(s.run(Op::Join(q)), Reply::Queued(_)));
    assert!(matches!(
        s.run(Op::Join(ticket(B, 3, &["z"], false))),
        Reply::Queued(_)
    ));
    // p's previous stranger is q and q's is p; three counting p: skipped.
    let mut p = ticket(A, 2, &[], true);
    p.prev = Some((B, 1));
    assert!(matches!(s.run(Op::Join(p)), Reply::Queued(_)));
    // 3 leaves: two remain, the older (q) is nudged on its node.
    assert_eq!(s.run(Op::Leave { node: B, serial: 3 }), Reply::Done);
    let Some(Message::Nudge(n)) = proto::parse(&next_message(&mut sub_b)) else {
        panic!()
    };
    assert_eq!(n.serial, "1");
    let m = matched(s.run(Op::Search {
        node: B,
        serial: 1,
        gid: 1,
        open: false,
    }));
    assert_eq!((m.node, m.serial, m.x_initiator), (A, 2, true));
    assert_eq!(
        s.run(Op::Search {
            node: B,
            serial: 1,
            gid: 1,
            open: false
        }),
        Reply::Gone
    );
}

#[test]
fn dead_nodes_tickets_are_skipped_and_deleted_and_blocks_are_honoured() {
    let redis = Redis::start();
    let mut s = Script::load(&redis);
    s.alive(A);
    const DEAD: u64 = 0xdead;
    assert!(matches!(
        s.run(Op::Join(ticket(DEAD, 1, &[], true))),
        Reply::Queued(_)
    ));
    assert_eq!(s.card("{t}:q"), 1);
    assert!(matches!(
        s.run(Op::Join(ticket(A, 2, &[], true))),
        Reply::Queued(_)
    ));
    assert_eq!(s.card("{t}:q"), 1, "the dead ticket is gone");
    let exists = s.c.cmd(&[b"EXISTS", b"{t}:tk:000000000000dead:1"]);
    assert_eq!(exists, Value::Int(0));
    // A block between two addresses keeps them apart; a third pairs.
    s.c.cmd(&[b"SET", b"{t}:blk:10.0.0.1|10.0.0.2", b"1", b"PX", b"60000"]);
    let mut x = ticket(A, 3, &[], true);
    x.addr = Some("10.0.0.2".parse().unwrap());
    s.run(Op::Leave { node: A, serial: 2 });
    let mut y = ticket(A, 4, &[], true);
    y.addr = Some("10.0.0.1".parse().unwrap());
    assert!(matches!(s.run(Op::Join(y)), Reply::Queued(_)));
    assert!(matches!(s.run(Op::Join(x)), Reply::Queued(_)));
    let m = matched(s.run(Op::Join(ticket(A, 5, &[], true))));
    assert_eq!(m.serial, 4);
    assert_eq!(m.addr, Some("10.0.0.1".parse().unwrap()));
}

#[test]
fn the_heartbeat_lists_live_nodes_and_forgets_the_dead() {
    let redis = Redis::start();
    let mut s = Script::load(&redis);
    let counts = Counts {
        online: 3,
        waiting: 1,
        chatting: 2,
    };
    s.run(Op::Beat { node: B, counts });
    s.c.cmd(&[b"SET", b"{t}:node:000000000000000c", b"1 1 0", b"PX", b"1"]);
    s.c.cmd(&[b"SADD", b"{t}:nodes", b"000000000000000c"]);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let Reply::Nodes(mut nodes) = s.run(Op::Beat {
        node: A,
        counts: Counts::default(),
    }) else {
        panic!()
    };
    nodes.sort_by_key(|n| n.0);
    assert_eq!(nodes, vec![(A, Counts::default()), (B, counts)]);
    let members = s.c.cmd(&[b"SCARD", b"{t}:nodes"]);
    assert_eq!(members, Value::Int(2));
}

#[test]
fn a_match_that_leaves_two_previous_strangers_queued_nudges_the_older() {
    let redis = Redis::start();
    let mut s = Script::load(&redis);
    s.alive(A);
    let mut sub_a = subscribe(&redis, A);
    let mut q = ticket(A, 1, &[], true);
    q.prev = Some((A, 2));
    assert!(matches!(s.run(Op::Join(q)), Reply::Queued(_)));
    assert!(matches!(
        s.run(Op::Join(ticket(A, 3, &["z"], false))),
        Reply::Queued(_)
    ));
    let mut p = ticket(A, 2, &[], true);
    p.prev = Some((A, 1));
    assert!(matches!(s.run(Op::Join(p)), Reply::Queued(_)));
    // A newcomer takes 3: 1 and 2 are left, the older one is nudged.
    let m = matched(s.run(Op::Join(ticket(A, 4, &["z"], false))));
    assert_eq!(m.serial, 3);
    let Some(Message::Nudge(n)) = proto::parse(&next_message(&mut sub_a)) else {
        panic!()
    };
    assert_eq!(n.serial, "1");
}

#[test]
fn the_search_pages_past_many_dead_tickets_and_deletes_them() {
    let redis = Redis::start();
    let mut s = Script::load(&redis);
    s.alive(A);
    const DEAD: u64 = 0xdead;
    // 150 tickets of a node whose key is gone, ahead in line.
    for serial in 0..150u64 {
        let dead = node_hex(DEAD);
        let id = format!("{dead}:{serial}");
        let tk = format!("{{t}}:tk:{id}");
        let seq = (serial + 1).to_string();
        let fields: [&[u8]; 10] = [
            b"HSET",
            tk.as_bytes(),
            b"node",
            dead.as_bytes(),
            b"serial",
            seq.as_bytes(),
            b"tags",
            br#"["t"]"#,
            b"seq",
            seq.as_bytes(),
        ];
        s.c.cmd(&fields);
        s.c.cmd(&[b"ZADD", b"{t}:q", seq.as_bytes(), id.as_bytes()]);
        s.c.cmd(&[b"ZADD", b"{t}:t:t", seq.as_bytes(), id.as_bytes()]);
    }
    s.c.cmd(&[b"SET", b"{t}:seq", b"1000"]);
    assert_eq!(s.card("{t}:t:t"), 150);
    assert!(matches!(
        s.run(Op::Join(ticket(A, 500, &["t"], false))),
        Reply::Queued(_)
    ));
    let m = matched(s.run(Op::Join(ticket(A, 501, &["t"], false))));
    assert_eq!(
        m.serial, 500,
        "past 150 dead tickets (pages of 4, then 100)"
    );
    assert_eq!(s.card("{t}:q"), 0, "the dead are deleted on the way");
    assert_eq!(s.card("{t}:t:t"), 0);
}
