//! Safety on the real binary (PROTOCOL.md "Client address and per-address
//! limits", "Safety"): clients from different loopback addresses
//! (127.0.0.2, 127.0.0.3, ...) told apart, report → `reported` and the
//! report in the admin door with its messages, three reporters → an
//! automatic ban (`banned` + 1008, reconnects refused until it is lifted),
//! per-address limits → 429, the admin door's token, bans and ban file,
//! and the refusals at start. (Behind the real nginx: tests/deploy.)

mod common;
use common::streams::connect_from;
use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "t0ken-for-tests";

/// A temporary directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("chat-safety-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn file(&self, name: &str, content: &str, mode: u32) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server with the admin door on; its admin address.
fn start_with_admin(dir: &Dir, args: &[&str]) -> (ServerProcess, SocketAddr) {
    let token = dir.file("token", &format!("  {TOKEN}\n"), 0o600);
    let mut all = vec![
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token-file",
        &token,
    ];
    all.extend_from_slice(args);
    let server = ServerProcess::start(&all);
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server.log.recv_timeout(left).expect("no admin door line");
        if let Some(rest) = line.split("admin door on ").nth(1) {
            let admin = rest.trim().parse().unwrap();
            return (server, admin);
        }
    }
}

/// One admin request: status and JSON body (Null when empty).
fn admin(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let mut s = connect(addr);
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut s, &mut buf, false);
    let json = if resp.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&resp.body).unwrap()
    };
    (resp.status, json)
}

/// A WebSocket upgrade over `stream` (with extra header lines): the
/// response, and the client when it is a 101.
fn upgrade(
    mut stream: TcpStream,
    addr: SocketAddr,
    path: &str,
    extra: &str,
) -> (Response, Option<Ws>) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf, false);
    let ws = (resp.status == 101).then(|| Ws { stream, buf });
    (resp, ws)
}

/// A chat client from 127.0.0.`n` (n ≥ 2).
fn chat_from(n: usize, addr: SocketAddr) -> Ws {
    let (resp, ws) = upgrade(connect_from(n - 2, addr), addr, "/", "");
    assert_eq!(resp.status, 101, "{resp:?}");
    ws.unwrap()
}

fn expect_type(ws: &mut Ws, kind: &str) -> Value {
    let got = ws.recv_json();
    assert_eq!(got["type"], kind, "{got}");
    got
}

/// `a` (queued) and `b` (just connected) get paired.
fn paired(a: &mut Ws, b: &mut Ws) {
    expect_type(b, "waiting");
    expect_type(a, "paired");
    expect_type(b, "paired");
}

#[test]
fn a_report_reaches_the_admin_door_and_the_log_with_both_addresses_and_the_messages() {
    let dir = Dir::new("report");
    let words = dir.file("words", "buy now\n", 0o644);
    let log = dir.path("reports.jsonl");
    let (server, door) = start_with_admin(&dir, &["--report-log", &log, "--blocked-words", &words]);
    let mut a = chat_from(2, server.addr);
    expect_type(&mut a, "waiting");
    let mut b = chat_from(3, server.addr);
    paired(&mut a, &mut b);
    a.send_json(json!({"type":"message","text":"hello"}));
    assert_eq!(b.recv_json()["text"], "hello");
    b.send_json(json!({"type":"message","text":"Buy now: cheap!"}));
    assert_eq!(b.recv_json()["code"], "blocked_word");
    b.send_json(json!({"type":"message","text":"rude words"}));
    assert_eq!(a.recv_json()["text"], "rude words");
    // A bad report is refused and changes nothing.
    a.send_json(json!({"type":"report","reason":"because"}));
    assert_eq!(a.recv_json()["code"], "bad_report");
    a.send_json(json!({"type":"report","reason":"harassment","note":"see the last line"}));
    expect_type(&mut a, "reported");
    expect_type(&mut a, "waiting");
    assert_eq!(b.recv_json(), json!({"type":"left","reason":"next"}));

    let (status, reports) = admin(door, Some(TOKEN), "GET", "/admin/reports", "");
    assert_eq!(status, 200);
    let r = &reports[0];
    assert_eq!(r["id"], 1);
    assert_eq!(
        (r["reporter"].as_str(), r["reported"].as_str()),
        (Some("127.0.0.2"), Some("127.0.0.3"))
    );
    assert_eq!(r["reason"], "harassment");
    assert_eq!(r["note"], "see the last line");
    assert_eq!(
        r["messages"],
        json!([{"from":"reporter","text":"hello"},{"from":"reported","text":"rude words"}])
    );
    assert!(r["time"].as_str().unwrap().ends_with('Z'));
    let (_, none) = admin(door, Some(TOKEN), "GET", "/admin/reports?after=1", "");
    assert_eq!(none, json!([]));
    let line = std::fs::read_to_string(&log).unwrap();
    let logged: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(&logged, r);
    // Blocked both ways: b comes back; a is the only one queued, and
    // they stay apart; a third address pairs with a.
    b.send_json(json!({"type":"next"}));
    expect_type(&mut b, "waiting");
    assert!(
        a.try_recv(Duration::from_millis(300)).is_none(),
        "a and b were paired again"
    );
    let mut c = chat_from(4, server.addr);
    paired(&mut a, &mut c);
    assert_eq!(probe::metric(server.addr, "chat_reports_total"), 1);
    assert_eq!(probe::metric(server.addr, "chat_blocks_total"), 1);
    assert_eq!(probe::metric(server.addr, "chat_blocked_words_total"), 1);
}

#[test]
fn three_reporters_ban_an_address_its_session_is_closed_and_it_cannot_come_back() {
    let dir = Dir::new("autoban");
    let bans = dir.path("bans.jsonl");
    let (server, door) = start_with_admin(&dir, &["--ban-file", &bans]);
    let mut bad = chat_from(9, server.addr);
    expect_type(&mut bad, "waiting");
    for reporter in [2, 3, 4] {
        let mut r = chat_from(reporter, server.addr);
        paired(&mut bad, &mut r);
        r.send_json(json!({"type":"report","reason":"spam"}));
        expect_type(&mut r, "reported");
        if reporter < 4 {
            assert_eq!(bad.recv_json()["type"], "left");
            drop(r);
            // The reporter (queued again after its report) is gone before
            // the next one comes: with several loops the next one's join
            // could otherwise reach the queue first and pair with it.
            assert!(probe::wait_until(WAIT, || probe::metric(
                server.addr,
                "chat_online"
            ) == 1));
            bad.send_json(json!({"type":"next"}));
            expect_type(&mut bad, "waiting");
        }
    }
    // The third report bans 127.0.0.9: `banned`, then close 1008. Before
    // it, `left` (the pair ended) when the reporter's loop told bad's loop
    // of the pair's end before that loop acted on the ban; with the two on
    // different loops (`--threads`), the ban may come first and the
    // session closes without it.
    let mut first = bad.recv_json();
    if first["type"] == "left" {
        first = bad.recv_json();
    }
    assert_eq!(first["type"], "banned", "{first}");
    let banned = first;
    assert!(banned["until"].as_str().unwrap().ends_with('Z'), "{banned}");
    assert!(
        banned["reason"].as_str().unwrap().contains("reported"),
        "{banned}"
    );
    bad.expect_close(1008);
    // Coming back: banned at once; /echo and the page are not affected.
    let mut again = chat_from(9, server.addr);
    expect_type(&mut again, "banned");
    again.expect_close(1008);
    let (resp, echo) = upgrade(connect_from(7, server.addr), server.addr, "/echo", "");
    assert_eq!(resp.status, 101);
    drop(echo);
    // Another address is not banned.
    let mut fine = chat_from(10, server.addr);
    expect_type(&mut fine, "waiting");
    // The ban is in the admin door and the file; lifting it lets 9 back.
    let (status, list) = admin(door, Some(TOKEN), "GET", "/admin/bans", "");
    assert_eq!(status, 200);
    assert_eq!(list[0]["address"], "127.0.0.9");
    assert_eq!(list[0]["by"], "auto");
    assert!(std::fs::read_to_string(&bans)
        .unwrap()
        .contains("127.0.0.9"));
    assert_eq!(probe::metric(server.addr, "chat_bans_in_force"), 1);
    let id = list[0]["id"].as_u64().unwrap();
    let (status, _) = admin(
        door,
        Some(TOKEN),
        "DELETE",
        &format!("/admin/bans/{id}"),
        "",
    );
    assert_eq!(status, 204);
    let mut back = chat_from(9, server.addr);
    expect_type(&mut back, "waiting");
}

#[test]
fn an_admin_ban_closes_open_sessions_and_survives_a_restart() {
    let dir = Dir::new("adminban");
    let bans = dir.path("bans.jsonl");
    let (server, door) = start_with_admin(&dir, &["--ban-file", &bans]);
    let mut a = chat_from(5, server.addr);
    expect_type(&mut a, "waiting");
    let mut b = chat_from(6, server.addr);
    paired(&mut a, &mut b);
    let (status, ban) = admin(
        door,
        Some(TOKEN),
        "POST",
        "/admin/bans",
        r#"{"address":"127.0.0.5","minutes":60,"reason":"spam links"}"#,
    );
    assert_eq!(status, 201, "{ban}");
    assert_eq!(ban["by"], "admin");
    let banned = expect_type(&mut a, "banned");
    assert_eq!(banned["reason"], "spam links");
    assert_eq!(banned["until"], ban["until"]);
    a.expect_close(1008);
    assert_eq!(
        b.recv_json(),
        json!({"type":"left","reason":"disconnected"})
    );
    // Bad bodies: 400 with a reason, and nothing changes.
    for body in [
        r#"{"address":"nope"}"#,
        "[]",
        r#"{"address":"1.2.3.4","minutes":0}"#,
    ] {
        let (status, err) = admin(door, Some(TOKEN), "POST", "/admin/bans", body);
        assert_eq!(status, 400, "{body}");
        assert!(err["error"].is_string());
    }
    let (_, list) = admin(door, Some(TOKEN), "GET", "/admin/bans", "");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        admin(door, Some(TOKEN), "DELETE", "/admin/bans/99", "").0,
        404
    );
    // The ban file brings it back after a restart.
    drop(server);
    let (server, _door) = start_with_admin(&dir, &["--ban-file", &bans]);
    let mut again = chat_from(5, server.addr);
    assert_eq!(expect_type(&mut again, "banned")["reason"], "spam links");
    again.expect_close(1008);
}

#[test]
fn the_admin_door_refuses_a_missing_or_wrong_token() {
    let dir = Dir::new("token");
    let (_server, door) = start_with_admin(&dir, &[]);
    for token in [None, Some("wrong"), Some("t0ken-for-test")] {
        let (status, body) = admin(door, token, "GET", "/admin/bans", "");
        assert_eq!(status, 401, "{token:?}");
        assert!(body["error"].is_string());
        let (status, _) = admin(
            door,
            token,
            "POST",
            "/admin/bans",
            r#"{"address":"1.2.3.4"}"#,
        );
        assert_eq!(status, 401);
    }
    assert_eq!(
        admin(door, Some(TOKEN), "GET", "/admin/bans", "").1,
        json!([])
    );
    // The command line speaks to it with the same token file.
    let token_file = dir.path("token");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_chat"))
            .args([
                "admin",
                "--admin-listen",
                &door.to_string(),
                "--admin-token-file",
                &token_file,
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&[
        "ban",
        "198.51.100.0/24",
        "--minutes",
        "5",
        "--reason",
        "cli",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("198.51.100.0/24"), "{out}");
    let (code, out) = run(&["bans"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("\"cli\""), "{out}");
    let (code, out) = run(&["reports"]);
    assert_eq!((code, out.trim()), (Some(0), "[]"));
}

#[test]
fn per_address_limits_answer_429_with_retry_after() {
    let server = ServerProcess::start(&[
        "--max-connections-per-ip",
        "2",
        "--sessions-per-minute-per-ip",
        "2",
    ]);
    let addr = server.addr;
    // Two open connections from 127.0.0.2 (one still in its request head);
    // the third is answered 429 on its request; 127.0.0.3 is not affected.
    let first = upgrade(connect_from(0, addr), addr, "/echo", "").1.unwrap();
    let mut second = connect_from(0, addr);
    second.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    assert!(probe::wait_until(WAIT, || probe::open_connections(addr) >= 3));
    let mut third = connect_from(0, addr);
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut third, &mut Vec::new(), false);
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("10"));
    let mut other = connect_from(1, addr);
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut other, &mut Vec::new(), false).status,
        200
    );
    drop(first);
    drop(second);
    // Sessions: bursts of 1 (2 a minute): 127.0.0.4's second is refused
    // for about 30 s, plain HTTP is not.
    let (resp, ws) = upgrade(connect_from(2, addr), addr, "/echo", "");
    assert_eq!(resp.status, 101);
    drop(ws);
    let (resp, _) = upgrade(connect_from(2, addr), addr, "/", "");
    assert_eq!(resp.status, 429);
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert!(probe::metric(addr, "chat_limited_total") >= 2);
}

#[test]
fn forwarded_headers_count_only_from_a_trusted_proxy() {
    let dir = Dir::new("proxy");
    let (server, door) = start_with_admin(&dir, &["--trust-proxy", "127.0.0.2"]);
    let addr = server.addr;
    // 127.0.0.2 is the trusted proxy: its X-Forwarded-For names the client.
    let (_, a) = upgrade(
        connect_from(0, addr),
        addr,
        "/",
        "X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n",
    );
    let mut a = a.unwrap();
    expect_type(&mut a, "waiting");
    // 127.0.0.3 is not: its spoofed header is ignored.
    let (_, b) = upgrade(
        connect_from(1, addr),
        addr,
        "/",
        "X-Forwarded-For: 203.0.113.99\r\nX-Real-IP: 203.0.113.98\r\n",
    );
    let mut b = b.unwrap();
    paired(&mut a, &mut b);
    b.send_json(json!({"type":"report","reason":"other"}));
    expect_type(&mut b, "reported");
    let (_, reports) = admin(door, Some(TOKEN), "GET", "/admin/reports", "");
    assert_eq!(reports[0]["reporter"], "127.0.0.3");
    assert_eq!(reports[0]["reported"], "203.0.113.7");
}

#[test]
fn the_rules_are_served_as_plain_text() {
    let server = ServerProcess::start(&[]);
    let resp = http_get(server.addr, "/rules");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&resp.body).contains("18"));
    let dir = Dir::new("rules");
    let rules = dir.file("rules", "Be nice.\n", 0o644);
    let server = ServerProcess::start(&["--rules-file", &rules]);
    assert_eq!(http_get(server.addr, "/rules").body, b"Be nice.\n");
}

/// Runs the binary with `args`; its exit code and stderr.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_safety_settings_refuse_to_start_with_exit_2() {
    let dir = Dir::new("refuse");
    let private = dir.file("private", "secret\n", 0o600);
    let public = dir.file("public", "secret\n", 0o644);
    let (code, err) = refused(&["--admin-listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--admin-token-file"), "{err}");
    let (code, err) = refused(&["--admin-token-file", &private]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--admin-listen"), "{err}");
    let (code, err) = refused(&[
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token-file",
        &public,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    let bans = dir.file("bans", "{\"id\":1}\n", 0o644);
    let (code, err) = refused(&["--ban-file", &bans]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&bans) && err.contains("line 1"), "{err}");
    let _ = Path::new(&bans);
}
