//! `chat`: the command line. Everything else lives in the library.

use chat::server::config::{parse_busy_poll, parse_duration, DEFAULT_LISTEN};
use chat::server::{Config, Server};
use clap::Parser;
use log::{info, warn};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// A chat-roulette server: strangers open the page, get paired at random
/// and talk over WebSocket. Every option can also be set through the
/// environment variable shown.
#[derive(Parser, Debug)]
#[command(name = "chat", version, about, long_about = None, allow_negative_numbers = true)]
struct Cli {
    /// Address to listen on (page at http://ADDR/, echo at ws://ADDR/echo).
    #[arg(long, env = "CHAT_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    listen: SocketAddr,

    /// Open connections at most; more are closed at once.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 100_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,

    /// Largest WebSocket message in bytes (after reassembly); larger: close 1009.
    #[arg(long, env = "CHAT_MAX_MESSAGE_SIZE", default_value_t = 65_536, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(125..=1 << 30))]
    max_message_size: u64,

    /// A request head must be complete within this (e.g. 10, 2.5s, 500ms).
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT", default_value = "10", value_name = "SECONDS",
          value_parser = parse_duration)]
    handshake_timeout: Duration,

    /// WebSocket silence: ping after half of it, close 1001 after all of it.
    #[arg(long, env = "CHAT_IDLE_TIMEOUT", default_value = "60", value_name = "SECONDS",
          value_parser = parse_duration)]
    idle_timeout: Duration,

    /// Allowed `Origin` for WebSocket upgrades (repeatable; env: comma-separated).
    /// When given, other origins get 403.
    #[arg(
        long,
        env = "CHAT_ALLOWED_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    allowed_origin: Vec<String>,

    /// How long a client with interests waits for a match before taking anyone.
    #[arg(long, env = "CHAT_INTEREST_WAIT", default_value = "5", value_name = "SECONDS",
          value_parser = parse_duration)]
    interest_wait: Duration,

    /// Chat messages a client may send per second, in bursts of twice that;
    /// over it they are dropped (`rate_limited`), at 10x the session is closed 1008.
    #[arg(long, env = "CHAT_RATE_LIMIT", default_value_t = 10, value_name = "PER_SECOND",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rate_limit: u64,

    /// After a turn with events, keep polling this long (e.g. 200us, 0.5ms)
    /// before sleeping: lower wake-up latency for more CPU. 0 = off.
    #[arg(long, env = "CHAT_BUSY_POLL", default_value = "0", value_name = "DURATION",
          value_parser = parse_busy_poll)]
    busy_poll: Duration,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line naming the option, not clap's whole screen.
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("chat: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    raise_fd_limit();

    let config = Config {
        listen: cli.listen,
        max_connections: usize::try_from(cli.max_connections).unwrap_or(usize::MAX),
        max_message_size: usize::try_from(cli.max_message_size).unwrap_or(usize::MAX),
        handshake_timeout: cli.handshake_timeout,
        idle_timeout: cli.idle_timeout,
        allowed_origins: cli.allowed_origin,
        interest_wait: cli.interest_wait,
        rate_limit: cli.rate_limit,
        busy_poll: cli.busy_poll,
        ..Config::default()
    };
    let mut server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("chat: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = server.handle_signals() {
        warn!("cannot handle SIGINT/SIGTERM: {e}");
    }
    let addr = server.local_addr().unwrap_or(cli.listen);
    let page_host = if addr.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), addr.port())
    } else {
        addr
    };
    info!("chat listening on {addr}; open http://{page_host}/ (echo: ws://{page_host}/echo)");
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft descriptor limit to the hard one: every connection is a
/// descriptor, and the default soft limit (often 1024) is far too low.
fn raise_fd_limit() {
    match chat::sys::raise_fd_limit() {
        Ok(limit) => info!("file descriptor limit: {limit}"),
        Err(e) => warn!("cannot raise the file descriptor limit: {e}"),
    }
}
