//! Codec micro-benchmarks: frame decode/encode, unmasking, UTF-8
//! validation, handshake parsing. `cargo bench --bench codec`; see
//! benches/README.md for figures and how they were taken.

use std::hint::black_box;

use chat::http::{parse_request, DEFAULT_MAX_HEAD};
use chat::ws::encode::{write_frame, write_masked_frame};
use chat::ws::handshake::accept_key;
use chat::ws::mask::apply_mask;
use chat::ws::utf8::Utf8Validator;
use chat::ws::{Decoder, Message, OpCode, Role};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Frames per buffer in the small-frame decode benches (one large read).
const FRAMES: usize = 1024;
const KIB64: usize = 64 * 1024;

/// Printable ASCII, deterministic.
fn ascii(len: usize) -> Vec<u8> {
    (0..len).map(|i| b' ' + (i * 7 % 95) as u8).collect()
}

/// Valid UTF-8 of about `len` bytes mixing 1-, 2-, 3- and 4-byte chars.
fn mixed_utf8(len: usize) -> Vec<u8> {
    let pattern = "héllo wörld — 你好世界 🙂 ";
    let mut s = String::with_capacity(len + pattern.len());
    while s.len() < len {
        s.push_str(pattern);
    }
    s.into_bytes()
}

/// `count` masked client frames of `opcode` carrying `payload`, back to back.
fn masked_frames(opcode: OpCode, payload: &[u8], count: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    for _ in 0..count {
        write_masked_frame(&mut buf, opcode, payload, MASK);
    }
    buf
}

/// Decodes every frame in `input` (server role) as the event loop does
/// after one read; returns the number of messages.
fn decode_all(dec: &mut Decoder, input: &mut [u8], message: &mut Vec<u8>) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while pos < input.len() {
        let rest = input.get_mut(pos..).unwrap_or_default();
        let (used, msg) = dec.decode(rest, message).expect("valid frames");
        if let Some(m) = msg {
            match m {
                Message::Text(p) | Message::Binary(p) => {
                    black_box(p);
                }
                other => panic!("unexpected {other:?}"),
            }
            n += 1;
        }
        assert!(used > 0, "decoder made no progress");
        pos += used;
    }
    n
}

fn decode(c: &mut Criterion) {
    let small_text = ascii(32);
    let small_bin: Vec<u8> = (0..32u8).collect();
    let large_bin: Vec<u8> = (0..KIB64).map(|i| (i * 31) as u8).collect();
    let cases = [
        (
            "text_32B_x1024",
            masked_frames(OpCode::Text, &small_text, FRAMES),
            FRAMES,
        ),
        (
            "binary_32B_x1024",
            masked_frames(OpCode::Binary, &small_bin, FRAMES),
            FRAMES,
        ),
        (
            "binary_64KiB_x1",
            masked_frames(OpCode::Binary, &large_bin, 1),
            1,
        ),
    ];
    // Criterion takes one throughput per benchmark: the same runs are
    // reported once per wire byte and once per frame.
    for (group_name, per_frame) in [("decode_bytes", false), ("decode_frames", true)] {
        let mut group = c.benchmark_group(group_name);
        for (name, input, frames) in &cases {
            group.throughput(if per_frame {
                Throughput::Elements(*frames as u64)
            } else {
                Throughput::Bytes(input.len() as u64)
            });
            let mut dec = Decoder::new(Role::Server, 1 << 20);
            let mut message = Vec::new();
            group.bench_function(*name, |b| {
                // Decoding unmasks in place: every run gets a fresh copy of
                // the masked bytes, made outside the timed part.
                b.iter_batched_ref(
                    || input.clone(),
                    |buf| {
                        let n = decode_all(&mut dec, buf, &mut message);
                        debug_assert_eq!(n, *frames);
                        n
                    },
                    BatchSize::LargeInput,
                );
            });
        }
        group.finish();
    }
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, payload) in [
        ("text_32B", ascii(32)),
        ("binary_64KiB", vec![0xa5u8; KIB64]),
    ] {
        let opcode = if name.starts_with("text") {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        group.throughput(Throughput::Bytes(payload.len() as u64));
        let mut out = Vec::with_capacity(payload.len() + 14);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                write_frame(&mut out, opcode, black_box(&payload));
                black_box(out.len())
            });
        });
    }
    group.finish();
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for (name, len) in [("64KiB", KIB64), ("1MiB", 1 << 20)] {
        let mut buf: Vec<u8> = (0..len).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| {
            // XOR is its own inverse: unmasking the same buffer over and
            // over is the same work every time.
            b.iter(|| apply_mask(black_box(&mut buf), black_box(MASK), 0));
        });
        // Starting at an odd mask position and an unaligned address.
        group.bench_function(format!("{name}_offset3_unaligned"), |b| {
            b.iter(|| apply_mask(black_box(&mut buf[1..]), black_box(MASK), 3));
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    for (kind, text) in [("ascii", ascii(KIB64)), ("mixed", mixed_utf8(KIB64))] {
        assert!(std::str::from_utf8(&text).is_ok());
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("{kind}_64KiB_whole"), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::default();
                v.feed(black_box(&text)).expect("valid");
                assert!(v.is_complete());
            });
        });
        group.bench_function(format!("{kind}_64KiB_7B_pieces"), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::default();
                for piece in black_box(&text).chunks(7) {
                    v.feed(piece).expect("valid");
                }
                assert!(v.is_complete());
            });
        });
    }
    group.finish();
}

/// What Chrome sends to open a WebSocket (with an interests query).
const UPGRADE: &[u8] = b"GET /?interests=music,rust HTTP/1.1\r\n\
Host: chat.example.org\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://chat.example.org\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

fn handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_request_browser_upgrade", |b| {
        b.iter(|| {
            let req = parse_request(black_box(UPGRADE), DEFAULT_MAX_HEAD)
                .expect("valid")
                .expect("complete");
            assert!(req.websocket_upgrade);
            black_box(req.sec_websocket_key);
        });
    });
    group.bench_function("accept_key", |b| {
        b.iter(|| accept_key(black_box(b"dGhlIHNhbXBsZSBub25jZQ==")));
    });
    group.finish();
}

/// permessage-deflate on our messages: compress (as sent: reset, level 1,
/// sync flush) and inflate (reset, sync flush) with the loop's codec.
fn deflate(c: &mut Criterion) {
    use chat::ws::deflate::Codec;
    let chat_line = |len: usize| {
        let mut s = String::from(r#"{"type":"message","text":""#);
        let words = [
            "hello", "how", "are", "you", "today", "stranger", "music", "?",
        ];
        let mut i = 0;
        while s.len() + 2 < len {
            s.push_str(words[i % words.len()]);
            s.push(' ');
            i += 1;
        }
        s.truncate(len - 2);
        s.push_str(r#""}"#);
        s.into_bytes()
    };
    let mut g = c.benchmark_group("deflate");
    let mut codec = Codec::default();
    let mut out = Vec::new();
    for (name, msg) in [
        ("echo_32B", ascii(32)),
        ("chat_64B", chat_line(64)),
        ("chat_128B", chat_line(128)),
        ("chat_512B", chat_line(512)),
        ("chat_4KiB", chat_line(4096)),
    ] {
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function(format!("compress_{name}"), |b| {
            b.iter(|| codec.compress(15, black_box(&msg), &mut out))
        });
        let shorter = codec.compress(15, &msg, &mut out);
        println!(
            "deflate {name}: {} -> {} bytes{}",
            msg.len(),
            out.len(),
            if shorter {
                ""
            } else {
                " (not shorter: sent as is)"
            }
        );
        if shorter {
            let z = out.clone();
            let mut back = Vec::new();
            g.bench_function(format!("inflate_{name}"), |b| {
                b.iter(|| codec.inflate(black_box(&z), 1 << 20, &mut back))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, decode, encode, unmask, utf8, handshake, deflate);
criterion_main!(benches);
