//! Server settings: every limit PROTOCOL.md names, with its default.
//!
//! The defaults of the command-line options are the `DEFAULT_*` constants
//! below, used both by [`Config::default`] and by the `clap` attributes in
//! `main.rs`, so `--help` and a `Config` built in code cannot disagree.

use crate::chat::TurnSecret;
use crate::safety::SafetyConfig;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// `--listen`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 10000));
/// `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// `--max-message-size` (PROTOCOL.md, "Limits").
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// `--handshake-timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `--idle-timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `--interest-wait`.
pub const DEFAULT_INTEREST_WAIT: Duration = Duration::from_secs(5);
/// `--rate-limit`: the chat's own default.
pub const DEFAULT_RATE_LIMIT: u64 = crate::chat::pairing::DEFAULT_RATE_PER_SEC;
/// `--busy-poll`: off.
pub const DEFAULT_BUSY_POLL: Duration = Duration::ZERO;
/// `--deflate`: permessage-deflate offered by a client is accepted.
pub const DEFAULT_DEFLATE: bool = true;
/// `--deflate-min-size`: shorter messages go out uncompressed. Measured
/// (BENCHMARKS.md "permessage-deflate"): a compression costs 6-9 µs at any
/// size (zlib's per-message reset), and under ~1.4 KB a message is one TCP
/// segment compressed or not, so below this it saves bytes, no packets.
pub const DEFAULT_DEFLATE_MIN_SIZE: usize = 1024;
/// `--threads`: 0 picks one loop per CPU the process may run on.
pub const DEFAULT_THREADS: usize = 0;
/// Most event loops: every ordered pair of loops has a 256 KiB inbox, so
/// address space grows with the square (1 GiB at 64, resident only as far
/// as used).
pub const MAX_THREADS: usize = 64;
/// `--cluster`: the cluster's name (several can share one Redis).
pub const DEFAULT_CLUSTER: &str = "chat";
/// `--redis-grace`: how long cross-node pairs outlive a lost Redis.
pub const DEFAULT_REDIS_GRACE: Duration = Duration::from_secs(5);
/// `--turn-ttl`: how long a TURN credential handed out in `paired` is valid.
pub const DEFAULT_TURN_TTL: Duration = Duration::from_secs(3600);

/// `--max-connections-per-ip`: off (PROTOCOL.md; 64 recommended in public).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 0;
/// `--sessions-per-minute-per-ip`: off (60 recommended in public).
pub const DEFAULT_SESSIONS_PER_MINUTE_PER_IP: u32 = 0;
/// `--block-hours`: how long a block keeps two addresses apart.
pub const DEFAULT_BLOCK_HOURS: u64 = 24;
/// `--auto-ban-reporters`: distinct reporters within 10 minutes that ban.
pub const DEFAULT_AUTO_BAN_REPORTERS: u32 = 3;
/// `--auto-ban-minutes`: how long an automatic ban lasts.
pub const DEFAULT_AUTO_BAN_MINUTES: u64 = 60;
/// `GET /rules` without `--rules-file`.
pub const DEFAULT_RULES: &str = "\
You must be 18 or older to use this chat.

- Be respectful. No harassment, hate or threats.
- No nudity or sexual content.
- No spam, advertising or links to scams.
- Do not share personal information: yours or anyone else's.
- Anyone under 18 is reported and banned.

Use Report if a stranger breaks these rules: the last messages of the
conversation go to the operator with your report, and people reported by
several others are banned. Use Block to never meet someone again.
";

/// Everything the engine and its driver need to know from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on (port 0: any free port, see `Server::local_addr`).
    pub listen: SocketAddr,
    /// Connections over this are accepted and closed at once.
    pub max_connections: usize,
    /// Largest WebSocket message after reassembly; over it: close 1009.
    pub max_message_size: usize,
    /// A request head must be complete within this (slowloris guard); also
    /// how long an idle keep-alive HTTP connection is kept.
    pub handshake_timeout: Duration,
    /// WebSocket silence: ping at half of it, close 1001 at all of it.
    pub idle_timeout: Duration,
    /// When non-empty, WebSocket upgrades must carry one of these origins.
    pub allowed_origins: Vec<String>,
    /// How long a client with interests waits for a match before taking anyone.
    pub interest_wait: Duration,
    /// Chat messages per second per client (bursts of twice that).
    pub rate_limit: u64,
    /// Request head limit (431/414 over it).
    pub max_head: usize,
    /// Unsent output a connection may accumulate before it is closed 1008.
    pub max_output: usize,
    /// How long to wait for the peer's side of a close handshake.
    pub close_timeout: Duration,
    /// How long shutdown waits for close handshakes before exiting.
    pub shutdown_grace: Duration,
    /// After a turn that had events, keep polling without sleeping for this
    /// long before blocking (zero: never). Trades CPU for wake-up latency.
    pub busy_poll: Duration,
    /// `--ice-server`: STUN/TURN URLs handed out in `paired` (checked by
    /// `chat::video::check_ice_url`).
    pub ice_servers: Vec<String>,
    /// `--turn-secret-file`'s content: TURN URLs get REST credentials.
    pub turn_secret: Option<TurnSecret>,
    /// `--turn-ttl`: validity of those credentials (whole seconds count).
    pub turn_ttl: Duration,
    /// `--deflate`: accept permessage-deflate (RFC 7692) when offered.
    pub deflate: bool,
    /// `--deflate-min-size`: messages shorter than this are sent
    /// uncompressed even on a compressed session.
    pub deflate_min_size: usize,
    /// Client addresses, per-address limits, blocks, reports, bans, the
    /// word list (`safety`).
    pub safety: SafetyConfig,
    /// `--rules-file`'s content for `GET /rules` (None: [`DEFAULT_RULES`]).
    pub rules: Option<String>,
    /// `--threads`: event loops (0: one per CPU, see [`Config::loops`]).
    pub threads: usize,
    /// `--redis`: join the cluster on this Redis (None: a lone node).
    pub redis: Option<crate::cluster::RedisUrl>,
    /// `--cluster`: the cluster's name (the prefix of every Redis key).
    pub cluster: String,
    /// `--redis-grace`: cross-node pairs end this long after Redis is lost.
    pub redis_grace: Duration,
}

impl Config {
    /// How many event loops to run: `threads`, or for 0 the CPUs this
    /// process may run on (its affinity mask and cgroup quota, as
    /// `std::thread::available_parallelism` reads them); at most
    /// [`MAX_THREADS`].
    pub fn loops(&self) -> usize {
        let n = if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        n.min(MAX_THREADS)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            allowed_origins: Vec::new(),
            interest_wait: DEFAULT_INTEREST_WAIT,
            rate_limit: DEFAULT_RATE_LIMIT,
            max_head: crate::http::DEFAULT_MAX_HEAD,
            max_output: 1024 * 1024,
            close_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            busy_poll: DEFAULT_BUSY_POLL,
            ice_servers: Vec::new(),
            turn_secret: None,
            turn_ttl: DEFAULT_TURN_TTL,
            deflate: DEFAULT_DEFLATE,
            deflate_min_size: DEFAULT_DEFLATE_MIN_SIZE,
            safety: SafetyConfig::default(),
            rules: None,
            threads: DEFAULT_THREADS,
            redis: None,
            cluster: DEFAULT_CLUSTER.to_string(),
            redis_grace: DEFAULT_REDIS_GRACE,
        }
    }
}

impl Config {
    /// The output cap actually enforced: 1 MiB, or enough for one echoed
    /// message of the largest allowed size when `--max-message-size` is
    /// raised above it (the Autobahn 9.* cases echo 16 MiB messages).
    pub(crate) fn effective_max_output(&self) -> usize {
        self.max_output
            .max(self.max_message_size.saturating_add(16))
    }
}

/// Parses a duration: `10` or `10s` (seconds, fractions allowed), `500ms`,
/// `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(ms) = t.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = t.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = t.strip_suffix('m') {
        (m, 60.0)
    } else if let Some(h) = t.strip_suffix('h') {
        (h, 3600.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (examples: 10, 2.5s, 500ms, 1h)"))?;
    if !value.is_finite() || value <= 0.0 || value * scale > 1e9 {
        return Err(format!("'{text}' must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// Parses a busy-poll window: `200us`, `0.5ms`, `0.001s`; `0` turns it off.
pub fn parse_busy_poll(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" {
        return Ok(Duration::ZERO);
    }
    let d = match t.strip_suffix("us") {
        Some(us) => parse_duration(&format!("{us}ms"))? / 1000,
        None => parse_duration(t)?,
    };
    if d > Duration::from_secs(1) {
        return Err(format!(
            "'{text}' is longer than the 1 s a busy-poll window may be"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_poll_takes_zero_and_short_windows() {
        assert_eq!(parse_busy_poll("0"), Ok(Duration::ZERO));
        assert_eq!(parse_busy_poll("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_busy_poll("0.2ms"), Ok(Duration::from_micros(200)));
        assert_eq!(parse_busy_poll("200us"), Ok(Duration::from_micros(200)));
        assert_eq!(parse_busy_poll("1ms"), Ok(Duration::from_millis(1)));
        assert!(parse_busy_poll("2").is_err());
        assert!(parse_busy_poll("-1ms").is_err());
    }

    #[test]
    fn durations_parse_in_seconds_or_milliseconds() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("nan").is_err());
    }

    #[test]
    fn output_cap_grows_with_the_message_limit() {
        let mut c = Config::default();
        assert_eq!(c.effective_max_output(), 1024 * 1024);
        c.max_message_size = 16 * 1024 * 1024;
        assert!(c.effective_max_output() > 16 * 1024 * 1024);
    }
}
