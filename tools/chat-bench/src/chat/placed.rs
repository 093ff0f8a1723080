//! `chat --cross-loops F`: pairs made on chosen event loops, so that a run
//! measures relays within one loop (F = 0), across loops (F = 1), or a
//! known mix, instead of whatever the kernel's `SO_REUSEPORT` hash gives.
//!
//! The server says which loop holds a connection only as a count:
//! `chat_loop_open_connections{loop="i"}` in `/metrics`. So clients connect
//! one at a time and, after each handshake, the gauges are read again over
//! one keep-alive HTTP connection (which itself stays on one loop, so it
//! does not move the counts): the loop whose count rose by one holds the
//! new client. A reading that is not exactly one +1 (another client of the
//! server came or went) leaves that client's loop unknown; it is not used.
//!
//! Until it is placed, every client waits under an interest tag of its own
//! (`?interests=k<idx>` on connect), so nobody pairs with it; the server
//! must run with an `--interest-wait` longer than the connect phase. Then
//! both clients of each planned pair set one shared tag (`interests` while
//! queued applies at once: PROTOCOL.md) and the server pairs exactly them.
//! Clients are connected until the plan can be met (at most `--clients`
//! times [`OVER_CONNECT`]); those left over stay queued and silent.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use chat::ws::OpCode;
use mio::Events;

use super::app::ChatApp;
use crate::clock::{now_ns, secs_to_ns};
use crate::conn::Phase;
use crate::net::Net;

/// Connections opened at most, per client asked for: the kernel's hash
/// rarely splits 2 × N clients into two exact halves, and a plan of only
/// cross-loop pairs needs N on each loop.
pub const OVER_CONNECT: usize = 2;
/// Largest `/metrics` response read (a few kB in practice).
const MAX_METRICS: usize = 1 << 20;
/// Loop numbers at or above this in `/metrics` are ignored (a reading
/// cannot make chat-bench allocate without bound).
const MAX_LOOPS: usize = 1024;

/// The pairs planned, by client index, and how many span two loops.
pub struct Plan {
    pub pairs: Vec<(usize, usize)>,
    pub cross: usize,
    /// Event loops the server reported (1 when it has no per-loop gauge).
    pub loops: usize,
    /// Clients connected in all (the planned ones and those left queued).
    pub connected: usize,
    /// Clients whose loop could not be told.
    pub unknown: usize,
}

/// Connects clients one at a time until `pairs` pairs with `round(pairs ×
/// cross)` of them across loops can be planned, then tells each planned
/// client its pair's tag. The `net` must have been made with room for
/// `pairs × 2 × OVER_CONNECT` clients.
pub fn place(
    net: &mut Net,
    events: &mut Events,
    app: &mut ChatApp,
    pairs: usize,
    cross: f64,
    timeout_s: f64,
) -> Result<Plan, String> {
    let mut metrics = Metrics::new(net.target.addr);
    let mut loops_of: Vec<Vec<usize>> = vec![Vec::new()];
    let mut last = metrics
        .loops()
        .map_err(|e| format!("reading /metrics: {e}"))?;
    // One loop (no per-loop gauge): every pair is within it.
    let want_cross = if last.is_empty() {
        0
    } else {
        ((pairs as f64) * cross.clamp(0.0, 1.0)).round() as usize
    };
    net.concurrency = 1;
    net.park_tags = Some(format!("k{}x", app.tag));
    let deadline = now_ns() + secs_to_ns(timeout_s);
    let mut unknown = 0;
    let mut checked = 0;
    let mut plan = None;
    while plan.is_none() && now_ns() < deadline && !net.settled() {
        net.turn(events, app, Duration::from_millis(50));
        // Concurrency 1: at most the latest connection is new.
        let idx = net.next_start.saturating_sub(1);
        if net.next_start == 0 || idx < checked || net.in_progress > 0 {
            continue;
        }
        checked = idx + 1;
        if net.conns.list[idx].phase != Phase::Open {
            continue;
        }
        let now = metrics
            .loops()
            .map_err(|e| format!("reading /metrics: {e}"))?;
        match one_more(&last, &now) {
            Some(l) => {
                if loops_of.len() < now.len().max(1) {
                    loops_of.resize(now.len().max(1), Vec::new());
                }
                loops_of[l].push(idx);
            }
            None => unknown += 1,
        }
        last = now;
        plan = make_plan(&loops_of, pairs, want_cross);
    }
    // Whatever did not start yet never will.
    net.next_start = net.conns.list.len();
    net.park_tags = None;
    let connected = checked;
    let (pair_list, cross_made) = plan.ok_or_else(|| {
        let counts: Vec<usize> = loops_of.iter().map(Vec::len).collect();
        format!(
            "could not plan {pairs} pairs ({want_cross} across loops) from {connected} clients \
             (per loop {counts:?}, {unknown} unknown) before the connect timeout"
        )
    })?;
    for (n, &(a, b)) in pair_list.iter().enumerate() {
        let msg = format!(r#"{{"type":"interests","tags":["p{}x{n}"]}}"#, app.tag);
        net.conns.send(a, OpCode::Text, msg.as_bytes());
        net.conns.send(b, OpCode::Text, msg.as_bytes());
    }
    Ok(Plan {
        pairs: pair_list,
        cross: cross_made,
        loops: loops_of.len(),
        connected,
        unknown,
    })
}

/// The one loop whose count rose by exactly one while no other changed;
/// a server without per-loop gauges (one loop) reads as loop 0.
fn one_more(before: &[u64], after: &[u64]) -> Option<usize> {
    if before.is_empty() && after.is_empty() {
        return Some(0);
    }
    if before.len() != after.len() {
        return None;
    }
    let mut found = None;
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if *a == b + 1 && found.is_none() {
            found = Some(i);
        } else if a != b {
            return None;
        }
    }
    found
}

/// `pairs` pairs, `cross` of them across two loops and the rest within
/// one, from the clients on each loop; None while there are too few.
/// Cross pairs take from the two fullest loops first, which leaves the
/// most same-loop pairs possible.
fn make_plan(
    loops_of: &[Vec<usize>],
    pairs: usize,
    cross: usize,
) -> Option<(Vec<(usize, usize)>, usize)> {
    let mut left: Vec<Vec<usize>> = loops_of.to_vec();
    let mut plan = Vec::with_capacity(pairs);
    for _ in 0..cross {
        let mut by_size: Vec<usize> = (0..left.len()).collect();
        by_size.sort_by_key(|&l| std::cmp::Reverse(left[l].len()));
        let (&x, &y) = (by_size.first()?, by_size.get(1)?);
        let a = left[x].pop()?;
        let b = left[y].pop()?;
        plan.push((a, b));
    }
    for l in left.iter_mut() {
        while plan.len() < pairs && l.len() >= 2 {
            let a = l.pop()?;
            let b = l.pop()?;
            plan.push((a, b));
        }
    }
    (plan.len() == pairs).then_some((plan, cross))
}

/// `GET /metrics` over one keep-alive connection (reconnected if the
/// server closed it), reduced to the per-loop open-connection gauges.
struct Metrics {
    addr: SocketAddr,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Metrics {
    fn new(addr: SocketAddr) -> Metrics {
        Metrics {
            addr,
            conn: None,
            buf: Vec::new(),
        }
    }

    /// `chat_loop_open_connections` per loop, in loop order (empty with
    /// one loop). A reconnect moves this connection's own count between
    /// loops, which the next reading then reports as "unknown".
    fn loops(&mut self) -> io::Result<Vec<u64>> {
        let body = match self.get() {
            Ok(body) => body,
            Err(_) => {
                self.conn = None;
                self.get()?
            }
        };
        Ok(parse_loops(&body))
    }

    fn get(&mut self) -> io::Result<String> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.set_nodelay(true)?;
            self.conn = Some(s);
        }
        let Some(s) = self.conn.as_mut() else {
            return Err(io::Error::other("no connection"));
        };
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: chat-bench\r\n\r\n")?;
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(total) = response_len(&self.buf)? {
                if self.buf.len() >= total {
                    let body = String::from_utf8_lossy(&self.buf[..total]).into_owned();
                    return Ok(body);
                }
            }
            if self.buf.len() > MAX_METRICS {
                return Err(io::Error::other("/metrics response too large"));
            }
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::other("/metrics connection closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// `chat_loop_open_connections{loop="i"} N` lines, as counts by loop.
fn parse_loops(body: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("chat_loop_open_connections{loop=\"") else {
            continue;
        };
        let Some((i, value)) = rest.split_once("\"} ") else {
            continue;
        };
        if let (Ok(i), Ok(v)) = (i.parse::<usize>(), value.trim().parse::<u64>()) {
            if i >= MAX_LOOPS {
                continue;
            }
            if out.len() <= i {
                out.resize(i + 1, 0);
            }
            out[i] = v;
        }
    }
    out
}

/// Head plus Content-Length, once the head is complete.
fn response_len(buf: &[u8]) -> io::Result<Option<usize>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or_else(|| io::Error::other("/metrics response without Content-Length"))?;
    Ok(Some(end + 4 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_client_is_on_the_loop_that_gained_one() {
        assert_eq!(one_more(&[3, 5], &[3, 6]), Some(1));
        assert_eq!(one_more(&[3, 5], &[4, 6]), None);
        assert_eq!(one_more(&[3, 5], &[3, 5]), None);
        assert_eq!(one_more(&[3, 5], &[2, 6]), None);
        assert_eq!(one_more(&[], &[]), Some(0));
    }

    #[test]
    fn per_loop_gauges_are_read_by_loop_number() {
        let body = "# HELP x\nchat_loop_open_connections{loop=\"1\"} 7\n\
                    chat_loop_open_connections{loop=\"0\"} 5\n\
                    chat_loop_open_connections{loop=\"99999999\"} 1\n\
                    chat_open_connections 12\n";
        assert_eq!(parse_loops(body), vec![5, 7]);
        assert!(parse_loops("chat_open_connections 3\n").is_empty());
    }

    #[test]
    fn plans_meet_the_cross_share_or_wait_for_more_clients() {
        let loops = vec![vec![0, 2, 4, 6], vec![1, 3, 5, 7]];
        let (plan, cross) = make_plan(&loops, 4, 4).unwrap();
        assert_eq!(cross, 4);
        assert!(plan.iter().all(|(a, b)| a % 2 != b % 2));
        let (plan, _) = make_plan(&loops, 4, 0).unwrap();
        assert!(plan.iter().all(|(a, b)| a % 2 == b % 2));
        let (plan, _) = make_plan(&loops, 4, 2).unwrap();
        assert_eq!(plan.iter().filter(|(a, b)| a % 2 != b % 2).count(), 2);
        // Five on one loop, three on the other: four cross pairs impossible.
        let uneven = vec![vec![0, 2, 4, 6, 8], vec![1, 3, 5]];
        assert!(make_plan(&uneven, 4, 4).is_none());
        assert!(make_plan(&uneven, 4, 0).is_none());
        assert!(make_plan(&uneven, 3, 1).is_some());
        // One loop: only same-loop pairs.
        assert!(make_plan(&[vec![0, 1, 2, 3]], 2, 1).is_none());
        assert!(make_plan(&[vec![0, 1, 2, 3]], 2, 0).is_some());
    }
}
