//! Chat roulette over real sockets: the whole "Life of a session" with
//! several clients, bad input, and a thousand clients at once.

mod common;
use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

fn join(server: &ServerProcess) -> Ws {
    Ws::connect(server.addr, "/")
}

/// The next message is `want`. For `paired`, the video fields (`pair`: 16
/// lowercase hex; `initiator`: a boolean; no `ice` without --ice-server)
/// are checked for shape and left out of the comparison: tests/video.rs
/// checks their values.
fn expect(ws: &mut Ws, want: serde_json::Value) {
    let mut got = ws.recv_json();
    if got["type"] == "paired" {
        let obj = got.as_object_mut().unwrap();
        let pair = obj.remove("pair").unwrap();
        let pair = pair.as_str().unwrap();
        assert!(
            pair.len() == 16
                && pair
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{pair}"
        );
        assert!(obj.remove("initiator").unwrap().is_boolean());
    }
    assert_eq!(got, want);
}

fn stats(server: &ServerProcess) -> serde_json::Value {
    serde_json::from_slice(&http_get(server.addr, "/stats").body).unwrap()
}

#[test]
fn life_of_a_session() {
    let server = ServerProcess::start(&[]);
    let mut a = join(&server);
    expect(&mut a, json!({"type":"waiting","online":1}));
    let mut b = join(&server);
    expect(&mut b, json!({"type":"waiting","online":2}));
    expect(&mut a, json!({"type":"paired","common":[]}));
    expect(&mut b, json!({"type":"paired","common":[]}));
    assert_eq!(stats(&server), json!({"online":2,"waiting":0,"chatting":2}));

    // Messages and typing go to the partner, in order.
    a.send_json(json!({"type":"typing","active":true}));
    a.send_json(json!({"type":"message","text":"hi <b>there</b> \"quoted\"\n"}));
    a.send_json(json!({"type":"typing","active":false}));
    expect(&mut b, json!({"type":"typing","active":true}));
    expect(
        &mut b,
        json!({"type":"message","text":"hi <b>there</b> \"quoted\"\n"}),
    );
    expect(&mut b, json!({"type":"typing","active":false}));
    // Plain text is a message too.
    b.send_text("hello from a terminal");
    expect(
        &mut a,
        json!({"type":"message","text":"hello from a terminal"}),
    );

    // A says next: B is told and goes idle; A queues again.
    a.send_json(json!({"type":"next"}));
    expect(&mut b, json!({"type":"left","reason":"next"}));
    expect(&mut a, json!({"type":"waiting","online":2}));
    b.send_json(json!({"type":"message","text":"anyone?"}));
    assert_eq!(b.recv_json()["code"], "not_paired");

    // C arrives and is paired with the waiting A, not with idle B.
    let mut c = join(&server);
    expect(&mut c, json!({"type":"waiting","online":3}));
    expect(&mut a, json!({"type":"paired","common":[]}));
    expect(&mut c, json!({"type":"paired","common":[]}));
    assert_eq!(stats(&server), json!({"online":3,"waiting":0,"chatting":2}));

    // C drops: A is told the stranger disconnected.
    drop(c);
    expect(&mut a, json!({"type":"left","reason":"disconnected"}));
    // B (idle) asks for someone new and waits; A asks too: nobody else
    // waits, so A and B may meet again.
    b.send_json(json!({"type":"next"}));
    expect(&mut b, json!({"type":"waiting","online":2}));
    a.send_json(json!({"type":"next"}));
    expect(&mut a, json!({"type":"waiting","online":2}));
    expect(&mut b, json!({"type":"paired","common":[]}));
    expect(&mut a, json!({"type":"paired","common":[]}));
    // Nothing else arrived for anyone.
    assert!(a.try_recv(Duration::from_millis(100)).is_none());
    assert!(b.try_recv(Duration::from_millis(100)).is_none());
}

#[test]
fn bad_chat_input_gets_the_named_errors() {
    let server = ServerProcess::start(&[]);
    let mut a = join(&server);
    expect(&mut a, json!({"type":"waiting","online":1}));
    let mut b = join(&server);
    expect(&mut b, json!({"type":"waiting","online":2}));
    a.recv_json();
    b.recv_json();
    let long = "x".repeat(4097);
    let cases = [
        (r#"{"type":"message","text":"#.to_string(), "bad_json"),
        (r#"{"type":"dance"}"#.to_string(), "unknown_type"),
        (r#"{"type":"message","text":"   "}"#.to_string(), "empty"),
        (
            format!(r#"{{"type":"message","text":"{long}"}}"#),
            "too_long",
        ),
        (
            r#"{"type":"interests","tags":"music"}"#.to_string(),
            "bad_interests",
        ),
    ];
    for (text, code) in cases {
        a.send_text(&text);
        let err = a.recv_json();
        assert_eq!(err["type"], "error", "{text}");
        assert_eq!(err["code"], code, "{text}");
    }
    // Exactly 4096 bytes of UTF-8 is fine.
    let max = "é".repeat(2048);
    a.send_json(json!({"type":"message","text":max}));
    assert_eq!(b.recv_json()["text"].as_str().unwrap().len(), 4096);
    // B saw none of A's mistakes.
    assert!(b.try_recv(Duration::from_millis(100)).is_none());
    // Binary closes with 1003; the partner hears of it.
    a.send_frame(true, 2, b"\x00\x01");
    a.expect_close(1003);
    expect(&mut b, json!({"type":"left","reason":"disconnected"}));
}

#[test]
fn flooding_is_rate_limited_then_closed() {
    let server = ServerProcess::start(&[]);
    let mut a = join(&server);
    let mut b = join(&server);
    a.recv_json();
    b.recv_json();
    a.recv_json();
    b.recv_json();
    // 30 at once: the burst of 20 passes, the rest are dropped with an error.
    for i in 0..30 {
        a.send_json(json!({"type":"message","text":format!("m{i}")}));
    }
    let mut limited = 0;
    while let Some(f) = a.try_recv(Duration::from_millis(300)) {
        if f.json()["code"] == "rate_limited" {
            limited += 1;
        }
    }
    assert!(limited >= 1);
    let mut got = Vec::new();
    while let Some(f) = b.try_recv(Duration::from_millis(300)) {
        got.push(f.json()["text"].as_str().unwrap().to_string());
    }
    assert!(got.len() >= 20 && got.len() < 30, "{}", got.len());
    assert_eq!(
        got[..20],
        (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>()[..]
    );
    // Going on at 10x the allowed rate ends the session with 1008.
    let mut c = join(&server);
    c.recv_json();
    let mut burst = Vec::new();
    for _ in 0..400 {
        burst.extend(frame_bytes(
            true,
            1,
            br#"{"type":"typing","active":true}"#,
            Some([1, 2, 3, 4]),
        ));
    }
    c.send_raw(&burst);
    loop {
        let f = c.recv_data();
        if f.opcode == 8 {
            assert_eq!(f.close_code(), Some(1008));
            break;
        }
    }
}

#[test]
fn interests_match_first() {
    let server = ServerProcess::start(&["--interest-wait", "30"]);
    let mut plain = join(&server);
    expect(&mut plain, json!({"type":"waiting","online":1}));
    let mut music = Ws::connect(server.addr, "/?interests=Music,rust");
    expect(&mut music, json!({"type":"waiting","online":2}));
    // A client with interests does not take the plain client while its
    // interest wait lasts…
    assert!(music.try_recv(Duration::from_millis(200)).is_none());
    // …but takes one who shares a tag.
    let mut rust = Ws::connect(server.addr, "/?interests=rust");
    expect(&mut rust, json!({"type":"waiting","online":3}));
    expect(&mut music, json!({"type":"paired","common":["rust"]}));
    expect(&mut rust, json!({"type":"paired","common":["rust"]}));
    assert!(plain.try_recv(Duration::from_millis(100)).is_none());
}

#[test]
fn interest_wait_falls_back_to_anyone() {
    let server = ServerProcess::start(&["--interest-wait", "300ms"]);
    let mut music = Ws::connect(server.addr, "/?interests=music");
    expect(&mut music, json!({"type":"waiting","online":1}));
    let mut plain = join(&server);
    expect(&mut plain, json!({"type":"waiting","online":2}));
    expect(&mut music, json!({"type":"paired","common":[]}));
    expect(&mut plain, json!({"type":"paired","common":[]}));
}

#[test]
fn a_thousand_clients_pair_up_and_talk_only_to_their_partners() {
    let server = ServerProcess::start(&[]);
    const N: usize = 1000;
    const MESSAGES: usize = 5;
    let mut clients: Vec<Ws> = (0..N).map(|_| join(&server)).collect();
    let mut paired = 0;
    let mut waiting_left = 0;
    for ws in clients.iter_mut() {
        assert_eq!(ws.recv_json()["type"], "waiting");
        match ws.try_recv(Duration::from_secs(5)) {
            Some(f) => {
                assert_eq!(f.json()["type"], "paired");
                paired += 1;
            }
            None => waiting_left += 1,
        }
    }
    assert_eq!((paired, waiting_left), (N, 0));
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
            let text = msg["text"].as_str().unwrap();
            let (j, s) = text.split_once(':').unwrap();
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
    assert_eq!(stats(&server), json!({"online":N,"waiting":0,"chatting":N}));
}

#[test]
fn busy_poll_relays_and_still_sleeps_when_quiet() {
    let server = ServerProcess::start(&["--busy-poll", "500us"]);
    let mut a = join(&server);
    let mut b = join(&server);
    for ws in [&mut a, &mut b] {
        assert_eq!(ws.recv_json()["type"], "waiting");
    }
    for ws in [&mut a, &mut b] {
        assert_eq!(ws.recv_json()["type"], "paired");
    }
    // Ping-pong: every message reaches the partner, in order.
    for i in 0..20 {
        a.send_json(json!({"type":"message","text":format!("a{i}")}));
        expect(&mut b, json!({"type":"message","text":format!("a{i}")}));
        b.send_json(json!({"type":"message","text":format!("b{i}")}));
        expect(&mut a, json!({"type":"message","text":format!("b{i}")}));
    }
    // Quiet again: the loop must go back to sleeping, not spin on. Over a
    // second of silence a spinning loop uses a whole second of CPU; a
    // sleeping one next to none (the bound leaves room for a slow machine).
    let pid = server.pid();
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = (cpu_ticks(pid) - t0) as f64 / clock_ticks_per_sec() as f64;
    assert!(used < 0.3, "{used:.2} s of CPU in a quiet second");
    // And it still answers after sleeping.
    a.send_json(json!({"type":"message","text":"still there?"}));
    expect(&mut b, json!({"type":"message","text":"still there?"}));
}
