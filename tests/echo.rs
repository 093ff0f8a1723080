//! The `/echo` endpoint over real sockets: messages come back unchanged,
//! control frames are answered, bad frames get their close codes, and one
//! bad connection never disturbs another.

mod common;
use common::*;
use std::io::Write;
use std::time::Duration;

#[test]
fn text_and_binary_come_back_unchanged() {
    let server = ServerProcess::start(&[]);
    let mut ws = Ws::connect(server.addr, "/echo");
    ws.send_text("hello");
    assert_eq!(
        ws.recv(),
        Frame {
            fin: true,
            opcode: 1,
            payload: b"hello".to_vec()
        }
    );
    for len in [0usize, 125, 126, 65535, 65536 - 14] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        ws.send_frame(true, 2, &payload);
        let f = ws.recv();
        assert_eq!((f.opcode, f.payload.len()), (2, len));
        assert_eq!(f.payload, payload);
    }
    ws.send_text("");
    assert_eq!(ws.recv().payload, b"");
}

#[test]
fn fragmented_message_with_interleaved_ping() {
    let server = ServerProcess::start(&[]);
    let mut ws = Ws::connect(server.addr, "/echo");
    ws.send_frame(false, 1, b"Hel");
    ws.send_frame(true, 9, b"are you there");
    ws.send_frame(false, 0, "lo, wörld".as_bytes());
    ws.send_frame(true, 0, b"!");
    let pong = ws.recv();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (10, &b"are you there"[..])
    );
    let f = ws.recv();
    assert_eq!((f.opcode, f.text()), (1, "Hello, wörld!"));
}

#[test]
fn frames_sent_with_the_handshake_are_not_lost() {
    let server = ServerProcess::start(&[]);
    let mut s = connect(server.addr);
    let mut req = format!(
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    req.extend(frame_bytes(true, 1, b"early", Some([9, 9, 9, 9])));
    std::io::Write::write_all(&mut s, &req).unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf, false).status, 101);
    let mut ws = Ws { stream: s, buf };
    assert_eq!(ws.recv().text(), "early");
}

#[test]
fn close_handshake_echoes_the_code() {
    let server = ServerProcess::start(&[]);
    let mut ws = Ws::connect(server.addr, "/echo");
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    ws.send_frame(true, 8, &payload);
    let f = ws.recv();
    assert_eq!(f.close_code(), Some(4000));
    assert!(read_until_closed(&mut ws.stream).is_some());
}

#[test]
fn protocol_errors_get_their_close_codes() {
    let server = ServerProcess::start(&["--max-message-size", "1000"]);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // unmasked frame
        (frame_bytes(true, 1, b"hi", None), 1002),
        // reserved bit
        (
            {
                let mut f = frame_bytes(true, 1, b"hi", Some([1, 2, 3, 4]));
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        // unknown opcode
        (frame_bytes(true, 3, b"", Some([1, 2, 3, 4])), 1002),
        // control frame too long
        (frame_bytes(true, 9, &[0u8; 126], Some([1, 2, 3, 4])), 1002),
        // orphan continuation
        (frame_bytes(true, 0, b"x", Some([1, 2, 3, 4])), 1002),
        // invalid UTF-8
        (
            frame_bytes(true, 1, &[0xce, 0xba, 0xff], Some([1, 2, 3, 4])),
            1007,
        ),
        // too big
        (frame_bytes(true, 2, &[0u8; 1001], Some([1, 2, 3, 4])), 1009),
        // a header claiming 2^63-1 bytes
        (
            {
                let mut f = vec![0x82, 0xff];
                f.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
                f.extend_from_slice(&[1, 2, 3, 4]);
                f
            },
            1009,
        ),
    ];
    for (bytes, code) in cases {
        let mut ws = Ws::connect(server.addr, "/echo");
        ws.send_raw(&bytes);
        ws.expect_close(code);
    }
}

#[test]
fn invalid_utf8_fails_before_the_message_ends() {
    let server = ServerProcess::start(&[]);
    let mut ws = Ws::connect(server.addr, "/echo");
    ws.send_frame(false, 1, "κόσμε".as_bytes());
    ws.send_frame(false, 0, &[0xf4, 0x90, 0x80, 0x80]);
    // No final fragment: the server must not wait for it.
    let f = ws.recv_data();
    assert_eq!(f.close_code(), Some(1007));
}

#[test]
fn answers_before_a_bad_frame_go_out_first() {
    let server = ServerProcess::start(&[]);
    let mut ws = Ws::connect(server.addr, "/echo");
    let mut burst = frame_bytes(true, 1, b"one", Some([1, 2, 3, 4]));
    burst.extend(frame_bytes(true, 9, b"p", Some([1, 2, 3, 4])));
    burst.extend(frame_bytes(true, 1, b"two", None));
    ws.send_raw(&burst);
    assert_eq!(ws.recv().text(), "one");
    assert_eq!(ws.recv().opcode, 10);
    ws.expect_close(1002);
}

#[test]
fn one_bad_connection_does_not_disturb_another() {
    let server = ServerProcess::start(&[]);
    let mut good = Ws::connect(server.addr, "/echo");
    let mut bad = Ws::connect(server.addr, "/echo");
    good.send_text("before");
    bad.send_raw(&[0xff; 64]);
    assert_eq!(good.recv().text(), "before");
    bad.expect_close(1002);
    good.send_text("after");
    assert_eq!(good.recv().text(), "after");
    assert!(good.try_recv(Duration::from_millis(100)).is_none());
}

#[test]
fn idle_connections_are_pinged_then_closed() {
    let server = ServerProcess::start(&["--idle-timeout", "1"]);
    let mut ws = Ws::connect(server.addr, "/echo");
    let ping = ws.recv();
    assert_eq!(ping.opcode, 9);
    let close = ws.recv();
    assert_eq!(close.close_code(), Some(1001));
    // Answering pings keeps a connection open.
    let mut alive = Ws::connect(server.addr, "/echo");
    for _ in 0..3 {
        let ping = alive.recv();
        assert_eq!(ping.opcode, 9);
        alive.send_frame(true, 10, &ping.payload);
    }
}

#[test]
fn a_message_larger_than_one_turns_read_budget_comes_back_whole() {
    // 6 MiB takes several loop turns (each reads at most 1 MiB from one
    // connection before others get their go), with nothing sent after it.
    let server = ServerProcess::start(&["--max-message-size", "8388608"]);
    for _ in 0..3 {
        let mut ws = Ws::connect(server.addr, "/echo");
        let payload: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let frame = frame_bytes(true, 2, &payload, Some([7, 7, 7, 7]));
        let mut writer = ws.stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || writer.write_all(&frame).unwrap());
        let f = ws.recv();
        sender.join().unwrap();
        assert_eq!(f.opcode, 2);
        assert!(f.payload == payload, "echo differs");
    }
}
