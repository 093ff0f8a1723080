//! `chat-bench chat`: chat-roulette clients pairing and relaying, with
//! relay latency and counted correctness violations.

use std::time::Duration;

use mio::Events;
use serde_json::json;

use crate::cli::ChatArgs;
use crate::clock::{now_ns, secs_to_ns, wall_ns, PreciseTimer, NS};
use crate::net::Net;
use crate::stats::{steal_report, CpuTimes};
use crate::target::{check_fds, parse_url};

mod app;
mod layout;
mod placed;

use app::ChatApp;
pub use layout::Layout;

pub fn run(a: ChatArgs) -> Result<serde_json::Value, String> {
    let target = parse_url(&a.url)?;
    let targets = a
        .targets
        .iter()
        .map(|u| parse_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    if a.layout != Layout::Any && targets.is_empty() {
        return Err("--layout needs --targets".into());
    }
    if a.cross_loops.is_some() && !targets.is_empty() {
        return Err("--cross-loops places pairs on one server's loops; not with --targets".into());
    }
    if a.cross_loops.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
        return Err("--cross-loops is a share of the pairs, from 0 to 1".into());
    }
    // `--cross-loops`: room for the extra clients placing may connect.
    let room = match a.cross_loops {
        Some(_) => a.clients * placed::OVER_CONNECT,
        None => a.clients,
    };
    check_fds(room)?;
    if a.clients < 2 {
        return Err("--clients must be at least 2".into());
    }
    if a.clients % 2 == 1 {
        eprintln!("warning: an odd number of clients leaves one unpaired");
    }
    if !a.ping_pong && a.rate <= 0.0 {
        return Err("--rate must be positive (or use --ping-pong)".into());
    }
    let mut net = Net::new(target, room, &a.net, 1 << 16).map_err(|e| e.to_string())?;
    if !targets.is_empty() {
        net.plan = layout::plan(a.layout, &targets, a.clients, std::process::id());
    }
    net.rx_timestamps = true;
    if !a.ping_pong {
        net.timer = Some(PreciseTimer::new(net.poll.registry()).map_err(|e| e.to_string())?);
    }
    let mut events = Events::with_capacity(4096);
    let start = now_ns();
    let mut app = ChatApp::new(
        std::process::id(),
        room,
        (!a.ping_pong).then(|| (NS as f64 / a.rate) as u64),
        start,
    );
    app.layout = a.layout;
    let want = a.clients - a.clients % 2;
    let mut pair_deadline = start + secs_to_ns(a.net.connect_timeout);
    let plan = match a.cross_loops {
        Some(share) => {
            let plan = placed::place(
                &mut net,
                &mut events,
                &mut app,
                want / 2,
                share,
                a.net.connect_timeout,
            )?;
            println!(
                "placed {} pairs on {} loop(s), {} across loops ({} clients connected, {} on an unknown loop)",
                plan.pairs.len(),
                plan.loops,
                plan.cross,
                plan.connected,
                plan.unknown
            );
            pair_deadline = now_ns() + secs_to_ns(a.net.connect_timeout);
            Some(plan)
        }
        None => None,
    };
    // Connect and pair everyone (bounded), checking progress every 20 ms.
    let mut last_check = 0;
    let mut all_known = false;
    net.run_until(&mut events, &mut app, pair_deadline, |net, app| {
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
    });
    let open = net.open_count();
    let pairs = app.paired_events as f64 / 2.0;
    let pair_secs = (app.last_paired.saturating_sub(app.start)) as f64 / NS as f64;
    let pairs_per_sec = if pair_secs > 0.0 {
        pairs / pair_secs
    } else {
        0.0
    };
    let shown = if a.targets.is_empty() {
        a.url.clone()
    } else {
        format!("{} ({:?})", a.targets.join(","), a.layout).to_lowercase()
    };
    println!(
        "chat {shown}: {open}/{} clients open, {pairs:.0} pairs in {pair_secs:.2} s ({pairs_per_sec:.0} pairs/s, connect + handshake + pairing){}",
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
    let by_kind = a.layout != Layout::Any;
    if by_kind {
        println!(
            "clients paired with someone else than planned: {}",
            app.unplanned
        );
        for (kind, name) in [(1, "across nodes"), (0, "on one node")] {
            println!(
                "  pairs {name}: socket {}; handler {}",
                app.socket_latency_by_kind[kind].line(),
                app.latency_by_kind[kind].line()
            );
        }
    }
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
        "targets": a.targets,
        "layout": format!("{:?}", a.layout).to_lowercase(),
        "clients": a.clients,
        "open": open,
        "ping_pong": a.ping_pong,
        "cross_loops": a.cross_loops,
        "placed_pairs": plan.as_ref().map(|p| p.pairs.len()),
        "placed_cross": plan.as_ref().map(|p| p.cross),
        "loops": plan.as_ref().map(|p| p.loops),
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
        "across": by_kind.then(|| json!({
            "latency_us": app.latency_by_kind[1].json(),
            "socket_latency_us": app.socket_latency_by_kind[1].json(),
        })),
        "unplanned": app.unplanned,
        "local": by_kind.then(|| json!({
            "latency_us": app.latency_by_kind[0].json(),
            "socket_latency_us": app.socket_latency_by_kind[0].json(),
        })),
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
