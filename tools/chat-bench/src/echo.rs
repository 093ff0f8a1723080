//! `chat-bench echo`: throughput and round-trip latency against an echo
//! endpoint, with a full pipeline of messages in flight per connection.

use std::collections::VecDeque;
use std::time::Duration;

use chat::ws::{encode, Message, OpCode};
use mio::Events;
use serde_json::json;

use crate::cli::EchoArgs;
use crate::clock::{now_ns, secs_to_ns, NS};
use crate::conn::{Conns, Handler};
use crate::net::{connect_phase, Net};
use crate::stats::{steal_report, CpuTimes, Latency};
use crate::target::{check_fds, parse_url};

pub struct EchoApp {
    /// The masked frame of each connection, built once and resent as is.
    pub frames: Vec<Vec<u8>>,
    pub payload: Vec<u8>,
    pub opcode: OpCode,
    pub in_flight: usize,
    /// Send times of each connection's messages in flight, oldest first.
    pub sent: Vec<VecDeque<u64>>,
    pub sending: bool,
    pub window: (u64, u64),
    pub received: u64,
    pub counted: u64,
    pub mismatched: u64,
    pub unexpected: u64,
    pub latency: Latency,
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

pub fn run(a: EchoArgs) -> Result<serde_json::Value, String> {
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
