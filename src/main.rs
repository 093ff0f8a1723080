//! `chat`: the command line. Everything else lives in the library.

use chat::chat::video::check_ice_url;
use chat::chat::TurnSecret;
use chat::config::{
    parse_busy_poll, parse_duration, DEFAULT_BUSY_POLL, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_INTEREST_WAIT, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_RATE_LIMIT, DEFAULT_THREADS, DEFAULT_TURN_TTL, MAX_THREADS,
};
use chat::server::{Config, Threads};
use clap::Parser;
use log::{info, warn};
use std::fmt;
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
    #[arg(long, env = "CHAT_LISTEN", default_value_t = DEFAULT_LISTEN, value_name = "ADDR")]
    listen: SocketAddr,

    /// Open connections at most; more are closed at once.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,

    /// Largest WebSocket message in bytes (after reassembly); larger: close 1009.
    #[arg(long, env = "CHAT_MAX_MESSAGE_SIZE", default_value_t = DEFAULT_MAX_MESSAGE_SIZE as u64, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(125..=1 << 30))]
    max_message_size: u64,

    /// A request head must be complete within this (e.g. 10, 2.5s, 500ms).
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT", default_value_t = Seconds(DEFAULT_HANDSHAKE_TIMEOUT),
          value_name = "SECONDS", value_parser = seconds)]
    handshake_timeout: Seconds,

    /// WebSocket silence: ping after half of it, close 1001 after all of it.
    #[arg(long, env = "CHAT_IDLE_TIMEOUT", default_value_t = Seconds(DEFAULT_IDLE_TIMEOUT),
          value_name = "SECONDS", value_parser = seconds)]
    idle_timeout: Seconds,

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
    #[arg(long, env = "CHAT_INTEREST_WAIT", default_value_t = Seconds(DEFAULT_INTEREST_WAIT),
          value_name = "SECONDS", value_parser = seconds)]
    interest_wait: Seconds,

    /// Chat messages a client may send per second, in bursts of twice that;
    /// over it they are dropped (`rate_limited`), at 10x the session is closed 1008.
    #[arg(long, env = "CHAT_RATE_LIMIT", default_value_t = DEFAULT_RATE_LIMIT, value_name = "PER_SECOND",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rate_limit: u64,

    /// After a turn with events, keep polling this long (e.g. 200us, 0.5ms)
    /// before sleeping: lower wake-up latency for more CPU. 0 = off.
    #[arg(long, env = "CHAT_BUSY_POLL", default_value_t = Seconds(DEFAULT_BUSY_POLL),
          value_name = "DURATION", value_parser = busy_poll_seconds)]
    busy_poll: Seconds,

    /// ICE server for video, handed to both strangers of a pair
    /// (repeatable; env: comma-separated): stun:HOST:PORT, turn:HOST:PORT,
    /// turns:HOST:PORT.
    #[arg(long, env = "CHAT_ICE_SERVER", value_name = "URL", value_delimiter = ',',
          value_parser = ice_url)]
    ice_server: Vec<String>,

    /// File holding the secret shared with the TURN server (coturn's
    /// static-auth-secret): turn: servers then get time-limited credentials.
    /// Read once at start.
    #[arg(long, env = "CHAT_TURN_SECRET_FILE", value_name = "PATH", value_parser = turn_secret_file)]
    turn_secret_file: Option<TurnSecret>,

    /// How long a TURN credential handed out at pairing stays valid.
    #[arg(long, env = "CHAT_TURN_TTL", default_value_t = Seconds(DEFAULT_TURN_TTL),
          value_name = "SECONDS", value_parser = seconds)]
    turn_ttl: Seconds,

    /// Event loops, one per thread (at most 64); 0 (the default): one per
    /// CPU this process may run on. 1 is the single loop of a one-core server.
    #[arg(long, env = "CHAT_THREADS", default_value_t = DEFAULT_THREADS as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=MAX_THREADS as u64))]
    threads: u64,
}

impl Cli {
    /// The server settings the options ask for; the rest are defaults.
    fn into_config(self) -> Config {
        Config {
            listen: self.listen,
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            max_message_size: usize::try_from(self.max_message_size).unwrap_or(usize::MAX),
            handshake_timeout: self.handshake_timeout.0,
            idle_timeout: self.idle_timeout.0,
            allowed_origins: self.allowed_origin,
            interest_wait: self.interest_wait.0,
            rate_limit: self.rate_limit,
            busy_poll: self.busy_poll.0,
            ice_servers: self.ice_server,
            turn_secret: self.turn_secret_file,
            turn_ttl: self.turn_ttl.0,
            threads: usize::try_from(self.threads).unwrap_or(1),
            ..Config::default()
        }
    }
}

/// A duration option's value. clap shows a `default_value_t` through
/// `Display` and parses that text back, so the default can be the
/// `config::DEFAULT_*` constant itself: printed as seconds (`10`, `0.0002`,
/// `0`), which `parse_duration` and `parse_busy_poll` read back exactly
/// for whole and decimal seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

fn seconds(text: &str) -> Result<Seconds, String> {
    parse_duration(text).map(Seconds)
}

fn busy_poll_seconds(text: &str) -> Result<Seconds, String> {
    parse_busy_poll(text).map(Seconds)
}

fn ice_url(text: &str) -> Result<String, String> {
    let url = text.trim();
    check_ice_url(url).map(|()| url.to_string())
}

/// Reads the TURN secret when the options are parsed, so an unreadable or
/// empty file stops the server at start with one line naming the option.
fn turn_secret_file(path: &str) -> Result<TurnSecret, String> {
    let content = std::fs::read(path).map_err(|e| format!("cannot read '{path}': {e}"))?;
    TurnSecret::from_file_content(&content).ok_or_else(|| format!("'{path}' is empty"))
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

    let config = cli.into_config();
    let has_secret = config.turn_secret.is_some();
    let has_turn = config.ice_servers.iter().any(|u| u.starts_with("turn"));
    let listen = config.listen;
    let mut server = match Threads::bind(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("chat: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = server.handle_signals() {
        warn!("cannot handle SIGINT/SIGTERM: {e}");
    }
    let addr = server.local_addr().unwrap_or(listen);
    let page_host = if addr.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), addr.port())
    } else {
        addr
    };
    info!("{} event loop(s)", server.loop_count());
    info!("chat listening on {addr}; open http://{page_host}/ (echo: ws://{page_host}/echo)");
    if has_secret && !has_turn {
        warn!("--turn-secret-file is set but no --ice-server is a turn: URL");
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    /// `Cli` parsed from `args` with every `CHAT_*` variable ignored, so
    /// the test does not depend on the environment it runs in.
    fn parse(args: &[&str]) -> Cli {
        let command = Cli::command().mut_args(|a| a.env(None::<&str>));
        let matches = command
            .try_get_matches_from(std::iter::once("chat").chain(args.iter().copied()))
            .unwrap();
        Cli::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn no_arguments_give_the_default_config() {
        assert_eq!(parse(&[]).into_config(), Config::default());
    }

    #[test]
    fn options_reach_the_config() {
        let config = parse(&[
            "--listen=127.0.0.2:1",
            "--max-connections=7",
            "--max-message-size=125",
            "--handshake-timeout=2.5",
            "--idle-timeout=500ms",
            "--allowed-origin=https://a",
            "--interest-wait=1",
            "--rate-limit=3",
            "--busy-poll=200us",
            "--ice-server=stun:127.0.0.1:3478",
            "--ice-server",
            "turn:127.0.0.1:3478?transport=tcp",
            "--turn-ttl=1h",
            "--threads=3",
        ])
        .into_config();
        let want = Config {
            listen: "127.0.0.2:1".parse().unwrap(),
            max_connections: 7,
            max_message_size: 125,
            handshake_timeout: Duration::from_millis(2500),
            idle_timeout: Duration::from_millis(500),
            allowed_origins: vec!["https://a".to_string()],
            interest_wait: Duration::from_secs(1),
            rate_limit: 3,
            busy_poll: Duration::from_micros(200),
            ice_servers: vec![
                "stun:127.0.0.1:3478".to_string(),
                "turn:127.0.0.1:3478?transport=tcp".to_string(),
            ],
            turn_ttl: Duration::from_secs(3600),
            threads: 3,
            ..Config::default()
        };
        assert_eq!(config, want);
    }

    #[test]
    fn the_turn_secret_file_is_read_trimmed_and_must_not_be_empty() {
        let dir = std::env::temp_dir().join(format!("chat-main-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "  s3cret\n").unwrap();
        let path = secret.to_str().unwrap();
        let config = parse(&["--turn-secret-file", path]).into_config();
        assert_eq!(config.turn_secret, TurnSecret::from_file_content(b"s3cret"));
        assert!(config.turn_secret.is_some());
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").unwrap();
        assert!(turn_secret_file(empty.to_str().unwrap()).is_err());
        assert!(turn_secret_file(dir.join("missing").to_str().unwrap()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ice_urls_must_be_stun_or_turn() {
        assert_eq!(ice_url(" stun:h:3478 "), Ok("stun:h:3478".to_string()));
        assert!(ice_url("turns:h:5349").is_ok());
        assert!(ice_url("http://h").is_err());
        assert!(ice_url("turn:").is_err());
        assert!(ice_url("turn:a b").is_err());
    }

    #[test]
    fn seconds_print_what_the_parsers_read_back() {
        for d in [
            Duration::ZERO,
            Duration::from_micros(200),
            Duration::from_millis(2500),
            Duration::from_secs(10),
            Duration::from_secs(3600),
        ] {
            let text = Seconds(d).to_string();
            if !d.is_zero() {
                assert_eq!(seconds(&text), Ok(Seconds(d)), "{text}");
            }
            if d <= Duration::from_secs(1) {
                assert_eq!(busy_poll_seconds(&text), Ok(Seconds(d)), "{text}");
            }
        }
        assert_eq!(Seconds(Duration::from_secs(10)).to_string(), "10");
    }
}
