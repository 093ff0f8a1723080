//! `chat-bench soak`: nothing lost under churn.
//!
//! For `--duration`, up to `--clients` clients at a time connect (chat and
//! echo), pair, talk, `next`, and leave in every way a network can: close
//! frame, FIN, RST, mid-frame, mid-handshake, never reading (`plan`). Each
//! connection's choices come from `--seed` and its serial number. What they
//! hear is checked as it arrives (`talk`, `echoes`); any violation fails
//! the run. When the churn stops the server must show that nobody is left
//! (`probe`): `/stats` back to 0/0/0 and `chat_open_connections` back to
//! the reading taken before the first client, each polled until it holds
//! or `--settle` passes; and, with `--server-pid`, its VmRSS no more than
//! `--rss-tolerance` percent above the reading taken when the warm-up
//! ended. The exit status is non-zero when any check fails.
//!
//! The soak expects to be the server's only client: anyone else's chat
//! messages would read as malformed, and their connections as a leak.

use std::time::Duration;

use mio::{Events, Poll, Token};
use serde_json::Value;

use crate::cli::SoakArgs;
use crate::clock::{now_ns, secs_to_ns};
use crate::rng::Rng;
use crate::target::{check_fds, parse_url, Target};

mod echoes;
mod plan;
mod probe;
mod report;
mod slot;
mod talk;
mod tally;

use plan::{secs, MS};
use slot::{Ctx, Slot, Stage, ANSWER_WAIT};
use talk::Ledger;
use tally::Tally;

/// The loop's read buffer.
const READ_BUF: usize = 64 * 1024;

/// What the end checks found.
pub struct Checks {
    pub stats: Result<probe::Stats, String>,
    pub open: Result<u64, String>,
    pub base_open: u64,
    pub settled_after: f64,
    pub rss_warm: Option<u64>,
    pub rss_end: Option<Result<u64, String>>,
    pub rss_tolerance: f64,
}

impl Checks {
    pub fn stats_ok(&self) -> bool {
        matches!(&self.stats, Ok(s) if s.is_empty())
    }

    pub fn open_ok(&self) -> bool {
        self.open == Ok(self.base_open)
    }

    /// The growth in percent, when both readings exist.
    pub fn rss_growth(&self) -> Option<f64> {
        match (self.rss_warm, &self.rss_end) {
            (Some(w), Some(Ok(e))) if w > 0 => Some(100.0 * (*e as f64 - w as f64) / w as f64),
            _ => None,
        }
    }

    /// Passes without a pid (nothing to read), fails when a reading failed.
    pub fn rss_ok(&self) -> bool {
        match &self.rss_end {
            None => true,
            Some(_) => self.rss_growth().is_some_and(|g| g <= self.rss_tolerance),
        }
    }
}

pub fn run(a: SoakArgs) -> Result<Value, String> {
    let chat = parse_url(&a.url)?;
    if chat.tls {
        return Err("soak speaks ws:// only".into());
    }
    let echo = Target {
        path: "/echo".into(),
        ..chat.clone()
    };
    if a.clients < 2 {
        return Err("--clients must be at least 2".into());
    }
    if a.warmup >= a.duration {
        return Err("--warmup must be shorter than --duration".into());
    }
    check_fds(a.clients)?;
    let seed = a.seed.unwrap_or_else(|| Rng::new().next());
    let (addr, host) = (chat.addr, chat.host.as_str());
    // The first reading of this run: no earlier reading's connection can
    // still be closing in the server.
    let base_open = probe::open_connections(addr, host)?;
    let base_stats = probe::stats(addr, host)?;
    let rss = |pid: u32| chat::sys::vm_rss_bytes(pid).map_err(|e| format!("VmRSS: {e}"));
    let rss_start = a.server_pid.map(rss).transpose()?;
    println!(
        "soak {}: seed {seed}, {:.1} s ({:.1} s warm-up), {} clients at once; before: /stats {:?}, \
         chat_open_connections {base_open}{}",
        a.url,
        a.duration,
        a.warmup,
        a.clients,
        base_stats,
        rss_start.map_or(String::new(), |r| format!(", VmRSS {:.1} MiB", mib(r))),
    );

    let mut t = Tally::default();
    let (rss_warm, churn_secs) = churn(&a, seed, &chat, &echo, &mut t, rss)?;

    // The end checks: poll until everything is back, at most --settle.
    let t0 = now_ns();
    let settle_end = t0 + secs_to_ns(a.settle);
    let mut checks = Checks {
        stats: Err("not read".into()),
        open: Err("not read".into()),
        base_open,
        settled_after: 0.0,
        rss_warm,
        rss_end: None,
        rss_tolerance: a.rss_tolerance,
    };
    loop {
        checks.stats = probe::stats(addr, host);
        checks.open = probe::open_connections(addr, host);
        checks.settled_after = secs(now_ns() - t0);
        if (checks.stats_ok() && checks.open_ok()) || now_ns() >= settle_end {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    checks.rss_end = a.server_pid.map(rss);
    Ok(report::summary(&a, seed, churn_secs, &t, &checks))
}

/// The churn itself: clients come and go until --duration, then every one
/// still there leaves (bounded). Returns the VmRSS read at the end of the
/// warm-up and how long the churn ran.
fn churn(
    a: &SoakArgs,
    seed: u64,
    chat: &Target,
    echo: &Target,
    t: &mut Tally,
    rss: impl Fn(u32) -> Result<u64, String>,
) -> Result<(Option<u64>, f64), String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Slot> = (0..a.clients).map(Slot::new).collect();
    let mut ledger = Ledger::default();
    let mut buf = vec![0u8; READ_BUF];
    let start = now_ns();
    let warm_end = start + secs_to_ns(a.warmup);
    let churn_end = start + secs_to_ns(a.duration);
    // Leaving takes at most ANSWER_WAIT, plus a never-reading hold.
    let hard_end = churn_end + 2 * ANSWER_WAIT;
    let mut rss_warm = None;
    let mut warm_read = false;
    let mut serial = 0u64;
    let mut stopping = false;
    loop {
        let now = now_ns();
        if !stopping && now >= churn_end {
            stopping = true;
            slots.iter_mut().for_each(|s| s.hurry(now));
        }
        if stopping && slots.iter().all(|s| matches!(s.stage, Stage::Free(_))) {
            break;
        }
        if now >= hard_end {
            t.cut_at_end = slots
                .iter()
                .filter(|s| !matches!(s.stage, Stage::Free(_)))
                .count() as u64;
            break;
        }
        if !warm_read && now >= warm_end {
            warm_read = true;
            rss_warm = a.server_pid.map(&rss).transpose()?;
        }
        let mut cx = Ctx {
            registry: poll.registry(),
            buf: &mut buf,
            ledger: &mut ledger,
            t: &mut *t,
            chat,
            echo,
            sources: a.sources,
            seed,
            max_life: secs_to_ns(a.max_life),
            stopping,
            now,
        };
        for s in slots.iter_mut() {
            if s.deadline() > now {
                continue;
            }
            match s.stage {
                Stage::Free(_) => {
                    s.start(serial, &mut cx);
                    serial += 1;
                }
                _ => s.on_timer(&mut cx),
            }
        }
        let next = slots.iter().map(Slot::deadline).min().unwrap_or(u64::MAX);
        let next = next.min(if stopping { hard_end } else { churn_end });
        let next = if warm_read { next } else { next.min(warm_end) };
        // At least every 20 ms, to notice the phases.
        let wait = next.saturating_sub(now_ns()).min(20 * MS);
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_nanos(wait))) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
        }
        let mut cx = Ctx {
            registry: poll.registry(),
            buf: &mut buf,
            ledger: &mut ledger,
            t: &mut *t,
            chat,
            echo,
            sources: a.sources,
            seed,
            max_life: secs_to_ns(a.max_life),
            stopping,
            now: now_ns(),
        };
        for ev in events.iter() {
            let Token(i) = ev.token();
            if let Some(s) = slots.get_mut(i) {
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                s.on_event(readable, &mut cx);
            }
        }
    }
    // Whatever is still open closes with the slots (counted as cut).
    drop(slots);
    Ok((rss_warm, secs(now_ns() - start)))
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
