//! The engine on a fake clock: bytes and ends of stream in, bytes and
//! actions out, time moved by hand. Every timing rule of a connection is
//! proven here, in microseconds and without a socket.

use super::*;
use crate::ws::encode;
use crate::ws::{CloseCode, Decoder, Message, Role};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

mod safety;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

mod cluster;
mod cross;

/// A driver that never blocks unless told to: every socket takes all it is
/// given, except the ones marked stalled, which take nothing.
struct Harness {
    engine: Engine,
    now: u64,
    buf: ReadBuffer,
    /// What each connection's client has received and not yet looked at.
    received: HashMap<ConnId, Vec<u8>>,
    /// Client-side frame decoders, for connections past their handshake.
    decoders: HashMap<ConnId, Decoder>,
    closed: HashSet<ConnId>,
    write_shut: HashSet<ConnId>,
    wants_writable: HashSet<ConnId>,
    resumed: Vec<ConnId>,
    stalled: HashSet<ConnId>,
}

#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Ping,
    Close(Option<u16>),
}

impl Harness {
    fn new(config: Config) -> Harness {
        Harness {
            engine: Engine::new(config),
            now: 1_000,
            buf: ReadBuffer::default(),
            received: HashMap::new(),
            decoders: HashMap::new(),
            closed: HashSet::new(),
            write_shut: HashSet::new(),
            wants_writable: HashSet::new(),
            resumed: Vec::new(),
            stalled: HashSet::new(),
        }
    }

    fn default() -> Harness {
        Harness::new(Config::default())
    }

    /// Loop `thread` of a process sharing `process` and `safety`.
    fn threaded_with(
        config: Config,
        process: Arc<Process>,
        thread: usize,
        safety: crate::safety::SafetyHandle,
    ) -> Harness {
        let mut h = Harness::new(config.clone());
        h.engine = Engine::threaded(config, Seed::default(), process, thread, safety);
        h
    }

    fn connect(&mut self) -> ConnId {
        let id = self.engine.accept(self.now).expect("accepted");
        self.connected(id)
    }

    /// A connection from `peer`.
    fn connect_from(&mut self, peer: std::net::IpAddr) -> ConnId {
        let id = self.engine.accept_from(peer, self.now).expect("accepted");
        self.connected(id)
    }

    fn connected(&mut self, id: ConnId) -> ConnId {
        self.closed.remove(&id);
        self.write_shut.remove(&id);
        self.received.insert(id, Vec::new());
        self.decoders.remove(&id);
        id
    }

    /// The client sends `bytes`; they are read in one go where they fit.
    fn send(&mut self, id: ConnId, bytes: &[u8]) {
        for chunk in bytes.chunks(READ_SIZE) {
            assert!(self.engine.wants_input(id), "sent to a paused connection");
            self.buf.space()[..chunk.len()].copy_from_slice(chunk);
            self.engine
                .receive(id, &mut self.buf, chunk.len(), self.now);
            self.flush();
        }
    }

    fn eof(&mut self, id: ConnId) {
        self.engine.receive_eof(id, self.now);
        self.flush();
    }

    /// Moves the clock on by `ms` and runs what is due.
    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.engine.handle_timeout(self.now);
        self.flush();
    }

    /// Moves the clock to just before and then to the engine's deadlines
    /// until `until` ms have passed, as a driver's poll timeouts would.
    fn advance_by_deadlines(&mut self, ms: u64) {
        let end = self.now + ms;
        let mut last = None;
        while let Some(at) = self.engine.next_deadline() {
            // A deadline that stays put once handled (the shutdown grace,
            // once over) is no reason to stop the clock.
            if at > end || last == Some(at) {
                break;
            }
            last = Some(at);
            self.now = self.now.max(at);
            self.engine.handle_timeout(self.now);
            self.flush();
        }
        self.now = end;
        self.engine.handle_timeout(self.now);
        self.flush();
    }

    fn flush(&mut self) {
        let mut dirty = Vec::new();
        loop {
            self.engine.take_dirty(&mut dirty);
            if dirty.is_empty() {
                break;
            }
            for &id in &dirty {
                self.write(id);
            }
        }
        self.apply_actions();
    }

    fn write(&mut self, id: ConnId) {
        if !self.stalled.contains(&id) {
            let out = self.engine.output(id).to_vec();
            self.received.entry(id).or_default().extend_from_slice(&out);
            self.engine.written(id, out.len());
        }
        self.engine.flushed(id);
    }

    /// A stalled socket drains: WRITABLE came.
    fn unstall(&mut self, id: ConnId) {
        self.stalled.remove(&id);
        self.write(id);
        self.flush();
    }

    fn apply_actions(&mut self) {
        while let Some((id, action)) = self.engine.poll_action() {
            match action {
                Action::Writable(true) => {
                    self.wants_writable.insert(id);
                }
                Action::Writable(false) => {
                    self.wants_writable.remove(&id);
                }
                Action::ShutdownWrite => {
                    self.write_shut.insert(id);
                }
                Action::Close => {
                    self.closed.insert(id);
                }
                Action::Resume => self.resumed.push(id),
            }
        }
    }

    fn is_closed(&self, id: ConnId) -> bool {
        self.closed.contains(&id)
    }

    /// Everything the client got since the last look, as raw bytes.
    fn take_raw(&mut self, id: ConnId) -> Vec<u8> {
        std::mem::take(self.received.entry(id).or_default())
    }

    /// Opens a WebSocket on `path` and checks the 101.
    fn open_ws(&mut self, path: &str) -> ConnId {
        let id = self.connect();
        self.upgrade(id, path)
    }

    /// [`Harness::open_ws`] from `peer`.
    fn open_ws_from(&mut self, peer: std::net::IpAddr, path: &str) -> ConnId {
        let id = self.connect_from(peer);
        self.upgrade(id, path)
    }

    fn upgrade(&mut self, id: ConnId, path: &str) -> ConnId {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        self.send(id, req.as_bytes());
        let raw = self.take_raw(id);
        let head_end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head")
            + 4;
        assert!(raw.starts_with(b"HTTP/1.1 101 "), "{raw:?}");
        self.received.insert(id, raw[head_end..].to_vec());
        self.decoders
            .insert(id, Decoder::new(Role::Client, 1 << 30));
        id
    }

    /// The frames the client got since the last look.
    fn frames(&mut self, id: ConnId) -> Vec<Frame> {
        let mut raw = self.take_raw(id);
        let decoder = self.decoders.get_mut(&id).expect("a WebSocket");
        let mut message = Vec::new();
        let mut frames = Vec::new();
        let mut pos = 0;
        loop {
            let (used, msg) = decoder
                .decode(&mut raw[pos..], &mut message)
                .expect("valid frames from the server");
            pos += used;
            let Some(msg) = msg else { break };
            frames.push(match msg {
                Message::Text(t) => Frame::Text(String::from_utf8(t.to_vec()).unwrap()),
                Message::Binary(b) => Frame::Binary(b.to_vec()),
                Message::Ping(_) => Frame::Ping,
                Message::Pong(_) => panic!("the server sent a pong unasked"),
                Message::Close(code, _) => Frame::Close(code.map(CloseCode::as_u16)),
                Message::Compressed { text, data } => {
                    let mut out = Vec::new();
                    crate::ws::deflate::Codec::default()
                        .inflate(data, usize::MAX / 2, &mut out)
                        .expect("valid compressed data from the server");
                    if text {
                        Frame::Text(String::from_utf8(out).unwrap())
                    } else {
                        Frame::Binary(out)
                    }
                }
            });
        }
        assert_eq!(pos, raw.len(), "a partial frame from the server");
        frames
    }

    fn send_frame(&mut self, id: ConnId, opcode: OpCode, payload: &[u8]) {
        let mut bytes = Vec::new();
        encode::write_masked_frame(&mut bytes, opcode, payload, [1, 2, 3, 4]);
        self.send(id, &bytes);
    }

    fn send_json(&mut self, id: ConnId, json: &str) {
        self.send_frame(id, OpCode::Text, json.as_bytes());
    }

    /// The chat messages (JSON `type`s and objects) the client got.
    fn chat(&mut self, id: ConnId) -> Vec<serde_json::Value> {
        self.frames(id)
            .into_iter()
            .map(|f| match f {
                Frame::Text(t) => serde_json::from_str(&t).unwrap(),
                other => panic!("not chat: {other:?}"),
            })
            .collect()
    }

    fn chat_types(&mut self, id: ConnId) -> Vec<String> {
        self.chat(id)
            .into_iter()
            .map(|v| v["type"].as_str().unwrap().to_string())
            .collect()
    }

    fn pair(&mut self) -> (ConnId, ConnId) {
        let a = self.open_ws("/");
        let b = self.open_ws("/");
        assert_eq!(self.chat_types(a), ["waiting", "paired"]);
        assert_eq!(self.chat_types(b), ["waiting", "paired"]);
        (a, b)
    }
}

fn secs(s: u64) -> u64 {
    s * 1000
}

fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

// ---- handshake timeout ------------------------------------------------

#[test]
fn a_request_head_must_be_complete_within_the_handshake_timeout() {
    let mut h = Harness::default(); // 10 s
    let id = h.connect();
    h.send(id, b"GET / HTTP/1.1\r\n");
    h.advance(secs(9) + 900);
    assert!(!h.is_closed(id));
    h.advance_by_deadlines(200);
    assert!(h.is_closed(id), "closed at the handshake timeout");
    assert!(h.take_raw(id).is_empty(), "closed without an answer");
}

#[test]
fn dribbling_bytes_does_not_extend_the_handshake_timeout() {
    let mut h = Harness::default();
    let id = h.connect();
    for _ in 0..99 {
        h.send(id, b"X");
        h.advance(100);
    }
    assert!(!h.is_closed(id));
    h.advance_by_deadlines(150);
    assert!(h.is_closed(id), "9.9 s of dribbling did not buy more time");
}

#[test]
fn keep_alive_requests_each_get_the_handshake_timeout() {
    let mut h = Harness::default();
    let id = h.connect();
    h.advance(secs(8));
    h.send(id, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(h.take_raw(id).starts_with(b"HTTP/1.1 200 OK"));
    h.advance_by_deadlines(secs(9));
    assert!(!h.is_closed(id), "the clock restarted with the answer");
    h.advance_by_deadlines(secs(1) + 100);
    assert!(h.is_closed(id));
}

// ---- idle ping and close ---------------------------------------------

#[test]
fn a_silent_session_is_pinged_at_half_the_idle_timeout_and_closed_at_all_of_it() {
    let mut h = Harness::default(); // 60 s
    let id = h.open_ws("/echo");
    h.advance_by_deadlines(secs(29) + 900);
    assert!(h.frames(id).is_empty());
    h.advance_by_deadlines(200);
    assert_eq!(h.frames(id), [Frame::Ping]);
    h.advance_by_deadlines(secs(29) + 600);
    assert!(h.frames(id).is_empty());
    h.advance_by_deadlines(400);
    assert_eq!(h.frames(id), [Frame::Close(Some(1001))]);
    assert!(!h.is_closed(id), "waits for the client's close frame");
    assert_eq!(h.engine.totals.idle_closed, 1);
}

#[test]
fn any_bytes_from_the_client_restart_the_idle_clock() {
    let mut h = Harness::default();
    let id = h.open_ws("/echo");
    for _ in 0..5 {
        h.advance_by_deadlines(secs(25));
        h.send_frame(id, OpCode::Pong, b"");
    }
    assert!(h.frames(id).is_empty(), "no ping while the client talks");
    h.advance_by_deadlines(secs(30) + 100);
    assert_eq!(h.frames(id), [Frame::Ping]);
}

// ---- the close wait --------------------------------------------------

#[test]
fn after_our_close_frame_the_client_has_the_close_wait_to_answer() {
    let mut h = Harness::new(config(|c| c.idle_timeout = Duration::from_secs(2)));
    let id = h.open_ws("/echo");
    h.advance_by_deadlines(secs(2) + 100);
    assert_eq!(h.frames(id), [Frame::Ping, Frame::Close(Some(1001))]);
    h.advance_by_deadlines(secs(4) + 800);
    assert!(!h.is_closed(id));
    h.advance_by_deadlines(200);
    assert!(h.is_closed(id), "closed 5 s after our close frame");
}

#[test]
fn a_client_that_answers_our_close_is_let_go_on_its_fin() {
    let mut h = Harness::new(config(|c| c.idle_timeout = Duration::from_secs(2)));
    let id = h.open_ws("/echo");
    h.advance_by_deadlines(secs(2) + 100);
    h.frames(id);
    h.send_frame(id, OpCode::Close, &1001u16.to_be_bytes());
    assert!(h.write_shut.contains(&id), "our FIN after the handshake");
    assert!(!h.is_closed(id));
    h.eof(id);
    assert!(h.is_closed(id));
}

#[test]
fn a_client_close_is_echoed_then_our_fin_then_we_wait_for_theirs() {
    let mut h = Harness::default();
    let id = h.open_ws("/echo");
    h.send_frame(id, OpCode::Close, &[0x0f, 0xa0, b'b', b'y', b'e']);
    assert_eq!(h.frames(id), [Frame::Close(Some(4000))]);
    assert!(h.write_shut.contains(&id));
    h.advance_by_deadlines(secs(5) + 100);
    assert!(
        h.is_closed(id),
        "closed after the close wait without its FIN"
    );
}

// ---- failing a connection (issue 10, item 4) --------------------------

#[test]
fn a_failed_connection_sends_its_close_then_fin_and_decodes_nothing_more() {
    let mut h = Harness::default();
    let id = h.open_ws("/echo");
    h.send_frame(id, OpCode::Text, b"before");
    // A text frame announcing 1,000 bytes with 0xFF in its first ten.
    let mut bad = vec![0x81, 0x80 | 126, 0x03, 0xe8, 0, 0, 0, 0];
    bad.extend_from_slice(b"abc\xffdefgh");
    h.send(id, &bad);
    assert_eq!(
        h.frames(id),
        [Frame::Text("before".into()), Frame::Close(Some(1007))]
    );
    assert!(h.write_shut.contains(&id), "our side is shut at once");
    // The client's close frame is discarded, not taken as payload, and
    // nothing is answered.
    h.send_frame(id, OpCode::Close, &1007u16.to_be_bytes());
    h.send_frame(id, OpCode::Text, b"after");
    assert!(h.take_raw(id).is_empty());
    assert!(!h.is_closed(id));
    h.eof(id);
    assert!(h.is_closed(id), "closed on the client's FIN");
}

#[test]
fn a_failed_connection_whose_client_never_closes_goes_after_the_close_wait() {
    let mut h = Harness::default();
    let id = h.open_ws("/echo");
    h.send(id, &[0x81 | 0x70, 0x80]); // reserved bits
    assert_eq!(h.frames(id), [Frame::Close(Some(1002))]);
    h.advance_by_deadlines(secs(4) + 900);
    assert!(!h.is_closed(id));
    h.advance_by_deadlines(200);
    assert!(h.is_closed(id));
}

// ---- slow readers ------------------------------------------------------

#[test]
fn a_reader_owed_over_1_mib_is_closed_1008_behind_what_it_was_owed() {
    let mut h = Harness::default();
    let id = h.open_ws("/echo");
    h.stalled.insert(id);
    let payload = vec![b'x'; 60 * 1024];
    let mut sent = 0;
    while !h
        .engine
        .sessions
        .get(id)
        .is_some_and(|s| matches!(s.phase(), Phase::Draining { .. }))
    {
        h.send_frame(id, OpCode::Binary, &payload);
        sent += 1;
        assert!(sent < 100, "never closed");
    }
    assert!(h.wants_writable.contains(&id));
    assert_eq!(sent, 18, "closed once over 1 MiB (17 x 60 KiB is not)");
    assert_eq!(h.engine.totals.slow_readers_closed, 1);
    // Further messages are not even decoded.
    h.send_frame(id, OpCode::Binary, &payload);
    h.unstall(id);
    let frames = h.frames(id);
    assert_eq!(frames.len(), 19);
    assert_eq!(frames.last(), Some(&Frame::Close(Some(1008))));
    assert!(!h.wants_writable.contains(&id));
    assert!(h.write_shut.contains(&id));
}

#[test]
fn a_stalled_reader_under_the_cap_just_waits() {
    let mut h = Harness::default();
    let id = h.open_ws("/echo");
    h.stalled.insert(id);
    h.send_frame(id, OpCode::Text, b"hello");
    assert!(h.wants_writable.contains(&id));
    h.advance_by_deadlines(secs(20));
    h.unstall(id);
    assert_eq!(h.frames(id), [Frame::Text("hello".into())]);
    assert!(!h.wants_writable.contains(&id));
}

// ---- shutdown ------------------------------------------------------------

#[test]
fn shutdown_sends_1001_to_sessions_and_lets_idle_http_go() {
    let mut h = Harness::default();
    let (a, b) = h.pair();
    let echo = h.open_ws("/echo");
    let idle_http = h.connect();
    h.engine.begin_shutdown(h.now);
    h.flush();
    for id in [a, b, echo] {
        assert_eq!(h.frames(id), [Frame::Close(Some(1001))], "{id}");
    }
    assert!(h.is_closed(idle_http));
    assert!(h.engine.accept(h.now).is_none(), "no new connections");
    // A client that answers is closed as soon as its handshake is done.
    h.send_frame(a, OpCode::Close, &1001u16.to_be_bytes());
    assert!(h.is_closed(a));
    assert!(!h.engine.shutdown_complete(h.now));
    h.advance_by_deadlines(secs(4) + 900);
    assert!(!h.engine.shutdown_complete(h.now));
    h.advance_by_deadlines(200);
    assert!(h.engine.shutdown_complete(h.now), "5 s grace");
}

#[test]
fn shutdown_completes_when_every_client_has_answered() {
    let mut h = Harness::default();
    let id = h.open_ws("/echo");
    h.engine.begin_shutdown(h.now);
    h.flush();
    h.send_frame(id, OpCode::Close, &1001u16.to_be_bytes());
    assert!(h.engine.shutdown_complete(h.now));
}

// ---- chat: interest wait and rate limit --------------------------------

#[test]
fn a_client_with_interests_takes_anyone_after_the_interest_wait() {
    let mut h = Harness::default(); // 5 s
    let a = h.open_ws("/?interests=rust");
    let b = h.open_ws("/");
    assert_eq!(h.chat_types(a), ["waiting"]);
    assert_eq!(h.chat_types(b), ["waiting"]);
    h.advance_by_deadlines(secs(4) + 900);
    assert!(h.chat_types(a).is_empty());
    h.advance_by_deadlines(200);
    assert_eq!(h.chat_types(a), ["paired"]);
    assert_eq!(h.chat_types(b), ["paired"]);
}

#[test]
fn the_rate_limit_drops_then_closes_a_flood() {
    let mut h = Harness::default(); // 10/s, bursts of 20
    let (a, b) = h.pair();
    for i in 0..25 {
        h.send_json(a, &format!(r#"{{"type":"message","text":"m{i}"}}"#));
    }
    assert_eq!(h.chat(b).len(), 20, "a burst of 20 goes through");
    assert!(h.chat_types(a).contains(&"error".to_string()));
    // One second refills ten.
    h.advance(secs(1));
    for i in 0..12 {
        h.send_json(a, &format!(r#"{{"type":"message","text":"n{i}"}}"#));
    }
    assert_eq!(h.chat(b).len(), 10);
    // At ten times the rate the session is closed 1008.
    let mut closed = false;
    for _ in 0..400 {
        h.send_json(a, r#"{"type":"typing","active":true}"#);
        if h.frames(a).contains(&Frame::Close(Some(1008))) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a flood at 10x is closed");
    assert_eq!(
        h.chat(b).last().map(|v| v["type"].clone()),
        Some("left".into())
    );
}

// ---- ends of stream (issue 10, items 1 and 7) ---------------------------

#[test]
fn a_message_and_the_end_of_stream_reach_the_partner_together() {
    let mut h = Harness::default();
    let (a, b) = h.pair();
    let mut bytes = Vec::new();
    encode::write_masked_frame(
        &mut bytes,
        OpCode::Text,
        br#"{"type":"message","text":"bye"}"#,
        [9, 9, 9, 9],
    );
    h.buf.space()[..bytes.len()].copy_from_slice(&bytes);
    h.engine.receive(a, &mut h.buf, bytes.len(), h.now);
    h.engine.receive_eof(a, h.now);
    h.flush();
    assert!(h.is_closed(a));
    let got = h.chat(b);
    assert_eq!(got[0]["text"], "bye");
    assert_eq!(got[1]["type"], "left");
    assert_eq!(got[1]["reason"], "disconnected");
    assert_eq!(h.engine.chat.counts().online, 1);
}

#[test]
fn a_half_closed_http_client_gets_its_answers_then_the_connection_goes() {
    let mut h = Harness::default();
    let id = h.connect();
    h.stalled.insert(id);
    h.send(
        id,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    h.eof(id);
    assert!(!h.is_closed(id), "answers still owed");
    h.unstall(id);
    let raw = h.take_raw(id);
    assert_eq!(
        raw.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count(),
        2
    );
    assert!(h.write_shut.contains(&id));
    assert!(
        h.is_closed(id),
        "closed once the answers are out, not 5 s later"
    );
}

// ---- pipelining (issue 10, item 2) --------------------------------------

#[test]
fn pipelined_requests_wait_while_the_answers_are_not_read() {
    let mut h = Harness::default();
    let id = h.connect();
    h.stalled.insert(id);
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let total = 5_000;
    let all: Vec<u8> = request.repeat(total);
    let mut fed = 0;
    while fed < all.len() && h.engine.wants_input(id) {
        let n = (all.len() - fed).min(READ_SIZE);
        h.send(id, &all[fed..fed + n]);
        fed += n;
    }
    assert!(!h.engine.wants_input(id), "paused");
    // The threshold plus at most one answer (the page and its head).
    let bound = http::PIPELINE_PAUSE + http::INDEX_HTML.len() + 1024;
    let owed = h.engine.output(id).len();
    assert!(owed <= bound, "{owed} bytes owed");
    assert!(
        h.engine.sessions.get(id).unwrap().leftover_len() <= READ_SIZE,
        "at most one read is kept"
    );
    // Reading resumes as the client drains its answers.
    let mut answers = 0;
    let count = |raw: &[u8]| raw.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    while answers < total {
        h.resumed.clear();
        h.unstall(id);
        answers += count(&h.take_raw(id));
        h.stalled.insert(id);
        if h.resumed.contains(&id) {
            assert!(h.engine.wants_input(id));
            if fed < all.len() {
                let n = (all.len() - fed).min(READ_SIZE);
                h.send(id, &all[fed..fed + n]);
                fed += n;
            }
        }
        assert!(h.engine.output(id).len() <= bound);
    }
    assert_eq!((answers, fed), (total, all.len()));
}

// ---- leftovers (issue 10, item 5) ---------------------------------------

#[test]
fn a_leftover_costs_what_it_holds() {
    let mut h = Harness::default();
    let id = h.open_ws("/echo");
    let mut bytes = Vec::new();
    encode::write_masked_frame(&mut bytes, OpCode::Binary, &[7; 50_000], [1, 2, 3, 4]);
    bytes.push(0x82); // one byte of the next frame's header
    h.send(id, &bytes);
    assert_eq!(h.frames(id), [Frame::Binary(vec![7; 50_000])]);
    let session = h.engine.sessions.get(id).unwrap();
    assert_eq!(session.leftover_len(), 1);
    assert!(session.out.is_empty());
    assert_eq!(session.out.capacity(), 0, "no output buffer held");
    // A leftover grown by a big read and then cut back to one byte.
    let mut more = vec![0x80 | 126, 0xea, 0x60, 1, 2, 3, 4];
    let mut payload = vec![5u8; 60_000];
    crate::ws::mask::apply_mask(&mut payload, [1, 2, 3, 4], 0);
    more.extend_from_slice(&payload);
    more.push(0x82);
    h.send(id, &more);
    assert_eq!(h.frames(id), [Frame::Binary(vec![5; 60_000])]);
    assert_eq!(h.engine.sessions.get(id).unwrap().leftover_len(), 1);
}

// ---- video ---------------------------------------------------------------

#[test]
fn paired_carries_the_pair_the_initiator_and_ice_and_signals_are_relayed() {
    let mut h = Harness::new(config(|c| {
        c.ice_servers = vec!["stun:127.0.0.1:3478".into(), "turn:127.0.0.1:3478".into()];
        c.turn_secret = crate::chat::TurnSecret::from_file_content(b"secret");
        c.turn_ttl = Duration::from_secs(600);
    }));
    let seed = Seed {
        unix_start_s: 1_700_000_000,
        pair_key: 42,
    };
    h.engine = Engine::seeded(h.engine.config.clone(), seed);
    let a = h.open_ws("/");
    let b = h.open_ws("/");
    let pa = h.chat(a).pop().unwrap();
    let pb = h.chat(b).pop().unwrap();
    assert_eq!(pa["type"], "paired");
    assert_eq!(pb["type"], "paired");
    assert_eq!(pa["initiator"], true, "a waited: {pa}");
    assert_eq!(pb["initiator"], false, "{pb}");
    let pair = pa["pair"].as_str().unwrap().to_string();
    assert_eq!(pb["pair"], pair.as_str());
    assert_eq!(pair.len(), 16);
    assert_eq!(pa["ice"], pb["ice"]);
    assert_eq!(pa["ice"][0]["urls"][0], "stun:127.0.0.1:3478");
    // The harness clock starts at 1 s: expiry = 1_700_000_001 + 600.
    let username = format!("1700000601:{pair}");
    assert_eq!(pa["ice"][1]["username"], username.as_str());
    assert_eq!(
        pa["ice"][1]["credential"],
        crate::chat::video::hmac_sha1_base64(b"secret", username.as_bytes()).as_str()
    );

    let signal = format!(r#"{{"type":"signal","pair":"{pair}","data":{{ "candidate" : "c" }}}}"#);
    h.send_json(b, &signal);
    h.send_json(
        b,
        r#"{"type":"signal","pair":"0000000000000000","data":{}}"#,
    );
    assert_eq!(h.frames(a), vec![Frame::Text(signal.clone())]);
    assert!(h.frames(b).is_empty());
}
