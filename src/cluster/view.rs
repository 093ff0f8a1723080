//! What the cluster thread tells the rest of the process: the node's Redis
//! state and counters for `/metrics` (atomics, written by the cluster
//! thread only).

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The cluster thread's counters (see `/metrics` in the README).
#[derive(Debug, Default)]
pub struct ClusterView {
    /// `chat_redis_connected`.
    pub connected: AtomicBool,
    /// `chat_redis_reconnects_total`.
    pub reconnects: AtomicU64,
    /// `chat_redis_rtt_seconds`, in microseconds.
    pub rtt_us: AtomicU64,
    /// `chat_cluster_messages_out_total`: records published to other nodes.
    pub messages_out: AtomicU64,
    /// `chat_cluster_messages_in_total`: records received from other nodes.
    pub messages_in: AtomicU64,
    /// `chat_cluster_dropped_total`: records for or from other nodes dropped
    /// (Redis down, or a full inbox).
    pub dropped: AtomicU64,
    /// `chat_cluster_nodes`: live nodes seen by the last heartbeat.
    pub nodes: AtomicU64,
    /// `chat_cluster_pairs_total`: this node's clients paired across nodes.
    pub pairs: AtomicU64,
    /// `chat_cluster_pairs_reconciled_total`: cross-node pairs ended here
    /// because the other node no longer held them after an outage.
    pub reconciled: AtomicU64,
}

impl ClusterView {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Appends the series to `/metrics`.
    pub fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let series: [(&str, &str, &str, String); 9] = [
            (
                "chat_redis_connected",
                "gauge",
                "1 while this node's Redis connections are up.",
                u8::from(self.connected.load(Ordering::Relaxed)).to_string(),
            ),
            (
                "chat_redis_reconnects_total",
                "counter",
                "Times the node reconnected to Redis after losing it.",
                get(&self.reconnects).to_string(),
            ),
            (
                "chat_redis_rtt_seconds",
                "gauge",
                "Round trip of the last heartbeat to Redis.",
                format!("{:.6}", get(&self.rtt_us) as f64 / 1e6),
            ),
            (
                "chat_cluster_messages_out_total",
                "counter",
                "Records (relays, left) published to other nodes.",
                get(&self.messages_out).to_string(),
            ),
            (
                "chat_cluster_messages_in_total",
                "counter",
                "Records received from other nodes.",
                get(&self.messages_in).to_string(),
            ),
            (
                "chat_cluster_dropped_total",
                "counter",
                "Records for or from other nodes dropped (Redis down, inbox full).",
                get(&self.dropped).to_string(),
            ),
            (
                "chat_cluster_nodes",
                "gauge",
                "Live nodes in the cluster, this one included.",
                get(&self.nodes).to_string(),
            ),
            (
                "chat_cluster_pairs_total",
                "counter",
                "Clients of this node paired with a client of another node.",
                get(&self.pairs).to_string(),
            ),
            (
                "chat_cluster_pairs_reconciled_total",
                "counter",
                "Cross-node pairs ended here after an outage because the other node no longer held them.",
                get(&self.reconciled).to_string(),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
    }
}
