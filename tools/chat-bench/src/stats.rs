//! Statistics: latency percentiles, host steal time, connection faults.

use hdrhistogram::Histogram;
use serde_json::json;

use crate::clock::NS;

/// Per-CPU time counters from `/proc/stat`, to report how much of a run the
/// host took away (steal): on a virtual machine that, not the server, is
/// what a millisecond latency tail usually is.
pub struct CpuTimes(pub Vec<(String, u64, u64)>);

impl CpuTimes {
    /// (name, all ticks, steal ticks) per CPU; empty where /proc is absent.
    pub fn sample() -> CpuTimes {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpus = text
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let name = f.next()?.to_string();
                let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal [guest...]
                let all = v.iter().take(8).sum();
                Some((name, all, *v.get(7)?))
            })
            .collect();
        CpuTimes(cpus)
    }

    /// Steal as a percentage of each CPU's time since `before`.
    pub fn steal_since(&self, before: &CpuTimes) -> Vec<(String, f64)> {
        self.0
            .iter()
            .zip(&before.0)
            .map(|((name, all, steal), (_, all0, steal0))| {
                let d = all.saturating_sub(*all0).max(1);
                (
                    name.clone(),
                    round2(100.0 * steal.saturating_sub(*steal0) as f64 / d as f64),
                )
            })
            .collect()
    }
}

/// "cpu0 0.4 %, cpu1 1.2 %" and the same as JSON.
pub fn steal_report(steal: &[(String, f64)]) -> (String, serde_json::Value) {
    let line = steal
        .iter()
        .map(|(n, p)| format!("{n} {p:.1} %"))
        .collect::<Vec<_>>()
        .join(", ");
    let json = steal
        .iter()
        .map(|(n, p)| (n.clone(), json!(p)))
        .collect::<serde_json::Map<_, _>>();
    (line, serde_json::Value::Object(json))
}

pub struct Latency(pub Histogram<u64>);

impl Latency {
    pub fn new() -> Latency {
        // 1 ns .. 100 s at 3 significant digits; these bounds are valid.
        Latency(Histogram::new_with_bounds(1, 100 * NS, 3).expect("static histogram bounds"))
    }

    pub fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(1));
    }

    pub fn us(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn json(&self) -> serde_json::Value {
        let max = if self.0.is_empty() {
            0.0
        } else {
            self.0.max() as f64 / 1000.0
        };
        json!({
            "p50": round2(self.us(0.50)),
            "p90": round2(self.us(0.90)),
            "p99": round2(self.us(0.99)),
            "p999": round2(self.us(0.999)),
            "max": round2(max),
            "samples": self.0.len(),
        })
    }

    pub fn line(&self) -> String {
        let max = if self.0.is_empty() { 0 } else { self.0.max() };
        format!(
            "p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs ({} samples)",
            self.us(0.50),
            self.us(0.90),
            self.us(0.99),
            self.us(0.999),
            max as f64 / 1000.0,
            self.0.len()
        )
    }
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[derive(Default)]
pub struct NetStats {
    pub opened: u64,
    pub connect_failed: u64,
    pub handshake_failed: u64,
    pub protocol_errors: u64,
    pub server_closed: u64,
    pub disconnected: u64,
    pub io_errors: u64,
    pub first_error: Option<String>,
}

impl NetStats {
    pub fn errors(&self) -> u64 {
        self.connect_failed
            + self.handshake_failed
            + self.protocol_errors
            + self.server_closed
            + self.disconnected
            + self.io_errors
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "connect_failed": self.connect_failed,
            "handshake_failed": self.handshake_failed,
            "protocol_errors": self.protocol_errors,
            "server_closed": self.server_closed,
            "disconnected": self.disconnected,
            "io_errors": self.io_errors,
            "first_error": self.first_error,
        })
    }

    pub fn line(&self) -> String {
        let mut s = format!(
            "errors: {} (connect {}, handshake {}, protocol {}, closed by server {}, \
             disconnected {}, io {})",
            self.errors(),
            self.connect_failed,
            self.handshake_failed,
            self.protocol_errors,
            self.server_closed,
            self.disconnected,
            self.io_errors
        );
        if let Some(e) = &self.first_error {
            s.push_str(&format!("; first: {e}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_a_share_of_each_cpus_time() {
        let before = CpuTimes(vec![("cpu0".into(), 1000, 10), ("cpu1".into(), 1000, 0)]);
        let after = CpuTimes(vec![("cpu0".into(), 1200, 60), ("cpu1".into(), 1100, 1)]);
        assert_eq!(
            after.steal_since(&before),
            vec![("cpu0".to_string(), 25.0), ("cpu1".to_string(), 1.0)]
        );
        let (line, json) = steal_report(&after.steal_since(&before));
        assert_eq!(line, "cpu0 25.0 %, cpu1 1.0 %");
        assert_eq!(json, json!({"cpu0": 25.0, "cpu1": 1.0}));
    }
}
