//! `chat-bench`: the load tool for `chat` (and any RFC 6455 echo server).
//!
//! One thread, one mio event loop, the project's own WebSocket codec in
//! client mode. Three subcommands:
//!
//! * `echo`: N connections each keeping `--in-flight` messages of `--size`
//!   bytes in flight against an echo endpoint (a new message goes out each
//!   time one comes back) → msgs/s and round-trip latency percentiles.
//! * `idle`: open N connections (source addresses spread over 127.0.0.x),
//!   ping each once, hold them, and report the server's RSS growth per
//!   connection read from `/proc/PID/status`.
//! * `chat`: N chat-roulette clients (PROTOCOL.md) that pair up and relay
//!   messages at `--rate` msgs/s each (or ping-pong as fast as the pair can)
//!   → pairs/s, msgs/s, relay latency, and counted correctness violations.
//!   The tool owns both ends of every pair, so each message carries its
//!   sender, a sequence number and a send timestamp, checked on arrival.
//!   Relay latency is reported twice: to the moment the relayed bytes
//!   reached the receiving socket (the kernel's `SO_TIMESTAMPNS` stamp: the
//!   server's part, free of this tool's own wake-up delay) and to the moment
//!   the receiving client's handler saw it. Paced sends use a `timerfd`, so
//!   "1 msg/s per client" is spread evenly rather than released in bursts on
//!   epoll's millisecond ticks.
//!
//! `echo` and `chat` also report the host's steal time per CPU during the
//! run: on a virtual machine, time the host withholds from a vCPU shows up
//! directly as a millisecond latency tail, whatever the server does.
//!
//! Every run is bounded in time and only loopback targets are accepted.
//! Human-readable lines go to stdout, and the last line is one JSON object
//! for scripts. Network faults never panic: they are counted and reported.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use chat::ws::{encode, Decoder, Message, OpCode, Role};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Deserialize;
use serde_json::json;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

mod floor;

const NS: u64 = 1_000_000_000;
/// The loop's one read buffer.
const READ_BUF: usize = 256 * 1024;

// ---------------------------------------------------------------- command line

#[derive(Parser)]
#[command(
    name = "chat-bench",
    version,
    about = "Load tool for chat: echo throughput/latency, idle memory, chat relay"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Echo throughput and round-trip latency with a full pipeline per connection.
    Echo(EchoArgs),
    /// Open many idle connections and report the server's RSS per connection.
    Idle(IdleArgs),
    /// Chat-roulette clients pairing and relaying (PROTOCOL.md), with checks.
    Chat(ChatArgs),
    /// One loopback hop with no server at all: this machine's wake-up floor
    /// under the relay-latency figures.
    WakeFloor(floor::FloorArgs),
}

#[derive(Args, Clone)]
struct NetArgs {
    /// Source addresses: connection i binds 127.0.0.(1 + i % N) (IPv4 targets).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=254))]
    sources: u8,
    /// At most this many connections connecting or handshaking at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Seconds allowed for opening all connections (and pairing, in `chat`).
    #[arg(long, default_value_t = 30.0)]
    connect_timeout: f64,
}

#[derive(Args)]
struct EchoArgs {
    #[arg(long, default_value = "ws://127.0.0.1:10000/echo")]
    url: String,
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Messages kept in flight on each connection.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Send binary messages instead of text.
    #[arg(long)]
    binary: bool,
    #[command(flatten)]
    net: NetArgs,
}

#[derive(Args)]
struct IdleArgs {
    #[arg(long, default_value = "ws://127.0.0.1:10000/echo")]
    url: String,
    #[arg(long, default_value_t = 15_000)]
    connections: usize,
    /// The server's pid, for its VmRSS (no RSS figures without it).
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds to hold the connections after pinging, before the last RSS reading.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    #[command(flatten)]
    net: NetArgs,
}

#[derive(Args)]
struct ChatArgs {
    #[arg(long, default_value = "ws://127.0.0.1:10000/")]
    url: String,
    /// Chat clients (two per pair; keep it even).
    #[arg(long, default_value_t = 2000)]
    clients: usize,
    /// Seconds measured once the clients are paired.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Messages per second each paired client sends.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Instead of --rate: each client answers its partner's message at once
    /// (one message in flight per pair).
    #[arg(long)]
    ping_pong: bool,
    #[command(flatten)]
    net: NetArgs,
}

// ---------------------------------------------------------------- small tools

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * NS + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes on this host.
fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME in nanoseconds: the clock of the kernel's receive
/// timestamps (`SO_TIMESTAMPNS`), so chat relay stamps use it. Intervals of a
/// few milliseconds measured on it are off by at most NTP's slew (≤ 500 ppm).
fn wall_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Asks the kernel to stamp every received segment with the time it reached
/// the socket (`SO_TIMESTAMPNS`, CLOCK_REALTIME).
fn enable_rx_timestamps(fd: std::os::fd::RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own with a c_int option value.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `read` through `recvmsg`, also returning the kernel's receive timestamp of
/// the data read (0 when the kernel gave none).
fn recv_stamped(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<(usize, u64)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for a few control messages; u64 keeps it aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at our iovec and control buffer, both live and sized.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = 0;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled,
    // bounded by msg_controllen; the timespec is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                stamp = ts.tv_sec as u64 * NS + ts.tv_nsec as u64;
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

fn secs_to_ns(s: f64) -> u64 {
    (s.max(0.0) * NS as f64) as u64
}

/// xorshift64*: masks, keys and send phases need no crypto.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        Rng(now_ns() ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Lets one process hold as many sockets as its hard limit allows.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

fn check_fds(wanted: usize) -> Result<(), String> {
    let limit = raise_nofile();
    if wanted as u64 + 64 > limit {
        return Err(format!(
            "{wanted} connections need more descriptors than this process may hold ({limit}); \
             run several chat-bench processes side by side instead"
        ));
    }
    Ok(())
}

/// VmRSS of a process, in bytes.
fn rss_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| format!("{path}: no VmRSS line"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|e| format!("{path}: VmRSS: {e}"))?;
    Ok(kb * 1024)
}

/// A `timerfd` on CLOCK_MONOTONIC, polled like a socket: epoll's own
/// timeout has millisecond granularity, which would send a client's
/// "1 msg/s" in bursts of everything due within the same millisecond.
struct PreciseTimer {
    fd: std::os::fd::OwnedFd,
    /// The deadline the timer is armed for (0: disarmed).
    armed_for: u64,
}

/// The token of the [`PreciseTimer`] (connections use their index).
const TIMER: Token = Token(usize::MAX - 1);

impl PreciseTimer {
    fn new(registry: &mio::Registry) -> io::Result<PreciseTimer> {
        // SAFETY: timerfd_create has no memory arguments.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        registry.register(&mut mio::unix::SourceFd(&raw), TIMER, Interest::READABLE)?;
        Ok(PreciseTimer { fd, armed_for: 0 })
    }

    /// Arms the timer for the absolute CLOCK_MONOTONIC time `at_ns`.
    fn arm(&mut self, at_ns: u64) {
        if at_ns == self.armed_for {
            return;
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / NS) as libc::time_t,
                tv_nsec: (at_ns % NS).max(1) as libc::c_long,
            },
        };
        // SAFETY: the fd is ours and spec lives across the call.
        let rc = unsafe {
            libc::timerfd_settime(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        self.armed_for = if rc == 0 { at_ns } else { 0 };
    }

    /// Consumes the expiry count so the next expiry raises a new edge.
    fn acknowledge(&mut self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into our buffer.
        unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                count.as_mut_ptr() as *mut libc::c_void,
                count.len(),
            )
        };
        self.armed_for = 0;
    }
}

/// Per-CPU time counters from `/proc/stat`, to report how much of a run the
/// host took away (steal): on a virtual machine that, not the server, is
/// what a millisecond latency tail usually is.
struct CpuTimes(Vec<(String, u64, u64)>);

impl CpuTimes {
    /// (name, all ticks, steal ticks) per CPU; empty where /proc is absent.
    fn sample() -> CpuTimes {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpus = text
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let name = f.next()?.to_string();
                let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal [guest...]
                let all = v.iter().take(8).sum();
                Some((name, all, *v.get(7)?))
            })
            .collect();
        CpuTimes(cpus)
    }

    /// Steal as a percentage of each CPU's time since `before`.
    fn steal_since(&self, before: &CpuTimes) -> Vec<(String, f64)> {
        self.0
            .iter()
            .zip(&before.0)
            .map(|((name, all, steal), (_, all0, steal0))| {
                let d = all.saturating_sub(*all0).max(1);
                (
                    name.clone(),
                    round2(100.0 * steal.saturating_sub(*steal0) as f64 / d as f64),
                )
            })
            .collect()
    }
}

/// "cpu0 0.4 %, cpu1 1.2 %" and the same as JSON.
fn steal_report(steal: &[(String, f64)]) -> (String, serde_json::Value) {
    let line = steal
        .iter()
        .map(|(n, p)| format!("{n} {p:.1} %"))
        .collect::<Vec<_>>()
        .join(", ");
    let json = steal
        .iter()
        .map(|(n, p)| (n.clone(), json!(p)))
        .collect::<serde_json::Map<_, _>>();
    (line, serde_json::Value::Object(json))
}

/// A `ws://` URL on a loopback address.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // A port follows the last ':' unless that ':' is inside an IPv6 "[...]".
    let has_port = hostport
        .rfind(':')
        .is_some_and(|i| !hostport[i..].contains(']'));
    let with_port = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{url}: refusing a non-loopback target ({}); chat-bench is for this host only",
            addr.ip()
        ));
    }
    Ok(Target {
        addr,
        host: hostport.to_string(),
        path: path.to_string(),
    })
}

struct Latency(Histogram<u64>);

impl Latency {
    fn new() -> Latency {
        // 1 ns .. 100 s at 3 significant digits; these bounds are valid.
        Latency(Histogram::new_with_bounds(1, 100 * NS, 3).expect("static histogram bounds"))
    }

    fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(1));
    }

    fn us(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    fn json(&self) -> serde_json::Value {
        let max = if self.0.is_empty() {
            0.0
        } else {
            self.0.max() as f64 / 1000.0
        };
        json!({
            "p50": round2(self.us(0.50)),
            "p90": round2(self.us(0.90)),
            "p99": round2(self.us(0.99)),
            "p999": round2(self.us(0.999)),
            "max": round2(max),
            "samples": self.0.len(),
        })
    }

    fn line(&self) -> String {
        let max = if self.0.is_empty() { 0 } else { self.0.max() };
        format!(
            "p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs ({} samples)",
            self.us(0.50),
            self.us(0.90),
            self.us(0.99),
            self.us(0.999),
            max as f64 / 1000.0,
            self.0.len()
        )
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

// ---------------------------------------------------------------- the client loop

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    NotStarted,
    Connecting,
    Handshake,
    Open,
    /// We sent a close frame and wait for the server's close or EOF.
    Closing,
    Done,
}

/// Why a connection ended.
enum Fail {
    Connect(io::Error),
    Io(io::Error),
    Eof,
    Handshake(String),
    Protocol(u16, &'static str),
    ServerClose(Option<u16>),
}

struct Conn {
    stream: Option<TcpStream>,
    phase: Phase,
    /// Sec-WebSocket-Key, until the handshake is done.
    key: String,
    /// Unprocessed input tail (an incomplete frame header or response head).
    partial: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    mask: [u8; 4],
    dirty: bool,
}

impl Conn {
    /// Writes pending output until done or the socket would block.
    fn write_out(&mut self) -> Result<(), Fail> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        while self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(Fail::Eof),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fail::Io(e)),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::new();
        }
        Ok(())
    }
}

/// The connections and their pending output: what handlers may write to.
struct Conns {
    list: Vec<Conn>,
    dirty: Vec<usize>,
    /// Kernel receive time (CLOCK_REALTIME ns) of the bytes whose messages
    /// are being handled, when `Net::rx_timestamps` is on; else 0.
    rx_stamp: u64,
}

impl Conns {
    /// The output buffer of `idx`, marked for flushing at the end of the turn.
    fn out(&mut self, idx: usize) -> &mut Vec<u8> {
        let c = &mut self.list[idx];
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(idx);
        }
        &mut c.out
    }

    fn send(&mut self, idx: usize, op: OpCode, payload: &[u8]) {
        let mask = self.list[idx].mask;
        encode::write_masked_frame(self.out(idx), op, payload, mask);
    }

    /// Writes what `idx` owes right now instead of at the end of the turn,
    /// so a timestamp taken just before is the time the bytes left. Whatever
    /// cannot go now (would block, or a fault) stays for the turn's flush,
    /// which also reports faults.
    fn write_now(&mut self, idx: usize) {
        let c = &mut self.list[idx];
        if c.phase == Phase::Open {
            let _ = c.write_out();
        }
    }

    fn mask(&self, idx: usize) -> [u8; 4] {
        self.list[idx].mask
    }

    fn is_open(&self, idx: usize) -> bool {
        self.list[idx].phase == Phase::Open
    }
}

/// What a benchmark does with its connections.
trait Handler {
    /// The handshake completed.
    fn opened(&mut self, _conns: &mut Conns, _idx: usize, _now: u64) {}
    /// A data message or a pong (pings are answered by the loop).
    fn message(&mut self, _conns: &mut Conns, _idx: usize, _msg: &Message<'_>, _now: u64) {}
    /// The connection failed or the server closed it (not counted while we close).
    fn lost(&mut self, _idx: usize, _now: u64) {}
    /// The earliest timer deadline, if any.
    fn next_timer(&self) -> Option<u64> {
        None
    }
    fn fire_timers(&mut self, _conns: &mut Conns, _now: u64) {}
}

#[derive(Default)]
struct NetStats {
    opened: u64,
    connect_failed: u64,
    handshake_failed: u64,
    protocol_errors: u64,
    server_closed: u64,
    disconnected: u64,
    io_errors: u64,
    first_error: Option<String>,
}

impl NetStats {
    fn errors(&self) -> u64 {
        self.connect_failed
            + self.handshake_failed
            + self.protocol_errors
            + self.server_closed
            + self.disconnected
            + self.io_errors
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "connect_failed": self.connect_failed,
            "handshake_failed": self.handshake_failed,
            "protocol_errors": self.protocol_errors,
            "server_closed": self.server_closed,
            "disconnected": self.disconnected,
            "io_errors": self.io_errors,
            "first_error": self.first_error,
        })
    }

    fn line(&self) -> String {
        let mut s = format!(
            "errors: {} (connect {}, handshake {}, protocol {}, closed by server {}, \
             disconnected {}, io {})",
            self.errors(),
            self.connect_failed,
            self.handshake_failed,
            self.protocol_errors,
            self.server_closed,
            self.disconnected,
            self.io_errors
        );
        if let Some(e) = &self.first_error {
            s.push_str(&format!("; first: {e}"));
        }
        s
    }
}

struct Net {
    poll: Poll,
    target: Target,
    buf: Vec<u8>,
    conns: Conns,
    decoders: Vec<Decoder>,
    messages: Vec<Vec<u8>>,
    next_start: usize,
    in_progress: usize,
    closing: usize,
    concurrency: usize,
    sources: u8,
    rng: Rng,
    stats: NetStats,
    /// Read through `recvmsg` with `SO_TIMESTAMPNS` (chat relay latency).
    rx_timestamps: bool,
    /// Handler timers to the microsecond (chat's paced sends); without it
    /// they ride on epoll's millisecond timeout.
    timer: Option<PreciseTimer>,
}

impl Net {
    fn new(target: Target, n: usize, args: &NetArgs, max_message: usize) -> io::Result<Net> {
        let mut rng = Rng::new();
        let list = (0..n)
            .map(|_| Conn {
                stream: None,
                phase: Phase::NotStarted,
                key: String::new(),
                partial: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
                mask: (rng.next() as u32).to_ne_bytes(),
                dirty: false,
            })
            .collect();
        Ok(Net {
            poll: Poll::new()?,
            target,
            buf: vec![0; READ_BUF],
            conns: Conns {
                list,
                dirty: Vec::new(),
                rx_stamp: 0,
            },
            rx_timestamps: false,
            timer: None,
            decoders: (0..n)
                .map(|_| Decoder::new(Role::Client, max_message))
                .collect(),
            messages: (0..n).map(|_| Vec::new()).collect(),
            next_start: 0,
            in_progress: 0,
            closing: 0,
            concurrency: args.concurrency.max(1),
            sources: args.sources,
            rng,
            stats: NetStats::default(),
        })
    }

    /// Every connection is open or has failed.
    fn settled(&self) -> bool {
        self.next_start == self.conns.list.len() && self.in_progress == 0
    }

    fn open_count(&self) -> usize {
        self.conns
            .list
            .iter()
            .filter(|c| c.phase == Phase::Open)
            .count()
    }

    fn note_error(&mut self, what: String) {
        if self.stats.first_error.is_none() {
            self.stats.first_error = Some(what);
        }
    }

    fn start_connect(&mut self, idx: usize) -> io::Result<()> {
        let addr = self.target.addr;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if let IpAddr::V4(ip) = addr.ip() {
            if ip.is_loopback() {
                // Let connect() pick the port, so the 4-tuple decides uniqueness.
                let one: libc::c_int = 1;
                // SAFETY: setsockopt on our own socket with a c_int option value.
                unsafe {
                    libc::setsockopt(
                        std::os::fd::AsRawFd::as_raw_fd(&socket),
                        libc::IPPROTO_IP,
                        libc::IP_BIND_ADDRESS_NO_PORT,
                        &one as *const libc::c_int as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
                let src = Ipv4Addr::new(127, 0, 0, 1 + (idx % self.sources as usize) as u8);
                socket.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))?;
            }
        }
        if self.rx_timestamps {
            enable_rx_timestamps(std::os::fd::AsRawFd::as_raw_fd(&socket))?;
        }
        match socket.connect(&SockAddr::from(addr)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(socket.into());
        self.poll.registry().register(
            &mut stream,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&self.rng.next().to_ne_bytes());
        key[8..].copy_from_slice(&self.rng.next().to_ne_bytes());
        let c = &mut self.conns.list[idx];
        c.key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
        c.stream = Some(stream);
        c.phase = Phase::Connecting;
        Ok(())
    }

    fn pump_connects(&mut self) {
        while self.in_progress < self.concurrency && self.next_start < self.conns.list.len() {
            let idx = self.next_start;
            self.next_start += 1;
            match self.start_connect(idx) {
                Ok(()) => self.in_progress += 1,
                Err(e) => {
                    self.stats.connect_failed += 1;
                    self.note_error(format!("connect: {e}"));
                    let c = &mut self.conns.list[idx];
                    c.stream = None;
                    c.phase = Phase::Done;
                }
            }
        }
    }

    /// One turn: start connections, wait for events (at most `max_wait`, or
    /// until the handler's next timer), handle them, run due timers, flush.
    fn turn<H: Handler>(&mut self, events: &mut Events, app: &mut H, max_wait: Duration) {
        self.pump_connects();
        let mut wait = max_wait;
        if let Some(t) = app.next_timer() {
            match self.timer.as_mut() {
                Some(timer) => timer.arm(t),
                None => wait = wait.min(Duration::from_nanos(t.saturating_sub(now_ns()))),
            }
        }
        if let Err(e) = self.poll.poll(events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                self.note_error(format!("poll: {e}"));
            }
            return;
        }
        let now = now_ns();
        for ev in events.iter() {
            if ev.token() == TIMER {
                if let Some(timer) = self.timer.as_mut() {
                    timer.acknowledge();
                }
                continue;
            }
            let idx = ev.token().0;
            let phase = self.conns.list[idx].phase;
            let result = match phase {
                Phase::Connecting => self.on_connecting(idx),
                Phase::Handshake | Phase::Open | Phase::Closing => {
                    let mut r = Ok(());
                    if ev.is_writable()
                        && self.conns.list[idx].out_pos < self.conns.list[idx].out.len()
                    {
                        self.conns.out(idx);
                    }
                    let closed = ev.is_read_closed() || ev.is_error();
                    if ev.is_readable() || closed {
                        r = self.read_conn(idx, app, now, closed);
                    }
                    r
                }
                Phase::NotStarted | Phase::Done => Ok(()),
            };
            if let Err(f) = result {
                self.lose(idx, f, app, now);
            }
        }
        app.fire_timers(&mut self.conns, now);
        self.flush_dirty(app, now);
    }

    fn on_connecting(&mut self, idx: usize) -> Result<(), Fail> {
        let Some(stream) = self.conns.list[idx].stream.as_ref() else {
            return Ok(());
        };
        match stream.take_error() {
            Ok(Some(e)) | Err(e) => return Err(Fail::Connect(e)),
            Ok(None) => {}
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(Fail::Connect(e)),
        }
        let target = &self.target;
        let c = &mut self.conns.list[idx];
        c.phase = Phase::Handshake;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            target.path, target.host, c.key
        );
        self.conns.out(idx).extend_from_slice(req.as_bytes());
        Ok(())
    }

    /// Reads until the socket is drained, decoding as it goes. `closed`: the
    /// event said the peer closed (or errored), so read on to EOF or error.
    fn read_conn<H: Handler>(
        &mut self,
        idx: usize,
        app: &mut H,
        now: u64,
        closed: bool,
    ) -> Result<(), Fail> {
        let Net {
            buf,
            conns,
            decoders,
            messages,
            in_progress,
            stats,
            rx_timestamps,
            ..
        } = self;
        loop {
            let c = &mut conns.list[idx];
            let Some(stream) = c.stream.as_mut() else {
                return Ok(());
            };
            let mut len = c.partial.len();
            buf[..len].copy_from_slice(&c.partial);
            c.partial.clear();
            let mut more = false;
            let mut eof = false;
            loop {
                let got = if *rx_timestamps {
                    recv_stamped(std::os::fd::AsRawFd::as_raw_fd(&*stream), &mut buf[len..]).map(
                        |(n, stamp)| {
                            if n > 0 {
                                conns.rx_stamp = stamp;
                            }
                            n
                        },
                    )
                } else {
                    stream.read(&mut buf[len..])
                };
                match got {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        len += n;
                        more = len == buf.len();
                        // A short read drained the socket and new bytes raise
                        // a new edge: skip the read that would say WouldBlock,
                        // unless the peer has closed (then read on to EOF).
                        if more || !closed {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Fail::Io(e)),
                }
            }
            let mut pos = 0;
            if c.phase == Phase::Handshake {
                match parse_handshake(&buf[..len], &c.key)? {
                    None if len == buf.len() => {
                        return Err(Fail::Handshake("response head too large".into()))
                    }
                    None if eof => return Err(Fail::Eof),
                    None => {
                        c.partial.extend_from_slice(&buf[..len]);
                        return Ok(());
                    }
                    Some(n) => {
                        pos = n;
                        c.phase = Phase::Open;
                        c.key = String::new();
                        *in_progress -= 1;
                        stats.opened += 1;
                        app.opened(conns, idx, now);
                    }
                }
            }
            let input = &mut buf[pos..len];
            let decoder = &mut decoders[idx];
            let message = &mut messages[idx];
            let mut at = 0;
            let mut fail = None;
            loop {
                match decoder.decode(&mut input[at..], message) {
                    Ok((n, Some(msg))) => {
                        at += n;
                        match msg {
                            Message::Ping(p) => {
                                if conns.list[idx].phase == Phase::Open {
                                    conns.send(idx, OpCode::Pong, p);
                                }
                            }
                            Message::Close(code, _) => {
                                fail = Some(Fail::ServerClose(code));
                                break;
                            }
                            other => {
                                if conns.list[idx].phase == Phase::Open {
                                    app.message(conns, idx, &other, now);
                                }
                            }
                        }
                    }
                    Ok((n, None)) => {
                        at += n;
                        break;
                    }
                    Err(e) => {
                        fail = Some(Fail::Protocol(e.code, e.reason));
                        break;
                    }
                }
            }
            if let Some(f) = fail {
                return Err(f);
            }
            conns.list[idx].partial.extend_from_slice(&input[at..]);
            if eof {
                return Err(Fail::Eof);
            }
            if !more {
                return Ok(());
            }
        }
    }

    fn flush(&mut self, idx: usize) -> Result<(), Fail> {
        let c = &mut self.conns.list[idx];
        c.dirty = false;
        if c.phase == Phase::Connecting {
            return Ok(()); // the handshake request goes out once connected
        }
        c.write_out()
    }

    fn flush_dirty<H: Handler>(&mut self, app: &mut H, now: u64) {
        while !self.conns.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.conns.dirty);
            for &idx in &dirty {
                if let Err(f) = self.flush(idx) {
                    self.lose(idx, f, app, now);
                }
            }
            if self.conns.dirty.is_empty() {
                // Keep the allocation for the next turn.
                self.conns.dirty = dirty;
                self.conns.dirty.clear();
            }
        }
    }

    /// Ends a connection, counting why (faults while we close are not errors).
    fn lose<H: Handler>(&mut self, idx: usize, f: Fail, app: &mut H, now: u64) {
        let c = &mut self.conns.list[idx];
        let phase = c.phase;
        if phase == Phase::Done {
            return;
        }
        if let Fail::ServerClose(code) = f {
            if phase != Phase::Closing {
                // Answer the close (best effort) before dropping the socket.
                let mut frame = Vec::new();
                let payload = code.map(u16::to_be_bytes);
                encode::write_masked_frame(
                    &mut frame,
                    OpCode::Close,
                    payload.as_ref().map_or(&[][..], |p| &p[..]),
                    c.mask,
                );
                if let Some(s) = c.stream.as_mut() {
                    let _ = s.write(&frame);
                }
            }
        }
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.phase = Phase::Done;
        c.out = Vec::new();
        c.out_pos = 0;
        c.partial = Vec::new();
        self.messages[idx] = Vec::new();
        match phase {
            Phase::Connecting | Phase::Handshake => self.in_progress -= 1,
            Phase::Closing => {
                self.closing -= 1;
                return;
            }
            _ => {}
        }
        let what = match f {
            Fail::Connect(e) => {
                self.stats.connect_failed += 1;
                format!("connect: {e}")
            }
            Fail::Io(e) => {
                self.stats.io_errors += 1;
                format!("io: {e}")
            }
            Fail::Eof if phase == Phase::Handshake => {
                self.stats.handshake_failed += 1;
                "handshake: connection closed".into()
            }
            Fail::Eof => {
                self.stats.disconnected += 1;
                "connection closed by the server without a close frame".into()
            }
            Fail::Handshake(why) => {
                self.stats.handshake_failed += 1;
                format!("handshake: {why}")
            }
            Fail::Protocol(code, why) => {
                self.stats.protocol_errors += 1;
                format!("protocol error from the server ({code}): {why}")
            }
            Fail::ServerClose(code) => {
                self.stats.server_closed += 1;
                format!("server sent close {code:?}")
            }
        };
        self.note_error(what);
        if phase == Phase::Open {
            app.lost(idx, now);
        }
    }

    /// Runs turns until `done` says so or `deadline` passes.
    fn run_until<H: Handler>(
        &mut self,
        events: &mut Events,
        app: &mut H,
        deadline: u64,
        mut done: impl FnMut(&Net, &H) -> bool,
    ) {
        loop {
            let now = now_ns();
            if now >= deadline || done(self, app) {
                return;
            }
            let wait = Duration::from_nanos((deadline - now).min(50_000_000));
            self.turn(events, app, wait);
        }
    }

    /// Sends close 1000 on every open connection, waits (bounded) for the
    /// server's answers, then drops every socket.
    fn close_all<H: Handler>(&mut self, events: &mut Events, app: &mut H, timeout: Duration) {
        for idx in 0..self.conns.list.len() {
            match self.conns.list[idx].phase {
                Phase::Open => {
                    self.conns.send(idx, OpCode::Close, &1000u16.to_be_bytes());
                    self.conns.list[idx].phase = Phase::Closing;
                    self.closing += 1;
                }
                Phase::Connecting | Phase::Handshake => {
                    let c = &mut self.conns.list[idx];
                    c.stream = None;
                    c.phase = Phase::Done;
                    self.in_progress -= 1;
                }
                _ => {}
            }
        }
        self.next_start = self.conns.list.len();
        self.flush_dirty(app, now_ns());
        let deadline = now_ns() + timeout.as_nanos() as u64;
        self.run_until(events, app, deadline, |net, _| net.closing == 0);
        for c in &mut self.conns.list {
            c.stream = None;
            c.phase = Phase::Done;
        }
    }
}

/// Parses the server's handshake response: `Some(head length)` once complete.
fn parse_handshake(data: &[u8], key: &str) -> Result<Option<usize>, Fail> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(data) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(n)) => n,
        Err(e) => return Err(Fail::Handshake(format!("bad response: {e}"))),
    };
    if resp.code != Some(101) {
        return Err(Fail::Handshake(format!(
            "status {} instead of 101",
            resp.code.unwrap_or(0)
        )));
    }
    let accept = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .ok_or_else(|| Fail::Handshake("no Sec-WebSocket-Accept".into()))?;
    let expected = chat::ws::handshake::accept_key(key.as_bytes());
    if accept.value.trim_ascii() != expected.as_bytes() {
        return Err(Fail::Handshake("wrong Sec-WebSocket-Accept".into()));
    }
    Ok(Some(n))
}

fn connect_phase<H: Handler>(net: &mut Net, events: &mut Events, app: &mut H, timeout: f64) -> f64 {
    let t0 = now_ns();
    net.run_until(events, app, t0 + secs_to_ns(timeout), |net, _| {
        net.settled()
    });
    (now_ns() - t0) as f64 / NS as f64
}

// ---------------------------------------------------------------- echo

struct EchoApp {
    /// The masked frame of each connection, built once and resent as is.
    frames: Vec<Vec<u8>>,
    payload: Vec<u8>,
    opcode: OpCode,
    in_flight: usize,
    /// Send times of each connection's messages in flight, oldest first.
    sent: Vec<VecDeque<u64>>,
    sending: bool,
    window: (u64, u64),
    received: u64,
    counted: u64,
    mismatched: u64,
    unexpected: u64,
    latency: Latency,
}

impl Handler for EchoApp {
    fn opened(&mut self, conns: &mut Conns, idx: usize, now: u64) {
        let mask = conns.mask(idx);
        let mut frame = Vec::with_capacity(self.payload.len() + 14);
        encode::write_masked_frame(&mut frame, self.opcode, &self.payload, mask);
        let out = conns.out(idx);
        for _ in 0..self.in_flight {
            out.extend_from_slice(&frame);
            self.sent[idx].push_back(now);
        }
        self.frames[idx] = frame;
    }

    fn message(&mut self, conns: &mut Conns, idx: usize, msg: &Message<'_>, now: u64) {
        let (op, data) = match *msg {
            Message::Text(d) => (OpCode::Text, d),
            Message::Binary(d) => (OpCode::Binary, d),
            _ => return,
        };
        self.received += 1;
        if op != self.opcode || data != &self.payload[..] {
            self.mismatched += 1;
        }
        match self.sent[idx].pop_front() {
            None => self.unexpected += 1,
            Some(t) => {
                if now >= self.window.0 && now < self.window.1 {
                    self.counted += 1;
                    self.latency.record(now - t);
                }
            }
        }
        if self.sending {
            conns.out(idx).extend_from_slice(&self.frames[idx]);
            self.sent[idx].push_back(now);
        }
    }
}

fn run_echo(a: EchoArgs) -> Result<serde_json::Value, String> {
    let target = parse_url(&a.url)?;
    check_fds(a.connections)?;
    if a.in_flight == 0 || a.connections == 0 {
        return Err("--connections and --in-flight must be at least 1".into());
    }
    let max = (a.size + 1024).max(1 << 20);
    let mut net = Net::new(target, a.connections, &a.net, max).map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(1024);
    let payload: Vec<u8> = (0..a.size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut app = EchoApp {
        frames: vec![Vec::new(); a.connections],
        payload,
        opcode: if a.binary {
            OpCode::Binary
        } else {
            OpCode::Text
        },
        in_flight: a.in_flight,
        sent: (0..a.connections)
            .map(|_| VecDeque::with_capacity(a.in_flight))
            .collect(),
        sending: true,
        window: (u64::MAX, u64::MAX),
        received: 0,
        counted: 0,
        mismatched: 0,
        unexpected: 0,
        latency: Latency::new(),
    };
    let connect_secs = connect_phase(&mut net, &mut events, &mut app, a.net.connect_timeout);
    let open = net.open_count();
    println!(
        "echo {}: {open}/{} connections open in {connect_secs:.2} s; {} B {} messages, {} in flight each",
        a.url,
        a.connections,
        a.size,
        if a.binary { "binary" } else { "text" },
        a.in_flight
    );
    if open == 0 {
        return Err(format!("no connection opened; {}", net.stats.line()));
    }
    let start = now_ns() + secs_to_ns(a.warmup);
    let end = start + secs_to_ns(a.duration);
    app.window = (start, end);
    let cpu_before = CpuTimes::sample();
    net.run_until(&mut events, &mut app, end, |_, _| false);
    let (steal_line, steal_json) = steal_report(&CpuTimes::sample().steal_since(&cpu_before));
    app.sending = false;
    let secs = (end - start) as f64 / NS as f64;
    net.close_all(&mut events, &mut app, Duration::from_secs(1));
    let rate = app.counted as f64 / secs;
    println!("msgs/s: {rate:.0} ({} echoes in {secs:.1} s)", app.counted);
    println!("latency: {}", app.latency.line());
    println!("host steal during the load: {steal_line}");
    println!(
        "{}; mismatched echoes {}, unexpected messages {}",
        net.stats.line(),
        app.mismatched,
        app.unexpected
    );
    Ok(json!({
        "mode": "echo",
        "url": a.url,
        "connections": a.connections,
        "open": open,
        "size": a.size,
        "in_flight": a.in_flight,
        "duration_s": secs,
        "msgs": app.counted,
        "msgs_per_sec": rate.round(),
        "latency_us": app.latency.json(),
        "steal_pct": steal_json,
        "errors": net.stats.errors() + app.mismatched + app.unexpected,
        "mismatched": app.mismatched,
        "unexpected": app.unexpected,
        "net": net.stats.json(),
    }))
}

// ---------------------------------------------------------------- idle

#[derive(Default)]
struct IdleApp {
    pongs: u64,
    lost: u64,
    other: u64,
}

impl Handler for IdleApp {
    fn message(&mut self, _conns: &mut Conns, _idx: usize, msg: &Message<'_>, _now: u64) {
        match msg {
            Message::Pong(_) => self.pongs += 1,
            _ => self.other += 1,
        }
    }

    fn lost(&mut self, _idx: usize, _now: u64) {
        self.lost += 1;
    }
}

fn run_idle(a: IdleArgs) -> Result<serde_json::Value, String> {
    let target = parse_url(&a.url)?;
    check_fds(a.connections)?;
    let rss = |when: &str| -> Result<Option<u64>, String> {
        match a.pid {
            None => Ok(None),
            Some(pid) => rss_bytes(pid)
                .map(Some)
                .map_err(|e| format!("reading RSS {when}: {e}")),
        }
    };
    let rss_before = rss("before")?;
    let mut net = Net::new(target, a.connections, &a.net, 1 << 16).map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(4096);
    let mut app = IdleApp::default();
    let connect_secs = connect_phase(&mut net, &mut events, &mut app, a.net.connect_timeout);
    let open = net.open_count();
    println!(
        "idle {}: {open}/{} connections open in {connect_secs:.2} s",
        a.url, a.connections
    );
    if open == 0 {
        return Err(format!("no connection opened; {}", net.stats.line()));
    }
    // Let the server settle, then take the first reading.
    let settle = now_ns() + NS / 2;
    net.run_until(&mut events, &mut app, settle, |_, _| false);
    let rss_open = rss("after opening")?;
    for idx in 0..net.conns.list.len() {
        if net.conns.is_open(idx) {
            net.conns.send(idx, OpCode::Ping, b"chat-bench");
        }
    }
    let t = now_ns();
    net.run_until(&mut events, &mut app, t + 10 * NS, |net, app| {
        app.pongs + app.lost >= net.stats.opened
    });
    let ping_secs = (now_ns() - t) as f64 / NS as f64;
    let hold_end = now_ns() + secs_to_ns(a.hold);
    net.run_until(&mut events, &mut app, hold_end, |_, _| false);
    let rss_after = rss("after holding")?;
    let still_open = net.open_count();
    net.close_all(&mut events, &mut app, Duration::from_secs(3));

    let per_conn = |r: Option<u64>| -> Option<f64> {
        match (rss_before, r) {
            (Some(b), Some(r)) if open > 0 => Some((r as f64 - b as f64) / open as f64),
            _ => None,
        }
    };
    println!(
        "pongs: {}/{open} in {ping_secs:.2} s; {still_open} still open after holding {:.1} s",
        app.pongs, a.hold
    );
    if let (Some(b), Some(o), Some(r)) = (rss_before, rss_open, rss_after) {
        println!(
            "server RSS: {:.1} MiB before, {:.1} MiB open, {:.1} MiB after ping+hold",
            b as f64 / 1048576.0,
            o as f64 / 1048576.0,
            r as f64 / 1048576.0
        );
        println!(
            "RSS per idle connection: {:.0} B (after ping+hold), {:.0} B (just opened)",
            per_conn(rss_after).unwrap_or(0.0),
            per_conn(rss_open).unwrap_or(0.0)
        );
    }
    let missing_pongs = (open as u64).saturating_sub(app.pongs);
    println!("{}; missing pongs {missing_pongs}", net.stats.line());
    Ok(json!({
        "mode": "idle",
        "url": a.url,
        "connections": a.connections,
        "open": open,
        "still_open": still_open,
        "pongs": app.pongs,
        "rss_before": rss_before,
        "rss_open": rss_open,
        "rss_after": rss_after,
        "rss_per_conn_open": per_conn(rss_open).map(|x| x.round()),
        "rss_per_conn": per_conn(rss_after).map(|x| x.round()),
        "errors": net.stats.errors() + missing_pongs + app.other,
        "net": net.stats.json(),
    }))
}

// ---------------------------------------------------------------- chat

/// What the server sends (PROTOCOL.md); unknown fields are ignored.
#[derive(Deserialize)]
struct ServerMsg<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
}

/// A client's identity on the wire: (process tag, index).
type Id = (u32, u32);

#[derive(Default, Clone)]
struct Client {
    paired: bool,
    partner: Option<Id>,
    /// Next sequence number this client sends to its current partner.
    seq_out: u64,
    /// Next sequence number expected from the partner.
    expect: u64,
    lost: bool,
}

#[derive(Default)]
struct Violations {
    /// A message from someone other than the partner (or before its hello).
    misrouted: u64,
    /// Partner knowledge that is not mutual (A hears B, B hears C).
    asymmetric: u64,
    /// A sequence number below the one expected (late or duplicate).
    out_of_order: u64,
    /// Sequence numbers skipped, and, after the drain, never delivered.
    missing: u64,
    /// A chat message while not paired.
    not_paired: u64,
    /// `paired` while already paired (no `left` in between).
    double_paired: u64,
    /// Not JSON, unknown type, binary, or an unparsable relay text.
    malformed: u64,
}

impl Violations {
    fn total(&self) -> u64 {
        self.misrouted
            + self.asymmetric
            + self.out_of_order
            + self.missing
            + self.not_paired
            + self.double_paired
            + self.malformed
    }
}

struct ChatApp {
    tag: u32,
    clients: Vec<Client>,
    /// Send period per client (`None`: ping-pong).
    period: Option<u64>,
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    rng: Rng,
    scratch: Vec<u8>,
    sending: bool,
    window: (u64, u64),
    start: u64,
    paired_events: u64,
    last_paired: u64,
    sent: u64,
    delivered: u64,
    counted: u64,
    /// Send → the receiving client's handler (includes this tool's wake-up).
    latency: Latency,
    /// Send → the bytes' arrival in the receiving socket (kernel timestamp):
    /// the relay itself, without this tool's own scheduling delay.
    socket_latency: Latency,
    /// Wall clock at the start of the measured window.
    window_wall: u64,
    /// Counted messages without a kernel receive timestamp.
    stamps_missing: u64,
    /// Kernel timestamps outside [send, handled]: the stamp is not trusted.
    stamps_inconsistent: u64,
    waiting: u64,
    left: u64,
    rate_limited: u64,
    other_errors: u64,
    v: Violations,
}

fn parse_id(s: &str) -> Option<Id> {
    let (t, i) = s.split_once(':')?;
    Some((t.parse().ok()?, i.parse().ok()?))
}

impl ChatApp {
    fn new(tag: u32, clients: usize, period: Option<u64>, start: u64) -> ChatApp {
        ChatApp {
            tag,
            clients: vec![Client::default(); clients],
            period,
            timers: BinaryHeap::new(),
            rng: Rng::new(),
            scratch: Vec::with_capacity(128),
            sending: true,
            window: (u64::MAX, u64::MAX),
            start,
            paired_events: 0,
            last_paired: start,
            sent: 0,
            delivered: 0,
            counted: 0,
            latency: Latency::new(),
            socket_latency: Latency::new(),
            window_wall: u64::MAX,
            stamps_missing: 0,
            stamps_inconsistent: 0,
            waiting: 0,
            left: 0,
            rate_limited: 0,
            other_errors: 0,
            v: Violations::default(),
        }
    }

    fn me(&self, idx: usize) -> Id {
        (self.tag, idx as u32)
    }

    fn send_json(&mut self, conns: &mut Conns, idx: usize, text: std::fmt::Arguments<'_>) {
        self.scratch.clear();
        let _ = self.scratch.write_fmt(text);
        conns.send(idx, OpCode::Text, &self.scratch);
    }

    /// Sends the next numbered message, stamped with the wall clock and
    /// written at once: the stamp is when the bytes left this process.
    fn send_relay(&mut self, conns: &mut Conns, idx: usize) {
        let c = &mut self.clients[idx];
        let seq = c.seq_out;
        c.seq_out += 1;
        self.sent += 1;
        let tag = self.tag;
        let stamp = wall_ns();
        self.send_json(
            conns,
            idx,
            format_args!(r#"{{"type":"message","text":"m {tag}:{idx} {seq} {stamp}"}}"#),
        );
        conns.write_now(idx);
    }

    fn on_relay_text(&mut self, conns: &mut Conns, idx: usize, text: &str, now: u64) {
        let mut parts = text.split(' ');
        let kind = parts.next();
        let Some(from) = parts.next().and_then(parse_id) else {
            self.v.malformed += 1;
            return;
        };
        let me = self.me(idx);
        if !self.clients[idx].paired {
            self.v.not_paired += 1;
        }
        match kind {
            Some("h") => {
                if self.clients[idx].partner.is_some() {
                    self.v.misrouted += 1;
                }
                self.clients[idx].partner = Some(from);
                if from.0 == self.tag {
                    if let Some(theirs) = self.clients.get(from.1 as usize).and_then(|p| p.partner)
                    {
                        if theirs != me {
                            self.v.asymmetric += 1;
                        }
                    }
                }
                if !self.sending {
                    return;
                }
                match self.period {
                    Some(p) => {
                        let first = now + self.rng.next() % p.max(1);
                        self.timers.push(Reverse((first, idx as u32)));
                    }
                    None if me < from => self.send_relay(conns, idx),
                    None => {}
                }
            }
            Some("m") => {
                let (Some(seq), Some(ts)) = (
                    parts.next().and_then(|s| s.parse::<u64>().ok()),
                    parts.next().and_then(|s| s.parse::<u64>().ok()),
                ) else {
                    self.v.malformed += 1;
                    return;
                };
                self.delivered += 1;
                let c = &mut self.clients[idx];
                if c.partner != Some(from) {
                    self.v.misrouted += 1;
                } else if seq >= c.expect {
                    self.v.missing += seq - c.expect;
                    c.expect = seq + 1;
                } else {
                    self.v.out_of_order += 1;
                    self.v.missing = self.v.missing.saturating_sub(1);
                }
                if now >= self.window.0 && now < self.window.1 {
                    self.counted += 1;
                    self.record_latency(ts, conns.rx_stamp);
                }
                if self.period.is_none() && self.sending {
                    self.send_relay(conns, idx);
                }
            }
            _ => self.v.malformed += 1,
        }
    }

    /// Relay latency of a message stamped `sent` (wall clock): to its arrival
    /// in the receiving socket (`rx_stamp`, the kernel's receive time) and to
    /// this handler. Messages sent before the window (`window_wall`) are
    /// not counted.
    fn record_latency(&mut self, sent: u64, rx_stamp: u64) {
        if sent < self.window_wall {
            return;
        }
        let handled = wall_ns();
        self.latency.record(handled.saturating_sub(sent));
        if rx_stamp == 0 {
            self.stamps_missing += 1;
        } else if rx_stamp < sent || rx_stamp > handled {
            self.stamps_inconsistent += 1;
        } else {
            self.socket_latency.record(rx_stamp - sent);
        }
    }

    /// Sequence numbers the partner sent that never arrived (after the drain).
    fn count_undelivered(&mut self) {
        for idx in 0..self.clients.len() {
            let c = &self.clients[idx];
            if c.lost {
                continue;
            }
            if let Some((tag, p)) = c.partner {
                if tag != self.tag {
                    continue;
                }
                let Some(partner) = self.clients.get(p as usize) else {
                    continue;
                };
                if partner.partner == Some(self.me(idx)) && !partner.lost {
                    self.v.missing += partner.seq_out.saturating_sub(c.expect);
                }
            }
        }
    }
}

impl Handler for ChatApp {
    fn message(&mut self, conns: &mut Conns, idx: usize, msg: &Message<'_>, now: u64) {
        let data = match *msg {
            Message::Text(d) => d,
            Message::Binary(_) => {
                self.v.malformed += 1;
                return;
            }
            _ => return,
        };
        let Ok(m) = serde_json::from_slice::<ServerMsg<'_>>(data) else {
            self.v.malformed += 1;
            return;
        };
        match &*m.kind {
            "waiting" => self.waiting += 1,
            "paired" => {
                let c = &mut self.clients[idx];
                if c.paired {
                    self.v.double_paired += 1;
                }
                c.paired = true;
                c.partner = None;
                c.seq_out = 0;
                c.expect = 0;
                self.paired_events += 1;
                self.last_paired = now;
                let tag = self.tag;
                self.send_json(
                    conns,
                    idx,
                    format_args!(r#"{{"type":"message","text":"h {tag}:{idx}"}}"#),
                );
            }
            "message" => match m.text {
                Some(text) => self.on_relay_text(conns, idx, &text, now),
                None => self.v.malformed += 1,
            },
            "left" => {
                self.left += 1;
                let c = &mut self.clients[idx];
                c.paired = false;
                c.partner = None;
                if self.sending {
                    self.send_json(conns, idx, format_args!(r#"{{"type":"next"}}"#));
                }
            }
            "typing" => {}
            "error" if m.code.as_deref() == Some("rate_limited") => {
                self.rate_limited += 1;
                // The refused message was this client's last one: take its
                // number back so the partner sees no gap, and (ping-pong)
                // try again shortly so the pair does not stall.
                let c = &mut self.clients[idx];
                if c.seq_out > 0 {
                    c.seq_out -= 1;
                    self.sent -= 1;
                }
                if self.period.is_none() {
                    self.timers.push(Reverse((now + NS / 10, idx as u32)));
                }
            }
            "error" => self.other_errors += 1,
            _ => self.v.malformed += 1,
        }
    }

    fn lost(&mut self, idx: usize, _now: u64) {
        self.clients[idx].lost = true;
    }

    fn next_timer(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn fire_timers(&mut self, conns: &mut Conns, now: u64) {
        while let Some(&Reverse((t, idx))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let idx = idx as usize;
            let c = &self.clients[idx];
            if !self.sending || c.lost || c.partner.is_none() || !conns.is_open(idx) {
                continue;
            }
            self.send_relay(conns, idx);
            if let Some(p) = self.period {
                self.timers.push(Reverse((t + p, idx as u32)));
            }
        }
    }
}

fn run_chat(a: ChatArgs) -> Result<serde_json::Value, String> {
    let target = parse_url(&a.url)?;
    check_fds(a.clients)?;
    if a.clients < 2 {
        return Err("--clients must be at least 2".into());
    }
    if a.clients % 2 == 1 {
        eprintln!("warning: an odd number of clients leaves one unpaired");
    }
    if !a.ping_pong && a.rate <= 0.0 {
        return Err("--rate must be positive (or use --ping-pong)".into());
    }
    let mut net = Net::new(target, a.clients, &a.net, 1 << 16).map_err(|e| e.to_string())?;
    net.rx_timestamps = true;
    if !a.ping_pong {
        net.timer = Some(PreciseTimer::new(net.poll.registry()).map_err(|e| e.to_string())?);
    }
    let mut events = Events::with_capacity(4096);
    let start = now_ns();
    let mut app = ChatApp::new(
        std::process::id(),
        a.clients,
        (!a.ping_pong).then(|| (NS as f64 / a.rate) as u64),
        start,
    );
    // Connect and pair everyone (bounded), checking progress every 20 ms.
    let want = a.clients - a.clients % 2;
    let mut last_check = 0;
    let mut all_known = false;
    net.run_until(
        &mut events,
        &mut app,
        start + secs_to_ns(a.net.connect_timeout),
        |net, app| {
            let now = now_ns();
            if now - last_check < 20_000_000 {
                return false;
            }
            last_check = now;
            let known = app
                .clients
                .iter()
                .filter(|c| c.partner.is_some() && !c.lost)
                .count();
            let open = net.open_count();
            all_known = known >= want;
            all_known || (net.settled() && known >= open - open % 2)
        },
    );
    let open = net.open_count();
    let pairs = app.paired_events as f64 / 2.0;
    let pair_secs = (app.last_paired.saturating_sub(app.start)) as f64 / NS as f64;
    let pairs_per_sec = if pair_secs > 0.0 {
        pairs / pair_secs
    } else {
        0.0
    };
    println!(
        "chat {}: {open}/{} clients open, {pairs:.0} pairs in {pair_secs:.2} s ({pairs_per_sec:.0} pairs/s, connect + handshake + pairing){}",
        a.url,
        a.clients,
        if all_known { "" } else { "; NOT all paired" }
    );
    let ws = now_ns();
    let we = ws + secs_to_ns(a.duration);
    app.window = (ws, we);
    app.window_wall = wall_ns();
    let cpu_before = CpuTimes::sample();
    net.run_until(&mut events, &mut app, we, |_, _| false);
    let (steal_line, steal_json) = steal_report(&CpuTimes::sample().steal_since(&cpu_before));
    app.sending = false;
    // Drain: wait (bounded) for every message sent to arrive.
    net.run_until(&mut events, &mut app, now_ns() + 2 * NS, |_, app| {
        app.delivered >= app.sent
    });
    app.count_undelivered();
    let secs = (we - ws) as f64 / NS as f64;
    net.close_all(&mut events, &mut app, Duration::from_secs(2));
    let rate = app.counted as f64 / secs;
    println!(
        "relayed msgs/s: {rate:.0} ({} in {secs:.1} s; {} sent, {} delivered in all)",
        app.counted, app.sent, app.delivered
    );
    println!(
        "relay latency, send → receiving socket (kernel timestamp): {}",
        app.socket_latency.line()
    );
    println!(
        "relay latency, send → receiving client handler: {}",
        app.latency.line()
    );
    println!("host steal during the window: {steal_line}");
    if app.stamps_missing + app.stamps_inconsistent > 0 {
        println!(
            "receive timestamps: {} missing, {} inconsistent (those messages are not in the socket figures)",
            app.stamps_missing, app.stamps_inconsistent
        );
    }
    let v = &app.v;
    println!(
        "violations: {} (misrouted {}, asymmetric pairs {}, out of order {}, missing {}, \
         message while unpaired {}, paired twice {}, malformed {})",
        v.total(),
        v.misrouted,
        v.asymmetric,
        v.out_of_order,
        v.missing,
        v.not_paired,
        v.double_paired,
        v.malformed
    );
    println!(
        "server notices: waiting {}, left {}, rate_limited {}, other errors {}",
        app.waiting, app.left, app.rate_limited, app.other_errors
    );
    println!("{}", net.stats.line());
    Ok(json!({
        "mode": "chat",
        "url": a.url,
        "clients": a.clients,
        "open": open,
        "ping_pong": a.ping_pong,
        "rate": if a.ping_pong { None } else { Some(a.rate) },
        "pairs": pairs,
        "pair_secs": pair_secs,
        "pairs_per_sec": pairs_per_sec.round(),
        "all_paired": all_known,
        "duration_s": secs,
        "msgs": app.counted,
        "msgs_per_sec": rate.round(),
        "latency_us": app.latency.json(),
        "socket_latency_us": app.socket_latency.json(),
        "steal_pct": steal_json,
        "rx_stamps_missing": app.stamps_missing,
        "rx_stamps_inconsistent": app.stamps_inconsistent,
        "violations": v.total(),
        "violation_kinds": {
            "misrouted": v.misrouted,
            "asymmetric": v.asymmetric,
            "out_of_order": v.out_of_order,
            "missing": v.missing,
            "not_paired": v.not_paired,
            "double_paired": v.double_paired,
            "malformed": v.malformed,
        },
        "left": app.left,
        "rate_limited": app.rate_limited,
        "other_errors": app.other_errors,
        "errors": net.stats.errors(),
        "net": net.stats.json(),
    }))
}

fn main() -> ExitCode {
    // Die quietly on a closed stdout (`| head`), like other Unix tools.
    // SAFETY: restoring the default disposition of one signal at start-up.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Echo(a) => run_echo(a),
        Cmd::Idle(a) => run_idle(a),
        Cmd::Chat(a) => run_chat(a),
        Cmd::WakeFloor(a) => floor::run(a),
    };
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chat-bench: {e}");
            println!("{}", json!({ "error": e }));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_receive_stamps_fall_between_send_and_read() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sender = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (receiver, _) = listener.accept().unwrap();
        enable_rx_timestamps(receiver.as_raw_fd()).unwrap();
        // The kernel turns receive stamping on for the whole system through
        // a deferred work item, so the first segments after the very first
        // socket asks may come unstamped: try (bounded) until one is.
        for _ in 0..200 {
            let before = wall_ns();
            sender.write_all(b"stamped").unwrap();
            let mut buf = [0u8; 64];
            let (n, stamp) = recv_stamped(receiver.as_raw_fd(), &mut buf).unwrap();
            let after = wall_ns();
            assert_eq!(&buf[..n], b"stamped");
            if stamp != 0 {
                assert!(
                    before <= stamp && stamp <= after,
                    "{before} {stamp} {after}"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no receive timestamp in 200 tries");
    }

    #[test]
    fn precise_timer_wakes_poll_at_its_deadline() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mut timer = PreciseTimer::new(poll.registry()).unwrap();
        let at = now_ns() + 2_000_000;
        timer.arm(at);
        // Bounded: the wait gives up after 5 s, far beyond the 2 ms asked.
        let limit = now_ns() + 5 * NS;
        let mut fired = false;
        while !fired && now_ns() < limit {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            fired = events.iter().any(|e| e.token() == TIMER);
        }
        assert!(fired);
        assert!(now_ns() >= at);
        timer.acknowledge();
        assert_eq!(timer.armed_for, 0);
    }

    #[test]
    fn steal_is_a_share_of_each_cpus_time() {
        let before = CpuTimes(vec![("cpu0".into(), 1000, 10), ("cpu1".into(), 1000, 0)]);
        let after = CpuTimes(vec![("cpu0".into(), 1200, 60), ("cpu1".into(), 1100, 1)]);
        assert_eq!(
            after.steal_since(&before),
            vec![("cpu0".to_string(), 25.0), ("cpu1".to_string(), 1.0)]
        );
        let (line, json) = steal_report(&after.steal_since(&before));
        assert_eq!(line, "cpu0 25.0 %, cpu1 1.0 %");
        assert_eq!(json, json!({"cpu0": 25.0, "cpu1": 1.0}));
    }

    #[test]
    fn urls() {
        let t = parse_url("ws://127.0.0.1:9001/echo").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:9001", "/echo")
        );
        let t = parse_url("ws://127.0.0.1:9001").unwrap();
        assert_eq!(t.path, "/");
        assert_eq!(parse_url("ws://[::1]/").unwrap().addr.port(), 80);
        assert_eq!(parse_url("ws://[::1]:7/").unwrap().addr.port(), 7);
        assert!(parse_url("ws://192.0.2.1:80/").is_err());
        assert!(parse_url("wss://127.0.0.1:80/").is_err());
    }

    #[test]
    fn handshake_response() {
        // RFC 6455 section 1.3's example key and accept value.
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81";
        assert!(matches!(parse_handshake(ok, key), Ok(Some(n)) if n == ok.len() - 1));
        assert!(matches!(parse_handshake(&ok[..40], key), Ok(None)));
        let wrong = b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        assert!(matches!(
            parse_handshake(wrong, key),
            Err(Fail::Handshake(_))
        ));
        let refused = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            parse_handshake(refused, key),
            Err(Fail::Handshake(_))
        ));
    }

    #[test]
    fn relay_ids() {
        assert_eq!(parse_id("12:34"), Some((12, 34)));
        assert_eq!(parse_id("12"), None);
        assert_eq!(parse_id("x:1"), None);
    }

    /// Connections without sockets: handlers only append to their `out`.
    fn offline(n: usize) -> Conns {
        let list = (0..n)
            .map(|_| Conn {
                stream: None,
                phase: Phase::Open,
                key: String::new(),
                partial: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
                mask: [1, 2, 3, 4],
                dirty: false,
            })
            .collect();
        Conns {
            list,
            dirty: Vec::new(),
            rx_stamp: 0,
        }
    }

    fn feed(app: &mut ChatApp, conns: &mut Conns, idx: usize, json: &str) {
        app.message(conns, idx, &Message::Text(json.as_bytes()), 1000);
    }

    fn text(app: &mut ChatApp, conns: &mut Conns, idx: usize, text: &str) {
        let json = format!(r#"{{"type":"message","text":"{text}"}}"#);
        feed(app, conns, idx, &json);
    }

    /// Clients 0 and 1 of tag 7 paired, each knowing the other.
    fn paired_pair() -> (ChatApp, Conns) {
        let mut app = ChatApp::new(7, 4, Some(NS), 0);
        let mut conns = offline(4);
        for idx in 0..2 {
            feed(
                &mut app,
                &mut conns,
                idx,
                r#"{"type":"waiting","online":2}"#,
            );
            feed(
                &mut app,
                &mut conns,
                idx,
                r#"{"type":"paired","common":[]}"#,
            );
        }
        text(&mut app, &mut conns, 0, "h 7:1");
        text(&mut app, &mut conns, 1, "h 7:0");
        (app, conns)
    }

    #[test]
    fn chat_checks_pass_a_clean_relay() {
        let (mut app, mut conns) = paired_pair();
        // Each paired client introduced itself on its own connection.
        assert!(!conns.list[0].out.is_empty() && !conns.list[1].out.is_empty());
        app.clients[1].seq_out = 2;
        text(&mut app, &mut conns, 0, "m 7:1 0 900");
        text(&mut app, &mut conns, 0, "m 7:1 1 950");
        app.count_undelivered();
        assert_eq!(app.v.total(), 0);
        assert_eq!(app.delivered, 2);
    }

    #[test]
    fn chat_checks_count_violations() {
        let (mut app, mut conns) = paired_pair();
        text(&mut app, &mut conns, 0, "m 7:2 0 900"); // not the partner
        assert_eq!(app.v.misrouted, 1);
        text(&mut app, &mut conns, 0, "m 7:1 0 900");
        text(&mut app, &mut conns, 0, "m 7:1 2 900"); // 1 skipped
        assert_eq!(app.v.missing, 1);
        text(&mut app, &mut conns, 0, "m 7:1 1 900"); // late
        assert_eq!((app.v.out_of_order, app.v.missing), (1, 0));
        text(&mut app, &mut conns, 2, "m 7:3 0 900"); // never paired
        assert_eq!(app.v.not_paired, 1);
        feed(&mut app, &mut conns, 2, r#"{"type":"paired","common":[]}"#);
        text(&mut app, &mut conns, 2, "h 7:0"); // 0 is with 1, not 2
        assert_eq!(app.v.asymmetric, 1);
        feed(&mut app, &mut conns, 2, r#"{"type":"paired","common":[]}"#);
        assert_eq!(app.v.double_paired, 1);
        feed(&mut app, &mut conns, 3, "not json");
        assert_eq!(app.v.malformed, 1);
        // 1 sent 5 messages; 0 got seqs 0..=2: two never arrived.
        app.clients[1].seq_out = 5;
        app.count_undelivered();
        assert_eq!(app.v.missing, 2);
    }
}
