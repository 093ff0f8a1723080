//! A cluster on one machine, for the tests: `chat` nodes joined to a
//! `redis-server` of the test's own (`redis.rs`; `--redis`, a cluster name
//! of the test's own, `--threads 2`), and clients that say who they are,
//! so a test can tell which node its partner is on. A node can be cut off
//! from Redis in a network namespace (`netns.rs`). Every wait is bounded;
//! everything started is stopped on drop.

use super::probe::{metric, stats, wait_until};
use super::redis::Redis;
use super::{ServerProcess, Ws, WAIT};
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

// ---- chat nodes -----------------------------------------------------------

/// A cluster name no other test (or test run) uses.
pub fn cluster_name(test: &str) -> String {
    format!("t{}-{test}", std::process::id())
}

/// A node on 127.0.0.1:0 joined to `redis` as a member of `cluster`, two
/// loops, no idle pings during a test, plus `extra` arguments.
pub fn start_node(redis_url: &str, cluster: &str, extra: &[&str]) -> ServerProcess {
    start_node_with(redis_url, cluster, extra, |_| {})
}

pub fn start_node_with(
    redis_url: &str,
    cluster: &str,
    extra: &[&str],
    setup: impl FnOnce(&mut Command),
) -> ServerProcess {
    let mut args = vec![
        "--redis",
        redis_url,
        "--cluster",
        cluster,
        "--threads",
        "2",
        "--idle-timeout",
        "600",
    ];
    args.extend_from_slice(extra);
    ServerProcess::start_with(&args, setup)
}

/// `n` nodes on one redis, waited for until each is connected and sees
/// all `n` (so that the first client is paired through Redis).
pub fn start_nodes(redis: &Redis, cluster: &str, n: usize, extra: &[&str]) -> Vec<ServerProcess> {
    let nodes: Vec<ServerProcess> = (0..n)
        .map(|_| start_node(&redis.url(), cluster, extra))
        .collect();
    for node in &nodes {
        await_joined(node.addr, n as u64);
    }
    nodes
}

/// Prints what the nodes logged when the test fails (dropped while
/// panicking): a failure in CI then says what the nodes saw.
pub struct LogsOnFailure<'a>(pub Vec<&'a ServerProcess>);

impl<'a> LogsOnFailure<'a> {
    pub fn of(nodes: &'a [ServerProcess]) -> LogsOnFailure<'a> {
        LogsOnFailure(nodes.iter().collect())
    }
}

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (i, node) in self.0.iter().enumerate() {
            for line in node.log.try_iter().take(200) {
                eprintln!("node {i} ({}): {line}", node.addr);
            }
        }
    }
}

/// Waits (bounded) until the node at `addr` is connected to Redis and sees
/// `n` live nodes.
pub fn await_joined(addr: SocketAddr, n: u64) {
    let mut seen = (0, 0);
    let ok = wait_until(3 * WAIT, || {
        seen = (
            metric(addr, "chat_redis_connected"),
            metric(addr, "chat_cluster_nodes"),
        );
        seen == (1, n)
    });
    assert!(
        ok,
        "node {addr} never joined: (chat_redis_connected, chat_cluster_nodes) = {seen:?}, want (1, {n})"
    );
}

/// Waits (bounded: /stats may lag 2 s) until `/stats` at `addr` reads
/// exactly `want`; panics with the last reading otherwise.
pub fn await_stats(addr: SocketAddr, want: &Value) {
    let mut last = Value::Null;
    let ok = wait_until(2 * WAIT, || {
        last = stats(addr);
        &last == want
    });
    assert!(ok, "/stats at {addr} stayed {last}, want {want}");
}

pub fn totals(online: usize, waiting: usize, chatting: usize) -> Value {
    json!({"online": online, "waiting": waiting, "chatting": chatting})
}

// ---- clients ----------------------------------------------------------------

/// A chat client that knows its id and node, and what its pairing said.
pub struct Client {
    pub ws: Ws,
    pub id: usize,
    pub node: usize,
    /// From `paired`: the pair id and whether this side is the initiator.
    pub pair: Option<(String, bool)>,
    pub common: Vec<String>,
}

impl Client {
    /// Connects to `addr` (`path` may carry `?interests=`); nothing read yet.
    pub fn connect(addr: SocketAddr, path: &str, id: usize, node: usize) -> Client {
        Client {
            ws: Ws::connect(addr, path),
            id,
            node,
            pair: None,
            common: Vec::new(),
        }
    }

    /// Connects from 127.0.0.`2 + src % 100` (`streams::connect_from`):
    /// clients with addresses of their own, for blocks.
    pub fn connect_from(src: usize, addr: SocketAddr, id: usize, node: usize) -> Client {
        let mut stream = super::streams::connect_from(src, addr);
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            super::KEY
        )
        .unwrap();
        let mut buf = Vec::new();
        let resp = super::read_response(&mut stream, &mut buf, false);
        assert_eq!(resp.status, 101, "{resp:?}");
        Client {
            ws: Ws { stream, buf },
            id,
            node,
            pair: None,
            common: Vec::new(),
        }
    }

    /// Connects and reads `waiting`.
    pub fn queued(addr: SocketAddr, path: &str, id: usize, node: usize) -> Client {
        let mut c = Self::connect(addr, path, id, node);
        c.expect_waiting();
        c
    }

    /// Reads `waiting`: a new search, so the last pairing is forgotten.
    pub fn expect_waiting(&mut self) {
        let v = self.ws.recv_json();
        assert_eq!(v["type"], "waiting", "client {}: {v}", self.id);
        self.pair = None;
        self.common.clear();
    }

    /// Reads `paired` (within `wait`) and keeps its pair id and `common`.
    pub fn expect_paired_within(&mut self, wait: Duration) {
        let f = self
            .ws
            .try_recv(wait)
            .unwrap_or_else(|| panic!("client {} was not paired within {wait:?}", self.id));
        let v = f.json();
        assert_eq!(v["type"], "paired", "client {}: {v}", self.id);
        let pair = v["pair"].as_str().expect("pair id").to_string();
        let initiator = v["initiator"].as_bool().expect("initiator");
        self.pair = Some((pair, initiator));
        self.common = v["common"]
            .as_array()
            .expect("common")
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
    }

    pub fn expect_paired(&mut self) {
        self.expect_paired_within(WAIT);
    }

    pub fn say(&mut self, text: &str) {
        self.ws.send_json(json!({"type": "message", "text": text}));
    }

    /// Sends `id:<id>`; `partner_id` reads the partner's.
    pub fn say_id(&mut self) {
        let text = format!("id:{}", self.id);
        self.say(&text);
    }

    /// The id the partner sent with `say_id` (the next frame must be it).
    pub fn partner_id(&mut self) -> usize {
        let v = self.ws.recv_json();
        assert_eq!(v["type"], "message", "client {}: {v}", self.id);
        v["text"]
            .as_str()
            .and_then(|t| t.strip_prefix("id:"))
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("client {}: not an id: {v}", self.id))
    }

    /// The next frame must be `message` with exactly `text`.
    pub fn expect_message(&mut self, text: &str) {
        let v = self.ws.recv_json();
        assert_eq!(v["type"], "message", "client {}: {v}", self.id);
        assert_eq!(v["text"], text, "client {}", self.id);
    }

    /// The next frame (within `wait`) must be `left` with `reason`.
    pub fn expect_left_within(&mut self, reason: &str, wait: Duration) {
        let f = self
            .ws
            .try_recv(wait)
            .unwrap_or_else(|| panic!("client {}: no left within {wait:?}", self.id));
        let v = f.json();
        assert_eq!(v["type"], "left", "client {}: {v}", self.id);
        assert_eq!(v["reason"], reason, "client {}: {v}", self.id);
    }

    /// Nothing arrives within `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        if let Some(f) = self.ws.try_recv(wait) {
            panic!(
                "client {}: unexpected {:?}",
                self.id,
                String::from_utf8_lossy(&f.payload)
            );
        }
    }
}

/// Connects `a`, reads its `waiting`, then `b`, and reads both `paired`:
/// with nobody else waiting anywhere, they are each other's stranger. Both
/// send their ids and check the other's.
pub fn pair_up(a: (SocketAddr, usize, usize), b: (SocketAddr, usize, usize)) -> (Client, Client) {
    let x = Client::queued(a.0, "/", a.1, a.2);
    let y = Client::queued(b.0, "/", b.1, b.2);
    finish_pair(x, y)
}

/// Two queued clients that must be paired with each other: both read
/// `paired` (unless a client has read it since its last `waiting`), with
/// one pair id and one initiator, and each other's ids.
pub fn finish_pair(mut x: Client, mut y: Client) -> (Client, Client) {
    for c in [&mut x, &mut y] {
        if c.pair.is_none() {
            c.expect_paired();
        }
    }
    x.say_id();
    y.say_id();
    assert_eq!(x.partner_id(), y.id, "client {}'s partner", x.id);
    assert_eq!(y.partner_id(), x.id, "client {}'s partner", y.id);
    let (px, py) = (x.pair.clone().unwrap(), y.pair.clone().unwrap());
    assert_eq!(px.0, py.0, "pair ids differ");
    assert_ne!(px.1, py.1, "exactly one initiator");
    (x, y)
}

/// One round of talk both ways with a sequence number: each must get the
/// other's line, next, in order.
pub fn talk(x: &mut Client, y: &mut Client, seq: usize) {
    let (a, b) = (format!("{}>{seq}", x.id), format!("{}>{seq}", y.id));
    x.say(&a);
    y.say(&b);
    y.expect_message(&a);
    x.expect_message(&b);
}

// ---- measuring a node -------------------------------------------------------

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    super::cpu_ticks(pid) as f64 / super::clock_ticks_per_sec() as f64
}

/// How long since `t0`, for messages.
pub fn since(t0: Instant) -> String {
    format!("{:.2} s", t0.elapsed().as_secs_f64())
}
