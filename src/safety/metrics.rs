//! The safety series of `/metrics`.

use super::SafetyHandle;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

impl SafetyHandle {
    /// Appends the safety metrics in Prometheus text format.
    pub fn render_metrics(&self, out: &mut String, now_ms: u64) {
        let (reports, in_force, log_failures, tracked, blocks) = {
            let s = self.state();
            (
                s.reports.total(),
                s.bans.in_force(now_ms / 1000),
                s.reports.log_failures,
                s.limits.tracked(),
                s.blocks.len(),
            )
        };
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, u64); 9] = [
            ("chat_reports_total", "Reports filed.", "counter", reports),
            (
                "chat_blocks_total",
                "Blocks made (a report blocks too).",
                "counter",
                get(&c.blocks),
            ),
            (
                "chat_blocked_pairs",
                "Address pairs kept apart now.",
                "gauge",
                blocks as u64,
            ),
            (
                "chat_bans_in_force",
                "Bans in force.",
                "gauge",
                in_force as u64,
            ),
            (
                "chat_banned_sessions_total",
                "Chat sessions refused or closed for a ban.",
                "counter",
                get(&c.banned_sessions),
            ),
            (
                "chat_limited_total",
                "Requests answered 429 by a per-address limit.",
                "counter",
                get(&c.limited),
            ),
            (
                "chat_blocked_words_total",
                "Messages not delivered for the word list.",
                "counter",
                get(&c.blocked_words),
            ),
            (
                "chat_report_log_failures_total",
                "Reports that could not be appended to --report-log.",
                "counter",
                log_failures,
            ),
            (
                "chat_limit_addresses",
                "Addresses tracked by the per-address limits.",
                "gauge",
                tracked as u64,
            ),
        ];
        for (name, help, kind, value) in rows {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
        let _ = write!(
            out,
            "# HELP chat_bans_total Bans made, by who made them.\n# TYPE chat_bans_total counter\n\
             chat_bans_total{{by=\"auto\"}} {}\nchat_bans_total{{by=\"admin\"}} {}\n",
            get(&c.bans_auto),
            get(&c.bans_admin)
        );
    }
}
