//! A real `redis-server` of the test's own, on a free loopback port (no
//! persistence: `--save '' --appendonly no`), started, paused (SIGSTOP),
//! killed and restarted by the test; and the same pause and kill for any
//! child process. Every wait is bounded; everything is stopped on drop.

use super::probe::wait_until;
use super::{ServerProcess, WAIT};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
