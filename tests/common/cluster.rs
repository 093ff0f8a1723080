//! A cluster on one machine, for the tests: a real `redis-server` on a free
//! loopback port (no persistence: `--save '' --appendonly no`), started,
//! paused, killed and restarted by the test; `chat` nodes joined to it
//! (`--redis`, a cluster name of the test's own, `--threads 2`); clients
//! that say who they are, so a test can tell which node its partner is on;
//! and a network namespace with a veth link to cut one node off from Redis.
//! Every wait is bounded; everything started is stopped on drop.

use super::probe::{metric, stats, wait_until};
use super::{ServerProcess, Ws, WAIT};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---- redis-server -------------------------------------------------------

/// The `redis-server` binary: Debian's package puts it in /usr/bin
/// (tests/run-all.sh installs it); else whatever PATH finds.
fn redis_binary() -> String {
    for p in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] {
        if std::path::Path::new(p).exists() {
            return p.to_string();
        }
    }
    let found = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(
        !found.is_empty(),
        "redis-server is not installed: the cluster tests need it \
         (apt-get install redis-server; tests/run-all.sh does)"
    );
    found
}

/// A `redis-server` of the test's own, killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    /// Addresses it listens on (127.0.0.1 first).
    binds: Vec<Ipv4Addr>,
}

impl Redis {
    /// On 127.0.0.1, at a free port.
    pub fn start() -> Redis {
        Self::start_on(&[])
    }

    /// On 127.0.0.1 and `more` (addresses this host holds, such as the host
    /// end of a veth link), at a port free on 127.0.0.1.
    pub fn start_on(more: &[Ipv4Addr]) -> Redis {
        let mut binds = vec![Ipv4Addr::LOCALHOST];
        binds.extend_from_slice(more);
        // A port free a moment ago may be taken by the time redis binds it:
        // then it exits, and another port is tried.
        for _ in 0..10 {
            let port = free_port();
            let mut redis = Redis {
                child: None,
                port,
                binds: binds.clone(),
            };
            if redis.spawn() {
                return redis;
            }
        }
        panic!("redis-server did not start on any of 10 free ports");
    }

    /// On 127.0.0.1 at `port` (a port a test kept free, to start Redis
    /// after the nodes that use it).
    pub fn start_at(port: u16) -> Redis {
        let mut redis = Redis {
            child: None,
            port,
            binds: vec![Ipv4Addr::LOCALHOST],
        };
        assert!(redis.spawn(), "redis-server did not start on port {port}");
        redis
    }

    /// Starts the process on `self.port` and waits (bounded) until it
    /// answers PING; false if it exited or never answered.
    fn spawn(&mut self) -> bool {
        let bind: Vec<String> = self.binds.iter().map(|a| a.to_string()).collect();
        let mut child = Command::new(redis_binary())
            .args(["--port", &self.port.to_string()])
            .arg("--bind")
            .args(&bind)
            .args(["--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let up = wait_until(WAIT, || {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            self.try_command(&["PING"]).as_deref() == Some("+PONG")
        });
        if up && child.try_wait().ok().flatten().is_none() {
            self.child = Some(child);
            true
        } else {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://ADDR:PORT` for one of the other addresses it listens on.
    pub fn url_at(&self, addr: Ipv4Addr) -> String {
        assert!(
            self.binds.contains(&addr),
            "redis does not listen on {addr}"
        );
        format!("redis://{addr}:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis is not running").id()
    }

    /// kill -9, and the process reaped: its port is free again.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new, empty redis-server on the same port (after `kill9`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        // The port was ours a moment ago; nothing else should take it, but
        // a start that loses a race is retried (bounded).
        let started = (0..5).any(|_| self.spawn());
        assert!(
            started,
            "redis-server did not restart on port {}",
            self.port
        );
    }

    /// SIGSTOP until the guard is dropped (SIGCONT then, also when the test
    /// fails). The kernel still accepts connections and bytes for it.
    pub fn pause(&self) -> Stopped {
        Stopped::new(self.pid())
    }

    /// One command on a fresh connection, the reply's first line (`+PONG`,
    /// `:3`, `$5`...), or None when redis does not answer within a second.
    pub fn try_command(&self, args: &[&str]) -> Option<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.ends_with(b"\r\n") {
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        text.split("\r\n").next().map(str::to_string)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A process stopped with SIGSTOP; SIGCONT on drop.
pub struct Stopped {
    pid: i32,
}

impl Stopped {
    pub fn new(pid: u32) -> Stopped {
        let pid = pid as i32;
        // SAFETY: kill(2) on a child of ours.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        let stopped = Stopped { pid };
        assert!(
            wait_until(WAIT, || state(pid as u32) == 'T'),
            "process {pid} did not stop"
        );
        stopped
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a child of ours.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
    }
}

fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next())
        .unwrap_or('?')
}

/// A loopback port nothing listens on (free a moment ago).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// kill -9 of a node, waited for until it is dead (a zombie: its sockets
/// are closed; `Drop` reaps it).
pub fn kill9(node: &ServerProcess) {
    let pid = node.pid();
    // SAFETY: kill(2) on a child of ours, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    assert!(
        wait_until(WAIT, || state(pid) == 'Z'),
        "node {pid} did not die"
    );
}

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

// ---- a network namespace ---------------------------------------------------

/// Whether we may create network namespaces (root; CI runs as root).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to this host by a veth link: the host end
/// holds `host_ip`, the namespace's end `ns_ip` (a /30 of 10.213.x.0); the
/// namespace's loopback is up. Deleted on drop (with the link), also when
/// the test fails.
pub struct Netns {
    pub name: String,
    host_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
}

impl Netns {
    pub fn create() -> Netns {
        let pid = std::process::id();
        let x = (pid % 250) as u8;
        let ns = Netns {
            name: format!("chat-ctest-{pid}"),
            host_if: format!("ct{}h", pid % 1_000_000),
            host_ip: Ipv4Addr::new(10, 213, x, 1),
            ns_ip: Ipv4Addr::new(10, 213, x, 2),
        };
        // Leftovers of an earlier run with the same pid go first.
        let _ = Command::new("ip").args(["netns", "del", &ns.name]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &ns.host_if])
            .output();
        let peer = format!("ct{}n", pid % 1_000_000);
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &ns.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let n = ns.name.as_str();
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{}/30", ns.ns_ip),
            "dev",
            &peer,
        ]);
        ip(&["-n", n, "link", "set", &peer, "up"]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
        ns
    }

    /// Takes the host end of the link down: nothing passes either way, and
    /// neither side is told (no reset, no FIN): a cut cable.
    pub fn link_down(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    pub fn link_up(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }

    fn handle(&self) -> std::fs::File {
        std::fs::File::open(format!("/run/netns/{}", self.name)).expect("open the netns")
    }

    /// Runs `f` on a thread inside the namespace: the sockets it opens
    /// live there (and stay there when handed back to other threads).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let handle = self.handle();
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns on this thread with a namespace fd we hold.
                let r = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Makes `cmd` start inside the namespace.
    pub fn enter_on_spawn(&self, cmd: &mut Command) {
        let handle = self.handle();
        let fd = handle.as_raw_fd();
        // SAFETY: setns(2) is async-signal-safe; `handle` stays open (moved
        // into the closure) until the command is spawned.
        unsafe {
            cmd.pre_exec(move || {
                let _keep = &handle;
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// How long since `t0`, for messages.
pub fn since(t0: Instant) -> String {
    format!("{:.2} s", t0.elapsed().as_secs_f64())
}
