//! Safety: client addresses, per-address limits, blocks, reports, bans and
//! the word list (PROTOCOL.md "Client address and per-address limits",
//! "Safety: block, report, bans, word list"). Sans-IO apart from the ban
//! file and the report log it owns; time is injected as Unix
//! milliseconds, so one clock serves the event loop, the admin door and
//! the persisted ban times.
//!
//! # Sharing
//!
//! [`SafetyHandle`] is a cheap clone of one `Arc`: every event loop and the
//! admin door hold one. The state sits behind one mutex, taken only on
//! rare events (an accept or upgrade when limits or bans are in use, a
//! pairing when blocks exist, a block, a report, an admin request, the
//! once-a-second tick), never per relayed message: the word list is
//! immutable and read without the lock, and the evidence ring lives with
//! the pair's sessions (`chat::pairing`).
//!
//! # Bans reach open sessions
//!
//! Every ban made bumps a generation counter (an atomic, read without the
//! lock) and wakes every registered loop ([`SafetyHandle::add_waker`]).
//! Each engine compares the counter with the one it saw last on every
//! turn (`Engine::handle_timeout`), and when it moved, walks its own chat
//! sessions and closes the banned ones (`banned` + 1008). With several
//! loops (`--threads`), each registers its own waker and does the same
//! for the sessions it holds: no loop touches another's sessions.

pub mod addr;
pub mod bans;
pub mod blocks;
pub mod evidence;
pub mod limits;
mod metrics;
pub mod reports;
mod shared;
pub mod time;
pub mod words;

use addr::{AddrKey, Cidr};
use bans::{Ban, Bans, By};
use blocks::Blocks;
use limits::Limits;
use reports::{Report, Reports};
pub use shared::SharedBan;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use words::WordList;

/// How often stale limit entries, expired blocks and bans are dropped.
const SWEEP_EVERY_MS: u64 = 60_000;
/// How long after a pair ended a `block` or `report` still names that
/// stranger (PROTOCOL.md: "within 60 s after a `left`").
pub const RECENT_STRANGER_MS: u64 = 60_000;

/// The safety settings (from `Config`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyConfig {
    /// `--trust-proxy`.
    pub trust_proxy: Vec<Cidr>,
    /// `--max-connections-per-ip` (0: off).
    pub max_connections_per_ip: u32,
    /// `--sessions-per-minute-per-ip` (0: off).
    pub sessions_per_minute_per_ip: u32,
    /// `--block-hours`.
    pub block_hours: u64,
    /// `--report-log`.
    pub report_log: Option<PathBuf>,
    /// `--auto-ban-reporters` (0: no automatic bans).
    pub auto_ban_reporters: u32,
    /// `--auto-ban-minutes`.
    pub auto_ban_minutes: u64,
    /// `--ban-file`.
    pub ban_file: Option<PathBuf>,
    /// `--blocked-words`.
    pub blocked_words: Option<PathBuf>,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        use crate::config as c;
        SafetyConfig {
            trust_proxy: Vec::new(),
            max_connections_per_ip: c::DEFAULT_MAX_CONNECTIONS_PER_IP,
            sessions_per_minute_per_ip: c::DEFAULT_SESSIONS_PER_MINUTE_PER_IP,
            block_hours: c::DEFAULT_BLOCK_HOURS,
            report_log: None,
            auto_ban_reporters: c::DEFAULT_AUTO_BAN_REPORTERS,
            auto_ban_minutes: c::DEFAULT_AUTO_BAN_MINUTES,
            ban_file: None,
            blocked_words: None,
        }
    }
}

/// Counters for `/metrics` that are bumped without the lock.
#[derive(Debug, Default)]
struct Counters {
    blocks: AtomicU64,
    limited: AtomicU64,
    blocked_words: AtomicU64,
    bans_auto: AtomicU64,
    bans_admin: AtomicU64,
    banned_sessions: AtomicU64,
}

#[derive(Debug)]
struct State {
    limits: Limits,
    blocks: Blocks,
    bans: Bans,
    reports: Reports,
    next_sweep_ms: u64,
}

struct Shared {
    config: SafetyConfig,
    words: Option<WordList>,
    state: Mutex<State>,
    /// Bumped on every ban made (see the module documentation).
    ban_generation: AtomicU64,
    /// Block pairs in force, readable without the lock (0: pairing skips
    /// the block check entirely).
    blocks_in_force: AtomicU64,
    counters: Counters,
    wakers: Mutex<Vec<Arc<mio::Waker>>>,
    /// `--redis`: bans made here, for the cluster thread to publish to the
    /// other nodes (None: not in a cluster). Bound: [`MAX_SHARED_BANS`].
    shared_bans: Mutex<Option<Vec<SharedBan>>>,
}

/// The shared safety state (see the module documentation).
#[derive(Clone)]
pub struct SafetyHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SafetyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetyHandle").finish_non_exhaustive()
    }
}

impl Default for SafetyHandle {
    fn default() -> Self {
        // No files: cannot fail.
        SafetyHandle::build(SafetyConfig::default(), None, Bans::default())
    }
}

/// What a report needs from the chat.
#[derive(Debug)]
pub struct ReportInput {
    /// The reporter's address.
    pub reporter: IpAddr,
    /// The reported stranger's address.
    pub reported: IpAddr,
    /// One of `reports::REASONS`.
    pub reason: String,
    /// At most `reports::MAX_NOTE` bytes.
    pub note: String,
    /// The evidence, oldest first.
    pub messages: Vec<reports::Said>,
}

impl SafetyHandle {
    /// Loads the ban file and the word list; `Err` is a message for the
    /// operator naming the file (and the line) at fault.
    pub fn new(config: SafetyConfig, now_ms: u64) -> Result<SafetyHandle, String> {
        let bans = Bans::load(config.ban_file.as_deref(), now_ms / 1000)?;
        let words = match &config.blocked_words {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read word list {}: {e}", path.display()))?;
                WordList::new(&text).map_err(|e| format!("word list {}: {e}", path.display()))?
            }
            None => None,
        };
        Ok(SafetyHandle::build(config, words, bans))
    }

    fn build(config: SafetyConfig, words: Option<WordList>, bans: Bans) -> SafetyHandle {
        let state = State {
            limits: Limits::new(
                config.max_connections_per_ip,
                config.sessions_per_minute_per_ip,
            ),
            blocks: Blocks::default(),
            reports: Reports::new(config.report_log.clone()),
            bans,
            next_sweep_ms: 0,
        };
        SafetyHandle {
            shared: Arc::new(Shared {
                config,
                words,
                state: Mutex::new(state),
                ban_generation: AtomicU64::new(0),
                blocks_in_force: AtomicU64::new(0),
                counters: Counters::default(),
                wakers: Mutex::new(Vec::new()),
                shared_bans: Mutex::new(None),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave these tables in a
        // state worse than stale: carry on with them.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The settings.
    pub fn config(&self) -> &SafetyConfig {
        &self.shared.config
    }

    /// `--trust-proxy` ranges.
    pub fn trusted(&self) -> &[Cidr] {
        &self.shared.config.trust_proxy
    }

    /// The client address of a request from `peer` with head `head`.
    pub fn client_addr(&self, peer: IpAddr, head: &[u8]) -> IpAddr {
        addr::client_addr(peer, head, self.trusted())
    }

    /// Whether the per-address limits need the engine at all.
    pub fn limits_enabled(&self) -> bool {
        let c = &self.shared.config;
        c.max_connections_per_ip > 0 || c.sessions_per_minute_per_ip > 0
    }

    /// A connection from `ip` opens (see `Limits::open`).
    pub fn open_connection(&self, ip: IpAddr, now_ms: u64) -> Result<bool, u64> {
        if self.shared.config.max_connections_per_ip == 0 {
            return Ok(false);
        }
        let r = self.state().limits.open(AddrKey::of(ip), now_ms);
        if r.is_err() {
            self.shared.counters.limited.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// A connection counted by `open_connection` closed.
    pub fn close_connection(&self, ip: IpAddr) {
        self.state().limits.close(AddrKey::of(ip));
    }

    /// A WebSocket session from `ip` opens: `Err(retry_after_s)` over the
    /// per-minute limit.
    pub fn new_session(&self, ip: IpAddr, now_ms: u64) -> Result<(), u64> {
        if self.shared.config.sessions_per_minute_per_ip == 0 {
            return Ok(());
        }
        let r = self.state().limits.new_session(AddrKey::of(ip), now_ms);
        if r.is_err() {
            self.shared.counters.limited.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// The ban in force on `ip`, if any.
    pub fn ban_for(&self, ip: IpAddr, now_ms: u64) -> Option<Ban> {
        self.state().bans.find(ip, now_ms / 1000).cloned()
    }

    /// A banned chat session was refused or closed (for `/metrics`).
    pub fn count_banned_session(&self) {
        self.shared
            .counters
            .banned_sessions
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Bumped whenever a ban is made.
    pub fn ban_generation(&self) -> u64 {
        self.shared.ban_generation.load(Ordering::Acquire)
    }

    /// A loop to wake when a ban is made.
    pub fn add_waker(&self, waker: Arc<mio::Waker>) {
        if let Ok(mut w) = self.shared.wakers.lock() {
            w.push(waker);
        }
    }

    fn ban_made(&self, by: By) {
        let counter = match by {
            By::Auto => &self.shared.counters.bans_auto,
            By::Admin => &self.shared.counters.bans_admin,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.shared.ban_generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(wakers) = self.shared.wakers.lock() {
            for w in wakers.iter() {
                let _ = w.wake();
            }
        }
    }

    /// Whether clients at `a` and `b` may be paired (no block between
    /// them). Lock-free while no block is in force.
    pub fn may_pair(&self, a: IpAddr, b: IpAddr, now_ms: u64) -> bool {
        if self.shared.blocks_in_force.load(Ordering::Relaxed) == 0 {
            return true;
        }
        !self
            .state()
            .blocks
            .blocked(AddrKey::of(a), AddrKey::of(b), now_ms)
    }

    /// A pairing checks many candidates: one lock for all of them. The
    /// closure answers "may `a` and `b` be paired".
    pub fn with_blocks<R>(
        &self,
        now_ms: u64,
        f: impl FnOnce(&dyn Fn(IpAddr, IpAddr) -> bool) -> R,
    ) -> R {
        if self.shared.blocks_in_force.load(Ordering::Relaxed) == 0 {
            return f(&|_, _| true);
        }
        let state = self.state();
        f(&|a, b| !state.blocks.blocked(AddrKey::of(a), AddrKey::of(b), now_ms))
    }

    /// How long a block lasts (`--block-hours`), in ms.
    pub fn block_ms(&self) -> u64 {
        self.shared.config.block_hours.saturating_mul(3_600_000)
    }

    /// `a` blocked `b` (or reported): no pairing either way for
    /// `--block-hours`.
    pub fn block(&self, a: IpAddr, b: IpAddr, now_ms: u64) {
        let hours = self.shared.config.block_hours;
        let until = now_ms.saturating_add(hours.saturating_mul(3_600_000));
        let mut state = self.state();
        state.blocks.add(AddrKey::of(a), AddrKey::of(b), until);
        self.shared
            .blocks_in_force
            .store(state.blocks.len() as u64, Ordering::Relaxed);
        self.shared.counters.blocks.fetch_add(1, Ordering::Relaxed);
    }

    /// Files a report; an automatic ban it triggers is returned (and
    /// announced to every loop).
    pub fn report(&self, input: ReportInput, now_ms: u64) -> Option<Ban> {
        let threshold = self.shared.config.auto_ban_reporters as usize;
        let minutes = self.shared.config.auto_ban_minutes;
        let mut state = self.state();
        let auto = state.bans.count_report(
            AddrKey::of(input.reported),
            AddrKey::of(input.reporter),
            threshold,
            now_ms,
        ) && minutes > 0;
        let ban = if auto {
            let id = state.reports.next_id();
            let reason = format!("reported by {threshold} people (last report #{id})");
            let address = AddrKey::of(input.reported).to_string();
            state
                .bans
                .add(&address, minutes, &reason, By::Auto, now_ms / 1000)
                .ok()
        } else {
            None
        };
        let report = Report {
            id: 0,
            time: time::rfc3339(now_ms / 1000),
            reporter: input.reporter.to_string(),
            reported: input.reported.to_string(),
            reason: input.reason,
            note: input.note,
            messages: input.messages,
            auto_ban: ban.is_some(),
        };
        let id = state.reports.add(report, now_ms);
        drop(state);
        log::info!(
            "report #{id}: {} reported {}{}",
            input.reporter,
            input.reported,
            if ban.is_some() {
                " (automatic ban)"
            } else {
                ""
            }
        );
        if let Some(b) = &ban {
            self.share(SharedBan {
                address: b.address.clone(),
                minutes,
                reason: b.reason.clone(),
                by: By::Auto,
                lifted: false,
            });
            self.ban_made(By::Auto);
        }
        ban
    }

    /// The admin door: a manual ban.
    pub fn admin_ban(
        &self,
        address: &str,
        minutes: u64,
        reason: &str,
        now_ms: u64,
    ) -> Result<Ban, String> {
        let ban = self
            .state()
            .bans
            .add(address, minutes, reason, By::Admin, now_ms / 1000)?;
        log::info!(
            "ban #{} on {} until {} by admin",
            ban.id,
            ban.address,
            ban.until
        );
        self.share(SharedBan {
            address: ban.address.clone(),
            minutes,
            reason: reason.to_string(),
            by: By::Admin,
            lifted: false,
        });
        self.ban_made(By::Admin);
        Ok(ban)
    }

    /// The admin door: lifts a ban; false when none in force has that id.
    pub fn admin_unban(&self, id: u64, now_ms: u64) -> bool {
        let mut state = self.state();
        let address = state.bans.address_of(id);
        let removed = state.bans.remove(id, now_ms / 1000);
        drop(state);
        if let (true, Some(address)) = (removed, address) {
            // Other nodes of a cluster lift theirs on that address too.
            self.share(SharedBan {
                address,
                minutes: 0,
                reason: String::new(),
                by: By::Admin,
                lifted: true,
            });
        }
        removed
    }

    /// The bans in force.
    pub fn bans(&self, now_ms: u64) -> Vec<Ban> {
        self.state().bans.list(now_ms / 1000)
    }

    /// Reports after id `after`.
    pub fn reports_after(&self, after: Option<u64>) -> Vec<Report> {
        self.state().reports.after(after)
    }

    /// The word list, if any (read without the lock).
    pub fn words(&self) -> Option<&WordList> {
        self.shared.words.as_ref()
    }

    /// A message matched the word list.
    pub fn count_blocked_word(&self) {
        self.shared
            .counters
            .blocked_words
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Housekeeping, called every loop turn: once a minute drops stale
    /// limit entries, expired blocks and expired bans.
    pub fn tick(&self, now_ms: u64) {
        let mut state = self.state();
        if now_ms < state.next_sweep_ms {
            return;
        }
        state.next_sweep_ms = now_ms.saturating_add(SWEEP_EVERY_MS);
        state.limits.sweep(now_ms);
        state.blocks.expire(now_ms);
        state.bans.expire(now_ms / 1000);
        self.shared
            .blocks_in_force
            .store(state.blocks.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
