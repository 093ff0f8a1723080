//! The soak's summary: lines for people, then one JSON object for scripts
//! (`"ok"` false makes chat-bench exit non-zero).

use serde_json::{json, Value};

use super::tally::Tally;
use super::{mib, Checks};
use crate::cli::SoakArgs;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "FAILED"
    }
}

pub fn summary(a: &SoakArgs, seed: u64, churn_secs: f64, t: &Tally, c: &Checks) -> Value {
    println!(
        "connections: {} started, {} upgraded ({} chat, {} echo), {} still open when the end \
         phase ran out",
        t.started, t.opened, t.chat_opened, t.echo_opened, t.cut_at_end
    );
    println!(
        "chat: {} messages sent, {} received; typing {} sent, {} received; paired {}, waiting {}, \
         next sent {}; left {} (next {}, disconnected {}; {} checked against the partner's \
         leave, {} not checkable); not_paired errors {}",
        t.chat_sent,
        t.chat_received,
        t.typing_sent,
        t.typing_received,
        t.paired,
        t.waiting,
        t.nexts_sent,
        t.left_next + t.left_disconnected,
        t.left_next,
        t.left_disconnected,
        t.left_verified,
        t.left_unverified,
        t.not_paired_errors
    );
    println!(
        "echo: {} messages sent, {} received",
        t.echo_sent, t.echo_received
    );
    println!("leaves: {}", t.leaves_line());
    println!(
        "answers: close frames {} answered, {} unanswered after 5 s; FINs {} answered, {} \
         unanswered after 5 s; server-initiated closes 1001: {}; mid-handshake clients closed \
         first by the server: {}",
        t.closes_answered,
        t.closes_unanswered,
        t.fins_answered,
        t.fins_unanswered,
        t.server_closed_1001,
        t.handshake_timed_out
    );
    let first = t
        .first
        .as_deref()
        .map_or(String::new(), |f| format!("; first: {f}"));
    println!("violations: {}{first}", t.v.line());

    let stats_text = match &c.stats {
        Ok(s) => format!(
            "{{\"online\":{},\"waiting\":{},\"chatting\":{}}}",
            s.online, s.waiting, s.chatting
        ),
        Err(e) => e.clone(),
    };
    println!(
        "check /stats = 0/0/0: {stats_text} after {:.1} s: {}",
        c.settled_after,
        verdict(c.stats_ok())
    );
    let open_text = match &c.open {
        Ok(n) => n.to_string(),
        Err(e) => e.clone(),
    };
    println!(
        "check chat_open_connections back to {} (each reading counts its own connection): {} \
         after {:.1} s: {}",
        c.base_open,
        open_text,
        c.settled_after,
        verdict(c.open_ok())
    );
    let rss_text = match (&c.rss_end, c.rss_warm, c.rss_growth()) {
        (None, _, _) => "not checked (no --server-pid)".to_string(),
        (Some(Err(e)), _, _) => e.clone(),
        (Some(Ok(end)), Some(warm), Some(g)) => format!(
            "{:.1} MiB after warm-up, {:.1} MiB at the end ({g:+.1} %, at most {:+.1} %)",
            mib(warm),
            mib(*end),
            c.rss_tolerance
        ),
        (Some(Ok(end)), _, _) => format!("{:.1} MiB at the end, no warm-up reading", mib(*end)),
    };
    println!("check VmRSS: {rss_text}: {}", verdict(c.rss_ok()));
    let clean = t.v.total() == 0;
    let ok = clean && c.stats_ok() && c.open_ok() && c.rss_ok();
    println!(
        "soak: {}",
        if ok {
            "passed".to_string()
        } else {
            let mut why = Vec::new();
            if !clean {
                why.push("violations");
            }
            if !c.stats_ok() {
                why.push("/stats");
            }
            if !c.open_ok() {
                why.push("chat_open_connections");
            }
            if !c.rss_ok() {
                why.push("VmRSS");
            }
            format!("FAILED ({})", why.join(", "))
        }
    );
    json!({
        "mode": "soak",
        "url": a.url,
        "seed": seed,
        "duration_s": a.duration,
        "warmup_s": a.warmup,
        // The churn and the end phase (every client leaving), in seconds.
        "ran_s": churn_secs,
        "clients": a.clients,
        "connections": {
            "started": t.started,
            "opened": t.opened,
            "chat": t.chat_opened,
            "echo": t.echo_opened,
            "cut_at_end": t.cut_at_end,
        },
        "chat": {
            "sent": t.chat_sent,
            "received": t.chat_received,
            "typing_sent": t.typing_sent,
            "typing_received": t.typing_received,
            "paired": t.paired,
            "waiting": t.waiting,
            "next_sent": t.nexts_sent,
            "left_next": t.left_next,
            "left_disconnected": t.left_disconnected,
            "left_checked": t.left_verified,
            "left_not_checkable": t.left_unverified,
            "not_paired_errors": t.not_paired_errors,
        },
        "echo": { "sent": t.echo_sent, "received": t.echo_received },
        "leaves": t.leaves_json(),
        "answers": {
            "closes_answered": t.closes_answered,
            "closes_unanswered": t.closes_unanswered,
            "fins_answered": t.fins_answered,
            "fins_unanswered": t.fins_unanswered,
            "server_closed_1001": t.server_closed_1001,
            "mid_handshake_closed_by_server": t.handshake_timed_out,
        },
        "violations": t.v.json(),
        "first_violation": t.first,
        "checks": {
            "settled_after_s": c.settled_after,
            "stats": {
                "ok": c.stats_ok(),
                "value": c.stats.as_ref().ok().map(|s| json!({
                    "online": s.online, "waiting": s.waiting, "chatting": s.chatting,
                })),
                "error": c.stats.as_ref().err(),
            },
            "open_connections": {
                "ok": c.open_ok(),
                "baseline": c.base_open,
                "end": c.open.as_ref().ok(),
                "error": c.open.as_ref().err(),
            },
            "rss": {
                "ok": c.rss_ok(),
                "checked": c.rss_end.is_some(),
                "after_warmup": c.rss_warm,
                "end": c.rss_end.as_ref().and_then(|r| r.as_ref().ok()),
                "growth_pct": c.rss_growth().map(|g| (g * 100.0).round() / 100.0),
                "tolerance_pct": c.rss_tolerance,
            },
        },
        "errors": t.v.total(),
        "ok": ok,
    })
}
