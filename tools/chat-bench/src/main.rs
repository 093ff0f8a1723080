//! `chat-bench`: the load tool for `chat` (and any RFC 6455 echo server).
//!
//! One thread, one mio event loop, the project's own WebSocket codec in
//! client mode. Five subcommands:
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
//! * `wake-floor`: one loopback hop with no server at all, the machine's
//!   own wake-up latency under the relay figures (`floor.rs`).
//! * `soak`: for `--duration`, up to `--clients` chat and echo clients at a
//!   time connect, talk, `next` and leave in every way a network can (close
//!   frame, FIN, RST, mid-frame, mid-handshake, never reading), seeded;
//!   every message is checked, and at the end `/stats` must be 0/0/0,
//!   `chat_open_connections` back to its start and the server's VmRSS
//!   within `--rss-tolerance` of its post-warm-up reading (exit 1 if not).
//!
//! `echo` and `chat` also report the host's steal time per CPU during the
//! run: on a virtual machine, time the host withholds from a vCPU shows up
//! directly as a millisecond latency tail, whatever the server does.
//!
//! Every run is bounded in time and only loopback targets are accepted.
//! Human-readable lines go to stdout, and the last line is one JSON object
//! for scripts. Network faults never panic: they are counted and reported.
//!
//! Where things are: `cli` (options), `net` + `conn` + `socket` (the client
//! loop: connect, handshake, frames, close), `clock`, `rng`, `target`
//! (loopback URLs, descriptor budget), `stats` (latency, steal, faults),
//! and one module per subcommand: `echo`, `idle`, `chat`, `floor`, `soak`.

use std::process::ExitCode;

use clap::Parser;
use serde_json::json;

mod chat;
mod cli;
mod clock;
mod conn;
mod echo;
mod floor;
mod idle;
mod net;
mod rng;
mod soak;
mod socket;
mod stats;
mod target;
mod tls;

use cli::{Cli, Cmd};

fn main() -> ExitCode {
    // Die quietly on a closed stdout (`| head`), like other Unix tools.
    // SAFETY: restoring the default disposition of one signal at start-up.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Echo(a) => echo::run(a),
        Cmd::Idle(a) => idle::run(a),
        Cmd::Chat(a) => chat::run(a),
        Cmd::WakeFloor(a) => floor::run(a),
        Cmd::Soak(a) => soak::run(a),
    };
    match result {
        Ok(v) => {
            println!("{v}");
            // A run that measured but failed its checks (soak) says so.
            if v.get("ok") == Some(&json!(false)) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("chat-bench: {e}");
            println!("{}", json!({ "error": e }));
            ExitCode::FAILURE
        }
    }
}
