//! The soak's counters: what happened (reported) and what must never
//! happen (violations: any one fails the run).

use serde_json::{json, Map, Value};

use super::plan::LEAVE_NAMES;

/// Things a correct server never does to a client that follows the
/// protocol. Timing (how fast the server answered) is never one of them.
#[derive(Default)]
pub struct Violations {
    /// A chat message or hello from someone other than the partner, or a
    /// second hello in one pairing.
    pub misrouted: u64,
    /// A hello from a client that is paired with someone else.
    pub asymmetric: u64,
    /// A sequence number below the next one expected.
    pub out_of_order: u64,
    /// Sequence numbers skipped, or (at `left`) sent by a partner that left
    /// cleanly and never delivered.
    pub missing: u64,
    /// A chat message, typing or `left` with no pairing to belong to.
    pub not_paired: u64,
    /// `paired` while paired.
    pub double_paired: u64,
    /// `left` with a reason other than how the partner left.
    pub wrong_left_reason: u64,
    /// Not JSON, unknown type, binary on the chat door, unparsable relay.
    pub malformed: u64,
    /// An `error` other than `not_paired` (which a race explains).
    pub server_errors: u64,
    /// An echo that differs from what was sent next.
    pub echo_mismatch: u64,
    /// An echo with nothing outstanding.
    pub echo_unexpected: u64,
    /// Echoes still owed when the server answered a close frame.
    pub echo_missing: u64,
    /// The server closed an open session without a close frame (or reset
    /// it), or closed with a code other than 1000/1001.
    pub bad_close: u64,
    /// A frame from the server that the decoder refuses.
    pub protocol: u64,
    /// Connect or upgrade failed (refused, reset, not 101, bad accept key).
    pub connect: u64,
}

impl Violations {
    fn fields(&self) -> [(&'static str, u64); 15] {
        [
            ("misrouted", self.misrouted),
            ("asymmetric", self.asymmetric),
            ("out_of_order", self.out_of_order),
            ("missing", self.missing),
            ("not_paired", self.not_paired),
            ("double_paired", self.double_paired),
            ("wrong_left_reason", self.wrong_left_reason),
            ("malformed", self.malformed),
            ("server_errors", self.server_errors),
            ("echo_mismatch", self.echo_mismatch),
            ("echo_unexpected", self.echo_unexpected),
            ("echo_missing", self.echo_missing),
            ("bad_close", self.bad_close),
            ("protocol", self.protocol),
            ("connect", self.connect),
        ]
    }

    pub fn total(&self) -> u64 {
        self.fields().iter().map(|(_, n)| n).sum()
    }

    /// "3 (missing 2, bad_close 1)": only the kinds that occurred.
    pub fn line(&self) -> String {
        let some: Vec<String> = self
            .fields()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if some.is_empty() {
            "0".into()
        } else {
            format!("{} ({})", self.total(), some.join(", "))
        }
    }

    pub fn json(&self) -> Value {
        let mut m: Map<String, Value> = self
            .fields()
            .iter()
            .map(|(k, n)| (k.to_string(), json!(n)))
            .collect();
        m.insert("total".into(), json!(self.total()));
        Value::Object(m)
    }
}

/// What happened, for the summary.
#[derive(Default)]
pub struct Tally {
    pub v: Violations,
    /// The first violation or fault, described.
    pub first: Option<String>,
    pub started: u64,
    pub opened: u64,
    pub chat_opened: u64,
    pub echo_opened: u64,
    /// Leaves begun, by [`super::plan::Leave::index`].
    pub leaves: [u64; LEAVE_NAMES.len()],
    /// Our close frames answered by the server's, and those still
    /// unanswered after the wait (a timing, reported, not a violation).
    pub closes_answered: u64,
    pub closes_unanswered: u64,
    /// Our FINs answered by the server's EOF (or reset), and those still
    /// unanswered after the wait.
    pub fins_answered: u64,
    pub fins_unanswered: u64,
    /// Close frames the server started, by code 1001 and any other.
    pub server_closed_1001: u64,
    /// A mid-handshake client closed by the server before it left.
    pub handshake_timed_out: u64,
    pub chat_sent: u64,
    pub chat_received: u64,
    pub typing_sent: u64,
    pub typing_received: u64,
    pub echo_sent: u64,
    pub echo_received: u64,
    pub waiting: u64,
    pub paired: u64,
    pub nexts_sent: u64,
    pub left_next: u64,
    pub left_disconnected: u64,
    /// `left` checked against how the partner left; and not checkable (the
    /// partner was closed by the server, or never said who it was).
    pub left_verified: u64,
    pub left_unverified: u64,
    /// `not_paired` errors: a message that crossed the partner's leave.
    pub not_paired_errors: u64,
    /// Connections still open when the end phase's bound ran out.
    pub cut_at_end: u64,
}

impl Tally {
    /// Counts one violation of the kind `pick` selects, remembering the
    /// first one's description.
    pub fn violation(&mut self, pick: impl FnOnce(&mut Violations) -> &mut u64, what: String) {
        *pick(&mut self.v) += 1;
        self.note(what);
    }

    pub fn note(&mut self, what: String) {
        if self.first.is_none() {
            self.first = Some(what);
        }
    }

    pub fn leaves_line(&self) -> String {
        LEAVE_NAMES
            .iter()
            .zip(&self.leaves)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn leaves_json(&self) -> Value {
        Value::Object(
            LEAVE_NAMES
                .iter()
                .zip(&self.leaves)
                .map(|(k, n)| (k.to_string(), json!(n)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_add_up_and_name_what_occurred() {
        let mut t = Tally::default();
        assert_eq!(t.v.line(), "0");
        t.violation(|v| &mut v.missing, "first".into());
        t.violation(|v| &mut v.missing, "second".into());
        t.violation(|v| &mut v.bad_close, "third".into());
        assert_eq!(t.v.total(), 3);
        assert_eq!(t.v.line(), "3 (missing 2, bad_close 1)");
        assert_eq!(t.first.as_deref(), Some("first"));
        let j = t.v.json();
        assert_eq!(
            (j["total"].as_u64(), j["missing"].as_u64()),
            (Some(3), Some(2))
        );
        t.leaves[2] = 5;
        assert!(t.leaves_line().contains("fin_with_data 5"));
        assert_eq!(t.leaves_json()["fin_with_data"], 5);
    }
}
