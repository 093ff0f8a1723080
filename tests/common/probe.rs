//! Looking at a running server from outside: its memory, its metrics, the
//! kernel's view of its sockets; and pausing it, so that bytes and an end of
//! stream reach its sockets together, as they do when the server is busy.

use super::{http_get, ServerProcess};
use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Linux TCP states as /proc/net/tcp prints them (include/net/tcp_states.h).
pub const TCP_ESTABLISHED: u8 = 0x01;
pub const TCP_CLOSE_WAIT: u8 = 0x08;

/// One value from /metrics (on a connection of its own, which the server
/// counts as open while it answers).
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let resp = http_get(addr, "/metrics");
    assert_eq!(resp.status, 200);
    let body = String::from_utf8(resp.body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

pub fn open_connections(addr: SocketAddr) -> u64 {
    metric(addr, "chat_open_connections")
}

/// /stats as JSON.
pub fn stats(addr: SocketAddr) -> serde_json::Value {
    let resp = http_get(addr, "/stats");
    assert_eq!(resp.status, 200);
    serde_json::from_slice(&resp.body).unwrap()
}

/// Polls `cond` until it holds or `within` passes; whether it held.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded by `within`) until `baseline` connections are open; how
/// long it took, or the last count seen.
pub fn await_open_connections(
    addr: SocketAddr,
    baseline: u64,
    within: Duration,
) -> Result<Duration, u64> {
    let t0 = Instant::now();
    let mut open = 0;
    if wait_until(within, || {
        open = open_connections(addr);
        open == baseline
    }) {
        Ok(t0.elapsed())
    } else {
        Err(open)
    }
}

// ---- pausing the server ----------------------------------------------

/// The server stopped with SIGSTOP; SIGCONT when dropped, so a failing
/// test never leaves it stopped. The kernel keeps receiving for its
/// sockets meanwhile: whatever a client sends now is queued at once.
pub struct Paused {
    pid: i32,
}

/// Stops the server and waits (bounded) until it is stopped: from then on
/// it runs no code until resumed.
pub fn pause(server: &ServerProcess) -> Paused {
    let pid = server.pid() as i32;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let paused = Paused { pid };
    assert!(
        wait_until(super::WAIT, || process_state(server.pid()) == 'T'),
        "the server did not stop"
    );
    paused
}

impl Drop for Paused {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
    }
}

/// The state letter of /proc/PID/stat (R, S, T, ...).
fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 1..]
        .trim_start()
        .chars()
        .next()
        .unwrap()
}

// ---- the kernel's view of the server's sockets ------------------------

/// The server's end of one connection, as the kernel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerEnd {
    /// A `TCP_*` state.
    pub state: u8,
    /// Bytes received for the server that it has not read yet.
    pub unread: u64,
}

/// Every connection the server at `server` (an IPv4 address) holds, by the
/// client's address, from /proc/net/tcp. A connection the server's kernel
/// has torn down (after a reset) is not listed even if the server still
/// holds its descriptor.
pub fn server_ends(server: SocketAddr) -> HashMap<SocketAddrV4, ServerEnd> {
    let SocketAddr::V4(server) = server else {
        panic!("{server} is not IPv4");
    };
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let mut ends = HashMap::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(state), Some(queues)) =
            (f.get(1), f.get(2), f.get(3), f.get(4))
        else {
            continue;
        };
        if parse_proc_addr(local) != Some(server) {
            continue;
        }
        let (Some(remote), Ok(state), Some((_, rx))) = (
            parse_proc_addr(remote),
            u8::from_str_radix(state, 16),
            queues.split_once(':'),
        ) else {
            continue;
        };
        let unread = u64::from_str_radix(rx, 16).unwrap();
        ends.insert(remote, ServerEnd { state, unread });
    }
    ends
}

/// The server's end of the connection from `client`, if the kernel still
/// has it.
pub fn server_end(server: SocketAddr, client: SocketAddr) -> Option<ServerEnd> {
    let SocketAddr::V4(client) = client else {
        panic!("{client} is not IPv4");
    };
    server_ends(server).get(&client).copied()
}

/// `0100007F:1F90` (the address as a native-endian u32, the port as is).
fn parse_proc_addr(text: &str) -> Option<SocketAddrV4> {
    let (ip, port) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?.to_ne_bytes();
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(ip.into(), port))
}
