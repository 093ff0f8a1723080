//! Zero heap allocations per echoed or relayed message in steady state,
//! counted by a global allocator around the real server running on a
//! thread of this process. The client side reads and writes fixed buffers,
//! so every allocation counted in the measured stretch is the server's.
//!
//! One test function only: other tests on other threads would allocate.
//! It covers one loop (echo, relay) and a relay between two loops of
//! `--threads 2` (through the inboxes).

use chat::server::{Config, Server, Threads};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::SeqCst)
}

fn start_server() -> SocketAddr {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        // Relay as fast as the test can go.
        rate_limit: 1_000_000,
        // The compressed messages below are compressed back.
        deflate_min_size: 64,
        ..Config::default()
    };
    let server = Server::bind(config).unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || server.run());
    addr
}

/// `--threads 2`: relays between loops go through the inboxes.
fn start_threads() -> SocketAddr {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        rate_limit: 1_000_000,
        threads: 2,
        ..Config::default()
    };
    let server = Threads::bind(config).unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || server.run());
    addr
}

/// A counter from `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap()
        .parse()
        .unwrap()
}

/// A chat pair whose two clients are on different loops (found by trying:
/// the kernel picks the loop).
fn cross_pair(addr: SocketAddr, frame: &[u8], buf: &mut [u8; 256]) -> (TcpStream, TcpStream) {
    for _ in 0..50 {
        let mut a = ws_connect(addr, "/");
        read_frame(&mut a, buf); // waiting
        let mut b = ws_connect(addr, "/");
        read_frame(&mut b, buf); // waiting
        read_frame(&mut a, buf); // paired
        read_frame(&mut b, buf); // paired
        let before = metric(addr, "chat_cross_thread_relays_total");
        a.write_all(frame).unwrap();
        read_frame(&mut b, buf);
        if metric(addr, "chat_cross_thread_relays_total") > before {
            return (a, b);
        }
    }
    panic!("no pair across the two loops in 50 tries");
}

fn ws_connect(addr: SocketAddr, path: &str) -> TcpStream {
    ws_connect_with(addr, path, "")
}

/// With `extra` header lines (e.g. a permessage-deflate offer).
fn ws_connect_with(addr: SocketAddr, path: &str, extra: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .unwrap();
    // Read the 101 head byte by byte up to the blank line.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s
}

fn masked(payload: &[u8]) -> Vec<u8> {
    masked_with(0x81, payload)
}

/// A masked frame with first byte `b0` (0xC1: a compressed text message).
fn masked_with(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![b0, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads one small unmasked text frame into `buf`; returns its payload length.
fn read_frame(s: &mut TcpStream, buf: &mut [u8; 256]) -> usize {
    read_frame_with(s, 0x81, buf)
}

/// Reads one small text frame, compressed (its length over
/// `deflate_min_size`) or not.
fn read_text_frame(s: &mut TcpStream, buf: &mut [u8; 256]) -> usize {
    s.read_exact(&mut buf[..2]).unwrap();
    assert!(buf[0] == 0x81 || buf[0] == 0xC1, "expected a text frame");
    let len = (buf[1] & 0x7f) as usize;
    assert!(len < 126);
    s.read_exact(&mut buf[..len]).unwrap();
    len
}

/// Reads one small unmasked frame whose first byte must be `b0`.
fn read_frame_with(s: &mut TcpStream, b0: u8, buf: &mut [u8; 256]) -> usize {
    s.read_exact(&mut buf[..2]).unwrap();
    assert_eq!(buf[0], b0, "expected a frame starting {b0:#x}");
    let len = (buf[1] & 0x7f) as usize;
    assert!(len < 126);
    s.read_exact(&mut buf[..len]).unwrap();
    len
}

fn echo_round_trips(s: &mut TcpStream, frame: &[u8], n: usize, buf: &mut [u8; 256]) {
    for _ in 0..n {
        s.write_all(frame).unwrap();
        let len = read_frame(s, buf);
        assert_eq!(len, frame.len() - 6);
    }
}

fn relay_round_trips(
    a: &mut TcpStream,
    b: &mut TcpStream,
    frame: &[u8],
    n: usize,
    buf: &mut [u8; 256],
) {
    for _ in 0..n {
        a.write_all(frame).unwrap();
        read_frame_with(b, frame[0], buf);
        b.write_all(frame).unwrap();
        read_frame_with(a, frame[0], buf);
    }
}

/// Compressed messages both ways: each is inflated, handled, and
/// compressed again by the server.
fn compressed_round_trips(s: &mut TcpStream, frame: &[u8], n: usize, buf: &mut [u8; 256]) {
    for _ in 0..n {
        s.write_all(frame).unwrap();
        read_frame_with(s, 0xC1, buf);
    }
}

/// Raw deflate of one message, sync-flushed, its 4-byte tail stripped
/// (RFC 7692 §7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    out.truncate(out.len() - 4);
    out
}

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

#[test]
fn steady_state_echo_and_relay_allocate_nothing() {
    let addr = start_server();
    let mut buf = [0u8; 256];

    // Echo: 32-byte messages.
    let mut echo = ws_connect(addr, "/echo");
    let frame = masked(&[b'x'; 32]);
    echo_round_trips(&mut echo, &frame, 2_000, &mut buf);
    let before = allocations();
    echo_round_trips(&mut echo, &frame, 20_000, &mut buf);
    let echo_allocs = allocations() - before;
    println!("echo: {echo_allocs} allocations over 20000 messages");

    // Chat relay between a pair.
    let mut a = ws_connect(addr, "/");
    read_frame(&mut a, &mut buf); // waiting
    let mut b = ws_connect(addr, "/");
    read_frame(&mut b, &mut buf); // waiting
    read_frame(&mut a, &mut buf); // paired
    read_frame(&mut b, &mut buf); // paired
    let frame = masked(br#"{"type":"message","text":"ping pong 0123456789"}"#);
    relay_round_trips(&mut a, &mut b, &frame, 1_000, &mut buf);
    let before = allocations();
    relay_round_trips(&mut a, &mut b, &frame, 10_000, &mut buf);
    let relay_allocs = allocations() - before;
    println!("relay: {relay_allocs} allocations over 20000 messages");

    // Compressed echo (text over --deflate-min-size, so it is compressed
    // back) and compressed relay.
    let long = br#"{"type":"message","text":"a chat line long enough to be compressed, a chat line long enough to be compressed, a chat line long enough to be compressed"}"#;
    assert!(long.len() >= 64);
    let zframe = masked_with(0xC1, &deflate(long));
    let mut zecho = ws_connect_with(addr, "/echo", OFFER);
    compressed_round_trips(&mut zecho, &zframe, 2_000, &mut buf);
    let before = allocations();
    compressed_round_trips(&mut zecho, &zframe, 20_000, &mut buf);
    let zecho_allocs = allocations() - before;
    println!("compressed echo: {zecho_allocs} allocations over 20000 messages");

    let mut a = ws_connect_with(addr, "/", OFFER);
    read_text_frame(&mut a, &mut buf); // waiting
    let mut b = ws_connect_with(addr, "/", OFFER);
    read_text_frame(&mut b, &mut buf); // waiting
    read_text_frame(&mut a, &mut buf); // paired
    read_text_frame(&mut b, &mut buf); // paired
    relay_round_trips(&mut a, &mut b, &zframe, 1_000, &mut buf);
    let before = allocations();
    relay_round_trips(&mut a, &mut b, &zframe, 10_000, &mut buf);
    let zrelay_allocs = allocations() - before;
    println!("compressed relay: {zrelay_allocs} allocations over 20000 messages");

    // Chat relay between two loops of `--threads 2`.
    let addr = start_threads();
    let (mut a, mut b) = cross_pair(addr, &frame, &mut buf);
    relay_round_trips(&mut a, &mut b, &frame, 1_000, &mut buf);
    let before = allocations();
    relay_round_trips(&mut a, &mut b, &frame, 10_000, &mut buf);
    let cross_allocs = allocations() - before;
    println!("relay across loops: {cross_allocs} allocations over 20000 messages");

    assert_eq!(echo_allocs, 0, "echo allocates in steady state");
    assert_eq!(relay_allocs, 0, "relay allocates in steady state");
    assert_eq!(zecho_allocs, 0, "compressed echo allocates in steady state");
    assert_eq!(
        zrelay_allocs, 0,
        "compressed relay allocates in steady state"
    );
    assert_eq!(
        cross_allocs, 0,
        "relay across loops allocates in steady state"
    );
}
