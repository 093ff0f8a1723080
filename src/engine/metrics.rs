//! Counters behind `/stats` and `/metrics`, and their text forms.

use crate::chat::{ChatMetrics, Counts};
use std::fmt::Write;

/// Totals since start. Gauges (online, waiting, chatting, open
/// connections) are read live when a page is rendered.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub connections: u64,
    pub connections_refused: u64,
    pub websocket_sessions: u64,
    pub echo_messages: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// WebSocket connections failed by a protocol fault (1002/1003/1007/1009).
    pub protocol_errors: u64,
    /// Slow readers closed with 1008 for exceeding the output cap.
    pub slow_readers_closed: u64,
    pub idle_closed: u64,
    /// Answers by status class: index 1 = 1xx … 5 = 5xx.
    pub http_responses: [u64; 6],
    /// Relays to another loop dropped because its inbox was full.
    pub cross_dropped: u64,
}

impl Totals {
    /// Adds another loop's totals (`/metrics` with `--threads N`).
    pub fn add(&mut self, o: &Totals) {
        self.connections += o.connections;
        self.connections_refused += o.connections_refused;
        self.websocket_sessions += o.websocket_sessions;
        self.echo_messages += o.echo_messages;
        self.bytes_received += o.bytes_received;
        self.bytes_sent += o.bytes_sent;
        self.protocol_errors += o.protocol_errors;
        self.slow_readers_closed += o.slow_readers_closed;
        self.idle_closed += o.idle_closed;
        for (a, b) in self.http_responses.iter_mut().zip(o.http_responses) {
            *a += b;
        }
        self.cross_dropped += o.cross_dropped;
    }

    pub fn count_status(&mut self, status: u16) {
        let class = usize::from(status / 100).min(5);
        if let Some(c) = self.http_responses.get_mut(class) {
            *c += 1;
        }
    }
}

/// Counters kept outside the engine (the driver's TLS layer), appended to
/// `/metrics` as Prometheus text, so the engine can show them without
/// knowing what they count.
pub trait ExtraMetrics: Send + Sync {
    /// Appends `# HELP`/`# TYPE` lines and samples to `out`.
    fn render(&self, out: &mut String);
}

/// `/stats`: `{"online":N,"waiting":N,"chatting":N}`.
pub fn render_stats(out: &mut String, counts: Counts) {
    let _ = write!(
        out,
        "{{\"online\":{},\"waiting\":{},\"chatting\":{}}}",
        counts.online, counts.waiting, counts.chatting
    );
}

/// `/metrics` in Prometheus text exposition format 0.0.4.
pub fn render_metrics(
    out: &mut String,
    counts: Counts,
    open_connections: usize,
    totals: &Totals,
    chat: &ChatMetrics,
) {
    let gauges = [
        (
            "chat_online",
            "Connected chat clients.",
            counts.online as u64,
        ),
        (
            "chat_waiting",
            "Chat clients queued for a stranger.",
            counts.waiting as u64,
        ),
        (
            "chat_chatting",
            "Chat clients in a pair (two per pair).",
            counts.chatting as u64,
        ),
        (
            "chat_open_connections",
            "Open TCP connections of any kind.",
            open_connections as u64,
        ),
    ];
    for (name, help, value) in gauges {
        metric(out, name, help, "gauge", value);
    }
    let counters = [
        (
            "chat_connections_total",
            "TCP connections accepted.",
            totals.connections,
        ),
        (
            "chat_connections_refused_total",
            "Connections closed at once for --max-connections.",
            totals.connections_refused,
        ),
        (
            "chat_websocket_sessions_total",
            "WebSocket handshakes completed.",
            totals.websocket_sessions,
        ),
        ("chat_pairs_total", "Pairs formed.", chat.pairs),
        (
            "chat_messages_relayed_total",
            "Chat messages relayed to a partner.",
            chat.messages_relayed,
        ),
        (
            "chat_signals_relayed_total",
            "Video signals relayed to a partner.",
            chat.signals_relayed,
        ),
        (
            "chat_cross_thread_relays_total",
            "Relays to a partner on another thread (--threads N).",
            chat.cross_relayed,
        ),
        (
            "chat_cross_thread_dropped_total",
            "Relays to a partner on another thread dropped: its inbox was full.",
            totals.cross_dropped,
        ),
        (
            "chat_echo_messages_total",
            "Messages echoed on /echo.",
            totals.echo_messages,
        ),
        (
            "chat_bytes_received_total",
            "Bytes read from sockets.",
            totals.bytes_received,
        ),
        (
            "chat_bytes_sent_total",
            "Bytes written to sockets.",
            totals.bytes_sent,
        ),
        (
            "chat_protocol_errors_total",
            "WebSocket connections failed for a protocol fault (1002, 1003, 1007, 1009).",
            totals.protocol_errors,
        ),
        (
            "chat_client_errors_total",
            "Chat messages refused with an error message.",
            chat.errors_total(),
        ),
        (
            "chat_slow_readers_closed_total",
            "Connections closed 1008 for unsent output over the cap.",
            totals.slow_readers_closed,
        ),
        (
            "chat_idle_closed_total",
            "WebSocket connections closed 1001 after the idle timeout.",
            totals.idle_closed,
        ),
    ];
    for (name, help, value) in counters {
        metric(out, name, help, "counter", value);
    }
    let _ = writeln!(
        out,
        "# HELP chat_http_requests_total HTTP requests answered, by status class of the answer."
    );
    let _ = writeln!(out, "# TYPE chat_http_requests_total counter");
    for (class, value) in totals.http_responses.iter().enumerate().skip(1) {
        let _ = writeln!(
            out,
            "chat_http_requests_total{{class=\"{class}xx\"}} {value}"
        );
    }
}

fn metric(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_json_shape() {
        let mut s = String::new();
        render_stats(
            &mut s,
            Counts {
                online: 3,
                waiting: 1,
                chatting: 2,
            },
        );
        assert_eq!(s, r#"{"online":3,"waiting":1,"chatting":2}"#);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let mut totals = Totals::default();
        totals.count_status(200);
        totals.count_status(404);
        totals.count_status(101);
        let mut s = String::new();
        render_metrics(
            &mut s,
            Counts::default(),
            2,
            &totals,
            &ChatMetrics::default(),
        );
        assert!(s.contains("# TYPE chat_online gauge\nchat_online 0\n"));
        assert!(s.contains("chat_open_connections 2\n"));
        assert!(s.contains("chat_http_requests_total{class=\"2xx\"} 1\n"));
        assert!(s.contains("chat_http_requests_total{class=\"4xx\"} 1\n"));
        assert!(s.contains("chat_http_requests_total{class=\"1xx\"} 1\n"));
        for line in s.lines() {
            assert!(
                line.starts_with('#') || line.split(' ').count() == 2,
                "{line}"
            );
        }
    }
}
