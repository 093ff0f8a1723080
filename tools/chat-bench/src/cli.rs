//! The command line: one subcommand per mode, each with its own options.

use clap::{Args, Parser, Subcommand};

use crate::floor;

#[derive(Parser)]
#[command(
    name = "chat-bench",
    version,
    about = "Load tool for chat: echo throughput/latency, idle memory, chat relay"
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
    #[command(flatten)]
    pub net: NetArgs,
}
