//! The chat checks on scripted conversations: what a correct server does
//! passes, each kind of fault is counted once, and the crossings a correct
//! server produces under churn are not faults.

use super::*;

struct World {
    ledger: Ledger,
    t: Tally,
    rng: Rng,
    now: u64,
}

impl World {
    fn new() -> World {
        World {
            ledger: Ledger::default(),
            t: Tally::default(),
            rng: Rng::seeded(1, 1),
            now: NS,
        }
    }

    fn hear(&mut self, c: &mut ChatState, json: &str) {
        let mut act_at = 0;
        c.on_text(
            json.as_bytes(),
            self.now,
            &mut self.rng,
            &mut self.ledger,
            &mut self.t,
            &mut act_at,
        );
    }

    fn relay(&mut self, c: &mut ChatState, text: &str) {
        self.hear(c, &format!(r#"{{"type":"message","text":"{text}"}}"#));
    }

    /// Runs the client's timer once (a full bucket); what it sent.
    fn act(&mut self, c: &mut ChatState) -> Vec<String> {
        let mut sent = Vec::new();
        self.now += NS;
        c.act(
            self.now,
            &mut self.rng,
            &mut self.ledger,
            &mut self.t,
            &mut |b: &[u8]| sent.push(String::from_utf8(b.to_vec()).unwrap()),
        );
        sent
    }

    /// `a` (serial 1) and `b` (serial 2) paired and introduced.
    fn pair() -> (World, ChatState, ChatState) {
        let mut w = World::new();
        let (mut a, mut b) = (ChatState::new(1, 0), ChatState::new(2, 0));
        for c in [&mut a, &mut b] {
            w.hear(c, r#"{"type":"waiting","online":2}"#);
            w.hear(c, r#"{"type":"paired","common":[]}"#);
        }
        assert_eq!(w.act(&mut a), [r#"{"type":"message","text":"h 1.1"}"#]);
        assert_eq!(w.act(&mut b), [r#"{"type":"message","text":"h 2.1"}"#]);
        w.relay(&mut a, "h 2.1");
        w.relay(&mut b, "h 1.1");
        (w, a, b)
    }
}

fn sent_to(w: &mut World, from: &mut ChatState, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let mut out = String::new();
            from.send_message(3, &mut w.t, &mut |b: &[u8]| {
                out = String::from_utf8(b.to_vec()).unwrap()
            });
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_clean_talk_and_a_clean_leave_pass() {
    let (mut w, mut a, mut b) = World::pair();
    for text in sent_to(&mut w, &mut a, 3) {
        w.relay(&mut b, &text);
    }
    assert_eq!(w.t.chat_received, 3);
    // a leaves the connection cleanly; b is told, with every message in.
    a.end_talk(How::Disconnected, false, w.now, &mut w.ledger);
    w.hear(&mut b, r#"{"type":"left","reason":"disconnected"}"#);
    assert_eq!(w.t.v.total(), 0, "{}", w.t.v.line());
    assert_eq!((w.t.left_verified, w.t.left_unverified), (1, 0));
    // b now asks for someone new (after its short pause).
    assert_eq!(w.act(&mut b), [r#"{"type":"next"}"#]);
}

#[test]
fn no_message_before_the_hello() {
    let mut w = World::new();
    let mut a = ChatState::new(1, 0);
    w.hear(&mut a, r#"{"type":"paired","common":[]}"#);
    // Paired, but the hello waits for its turn (say, an empty bucket).
    assert!(!a.introduced());
    assert_eq!(w.act(&mut a), [r#"{"type":"message","text":"h 1.1"}"#]);
    assert!(a.introduced());
    w.hear(&mut a, r#"{"type":"left","reason":"next"}"#);
    assert!(!a.introduced());
}

#[test]
fn gaps_reordering_and_loss_at_left_are_counted() {
    let (mut w, mut a, mut b) = World::pair();
    let m = sent_to(&mut w, &mut a, 5);
    w.relay(&mut b, &m[0]);
    w.relay(&mut b, &m[2]); // 1 skipped
    assert_eq!(w.t.v.missing, 1);
    w.relay(&mut b, &m[1]); // late
    assert_eq!(w.t.v.out_of_order, 1);
    // 3 and 4 (and whatever a says before it moves on) were sent before
    // a sent `next`, and never arrived.
    assert_eq!(w.act_until_next(&mut a), r#"{"type":"next"}"#);
    let sent = a.seq_out;
    assert!(sent >= 5);
    w.hear(&mut b, r#"{"type":"left","reason":"next"}"#);
    assert_eq!(w.t.v.missing, 1 + (sent - 3), "{}", w.t.v.line());
    assert_eq!(w.t.v.wrong_left_reason, 0);
}

impl World {
    /// Acts until the client sends `next` of its own accord (10% a turn).
    fn act_until_next(&mut self, c: &mut ChatState) -> String {
        for _ in 0..500 {
            if let Some(s) = self.act(c).into_iter().find(|s| s.contains("next")) {
                return s;
            }
        }
        panic!("no next in 500 turns");
    }
}

#[test]
fn a_lossy_leave_excuses_loss_but_not_a_wrong_reason() {
    let (mut w, mut a, mut b) = World::pair();
    sent_to(&mut w, &mut a, 2);
    a.end_talk(How::Disconnected, true, w.now, &mut w.ledger);
    w.hear(&mut b, r#"{"type":"left","reason":"next"}"#);
    assert_eq!((w.t.v.missing, w.t.v.wrong_left_reason), (0, 1));
}

#[test]
fn strangers_and_impossible_states_are_violations() {
    let (mut w, mut a, mut b) = World::pair();
    w.relay(&mut a, "m 9.1 0 x"); // not the partner
    assert_eq!(w.t.v.misrouted, 1);
    w.relay(&mut a, "h 9.1"); // a second hello
    assert_eq!(w.t.v.misrouted, 2);
    w.hear(&mut a, r#"{"type":"paired","common":[]}"#);
    assert_eq!(w.t.v.double_paired, 1);
    // c hears from b, who is paired with a: b's pairing is not mutual.
    let mut c = ChatState::new(3, 0);
    w.hear(&mut c, r#"{"type":"paired","common":[]}"#);
    w.ledger.live.insert(2, (1, Some((1, 1))));
    w.relay(&mut c, "h 2.1");
    assert_eq!(w.t.v.asymmetric, 1);
    let mut d = ChatState::new(4, 0);
    w.relay(&mut d, "m 1.1 0 x");
    w.hear(&mut d, r#"{"type":"typing","active":true}"#);
    w.hear(&mut d, r#"{"type":"left","reason":"next"}"#);
    assert_eq!(w.t.v.not_paired, 3);
    w.hear(&mut b, "not json");
    w.hear(&mut b, r#"{"type":"error","code":"rate_limited"}"#);
    assert_eq!((w.t.v.malformed, w.t.v.server_errors), (1, 1));
    assert_eq!(w.t.v.total(), 9, "{}", w.t.v.line());
}

#[test]
fn crossing_a_next_is_not_a_violation() {
    let (mut w, mut a, mut b) = World::pair();
    let m = sent_to(&mut w, &mut a, 2);
    // b leaves with `next`; a's messages were relayed before the server
    // read it, and so was a's own `next`: b hears both, then `waiting`.
    w.act_until_next(&mut b);
    w.relay(&mut b, &m[0]);
    w.relay(&mut b, &m[1]);
    a.end_talk(How::Next, false, w.now, &mut w.ledger);
    w.hear(&mut b, r#"{"type":"left","reason":"next"}"#);
    w.hear(&mut b, r#"{"type":"error","code":"not_paired"}"#);
    w.hear(&mut b, r#"{"type":"waiting","online":2}"#);
    assert_eq!(w.t.v.total(), 0, "{}", w.t.v.line());
    assert_eq!((w.t.left_verified, w.t.not_paired_errors), (1, 1));
    // b asked already: the crossed `left` does not make it ask again.
    assert!(w.act(&mut b).is_empty());
    // After `waiting`, the old partner's messages are strangers'.
    w.relay(&mut b, "m 1.1 2 x");
    assert_eq!(w.t.v.not_paired, 1);
}
