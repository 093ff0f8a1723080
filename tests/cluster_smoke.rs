//! A first end-to-end check of `--redis` (the big suites are
//! tests/cluster.rs): one redis-server, two nodes; two clients on
//! different nodes are paired, talk in order, and hear `left` when the
//! other leaves or its node dies; `/stats` counts both nodes.

mod common;
use common::probe::{metric, stats, wait_until};
use common::*;
use serde_json::json;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server on a free loopback port, no persistence; killed on drop.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Redis::on(port)
    }

    /// A fresh (empty) one on `port`.
    fn on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let up = wait_until(WAIT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "redis-server did not start");
        Redis { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(redis: &Redis, threads: &str) -> ServerProcess {
    node_with(redis, &["--threads", threads])
}

fn node_with(redis: &Redis, args: &[&str]) -> ServerProcess {
    let url = redis.url();
    let mut all = vec![
        "--redis",
        &url,
        "--cluster",
        "smoke",
        "--idle-timeout",
        "600",
    ];
    all.extend_from_slice(args);
    let server = ServerProcess::start(&all);
    assert!(
        wait_until(WAIT, || metric(server.addr, "chat_redis_connected") == 1),
        "the node did not connect to Redis"
    );
    server
}

#[test]
fn two_clients_on_two_nodes_pair_talk_in_order_and_hear_the_other_go() {
    let redis = Redis::start();
    let one = node(&redis, "1");
    let two = node(&redis, "2");
    let mut a = Ws::connect(one.addr, "/");
    assert_eq!(a.recv_json()["type"], "waiting");
    let mut b = Ws::connect(two.addr, "/");
    assert_eq!(b.recv_json()["type"], "waiting");
    let pb = b.recv_json();
    let pa = a.recv_json();
    assert_eq!(
        (pa["type"].as_str(), pb["type"].as_str()),
        (Some("paired"), Some("paired"))
    );
    assert_eq!(pa["pair"], pb["pair"], "one pair id on both nodes");
    // Exactly one offers: the one whose join reached Redis first (usually
    // a, but b's node may get there first).
    assert_ne!(pa["initiator"], pb["initiator"]);
    for i in 0..15 {
        a.send_json(json!({"type":"message","text":format!("a{i}")}));
        b.send_json(json!({"type":"message","text":format!("b{i}")}));
    }
    for i in 0..15 {
        assert_eq!(b.recv_json()["text"], format!("a{i}"));
        assert_eq!(a.recv_json()["text"], format!("b{i}"));
    }
    assert!(metric(one.addr, "chat_cluster_messages_out_total") >= 15);
    assert!(metric(two.addr, "chat_cluster_messages_in_total") >= 15);
    // `/stats` on either node counts both (published every second).
    for n in [&one, &two] {
        let ok = wait_until(WAIT, || {
            stats(n.addr) == json!({"online":2,"waiting":0,"chatting":2})
        });
        assert!(ok, "{}", stats(n.addr));
    }
    // `next` across nodes: the other hears it, both search again and, the
    // only two queued, are paired again (the re-pair rule's two-left case).
    b.send_json(json!({"type":"next"}));
    let left = a.recv_json();
    assert_eq!(
        (left["type"].as_str(), left["reason"].as_str()),
        (Some("left"), Some("next"))
    );
    assert_eq!(b.recv_json()["type"], "waiting");
    a.send_json(json!({"type":"next"}));
    assert_eq!(a.recv_json()["type"], "waiting");
    assert_eq!(a.recv_json()["type"], "paired");
    assert_eq!(b.recv_json()["type"], "paired");
    // The node of b dies (kill -9): a hears `left` `disconnected` within 5 s.
    let started = Instant::now();
    drop(two);
    let left = a
        .try_recv(Duration::from_secs(8))
        .expect("no left after kill -9");
    let left = left.json();
    assert_eq!(
        (left["type"].as_str(), left["reason"].as_str()),
        (Some("left"), Some("disconnected"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_node_without_redis_still_pairs_its_own_clients() {
    // Nothing listens on this port: the node starts, warns, pairs locally.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = ServerProcess::start(&["--redis", &url, "--threads", "2"]);
    let (mut a, mut b) = chat_pair(server.addr);
    a.send_json(json!({"type":"message","text":"hi"}));
    assert_eq!(b.recv_json()["text"], "hi");
    assert_eq!(metric(server.addr, "chat_redis_connected"), 0);
}

/// a on one node, b on the other: paired across nodes.
fn cross_pair(one: &ServerProcess, two: &ServerProcess) -> (Ws, Ws) {
    let mut a = Ws::connect(one.addr, "/");
    assert_eq!(a.recv_json()["type"], "waiting");
    let mut b = Ws::connect(two.addr, "/");
    assert_eq!(b.recv_json()["type"], "waiting");
    assert_eq!(b.recv_json()["type"], "paired");
    assert_eq!(a.recv_json()["type"], "paired");
    (a, b)
}

fn expect_left(ws: &mut Ws, within: Duration) {
    let frame = ws.try_recv(within).expect("no left");
    let left = frame.json();
    assert_eq!(
        (left["type"].as_str(), left["reason"].as_str()),
        (Some("left"), Some("disconnected")),
        "{left}"
    );
}

#[test]
fn redis_restarted_empty_ends_cross_pairs_after_the_grace_then_pairing_resumes() {
    let redis = Redis::start();
    let port = redis.port;
    let one = node_with(&redis, &["--threads", "1", "--redis-grace", "1s"]);
    let two = node_with(&redis, &["--threads", "1", "--redis-grace", "1s"]);
    let (mut a, mut b) = cross_pair(&one, &two);
    // A local pair on node one keeps talking through all of it.
    let (mut c, mut d) = chat_pair(one.addr);
    drop(redis);
    expect_left(&mut a, Duration::from_secs(6));
    expect_left(&mut b, Duration::from_secs(6));
    c.send_json(json!({"type":"message","text":"still here"}));
    assert_eq!(d.recv_json()["text"], "still here");
    let _redis = Redis::on(port);
    for n in [&one, &two] {
        assert!(wait_until(WAIT, || metric(n.addr, "chat_redis_connected") == 1));
        assert!(metric(n.addr, "chat_redis_reconnects_total") >= 1);
    }
    let (mut e, mut f) = cross_pair(&one, &two);
    e.send_json(json!({"type":"message","text":"again"}));
    assert_eq!(f.recv_json()["text"], "again");
}

#[test]
fn a_node_stopped_with_sigterm_tells_the_others_at_once() {
    let redis = Redis::start();
    let one = node(&redis, "1");
    let two = node(&redis, "1");
    // Let each see the other in a heartbeat (the goodbye goes to live nodes).
    assert!(wait_until(WAIT, || metric(one.addr, "chat_cluster_nodes") == 2));
    assert!(wait_until(WAIT, || metric(two.addr, "chat_cluster_nodes") == 2));
    let (mut a, _b) = cross_pair(&one, &two);
    let started = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(two.pid() as i32, libc::SIGTERM) };
    expect_left(&mut a, Duration::from_secs(3));
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn three_hundred_clients_on_three_nodes_all_pair_and_talk_only_to_their_partners() {
    raise_nofile();
    let redis = Redis::start();
    let nodes: Vec<ServerProcess> = (0..3).map(|_| node(&redis, "2")).collect();
    const N: usize = 300;
    let mut clients: Vec<Ws> = (0..N)
        .map(|i| Ws::connect(nodes[i % 3].addr, "/"))
        .collect();
    for (i, ws) in clients.iter_mut().enumerate() {
        assert_eq!(ws.recv_json()["type"], "waiting", "client {i}");
        let p = ws.recv_json();
        assert_eq!(p["type"], "paired", "client {i}: {p}");
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        for seq in 0..3 {
            ws.send_json(json!({"type":"message","text":format!("{i}:{seq}")}));
        }
    }
    let mut partner = vec![usize::MAX; N];
    for (i, ws) in clients.iter_mut().enumerate() {
        for seq in 0..3 {
            let msg = ws.recv_json();
            let (j, s) = msg["text"].as_str().unwrap().split_once(':').unwrap();
            let j: usize = j.parse().unwrap();
            assert_ne!(j, i);
            if seq == 0 {
                partner[i] = j;
            }
            assert_eq!(partner[i], j, "two senders");
            assert_eq!(s.parse::<usize>().unwrap(), seq, "out of order");
        }
    }
    let across = (0..N).filter(|&i| i % 3 != partner[i] % 3).count();
    eprintln!("{across} of {N} clients paired across nodes");
    assert!((0..N).all(|i| partner[partner[i]] == i));
    for n in &nodes {
        let ok = wait_until(WAIT, || {
            stats(n.addr) == json!({"online":N,"waiting":0,"chatting":N})
        });
        assert!(ok, "{}", stats(n.addr));
    }
}

#[test]
fn interests_match_across_nodes_and_the_fallback_works_across_nodes() {
    let redis = Redis::start();
    let one = node_with(&redis, &["--interest-wait", "1"]);
    let two = node_with(&redis, &["--interest-wait", "1"]);
    let mut a = Ws::connect(one.addr, "/?interests=music");
    assert_eq!(a.recv_json()["type"], "waiting");
    let mut other = Ws::connect(one.addr, "/?interests=chess");
    assert_eq!(other.recv_json()["type"], "waiting");
    let mut b = Ws::connect(two.addr, "/?interests=rust,music");
    assert_eq!(b.recv_json()["type"], "waiting");
    let pb = b.recv_json();
    assert_eq!(pb["common"], json!(["music"]), "{pb}");
    assert_eq!(a.recv_json()["common"], json!(["music"]));
    // `other` finds no chess fan: after its wait it takes anyone, here a
    // client without interests on the other node.
    let mut d = Ws::connect(two.addr, "/");
    assert_eq!(d.recv_json()["type"], "waiting");
    let started = Instant::now();
    let po = other
        .try_recv(Duration::from_secs(5))
        .expect("no fallback")
        .json();
    assert_eq!(po["type"], "paired", "{po}");
    assert_eq!(po["common"], json!([]));
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(d.recv_json()["type"], "paired");
}

#[test]
fn next_across_nodes_honours_the_re_pair_rule() {
    let redis = Redis::start();
    let one = node(&redis, "1");
    let two = node(&redis, "1");
    let (mut a, mut b) = cross_pair(&one, &two);
    // A third client waits (interests, long wait): a and b must not meet
    // again while it is queued.
    let mut c = Ws::connect(one.addr, "/?interests=zzz");
    assert_eq!(c.recv_json()["type"], "waiting");
    a.send_json(json!({"type":"next"}));
    assert_eq!(a.recv_json()["type"], "waiting");
    assert_eq!(b.recv_json()["reason"], "next");
    b.send_json(json!({"type":"next"}));
    assert_eq!(b.recv_json()["type"], "waiting");
    assert!(
        a.try_recv(Duration::from_millis(800)).is_none(),
        "re-paired with 3 queued"
    );
    // c leaves: down to two, they are paired again.
    drop(c);
    assert_eq!(
        a.try_recv(WAIT).expect("not re-paired").json()["type"],
        "paired"
    );
    assert_eq!(b.recv_json()["type"], "paired");
}

/// A chat client connecting from 127.0.0.(2 + i).
fn ws_from(i: usize, addr: std::net::SocketAddr) -> Ws {
    use std::io::Write;
    let mut stream = common::streams::connect_from(i, addr);
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf, false);
    assert_eq!(resp.status, 101, "{resp:?}");
    Ws { stream, buf }
}

#[test]
fn a_block_holds_across_nodes_and_a_ban_reaches_every_node() {
    let redis = Redis::start();
    let one = node_with(&redis, &["--auto-ban-reporters", "1"]);
    let two = node(&redis, "1");
    let mut a = ws_from(0, one.addr);
    assert_eq!(a.recv_json()["type"], "waiting");
    let mut b = ws_from(1, two.addr);
    assert_eq!(b.recv_json()["type"], "waiting");
    assert_eq!(b.recv_json()["type"], "paired");
    assert_eq!(a.recv_json()["type"], "paired");
    a.send_json(json!({"type":"block"}));
    assert_eq!(a.recv_json()["type"], "waiting");
    assert_eq!(b.recv_json()["reason"], "next");
    b.send_json(json!({"type":"next"}));
    assert_eq!(b.recv_json()["type"], "waiting");
    assert!(
        a.try_recv(Duration::from_millis(800)).is_none(),
        "blocked pair paired"
    );
    // A third address pairs with a, who waited longest.
    let mut c = ws_from(2, two.addr);
    assert_eq!(c.recv_json()["type"], "waiting");
    assert_eq!(c.recv_json()["type"], "paired");
    assert_eq!(a.recv_json()["type"], "paired");
    // a reports c: one report bans c's address on node one, and node two
    // (where c is) closes c with `banned`.
    a.send_json(json!({"type":"report","reason":"spam"}));
    let first = c.try_recv(WAIT).expect("c not told").json();
    let banned = if first["type"] == "left" {
        c.recv_json()
    } else {
        first
    };
    assert_eq!(banned["type"], "banned", "{banned}");
    c.expect_close(1008);
}

/// One request to an admin door: status and body.
fn admin(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = connect(addr);
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken-for-tests\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut s, &mut buf, false);
    (
        resp.status,
        String::from_utf8_lossy(&resp.body).into_owned(),
    )
}

/// What a new client from 127.0.0.(2 + i) hears first on `addr`.
fn first_word(i: usize, addr: std::net::SocketAddr) -> String {
    let mut ws = ws_from(i, addr);
    ws.recv_json()["type"].as_str().unwrap().to_string()
}

#[test]
fn an_admin_ban_and_its_lifting_reach_every_node() {
    use std::os::unix::fs::PermissionsExt;
    let redis = Redis::start();
    let dir = std::env::temp_dir().join(format!("chat-cluster-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "t0ken-for-tests\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let one = node_with(
        &redis,
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
    );
    let door = loop {
        let line = one.log.recv_timeout(WAIT).expect("no admin door line");
        if let Some(rest) = line.split("admin door on ").nth(1) {
            break rest.trim().parse().unwrap();
        }
    };
    let two = node(&redis, "1");
    assert_eq!(first_word(7, two.addr), "waiting");
    let (status, body) = admin(
        door,
        "POST",
        "/admin/bans",
        r#"{"address":"127.0.0.9","minutes":5,"reason":"spam"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_u64()
        .unwrap();
    assert!(wait_until(WAIT, || first_word(7, two.addr) == "banned"));
    let (status, _) = admin(door, "DELETE", &format!("/admin/bans/{id}"), "");
    assert_eq!(status, 204);
    assert!(wait_until(WAIT, || first_word(7, two.addr) == "waiting"));
    std::fs::remove_dir_all(&dir).unwrap();
}
