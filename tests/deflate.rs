//! permessage-deflate (RFC 7692) against the real binary: what the 101
//! answers to offers, compressed echo and chat relay, the RSV1 rules, and
//! a decompression bomb closed 1009 at the limit.

mod common;

use common::{
    connect, frame_bytes, parse_frame, read_response, Frame, ServerProcess, Ws, KEY, WAIT,
};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// Upgrades with `offer` as `Sec-WebSocket-Extensions` (if any); returns
/// the client and the extension line the server answered (if any).
fn upgrade(addr: SocketAddr, path: &str, offer: Option<&str>) -> (Ws, Option<String>) {
    let mut stream = connect(addr);
    let ext = offer.map_or(String::new(), |o| {
        format!("Sec-WebSocket-Extensions: {o}\r\n")
    });
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf, false);
    assert_eq!(resp.status, 101, "{resp:?}");
    let answer = resp.header("sec-websocket-extensions").map(str::to_string);
    (Ws { stream, buf }, answer)
}

/// Raw deflate of one message, sync-flushed, its 4-byte tail stripped.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

/// The next frame and whether RSV1 was set on it.
fn recv_rsv1(ws: &mut Ws) -> (bool, Frame) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((frame, used)) = parse_frame(&ws.buf) {
            let rsv1 = ws.buf[0] & 0x40 != 0;
            assert_eq!(ws.buf[0] & 0x30, 0, "RSV2/RSV3 from the server");
            ws.buf.drain(..used);
            return (rsv1, frame);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no frame within the wait");
        ws.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 65536];
        let n = ws.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the server closed");
        ws.buf.extend_from_slice(&chunk[..n]);
    }
}

/// A masked frame with RSV1 set.
fn compressed_frame(fin: bool, opcode: u8, data: &[u8]) -> Vec<u8> {
    let mut f = frame_bytes(fin, opcode, data, Some(MASK));
    f[0] |= 0x40;
    f
}

#[test]
fn the_answer_to_offers() {
    let server = ServerProcess::start(&[]);
    let both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    for (offer, answer) in [
        (None, None),
        (Some("x-webkit-deflate-frame"), None),
        (Some("permessage-deflate; bogus"), None),
        (Some("permessage-deflate"), Some(both.to_string())),
        (
            Some("permessage-deflate; client_max_window_bits"),
            Some(both.to_string()),
        ),
        (
            Some("permessage-deflate; server_max_window_bits=10"),
            Some(format!("{both}; server_max_window_bits=10")),
        ),
        (
            Some("permessage-deflate; server_max_window_bits=99, permessage-deflate"),
            Some(both.to_string()),
        ),
    ] {
        let (_ws, got) = upgrade(server.addr, "/echo", offer);
        assert_eq!(got, answer, "offer {offer:?}");
    }

    let off = ServerProcess::start(&["--deflate", "off"]);
    let (_ws, got) = upgrade(off.addr, "/echo", Some("permessage-deflate"));
    assert_eq!(got, None);
}

#[test]
fn echo_compresses_above_the_threshold_only() {
    let server = ServerProcess::start(&["--deflate-min-size", "100"]);
    for offer in [
        "permessage-deflate",
        "permessage-deflate; server_max_window_bits=9",
    ] {
        let (mut ws, _) = upgrade(server.addr, "/echo", Some(offer));
        let long = "hello compressed world, ".repeat(40);
        // Compressed in, compressed out (text, then binary).
        ws.send_raw(&compressed_frame(true, 1, &deflate(long.as_bytes())));
        let (rsv1, f) = recv_rsv1(&mut ws);
        assert!(
            rsv1 && f.opcode == 1 && f.payload.len() < long.len(),
            "{offer}"
        );
        assert_eq!(inflate(&f.payload), long.as_bytes());
        ws.send_raw(&compressed_frame(true, 2, &deflate(&[7; 5000])));
        let (rsv1, f) = recv_rsv1(&mut ws);
        assert!(rsv1 && f.opcode == 2);
        assert_eq!(inflate(&f.payload), [7; 5000]);
        // Uncompressed in, still compressed out when long enough.
        ws.send_text(&long);
        let (rsv1, f) = recv_rsv1(&mut ws);
        assert!(rsv1);
        assert_eq!(inflate(&f.payload), long.as_bytes());
        // Short: sent as it is, whichever way it came.
        ws.send_raw(&compressed_frame(true, 1, &deflate(b"short")));
        let (rsv1, f) = recv_rsv1(&mut ws);
        assert!(!rsv1);
        assert_eq!(f.payload, b"short");
        // Fragmented compressed message: RSV1 on the first frame only.
        let data = deflate(long.as_bytes());
        let (a, b) = data.split_at(data.len() / 2);
        ws.send_raw(&compressed_frame(false, 1, a));
        ws.send_raw(&frame_bytes(true, 0, b, Some(MASK)));
        let (rsv1, f) = recv_rsv1(&mut ws);
        assert!(rsv1);
        assert_eq!(inflate(&f.payload), long.as_bytes());
        ws.expect_close_after_sending_normal();
    }
}

trait CloseNormally {
    fn expect_close_after_sending_normal(&mut self);
}

impl CloseNormally for Ws {
    fn expect_close_after_sending_normal(&mut self) {
        self.send_frame(true, 8, &1000u16.to_be_bytes());
        let (_, f) = recv_rsv1(self);
        assert_eq!(f.close_code(), Some(1000));
    }
}

#[test]
fn rsv1_where_it_does_not_belong_is_1002() {
    let server = ServerProcess::start(&[]);
    let data = deflate(b"hello hello hello");
    // Not negotiated.
    let (mut ws, _) = upgrade(server.addr, "/echo", None);
    ws.send_raw(&compressed_frame(true, 1, &data));
    ws.expect_close(1002);
    // On a continuation frame.
    let (mut ws, _) = upgrade(server.addr, "/echo", Some("permessage-deflate"));
    ws.send_raw(&compressed_frame(false, 1, &data));
    ws.send_raw(&compressed_frame(true, 0, &data));
    ws.expect_close(1002);
    // On a control frame.
    let (mut ws, _) = upgrade(server.addr, "/echo", Some("permessage-deflate"));
    ws.send_raw(&compressed_frame(true, 9, b""));
    ws.expect_close(1002);
}

#[test]
fn bad_compressed_data_is_1007_and_a_bomb_1009() {
    let server = ServerProcess::start(&["--max-message-size", "65536"]);
    // Not deflate at all.
    let (mut ws, _) = upgrade(server.addr, "/echo", Some("permessage-deflate"));
    ws.send_raw(&compressed_frame(true, 2, &[0xff, 0xff, 0xff, 0xff]));
    ws.expect_close(1007);
    // Inflates to text that is not UTF-8.
    let (mut ws, _) = upgrade(server.addr, "/echo", Some("permessage-deflate"));
    ws.send_raw(&compressed_frame(
        true,
        1,
        &deflate(b"ok \xff\xfe not utf-8"),
    ));
    ws.expect_close(1007);
    // 64 KiB exactly is fine; 64 MiB of zeros (64 KiB compressed) is a bomb.
    let (mut ws, _) = upgrade(server.addr, "/echo", Some("permessage-deflate"));
    ws.send_raw(&compressed_frame(true, 2, &deflate(&vec![0; 65536])));
    let (_, f) = recv_rsv1(&mut ws);
    assert_eq!(inflate(&f.payload).len(), 65536);
    let bomb = deflate(&vec![0; 64 << 20]);
    assert!(bomb.len() <= 65536, "{}", bomb.len());
    ws.send_raw(&compressed_frame(true, 2, &bomb));
    ws.expect_close(1009);
}

#[test]
fn chat_relays_compressed() {
    let server = ServerProcess::start(&["--deflate-min-size", "64"]);
    let (mut a, _) = upgrade(server.addr, "/", Some("permessage-deflate"));
    let (mut b, _) = upgrade(server.addr, "/", None);
    let json = |ws: &mut Ws| -> serde_json::Value {
        loop {
            let (rsv1, f) = recv_rsv1(ws);
            if f.opcode == 9 {
                continue;
            }
            let payload = if rsv1 { inflate(&f.payload) } else { f.payload };
            return serde_json::from_slice(&payload).unwrap();
        }
    };
    // waiting, waiting, paired, paired.
    assert_eq!(json(&mut a)["type"], "waiting");
    assert_eq!(json(&mut b)["type"], "waiting");
    assert_eq!(json(&mut a)["type"], "paired");
    assert_eq!(json(&mut b)["type"], "paired");
    let text = "a long chat line that is worth compressing ".repeat(4);
    let msg = serde_json::json!({"type": "message", "text": text}).to_string();
    // a sends compressed; b (no compression) gets it plain.
    a.send_raw(&compressed_frame(true, 1, &deflate(msg.as_bytes())));
    let (rsv1, f) = recv_rsv1(&mut b);
    assert!(!rsv1);
    let got: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
    assert_eq!(got["text"], text);
    // b sends plain; a gets it compressed.
    b.send_text(&msg);
    let (rsv1, f) = recv_rsv1(&mut a);
    assert!(rsv1);
    let got: serde_json::Value = serde_json::from_slice(&inflate(&f.payload)).unwrap();
    assert_eq!(got["text"], text);
}
