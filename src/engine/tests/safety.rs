//! The engine's safety hooks on a fake clock: bans at upgrade and for open
//! sessions, per-address limits answered 429. (The engine's Unix clock is
//! `now` here: the test seed's Unix origin is 0.)

use super::*;
use crate::safety::SafetyConfig;

fn banned_then_1008(frames: &[Frame], reason: &str) {
    let [Frame::Text(banned), Frame::Close(Some(1008))] = frames else {
        panic!("{frames:?}");
    };
    let v: serde_json::Value = serde_json::from_str(banned).unwrap();
    assert_eq!(v["type"], "banned");
    assert_eq!(v["reason"], reason);
    assert!(v["until"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn a_ban_closes_the_open_chat_sessions_of_that_address_in_the_next_turn() {
    let mut h = Harness::default();
    let a = h.open_ws("/");
    let b = h.open_ws("/");
    let echo = h.open_ws("/echo");
    h.chat(a);
    h.chat(b);
    h.engine
        .safety
        .admin_ban("127.0.0.1", 60, "spam", h.now)
        .unwrap();
    h.advance(1);
    banned_then_1008(&h.frames(a), "spam");
    // b (same address) first learns that a went, then gets its own.
    let frames = h.frames(b);
    assert_eq!(
        frames.first(),
        Some(&Frame::Text(
            r#"{"type":"left","reason":"disconnected"}"#.into()
        ))
    );
    banned_then_1008(frames.get(1..).unwrap(), "spam");
    // The echo session is not a chat session: untouched.
    assert!(h.frames(echo).is_empty());
    h.send_frame(echo, OpCode::Text, b"still here");
    assert_eq!(h.frames(echo), vec![Frame::Text("still here".into())]);
}

#[test]
fn a_banned_address_opening_a_chat_session_gets_banned_and_1008() {
    let mut h = Harness::default();
    h.engine
        .safety
        .admin_ban("127.0.0.0/8", 1, "", h.now)
        .unwrap();
    let a = h.open_ws("/");
    banned_then_1008(&h.frames(a), "");
    // After it expires, chat is open again.
    h.advance(60_000);
    let b = h.open_ws("/");
    assert_eq!(h.chat(b)[0]["type"], "waiting");
}

#[test]
fn over_the_per_address_connection_limit_the_request_gets_429_and_a_close() {
    let mut h = Harness::new(Config {
        safety: SafetyConfig {
            max_connections_per_ip: 1,
            ..SafetyConfig::default()
        },
        ..Config::default()
    });
    let first = h.connect();
    let second = h.connect();
    h.send(
        second,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".as_slice(),
    );
    let raw = String::from_utf8(h.take_raw(second)).unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{raw}"
    );
    assert!(raw.contains("\r\nRetry-After: 10\r\n"), "{raw}");
    assert!(raw.contains("\r\nConnection: close\r\n"), "{raw}");
    // The first is served; once it closes, a newcomer is counted instead.
    h.send(
        first,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".as_slice(),
    );
    assert!(h.take_raw(first).starts_with(b"HTTP/1.1 200 "));
    h.eof(first);
    let third = h.connect();
    h.send(
        third,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".as_slice(),
    );
    assert!(h.take_raw(third).starts_with(b"HTTP/1.1 200 "));
}

/// What the safety hooks add to every connection, whatever its kind.
#[test]
fn a_connections_addresses_take_at_most_40_bytes() {
    let size = std::mem::size_of::<Option<crate::engine::safety::ConnAddr>>();
    println!("size_of::<Option<ConnAddr>>() = {size}");
    assert!(size <= 40, "{size}");
}
