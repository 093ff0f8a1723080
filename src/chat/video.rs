//! Video signalling (PROTOCOL.md "Video"): pair ids, ICE servers and TURN
//! REST credentials. The media itself never passes through this server; it
//! only relays `signal` messages within a pair and tells both sides which
//! STUN/TURN servers to use.
//!
//! Decisions where PROTOCOL.md is silent:
//! * A pair id is 16 lowercase hex digits: a per-process pairing counter
//!   mixed with a per-process random key by a bijection (so ids never
//!   repeat within a process and are not simply 1, 2, 3). It is not a
//!   secret: a signal is relayed only to the sender's own partner, so
//!   knowing another pair's id gains nothing.
//! * `ice` lists one entry with every STUN URL and one with every TURN URL
//!   (`turn:` and `turns:`), the latter with one username/credential for
//!   the pair: coturn accepts the same credential on every listener.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Largest `data` of a `signal`, serialised as received (PROTOCOL.md).
pub const MAX_SIGNAL_DATA: usize = 16 * 1024;
/// Signals one side may send within one pair; more are `rate_limited`.
pub const SIGNAL_BUDGET: u32 = 200;

/// One pairing's id, the same for both sides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PairId(pub u64);

impl PairId {
    /// The id of the `counter`-th pairing under the process key `key`.
    ///
    /// `counter ^ key` and the SplitMix64 finaliser are both bijections on
    /// u64, so distinct counters give distinct ids.
    pub fn new(counter: u64, key: u64) -> PairId {
        let mut z = counter ^ key;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        PairId(z ^ (z >> 31))
    }

    /// The wire form: 16 lowercase hex digits.
    pub fn hex(self) -> [u8; 16] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            let nibble = (self.0 >> (60 - 4 * i)) & 0xf;
            *b = DIGITS.get(nibble as usize).copied().unwrap_or(b'0');
        }
        out
    }

    /// Reads the wire form back; `None` for anything that is not exactly
    /// 16 lowercase hex digits (such a signal cannot be for any pair).
    pub fn parse(s: &str) -> Option<PairId> {
        let lower_hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        if s.len() != 16 || !s.bytes().all(lower_hex) {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(PairId)
    }
}

impl fmt::Display for PairId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The secret shared with the TURN server (coturn's `static-auth-secret`).
/// Its `Debug` does not show it, so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSecret(Vec<u8>);

impl TurnSecret {
    /// The secret from a file's content, trimmed of white space (a trailing
    /// newline is not part of coturn's secret either); `None` when empty.
    pub fn from_file_content(content: &[u8]) -> Option<TurnSecret> {
        let text = content.trim_ascii();
        (!text.is_empty()).then(|| TurnSecret(text.to_vec()))
    }
}

impl fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TurnSecret(..)")
    }
}

/// Whether `url` is an ICE server URL we can hand out (`stun:`, `stuns:`,
/// `turn:`, `turns:` with something after the scheme, no white space or
/// control characters).
pub fn check_ice_url(url: &str) -> Result<(), String> {
    let rest = ["stun:", "stuns:", "turn:", "turns:"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme));
    match rest {
        None => Err(format!(
            "'{url}' is not a stun:, stuns:, turn: or turns: URL"
        )),
        Some("") => Err(format!("'{url}' has no host")),
        Some(_) if url.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(format!("'{url}' contains white space"))
        }
        Some(_) => Ok(()),
    }
}

/// ICE servers for `paired` (the video options).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VideoConfig {
    /// `stun:`/`stuns:` URLs: handed out as they are.
    pub stun: Vec<String>,
    /// `turn:`/`turns:` URLs: with credentials when there is a secret.
    pub turn: Vec<String>,
    /// `--turn-secret-file`'s content.
    pub turn_secret: Option<TurnSecret>,
    /// `--turn-ttl` in seconds: how long a credential stays valid.
    pub turn_ttl_s: u64,
}

impl VideoConfig {
    /// Sorts `urls` (checked by [`check_ice_url`]) into STUN and TURN.
    pub fn new(urls: &[String], turn_secret: Option<TurnSecret>, turn_ttl_s: u64) -> VideoConfig {
        let (turn, stun) = urls.iter().cloned().partition(|u| u.starts_with("turn"));
        VideoConfig {
            stun,
            turn,
            turn_secret,
            turn_ttl_s,
        }
    }

    /// Whether `paired` carries `ice` at all.
    pub fn has_servers(&self) -> bool {
        !self.stun.is_empty() || !self.turn.is_empty()
    }

    /// The TURN REST credential for a pair made at `unix_s`:
    /// `(username, credential)` with username `EXPIRY:PAIRID` and
    /// credential base64(HMAC-SHA1(secret, username)); `None` without a
    /// secret or without TURN URLs.
    pub fn turn_credential(&self, pair: PairId, unix_s: u64) -> Option<(String, String)> {
        let secret = self.turn_secret.as_ref()?;
        if self.turn.is_empty() {
            return None;
        }
        let username = format!("{}:{pair}", unix_s.saturating_add(self.turn_ttl_s));
        let credential = hmac_sha1_base64(&secret.0, username.as_bytes());
        Some((username, credential))
    }
}

/// base64(HMAC-SHA1(key, message)), the TURN REST API's password.
pub fn hmac_sha1_base64(key: &[u8], message: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// What `paired` says about ICE servers for one pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ice<'a> {
    /// The configured servers.
    pub config: &'a VideoConfig,
    /// `(username, credential)` for the TURN entry, if it has any.
    pub credential: Option<(&'a str, &'a str)>,
}

/// Appends `,"ice":[...]` (the field and its leading comma) to `out`.
pub(crate) fn write_ice(out: &mut Vec<u8>, ice: &Ice<'_>) {
    out.extend_from_slice(b",\"ice\":[");
    let mut first = true;
    for (urls, credential) in [(&ice.config.stun, None), (&ice.config.turn, ice.credential)] {
        if urls.is_empty() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(b"{\"urls\":");
        let _ = serde_json::to_writer(&mut *out, urls);
        if let Some((username, credential)) = credential {
            out.extend_from_slice(b",\"username\":");
            let _ = serde_json::to_writer(&mut *out, username);
            out.extend_from_slice(b",\"credential\":");
            let _ = serde_json::to_writer(&mut *out, credential);
        }
        out.push(b'}');
    }
    out.push(b']');
}

/// Appends `"pair":"<16 hex>"` to `out`.
pub(crate) fn write_pair(out: &mut Vec<u8>, pair: PairId) {
    out.extend_from_slice(b"\"pair\":\"");
    out.extend_from_slice(&pair.hex());
    out.push(b'"');
}
