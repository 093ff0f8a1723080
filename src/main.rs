//! `chat`: the command line. Everything else lives in the library.

use chat::chat::video::check_ice_url;
use chat::chat::TurnSecret;
use chat::cluster::RedisUrl;
use chat::config::{
    parse_busy_poll, parse_duration, DEFAULT_AUTO_BAN_MINUTES, DEFAULT_AUTO_BAN_REPORTERS,
    DEFAULT_BLOCK_HOURS, DEFAULT_BUSY_POLL, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_INTEREST_WAIT, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_RATE_LIMIT, DEFAULT_SESSIONS_PER_MINUTE_PER_IP,
    DEFAULT_THREADS, DEFAULT_TURN_TTL, MAX_THREADS,
};
use chat::config::{
    DEFAULT_CLUSTER, DEFAULT_DEFLATE, DEFAULT_DEFLATE_MIN_SIZE, DEFAULT_REDIS_GRACE,
};
use chat::safety::addr::Cidr;
use chat::safety::{SafetyConfig, SafetyHandle};
use chat::server::{Config, Threads, TlsAcceptor, TlsFiles};
use clap::Parser;
use log::{info, warn};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
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

    /// TLS certificate chain (PEM, the server's certificate first): the
    /// listener then speaks only TLS (https:, wss:). Needs --tls-key;
    /// SIGHUP reloads both.
    #[arg(long, env = "CHAT_TLS_CERT", value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// permessage-deflate (RFC 7692) with clients that offer it: on or off.
    #[arg(long, env = "CHAT_DEFLATE", default_value_t = OnOff(DEFAULT_DEFLATE),
          value_name = "on|off", value_parser = on_off)]
    deflate: OnOff,

    /// Messages shorter than this many bytes are sent uncompressed even
    /// when compression was negotiated.
    #[arg(long, env = "CHAT_DEFLATE_MIN_SIZE", default_value_t = DEFAULT_DEFLATE_MIN_SIZE as u64,
          value_name = "BYTES", value_parser = clap::value_parser!(u64).range(0..=1 << 30))]
    deflate_min_size: u64,

    /// A proxy whose X-Forwarded-For / X-Real-IP is believed (repeatable;
    /// env: comma-separated): an address or a CIDR range. None by default.
    #[arg(long, env = "CHAT_TRUST_PROXY", value_name = "CIDR", value_delimiter = ',',
          value_parser = trust_range)]
    trust_proxy: Vec<Cidr>,

    /// Open connections from one address (IPv6: one /64) at most; more get
    /// 429. 0 = off (64 recommended in public).
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP,
          value_name = "N")]
    max_connections_per_ip: u32,

    /// New WebSocket sessions per minute from one address, in bursts of
    /// half that; more get 429. 0 = off (60 recommended in public).
    #[arg(long, env = "CHAT_SESSIONS_PER_MINUTE_PER_IP", default_value_t = DEFAULT_SESSIONS_PER_MINUTE_PER_IP,
          value_name = "N")]
    sessions_per_minute_per_ip: u32,

    /// Hours a block (or report) keeps two addresses from being paired.
    #[arg(long, env = "CHAT_BLOCK_HOURS", default_value_t = DEFAULT_BLOCK_HOURS, value_name = "HOURS",
          value_parser = clap::value_parser!(u64).range(1..=8760))]
    block_hours: u64,

    /// Append every report to this file as one JSON line.
    #[arg(long, env = "CHAT_REPORT_LOG", value_name = "PATH")]
    report_log: Option<PathBuf>,

    /// Reports from this many distinct addresses within 10 minutes ban the
    /// reported address. 0 = no automatic bans.
    #[arg(long, env = "CHAT_AUTO_BAN_REPORTERS", default_value_t = DEFAULT_AUTO_BAN_REPORTERS,
          value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1000))]
    auto_ban_reporters: u32,

    /// How long an automatic ban lasts. 0 = no automatic bans.
    #[arg(long, env = "CHAT_AUTO_BAN_MINUTES", default_value_t = DEFAULT_AUTO_BAN_MINUTES,
          value_name = "MINUTES", value_parser = clap::value_parser!(u64).range(0..=5_270_400))]
    auto_ban_minutes: u64,

    /// Keep bans in this file (JSON lines): loaded at start, rewritten
    /// atomically on every change.
    #[arg(long, env = "CHAT_BAN_FILE", value_name = "PATH")]
    ban_file: Option<PathBuf>,

    /// Words or phrases (one a line) that a chat message may not contain.
    #[arg(long, env = "CHAT_BLOCKED_WORDS", value_name = "PATH")]
    blocked_words: Option<PathBuf>,

    /// The rules shown on the page and at GET /rules (plain text). Read at start.
    #[arg(long, env = "CHAT_RULES_FILE", value_name = "PATH", value_parser = rules_file)]
    rules_file: Option<String>,

    /// Serve the admin door on this address (needs --admin-token-file).
    #[arg(long, env = "CHAT_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,

    /// The admin door's bearer token (file readable by its owner only).
    #[arg(long, env = "CHAT_ADMIN_TOKEN_FILE", value_name = "PATH")]
    admin_token_file: Option<PathBuf>,

    /// Event loops, one per thread (at most 64); 0 (the default): one per
    /// CPU this process may run on. 1 is the single loop of a one-core server.
    #[arg(long, env = "CHAT_THREADS", default_value_t = DEFAULT_THREADS as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=MAX_THREADS as u64))]
    threads: u64,

    /// Join a cluster of nodes sharing this Redis:
    /// redis://[:PASSWORD@]HOST[:PORT][/DB]. Without it the node is alone
    /// and Redis is never needed; an unreachable Redis is retried.
    #[arg(long, env = "CHAT_REDIS", value_name = "URL", value_parser = redis_url)]
    redis: Option<RedisUrl>,

    /// The cluster's name (several clusters can share one Redis).
    #[arg(long, env = "CHAT_CLUSTER", default_value = DEFAULT_CLUSTER, value_name = "NAME",
          value_parser = cluster_name)]
    cluster: String,

    /// How long pairs across nodes outlive a lost Redis before they end
    /// with left/disconnected (e.g. 5, 2.5s, 500ms).
    #[arg(long, env = "CHAT_REDIS_GRACE", default_value_t = Seconds(DEFAULT_REDIS_GRACE),
          value_name = "DURATION", value_parser = seconds)]
    redis_grace: Seconds,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Talk to a running server's admin door.
    Admin(AdminArgs),
}

#[derive(clap::Args, Debug)]
struct AdminArgs {
    /// The admin door's address.
    #[arg(
        long,
        env = "CHAT_ADMIN_LISTEN",
        default_value = "127.0.0.1:10001",
        value_name = "ADDR"
    )]
    admin_listen: SocketAddr,

    /// The token file the server reads.
    #[arg(long, env = "CHAT_ADMIN_TOKEN_FILE", value_name = "PATH")]
    admin_token_file: PathBuf,

    #[command(subcommand)]
    action: AdminAction,
}

#[derive(clap::Subcommand, Debug)]
enum AdminAction {
    /// List the bans in force.
    Bans,
    /// Ban an address (203.0.113.7), an IPv6 /64 (2001:db8::1) or a range.
    Ban {
        /// Address or CIDR range.
        address: String,
        /// How long.
        #[arg(long, default_value_t = 60)]
        minutes: u64,
        /// Why (shown to the banned client).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift a ban by its id.
    Unban {
        /// The ban's id.
        id: u64,
    },
    /// List reports (after a report id).
    Reports {
        /// Only reports with a larger id.
        #[arg(long)]
        after: Option<u64>,
    },
}

/// An `on|off` option's value, shown the way it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OnOff(bool);

impl fmt::Display for OnOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "on" } else { "off" })
    }
}

fn on_off(text: &str) -> Result<OnOff, String> {
    match text.trim() {
        "on" => Ok(OnOff(true)),
        "off" => Ok(OnOff(false)),
        other => Err(format!("expected on or off, not {other:?}")),
    }
}

impl Cli {
    /// `--tls-cert` and `--tls-key` (clap makes sure both or neither).
    fn tls_files(&self) -> Option<TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }

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
            deflate: self.deflate.0,
            deflate_min_size: usize::try_from(self.deflate_min_size).unwrap_or(usize::MAX),
            safety: SafetyConfig {
                trust_proxy: self.trust_proxy,
                max_connections_per_ip: self.max_connections_per_ip,
                sessions_per_minute_per_ip: self.sessions_per_minute_per_ip,
                block_hours: self.block_hours,
                report_log: self.report_log,
                auto_ban_reporters: self.auto_ban_reporters,
                auto_ban_minutes: self.auto_ban_minutes,
                ban_file: self.ban_file,
                blocked_words: self.blocked_words,
            },
            rules: self.rules_file,
            threads: usize::try_from(self.threads).unwrap_or(1),
            redis: self.redis,
            cluster: self.cluster,
            redis_grace: self.redis_grace.0,
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

fn redis_url(text: &str) -> Result<RedisUrl, String> {
    RedisUrl::parse(text)
}

/// A cluster name goes into every Redis key's hash tag: no braces, no
/// spaces, not empty, at most 64 bytes.
fn cluster_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "'{text}': 1 to 64 printable characters without braces or spaces"
        ))
    }
}

fn trust_range(text: &str) -> Result<Cidr, String> {
    Cidr::parse(text, false)
}

/// Reads the rules file when the options are parsed.
fn rules_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read '{path}': {e}"))
}

/// `chat admin …`: one request, the answer printed; exit 0 on 2xx.
fn run_admin(args: AdminArgs) -> ExitCode {
    let token = match chat::admin::read_token_file(&args.admin_token_file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::from(2);
        }
    };
    let (method, path, body) = match &args.action {
        AdminAction::Bans => ("GET", "/admin/bans".to_string(), None),
        AdminAction::Ban {
            address,
            minutes,
            reason,
        } => (
            "POST",
            "/admin/bans".to_string(),
            Some(
                serde_json::json!({"address": address, "minutes": minutes, "reason": reason})
                    .to_string(),
            ),
        ),
        AdminAction::Unban { id } => ("DELETE", format!("/admin/bans/{id}"), None),
        AdminAction::Reports { after } => (
            "GET",
            match after {
                Some(a) => format!("/admin/reports?after={a}"),
                None => "/admin/reports".to_string(),
            },
            None,
        ),
    };
    match chat::admin::client::request(args.admin_listen, &token, method, &path, body.as_deref()) {
        Ok((status, body)) => {
            if !body.is_empty() {
                println!("{}", chat::admin::client::pretty(&body));
            }
            if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                eprintln!("chat: the admin door answered {status}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Listening beyond loopback with both per-address limits off: worth one
/// warning at start (they are off by default, PROTOCOL.md).
fn unprotected(config: &Config) -> bool {
    !config.listen.ip().is_loopback()
        && config.safety.max_connections_per_ip == 0
        && config.safety.sessions_per_minute_per_ip == 0
}

/// The admin door's token, when `--admin-listen` is given; `Err` (exit 2)
/// for one flag without the other or a token file that is not private.
fn admin_token(cli: &Cli) -> Result<Option<String>, String> {
    match (&cli.admin_listen, &cli.admin_token_file) {
        (None, None) => Ok(None),
        (Some(_), None) => Err("--admin-listen needs --admin-token-file".to_string()),
        (None, Some(_)) => Err("--admin-token-file is given without --admin-listen".to_string()),
        (Some(_), Some(path)) => chat::admin::read_token_file(path).map(Some),
    }
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
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut line = lines.next().unwrap_or("invalid arguments").to_string();
            // "the following required arguments were not provided:" names
            // them on the next line.
            if line.ends_with(':') {
                if let Some(next) = lines.next() {
                    line = format!("{line} {next}");
                }
            }
            eprintln!("chat: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut cli = cli;
    if let Some(Command::Admin(args)) = cli.command.take() {
        return run_admin(args);
    }
    let token = match admin_token(&cli) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::from(2);
        }
    };
    let admin_listen = cli.admin_listen;
    raise_fd_limit();

    // A certificate that does not load stops the start, like any other
    // bad option; on SIGHUP later, a bad one is only logged.
    let tls = match cli.tls_files().map(TlsAcceptor::load).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("chat: --tls-cert/--tls-key: {e}");
            return ExitCode::from(2);
        }
    };
    let config = cli.into_config();
    let safety = match SafetyHandle::new(
        config.safety.clone(),
        chat::sys::unix_now_s().saturating_mul(1000),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::from(2);
        }
    };
    let unprotected = unprotected(&config);
    let has_secret = config.turn_secret.is_some();
    let has_turn = config.ice_servers.iter().any(|u| u.starts_with("turn"));
    let listen = config.listen;
    let mut server = match Threads::bind_with_safety(config, safety.clone()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("chat: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scheme = if tls.is_some() { "s" } else { "" };
    if let Some(tls) = tls {
        server.set_tls(tls);
    }
    if let Err(e) = server.handle_signals() {
        warn!("cannot handle SIGINT/SIGTERM/SIGHUP: {e}");
    }
    let addr = server.local_addr().unwrap_or(listen);
    let page_host = if addr.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), addr.port())
    } else {
        addr
    };
    info!("{} event loop(s)", server.loop_count());
    info!(
        "chat listening on {addr}; open http{scheme}://{page_host}/ \
         (echo: ws{scheme}://{page_host}/echo)"
    );
    if unprotected {
        warn!(
            "listening on {addr} with no per-address limits: in public, pass \
             --max-connections-per-ip 64 --sessions-per-minute-per-ip 60 (and --trust-proxy \
             for the proxy in front), see docs/operations.md"
        );
    }
    if let (Some(admin), Some(token)) = (admin_listen, token) {
        match chat::admin::spawn(admin, token, safety) {
            Ok(bound) => info!("admin door on {bound}"),
            Err(e) => {
                eprintln!("chat: cannot listen on {admin} (admin door): {e}");
                return ExitCode::FAILURE;
            }
        }
    }
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
            "--deflate=off",
            "--deflate-min-size=7",
            "--trust-proxy=127.0.0.1",
            "--trust-proxy",
            "10.0.0.0/8",
            "--max-connections-per-ip=64",
            "--sessions-per-minute-per-ip=60",
            "--block-hours=2",
            "--report-log=/tmp/r",
            "--auto-ban-reporters=5",
            "--auto-ban-minutes=30",
            "--ban-file=/tmp/b",
            "--blocked-words=/tmp/w",
            "--threads=3",
            "--redis=redis://127.0.0.1:7000/1",
            "--cluster=c1",
            "--redis-grace=500ms",
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
            deflate: false,
            deflate_min_size: 7,
            safety: SafetyConfig {
                trust_proxy: vec![
                    Cidr::parse("127.0.0.1", false).unwrap(),
                    Cidr::parse("10.0.0.0/8", false).unwrap(),
                ],
                max_connections_per_ip: 64,
                sessions_per_minute_per_ip: 60,
                block_hours: 2,
                report_log: Some("/tmp/r".into()),
                auto_ban_reporters: 5,
                auto_ban_minutes: 30,
                ban_file: Some("/tmp/b".into()),
                blocked_words: Some("/tmp/w".into()),
            },
            threads: 3,
            redis: Some(RedisUrl::parse("redis://127.0.0.1:7000/1").unwrap()),
            cluster: "c1".to_string(),
            redis_grace: Duration::from_millis(500),
            ..Config::default()
        };
        assert_eq!(config, want);
        assert!(cluster_name("a b").is_err());
        assert!(cluster_name("{x}").is_err());
        assert!(on_off("maybe").is_err());
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
    fn a_public_address_without_limits_is_warned_about() {
        assert!(!unprotected(&parse(&[]).into_config()));
        assert!(unprotected(
            &parse(&["--listen", "0.0.0.0:10000"]).into_config()
        ));
        assert!(unprotected(
            &parse(&["--listen", "[::]:10000"]).into_config()
        ));
        assert!(!unprotected(
            &parse(&[
                "--listen",
                "0.0.0.0:10000",
                "--max-connections-per-ip",
                "64"
            ])
            .into_config()
        ));
        assert!(!unprotected(
            &parse(&[
                "--listen",
                "0.0.0.0:10000",
                "--sessions-per-minute-per-ip",
                "60"
            ])
            .into_config()
        ));
    }

    #[test]
    fn the_admin_options_go_together() {
        assert_eq!(admin_token(&parse(&[])), Ok(None));
        assert!(admin_token(&parse(&["--admin-listen", "127.0.0.1:1"]))
            .unwrap_err()
            .contains("--admin-token-file"));
        assert!(admin_token(&parse(&["--admin-token-file", "/nonexistent"]))
            .unwrap_err()
            .contains("--admin-listen"));
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
