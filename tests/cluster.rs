//! A cluster on Redis (issue 13), healthy: three real `chat` nodes on one
//! real `redis-server`. A thousand clients pair, mostly across nodes, and
//! talk only to their partners, in order; interests and the interest-wait
//! fallback work across nodes; `next` across nodes honours the re-pair
//! rule; `/stats` on every node counts the whole cluster, exactly, and
//! zeros once everyone has left. Also the edges of a node's life: a bad
//! `--redis` URL, a Redis that comes after the node, a node stopped with
//! SIGTERM. Failures are in tests/cluster_faults.rs.
//!
//! Clients tell their partners who they are (`id:N` as a chat message), so
//! a test knows which node each partner is on.

mod common;
use common::cluster::*;
use common::probe::{self, metric};
use common::redis::*;
use common::*;
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_thousand_clients_on_three_nodes_pair_across_nodes_and_talk_only_to_their_partners() {
    raise_nofile();
    let redis = Redis::start();
    let nodes = start_nodes(&redis, &cluster_name("thousand"), 3, &[]);
    let _logs = LogsOnFailure::of(&nodes);
    const N: usize = 1000;
    const MESSAGES: usize = 5;
    let mut clients: Vec<Client> = (0..N)
        .map(|i| Client::connect(nodes[i % 3].addr, "/", i, i % 3))
        .collect();
    for c in clients.iter_mut() {
        c.expect_waiting();
    }
    for c in clients.iter_mut() {
        c.expect_paired();
    }
    for c in clients.iter_mut() {
        for seq in 0..MESSAGES {
            let text = format!("{}:{seq}", c.id);
            c.say(&text);
        }
    }
    let mut partner_of: HashMap<usize, usize> = HashMap::new();
    for c in clients.iter_mut() {
        let mut from = None;
        for seq in 0..MESSAGES {
            let msg = c.ws.recv_json();
            assert_eq!(msg["type"], "message", "client {}: {msg}", c.id);
            let (j, s) = msg["text"].as_str().unwrap().split_once(':').unwrap();
            let j: usize = j.parse().unwrap();
            assert_ne!(j, c.id, "client {} got its own message", c.id);
            assert_eq!(*from.get_or_insert(j), j, "client {}: two senders", c.id);
            assert_eq!(
                s.parse::<usize>().unwrap(),
                seq,
                "client {}: out of order",
                c.id
            );
        }
        partner_of.insert(c.id, from.unwrap());
    }
    let mut across = 0;
    for c in &clients {
        let j = partner_of[&c.id];
        assert_eq!(partner_of[&j], c.id, "pairing is not symmetric");
        let (pair, initiator) = c.pair.clone().unwrap();
        let (their_pair, their_initiator) = clients[j].pair.clone().unwrap();
        assert_eq!(
            pair, their_pair,
            "clients {} and {j}: pair ids differ",
            c.id
        );
        assert_ne!(
            initiator, their_initiator,
            "clients {} and {j}: one initiator",
            c.id
        );
        if clients[j].node != c.node {
            across += 1;
        }
    }
    let pairs = N / 2;
    let across = across / 2;
    eprintln!("{across} of {pairs} pairs span two nodes");
    assert!(across * 2 > pairs, "most pairs should span two nodes");
    // Nothing else arrived anywhere.
    for c in clients.iter_mut().step_by(97) {
        c.expect_silence(Duration::from_millis(50));
    }
    let (mut out, mut inn) = (0, 0);
    for node in &nodes {
        out += metric(node.addr, "chat_cluster_messages_out_total");
        inn += metric(node.addr, "chat_cluster_messages_in_total");
        assert_eq!(metric(node.addr, "chat_cluster_dropped_total"), 0);
        assert_eq!(metric(node.addr, "chat_redis_connected"), 1);
    }
    eprintln!("cross-node messages: {out} out, {inn} in");
    assert!(out >= (across * 2 * MESSAGES) as u64, "{out} out");
    assert_eq!(out, inn, "every cross-node message sent arrived");
    for node in &nodes {
        await_stats(node.addr, &totals(N, 0, N));
    }
    drop(clients);
    for node in &nodes {
        await_stats(node.addr, &totals(0, 0, 0));
    }
}

#[test]
fn interests_match_across_nodes_and_the_fallback_takes_anyone_across_nodes() {
    let redis = Redis::start();
    let nodes = start_nodes(
        &redis,
        &cluster_name("interests"),
        3,
        &["--interest-wait", "1s"],
    );
    let _logs = LogsOnFailure::of(&nodes);
    let (n0, n1, n2) = (nodes[0].addr, nodes[1].addr, nodes[2].addr);
    // A shared tag pairs across nodes, passing over an older open client
    // and an older client with other interests.
    let mut open = Client::queued(n0, "/", 0, 0);
    let mut music = Client::queued(n1, "/?interests=music,rust", 1, 1);
    let t_dogs = Instant::now();
    let mut dogs = Client::queued(n2, "/?interests=dogs", 2, 2);
    let mut rust = Client::queued(n0, "/?interests=rust,cats", 3, 0);
    music.expect_paired();
    rust.expect_paired();
    assert_eq!(music.common, vec!["rust"]);
    assert_eq!(rust.common, vec!["rust"]);
    music.say_id();
    rust.say_id();
    assert_eq!(music.partner_id(), 3);
    assert_eq!(rust.partner_id(), 1);
    // Once its wait is over, `dogs` takes the open client, across nodes.
    dogs.expect_paired();
    open.expect_paired();
    let waited = t_dogs.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "paired after {waited:?}, inside the 1 s interest wait"
    );
    assert!(dogs.common.is_empty(), "{:?}", dogs.common);
    dogs.say_id();
    open.say_id();
    assert_eq!(dogs.partner_id(), 0);
    assert_eq!(open.partner_id(), 2);
    // A newcomer with no interests, after the wait, takes an interested
    // client whose wait is over, on another node.
    let mut late = Client::queued(n1, "/?interests=late", 4, 1);
    let mut plain = Client::connect(n2, "/", 5, 2);
    plain.expect_waiting();
    plain.expect_paired();
    late.expect_paired();
    plain.say_id();
    late.say_id();
    assert_eq!(plain.partner_id(), 4);
    assert_eq!(late.partner_id(), 5);
}

#[test]
fn next_across_nodes_honours_the_re_pair_rule() {
    let redis = Redis::start();
    // A long interest wait: the third client stays queued, taking nobody.
    let nodes = start_nodes(
        &redis,
        &cluster_name("repair"),
        3,
        &["--interest-wait", "60"],
    );
    let _logs = LogsOnFailure::of(&nodes);
    let (mut a, mut b) = pair_up((nodes[0].addr, 0, 0), (nodes[1].addr, 1, 1));
    talk(&mut a, &mut b, 0);
    let third = Client::queued(nodes[2].addr, "/?interests=nobody", 2, 2);
    a.ws.send_json(serde_json::json!({"type": "next"}));
    a.expect_waiting();
    b.expect_left_within("next", WAIT);
    b.ws.send_json(serde_json::json!({"type": "next"}));
    b.expect_waiting();
    // Both queued, on two nodes, with a third client queued on a third:
    // not re-paired.
    a.expect_silence(Duration::from_millis(1500));
    b.expect_silence(Duration::from_millis(100));
    // A newcomer takes the one who waited longest, across nodes.
    let mut d = Client::queued(nodes[2].addr, "/", 3, 2);
    d.expect_paired();
    a.expect_paired();
    d.say_id();
    a.say_id();
    assert_eq!(d.partner_id(), 0);
    assert_eq!(a.partner_id(), 3);
    // `next` again: a and b are both queued, and only with the third one
    // also queued; when it leaves, down to two, a and b may meet again.
    d.ws.send_json(serde_json::json!({"type": "next"}));
    d.expect_waiting();
    a.expect_left_within("next", WAIT);
    // d (no interests) and b are queued: b waited longer, they pair.
    d.expect_paired();
    b.expect_paired();
    d.say_id();
    b.say_id();
    assert_eq!(d.partner_id(), 1);
    assert_eq!(b.partner_id(), 3);
    b.ws.send_json(serde_json::json!({"type": "next"}));
    b.expect_waiting();
    d.expect_left_within("next", WAIT);
    a.ws.send_json(serde_json::json!({"type": "next"}));
    a.expect_waiting();
    // Queued now: third (interests), b, a. Both last talked to d, not to
    // each other: nothing forbids a and b, so they pair.
    a.expect_paired();
    b.expect_paired();
    a.say_id();
    b.say_id();
    assert_eq!(a.partner_id(), 1);
    assert_eq!(b.partner_id(), 0);
    // Now a and b part with `next` while the third is queued: no re-pair
    // until the third leaves; down to two queued, they meet again.
    a.ws.send_json(serde_json::json!({"type": "next"}));
    a.expect_waiting();
    b.expect_left_within("next", WAIT);
    b.ws.send_json(serde_json::json!({"type": "next"}));
    b.expect_waiting();
    a.expect_silence(Duration::from_millis(1500));
    drop(third);
    a.expect_paired();
    b.expect_paired();
    a.say_id();
    b.say_id();
    assert_eq!(a.partner_id(), 1);
}

#[test]
fn stats_count_the_whole_cluster_on_every_node() {
    let redis = Redis::start();
    let nodes = start_nodes(
        &redis,
        &cluster_name("stats"),
        3,
        &["--interest-wait", "60"],
    );
    let _logs = LogsOnFailure::of(&nodes);
    // Two pairs (one across, one on node 2) and three queued clients that
    // take nobody (distinct interests, long wait).
    let (_a, _b) = pair_up((nodes[0].addr, 0, 0), (nodes[1].addr, 1, 1));
    let (_c, _d) = pair_up((nodes[2].addr, 2, 2), (nodes[2].addr, 3, 2));
    let _q: Vec<Client> = (0..3)
        .map(|i| Client::queued(nodes[i].addr, &format!("/?interests=only{i}"), 4 + i, i))
        .collect();
    for node in &nodes {
        await_stats(node.addr, &totals(7, 3, 4));
    }
    // `waiting`'s `online` counts the cluster too.
    let mut e = Client::connect(nodes[1].addr, "/?interests=e", 9, 1);
    let v = e.ws.recv_json();
    assert_eq!(v["type"], "waiting");
    // This node's own count is fresh; the others' are already published.
    assert_eq!(v["online"], 8, "{v}");
}

#[test]
fn a_bad_redis_url_exits_2_naming_it() {
    for bad in [
        "http://127.0.0.1:6379",
        "redis://",
        "redis://127.0.0.1:notaport",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_chat"))
            .args(["--listen", "127.0.0.1:0", "--redis", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains(bad), "{bad}: {err}");
    }
}

#[test]
fn a_node_whose_redis_is_not_there_yet_pairs_locally_then_joins_when_it_comes() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let name = cluster_name("late");
    let first = start_node(&url, &name, &[]);
    let (mut a, mut b) = pair_up((first.addr, 0, 0), (first.addr, 1, 0));
    talk(&mut a, &mut b, 0);
    assert_eq!(metric(first.addr, "chat_redis_connected"), 0);
    let _redis = Redis::start_at(port);
    await_joined(first.addr, 1);
    let second = start_node(&url, &name, &[]);
    let _logs = LogsOnFailure(vec![&first, &second]);
    await_joined(first.addr, 2);
    await_joined(second.addr, 2);
    let (mut c, mut d) = pair_up((first.addr, 2, 0), (second.addr, 3, 1));
    talk(&mut c, &mut d, 0);
    talk(&mut a, &mut b, 1);
}

#[test]
fn a_node_stopped_with_sigterm_tells_partners_on_other_nodes_at_once() {
    let redis = Redis::start();
    let nodes = start_nodes(&redis, &cluster_name("term"), 2, &[]);
    let _logs = LogsOnFailure::of(&nodes);
    let (mut a, mut b) = pair_up((nodes[0].addr, 0, 0), (nodes[1].addr, 1, 1));
    talk(&mut a, &mut b, 0);
    let t0 = Instant::now();
    // SAFETY: kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(nodes[1].pid() as i32, libc::SIGTERM) },
        0
    );
    b.ws.expect_close(1001);
    // Not the node key's expiry (2 to 4 s after a death): a message.
    a.expect_left_within("disconnected", Duration::from_millis(1500));
    eprintln!("partner told {} after SIGTERM", since(t0));
    await_joined(nodes[0].addr, 1);
}

#[test]
fn typing_signals_and_messages_cross_nodes_in_order_and_stale_ones_go_nowhere() {
    let redis = Redis::start();
    let nodes = start_nodes(&redis, &cluster_name("relay"), 2, &[]);
    let _logs = LogsOnFailure::of(&nodes);
    let (mut a, mut b) = pair_up((nodes[0].addr, 0, 0), (nodes[1].addr, 1, 1));
    let pair = a.pair.clone().unwrap().0;
    let typing = r#"{"type":"typing","active":true}"#;
    let offer = format!(
        r#"{{"type":"signal","pair":"{pair}","data":{{ "description" : {{"type":"offer","sdp":"v=0\r\n"}} }}}}"#
    );
    let said = r#"{"type":"message","text":"é😀 across"}"#;
    for _ in 0..3 {
        a.ws.send_text(typing);
        a.ws.send_text(&offer);
        a.ws.send_text(said);
    }
    for _ in 0..3 {
        // Typing and messages are re-encoded by the server; signals are
        // relayed byte for byte.
        assert_eq!(
            b.ws.recv_json(),
            serde_json::json!({"type":"typing","active":true})
        );
        assert_eq!(b.ws.recv_data().text(), offer);
        assert_eq!(
            b.ws.recv_json(),
            serde_json::json!({"type":"message","text":"é😀 across"})
        );
    }
    // A last line, then `next`: the line arrives, then `left`.
    a.say("bye");
    a.ws.send_json(serde_json::json!({"type": "next"}));
    b.expect_message("bye");
    b.expect_left_within("next", WAIT);
    a.expect_waiting();
    // b's late signal for the ended pair goes nowhere; a's next stranger
    // (on b's node) hears only what is meant for it.
    b.ws.send_text(&offer);
    let c = Client::queued(nodes[1].addr, "/", 2, 1);
    let (mut a, mut c) = finish_pair(a, c);
    talk(&mut a, &mut c, 0);
    a.expect_silence(Duration::from_millis(300));
    b.expect_silence(Duration::from_millis(100));
}

#[test]
fn a_block_across_nodes_keeps_the_two_addresses_apart() {
    let redis = Redis::start();
    let nodes = start_nodes(&redis, &cluster_name("block"), 2, &[]);
    let _logs = LogsOnFailure::of(&nodes);
    let (n0, n1) = (nodes[0].addr, nodes[1].addr);
    // a from 127.0.0.2 on node 0, b from 127.0.0.3 on node 1.
    let mut a = Client::connect_from(0, n0, 0, 0);
    a.expect_waiting();
    let mut b = Client::connect_from(1, n1, 1, 1);
    b.expect_waiting();
    let (mut a, mut b) = finish_pair(a, b);
    a.ws.send_json(serde_json::json!({"type": "block"}));
    a.expect_waiting();
    b.expect_left_within("next", WAIT);
    b.ws.send_json(serde_json::json!({"type": "next"}));
    b.expect_waiting();
    // Only the two of them queued, on two nodes: blocked, never paired.
    a.expect_silence(Duration::from_millis(1500));
    b.expect_silence(Duration::from_millis(100));
    // Others take them: c (127.0.0.4, node 1) the older a, d (127.0.0.5,
    // node 0) b.
    let mut c = Client::connect_from(2, n1, 2, 1);
    c.expect_waiting();
    let (_a, _c) = finish_pair(a, c);
    let mut d = Client::connect_from(3, n0, 3, 0);
    d.expect_waiting();
    let (_b, _d) = finish_pair(b, d);
}

/// The stranger's first line can reach a node in the same read as the
/// accept that pairs its client: it must be delivered after `paired`, not
/// dropped. Made to happen: node A (the searcher's) is stopped right after
/// its client is queued; if its join went out, the stranger on node B is
/// paired meanwhile and speaks at once; B publishes the line; then A runs
/// again and reads the accept and the line together.
///
/// A is held stopped for longer than a Redis call may take
/// (`STALL`, over the node's 1 s `TIMEOUT_MS`): the script's reply waits in
/// its socket all that time, and a node that judged the deadline before
/// reading would declare Redis lost, drop that reply and leave the stranger
/// paired with a client that never hears of it (CI saw this once).
#[test]
fn a_first_line_arriving_with_the_accept_is_delivered_after_paired() {
    const STALL: Duration = Duration::from_millis(1500);
    let redis = Redis::start();
    let nodes = start_nodes(&redis, &cluster_name("first"), 2, &[]);
    let _logs = LogsOnFailure::of(&nodes);
    let (a, b) = (&nodes[0], &nodes[1]);
    let reconnects = metric(a.addr, "chat_redis_reconnects_total");
    let mut caught = 0;
    for round in 0..10 {
        let mut y = Client::queued(b.addr, "/", 2 * round + 1, 1);
        let mut x = Client::queued(a.addr, "/", 2 * round, 0);
        let stopped_at = Instant::now();
        let stopped = Stopped::new(a.pid());
        // A's join may not have left before the stop: then nothing is
        // paired until A runs again, and this round proves nothing.
        let early = y.ws.try_recv(Duration::from_millis(1000));
        let Some(f) = early else {
            drop(stopped);
            let _ = finish_pair(x, y);
            continue;
        };
        assert_eq!(f.json()["type"], "paired", "{}", f.text());
        y.pair = Some((f.json()["pair"].as_str().unwrap().to_string(), false));
        let before = metric(b.addr, "chat_cluster_messages_out_total");
        y.say("first");
        assert!(
            probe::wait_until(WAIT, || metric(b.addr, "chat_cluster_messages_out_total")
                > before),
            "B never published the line"
        );
        // The stall itself is the scenario (not a wait for a condition).
        std::thread::sleep(STALL.saturating_sub(stopped_at.elapsed()));
        drop(stopped);
        x.expect_paired();
        let line = x.ws.try_recv(WAIT);
        let line = line.map(|f| f.json());
        assert_eq!(
            line,
            Some(serde_json::json!({"type": "message", "text": "first"})),
            "round {round}: the stranger's first line, which reached node A with the accept, \
             was not delivered after paired"
        );
        caught += 1;
        if caught == 3 {
            break;
        }
    }
    eprintln!("{caught} rounds had the line arrive with the accept");
    assert!(
        caught > 0,
        "no round stopped node A between its join and the accept"
    );
    assert_eq!(
        metric(a.addr, "chat_redis_reconnects_total"),
        reconnects,
        "node A took a stall of {STALL:?} for Redis lost"
    );
}
