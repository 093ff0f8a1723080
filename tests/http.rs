//! Plain HTTP over real sockets against the real binary: every door in
//! PROTOCOL.md's table, keep-alive, pipelining, and the error answers.

mod common;
use common::*;
use std::io::Write;

#[test]
fn healthz_stats_metrics_and_page() {
    let server = ServerProcess::start(&[]);
    let r = http_get(server.addr, "/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.body, b"ok\n");

    let r = http_get(server.addr, "/stats");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v, serde_json::json!({"online":0,"waiting":0,"chatting":0}));

    let r = http_get(server.addr, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.contains("# TYPE chat_online gauge"), "{text}");
    assert!(
        text.contains("chat_http_requests_total{class=\"2xx\"} 2"),
        "{text}"
    );

    let r = http_get(server.addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&r.body).contains("<html") || !r.body.is_empty());
}

#[test]
fn not_found_method_not_allowed_and_head() {
    let server = ServerProcess::start(&[]);
    assert_eq!(http_get(server.addr, "/nope").status, 404);

    let mut s = connect(server.addr);
    s.write_all(b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\nHEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    // The connection goes on after a 405 without a body.
    let r = read_response(&mut s, &mut buf, true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("3"));
    assert!(r.body.is_empty());
}

#[test]
fn pipelined_requests_are_answered_in_order_in_one_write() {
    let server = ServerProcess::start(&[]);
    let mut s = connect(server.addr);
    let mut req = Vec::new();
    for path in ["/healthz", "/nope", "/stats", "/healthz"] {
        req.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    s.write_all(&req).unwrap();
    let mut buf = Vec::new();
    let statuses: Vec<u16> = (0..4)
        .map(|_| read_response(&mut s, &mut buf, false).status)
        .collect();
    assert_eq!(statuses, vec![200, 404, 200, 200]);
}

#[test]
fn http10_keep_alive_and_close() {
    let server = ServerProcess::start(&[]);
    let mut s = connect(server.addr);
    s.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    // Plain HTTP/1.0: answered, then closed.
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.body, b"ok\n");
    assert_eq!(read_until_closed(&mut s), Some(Vec::new()));

    // HTTP/1.1 with Connection: close.
    let mut s = connect(server.addr);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(read_until_closed(&mut s).is_some());
}

#[test]
fn garbage_gets_400_then_close() {
    let server = ServerProcess::start(&[]);
    let mut s = connect(server.addr);
    s.write_all(b"\x16\x03\x01 this is not http\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.status, 400);
    assert!(read_until_closed(&mut s).is_some());
    // The server still serves.
    assert_eq!(http_get(server.addr, "/healthz").status, 200);
}

#[test]
fn oversized_heads_get_431_or_414() {
    let server = ServerProcess::start(&[]);
    let mut s = connect(server.addr);
    let long_header = "x".repeat(10 * 1024);
    let _ = write!(s, "GET / HTTP/1.1\r\nX-Big: {long_header}\r\n\r\n");
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.status, 431);

    let mut s = connect(server.addr);
    let long_path = "a".repeat(10 * 1024);
    let _ = write!(s, "GET /{long_path} HTTP/1.1\r\n\r\n");
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.status, 414);
}

/// Every `Connection` header line of a response.
fn connection_lines(r: &Response) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn upgrade_required_names_upgrade_in_one_connection_header() {
    let server = ServerProcess::start(&[]);
    // A plain GET of the WebSocket endpoint, then an upgrade in another
    // version, on one keep-alive connection; then HTTP/1.0 keep-alive and
    // a closing request, each on its own.
    let mut s = connect(server.addr);
    let v8 = upgrade_request(
        "/echo",
        &format!("Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {KEY}\r\n"),
    );
    write!(s, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n{v8}").unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        let r = read_response(&mut s, &mut buf, false);
        assert_eq!(r.status, 426);
        assert_eq!(connection_lines(&r), ["Upgrade"]);
        assert_eq!(r.header("upgrade"), Some("websocket"));
        assert_eq!(r.header("sec-websocket-version"), Some("13"));
    }
    for (req, value) in [
        (
            "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "keep-alive, Upgrade",
        ),
        (
            "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "close, Upgrade",
        ),
    ] {
        let mut s = connect(server.addr);
        s.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut s, &mut Vec::new(), false);
        assert_eq!(r.status, 426, "{req}");
        assert_eq!(connection_lines(&r), [value], "{req}");
    }
}

#[test]
fn absolute_form_targets_are_routed_by_their_path() {
    let server = ServerProcess::start(&[]);
    let mut s = connect(server.addr);
    let authority = server.addr;
    write!(
        s,
        "GET http://{authority}/stats?x=1 HTTP/1.1\r\nHost: {authority}\r\n\r\n\
         HEAD HTTP://{authority}/healthz HTTP/1.1\r\nHost: {authority}\r\n\r\n\
         GET http://{authority}/nope HTTP/1.1\r\nHost: {authority}\r\n\r\n\
         GET * HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["online"], 0, "{v}");
    let r = read_response(&mut s, &mut buf, true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("3")));
    assert_eq!(read_response(&mut s, &mut buf, false).status, 404);
    assert_eq!(read_response(&mut s, &mut buf, false).status, 404);
}

#[test]
fn http11_without_host_gets_400_then_close() {
    let server = ServerProcess::start(&[]);
    let mut s = connect(server.addr);
    s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.status, 400);
    assert!(read_until_closed(&mut s).is_some());
    // HTTP/1.0 may leave it out.
    let mut s = connect(server.addr);
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut Vec::new(), false).status, 200);
}

#[test]
fn upgrade_with_a_body_gets_400_then_close() {
    let server = ServerProcess::start(&[]);
    for body_header in ["Content-Length: 6\r\n", "Transfer-Encoding: chunked\r\n"] {
        let mut s = connect(server.addr);
        let head = upgrade_request(
            "/echo",
            &format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{body_header}"),
        );
        // The "body" is a masked text frame: after a 101 it would be echoed.
        let mut req = head.into_bytes();
        req.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        s.write_all(&req).unwrap();
        let r = read_response(&mut s, &mut Vec::new(), false);
        assert_eq!(r.status, 400, "{body_header}");
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(read_until_closed(&mut s), Some(Vec::new()), "{body_header}");
    }
}

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
    )
}

#[test]
fn bad_upgrades_get_their_answers() {
    let server = ServerProcess::start(&["--allowed-origin", "https://good.example"]);
    let cases = [
        (upgrade_request("/echo", "Sec-WebSocket-Version: 13\r\n"), 400),
        (
            upgrade_request("/echo", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n"),
            400,
        ),
        (
            upgrade_request("/echo", &format!("Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {KEY}\r\n")),
            426,
        ),
        (
            upgrade_request(
                "/",
                &format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\nOrigin: https://evil.example\r\n"),
            ),
            403,
        ),
        (
            upgrade_request(
                "/nowhere",
                &format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n"),
            ),
            404,
        ),
    ];
    for (req, status) in cases {
        let mut s = connect(server.addr);
        s.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut s, &mut Vec::new(), false);
        assert_eq!(r.status, status, "{req}");
        if status == 426 {
            assert_eq!(r.header("sec-websocket-version"), Some("13"));
        }
    }
    // An allowed origin upgrades.
    let mut s = connect(server.addr);
    s.write_all(
        upgrade_request(
            "/echo",
            &format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\nOrigin: https://good.example\r\n"),
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(read_response(&mut s, &mut Vec::new(), false).status, 101);
}

#[test]
fn wrong_options_exit_2_with_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["--max-connections", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--max-connections"), "{err}");
}

#[test]
fn port_in_use_is_a_clear_error() {
    let server = ServerProcess::start(&[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["--listen", &server.addr.to_string()])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
