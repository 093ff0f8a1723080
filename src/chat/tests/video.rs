//! Video signalling in `Pairing` (PROTOCOL.md "Video"): pair ids, the
//! initiator, the `signal` relay and its limits, ICE servers and TURN
//! REST credentials.

use super::*;
use crate::chat::video::{hmac_sha1_base64, TurnSecret, VideoConfig, MAX_SIGNAL_DATA};

fn signal(pair: &str, data: &str) -> String {
    format!(r#"{{"type":"signal","pair":"{pair}","data":{data}}}"#)
}

impl Chat {
    /// `(pair id, initiator)` of every `paired` sent to `id` so far.
    fn pairs_of(&self, id: ClientId) -> Vec<(String, bool)> {
        self.out
            .pairs
            .iter()
            .filter(|&&(to, _, _)| to == id)
            .map(|&(_, pair, initiator)| (pair.to_string(), initiator))
            .collect()
    }

    /// The current pair id of `id` (its last `paired`).
    fn pair_of(&self, id: ClientId) -> String {
        self.pairs_of(id).last().map(|(p, _)| p.clone()).unwrap()
    }

    /// Like `take`, but the whole JSON of every message (`paired` included).
    fn take_full(&mut self) -> Vec<(ClientId, String)> {
        self.out.sent.clear();
        std::mem::take(&mut self.out.full)
    }
}

fn is_pair_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[test]
fn the_client_already_queued_is_the_one_initiator_and_both_share_the_pair_id() {
    let mut c = Chat::new();
    c.pair(0, 1);
    let (p0, i0) = c.pairs_of(0).pop().unwrap();
    let (p1, i1) = c.pairs_of(1).pop().unwrap();
    assert!(i0 && !i1, "the earlier client initiates: {i0} {i1}");
    assert_eq!(p0, p1);
    assert!(is_pair_id(&p0), "{p0}");

    // A new pairing gets a new id; again the one that waited initiates.
    c.pair(2, 3);
    assert_eq!(c.pairs_of(2), vec![(c.pair_of(3), true)]);
    assert_eq!(c.pairs_of(3), vec![(c.pair_of(3), false)]);
    assert_ne!(c.pair_of(2), p0);

    // After `next` 1 is queued again; 0 sends `next` later and finds 1:
    // 1 waited, so 1 is the initiator now.
    c.send(1, NEXT);
    c.send(0, NEXT);
    let (q0, j0) = c.pairs_of(0).pop().unwrap();
    let (q1, j1) = c.pairs_of(1).pop().unwrap();
    assert_eq!(q0, q1);
    assert!(!j0 && j1);
    let ids = [p0, c.pair_of(2), q0];
    assert!(ids.iter().all(|p| is_pair_id(p)));
    assert_ne!(ids[0], ids[2]);
    assert_ne!(ids[1], ids[2]);
}

#[test]
fn an_interest_wait_ending_makes_the_earlier_client_initiator_even_when_it_searches() {
    let mut c = Chat::with_wait(5_000);
    c.connect_with(0, "interests=rust");
    c.connect(1);
    assert!(c.out.pairs.is_empty());
    c.advance(5_000);
    // 0 is the searcher (its wait ended) and the earlier one.
    assert_eq!(c.pairs_of(0), vec![(c.pair_of(1), true)]);
    assert_eq!(c.pairs_of(1), vec![(c.pair_of(0), false)]);
}

#[test]
fn pair_ids_are_distinct_across_many_pairings_and_depend_on_the_key() {
    let mut seen = std::collections::HashSet::new();
    for counter in 0..10_000 {
        assert!(seen.insert(PairId::new(counter, 0x5eed)));
    }
    assert_ne!(PairId::new(7, 1), PairId::new(7, 2));
    for id in [PairId(0), PairId(1), PairId(u64::MAX), PairId::new(3, 9)] {
        assert_eq!(PairId::parse(&id.to_string()), Some(id));
        assert_eq!(id.hex().to_vec(), id.to_string().into_bytes());
    }
    assert_eq!(PairId::parse("00000000000000AB"), None);
    assert_eq!(PairId::parse("000000000000000"), None);
    assert_eq!(PairId::parse("+00000000000000a"), None);
}

#[test]
fn signals_go_to_the_partner_only_in_order_byte_for_byte() {
    let mut c = Chat::new();
    c.pair(0, 1);
    c.pair(2, 3);
    let pair = c.pair_of(0);
    let datas = [
        r#"{"sdp":{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}}"#,
        "{ \"candidate\" :\t{\"candidate\":\"candidate:1 1 udp 2113937151 127.0.0.1 5000 typ host\" , \"sdpMid\":\"0\"}  }",
        r#"{"x":"\u00e9 é 😀 \"q\"","n":[1, 2.50, -0e0],"o":{}}"#,
        "{}",
    ];
    for data in datas {
        c.p.on_text(0, signal(&pair, data).as_bytes(), c.now, &mut c.out)
            .unwrap();
    }
    let got = c.take_full();
    let want: Vec<(ClientId, String)> = datas.iter().map(|d| (1, signal(&pair, d))).collect();
    assert_eq!(got, want);
    // And the other way, with odd spacing around the fields themselves.
    let back =
        format!("  {{ \"data\" : {{ \"a\" : 1 }} , \"type\":\"signal\" ,\"pair\": \"{pair}\" }}  ");
    c.p.on_text(1, back.as_bytes(), c.now, &mut c.out).unwrap();
    assert_eq!(c.take_full(), vec![(0, signal(&pair, "{ \"a\" : 1 }"))]);
    assert_eq!(c.p.metrics().signals_relayed, 5);
}

#[test]
fn stale_and_unpaired_signals_are_dropped_silently() {
    let mut c = Chat::new();
    c.connect(0);
    // Queued, not paired: no pair is current.
    assert_eq!(c.send(0, &signal("0000000000000000", "{}")), vec![]);
    c.connect(1);
    let old = c.pair_of(0);
    c.send(0, NEXT);
    // 1 is idle now, 0 queued: neither is in a pair.
    assert_eq!(c.send(1, &signal(&old, r#"{"late":"candidate"}"#)), vec![]);
    assert_eq!(c.send(0, &signal(&old, "{}")), vec![]);
    c.send(1, NEXT);
    let new = c.pair_of(0);
    assert_ne!(new, old);
    // Paired again: the old id is stale, a malformed one matches nothing.
    assert_eq!(c.send(1, &signal(&old, "{}")), vec![]);
    assert_eq!(c.send(1, &signal(&new.to_uppercase(), "{}")), vec![]);
    assert_eq!(c.send(1, &signal("x", "{}")), vec![]);
    assert_eq!(
        c.send(1, &signal(&new, "{}")),
        vec![(0, signal(&new, "{}"))]
    );
    // After the partner disconnects, nothing more is relayed either.
    c.drop_client(0);
    assert_eq!(c.send(1, &signal(&new, "{}")), vec![]);
    assert_eq!(c.p.metrics().errors_total(), 0);
    assert_eq!(c.p.metrics().signals_relayed, 1);
}

#[test]
fn a_signal_needs_a_string_pair_and_an_object_data() {
    let mut c = Chat::new();
    c.pair(0, 1);
    let pair = c.pair_of(0);
    for bad in [
        r#"{"type":"signal","data":{}}"#.to_string(),
        format!(r#"{{"type":"signal","pair":"{pair}"}}"#),
        format!(r#"{{"type":"signal","pair":"{pair}","data":null}}"#),
        format!(r#"{{"type":"signal","pair":"{pair}","data":"sdp"}}"#),
        format!(r#"{{"type":"signal","pair":"{pair}","data":[1]}}"#),
        r#"{"type":"signal","pair":7,"data":{}}"#.to_string(),
        format!(r#"{{"type":"signal","pair":"{pair}","data":{{}},"data":{{}}}}"#),
    ] {
        assert_eq!(
            c.send(0, &bad),
            vec![(0, error(ErrorCode::BadJson))],
            "{bad}"
        );
    }
}

#[test]
fn data_over_16_kib_is_signal_too_large() {
    let mut c = Chat::new();
    c.pair(0, 1);
    let pair = c.pair_of(0);
    // `{"s":"…"}` is 8 bytes around the string.
    let fits = format!(r#"{{"s":"{}"}}"#, "a".repeat(MAX_SIGNAL_DATA - 8));
    assert_eq!(fits.len(), 16 * 1024);
    assert_eq!(
        c.send(0, &signal(&pair, &fits)),
        vec![(1, signal(&pair, &fits))]
    );
    let over = format!(r#"{{"s":"{}"}}"#, "a".repeat(MAX_SIGNAL_DATA - 7));
    assert_eq!(
        c.send(0, &signal(&pair, &over)),
        vec![(0, error(ErrorCode::SignalTooLarge))]
    );
    let m = c.p.metrics();
    assert_eq!(m.errors[ErrorCode::SignalTooLarge.index()], 1);
    assert_eq!(m.errors_total(), 1);
    assert_eq!(m.signals_relayed, 1);
}

#[test]
fn the_201st_signal_of_a_side_in_a_pair_is_rate_limited_and_a_new_pair_resets_it() {
    let mut c = Chat::new();
    c.pair(0, 1);
    let pair = c.pair_of(0);
    for i in 0..200 {
        let data = format!(r#"{{"i":{i}}}"#);
        assert_eq!(
            c.send(0, &signal(&pair, &data)),
            vec![(1, signal(&pair, &data))]
        );
    }
    assert_eq!(
        c.send(0, &signal(&pair, "{}")),
        vec![(0, error(ErrorCode::RateLimited))]
    );
    // Dropped; answered at most once a second while dropping.
    assert_eq!(c.send(0, &signal(&pair, "{}")), vec![]);
    c.now += 1_000;
    assert_eq!(
        c.send(0, &signal(&pair, "{}")),
        vec![(0, error(ErrorCode::RateLimited))]
    );
    assert_eq!(c.p.metrics().errors[ErrorCode::RateLimited.index()], 3);
    // The other side has a budget of its own.
    assert_eq!(
        c.send(1, &signal(&pair, "{}")),
        vec![(0, signal(&pair, "{}"))]
    );
    // So does the next pair.
    c.send(0, NEXT);
    c.send(1, NEXT);
    let new = c.pair_of(0);
    assert_eq!(
        c.send(0, &signal(&new, "{}")),
        vec![(1, signal(&new, "{}"))]
    );
    assert_eq!(c.p.metrics().signals_relayed, 202);
}

#[test]
fn signals_do_not_use_up_the_chat_rate_limit() {
    let mut c = Chat::new();
    c.pair(0, 1);
    let pair = c.pair_of(0);
    // Within one millisecond: the whole chat burst is still there after
    // 200 signals (and after an oversized one).
    for _ in 0..200 {
        c.send(0, &signal(&pair, "{}"));
    }
    let over = format!(r#"{{"s":"{}"}}"#, "a".repeat(MAX_SIGNAL_DATA));
    c.send(0, &signal(&pair, &over));
    for i in 0..20 {
        let text = format!("m{i}");
        assert_eq!(
            c.send(0, &msg_json(&text)),
            vec![(1, message(&text))],
            "{i}"
        );
    }
    // The 21st chat message is over the burst: the chat limit still works.
    assert_eq!(
        c.send(0, &msg_json("one too many")),
        vec![(0, error(ErrorCode::RateLimited))]
    );
    // And signals flow on, within their own budget, while chat is limited.
    let mut d = Chat::new();
    d.pair(0, 1);
    let pair = d.pair_of(0);
    for _ in 0..20 {
        d.send(0, &msg_json("x"));
    }
    assert_eq!(
        d.send(0, &msg_json("x")),
        vec![(0, error(ErrorCode::RateLimited))]
    );
    assert_eq!(
        d.send(0, &signal(&pair, "{}")),
        vec![(1, signal(&pair, "{}"))]
    );
}

// ---- ICE servers and TURN credentials ----

const SECRET: &[u8] = b"s3cret-shared-with-coturn";

fn video_chat(urls: &[&str], secret: Option<&[u8]>) -> Chat {
    let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
    Chat::with_config(ChatConfig {
        video: VideoConfig::new(&urls, secret.and_then(TurnSecret::from_file_content), 3600),
        pair_key: 0xab,
        unix_start_s: 1_700_000_000,
        ..ChatConfig::default()
    })
}

fn paired_json(c: &mut Chat, id: ClientId) -> serde_json::Value {
    let full = c.take_full();
    let (_, json) = full
        .iter()
        .find(|(to, j)| *to == id && j.contains(r#""type":"paired""#))
        .unwrap();
    serde_json::from_str(json).unwrap()
}

#[test]
fn hmac_sha1_matches_a_reference_vector() {
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(
    //   b"s3cret-shared-with-coturn",b"1700003600:00000000000000ab",hashlib.sha1).digest()).decode())'
    assert_eq!(
        hmac_sha1_base64(SECRET, b"1700003600:00000000000000ab"),
        "As04GxPO93eY+3VqTq/WcYXwk70="
    );
}

#[test]
fn turn_servers_get_rest_credentials_that_expire_a_ttl_after_pairing() {
    let mut c = video_chat(
        &[
            "stun:127.0.0.1:3478",
            "turn:127.0.0.1:3478",
            "turns:127.0.0.1:5349",
        ],
        Some(b"  s3cret-shared-with-coturn\n"),
    );
    c.connect(0);
    c.p.on_connect(1, None, c.now, &mut c.out);
    let v0 = paired_json_both(&mut c);
    // Pair id: SplitMix64's finaliser over (counter 0 ^ key 0xab), computed
    // in Python; expiry: unix_start_s + now (1000 s) + ttl (3600 s);
    // credential:
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(
    //   b"s3cret-shared-with-coturn",b"1700004600:b2729643ea40709b",hashlib.sha1).digest()).decode())'
    assert_eq!(v0["pair"], "b2729643ea40709b");
    assert_eq!(
        v0["ice"],
        serde_json::json!([
            {"urls": ["stun:127.0.0.1:3478"]},
            {
                "urls": ["turn:127.0.0.1:3478", "turns:127.0.0.1:5349"],
                "username": "1700004600:b2729643ea40709b",
                "credential": "5Te1XLQ0y1ydSdZ5536FSeEfFgk="
            }
        ])
    );
    // A later pairing: a later expiry and its own pair id in the username.
    c.now += 60_000;
    c.connect(2);
    c.p.on_connect(3, None, c.now, &mut c.out);
    let v = paired_json(&mut c, 2);
    let pair = v["pair"].as_str().unwrap().to_string();
    let username = format!("{}:{pair}", 1_700_000_000u64 + 1_060 + 3_600);
    assert_eq!(v["ice"][1]["username"], username.as_str());
    assert_eq!(
        v["ice"][1]["credential"],
        hmac_sha1_base64(SECRET, username.as_bytes()).as_str()
    );
}

/// The `paired` of clients 0 and 1: the same but for `initiator`.
fn paired_json_both(c: &mut Chat) -> serde_json::Value {
    let full = c.take_full();
    let mut v: Vec<serde_json::Value> = full
        .iter()
        .filter(|(_, j)| j.contains(r#""type":"paired""#))
        .map(|(_, j)| serde_json::from_str(j).unwrap())
        .collect();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["initiator"], !v[1]["initiator"].as_bool().unwrap());
    v[1]["initiator"] = v[0]["initiator"].clone();
    assert_eq!(v[0], v[1]);
    v.remove(0)
}

#[test]
fn without_a_secret_turn_urls_come_bare_and_without_servers_there_is_no_ice() {
    let mut c = video_chat(&["turn:127.0.0.1:3478"], None);
    c.connect(0);
    c.p.on_connect(1, None, c.now, &mut c.out);
    let v = paired_json(&mut c, 1);
    assert_eq!(
        v["ice"],
        serde_json::json!([{"urls": ["turn:127.0.0.1:3478"]}])
    );

    // A secret with only STUN servers: nothing to give credentials to.
    let mut c = video_chat(&["stun:127.0.0.1:3478"], Some(SECRET));
    c.connect(0);
    c.p.on_connect(1, None, c.now, &mut c.out);
    let v = paired_json(&mut c, 1);
    assert_eq!(
        v["ice"],
        serde_json::json!([{"urls": ["stun:127.0.0.1:3478"]}])
    );

    let mut c = video_chat(&[], Some(SECRET));
    c.connect(0);
    c.p.on_connect(1, None, c.now, &mut c.out);
    let v = paired_json(&mut c, 1);
    assert!(v.get("ice").is_none(), "{v}");
    assert_eq!(v["initiator"], false);
}
