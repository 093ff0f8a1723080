//! The server under abuse, over real loopback sockets against the real
//! binary: slowloris, garbage, huge length claims, slow readers, abrupt
//! disconnects, descriptor exhaustion, shutdown with open sessions and the
//! connection limit (PROTOCOL.md "Limits and bad input", "Shutdown").
//!
//! Every wait is bounded and waits on a condition; the heavy tests run one
//! at a time (they share two cores with everything else).

mod common;
use common::probe::{metric, wait_until};
use common::streams::reset;
use common::*;
use serde_json::json;
use socket2::{Domain, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The tests here each load the machine; run them one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    raise_nofile();
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- looking at the server process ------------------------------------

// ---- socket helpers ---------------------------------------------------

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// True when nothing is to be read and the peer has not closed.
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    let open = matches!((&*stream).read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

/// Waits until every stream has been closed by the peer (EOF or reset);
/// the time each was seen closed, None for those still open at `deadline`.
/// Data the peer sends before closing is read and discarded.
fn wait_all_closed(streams: &[TcpStream], deadline: Instant) -> Vec<Option<Instant>> {
    let mut closed: Vec<Option<Instant>> = vec![None; streams.len()];
    let mut buf = [0u8; 4096];
    for s in streams {
        s.set_nonblocking(true).unwrap();
    }
    loop {
        let open: Vec<usize> = (0..streams.len())
            .filter(|&i| closed[i].is_none())
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        if open.is_empty() || left.is_zero() {
            break;
        }
        let mut fds: Vec<libc::pollfd> = open
            .iter()
            .map(|&i| libc::pollfd {
                fd: streams[i].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = left.as_millis().min(1000) as libc::c_int;
        // SAFETY: `fds` is a valid array of pollfd for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        assert!(n >= 0, "poll failed");
        let now = Instant::now();
        for (k, pfd) in fds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            let i = open[k];
            loop {
                match (&streams[i]).read(&mut buf) {
                    Ok(0) => {
                        closed[i] = Some(now);
                        break;
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed[i] = Some(now);
                        break;
                    }
                }
            }
        }
    }
    for s in streams {
        let _ = s.set_nonblocking(false);
    }
    closed
}

/// Chat works: a message from `a` reaches `b`.
fn chat_round_trip(addr: SocketAddr) {
    let (mut a, mut b) = chat_pair(addr);
    a.send_json(json!({"type":"message","text":"still here?"}));
    assert_eq!(
        b.recv_json(),
        json!({"type":"message","text":"still here?"})
    );
}

fn healthz_ok(addr: SocketAddr) {
    let r = http_get(addr, "/healthz");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
}

fn echo_ok(ws: &mut Ws, text: &str) {
    ws.send_text(text);
    let f = ws.recv_data();
    assert_eq!((f.opcode, f.text()), (1, text));
}

// ---- the tests ----------------------------------------------------------

#[test]
fn slowloris_dribblers_are_closed_at_the_handshake_timeout() {
    let _g = one_at_a_time();
    let server = ServerProcess::start(&["--handshake-timeout", "2"]);
    const N: usize = 1000;
    let mut dribblers = Vec::with_capacity(N);
    let mut opened = Vec::with_capacity(N);
    for _ in 0..N {
        let mut s = connect(server.addr);
        opened.push(Instant::now());
        s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        dribblers.push(s);
    }
    let all_open = Instant::now();
    eprintln!(
        "slowloris: {N} dribblers connected in {:?}",
        all_open - opened[0]
    );

    // Everyone else is served as usual meanwhile.
    healthz_ok(server.addr);
    chat_round_trip(server.addr);
    // The dribblers and the /metrics request itself.
    assert!(wait_until(WAIT, || metric(
        server.addr,
        "chat_open_connections"
    ) == N as u64 + 1));

    // Another byte from each: the head is still not complete, and the
    // server has not given up on anyone early.
    for s in &mut dribblers {
        s.write_all(b"X").unwrap();
    }
    let early = opened[0] + Duration::from_millis(1900);
    if Instant::now() < early {
        let open = dribblers.iter().filter(|s| still_open(s)).count();
        assert_eq!(open, N, "dribblers closed before the timeout");
    }

    // Then each is closed at the timeout (2 s, on 50 ms timer ticks).
    let deadline = all_open + Duration::from_secs(2 + 4);
    let closed = wait_all_closed(&dribblers, deadline);
    let mut never = 0;
    let (mut soonest, mut latest) = (Duration::MAX, Duration::ZERO);
    for (at, t0) in closed.iter().zip(&opened) {
        match at {
            Some(at) => {
                let after = *at - *t0;
                soonest = soonest.min(after);
                latest = latest.max(after);
            }
            None => never += 1,
        }
    }
    eprintln!("slowloris: closed {soonest:?}..{latest:?} after connecting; {never} left open");
    assert_eq!(never, 0, "dribblers not closed by the server");
    assert!(
        soonest >= Duration::from_millis(1950),
        "closed early: {soonest:?}"
    );

    // And the server is still fine.
    healthz_ok(server.addr);
    assert!(wait_until(WAIT, || metric(
        server.addr,
        "chat_open_connections"
    ) == 1));
}

#[test]
fn garbage_before_the_handshake_gets_400_and_close() {
    let server = ServerProcess::start(&[]);
    let mut bystander = Ws::connect(server.addr, "/echo");
    echo_ok(&mut bystander, "before");

    for garbage in [
        &b"\x00\x01\x02\xff\xfe garbage \r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
        b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
    ] {
        let mut s = connect(server.addr);
        s.write_all(garbage).unwrap();
        let got = read_until_closed(&mut s).expect("server did not close");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 400 "), "{garbage:?} -> {text:?}");
    }

    echo_ok(&mut bystander, "after");
    healthz_ok(server.addr);
}

#[test]
fn garbage_after_the_handshake_gets_close_1002() {
    let server = ServerProcess::start(&[]);
    let mut bystander = Ws::connect(server.addr, "/echo");
    let (mut a, mut b) = chat_pair(server.addr);

    // Reserved bits and an unknown opcode: 1002, on both endpoints.
    let mut echo = Ws::connect(server.addr, "/echo");
    echo.send_raw(b"\xff\xff\xff\xff garbage garbage garbage");
    echo.expect_close(1002);
    a.send_raw(b"\x73\x85\x00\x00\x00\x00hello");
    a.expect_close(1002);
    assert_eq!(
        b.recv_json(),
        json!({"type":"left","reason":"disconnected"})
    );

    echo_ok(&mut bystander, "unaffected");
    healthz_ok(server.addr);
}

#[test]
fn a_frame_claiming_2_pow_63_bytes_is_refused_without_allocating() {
    let server = ServerProcess::start(&[]);
    let mut bystander = Ws::connect(server.addr, "/echo");
    let before = rss_kib(server.pid());

    for path in ["/echo", "/"] {
        let mut ws = Ws::connect(server.addr, path);
        if path == "/" {
            assert_eq!(ws.recv_json()["type"], "waiting");
        }
        // Binary, FIN, masked, 64-bit length 2^63 - 1, and a mask.
        let mut frame = vec![0x82, 0xff];
        frame.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        ws.send_raw(&frame);
        ws.expect_close(1009);
    }
    // A length with the top bit set is a protocol error (RFC 6455 5.2).
    let mut ws = Ws::connect(server.addr, "/echo");
    let mut frame = vec![0x81, 0xff];
    frame.extend_from_slice(&u64::MAX.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    ws.send_raw(&frame);
    ws.expect_close(1002);

    let after = rss_kib(server.pid());
    eprintln!("huge frame header: VmRSS {before} KiB before, {after} KiB after");
    assert!(
        after < before + 4 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    echo_ok(&mut bystander, "unaffected");
}

/// A client socket with a small receive buffer, connected to `addr`.
fn small_rcvbuf_connect(addr: SocketAddr) -> TcpStream {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn ws_on(mut stream: TcpStream, path: &str) -> Ws {
    stream.write_all(upgrade_request(path).as_bytes()).unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf, false);
    assert_eq!(resp.status, 101);
    Ws { stream, buf }
}

#[test]
fn slow_echo_reader_is_closed_and_memory_stays_bounded() {
    let _g = one_at_a_time();
    let server = ServerProcess::start(&[]);
    let pid = server.pid();
    let mut bystander = Ws::connect(server.addr, "/echo");
    let (mut a, mut b) = chat_pair(server.addr);
    let before = rss_kib(pid);

    // Sends 60 KiB messages and never reads its echoes.
    let mut slow = ws_on(small_rcvbuf_connect(server.addr), "/echo");
    let payload = vec![0x5a; 60 * 1024];
    let mut sent = 0usize;
    let mut during = before;
    let limit = 64 * 1024 * 1024;
    while sent < limit {
        for _ in 0..16 {
            slow.send_frame(true, 2, &payload);
            sent += payload.len();
        }
        during = during.max(rss_kib(pid));
        if metric(server.addr, "chat_slow_readers_closed_total") == 1 {
            break;
        }
    }
    assert_eq!(
        metric(server.addr, "chat_slow_readers_closed_total"),
        1,
        "no slow reader closed after {sent} bytes"
    );
    during = during.max(rss_kib(pid));

    // Others were not held up.
    echo_ok(&mut bystander, "not waiting on the slow one");
    a.send_json(json!({"type":"message","text":"hi"}));
    assert_eq!(b.recv_json()["text"], "hi");

    // The slow reader, reading at last, finds its echoes and then close 1008.
    let mut echoes = 0;
    let code = loop {
        let f = slow.try_recv(WAIT).expect("no close frame");
        match f.opcode {
            2 => echoes += 1,
            8 => break f.close_code(),
            op => panic!("unexpected opcode {op}"),
        }
    };
    assert_eq!(code, Some(1008));
    drop(slow);
    assert!(wait_until(WAIT, || metric(
        server.addr,
        "chat_open_connections"
    ) == 4));
    let after = rss_kib(pid);
    eprintln!(
        "slow echo reader: sent {} KiB, {echoes} echoes owed; server VmRSS before {before} KiB, \
         peak during {during} KiB, after {after} KiB",
        sent / 1024
    );
    assert!(during < before + 64 * 1024, "RSS grew by over 64 MiB");
    echo_ok(&mut bystander, "still fine");
}

/// The chat variant: a stranger who never reads, whose partner floods.
/// The rate limit is raised so the flood fills the reader's kernel buffers
/// and then its 1 MiB output cap within seconds (at the default 10/s it
/// would take minutes).
#[test]
fn slow_chat_reader_is_closed_and_its_partner_told() {
    let _g = one_at_a_time();
    let server = ServerProcess::start(&["--rate-limit", "100000"]);
    let pid = server.pid();
    let (mut c, mut d) = chat_pair(server.addr);
    let before = rss_kib(pid);

    // The reader connects first and waits; the flooder takes it.
    let mut reader = ws_on(small_rcvbuf_connect(server.addr), "/");
    assert_eq!(reader.recv_json()["type"], "waiting");
    let mut flooder = Ws::connect(server.addr, "/");
    assert_eq!(flooder.recv_json()["type"], "waiting");
    assert_eq!(flooder.recv_json()["type"], "paired");
    let text = "y".repeat(4000);
    let frame = frame_bytes(
        true,
        1,
        json!({"type":"message","text":text}).to_string().as_bytes(),
        Some([1, 2, 3, 4]),
    );
    let mut sent = 0usize;
    let mut during = before;
    while metric(server.addr, "chat_slow_readers_closed_total") == 0 {
        assert!(
            sent < 64 * 1024 * 1024,
            "no slow reader closed after {sent} bytes"
        );
        for _ in 0..16 {
            flooder.send_raw(&frame);
            sent += frame.len();
        }
        during = during.max(rss_kib(pid));
    }
    // The flooder hears that its stranger left; other pairs never waited.
    // (With several loops a relay that finds the inbox of its partner's
    // loop full is refused `rate_limited`: README "Threads".)
    let heard = loop {
        let v = flooder.recv_json();
        if v["type"] != "error" || v["code"] != "rate_limited" {
            break v;
        }
    };
    assert_eq!(heard, json!({"type":"left","reason":"disconnected"}));
    c.send_json(json!({"type":"message","text":"unaffected"}));
    assert_eq!(d.recv_json()["text"], "unaffected");
    // The reader, reading at last, finds the messages it was owed, then 1008.
    let mut owed = 0;
    let code = loop {
        let f = reader.try_recv(WAIT).expect("no close frame");
        match f.opcode {
            1 => owed += 1,
            8 => break f.close_code(),
            op => panic!("unexpected opcode {op}"),
        }
    };
    assert_eq!(code, Some(1008));
    let after = rss_kib(pid);
    eprintln!(
        "slow chat reader: partner sent {} KiB, {owed} messages owed; server VmRSS before \
         {before} KiB, peak during {during} KiB, after {after} KiB",
        sent / 1024
    );
    assert!(during < before + 64 * 1024, "RSS grew by over 64 MiB");
}

#[test]
fn dropped_connections_mid_handshake_and_mid_frame_leave_the_server_serving() {
    let _g = one_at_a_time();
    let server = ServerProcess::start(&[]);
    let mut bystander = Ws::connect(server.addr, "/echo");
    let request = upgrade_request("/echo");
    let half_request = &request.as_bytes()[..request.len() / 2];
    let half_frame = &frame_bytes(true, 1, &[b'x'; 300], Some([1, 2, 3, 4]))[..150];

    const N: usize = 2000;
    const BATCH: usize = 250;
    let mut dropped = 0;
    while dropped < N {
        let mut batch = Vec::with_capacity(BATCH);
        for k in 0..BATCH {
            let mut s = connect(server.addr);
            match k % 4 {
                // Half a request head.
                0 => s.write_all(half_request).unwrap(),
                // Nothing at all.
                1 => {}
                // A finished handshake, then half a frame (echo and chat).
                _ => {
                    let path = if k % 4 == 2 { "/echo" } else { "/" };
                    let mut ws = ws_on(s, path);
                    ws.send_raw(half_frame);
                    s = ws.stream;
                }
            }
            batch.push(s);
        }
        for (k, s) in batch.into_iter().enumerate() {
            if k % 2 == 0 {
                reset(s);
            } else {
                drop(s); // FIN
            }
        }
        dropped += BATCH;
    }

    healthz_ok(server.addr);
    echo_ok(&mut bystander, "still serving");
    let mut fresh = Ws::connect(server.addr, "/echo");
    echo_ok(&mut fresh, "new ones too");
    chat_round_trip(server.addr);
    // Everything dropped is gone: the bystander and `fresh` (and the
    // /metrics request itself) are what is left.
    assert!(
        wait_until(WAIT, || metric(server.addr, "chat_open_connections") == 3),
        "open connections: {}",
        metric(server.addr, "chat_open_connections")
    );
    assert!(wait_until(WAIT, || {
        let s = http_get(server.addr, "/stats");
        serde_json::from_slice::<serde_json::Value>(&s.body).unwrap()
            == json!({"online":0,"waiting":0,"chatting":0})
    }));
}

#[test]
fn descriptor_exhaustion_neither_spins_nor_drops_sessions() {
    let _g = one_at_a_time();
    const NOFILE: libc::rlim_t = 64;
    let server = ServerProcess::start_with(&[], |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe setrlimit between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: NOFILE,
                    rlim_max: NOFILE,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let pid = server.pid();

    // Open sessions until one is not answered.
    let mut sessions: Vec<Ws> = Vec::new();
    let unanswered = loop {
        assert!(
            sessions.len() < NOFILE as usize,
            "never ran out of descriptors"
        );
        let mut s = connect(server.addr);
        s.write_all(upgrade_request("/echo").as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut head = [0u8; 12];
        match s.read_exact(&mut head) {
            Ok(()) => {
                assert_eq!(&head, b"HTTP/1.1 101");
                s.set_read_timeout(Some(WAIT)).unwrap();
                let mut ws = Ws {
                    stream: s,
                    buf: Vec::new(),
                };
                // Skip the rest of the 101 head.
                while find(&ws.buf, b"\r\n\r\n").is_none() {
                    let mut chunk = [0u8; 256];
                    let n = ws.stream.read(&mut chunk).unwrap();
                    assert!(n > 0);
                    ws.buf.extend_from_slice(&chunk[..n]);
                }
                let end = find(&ws.buf, b"\r\n\r\n").unwrap() + 4;
                ws.buf.drain(..end);
                sessions.push(ws);
            }
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                    "{e}"
                );
                break s;
            }
        }
    };
    let full = sessions.len();
    eprintln!("EMFILE: {full} sessions open under RLIMIT_NOFILE={NOFILE}");
    assert!(full > 10, "only {full} sessions before EMFILE");

    // Existing sessions keep working.
    for (i, ws) in sessions.iter_mut().enumerate() {
        echo_ok(ws, &format!("session {i}"));
    }

    // The server does not spin while it cannot accept.
    let t0 = cpu_ticks(pid);
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(1)); // a measuring window, not a wait for anything
    let used = (cpu_ticks(pid) - t0) as f64 / clock_ticks_per_sec() as f64;
    let share = used / w0.elapsed().as_secs_f64();
    eprintln!(
        "EMFILE: server CPU {:.1}% of a core while out of descriptors",
        share * 100.0
    );
    assert!(share < 0.5, "server spins at {:.0}% CPU", share * 100.0);

    // Descriptors free up: the waiting connection is answered, and new
    // ones are served.
    for ws in sessions.drain(..5) {
        drop(ws);
    }
    let mut waiting = unanswered;
    waiting.set_read_timeout(Some(WAIT)).unwrap();
    let resp = read_response(&mut waiting, &mut Vec::new(), false);
    assert_eq!(resp.status, 101);
    let mut fresh = Ws::connect(server.addr, "/echo");
    echo_ok(&mut fresh, "served again");
    for ws in &mut sessions {
        echo_ok(ws, "still here");
    }

    // The log says so once, not at every retry.
    let mut log = Vec::new();
    assert!(wait_until(WAIT, || {
        log.extend(server.log.try_iter());
        log.iter().any(|l| l.contains("accepting again"))
    }));
    let warnings = log.iter().filter(|l| l.contains("accept: ")).count();
    eprintln!("EMFILE: {warnings} accept warning(s); {:?}", log.last());
    assert_eq!(warnings, 1, "{log:#?}");
}

#[test]
fn sigterm_closes_every_session_with_1001_and_exits_0() {
    let _g = one_at_a_time();
    let mut server = ServerProcess::start(&[]);
    let mut sessions: Vec<Ws> = Vec::new();
    for i in 0..100 {
        let path = if i % 2 == 0 { "/echo" } else { "/" };
        sessions.push(Ws::connect(server.addr, path));
    }
    echo_ok(&mut sessions[0], "before");
    assert_eq!(metric(server.addr, "chat_open_connections"), 101);

    let sent = Instant::now();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) }, 0);
    for (i, ws) in sessions.iter_mut().enumerate() {
        // Chat sessions see waiting/paired first; then the close.
        let f = loop {
            let f = ws.recv_data();
            if f.opcode == 8 {
                break f;
            }
            assert_eq!(f.opcode, 1, "session {i}: {f:?}");
        };
        assert_eq!(f.close_code(), Some(1001), "session {i}");
    }
    // Answer the closes, as clients do; the server then has nobody left.
    for ws in &mut sessions {
        let _ = ws.stream.write_all(&frame_bytes(
            true,
            8,
            &1001u16.to_be_bytes(),
            Some([1, 2, 3, 4]),
        ));
    }
    let code = server.wait_exit(Duration::from_secs(6));
    let took = sent.elapsed();
    eprintln!("SIGTERM: exited {code:?} after {took:?}");
    assert_eq!(code, Some(0));
    // Every close handshake finished: nothing to wait the 5 s grace for,
    // even though the clients keep their sockets open.
    assert!(took < Duration::from_secs(4), "waited {took:?} for nobody");
    for ws in &mut sessions {
        assert!(read_until_closed(&mut ws.stream).is_some());
    }
    assert!(TcpStream::connect(server.addr).is_err(), "still accepting");
}

#[test]
fn sigterm_waits_at_most_5s_for_clients_that_never_answer() {
    let _g = one_at_a_time();
    let mut server = ServerProcess::start(&[]);
    let mut silent = Ws::connect(server.addr, "/echo");
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) }, 0);
    assert_eq!(silent.recv_data().close_code(), Some(1001));
    let code = server.wait_exit(Duration::from_secs(7));
    let took = sent.elapsed();
    eprintln!("SIGTERM with a silent client: exited {code:?} after {took:?}");
    assert_eq!(code, Some(0));
    assert!(
        took >= Duration::from_millis(4900),
        "gave up early: {took:?}"
    );
}

#[test]
fn over_max_connections_new_ones_are_closed_at_once() {
    let server = ServerProcess::start(&["--max-connections", "10"]);
    let mut sessions: Vec<Ws> = (0..10).map(|_| Ws::connect(server.addr, "/echo")).collect();

    let mut over = connect(server.addr);
    let asked = Instant::now();
    let _ = over.write_all(upgrade_request("/echo").as_bytes());
    let got = read_until_closed(&mut over).expect("11th connection not closed");
    assert!(got.is_empty(), "11th connection was answered: {got:?}");
    assert!(asked.elapsed() < Duration::from_secs(2), "not at once");

    for (i, ws) in sessions.iter_mut().enumerate() {
        echo_ok(ws, &format!("unaffected {i}"));
    }
    // Two leave; new ones are served again.
    drop(sessions.pop());
    drop(sessions.pop());
    let served = wait_until(WAIT, || {
        let mut s = connect(server.addr);
        let _ = s.write_all(upgrade_request("/echo").as_bytes());
        let mut head = [0u8; 12];
        let ok = s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 101";
        if ok {
            sessions.push(Ws {
                stream: s,
                buf: Vec::new(),
            });
        }
        ok
    });
    assert!(served, "a freed slot was not reused");
    let mut refused = None;
    assert!(wait_until(WAIT, || {
        refused = try_metric(server.addr, "chat_connections_refused_total");
        refused.is_some()
    }));
    assert!(refused >= Some(1), "{refused:?}");
}

/// One value from /metrics, or None if the connection was refused.
fn try_metric(addr: SocketAddr, name: &str) -> Option<u64> {
    let mut s = connect(addr);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let all = read_until_closed(&mut s)?;
    let text = String::from_utf8(all).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
}
