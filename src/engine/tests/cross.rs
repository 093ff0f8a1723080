//! The chat across event loops, with no thread: several engines share one
//! `Process` on one fake clock, and the test carries each engine's
//! cross-loop records to the engine they name, when it chooses to (so
//! races between loops are played out in a chosen order). Every rule of
//! PROTOCOL.md "Life of a session" must hold as on one loop.

use super::*;
use serde_json::Value;

/// Engines of one process and the records on their way between them.
struct Loops {
    h: Vec<Harness>,
    /// `(to, record)` in the order sent: what the inboxes hold.
    in_flight: Vec<(usize, Vec<u8>)>,
}

impl Loops {
    fn new(n: usize) -> Loops {
        Loops::with(n, Config::default())
    }

    fn with(n: usize, config: Config) -> Loops {
        Loops::with_safety(n, config, crate::safety::SafetyHandle::default())
    }

    /// `n` loops sharing one matchmaker and `safety` (blocks, reports).
    fn with_safety(n: usize, config: Config, safety: crate::safety::SafetyHandle) -> Loops {
        let process = Arc::new(Process::new(
            n,
            config.max_connections,
            5_000,
            Seed::default(),
            safety.clone(),
        ));
        Loops {
            h: (0..n)
                .map(|i| Harness::threaded_with(config.clone(), process.clone(), i, safety.clone()))
                .collect(),
            in_flight: Vec::new(),
        }
    }

    /// Takes every engine's outgoing records into `in_flight`.
    fn collect(&mut self) {
        for h in &mut self.h {
            let out = h.engine.cross_output().to_vec();
            h.engine.clear_cross_output();
            let mut at = 0;
            while let Some(len) = out.get(at..).and_then(record_len) {
                let record = out[at..at + len].to_vec();
                self.in_flight
                    .push((record_thread(&record).unwrap(), record));
                at += len;
            }
        }
    }

    /// Delivers everything in flight, and what that produces, until
    /// nothing is left.
    fn settle(&mut self) {
        loop {
            self.collect();
            if self.in_flight.is_empty() {
                return;
            }
            for (to, record) in std::mem::take(&mut self.in_flight) {
                let h = &mut self.h[to];
                h.engine.cross_input(&record, h.now);
                h.flush();
            }
        }
    }

    fn join(&mut self, on: usize) -> ConnId {
        self.h[on].open_ws("/")
    }

    fn join_with(&mut self, on: usize, query: &str) -> ConnId {
        self.h[on].open_ws(&format!("/?{query}"))
    }

    fn types(&mut self, on: usize, id: ConnId) -> Vec<String> {
        self.h[on].chat_types(id)
    }

    fn chat(&mut self, on: usize, id: ConnId) -> Vec<Value> {
        self.h[on].chat(id)
    }

    fn say(&mut self, on: usize, id: ConnId, text: &str) {
        let json = serde_json::json!({"type":"message","text":text}).to_string();
        self.h[on].send_json(id, &json);
    }

    fn advance(&mut self, ms: u64) {
        for h in &mut self.h {
            h.now += ms;
        }
        for h in &mut self.h {
            let now = h.now;
            if h.engine.next_deadline().is_some_and(|at| at <= now) {
                h.engine.handle_timeout(now);
                h.flush();
            }
        }
        self.settle();
    }

    fn counts(&self) -> crate::chat::Counts {
        self.h[0].engine.chat.counts()
    }
}

#[test]
fn clients_of_two_loops_pair_and_talk_in_order() {
    let mut l = Loops::new(2);
    let a = l.join(0);
    assert_eq!(l.types(0, a), ["waiting"]);
    let b = l.join(1);
    // The searcher hears at once; its partner when the record arrives.
    assert_eq!(l.types(1, b), ["waiting", "paired"]);
    assert_eq!(l.types(0, a), Vec::<String>::new());
    l.settle();
    let got = l.chat(0, a);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["type"], "paired");
    assert_eq!(l.counts().chatting, 2);
    for i in 0..5 {
        l.say(0, a, &format!("a{i}"));
        l.say(1, b, &format!("b{i}"));
    }
    l.settle();
    let texts = |v: Vec<Value>| -> Vec<String> {
        v.iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(texts(l.chat(1, b)), ["a0", "a1", "a2", "a3", "a4"]);
    assert_eq!(texts(l.chat(0, a)), ["b0", "b1", "b2", "b3", "b4"]);
    // Exactly one initiator, one pair id.
    let (pa, pb) = (l.h[0].engine.chat.metrics(), l.h[1].engine.chat.metrics());
    assert_eq!((pa.pairs, pb.pairs), (1, 1));
    assert_eq!(pa.cross_relayed + pb.cross_relayed, 10);
}

#[test]
fn the_paired_message_carries_the_same_pair_and_one_initiator() {
    let mut l = Loops::new(2);
    let a = l.join(0);
    l.types(0, a);
    let b = l.join(1);
    let pb = l.chat(1, b).pop().unwrap();
    l.settle();
    let pa = l.chat(0, a).pop().unwrap();
    assert_eq!(pa["pair"], pb["pair"]);
    // a was queued first: it offers.
    assert_eq!(
        (pa["initiator"].as_bool(), pb["initiator"].as_bool()),
        (Some(true), Some(false))
    );
}

#[test]
fn next_and_disconnect_tell_the_partner_on_the_other_loop() {
    let mut l = Loops::new(2);
    let a = l.join(0);
    let b = l.join(1);
    l.settle();
    l.types(0, a);
    l.types(1, b);
    l.h[0].send_json(a, r#"{"type":"next"}"#);
    assert_eq!(l.types(0, a), ["waiting"]);
    l.settle();
    assert_eq!(
        l.chat(1, b),
        [serde_json::json!({"type":"left","reason":"next"})]
    );
    // b asks again: only the two are queued, so they meet again.
    l.h[1].send_json(b, r#"{"type":"next"}"#);
    l.settle();
    assert_eq!(l.types(1, b), ["waiting", "paired"]);
    assert_eq!(l.types(0, a), ["paired"]);
    l.h[1].eof(b);
    l.settle();
    assert_eq!(
        l.chat(0, a),
        [serde_json::json!({"type":"left","reason":"disconnected"})]
    );
    assert_eq!(
        l.counts(),
        crate::chat::Counts {
            online: 1,
            waiting: 0,
            chatting: 0
        }
    );
}

#[test]
fn previous_strangers_on_two_loops_wait_while_a_third_client_is_queued() {
    let mut l = Loops::new(2);
    let a = l.join(0);
    let b = l.join(1);
    l.settle();
    // A third client that cannot take them yet (its interest wait).
    let e = l.join_with(0, "interests=knitting");
    l.settle();
    for (on, id) in [(0, a), (1, b), (0, e)] {
        l.types(on, id);
    }
    l.h[0].send_json(a, r#"{"type":"next"}"#);
    l.settle();
    l.h[1].send_json(b, r#"{"type":"next"}"#);
    l.settle();
    assert_eq!(l.types(0, a), ["waiting"]);
    assert_eq!(l.types(1, b), ["left", "waiting"]);
    assert_eq!(l.counts().waiting, 3);
    // The third one goes: the two are alone in the queue and meet again.
    l.h[0].eof(e);
    l.settle();
    assert_eq!(l.types(0, a), ["paired"]);
    assert_eq!(l.types(1, b), ["paired"]);
}

#[test]
fn the_interest_wait_ends_on_time_whichever_loop_holds_the_client() {
    let mut l = Loops::new(2);
    let a = l.join_with(0, "interests=music");
    let b = l.join(1);
    l.settle();
    assert_eq!(l.types(0, a), ["waiting"]);
    assert_eq!(l.types(1, b), ["waiting"]);
    // A tag in common wins over the fallback.
    let c = l.join_with(1, "interests=music");
    l.settle();
    assert_eq!(l.types(1, c), ["waiting", "paired"]);
    assert_eq!(l.types(0, a), ["paired"]);
    let d = l.join_with(0, "interests=chess");
    l.settle();
    assert_eq!(l.types(0, d), ["waiting"]);
    assert!(l.h[0].engine.next_deadline().is_some());
    l.advance(4_999);
    assert_eq!(l.types(1, b), Vec::<String>::new());
    l.advance(1);
    assert_eq!(l.types(0, d), ["paired"]);
    assert_eq!(l.types(1, b), ["paired"]);
}

#[test]
fn stale_relays_and_lefts_never_reach_anyone() {
    let mut l = Loops::new(2);
    let a = l.join(0);
    let b = l.join(1);
    l.settle();
    l.types(0, a);
    l.types(1, b);
    // b speaks; before it arrives a has moved on (and a new client took
    // a's place in the queue and a pair with it).
    l.say(1, b, "late");
    l.collect();
    l.h[0].send_json(a, r#"{"type":"next"}"#);
    let c = l.join(0);
    l.settle();
    assert_eq!(l.types(0, a), ["waiting", "paired"]);
    assert_eq!(l.types(0, c), ["waiting", "paired"]);
    assert_eq!(
        l.chat(1, b),
        [serde_json::json!({"type":"left","reason":"next"})]
    );
}

#[test]
fn a_pair_found_by_a_third_loop_is_made_by_one_of_its_own() {
    let mut l = Loops::new(3);
    let x = l.join(1);
    let y = l.join(2);
    l.settle();
    let z = l.join_with(0, "interests=knitting");
    l.settle();
    // x and y become previous strangers, queued with z: they wait.
    l.h[1].send_json(x, r#"{"type":"next"}"#);
    l.settle();
    l.h[2].send_json(y, r#"{"type":"next"}"#);
    l.settle();
    for (on, id) in [(1, x), (2, y), (0, z)] {
        l.types(on, id);
    }
    // z leaves on loop 0: loop 0 holds neither, so it nudges loop 1.
    l.h[0].eof(z);
    assert_eq!(l.types(1, x), Vec::<String>::new());
    l.settle();
    assert_eq!(l.types(1, x), ["paired"]);
    assert_eq!(l.types(2, y), ["paired"]);
    assert_eq!(l.counts().chatting, 2);
}

#[test]
fn a_relay_refused_for_a_full_inbox_answers_rate_limited() {
    let mut l = Loops::new(2);
    let a = l.join(0);
    let b = l.join(1);
    l.settle();
    l.types(0, a);
    l.types(1, b);
    l.say(0, a, "lost");
    let out = l.h[0].engine.cross_output().to_vec();
    assert_eq!(relay_sender(&out), Some(a));
    l.h[0].engine.clear_cross_output();
    let now = l.h[0].now;
    l.h[0].engine.relay_refused(a, now);
    l.h[0].flush();
    let got = l.chat(0, a);
    assert_eq!(got[0]["code"], "rate_limited");
    l.settle();
    assert!(l.chat(1, b).is_empty());
}

#[test]
fn the_connection_limit_is_for_the_whole_process() {
    let mut l = Loops::with(2, config(|c| c.max_connections = 3));
    assert!(l.h[0].engine.accept(0).is_some());
    assert!(l.h[1].engine.accept(0).is_some());
    assert!(l.h[1].engine.accept(0).is_some());
    assert!(l.h[0].engine.accept(0).is_none());
    assert!(l.h[1].engine.accept(0).is_none());
}

#[test]
fn a_paired_overtaken_by_the_clients_own_next_is_dropped() {
    let mut l = Loops::new(2);
    let a = l.join(0);
    let b = l.join(1);
    // a's `paired` is on its way when a asks for someone else.
    l.collect();
    l.h[0].send_json(a, r#"{"type":"next"}"#);
    l.settle();
    // a never hears of the pair it left unseen; b hears it end.
    assert_eq!(l.types(0, a), ["waiting", "waiting"]);
    assert_eq!(l.types(1, b), ["waiting", "paired", "left"]);
    assert_eq!(
        l.counts(),
        crate::chat::Counts {
            online: 2,
            waiting: 1,
            chatting: 0
        }
    );
}

#[test]
fn truncated_or_garbled_records_are_ignored() {
    let mut l = Loops::new(2);
    let a = l.join(0);
    let b = l.join(1);
    l.settle();
    l.types(0, a);
    l.types(1, b);
    l.say(0, a, "hello");
    let record = l.h[0].engine.cross_output().to_vec();
    l.h[0].engine.clear_cross_output();
    assert_eq!(record_len(&record), Some(record.len()));
    for cut in 0..record.len() {
        let now = l.h[1].now;
        l.h[1].engine.cross_input(&record[..cut], now);
        // Records come from this process, never from the network: only
        // the header and addressing are garbled here (a wrong length,
        // loop, kind, connection or pair), not the JSON.
        if cut < 7 + 24 {
            let mut garbled = record.clone();
            garbled[cut] ^= 0xff;
            l.h[1].engine.cross_input(&garbled, now);
        }
        assert_eq!(record_len(&record[..cut]), None);
    }
    l.h[1].flush();
    // Only copies with b's connection and pair intact can be delivered.
    for v in l.chat(1, b) {
        assert_eq!(v["type"], "message", "{v}");
    }
}

/// Blocks and reports hold across loops: the matchmaker every loop shares
/// keeps the two addresses apart, and the reporter's loop has the whole
/// conversation as evidence (its own messages, and the stranger's as they
/// arrived from the other loop).
#[test]
fn a_report_across_loops_carries_both_sides_and_keeps_the_two_apart() {
    let safety = crate::safety::SafetyHandle::default();
    let mut l = Loops::with_safety(2, Config::default(), safety.clone());
    let ip = |n: u8| std::net::IpAddr::from([192, 0, 2, n]);
    let a = l.h[0].open_ws_from(ip(1), "/");
    let b = l.h[1].open_ws_from(ip(2), "/");
    l.settle();
    assert_eq!(l.types(0, a), ["waiting", "paired"]);
    assert_eq!(l.types(1, b), ["waiting", "paired"]);
    l.say(0, a, "hello");
    l.say(1, b, "something \"nasty\" \u{e9}");
    l.settle();
    assert_eq!(l.types(0, a), ["message"]);
    assert_eq!(l.types(1, b), ["message"]);

    l.h[0].send_json(a, r#"{"type":"report","reason":"harassment"}"#);
    l.settle();
    assert_eq!(l.types(0, a), ["reported", "waiting"]);
    assert_eq!(
        l.chat(1, b),
        [serde_json::json!({"type":"left","reason":"next"})]
    );
    let reports = safety.reports_after(None);
    assert_eq!(reports.len(), 1);
    let said: Vec<(&str, &str)> = reports[0]
        .messages
        .iter()
        .map(|m| (m.from, m.text.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            ("reporter", "hello"),
            ("reported", "something \"nasty\" \u{e9}")
        ]
    );
    assert_eq!(
        (reports[0].reporter.as_str(), reports[0].reported.as_str()),
        ("192.0.2.1", "192.0.2.2")
    );

    // b searches again with a queued: blocked, so both wait...
    l.h[1].send_json(b, r#"{"type":"next"}"#);
    l.settle();
    assert_eq!(l.types(1, b), ["waiting"]);
    assert!(l.types(0, a).is_empty());
    assert_eq!(l.counts().waiting, 2);
    // ...and a newcomer from elsewhere gets the one who waited longest.
    let c = l.h[1].open_ws_from(ip(3), "/");
    l.settle();
    assert_eq!(l.types(1, c), ["waiting", "paired"]);
    assert_eq!(l.types(0, a), ["paired"]);
    assert!(l.types(1, b).is_empty());
}
