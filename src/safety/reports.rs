//! Reports (PROTOCOL.md "Report"): kept in memory (the last
//! [`MAX_REPORTS`]) for the admin door and appended as JSON lines to
//! `--report-log`.
//!
//! Memory: a report holds at most 4 KiB of messages, a 500-byte note and a
//! few small fields, so the kept reports take at most about 50 MiB, and
//! far less in practice. A report log that cannot be written (a full disk,
//! a removed directory) is retried on every report; a warning is logged at
//! most once a minute and every failure is counted for `/metrics`.

use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;

/// Reports kept in memory.
pub const MAX_REPORTS: usize = 10_000;
/// Most reports one admin request returns.
pub const MAX_PER_PAGE: usize = 1_000;
/// Longest note, in bytes.
pub const MAX_NOTE: usize = 500;
/// At most one report-log warning per this long.
const WARN_EVERY_MS: u64 = 60_000;

/// The reasons a client may give.
pub const REASONS: [&str; 5] = ["spam", "nudity", "harassment", "underage", "other"];

/// One message of the evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Said {
    /// `reporter` or `reported`.
    pub from: &'static str,
    /// What was said.
    pub text: String,
}

/// One report as the admin door and the log show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Increasing from 1 (per process).
    pub id: u64,
    /// RFC 3339 UTC.
    pub time: String,
    /// The reporter's address.
    pub reporter: String,
    /// The reported stranger's address.
    pub reported: String,
    /// One of [`REASONS`].
    pub reason: String,
    /// May be empty.
    pub note: String,
    /// The conversation's last messages, oldest first.
    pub messages: Vec<Said>,
    /// Whether this report made an automatic ban.
    pub auto_ban: bool,
}

/// The kept reports and the log.
#[derive(Debug, Default)]
pub struct Reports {
    kept: VecDeque<Report>,
    next_id: u64,
    log: Option<PathBuf>,
    file: Option<std::fs::File>,
    warned_at_ms: Option<u64>,
    /// Reports that could not be appended to the log.
    pub log_failures: u64,
}

impl Reports {
    /// Reports go to memory and, when given, to the `log` file.
    pub fn new(log: Option<PathBuf>) -> Reports {
        Reports {
            next_id: 1,
            log,
            ..Reports::default()
        }
    }

    /// The id the next report gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Keeps `report` (its `id` is set here) and appends it to the log.
    pub fn add(&mut self, mut report: Report, now_ms: u64) -> u64 {
        report.id = self.next_id;
        self.next_id += 1;
        if self.log.is_some() {
            if let Err(e) = self.append(&report) {
                self.log_failures += 1;
                self.file = None;
                if self
                    .warned_at_ms
                    .map_or(true, |t| now_ms.saturating_sub(t) >= WARN_EVERY_MS)
                {
                    self.warned_at_ms = Some(now_ms);
                    let path = self.log.as_ref().map(|p| p.display().to_string());
                    log::warn!(
                        "cannot write report log {}: {e} ({} reports not logged so far; kept in memory)",
                        path.unwrap_or_default(),
                        self.log_failures
                    );
                }
            }
        }
        if self.kept.len() >= MAX_REPORTS {
            self.kept.pop_front();
        }
        let id = report.id;
        self.kept.push_back(report);
        id
    }

    fn append(&mut self, report: &Report) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(report).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if self.file.is_none() {
            if let Some(path) = &self.log {
                self.file = Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?,
                );
            }
        }
        match &mut self.file {
            Some(f) => f.write_all(&line),
            None => Ok(()),
        }
    }

    /// The reports after id `after` (all kept when None), oldest first, at
    /// most [`MAX_PER_PAGE`].
    pub fn after(&self, after: Option<u64>) -> Vec<Report> {
        let after = after.unwrap_or(0);
        self.kept
            .iter()
            .filter(|r| r.id > after)
            .take(MAX_PER_PAGE)
            .cloned()
            .collect()
    }

    /// Reports made so far.
    pub fn total(&self) -> u64 {
        self.next_id.saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(reason: &str) -> Report {
        Report {
            id: 0,
            time: "2026-12-01T22:00:00Z".into(),
            reporter: "192.0.2.1".into(),
            reported: "192.0.2.2".into(),
            reason: reason.into(),
            note: String::new(),
            messages: vec![Said {
                from: "reported",
                text: "hi".into(),
            }],
            auto_ban: false,
        }
    }

    #[test]
    fn kept_in_order_and_paged_by_id() {
        let mut r = Reports::new(None);
        for _ in 0..1500 {
            r.add(report("spam"), 0);
        }
        let first = r.after(None);
        assert_eq!(first.len(), MAX_PER_PAGE);
        assert_eq!(first.first().unwrap().id, 1);
        let rest = r.after(Some(1000));
        assert_eq!(rest.len(), 500);
        assert_eq!(rest.first().unwrap().id, 1001);
        assert!(r.after(Some(1500)).is_empty());
        for _ in 0..MAX_REPORTS {
            r.add(report("spam"), 0);
        }
        assert_eq!(r.after(None).first().unwrap().id, 1501);
    }

    #[test]
    fn the_log_gets_json_lines_and_a_failing_log_is_counted() {
        let dir = std::env::temp_dir().join(format!("chat-reports-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("reports.jsonl");
        let mut r = Reports::new(Some(path.clone()));
        r.add(report("spam"), 0);
        r.add(report("other"), 0);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["id"], 2);
        assert_eq!(lines[1]["reason"], "other");
        assert_eq!(lines[0]["messages"][0]["from"], "reported");
        let mut bad = Reports::new(Some(dir.join("no/such/dir/log")));
        bad.add(report("spam"), 0);
        bad.add(report("spam"), 1);
        assert_eq!(bad.log_failures, 2);
        assert_eq!(bad.after(None).len(), 2, "kept in memory all the same");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
