//! `chat-bench wake-floor`: the latency of one loopback hop with no server
//! logic at all, measured the way `chat` measures a relay.
//!
//! A sender thread writes an 8-byte wall-clock stamp on one of
//! `--connections` loopback TCP connections at `--rate` msgs/s (random gaps
//! averaging 1/rate, random connection); the receiving loop sleeps in
//! `epoll_wait` (mio), reads, and records now − stamp. A relay through
//! `chat` crosses the same path once (sender → server wake-up → read) plus
//! the server's own work, so this is the floor the relay row stands on: on a
//! virtual machine it is mostly the time the host takes to wake a sleeping
//! vCPU, which no server can avoid except by not sleeping (`--busy-poll`).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use clap::Args;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;

use crate::clock::{now_ns, secs_to_ns, wall_ns, NS};
use crate::rng::Rng;
use crate::stats::{steal_report, CpuTimes, Latency};

#[derive(Args, Clone)]
pub struct FloorArgs {
    /// Messages per second over all connections.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Loopback connections the messages are spread over.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// CPU for the receiving loop (the server's core); default: not pinned.
    #[arg(long)]
    receiver_cpu: Option<usize>,
    /// CPU for the sending thread (the load's core); default: not pinned.
    #[arg(long)]
    sender_cpu: Option<usize>,
    /// Microseconds the receiver keeps polling after a turn with events
    /// before it sleeps (as `chat --busy-poll`); 0: never.
    #[arg(long, default_value_t = 0)]
    busy_poll_us: u64,
}

/// Pins the calling thread to one CPU.
fn pin(cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; CPU_SET and sched_setaffinity only
    // touch the set we own, for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "cannot pin to CPU {cpu}: {}",
                io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Sleeps until the absolute CLOCK_MONOTONIC time `at_ns`.
fn sleep_until(at_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (at_ns / NS) as libc::time_t,
        tv_nsec: (at_ns % NS) as libc::c_long,
    };
    // SAFETY: the timespec lives across the call; no remainder is asked for.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// Writes stamps at the paced rate, then closes every connection.
fn send_paced(mut conns: Vec<TcpStream>, a: &FloorArgs) -> u64 {
    let period = (NS as f64 / a.rate.max(1.0)) as u64;
    let end = now_ns() + secs_to_ns(a.duration);
    let mut rng = Rng::new();
    let mut next = now_ns();
    let mut sent = 0;
    while next < end {
        // Uniform gaps in [0, 2 periods): the mean rate is --rate, and
        // messages do not arrive in lock step.
        next += rng.next() % (2 * period).max(1);
        sleep_until(next);
        let i = (rng.next() % conns.len() as u64) as usize;
        if let Some(c) = conns.get_mut(i) {
            if c.write_all(&wall_ns().to_ne_bytes()).is_ok() {
                sent += 1;
            }
        }
    }
    sent
}

pub fn run(a: FloorArgs) -> Result<serde_json::Value, String> {
    if a.connections == 0 || a.rate <= 0.0 || a.duration <= 0.0 {
        return Err("--connections, --rate and --duration must be positive".into());
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut senders = Vec::with_capacity(a.connections);
    let mut receivers = Vec::with_capacity(a.connections);
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    for i in 0..a.connections {
        let s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        let (r, _) = listener.accept().map_err(|e| e.to_string())?;
        r.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut r = mio::net::TcpStream::from_std(r);
        poll.registry()
            .register(&mut r, Token(i), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        senders.push(s);
        receivers.push(Some(r));
    }
    if let Some(cpu) = a.receiver_cpu {
        pin(cpu)?;
    }
    let cpu_before = CpuTimes::sample();
    let sender = {
        let cpu = a.sender_cpu;
        let args = a.clone();
        std::thread::spawn(move || {
            let pinned = cpu.map_or(Ok(()), pin);
            (pinned, send_paced(senders, &args))
        })
    };
    let busy_poll = Duration::from_micros(a.busy_poll_us);
    let mut spin_until: Option<Instant> = None;
    let mut events = Events::with_capacity(256);
    let mut latency = Latency::new();
    let mut open = a.connections;
    let mut buf = [0u8; 4096];
    // Bounded: the sender stops after --duration; a minute more at most.
    let deadline = Instant::now() + Duration::from_secs_f64(a.duration) + Duration::from_secs(60);
    while open > 0 && Instant::now() < deadline {
        let mut timeout = Some(Duration::from_millis(100));
        if spin_until.is_some_and(|t| Instant::now() < t) {
            timeout = Some(Duration::ZERO);
        }
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
        }
        if !busy_poll.is_zero() && !events.is_empty() {
            spin_until = Some(Instant::now() + busy_poll);
        }
        for ev in events.iter() {
            let closed = ev.is_read_closed() || ev.is_error();
            let Some(slot) = receivers.get_mut(ev.token().0) else {
                continue;
            };
            let Some(stream) = slot.as_mut() else {
                continue;
            };
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        *slot = None;
                        open -= 1;
                        break;
                    }
                    Ok(n) => {
                        let now = wall_ns();
                        // Stamps are 8 bytes and written whole; a read of
                        // several holds several.
                        for stamp in buf[..n].chunks_exact(8) {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(stamp);
                            latency.record(now.saturating_sub(u64::from_ne_bytes(b)));
                        }
                        // A short read drained the socket (new bytes raise a
                        // new edge), unless the peer closed: then read to EOF.
                        if n < buf.len() && !closed {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        *slot = None;
                        open -= 1;
                        break;
                    }
                }
            }
        }
    }
    let (pinned, sent) = sender
        .join()
        .map_err(|_| "the sending thread panicked".to_string())?;
    pinned?;
    let (steal_line, steal_json) = steal_report(&CpuTimes::sample().steal_since(&cpu_before));
    println!(
        "wake floor: {sent} stamps over {} loopback connections at {} msgs/s{}",
        a.connections,
        a.rate,
        if a.busy_poll_us > 0 {
            format!(", receiver busy-polling {} µs", a.busy_poll_us)
        } else {
            String::new()
        }
    );
    println!("one-hop latency, write → receiver read: {}", latency.line());
    println!("host steal during the run: {steal_line}");
    Ok(json!({
        "mode": "wake-floor",
        "rate": a.rate,
        "connections": a.connections,
        "busy_poll_us": a.busy_poll_us,
        "sent": sent,
        "latency_us": latency.json(),
        "steal_pct": steal_json,
        "errors": sent.saturating_sub(latency.0.len()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stamp_sent_is_read_and_measured() {
        let v = run(FloorArgs {
            rate: 2000.0,
            duration: 0.2,
            connections: 4,
            receiver_cpu: None,
            sender_cpu: None,
            busy_poll_us: 50,
        })
        .unwrap();
        let sent = v["sent"].as_u64().unwrap();
        assert!(sent > 100, "{v}");
        assert_eq!(v["latency_us"]["samples"].as_u64(), Some(sent), "{v}");
        assert_eq!(v["errors"], 0, "{v}");
        assert!(v["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    }
}
