//! The chat layer: `parse_client` on arbitrary bytes, then a `Pairing`
//! driven by a fuzzer-chosen sequence of connect / text / disconnect / tick
//! events, with an Outbox that records every message and a model rebuilt
//! from those messages alone.
//!
//! Input: byte 0 selects the interest wait; the rest is both the input to
//! `parse_client` and a script of events (see `fuzz_target!` below).
//!
//! Invariants: nothing panics; a parsed chat text is non-blank and within
//! 4096 bytes; parsed tags are normalised, sorted, distinct, at most 10;
//! nobody is paired with itself; messages only go to connected clients;
//! relayed messages go to the sender's partner; `counts()` agrees with the
//! model (online, waiting, chatting; chatting is even).
#![no_main]

use chat::chat::pairing::ChatConfig;
use chat::chat::protocol::{parse_client, ClientMsg, MAX_TAGS, MAX_TAG_CHARS, MAX_TEXT_BYTES};
use chat::chat::{ClientId, Outbox, Pairing, ServerMsg, SessionError};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

const CLIENTS: usize = 8;

/// Owned copy of a message sent, enough for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Waiting(usize),
    Paired,
    Message,
    Typing,
    Left,
    Error,
    Signal,
}

#[derive(Default)]
struct Recorder(Vec<(ClientId, Sent)>);

impl Outbox for Recorder {
    fn send(&mut self, to: ClientId, msg: &ServerMsg<'_>) {
        let sent = match msg {
            ServerMsg::Waiting { online } => Sent::Waiting(*online),
            ServerMsg::Paired { common, .. } => {
                assert!(common.windows(2).all(|w| w[0] < w[1]), "common not sorted");
                Sent::Paired
            }
            ServerMsg::Message { text } => {
                assert!(!text.trim().is_empty() && text.len() <= MAX_TEXT_BYTES);
                Sent::Message
            }
            ServerMsg::Typing { .. } => Sent::Typing,
            ServerMsg::Left { .. } => Sent::Left,
            ServerMsg::Error { .. } => Sent::Error,
            ServerMsg::Signal { .. } => Sent::Signal,
        };
        // Every message also serialises to valid JSON.
        let json = chat::chat::protocol::to_json_string(msg);
        assert!(serde_json_valid(&json), "bad JSON out: {json}");
        self.0.push((to, sent));
    }
}

fn serde_json_valid(s: &str) -> bool {
    matches!(
        serde_json::from_str::<serde_json::Value>(s),
        Ok(serde_json::Value::Object(_))
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Idle,
    Queued,
    Chatting(ClientId),
}

struct Model {
    clients: BTreeMap<ClientId, St>,
}

impl Model {
    /// Applies what one call sent. `sender` is the client whose text was
    /// handled (for relays and errors), `gone` one that just disconnected.
    fn apply(
        &mut self,
        sent: &[(ClientId, Sent)],
        sender: Option<ClientId>,
        gone: Option<ClientId>,
    ) {
        let mut pending_pair: Option<ClientId> = None;
        for (to, msg) in sent {
            let to = *to;
            assert_ne!(Some(to), gone, "message to a client that left: {msg:?}");
            let st = *self
                .clients
                .get(&to)
                .unwrap_or_else(|| panic!("message to unknown client {to}: {msg:?}"));
            if *msg != Sent::Paired {
                assert!(pending_pair.is_none(), "paired sent to one side only");
            }
            match msg {
                Sent::Waiting(online) => {
                    assert_eq!(*online, self.clients.len(), "waiting.online");
                    self.clients.insert(to, St::Queued);
                }
                Sent::Paired => match pending_pair.take() {
                    None => pending_pair = Some(to),
                    Some(x) => {
                        assert_ne!(x, to, "client {to} paired with itself");
                        assert_eq!(
                            self.clients.get(&x),
                            Some(&St::Queued),
                            "{x} paired while not queued"
                        );
                        assert_eq!(st, St::Queued, "{to} paired while not queued");
                        self.clients.insert(x, St::Chatting(to));
                        self.clients.insert(to, St::Chatting(x));
                    }
                },
                Sent::Message | Sent::Typing | Sent::Signal => {
                    let from = sender.expect("relay outside on_text");
                    assert_ne!(from, to, "relayed to the sender");
                    assert_eq!(
                        st,
                        St::Chatting(from),
                        "relay to {to} who is not {from}'s partner"
                    );
                }
                Sent::Left => {
                    let St::Chatting(partner) = st else {
                        panic!("left sent to {to} who is not chatting ({st:?})");
                    };
                    assert_ne!(partner, to);
                    self.clients.insert(to, St::Idle);
                    // The partner moved on (next: it is re-queued by a
                    // Waiting that follows; disconnect: it is gone).
                    if let Some(p) = self.clients.get_mut(&partner) {
                        if *p == St::Chatting(to) {
                            *p = St::Idle;
                        }
                    }
                }
                Sent::Error => assert_eq!(Some(to), sender, "error to someone else"),
            }
        }
        assert!(pending_pair.is_none(), "paired sent to one side only");
    }

    fn check(&self, pairing: &Pairing) {
        let c = pairing.counts();
        let waiting = self.clients.values().filter(|s| **s == St::Queued).count();
        let chatting = self
            .clients
            .values()
            .filter(|s| matches!(s, St::Chatting(_)))
            .count();
        for (&id, st) in &self.clients {
            if let St::Chatting(p) = *st {
                assert_ne!(p, id);
                assert_eq!(
                    self.clients.get(&p),
                    Some(&St::Chatting(id)),
                    "pair {id}/{p} not mutual"
                );
            }
        }
        assert_eq!(c.online, self.clients.len(), "online");
        assert_eq!(c.waiting, waiting, "waiting");
        assert_eq!(c.chatting, chatting, "chatting");
        assert_eq!(c.chatting % 2, 0);
        assert!(c.waiting + c.chatting <= c.online);
    }
}

fn check_parse(bytes: &[u8]) {
    match parse_client(bytes) {
        Ok(ClientMsg::Message { text }) => {
            assert!(text.len() <= MAX_TEXT_BYTES, "text over the limit");
            assert!(!text.trim().is_empty(), "blank text accepted");
        }
        Ok(ClientMsg::Interests { tags }) => {
            assert!(tags.len() <= MAX_TAGS);
            assert!(
                tags.windows(2).all(|w| w[0] < w[1]),
                "tags not sorted/distinct"
            );
            for t in &tags {
                let n = t.chars().count();
                assert!((1..=MAX_TAG_CHARS).contains(&n), "tag length {n}");
                assert_eq!(t.trim(), t, "tag not trimmed");
                assert_eq!(&t.to_lowercase(), t, "tag not lower-cased");
            }
        }
        Ok(_) | Err(_) => {}
    }
}

const QUERIES: [Option<&str>; 6] = [
    None,
    Some("interests=music,rust"),
    Some("interests=music"),
    Some("rust"),
    Some("interests=%FF%20ART&interests=music"),
    Some("x=1&interests="),
];

const TEXTS: [&str; 8] = [
    r#"{"type":"message","text":"hi"}"#,
    r#"{"type":"typing","active":true}"#,
    r#"{"type":"next"}"#,
    r#"{"type":"interests","tags":["music"]}"#,
    r#"{"type":"interests","tags":["rust","Music "]}"#,
    "plain words",
    r#"{"type":"message","text":"   "}"#,
    r#"{"type":"bogus"}"#,
];

fuzz_target!(|data: &[u8]| {
    check_parse(data);
    check_parse(data.get(1..).unwrap_or_default());
    let [sel, script @ ..] = data else {
        return;
    };
    let wait = [0u64, 1, 100, 5000][usize::from(sel & 3)];
    let mut pairing = Pairing::new(ChatConfig {
        interest_wait_ms: wait,
        ..ChatConfig::default()
    });
    let mut model = Model {
        clients: BTreeMap::new(),
    };
    let mut now: u64 = 0;
    let mut out = Recorder::default();
    let mut i = 0;
    while let Some(&op) = script.get(i) {
        i += 1;
        let id = usize::from(op >> 4) % CLIENTS;
        now += u64::from(op & 0x03) * 7;
        out.0.clear();
        let (sender, gone) = match (op >> 2) & 3 {
            0 => {
                if model.clients.contains_key(&id) {
                    // The loop never connects a live id: take it as a disconnect.
                    pairing.on_disconnect(id, now, &mut out);
                    model.clients.remove(&id);
                    (None, Some(id))
                } else {
                    let q = QUERIES[usize::from(op) % QUERIES.len()];
                    model.clients.insert(id, St::Idle);
                    pairing.on_connect(id, q, now, &mut out);
                    (None, None)
                }
            }
            1 => {
                // Text: a canned command, or the next bytes of the script.
                let arg = script.get(i).copied().unwrap_or(0);
                i += 1;
                let owned;
                let text: &[u8] = if arg & 0x80 == 0 {
                    TEXTS[usize::from(arg) % TEXTS.len()].as_bytes()
                } else {
                    let n = usize::from(arg & 0x3f);
                    let end = (i + n).min(script.len());
                    owned = String::from_utf8_lossy(&script[i..end]).into_owned();
                    i = end;
                    owned.as_bytes()
                };
                match pairing.on_text(id, text, now, &mut out) {
                    Ok(()) => (Some(id), None),
                    Err(e) => {
                        assert_eq!(e, SessionError::Flooding);
                        assert!(out.0.is_empty());
                        // The loop closes the connection, then disconnects.
                        pairing.on_disconnect(id, now, &mut out);
                        model.clients.remove(&id);
                        (None, Some(id))
                    }
                }
            }
            2 => {
                let was = model.clients.remove(&id).is_some();
                pairing.on_disconnect(id, now, &mut out);
                if !was {
                    assert!(
                        out.0.is_empty(),
                        "disconnect of a stranger id sent messages"
                    );
                }
                (None, Some(id))
            }
            _ => {
                let step = script.get(i).copied().unwrap_or(0);
                i += 1;
                now += u64::from(step) * 40;
                if let Some(at) = pairing.next_deadline() {
                    assert!(at > now.saturating_sub(1 << 40));
                }
                pairing.on_tick(now, &mut out);
                (None, None)
            }
        };
        let sent = std::mem::take(&mut out.0);
        model.apply(&sent, sender, gone);
        model.check(&pairing);
        out.0 = sent;
    }
});
