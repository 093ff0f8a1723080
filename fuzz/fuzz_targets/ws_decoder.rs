//! The WebSocket frame decoder, fed the way the event loop feeds it.
//!
//! Input: byte 0 picks the role and the message size limit; byte 1 the
//! number of cuts (0..8); then two bytes per cut (offsets into the stream);
//! the rest is the byte stream. The stream is delivered in pieces split at
//! the cuts; after each piece, the unconsumed tail is kept and presented
//! again in front of the next piece, and `message` is released when no
//! message is in progress, exactly like `server::event_loop`.
//!
//! Invariants: never panics; every event consumes bytes; the kept tail is
//! at most 14 + 125 bytes; text is valid UTF-8; data messages are within
//! the limit, control payloads within 125 bytes; and the events (and the
//! failure code, if any) are the same however the stream is split.
#![no_main]

use chat::ws::{CloseCode, Decoder, Message, Role};
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 8] = [0, 1, 125, 126, 1000, 65_535, 65_536, 1 << 20];

#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Fail(u16),
}

fn run(role: Role, max: usize, stream: &[u8], cuts: &[usize]) -> Vec<Ev> {
    let mut decoder = Decoder::new(role, max);
    let mut message: Vec<u8> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut prev = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        partial.extend_from_slice(&stream[prev..cut]);
        prev = cut;
        let mut pos = 0;
        loop {
            match decoder.decode(&mut partial[pos..], &mut message) {
                Ok((n, Some(msg))) => {
                    assert!(n > 0, "an event consumed no bytes");
                    pos += n;
                    let ev = match msg {
                        Message::Text(p) => {
                            assert!(std::str::from_utf8(p).is_ok(), "text is not UTF-8");
                            assert!(p.len() <= max, "text of {} over {max}", p.len());
                            Ev::Text(p.to_vec())
                        }
                        Message::Binary(p) => {
                            assert!(p.len() <= max, "binary of {} over {max}", p.len());
                            Ev::Binary(p.to_vec())
                        }
                        Message::Ping(p) => {
                            assert!(p.len() <= 125);
                            Ev::Ping(p.to_vec())
                        }
                        Message::Pong(p) => {
                            assert!(p.len() <= 125);
                            Ev::Pong(p.to_vec())
                        }
                        Message::Compressed { .. } => {
                            panic!("RSV1 accepted without allow_compressed")
                        }
                        Message::Close(code, reason) => {
                            assert!(reason.len() <= 123);
                            events.push(Ev::Close(code.map(CloseCode::as_u16), reason.to_string()));
                            return events;
                        }
                    };
                    events.push(ev);
                }
                Ok((n, None)) => {
                    pos += n;
                    break;
                }
                Err(e) => {
                    events.push(Ev::Fail(e.close_code().as_u16()));
                    return events;
                }
            }
        }
        assert!(pos <= partial.len());
        partial.drain(..pos);
        assert!(partial.len() <= 14 + 125, "kept {} bytes", partial.len());
        if !decoder.in_message() {
            message.clear();
            message.shrink_to_fit();
        }
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let [sel, ncuts, rest @ ..] = data else {
        return;
    };
    let role = if sel & 0x80 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let max = LIMITS[usize::from(sel & 7)];
    let ncuts = usize::from(ncuts & 7);
    if rest.len() < 2 * ncuts {
        return;
    }
    let (cut_bytes, stream) = rest.split_at(2 * ncuts);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    let split = run(role, max, stream, &cuts);
    if !cuts.is_empty() {
        let whole = run(role, max, stream, &[]);
        assert_eq!(whole, split, "split at {cuts:?} differs from whole");
    }
});
