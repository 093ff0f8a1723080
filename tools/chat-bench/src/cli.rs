//! The command line: one subcommand per mode, each with its own options.

use clap::{Args, Parser, Subcommand};

use crate::floor;

#[derive(Parser)]
#[command(
    name = "chat-bench",
    version,
    about = "Load tool for chat: echo throughput/latency, idle memory, chat relay, churn soak"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Echo throughput and round-trip latency with a full pipeline per connection.
    Echo(EchoArgs),
    /// Open many idle connections and report the server's RSS per connection.
    Idle(IdleArgs),
    /// Chat-roulette clients pairing and relaying (PROTOCOL.md), with checks.
    Chat(ChatArgs),
    /// One loopback hop with no server at all: this machine's wake-up floor
    /// under the relay-latency figures.
    WakeFloor(floor::FloorArgs),
    /// Clients connect, talk and leave every way a network can, for a while;
    /// then the server must be back to nobody (exit 1 otherwise).
    Soak(SoakArgs),
}

#[derive(Args, Clone)]
pub struct NetArgs {
    /// Source addresses: connection i binds 127.0.0.(1 + i % N) (IPv4 targets).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub sources: u8,
    /// At most this many connections connecting or handshaking at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Seconds allowed for opening all connections (and pairing, in `chat`).
    #[arg(long, default_value_t = 30.0)]
    pub connect_timeout: f64,
}

#[derive(Args)]
pub struct EchoArgs {
    #[arg(long, default_value = "ws://127.0.0.1:10000/echo")]
    pub url: String,
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Messages kept in flight on each connection.
    #[arg(long, default_value_t = 16)]
    pub in_flight: usize,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Send binary messages instead of text.
    #[arg(long)]
    pub binary: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Args)]
pub struct IdleArgs {
    #[arg(long, default_value = "ws://127.0.0.1:10000/echo")]
    pub url: String,
    #[arg(long, default_value_t = 15_000)]
    pub connections: usize,
    /// The server's pid, for its VmRSS (no RSS figures without it).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Seconds to hold the connections after pinging, before the last RSS reading.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Offer permessage-deflate as a browser does (the server accepts it
    /// unless run with --deflate off): idle compressed sessions.
    #[arg(long)]
    pub offer_deflate: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Args)]
pub struct ChatArgs {
    #[arg(long, default_value = "ws://127.0.0.1:10000/")]
    pub url: String,
    /// Chat clients (two per pair; keep it even).
    #[arg(long, default_value_t = 2000)]
    pub clients: usize,
    /// Seconds measured once the clients are paired.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Messages per second each paired client sends.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Instead of --rate: each client answers its partner's message at once
    /// (one message in flight per pair).
    #[arg(long)]
    pub ping_pong: bool,
    /// Pair clients on chosen event loops of a `--threads N` server: this
    /// share of the pairs spans two loops, the rest stay within one (0 to 1;
    /// `chat/placed.rs`). Clients connect one at a time and the server must
    /// run with an `--interest-wait` longer than the connect phase.
    #[arg(long, value_name = "SHARE")]
    pub cross_loops: Option<f64>,
    /// The nodes of a cluster (comma-separated ws:// URLs), instead of --url:
    /// clients are spread over them as --layout says.
    #[arg(long, value_delimiter = ',', value_name = "URL,URL...")]
    pub targets: Vec<String>,
    /// With --targets: `any` (client i on node i mod N, pairing as the
    /// server likes), or each pair given an interest tag of its own and
    /// put `across` two nodes, on one node (`local`), or `mixed` (every
    /// other pair across): latency is then also reported per kind. Run the
    /// nodes with a long --interest-wait (e.g. 600) for the tags to hold.
    #[arg(long, value_enum, default_value_t = crate::chat::Layout::Any)]
    pub layout: crate::chat::Layout,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Args)]
pub struct SoakArgs {
    /// The server's chat URL; echo clients use /echo at the same address,
    /// and /stats and /metrics are read there.
    #[arg(long, default_value = "ws://127.0.0.1:10000/")]
    pub url: String,
    /// How long clients come and go, warm-up included (30, 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_secs)]
    pub duration: f64,
    /// The first part of --duration; the server's VmRSS read when it ends is
    /// the reference for the memory check.
    #[arg(long, default_value = "5s", value_parser = parse_secs)]
    pub warmup: f64,
    /// Seed of every random choice (default: from the clock; printed, so a
    /// run can be replayed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Clients connected at once, at most.
    #[arg(long, default_value_t = 200, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..=20_000))]
    pub clients: usize,
    /// Longest a client stays before it leaves.
    #[arg(long, default_value = "4s", value_parser = parse_secs)]
    pub max_life: f64,
    /// The server's pid, for the VmRSS check (no memory check without it).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// VmRSS growth allowed from the end of warm-up to the end, in percent.
    #[arg(long, default_value_t = 10.0)]
    pub rss_tolerance: f64,
    /// Longest wait at the end for /stats and /metrics to settle.
    #[arg(long, default_value = "15s", value_parser = parse_secs)]
    pub settle: f64,
    /// Source addresses: connection n binds 127.0.0.(1 + n % N).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub sources: u8,
}

/// Seconds from `30`, `2.5s`, `500ms` (the server's own duration syntax,
/// `chat::config::parse_duration`), or `0`; at most a day.
pub fn parse_secs(s: &str) -> Result<f64, String> {
    if s.trim() == "0" {
        return Ok(0.0);
    }
    let secs = chat::config::parse_duration(s)?.as_secs_f64();
    if secs > 86_400.0 {
        return Err(format!("{s:?}: between 0 and 86400 seconds"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_secs("30"), Ok(30.0));
        assert_eq!(parse_secs("2.5s"), Ok(2.5));
        assert_eq!(parse_secs("500ms"), Ok(0.5));
        assert_eq!(parse_secs(" 0 "), Ok(0.0));
        assert_eq!(parse_secs("1h"), Ok(3600.0));
        for bad in ["", "s", "-1", "25h", "NaN", "inf", "1e9"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn soak_options() {
        let cli = Cli::try_parse_from([
            "chat-bench",
            "soak",
            "--url",
            "ws://127.0.0.1:9/",
            "--duration",
            "30s",
            "--seed",
            "7",
            "--clients",
            "300",
            "--server-pid",
            "42",
            "--warmup",
            "500ms",
        ])
        .unwrap();
        let Cmd::Soak(a) = cli.cmd else {
            panic!("not soak")
        };
        assert_eq!(
            (a.duration, a.warmup, a.seed, a.clients),
            (30.0, 0.5, Some(7), 300)
        );
        assert_eq!(
            (a.server_pid, a.settle, a.rss_tolerance),
            (Some(42), 15.0, 10.0)
        );
        assert!(Cli::try_parse_from(["chat-bench", "soak", "--clients", "1"]).is_err());
    }
}
