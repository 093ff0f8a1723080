//! `block`, `report`, the evidence ring and the word list in the pairing
//! (PROTOCOL.md "Safety"), on a fake clock.

use super::*;
use crate::safety::{SafetyConfig, SafetyHandle};
use std::net::IpAddr;

const BLOCK: &str = r#"{"type":"block"}"#;
const REPORTED: &str = r#"{"type":"reported"}"#;

fn ip(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, n])
}

fn chat_with(safety: SafetyHandle) -> Chat {
    let mut c = Chat::with_config(ChatConfig {
        safety,
        ..ChatConfig::default()
    });
    c.now = 1_000_000;
    c
}

impl Chat {
    fn connect_from(&mut self, id: ClientId, n: u8) -> Vec<(ClientId, String)> {
        self.p
            .on_connect_from(id, None, Some(ip(n)), self.now, &mut self.out);
        self.take()
    }

    fn unix_ms(&self) -> u64 {
        self.now
    }
}

fn report(reason: &str) -> String {
    format!(r#"{{"type":"report","reason":"{reason}","note":"see above"}}"#)
}

#[test]
fn block_leaves_like_next_and_keeps_both_addresses_apart_both_ways() {
    let safety = SafetyHandle::default();
    let mut c = chat_with(safety.clone());
    c.connect_from(0, 1);
    c.connect_from(1, 2);
    let got = c.send(0, BLOCK);
    assert_eq!(got, sent(&[(1, &left("next")), (0, &waiting(2))]));
    // 1 comes back (next): 0 is the only one queued, but blocked.
    assert_eq!(c.send(1, NEXT), vec![(1, waiting(2))]);
    assert_eq!(c.counts(), (2, 2, 0));
    // A new connection from address 2 is kept from 0 too, either way.
    c.drop_client(1);
    assert_eq!(c.connect_from(5, 2), vec![(5, waiting(2))]);
    // A third address pairs with the longest-waiting client: 0.
    let got = c.connect_from(6, 3);
    assert!(got.contains(&(0, paired(&[]))), "{got:?}");
    assert!(got.contains(&(6, paired(&[]))), "{got:?}");
    assert!(!safety.may_pair(ip(2), ip(1), c.unix_ms()));
    assert!(safety.may_pair(ip(2), ip(3), c.unix_ms()));
}

#[test]
fn blocked_clients_are_skipped_without_losing_anyone_elses_place() {
    let safety = SafetyHandle::default();
    let mut c = chat_with(safety.clone());
    safety.block(ip(9), ip(1), c.unix_ms());
    c.connect_from(0, 1);
    c.connect_from(1, 9); // skips 0: both wait, even as the only two
    assert_eq!(c.counts(), (2, 2, 0));
    let got = c.connect_from(2, 3); // takes the longest-waiting: 0
    assert!(got.contains(&(0, paired(&[]))), "{got:?}");
    c.connect_from(3, 1); // skips 1 (blocked), waits behind it
    assert_eq!(c.counts(), (4, 2, 2));
    let got = c.connect_from(4, 4); // 1 waited longer than 3
    assert!(got.contains(&(1, paired(&[]))), "{got:?}");
    let got = c.connect_from(5, 5);
    assert!(got.contains(&(3, paired(&[]))), "{got:?}");
    assert_eq!(c.counts(), (6, 0, 6));
}

#[test]
fn report_records_the_conversation_and_answers_reported_then_waiting() {
    let safety = SafetyHandle::default();
    let mut c = chat_with(safety.clone());
    c.connect_from(0, 1);
    c.connect_from(1, 2);
    c.send(0, &msg_json("hello"));
    c.send(1, &msg_json("something nasty"));
    let got = c.send(0, &report("harassment"));
    // The reporter hears `reported` before its `waiting`; the stranger's
    // `left` comes from the matchmaker's `next`, after `reported`.
    assert_eq!(
        got,
        sent(&[(0, REPORTED), (1, &left("next")), (0, &waiting(2))])
    );
    let reports = safety.reports_after(None);
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(
        (r.id, r.reason.as_str(), r.note.as_str()),
        (1, "harassment", "see above")
    );
    assert_eq!(
        (r.reporter.as_str(), r.reported.as_str()),
        ("192.0.2.1", "192.0.2.2")
    );
    let said: Vec<(&str, &str)> = r
        .messages
        .iter()
        .map(|m| (m.from, m.text.as_str()))
        .collect();
    assert_eq!(
        said,
        vec![("reporter", "hello"), ("reported", "something nasty")]
    );
    assert!(!safety.may_pair(ip(1), ip(2), c.unix_ms()));
}

#[test]
fn the_last_stranger_can_be_reported_for_60_seconds_after_it_left() {
    let safety = SafetyHandle::default();
    let mut c = chat_with(safety.clone());
    c.connect_from(0, 1);
    c.connect_from(1, 2);
    c.send(1, &msg_json("bye"));
    assert_eq!(c.send(1, NEXT).first(), Some(&(0, left("next"))));
    c.now += 60_000;
    let got = c.send(0, &report("spam"));
    assert_eq!(got, sent(&[(0, REPORTED), (0, &waiting(2))]));
    assert_eq!(safety.reports_after(None)[0].messages.len(), 1);
    // Queued now: a second block keeps its place and says waiting again.
    assert_eq!(c.send(0, BLOCK), vec![(0, waiting(2))]);
    // 60 s later it is too late; and with no stranger ever, not_paired.
    c.drop_client(1);
    c.now += 61_000;
    c.send(0, NEXT);
    assert_eq!(c.send(0, BLOCK), vec![(0, error(ErrorCode::NotPaired))]);
    c.drop_client(0);
    c.connect_from(7, 7);
    assert_eq!(c.send(7, BLOCK), vec![(7, error(ErrorCode::NotPaired))]);
}

#[test]
fn a_bad_report_changes_nothing() {
    let mut c = chat_with(SafetyHandle::default());
    c.pair(0, 1);
    for bad in [
        r#"{"type":"report","reason":"ugly"}"#.to_string(),
        r#"{"type":"report"}"#.to_string(),
        r#"{"type":"report","reason":5}"#.to_string(),
        format!(
            r#"{{"type":"report","reason":"spam","note":"{}"}}"#,
            "x".repeat(501)
        ),
        r#"{"type":"report","reason":"spam","note":7}"#.to_string(),
    ] {
        assert_eq!(
            c.send(0, &bad),
            vec![(0, error(ErrorCode::BadReport))],
            "{bad}"
        );
    }
    assert_eq!(c.counts(), (2, 0, 2));
    assert_eq!(
        c.send(0, &msg_json("still here")),
        vec![(1, message("still here"))]
    );
    // A note of exactly 500 bytes, or null, is fine.
    let ok = format!(
        r#"{{"type":"report","reason":"other","note":"{}"}}"#,
        "x".repeat(500)
    );
    assert_eq!(c.send(0, &ok).first(), Some(&(0, REPORTED.to_string())));
}

#[test]
fn three_distinct_reporters_ban_the_reported_address() {
    let safety = SafetyHandle::default();
    let mut c = chat_with(safety.clone());
    let before = safety.ban_generation();
    for (n, reporter) in [(10, 1), (11, 2), (12, 3)] {
        c.connect_from(100, 9);
        c.connect_from(n, reporter);
        c.send(n, &report("spam"));
        c.drop_client(100);
        c.drop_client(n);
    }
    let bans = safety.bans(c.unix_ms());
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0].address, "192.0.2.9");
    assert_eq!(bans[0].by, crate::safety::bans::By::Auto);
    assert_ne!(safety.ban_generation(), before);
    assert!(safety.ban_for(ip(9), c.unix_ms()).is_some());
    assert!(
        safety.ban_for(ip(9), c.unix_ms() + 3_600_000).is_none(),
        "60 minutes"
    );
}

#[test]
fn the_word_list_keeps_matching_messages_from_the_partner() {
    let dir = std::env::temp_dir().join(format!("chat-words-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("words");
    std::fs::write(&path, "buy now\nspam\n").unwrap();
    let safety = SafetyHandle::new(
        SafetyConfig {
            blocked_words: Some(path),
            ..SafetyConfig::default()
        },
        0,
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let mut c = chat_with(safety);
    c.pair(0, 1);
    assert_eq!(
        c.send(0, &msg_json("BUY NOW!")),
        vec![(0, error(ErrorCode::BlockedWord))]
    );
    assert_eq!(c.send(0, &msg_json("spammy")), vec![(1, message("spammy"))]);
    let errors: Vec<_> = c.p.metrics().errors_by_code().collect();
    assert!(errors.contains(&(ErrorCode::BlockedWord, 1)));
}

#[test]
fn rings_are_freed_when_both_clients_moved_on() {
    let mut c = chat_with(SafetyHandle::default());
    c.connect_from(0, 1);
    c.connect_from(1, 2);
    c.send(0, &msg_json("hi"));
    assert_eq!(c.p.rings.len(), 1);
    c.send(0, NEXT);
    assert_eq!(c.p.rings.len(), 1, "kept for a late report");
    c.drop_client(1);
    assert_eq!(c.p.rings.len(), 1);
    c.connect_from(2, 3);
    assert_eq!(c.p.rings.len(), 0, "0 paired again");
}
