//! `--threads 4` on the real binary (on a machine with fewer cores, too):
//! pairing across loops, relays that reach only the partner and in order,
//! `next` storms, `/stats` after everyone leaves, SIGTERM on every loop,
//! and one flooding client that does not starve the other loops.

mod common;
use common::probe::{metric, open_connections, stats, wait_until};
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// No idle pings in the middle of a long test.
const THREADS: &[&str] = &["--threads", "4", "--idle-timeout", "600"];

fn join(server: &ServerProcess) -> Ws {
    Ws::connect(server.addr, "/")
}

/// `chat_loop_open_connections{loop="i"}` for every loop.
fn per_loop(server: &ServerProcess) -> Vec<u64> {
    let body = String::from_utf8(http_get(server.addr, "/metrics").body).unwrap();
    body.lines()
        .filter_map(|l| l.strip_prefix("chat_loop_open_connections{loop=\""))
        .map(|l| l.split_once("\"} ").unwrap().1.parse().unwrap())
        .collect()
}

#[test]
fn two_thousand_clients_pair_across_loops_and_talk_only_to_their_partners() {
    raise_nofile();
    let server = ServerProcess::start(THREADS);
    const N: usize = 2000;
    const MESSAGES: usize = 5;
    let mut clients: Vec<Ws> = (0..N).map(|_| join(&server)).collect();
    for (i, ws) in clients.iter_mut().enumerate() {
        assert_eq!(ws.recv_json()["type"], "waiting", "client {i}");
        assert_eq!(ws.recv_json()["type"], "paired", "client {i}");
    }
    let loops = per_loop(&server);
    eprintln!("connections per loop: {loops:?}");
    assert_eq!(loops.len(), 4);
    assert!(loops.iter().all(|&n| n > 0), "{loops:?}");
    for (i, ws) in clients.iter_mut().enumerate() {
        for seq in 0..MESSAGES {
            ws.send_json(json!({"type":"message","text":format!("{i}:{seq}")}));
        }
    }
    let mut partner_of: HashMap<usize, usize> = HashMap::new();
    for (i, ws) in clients.iter_mut().enumerate() {
        let mut from = None;
        for seq in 0..MESSAGES {
            let msg = ws.recv_json();
            assert_eq!(msg["type"], "message", "{msg}");
            let (j, s) = msg["text"].as_str().unwrap().split_once(':').unwrap();
            let j: usize = j.parse().unwrap();
            assert_ne!(j, i, "a client got its own message");
            assert_eq!(*from.get_or_insert(j), j, "messages from two senders");
            assert_eq!(s.parse::<usize>().unwrap(), seq, "out of order");
        }
        partner_of.insert(i, from.unwrap());
    }
    for (&i, &j) in &partner_of {
        assert_eq!(partner_of[&j], i, "pairing is not symmetric");
    }
    // Nothing else arrived anywhere.
    for (i, ws) in clients.iter_mut().enumerate().step_by(97) {
        assert!(
            ws.try_recv(Duration::from_millis(50)).is_none(),
            "client {i}"
        );
    }
    let relayed = metric(server.addr, "chat_messages_relayed_total");
    let crossed = metric(server.addr, "chat_cross_thread_relays_total");
    eprintln!("{crossed} of {relayed} relays crossed loops");
    assert_eq!(relayed, (N * MESSAGES) as u64);
    assert!(crossed * 2 > relayed, "most pairs should span two loops");
    assert_eq!(
        stats(server.addr),
        json!({"online":N,"waiting":0,"chatting":N})
    );
    drop(clients);
    let gone = json!({"online":0,"waiting":0,"chatting":0});
    assert!(wait_until(WAIT, || stats(server.addr) == gone));
    assert!(wait_until(WAIT, || open_connections(server.addr) == 1));
    assert_eq!(stats(server.addr), gone);
}

/// What a client last heard about its pairing ("waiting", "paired" or
/// "left"), checking the order of what it hears: it sends a marker (an
/// unknown type, answered `error` after everything it sent before), reads
/// up to the answer, then whatever other loops still had on the way.
fn settle(ws: &mut Ws, last: &mut String) {
    ws.send_json(json!({"type":"marker"}));
    let mut marked = false;
    loop {
        let wait = if marked { 30 } else { 10_000 };
        let Some(f) = ws.try_recv(Duration::from_millis(wait)) else {
            assert!(marked, "no answer to the marker");
            return;
        };
        let v: Value = f.json();
        let t = v["type"].as_str().unwrap().to_string();
        match (last.as_str(), t.as_str()) {
            (_, "error") => {
                assert_eq!(v["code"], "unknown_type", "{v}");
                marked = true;
                continue;
            }
            // `paired` only ever follows `waiting`.
            (prev, "paired") => assert_eq!(prev, "waiting", "{v}"),
            // `left` only ends a pair.
            (prev, "left") => assert_eq!(prev, "paired", "{v}"),
            (_, "waiting") => {}
            _ => panic!("unexpected {v}"),
        }
        *last = t;
    }
}

#[test]
fn next_storms_across_loops_keep_every_rule() {
    let server = ServerProcess::start(THREADS);
    const N: usize = 200;
    const ROUNDS: usize = 5;
    let mut clients: Vec<Ws> = (0..N).map(|_| join(&server)).collect();
    let mut last: Vec<String> = vec![String::new(); N];
    for (ws, last) in clients.iter_mut().zip(&mut last) {
        assert_eq!(ws.recv_json()["type"], "waiting");
        *last = "waiting".into();
    }
    for _ in 0..ROUNDS {
        for ws in clients.iter_mut() {
            ws.send_json(json!({"type":"next"}));
        }
    }
    for (ws, last) in clients.iter_mut().zip(&mut last) {
        settle(ws, last);
    }
    // Every client that was left idle asks again, so that in the end the
    // queue holds at most one client.
    for (ws, last) in clients.iter_mut().zip(&mut last) {
        if last == "left" {
            ws.send_json(json!({"type":"next"}));
        }
    }
    for (ws, last) in clients.iter_mut().zip(&mut last) {
        settle(ws, last);
    }
    let count = |s: &str| last.iter().filter(|l| *l == s).count();
    let (waiting, chatting, idle) = (count("waiting"), count("paired"), count("left"));
    eprintln!("after the storm: {waiting} waiting, {chatting} chatting, {idle} idle");
    assert_eq!(
        stats(server.addr),
        json!({"online":N,"waiting":waiting,"chatting":chatting})
    );
    assert!(
        waiting <= 1,
        "{waiting} clients wait while others could be paired"
    );
    // Every pair still talks, to its partner only.
    for (i, ws) in clients.iter_mut().enumerate() {
        if last[i] == "paired" {
            ws.send_json(json!({"type":"message","text":i.to_string()}));
        }
    }
    let mut partner_of = HashMap::new();
    for (i, ws) in clients.iter_mut().enumerate() {
        if last[i] == "paired" {
            let v = ws.recv_json();
            assert_eq!(v["type"], "message", "{v}");
            partner_of.insert(i, v["text"].as_str().unwrap().parse::<usize>().unwrap());
        }
    }
    for (&i, &j) in &partner_of {
        assert_ne!(i, j);
        assert_eq!(partner_of.get(&j), Some(&i), "pairing is not symmetric");
    }
}

#[test]
fn sigterm_closes_sessions_on_every_loop_with_1001_and_exits_0() {
    let mut server = ServerProcess::start(THREADS);
    let mut sessions: Vec<Ws> = Vec::new();
    for i in 0..200 {
        let path = if i % 2 == 0 { "/echo" } else { "/" };
        sessions.push(Ws::connect(server.addr, path));
    }
    assert!(wait_until(WAIT, || open_connections(server.addr) == 201));
    let loops = per_loop(&server);
    eprintln!("connections per loop: {loops:?}");
    assert!(loops.iter().all(|&n| n > 0), "{loops:?}");
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) }, 0);
    for (i, ws) in sessions.iter_mut().enumerate() {
        let f = loop {
            let f = ws.recv_data();
            if f.opcode == 8 {
                break f;
            }
            assert_eq!(f.opcode, 1, "session {i}: {f:?}");
        };
        assert_eq!(f.close_code(), Some(1001), "session {i}");
    }
    for ws in &mut sessions {
        ws.send_frame(true, 8, &1001u16.to_be_bytes());
    }
    assert_eq!(server.wait_exit(Duration::from_secs(7)), Some(0));
    assert!(
        sent.elapsed() < Duration::from_secs(6),
        "{:?}",
        sent.elapsed()
    );
}

#[test]
fn a_flooding_client_does_not_starve_the_other_loops() {
    let server = ServerProcess::start(THREADS);
    // The flood: 64 KiB echo messages, as fast as the server takes them,
    // read back by a second thread so that the connection never stalls.
    let mut flooder = connect(server.addr);
    write_upgrade(&mut flooder, "/echo");
    let mut reader = flooder.try_clone().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drain = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            use std::io::Read;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
            total
        })
    };
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let frame = frame_bytes(true, 2, &vec![7u8; 60_000], Some([1, 2, 3, 4]));
            let mut sent = 0u64;
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                if flooder.write_all(&frame).is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        })
    };
    // Meanwhile, pairs everywhere ping-pong and every message arrives.
    let mut pairs: Vec<(Ws, Ws)> = (0..20).map(|_| chat_pair(server.addr)).collect();
    for round in 0..50 {
        for (a, b) in pairs.iter_mut() {
            a.send_json(json!({"type":"message","text":format!("a{round}")}));
            b.send_json(json!({"type":"message","text":format!("b{round}")}));
        }
        for (a, b) in pairs.iter_mut() {
            assert_eq!(b.recv_json()["text"], format!("a{round}"));
            assert_eq!(a.recv_json()["text"], format!("b{round}"));
        }
        // Under the rate limit (10/s, bursts of 20).
        if round % 15 == 14 {
            std::thread::sleep(Duration::from_millis(1600));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().unwrap();
    eprintln!("flooder sent {sent} messages of 60 KB meanwhile");
    assert!(sent > 10, "the flood never ran");
    drop(drain);
}

/// Sends a WebSocket upgrade for `path` and reads the 101 head.
fn write_upgrade(s: &mut std::net::TcpStream, path: &str) {
    use std::io::{Read, Write};
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
}
