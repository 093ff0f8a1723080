//! Behaviour tests of `Pairing` against PROTOCOL.md "Life of a session",
//! "Precise readings" and the chat rows of "Limits and bad input".

use super::pairing::{ChatConfig, Pairing};
use super::protocol::{to_json_string, ErrorCode};
use super::video::PairId;
use super::{ClientId, Counts, Outbox, ServerMsg, SessionError};

mod safety;
mod video;

/// Records every message as `(to, json)`. A `paired` is recorded without
/// its video fields (`pair`, `initiator`, `ice`), which the pairing tests
/// do not look at; the whole JSON goes to `full`, and `(to, pair,
/// initiator)` to `pairs`, for the video tests.
#[derive(Default)]
struct Rec {
    sent: Vec<(ClientId, String)>,
    full: Vec<(ClientId, String)>,
    pairs: Vec<(ClientId, PairId, bool)>,
}

impl Outbox for Rec {
    fn send(&mut self, to: ClientId, msg: &ServerMsg<'_>) {
        let json = to_json_string(msg);
        if let ServerMsg::Paired {
            common,
            pair,
            initiator,
            ..
        } = *msg
        {
            let tags: Vec<&str> = common.iter().map(String::as_str).collect();
            self.sent.push((to, paired(&tags)));
            self.pairs.push((to, pair, initiator));
        } else {
            self.sent.push((to, json.clone()));
        }
        self.full.push((to, json));
    }
}

struct Chat {
    p: Pairing,
    out: Rec,
    now: u64,
}

fn waiting(online: usize) -> String {
    format!(r#"{{"type":"waiting","online":{online}}}"#)
}

/// JSON of a string (escaped, quoted).
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn paired(common: &[&str]) -> String {
    let tags: Vec<String> = common.iter().map(|t| quoted(t)).collect();
    format!(r#"{{"type":"paired","common":[{}]}}"#, tags.join(","))
}

fn message(text: &str) -> String {
    format!(r#"{{"type":"message","text":{}}}"#, quoted(text))
}

fn typing(active: bool) -> String {
    format!(r#"{{"type":"typing","active":{active}}}"#)
}

fn left(reason: &str) -> String {
    format!(r#"{{"type":"left","reason":"{reason}"}}"#)
}

fn error(code: ErrorCode) -> String {
    to_json_string(&ServerMsg::Error { code })
}

/// A client's `message` (same shape as the server's).
fn msg_json(text: &str) -> String {
    message(text)
}

const NEXT: &str = r#"{"type":"next"}"#;

impl Chat {
    fn new() -> Chat {
        Chat::with_wait(5_000)
    }

    fn with_wait(interest_wait_ms: u64) -> Chat {
        Chat::with_config(ChatConfig {
            interest_wait_ms,
            ..ChatConfig::default()
        })
    }

    fn with_config(config: ChatConfig) -> Chat {
        Chat {
            p: Pairing::new(config),
            out: Rec::default(),
            now: 1_000_000,
        }
    }

    fn connect(&mut self, id: ClientId) -> Vec<(ClientId, String)> {
        self.p.on_connect(id, None, self.now, &mut self.out);
        self.take()
    }

    fn connect_with(&mut self, id: ClientId, query: &str) -> Vec<(ClientId, String)> {
        self.p.on_connect(id, Some(query), self.now, &mut self.out);
        self.take()
    }

    fn send(&mut self, id: ClientId, text: &str) -> Vec<(ClientId, String)> {
        let r = self.p.on_text(id, text.as_bytes(), self.now, &mut self.out);
        assert_eq!(r, Ok(()));
        self.take()
    }

    fn try_send(&mut self, id: ClientId, text: &str) -> Result<(), SessionError> {
        self.p.on_text(id, text.as_bytes(), self.now, &mut self.out)
    }

    fn drop_client(&mut self, id: ClientId) -> Vec<(ClientId, String)> {
        self.p.on_disconnect(id, self.now, &mut self.out);
        self.take()
    }

    fn advance(&mut self, ms: u64) -> Vec<(ClientId, String)> {
        self.now += ms;
        self.p.on_tick(self.now, &mut self.out);
        self.take()
    }

    fn take(&mut self) -> Vec<(ClientId, String)> {
        self.out.full.clear();
        std::mem::take(&mut self.out.sent)
    }

    fn counts(&self) -> (usize, usize, usize) {
        let Counts {
            online,
            waiting,
            chatting,
        } = self.p.counts();
        (online, waiting, chatting)
    }

    /// Connects `a` then `b` (no interests) and checks they are paired.
    fn pair(&mut self, a: ClientId, b: ClientId) {
        self.connect(a);
        let got = self.connect(b);
        assert!(got.contains(&(a, paired(&[]))), "{got:?}");
        assert!(got.contains(&(b, paired(&[]))), "{got:?}");
    }
}

fn sent(v: &[(ClientId, &str)]) -> Vec<(ClientId, String)> {
    v.iter().map(|&(id, s)| (id, s.to_string())).collect()
}

// ---- Life of a session 1 & 2, precise reading "waiting first" ----

#[test]
fn connect_is_queued_and_gets_waiting() {
    let mut c = Chat::new();
    assert_eq!(c.connect(0), vec![(0, waiting(1))]);
    assert_eq!(c.counts(), (1, 1, 0));
}

#[test]
fn waiting_comes_first_even_when_paired_at_once_and_both_paired_in_one_call() {
    let mut c = Chat::new();
    c.connect(7);
    let got = c.connect(3);
    assert_eq!(got.first(), Some(&(3, waiting(2))));
    assert_eq!(got.len(), 3);
    assert!(got.contains(&(3, paired(&[]))));
    assert!(got.contains(&(7, paired(&[]))));
    assert_eq!(c.counts(), (2, 0, 2));
    assert_eq!(c.p.metrics().pairs, 1);
}

#[test]
fn online_counts_connected_clients_including_receiver() {
    let mut c = Chat::new();
    c.pair(0, 1);
    c.pair(2, 3);
    assert_eq!(c.connect(4), vec![(4, waiting(5))]);
    assert_eq!(c.counts(), (5, 1, 4));
    c.drop_client(0);
    assert_eq!(c.counts(), (4, 1, 2));
    // 1 is idle now: online but neither waiting nor chatting.
    let got = c.send(1, NEXT);
    assert_eq!(got.first(), Some(&(1, waiting(4))));
    assert_eq!(c.counts(), (4, 0, 4));
}

// ---- 3: messages and typing to the partner only, in order ----

#[test]
fn relay_goes_to_partner_only_in_order() {
    let mut c = Chat::new();
    c.pair(0, 1);
    c.pair(2, 3);
    let mut got = c.send(0, &msg_json("one"));
    got.extend(c.send(0, r#"{"type":"typing","active":true}"#));
    got.extend(c.send(0, &msg_json("two")));
    got.extend(c.send(0, r#"{"type":"typing","active":false}"#));
    got.extend(c.send(1, &msg_json("back")));
    assert_eq!(
        got,
        vec![
            (1, message("one")),
            (1, typing(true)),
            (1, message("two")),
            (1, typing(false)),
            (0, message("back")),
        ]
    );
    assert_eq!(c.send(3, "hi 2"), vec![(2, message("hi 2"))]);
    let m = c.p.metrics();
    assert_eq!((m.messages_relayed, m.typing_relayed), (4, 2));
}

#[test]
fn plain_text_is_relayed_as_message() {
    let mut c = Chat::new();
    c.pair(0, 1);
    assert_eq!(c.send(0, "hello there"), vec![(1, message("hello there"))]);
    assert_eq!(c.send(0, "  {x"), vec![(0, error(ErrorCode::BadJson))]);
    assert_eq!(c.send(0, " x {"), vec![(1, message(" x {"))]);
}

#[test]
fn relayed_text_is_escaped() {
    let mut c = Chat::new();
    c.pair(0, 1);
    let text = "she said \"hi\"\nnew line\t\\ é 日本語 😀 \u{7f} </script>";
    for input in [msg_json(text), text.to_string()] {
        let got = c.send(0, &input);
        assert_eq!(got.len(), 1);
        let (to, json) = &got[0];
        assert_eq!(*to, 1);
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        assert_eq!(v, serde_json::json!({"type":"message","text":text}));
    }
    // Escaped input is decoded before relaying.
    let got = c.send(0, r#"{"type":"message","text":"\u0041\"\n"}"#);
    assert_eq!(got, vec![(1, message("A\"\n"))]);
}

// ---- 4: next ----

#[test]
fn next_partner_gets_left_and_idles_sender_requeued() {
    let mut c = Chat::new();
    c.pair(0, 1);
    assert_eq!(
        c.send(0, NEXT),
        sent(&[(1, &left("next")), (0, &waiting(2))])
    );
    assert_eq!(c.counts(), (2, 1, 0));
    // 1 is idle: not queued, chat messages refused.
    assert_eq!(c.send(1, "hi"), vec![(1, error(ErrorCode::NotPaired))]);
    assert_eq!(
        c.send(1, r#"{"type":"typing","active":true}"#),
        vec![(1, error(ErrorCode::NotPaired))]
    );
    // A newcomer takes the queued 0, not the idle 1.
    let got = c.connect(2);
    assert!(got.contains(&(0, paired(&[]))) && got.contains(&(2, paired(&[]))));
    assert!(got.iter().all(|(id, _)| *id != 1));
}

#[test]
fn next_pairs_with_longest_waiting_and_waiting_comes_first() {
    let mut c = Chat::new();
    c.pair(0, 1);
    c.connect(2);
    let got = c.send(0, NEXT);
    assert_eq!(
        got,
        sent(&[
            (1, &left("next")),
            (0, &waiting(3)),
            (0, &paired(&[])),
            (2, &paired(&[])),
        ])
    );
}

// ---- 6: idle client sends next; re-pair when nobody else waits ----

#[test]
fn idle_next_requeues_and_repairs_when_nobody_else_waits() {
    let mut c = Chat::new();
    c.pair(0, 1);
    c.send(0, NEXT);
    let got = c.send(1, NEXT);
    assert_eq!(
        got,
        sent(&[(1, &waiting(2)), (1, &paired(&[])), (0, &paired(&[]))])
    );
    assert_eq!(c.counts(), (2, 0, 2));
}

// ---- 5: disconnect ----

#[test]
fn disconnect_tells_partner_who_goes_idle() {
    let mut c = Chat::new();
    c.pair(0, 1);
    assert_eq!(c.drop_client(0), vec![(1, left("disconnected"))]);
    assert_eq!(c.counts(), (1, 0, 0));
    assert_eq!(c.send(1, "anyone?"), vec![(1, error(ErrorCode::NotPaired))]);
    // The id is reused by a new client, who is not paired with idle 1.
    assert_eq!(c.connect(0), vec![(0, waiting(2))]);
    let got = c.send(1, NEXT);
    assert_eq!(
        got,
        sent(&[(1, &waiting(2)), (1, &paired(&[])), (0, &paired(&[]))])
    );
}

#[test]
fn disconnect_while_queued_or_idle() {
    let mut c = Chat::new();
    c.connect(0);
    assert_eq!(c.drop_client(0), vec![]);
    assert_eq!(c.counts(), (0, 0, 0));
    c.pair(1, 2);
    c.send(1, NEXT);
    assert_eq!(c.drop_client(2), vec![]);
    assert_eq!(c.counts(), (1, 1, 0));
    // Unknown ids are ignored.
    assert_eq!(c.drop_client(2), vec![]);
    assert_eq!(c.drop_client(99), vec![]);
    assert_eq!(c.send(99, "hi"), vec![]);
    assert_eq!(c.counts(), (1, 1, 0));
}

// ---- no self-pairing; next while queued ----

#[test]
fn never_paired_with_self() {
    let mut c = Chat::new();
    c.connect(0);
    for _ in 0..3 {
        assert_eq!(c.send(0, NEXT), vec![(0, waiting(1))]);
    }
    assert!(c.advance(10_000).is_empty());
    c.send(0, r#"{"type":"interests","tags":["x"]}"#);
    assert!(c.advance(10_000).is_empty());
    assert_eq!(c.counts(), (1, 1, 0));
}

#[test]
fn next_while_queued_answers_waiting_again() {
    let mut c = Chat::new();
    c.connect_with(0, "interests=a"); // in its interest wait
    c.connect(1); // cannot take 0 yet
    c.connect_with(2, "interests=b");
    assert_eq!(c.send(1, NEXT), vec![(1, waiting(3))]);
    // 0's wait ends: it takes the longest-waiting open client, 1.
    let got = c.advance(5_000);
    assert!(got.contains(&(0, paired(&[]))) && got.contains(&(1, paired(&[]))));
}

// ---- precise reading: the re-pair rule is literal ----

/// 0 and 1 were chatting; 0 left with next, 1 then asks for next while 2
/// (in its interest wait, unable to take either) is queued.
fn repair_setup() -> Chat {
    let mut c = Chat::new();
    c.pair(0, 1);
    c.connect_with(2, "interests=music");
    assert_eq!(
        c.send(0, NEXT),
        sent(&[(1, &left("next")), (0, &waiting(3))])
    );
    assert_eq!(c.send(1, NEXT), vec![(1, waiting(3))]);
    assert_eq!(c.counts(), (3, 3, 0));
    c
}

#[test]
fn repair_blocked_while_a_third_client_in_interest_wait_is_queued() {
    let mut c = repair_setup();
    // Wait ends: 2 takes the longest-waiting open client, 0; 1 stays.
    let got = c.advance(5_000);
    assert_eq!(got.len(), 2);
    assert!(got.contains(&(0, paired(&[]))) && got.contains(&(2, paired(&[]))));
    assert_eq!(c.counts(), (3, 1, 2));
}

#[test]
fn repair_allowed_once_the_third_client_leaves() {
    let mut c = repair_setup();
    let got = c.drop_client(2);
    assert_eq!(got.len(), 2);
    assert!(got.contains(&(0, paired(&[]))) && got.contains(&(1, paired(&[]))));
}

#[test]
fn repair_allowed_once_the_third_client_is_paired() {
    let mut c = repair_setup();
    let got = c.connect_with(3, "interests=music");
    assert_eq!(
        got,
        sent(&[
            (3, &waiting(4)),
            (3, &paired(&["music"])),
            (2, &paired(&["music"])),
            (0, &paired(&[])),
            (1, &paired(&[])),
        ])
    );
}

#[test]
fn newcomer_takes_longest_waiting_of_the_blocked_pair() {
    let mut c = repair_setup();
    let got = c.connect(3);
    assert_eq!(
        got,
        sent(&[(3, &waiting(4)), (3, &paired(&[])), (0, &paired(&[]))])
    );
}

#[test]
fn previous_stranger_is_only_the_latest_one() {
    let mut c = Chat::new();
    c.pair(0, 1);
    c.send(0, NEXT); // 1 idle, prev(1) = 0
    c.connect(2); // pairs with 0: prev(0) = 2
    c.connect_with(3, "interests=x"); // queued, in wait
    c.send(1, NEXT); // queued: 3, 1
                     // 0 leaves 2; 0 and 1 met before, but 0 has had another stranger since.
    let got = c.send(0, NEXT);
    assert_eq!(
        got,
        sent(&[
            (2, &left("next")),
            (0, &waiting(4)),
            (0, &paired(&[])),
            (1, &paired(&[])),
        ])
    );
}

// ---- interests ----

#[test]
fn interests_pair_with_tag_sharer_and_list_common_tags() {
    let mut c = Chat::new();
    c.connect_with(0, "interests=music"); // in wait
    assert_eq!(c.connect(1), vec![(1, waiting(2))]); // cannot take 0
    let got = c.connect_with(2, "interests=Rust,%20MUSIC");
    assert_eq!(
        got,
        sent(&[
            (2, &waiting(3)),
            (2, &paired(&["music"])),
            (0, &paired(&["music"])),
        ])
    );
    assert_eq!(c.counts(), (3, 1, 2));
}

#[test]
fn common_lists_every_shared_tag() {
    let mut c = Chat::new();
    c.connect_with(0, "interests=c,a,b,z");
    let got = c.connect_with(1, "x=1&interests=d,c,b");
    assert!(got.contains(&(0, paired(&["b", "c"]))));
    assert!(got.contains(&(1, paired(&["b", "c"]))));
}

#[test]
fn longest_waiting_tag_sharer_wins() {
    let mut c = Chat::new();
    c.connect_with(0, "interests=rust");
    c.advance(1);
    c.connect_with(1, "interests=music");
    c.advance(1);
    c.connect_with(2, "interests=music");
    // 1 and 2 were paired; now 3 shares with 0 (rust) and nobody else.
    let got = c.connect_with(3, "interests=music,rust");
    assert!(got.contains(&(0, paired(&["rust"]))), "{got:?}");
    c.connect_with(4, "interests=b");
    c.advance(1);
    c.connect_with(5, "interests=a");
    let got = c.connect_with(6, "interests=a,b");
    assert!(got.contains(&(4, paired(&["b"]))), "{got:?}");
}

#[test]
fn in_wait_newcomer_takes_tag_sharer_not_older_open_client() {
    let mut c = Chat::new();
    c.connect_with(0, "interests=a");
    c.advance(5_000); // 0 takes anyone now
    c.connect_with(1, "interests=b"); // in wait: only b
    c.advance(1);
    let got = c.connect_with(2, "interests=b");
    assert!(got.contains(&(1, paired(&["b"]))), "{got:?}");
    // A client with interests past its wait, with no tag-sharer, takes 0.
    c.connect_with(3, "interests=q");
    let got = c.advance(5_000);
    assert!(got.contains(&(3, paired(&[]))) && got.contains(&(0, paired(&[]))));
}

#[test]
fn interest_wait_fallback_on_tick() {
    let mut c = Chat::new();
    assert_eq!(c.p.next_deadline(), None);
    c.connect_with(0, "interests=music");
    let start = c.now;
    assert_eq!(c.p.next_deadline(), Some(start + 5_000));
    c.advance(100);
    assert_eq!(c.connect(1), vec![(1, waiting(2))]);
    assert!(c.advance(4_899).is_empty());
    assert_eq!(c.p.next_deadline(), Some(start + 5_000));
    let got = c.advance(1);
    assert_eq!(got.len(), 2);
    assert!(got.contains(&(0, paired(&[]))) && got.contains(&(1, paired(&[]))));
    assert_eq!(c.p.next_deadline(), None);
}

#[test]
fn expired_client_is_taken_by_no_interest_newcomer() {
    let mut c = Chat::new();
    c.connect_with(0, "interests=music");
    assert!(c.advance(5_000).is_empty()); // alone; now open
    assert_eq!(c.p.next_deadline(), None);
    let got = c.connect(1);
    assert!(got.contains(&(0, paired(&[]))) && got.contains(&(1, paired(&[]))));
}

#[test]
fn in_wait_client_pairs_only_with_tag_sharers() {
    let mut c = Chat::new();
    c.connect_with(0, "interests=a");
    c.connect(1);
    c.connect_with(2, "interests=b");
    assert_eq!(c.counts(), (3, 3, 0));
    assert!(c.advance(4_999).is_empty());
    assert_eq!(c.counts(), (3, 3, 0));
}

#[test]
fn stale_deadlines_are_dropped() {
    let mut c = Chat::new();
    c.connect_with(0, "interests=a");
    c.advance(10);
    c.connect_with(1, "interests=b");
    let second = c.now + 5_000;
    c.drop_client(0);
    assert_eq!(c.p.next_deadline(), Some(second));
    c.connect_with(2, "interests=b"); // pairs with 1
    assert_eq!(c.p.next_deadline(), None);
}

#[test]
fn zero_interest_wait_takes_anyone_at_once() {
    let mut c = Chat::with_wait(0);
    c.connect_with(0, "interests=a");
    assert_eq!(c.p.next_deadline(), None);
    let got = c.connect(1);
    assert!(got.contains(&(0, paired(&[]))));
}

#[test]
fn fifo_among_open_clients() {
    // 0 and 1 are kept apart by the re-pair rule (2 in its wait), so two
    // open clients wait; newcomers take them oldest first.
    let mut c = repair_setup();
    let got = c.connect(3);
    assert!(got.contains(&(0, paired(&[]))), "{got:?}");
    let got = c.connect(4);
    assert!(got.contains(&(1, paired(&[]))), "{got:?}");
    // Interest waits end in arrival order.
    let mut c = Chat::new();
    for id in 0..4 {
        c.connect_with(id, &format!("interests=t{id}"));
        c.advance(1);
    }
    let mut got = c.advance(5_000);
    got.retain(|(_, m)| m.contains("paired"));
    assert_eq!(
        got,
        sent(&[
            (1, &paired(&[])),
            (0, &paired(&[])),
            (3, &paired(&[])),
            (2, &paired(&[])),
        ])
    );
}

#[test]
fn interests_message_applies_to_next_search() {
    let mut c = Chat::new();
    c.pair(0, 1);
    assert_eq!(
        c.send(0, r#"{"type":"interests","tags":["Music"]}"#),
        vec![]
    );
    c.connect_with(2, "interests=music");
    c.connect(3);
    let got = c.send(0, NEXT);
    assert_eq!(
        got,
        sent(&[
            (1, &left("next")),
            (0, &waiting(4)),
            (0, &paired(&["music"])),
            (2, &paired(&["music"])),
        ])
    );
}

#[test]
fn interests_message_while_queued_applies_at_once() {
    let mut c = Chat::new();
    c.connect_with(0, "interests=music");
    c.connect(1);
    // 1 now shares a tag with 0: paired at once, no extra waiting.
    let got = c.send(1, r#"{"type":"interests","tags":["music","x"]}"#);
    assert_eq!(
        got,
        sent(&[(1, &paired(&["music"])), (0, &paired(&["music"]))])
    );

    // Clearing interests makes a client take anyone.
    let mut c = Chat::new();
    c.connect_with(0, "interests=a");
    c.connect(1);
    let got = c.send(0, r#"{"type":"interests","tags":[]}"#);
    assert!(got.contains(&(0, paired(&[]))) && got.contains(&(1, paired(&[]))));

    // New tags restart the interest wait; place in line is kept.
    let mut c = Chat::new();
    c.connect(0);
    c.advance(1_000);
    c.send(0, r#"{"type":"interests","tags":["a"]}"#);
    assert_eq!(c.p.next_deadline(), Some(c.now + 5_000));
    c.advance(4_000);
    assert!(c.connect(1).len() == 1);
    assert_eq!(c.send(0, r#"{"type":"interests","tags":["a"]}"#), vec![]);
    let got = c.advance(1_000);
    assert!(got.contains(&(0, paired(&[]))) && got.contains(&(1, paired(&[]))));
}

#[test]
fn bad_interests_are_refused_and_keep_old_tags() {
    let mut c = Chat::new();
    c.connect_with(0, "interests=a");
    let bad = format!(r#"{{"type":"interests","tags":["{}"]}}"#, "x".repeat(33));
    assert_eq!(c.send(0, &bad), vec![(0, error(ErrorCode::BadInterests))]);
    let got = c.connect_with(1, "interests=a");
    assert!(got.contains(&(0, paired(&["a"]))));
}

#[test]
fn invalid_connect_tags_are_ignored() {
    let mut c = Chat::new();
    let long = "y".repeat(40);
    c.connect_with(0, &format!("interests={long},,%20,music"));
    let got = c.connect_with(1, "interests=music");
    assert!(got.contains(&(1, paired(&["music"]))));
    // Only invalid tags: no interests, takes anyone.
    c.connect_with(2, &format!("interests={long}"));
    let got = c.connect(3);
    assert!(got.contains(&(2, paired(&[]))));
}

// ---- errors ----

#[test]
fn every_error_code() {
    let mut c = Chat::new();
    c.connect(0);
    let cases: &[(&str, ErrorCode)] = &[
        ("{oops", ErrorCode::BadJson),
        (r#"{"type":"hug"}"#, ErrorCode::UnknownType),
        (r#"{"type":"message","text":"   "}"#, ErrorCode::Empty),
        ("  ", ErrorCode::Empty),
        (
            r#"{"type":"interests","tags":[1]}"#,
            ErrorCode::BadInterests,
        ),
        ("queued, not paired", ErrorCode::NotPaired),
        (r#"{"type":"typing","active":true}"#, ErrorCode::NotPaired),
        (r#"{"type":"report","reason":"x"}"#, ErrorCode::BadReport),
    ];
    for &(input, code) in cases {
        assert_eq!(c.send(0, input), vec![(0, error(code))], "{input}");
    }
    assert_eq!(
        c.send(0, &"x".repeat(4097)),
        vec![(0, error(ErrorCode::TooLong))]
    );
    let big = format!(
        r#"{{"type":"signal","pair":"0000000000000000","data":{{"s":"{}"}}}}"#,
        "x".repeat(16 * 1024)
    );
    assert_eq!(c.send(0, &big), vec![(0, error(ErrorCode::SignalTooLarge))]);
    c.advance(10_000);
    for _ in 0..20 {
        c.send(0, NEXT);
    }
    assert_eq!(c.send(0, NEXT), vec![(0, error(ErrorCode::RateLimited))]);
    let m = c.p.metrics();
    assert_eq!(m.errors_total(), 11);
    for (code, n) in m.errors_by_code() {
        let want = match code {
            ErrorCode::Empty | ErrorCode::NotPaired => 2,
            // Needs a word list: chat::tests::safety.
            ErrorCode::BlockedWord => 0,
            _ => 1,
        };
        assert_eq!(n, want, "{code:?}");
    }
    // The session goes on.
    let got = c.connect(1);
    assert!(got.contains(&(0, paired(&[]))));
}

#[test]
fn errors_while_chatting_are_not_relayed() {
    let mut c = Chat::new();
    c.pair(0, 1);
    assert_eq!(
        c.send(0, &msg_json(&"é".repeat(2049))),
        vec![(0, error(ErrorCode::TooLong))]
    );
    assert_eq!(c.send(0, &msg_json("é".repeat(2048).as_str())).len(), 1);
    assert_eq!(c.send(0, ""), vec![(0, error(ErrorCode::Empty))]);
}

// ---- rate limit ----

#[test]
fn rate_limit_soft_drops_and_tells() {
    let mut c = Chat::new();
    c.pair(0, 1);
    for i in 0..20 {
        assert_eq!(
            c.send(0, &format!("m{i}")),
            vec![(1, message(&format!("m{i}")))]
        );
    }
    // Burst used up: dropped, one rate_limited, then silence while dropping.
    assert_eq!(c.send(0, "x"), vec![(0, error(ErrorCode::RateLimited))]);
    assert_eq!(c.send(0, "x"), vec![]);
    assert_eq!(c.send(0, NEXT), vec![]);
    // 100 ms later one token is back.
    c.advance(100);
    assert_eq!(c.send(0, "ok"), vec![(1, message("ok"))]);
    // Dropping again after an accepted message is told again.
    assert_eq!(c.send(0, "x"), vec![(0, error(ErrorCode::RateLimited))]);
    // ... but not for every drop.
    c.advance(99);
    assert_eq!(c.send(0, "x"), vec![]);
    // The partner was not limited.
    assert_eq!(c.send(1, "fine"), vec![(0, message("fine"))]);
    assert_eq!(c.p.metrics().errors[ErrorCode::RateLimited.index()], 5);
}

#[test]
fn rate_limit_counts_every_message_type() {
    let mut c = Chat::new();
    c.connect(0);
    for i in 0..20 {
        let m = match i % 4 {
            0 => NEXT,
            1 => r#"{"type":"interests","tags":[]}"#,
            2 => r#"{"type":"typing","active":true}"#,
            _ => "{bad",
        };
        c.send(0, m);
    }
    assert_eq!(c.send(0, NEXT), vec![(0, error(ErrorCode::RateLimited))]);
}

#[test]
fn rate_limit_sustained_10_per_second_is_fine() {
    let mut c = Chat::new();
    c.pair(0, 1);
    for i in 0..1_000 {
        c.now += 100;
        assert_eq!(c.send(0, "x").len(), 1, "message {i}");
    }
    assert_eq!(c.p.metrics().errors_total(), 0);
}

#[test]
fn rate_limit_hard_closes_at_10x() {
    let mut c = Chat::new();
    c.pair(0, 1);
    for i in 0..200 {
        assert_eq!(c.try_send(0, "x"), Ok(()), "message {i}");
    }
    let relayed = c.take().iter().filter(|(to, _)| *to == 1).count();
    assert_eq!(relayed, 20);
    let err = c.try_send(0, "x");
    assert_eq!(err, Err(SessionError::Flooding));
    assert_eq!(c.p.metrics().rate_limit_closes, 1);
    // The loop then reports the disconnect.
    assert_eq!(c.drop_client(0), vec![(1, left("disconnected"))]);
}

#[test]
fn rate_limit_5x_drops_but_does_not_close() {
    let mut c = Chat::new();
    c.pair(0, 1);
    let (mut notices, mut relayed) = (0, 0);
    for _ in 0..5_000 {
        c.now += 20; // 50 messages per second
        assert_eq!(c.try_send(0, "x"), Ok(()));
    }
    for (to, m) in c.take() {
        if to == 0 {
            assert_eq!(m, error(ErrorCode::RateLimited));
            notices += 1;
        } else {
            relayed += 1;
        }
    }
    // Told once per run of drops, not once per dropped message.
    let dropped = 5_000 - relayed;
    assert!(notices > 0 && notices * 2 < dropped, "{notices} {dropped}");
    assert_eq!(c.p.metrics().errors_total(), dropped);
}

// ---- scale ----

#[test]
fn many_queued_clients_pair_and_leave_quickly() {
    const N: usize = 100_000;
    let mut c = Chat::new();
    // N clients in their interest waits, each with its own tag.
    for id in 0..N {
        c.p.on_connect(id, Some(&format!("interests=t{id}")), c.now, &mut c.out);
    }
    c.take();
    assert_eq!(c.counts(), (N, N, 0));
    // Newcomers sharing a tag with the oldest and newest, and leavers from
    // the middle, all against the full queue.
    for k in 0..1_000 {
        let a = N + 2 * k;
        c.p.on_connect(a, Some(&format!("interests=t{k}")), c.now, &mut c.out);
        c.p.on_connect(
            a + 1,
            Some(&format!("interests=t{}", N - 1 - k)),
            c.now,
            &mut c.out,
        );
        c.p.on_disconnect(N / 2 + k, c.now, &mut c.out);
    }
    assert_eq!(c.counts(), (N + 1_000, N - 3_000, 4_000));
    // Every wait ends in one tick: the rest pair up in arrival order.
    c.take();
    c.advance(5_000);
    assert_eq!(c.counts(), (N + 1_000, 0, N + 1_000));
    assert_eq!(c.p.next_deadline(), None);
    for id in 0..N + 2_000 {
        c.p.on_disconnect(id, c.now, &mut c.out);
    }
    assert_eq!(c.counts(), (0, 0, 0));
}
