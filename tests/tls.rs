//! In-binary TLS (`--tls-cert`/`--tls-key`) over real sockets, with a
//! certificate made in the test: every door over HTTPS/wss, TLS 1.2 and
//! 1.3 with ALPN http/1.1, bad input on the TLS port, the close_notify
//! exchange, SIGHUP reloads (good and broken), and the CLI's checks.

mod common;
use common::probe::wait_until;
use common::tls::*;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

fn start(cert: &ServerCert, extra: &[&str]) -> ServerProcess {
    let mut args = vec![
        "--tls-cert",
        cert.cert_path.to_str().unwrap(),
        "--tls-key",
        cert.key_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

#[test]
fn every_door_works_over_tls_1_3_and_1_2() {
    let pki = TestPki::new("doors");
    let cert = pki.server_cert("server");
    let server = start(&cert, &[]);
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let client = pki.client(Some(versions));
        let s = tls_connect(server.addr, &client);
        assert_eq!(s.conn.protocol_version(), Some(versions[0].version));
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(peer_cert(&s), cert.der);

        let page = https_get(server.addr, &client, "/");
        assert_eq!(page.status, 200);
        assert!(String::from_utf8_lossy(&page.body).contains("wss:"));
        let health = https_get(server.addr, &client, "/healthz");
        assert_eq!((health.status, &health.body[..]), (200, &b"ok\n"[..]));
        let stats = https_get(server.addr, &client, "/stats");
        assert_eq!(stats.status, 200);
        let stats: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
        assert!(stats["online"].is_u64());
        let metrics = String::from_utf8(https_get(server.addr, &client, "/metrics").body).unwrap();
        assert!(metrics.contains("# TYPE chat_tls_handshakes_total counter"));
        assert!(metrics.contains("chat_tls_handshake_failures_total{kind=\"bad_message\"} "));

        // Echo: small, and larger than one TLS record (16 KiB) so that one
        // message spans records both ways.
        let mut ws = Wss::connect(server.addr, &client, "/echo");
        ws.send_text("hello over TLS");
        assert_eq!(ws.recv().text(), "hello over TLS");
        let big: Vec<u8> = (0..60_000).map(|i| i as u8).collect();
        ws.send_frame(true, 2, &big);
        let f = ws.recv();
        assert_eq!((f.opcode, f.payload), (2, big));
        // Many messages in one write: all come back, none stuck in TLS.
        let mut burst = Vec::new();
        for i in 0..200 {
            burst.extend(frame_bytes(
                true,
                1,
                format!("m{i}").as_bytes(),
                Some([1, 2, 3, 4]),
            ));
        }
        ws.s.write_all(&burst).unwrap();
        for i in 0..200 {
            assert_eq!(ws.recv().text(), format!("m{i}"));
        }
    }
    assert!(tls_metric(server.addr, &pki.client(None), "chat_tls_handshakes_total") >= 10);
}

#[test]
fn chat_pairs_and_relays_over_wss() {
    let pki = TestPki::new("chat");
    let cert = pki.server_cert("server");
    let server = start(&cert, &[]);
    let client = pki.client(None);
    let mut a = Wss::connect(server.addr, &client, "/");
    assert_eq!(a.recv_json()["type"], "waiting");
    let mut b = Wss::connect(server.addr, &client, "/");
    assert_eq!(b.recv_json()["type"], "waiting");
    assert_eq!(a.recv_json()["type"], "paired");
    assert_eq!(b.recv_json()["type"], "paired");
    a.send_text(r#"{"type":"message","text":"hi b"}"#);
    let got = b.recv_json();
    assert_eq!(
        (got["type"].as_str(), got["text"].as_str()),
        (Some("message"), Some("hi b"))
    );
    b.send_text(r#"{"type":"message","text":"hi a"}"#);
    assert_eq!(a.recv_json()["text"], "hi a");
}

/// A clean WebSocket close ends with close_notify from the server (after
/// its close frame), and a client's close_notify on HTTPS is answered
/// with the server's own.
#[test]
fn a_clean_close_exchanges_close_notify() {
    let pki = TestPki::new("close");
    let cert = pki.server_cert("server");
    let server = start(&cert, &[]);
    let client = pki.client(None);
    let mut ws = Wss::connect(server.addr, &client, "/echo");
    ws.send_frame(true, 8, &1000u16.to_be_bytes());
    let f = ws.recv();
    assert_eq!((f.opcode, f.close_code()), (8, Some(1000)));
    ws.s.conn.send_close_notify();
    ws.s.flush().unwrap();
    assert_eq!(ws.read_to_end(WAIT), TlsEnd::CloseNotify);

    let mut s = tls_connect(server.addr, &client);
    write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_tls_response(&mut s, &mut Vec::new()).status, 200);
    s.conn.send_close_notify();
    s.flush().unwrap();
    assert_eq!(read_to_end(&mut s, WAIT), TlsEnd::CloseNotify);
    assert!(wait_until(WAIT, || tls_metric(
        server.addr,
        &client,
        "chat_open_connections"
    ) == 1));
}

/// Garbage, a plain HTTP request and a truncated ClientHello each close
/// their own connection (with an alert where TLS has one to send), are
/// counted by kind, and an open wss session next to them keeps talking.
#[test]
fn bad_input_on_the_tls_port_closes_only_that_connection() {
    let pki = TestPki::new("bad");
    let cert = pki.server_cert("server");
    let server = start(&cert, &["--handshake-timeout", "1"]);
    let client = pki.client(None);
    let mut ws = Wss::connect(server.addr, &client, "/echo");

    // Plain HTTP: answered with a TLS alert record (content type 21), then closed.
    let mut plain = connect(server.addr);
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_until_closed(&mut plain).expect("closed");
    assert_eq!(got.first(), Some(&21), "an alert record: {got:?}");

    // Garbage that looks like nothing.
    let mut junk = connect(server.addr);
    junk.write_all(&[0xff; 64]).unwrap();
    assert!(read_until_closed(&mut junk).is_some());

    // The first bytes of a real ClientHello, then silence: the handshake
    // timeout ends it.
    let mut hello = Vec::new();
    {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut conn = rustls::ClientConnection::new(client.clone(), name).unwrap();
        conn.write_tls(&mut hello).unwrap();
    }
    let mut truncated = connect(server.addr);
    truncated.write_all(&hello[..hello.len() / 2]).unwrap();
    let started = std::time::Instant::now();
    assert!(read_until_closed(&mut truncated).is_some());
    assert!(started.elapsed() >= Duration::from_millis(900));

    // And a truncated ClientHello followed by the client's FIN.
    let mut cut = connect(server.addr);
    cut.write_all(&hello[..hello.len() / 2]).unwrap();
    cut.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_until_closed(&mut cut).is_some());

    ws.send_text("still here");
    assert_eq!(ws.recv().text(), "still here");
    let kind = |k: &str| {
        tls_metric(
            server.addr,
            &client,
            &format!("chat_tls_handshake_failures_total{{kind=\"{k}\"}}"),
        )
    };
    assert_eq!(kind("bad_message"), 2);
    assert_eq!(kind("timeout"), 1);
    assert_eq!(kind("eof"), 1);
    // Nothing of them is left: the wss session and the metrics request.
    assert!(wait_until(WAIT, || tls_metric(
        server.addr,
        &client,
        "chat_open_connections"
    ) == 2));
}

/// A client that offers only h2 in ALPN gets the no_application_protocol
/// alert (the server speaks http/1.1 only) and is counted `incompatible`;
/// one with no ALPN at all is served.
#[test]
fn alpn_without_http11_is_refused_with_an_alert() {
    let pki = TestPki::new("alpn");
    let cert = pki.server_cert("server");
    let server = start(&cert, &[]);
    let mut h2_only = (*pki.client(None)).clone();
    h2_only.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = connect(server.addr);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(h2_only), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let err = loop {
        match tls.conn.complete_io(&mut tls.sock) {
            Ok(_) if tls.conn.is_handshaking() => continue,
            Ok(_) => panic!("handshake completed with h2 only"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("NoApplicationProtocol"), "{err}");
    let mut none = (*pki.client(None)).clone();
    none.alpn_protocols.clear();
    let none = std::sync::Arc::new(none);
    let s = tls_connect(server.addr, &none);
    assert_eq!(s.conn.alpn_protocol(), None);
    assert_eq!(https_get(server.addr, &none, "/healthz").status, 200);
    assert_eq!(
        tls_metric(
            server.addr,
            &none,
            "chat_tls_handshake_failures_total{kind=\"incompatible\"}"
        ),
        1
    );
}

/// SIGHUP: a new certificate is served to new connections while an old
/// connection keeps talking; a broken one is logged and ignored.
#[test]
fn sighup_reloads_the_certificate_and_ignores_a_broken_one() {
    let pki = TestPki::new("reload");
    let first = pki.server_cert("first");
    let server = start(&first, &[]);
    let client = pki.client(None);
    let mut old = Wss::connect(server.addr, &client, "/echo");
    assert_eq!(peer_cert(&old.s), first.der);

    // The new certificate and key replace the files in place, as certbot's
    // renewal (through its symlinks) does.
    let second = pki.server_cert("second");
    std::fs::copy(&second.cert_path, &first.cert_path).unwrap();
    std::fs::copy(&second.key_path, &first.key_path).unwrap();
    hup(&server);
    assert!(wait_until(WAIT, || {
        peer_cert(&tls_connect(server.addr, &client)) == second.der
    }));
    assert!(wait_for_log(&server, "reloaded the TLS certificate"));
    old.send_text("old connection");
    assert_eq!(old.recv().text(), "old connection");

    // A broken key file: logged, the second certificate stays.
    std::fs::write(&first.key_path, "not a key\n").unwrap();
    hup(&server);
    assert!(wait_for_log(&server, "not reloaded"));
    assert_eq!(peer_cert(&tls_connect(server.addr, &client)), second.der);
    // A certificate that does not match the key: refused too.
    std::fs::copy(&second.key_path, &first.key_path).unwrap();
    let third = pki.server_cert("third");
    std::fs::copy(&third.cert_path, &first.cert_path).unwrap();
    hup(&server);
    assert!(wait_for_log(&server, "not reloaded"));
    assert_eq!(peer_cert(&tls_connect(server.addr, &client)), second.der);
    assert_eq!(
        tls_metric(
            server.addr,
            &client,
            "chat_tls_reloads_total{result=\"ok\"}"
        ),
        1
    );
    assert_eq!(
        tls_metric(
            server.addr,
            &client,
            "chat_tls_reloads_total{result=\"failed\"}"
        ),
        2
    );
    old.send_text("still talking");
    assert_eq!(old.recv().text(), "still talking");
}

fn hup(server: &ServerProcess) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) }, 0);
}

fn wait_for_log(server: &ServerProcess, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while let Ok(line) = server
        .log
        .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        if line.contains(needle) {
            return true;
        }
    }
    false
}

#[test]
fn cert_without_key_or_a_bad_file_exits_2_naming_the_option() {
    let pki = TestPki::new("cli");
    let cert = pki.server_cert("server");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chat"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let c = cert.cert_path.to_str().unwrap();
    let k = cert.key_path.to_str().unwrap();
    let (code, err) = run(&["--tls-cert", c], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--tls-key"), "{err}");
    let (code, err) = run(&[], &[("CHAT_TLS_KEY", k)]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--tls-cert"), "{err}");
    let (code, err) = run(&["--tls-cert", k, "--tls-key", k], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no PEM certificate"), "{err}");
    let (code, err) = run(&["--tls-cert", c, "--tls-key", c], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("private key"), "{err}");
    let (code, err) = run(&["--tls-cert", c, "--tls-key", "/nonexistent/key.pem"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read /nonexistent/key.pem"), "{err}");
    // From the environment, both: it starts, and says https.
    let server = ServerProcess::start_with(&[], |cmd| {
        cmd.env("CHAT_TLS_CERT", c).env("CHAT_TLS_KEY", k);
    });
    let s = tls_connect(server.addr, &pki.client(None));
    assert_eq!(peer_cert(&s), cert.der);
}

/// Plaintext rustls decrypted while the engine paused (pipelined requests
/// waiting for their answers to drain) is handed over when it resumes, and
/// the client's close_notify after them is seen after them: every answer
/// arrives.
#[test]
fn pipelined_requests_over_tls_are_all_answered() {
    let pki = TestPki::new("pipeline");
    let cert = pki.server_cert("server");
    let server = start(&cert, &[]);
    let mut s = tls_connect(server.addr, &pki.client(None));
    let n = 400;
    let mut all = Vec::new();
    for _ in 0..n {
        all.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    s.write_all(&all).unwrap();
    s.conn.send_close_notify();
    s.flush().unwrap();
    let mut buf = Vec::new();
    for i in 0..n {
        let resp = read_tls_response(&mut s, &mut buf);
        assert_eq!(resp.status, 200, "answer {i}");
    }
    let mut rest = Vec::new();
    s.sock.set_read_timeout(Some(WAIT)).unwrap();
    let end = s.read_to_end(&mut rest);
    assert!(end.is_ok(), "{end:?}");
    assert!(rest.is_empty());
}

/// Records that arrive a few bytes at a time (the ClientHello, the
/// request, a 40 KB message spanning records) are joined across reads:
/// the partial record a connection keeps between reads is not lost.
#[test]
fn records_split_into_small_writes_are_joined() {
    let pki = TestPki::new("split");
    let cert = pki.server_cert("server");
    let server = start(&cert, &[]);
    let mut tcp = connect(server.addr);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(pki.client(None), name).unwrap();
    let payload: Vec<u8> = (0..40_000).map(|i| (i % 251) as u8).collect();
    let upgrade = format!(
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut plaintext = upgrade.into_bytes();
    plaintext.extend(frame_bytes(true, 2, &payload, Some([9, 8, 7, 6])));
    conn.writer().write_all(&plaintext).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    tcp.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    while std::time::Instant::now() < deadline {
        // Our records out in 7-byte writes.
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        for piece in out.chunks(7) {
            tcp.write_all(piece).unwrap();
        }
        match conn.read_tls(&mut tcp) {
            Ok(0) => break,
            Ok(_) => {
                conn.process_new_packets().unwrap();
                let mut buf = [0u8; 65536];
                while let Ok(n) = conn.reader().read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            }
            Err(_) => {}
        }
        if let Some(head_end) = find(&got, b"\r\n\r\n") {
            if let Some((frame, _)) = parse_frame(&got[head_end + 4..]) {
                assert!(got.starts_with(b"HTTP/1.1 101"));
                assert_eq!((frame.opcode, frame.payload), (2, payload));
                return;
            }
        }
    }
    panic!("no echo; got {} bytes", got.len());
}
