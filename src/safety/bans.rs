//! Bans (PROTOCOL.md "Bans", "Automatic ban"): the list in force, its file
//! and the automatic bans from distinct reporters.
//!
//! The ban file holds one ban per line as a JSON object (the same object
//! the admin door shows), so a line that does not parse can be named. It is
//! loaded at start (a line that does not parse stops the server, naming
//! the file and the line; expired bans are dropped) and rewritten after
//! every change: a temporary file beside it, written, fsynced, then renamed
//! over it (and the directory fsynced), so a crash leaves the old file or
//! the new one, never half of one.
//!
//! At most [`MAX_BANS`] bans are in force: the admin door refuses more
//! (400); an automatic ban over it replaces the ban that ends soonest.
//! Checking an address walks the list once (bans are few; 10,000 ranges
//! take microseconds, and only new sessions and ban changes check).

use super::addr::{AddrKey, Cidr};
use super::time::{parse_rfc3339, rfc3339};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Most bans in force.
pub const MAX_BANS: usize = 10_000;
/// Reports count toward an automatic ban for this long.
pub const AUTO_BAN_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Most reported addresses whose recent reporters are remembered (oldest
/// forgotten first); each keeps at most `--auto-ban-reporters` reporters.
pub const MAX_REPORTED: usize = 10_000;
/// Longest ban reason kept, in bytes.
pub const MAX_REASON: usize = 500;

/// Who made a ban.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// Through the admin door.
    Admin,
    /// Reports from distinct reporters.
    Auto,
}

/// One ban, as the admin door and the ban file show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// Increasing, never reused within a ban file's life.
    pub id: u64,
    /// As given (`203.0.113.7`, `2001:db8::/64`, `198.51.100.0/24`).
    pub address: String,
    /// RFC 3339 UTC.
    pub until: String,
    /// Free text (may be empty).
    pub reason: String,
    /// `admin` or `auto`.
    pub by: By,
}

#[derive(Clone, Debug)]
struct Entry {
    ban: Ban,
    range: Cidr,
    until_s: u64,
}

/// The bans in force and the reports counting toward automatic ones.
#[derive(Debug, Default)]
pub struct Bans {
    entries: Vec<Entry>,
    next_id: u64,
    file: Option<PathBuf>,
    /// Reported address → recent `(unix_ms, reporter)`, distinct reporters.
    recent: HashMap<AddrKey, VecDeque<(u64, AddrKey)>>,
    /// Reported addresses in the order first remembered (for the bound).
    recent_order: VecDeque<AddrKey>,
}

impl Bans {
    /// Loads `file` (a missing file is an empty list); `Err` names the file
    /// and the first line that does not parse.
    pub fn load(file: Option<&Path>, now_s: u64) -> Result<Bans, String> {
        let mut bans = Bans {
            next_id: 1,
            file: file.map(Path::to_path_buf),
            ..Bans::default()
        };
        let Some(path) = file else {
            return Ok(bans);
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(bans),
            Err(e) => return Err(format!("cannot read ban file {}: {e}", path.display())),
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry = parse_line(line)
                .map_err(|e| format!("ban file {} line {}: {e}", path.display(), n + 1))?;
            bans.next_id = bans.next_id.max(entry.ban.id.saturating_add(1));
            if entry.until_s > now_s && bans.entries.len() < MAX_BANS {
                bans.entries.push(entry);
            }
        }
        Ok(bans)
    }

    /// The ban in force on `ip` at `now_s` that ends last, if any.
    pub fn find(&self, ip: IpAddr, now_s: u64) -> Option<&Ban> {
        self.entries
            .iter()
            .filter(|e| e.until_s > now_s && e.range.contains(ip))
            .max_by_key(|e| e.until_s)
            .map(|e| &e.ban)
    }

    /// The bans in force, oldest id first.
    pub fn list(&self, now_s: u64) -> Vec<Ban> {
        self.entries
            .iter()
            .filter(|e| e.until_s > now_s)
            .map(|e| e.ban.clone())
            .collect()
    }

    /// Bans in force (for `/metrics`).
    pub fn in_force(&self, now_s: u64) -> usize {
        self.entries.iter().filter(|e| e.until_s > now_s).count()
    }

    /// Adds a ban on `address` (an address or range) for `minutes`. `Err`
    /// says what is wrong with the request. The file is rewritten; a
    /// failure to write it is logged, the ban holds in memory.
    pub fn add(
        &mut self,
        address: &str,
        minutes: u64,
        reason: &str,
        by: By,
        now_s: u64,
    ) -> Result<Ban, String> {
        let range = Cidr::parse(address, true)?;
        if minutes == 0 || minutes > 10 * 366 * 24 * 60 {
            return Err("minutes must be 1 to 5270400 (ten years)".to_string());
        }
        if reason.len() > MAX_REASON {
            return Err(format!("reason is over {MAX_REASON} bytes"));
        }
        self.expire(now_s);
        if self.entries.len() >= MAX_BANS {
            if by == By::Admin {
                return Err(format!("{MAX_BANS} bans are in force already"));
            }
            if let Some(i) = (0..self.entries.len())
                .min_by_key(|&i| self.entries.get(i).map_or(u64::MAX, |e| e.until_s))
            {
                self.entries.swap_remove(i);
            }
        }
        let until_s = now_s.saturating_add(minutes.saturating_mul(60));
        self.next_id = self.next_id.max(1);
        let ban = Ban {
            id: self.next_id,
            address: address.trim().to_string(),
            until: rfc3339(until_s),
            reason: reason.to_string(),
            by,
        };
        self.next_id += 1;
        self.entries.push(Entry {
            ban: ban.clone(),
            range,
            until_s,
        });
        self.save();
        Ok(ban)
    }

    /// Lifts ban `id`; false when there is none in force.
    pub fn remove(&mut self, id: u64, now_s: u64) -> bool {
        self.expire(now_s);
        let before = self.entries.len();
        self.entries.retain(|e| e.ban.id != id);
        let removed = self.entries.len() != before;
        if removed {
            self.save();
        }
        removed
    }

    /// Lifts every ban on exactly `address` (as it was given); false when
    /// there was none. A ban lifted on another node of a cluster.
    pub fn remove_address(&mut self, address: &str, now_s: u64) -> bool {
        self.expire(now_s);
        let before = self.entries.len();
        self.entries.retain(|e| e.ban.address != address);
        let removed = self.entries.len() != before;
        if removed {
            self.save();
        }
        removed
    }

    /// The address of ban `id` (as it was given), while it is in force.
    pub fn address_of(&self, id: u64) -> Option<String> {
        self.entries
            .iter()
            .find(|e| e.ban.id == id)
            .map(|e| e.ban.address.clone())
    }

    /// Drops expired bans (and rewrites the file when any went).
    pub fn expire(&mut self, now_s: u64) {
        let before = self.entries.len();
        self.entries.retain(|e| e.until_s > now_s);
        if self.entries.len() != before {
            self.save();
        }
    }

    /// A report from `reporter` names `reported` at `now_ms`: true when
    /// `threshold` (> 0) distinct reporters have named it within
    /// [`AUTO_BAN_WINDOW_MS`] (its count then starts over).
    pub fn count_report(
        &mut self,
        reported: AddrKey,
        reporter: AddrKey,
        threshold: usize,
        now_ms: u64,
    ) -> bool {
        if threshold == 0 || reported == reporter {
            return false;
        }
        if !self.recent.contains_key(&reported) {
            while self.recent.len() >= MAX_REPORTED {
                match self.recent_order.pop_front() {
                    Some(old) => {
                        self.recent.remove(&old);
                    }
                    None => break,
                }
            }
            self.recent_order.push_back(reported);
        }
        let list = self.recent.entry(reported).or_default();
        list.retain(|&(t, r)| r != reporter && now_ms.saturating_sub(t) < AUTO_BAN_WINDOW_MS);
        list.push_back((now_ms, reporter));
        while list.len() > threshold {
            list.pop_front();
        }
        if list.len() >= threshold {
            self.recent.remove(&reported);
            self.recent_order.retain(|k| *k != reported);
            return true;
        }
        false
    }

    /// Rewrites the ban file atomically; a failure is logged and the bans
    /// hold in memory.
    fn save(&self) {
        let Some(path) = &self.file else {
            return;
        };
        let mut text = String::new();
        for e in &self.entries {
            if let Ok(line) = serde_json::to_string(&e.ban) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        if let Err(e) = write_atomically(path, text.as_bytes()) {
            log::warn!("cannot write ban file {}: {e}", path.display());
        }
    }
}

fn parse_line(line: &str) -> Result<Entry, String> {
    let ban: Ban = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let range = Cidr::parse(&ban.address, true)?;
    let until_s = parse_rfc3339(&ban.until)
        .ok_or_else(|| format!("'{}' is not an RFC 3339 UTC time", ban.until))?;
    Ok(Entry {
        ban,
        range,
        until_s,
    })
}

/// Writes `path` through a temporary file beside it: write, fsync, rename,
/// fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bans".to_string());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("chat-bans-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn bans_cover_addresses_ranges_and_v6_64s_until_they_expire() {
        let mut bans = Bans::load(None, 0).unwrap();
        let b = bans
            .add("203.0.113.7", 60, "spam", By::Admin, 1000)
            .unwrap();
        assert_eq!(b.id, 1);
        assert_eq!(b.until, rfc3339(1000 + 3600));
        bans.add("2001:db8::1", 1, "", By::Auto, 1000).unwrap();
        bans.add("198.51.100.0/24", 1, "", By::Admin, 1000).unwrap();
        assert!(bans.find(ip("203.0.113.7"), 1000).is_some());
        assert!(bans.find(ip("203.0.113.8"), 1000).is_none());
        assert!(bans.find(ip("2001:db8::ffff"), 1000).is_some());
        assert!(bans.find(ip("2001:db8:0:1::"), 1000).is_none());
        assert!(bans.find(ip("198.51.100.200"), 1000).is_some());
        assert!(bans.find(ip("198.51.100.200"), 1060).is_none());
        assert_eq!(bans.in_force(1060), 1);
        assert!(bans.find(ip("203.0.113.7"), 1000 + 3600).is_none());
        assert!(bans.remove(1, 1000));
        assert!(!bans.remove(1, 1000));
        assert!(bans.find(ip("203.0.113.7"), 1000).is_none());
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut bans = Bans::load(None, 0).unwrap();
        assert!(bans.add("nope", 60, "", By::Admin, 0).is_err());
        assert!(bans.add("1.2.3.4/40", 60, "", By::Admin, 0).is_err());
        assert!(bans.add("1.2.3.4", 0, "", By::Admin, 0).is_err());
        assert!(bans
            .add("1.2.3.4", 1, &"x".repeat(501), By::Admin, 0)
            .is_err());
        assert_eq!(bans.in_force(0), 0);
    }

    #[test]
    fn the_ban_file_round_trips_and_drops_expired_bans() {
        let d = dir("roundtrip");
        let file = d.join("bans.jsonl");
        let mut bans = Bans::load(Some(&file), 0).unwrap();
        bans.add("203.0.113.7", 60, "spam \"quoted\"", By::Admin, 1000)
            .unwrap();
        bans.add("2001:db8::/64", 1, "", By::Auto, 1000).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let again = Bans::load(Some(&file), 1000).unwrap();
        assert_eq!(again.list(1000), bans.list(1000));
        // A minute later the second has expired; ids go on after the last.
        let mut later = Bans::load(Some(&file), 1060).unwrap();
        assert_eq!(later.list(1060).len(), 1);
        let b = later.add("192.0.2.1", 1, "", By::Admin, 1060).unwrap();
        assert_eq!(b.id, 3);
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_bad_line_is_named() {
        let d = dir("bad");
        let file = d.join("bans");
        std::fs::write(
            &file,
            "{\"id\":1,\"address\":\"1.2.3.4\",\"until\":\"2099-01-01T00:00:00Z\",\"reason\":\"\",\"by\":\"admin\"}\n\n{\"id\":2,\"address\":\"x\"}\n",
        )
        .unwrap();
        let err = Bans::load(Some(&file), 0).unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains(file.to_str().unwrap()), "{err}");
        std::fs::write(&file, "{\"id\":1,\"address\":\"1.2.3.4\",\"until\":\"tomorrow\",\"reason\":\"\",\"by\":\"admin\"}\n").unwrap();
        assert!(Bans::load(Some(&file), 0).unwrap_err().contains("line 1"));
        // A missing file is an empty list.
        assert!(Bans::load(Some(&d.join("missing")), 0).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn auto_ban_needs_distinct_reporters_within_ten_minutes() {
        let mut bans = Bans::default();
        let bad = AddrKey::V4(9);
        let r = |n| AddrKey::V4(n);
        assert!(!bans.count_report(bad, r(1), 3, 0));
        assert!(
            !bans.count_report(bad, r(1), 3, 1),
            "the same reporter counts once"
        );
        assert!(!bans.count_report(bad, r(2), 3, 2));
        assert!(
            !bans.count_report(bad, bad, 3, 3),
            "nobody reports themselves"
        );
        assert!(bans.count_report(bad, r(3), 3, 4));
        // The count starts over; reports older than 10 minutes do not count.
        assert!(!bans.count_report(bad, r(1), 3, 10));
        assert!(!bans.count_report(bad, r(2), 3, 20));
        assert!(!bans.count_report(bad, r(3), 3, 10 + AUTO_BAN_WINDOW_MS));
        assert!(bans.count_report(bad, r(4), 3, 21 + AUTO_BAN_WINDOW_MS - 12));
        // Off at 0.
        assert!(!bans.count_report(bad, r(5), 0, 0));
    }
}
