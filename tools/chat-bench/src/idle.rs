//! `chat-bench idle`: many idle connections, and the server's RSS per
//! connection.

use std::time::Duration;

use chat::ws::{Message, OpCode};
use mio::Events;
use serde_json::json;

use crate::cli::IdleArgs;
use crate::clock::{now_ns, secs_to_ns, NS};
use crate::conn::{Conns, Handler};
use crate::net::{connect_phase, Net};
use crate::target::{check_fds, parse_url};

#[derive(Default)]
pub struct IdleApp {
    pub pongs: u64,
    pub lost: u64,
    pub other: u64,
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

pub fn run(a: IdleArgs) -> Result<serde_json::Value, String> {
    let mut target = parse_url(&a.url)?;
    if a.offer_deflate {
        target.extensions = Some("permessage-deflate; client_max_window_bits");
    }
    check_fds(a.connections)?;
    let rss = |when: &str| -> Result<Option<u64>, String> {
        match a.pid {
            None => Ok(None),
            Some(pid) => chat::sys::vm_rss_bytes(pid)
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
