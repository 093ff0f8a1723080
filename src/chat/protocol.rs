//! The chat's JSON messages (PROTOCOL.md "Chat session").
//!
//! Parsing ([`parse_client`]) borrows from the input where it can: a chat
//! text without escapes is relayed without being copied. Writing
//! ([`write_json`]) appends compact JSON to a caller-owned buffer.
//!
//! Choices where PROTOCOL.md is silent:
//! * A JSON object without `"type"`, or with a non-string `"type"`, is
//!   `bad_json`; a string `"type"` we do not know is `unknown_type`.
//! * A field the message type needs that is missing or of the wrong JSON
//!   type (`text` not a string, `active` not a boolean, `tags` missing) is
//!   `bad_json`. `tags` present but not an array of strings is
//!   `bad_interests`. Fields a type does not use are ignored, whatever their
//!   JSON type; unknown fields are ignored. Duplicate fields are `bad_json`.
//! * `too_long` is checked before `empty`: a text of 5000 spaces is
//!   `too_long`. "Blank" means empty or only Unicode white space.
//! * Interest tags are trimmed, lower-cased, deduplicated and sorted; the
//!   10-tag limit applies to the array as sent (before deduplication).
//! * `signal`: `pair` must be a string and `data` a JSON object, else
//!   `bad_json`. A `pair` that is not 16 lowercase hex digits cannot be any
//!   pair's, so the signal is dropped like a stale one. `data` over
//!   [`MAX_SIGNAL_DATA`] is `signal_too_large` whatever the pair.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::video::{self, Ice, PairId, MAX_SIGNAL_DATA};

/// Longest chat text, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Most interest tags a client may set.
pub const MAX_TAGS: usize = 10;
/// Longest interest tag, in characters (after trimming and lower-casing).
pub const MAX_TAG_CHARS: usize = 32;

/// A message to a client.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerMsg<'a> {
    /// The client is queued, looking for a stranger.
    Waiting {
        /// Connected chat clients, the receiver included.
        online: usize,
    },
    /// The client now talks to a stranger; both sides get this in the same turn.
    Paired {
        /// The interest tags the two share, sorted; may be empty.
        common: &'a [String],
        /// This pairing's id, the same for both sides.
        pair: PairId,
        /// Whether this side makes the WebRTC offer (exactly one does).
        initiator: bool,
        /// ICE servers, when the server has any configured.
        ice: Option<Ice<'a>>,
    },
    /// The stranger's video signalling, relayed as it came.
    Signal {
        /// The pair it belongs to (the receiver's current one).
        pair: PairId,
        /// The `data` JSON object, the bytes exactly as the sender sent them.
        data: &'a str,
    },
    /// The stranger said something.
    Message {
        /// The text as the stranger sent it (non-blank, within [`MAX_TEXT_BYTES`]).
        text: &'a str,
    },
    /// The stranger started or stopped typing.
    Typing {
        /// `true`: started; `false`: stopped.
        active: bool,
    },
    /// The stranger left; the client stays idle until it sends `next`.
    Left {
        /// Why the stranger went.
        reason: LeftReason,
    },
    /// The client's report was recorded (`waiting` follows).
    Reported,
    /// The client's address is banned; close 1008 follows.
    Banned {
        /// RFC 3339 UTC.
        until: &'a str,
        /// The ban's reason (may be empty).
        reason: &'a str,
    },
    /// The client's last message was refused; the session goes on.
    Error {
        /// What was wrong with it.
        code: ErrorCode,
    },
}

/// Why a partner left, as the `left` message's `reason` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeftReason {
    /// The partner sent `next` (it is queued again, the receiver is not).
    Next,
    /// The partner's connection ended, for whatever reason.
    Disconnected,
}

impl LeftReason {
    /// The wire value (`"next"`, `"disconnected"`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LeftReason::Next => "next",
            LeftReason::Disconnected => "disconnected",
        }
    }
}

/// Why a client message was refused: the `code` of an `error` message,
/// and a per-code counter in `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not a JSON object with a string `type`, or a field of the wrong type.
    BadJson,
    /// A `type` this server does not know.
    UnknownType,
    /// A chat text that is empty or only white space.
    Empty,
    /// A chat text over [`MAX_TEXT_BYTES`].
    TooLong,
    /// `message` or `typing` while not in a chat.
    NotPaired,
    /// Over the per-client message rate; the message was dropped.
    RateLimited,
    /// `tags` not an array of strings, over [`MAX_TAGS`], or a tag that is
    /// empty or over [`MAX_TAG_CHARS`] characters.
    BadInterests,
    /// A `signal` whose `data` is over [`MAX_SIGNAL_DATA`] bytes.
    SignalTooLarge,
    /// A `report` with an unknown reason or a note over 500 bytes.
    BadReport,
    /// A `message` matching the operator's word list (not delivered).
    BlockedWord,
}

impl ErrorCode {
    /// Number of error codes: one counter each in `ChatMetrics::errors`.
    pub(crate) const COUNT: usize = 10;
    /// Every code, in the order of [`ErrorCode::index`].
    #[cfg(test)]
    pub(crate) const ALL: [ErrorCode; ErrorCode::COUNT] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::Empty,
        ErrorCode::TooLong,
        ErrorCode::NotPaired,
        ErrorCode::RateLimited,
        ErrorCode::BadInterests,
        ErrorCode::SignalTooLarge,
        ErrorCode::BadReport,
        ErrorCode::BlockedWord,
    ];

    /// Position in declaration order (the index of the code's counter).
    pub(crate) fn index(self) -> usize {
        match self {
            ErrorCode::BadJson => 0,
            ErrorCode::UnknownType => 1,
            ErrorCode::Empty => 2,
            ErrorCode::TooLong => 3,
            ErrorCode::NotPaired => 4,
            ErrorCode::RateLimited => 5,
            ErrorCode::BadInterests => 6,
            ErrorCode::SignalTooLarge => 7,
            ErrorCode::BadReport => 8,
            ErrorCode::BlockedWord => 9,
        }
    }

    /// The wire code (`"bad_json"`, ...).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Empty => "empty",
            ErrorCode::TooLong => "too_long",
            ErrorCode::NotPaired => "not_paired",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BadInterests => "bad_interests",
            ErrorCode::SignalTooLarge => "signal_too_large",
            ErrorCode::BadReport => "bad_report",
            ErrorCode::BlockedWord => "blocked_word",
        }
    }

    /// The human text sent as `"message"`. Plain ASCII without characters
    /// that need JSON escaping.
    pub(crate) fn description(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "expected a JSON object with a string type field",
            ErrorCode::UnknownType => "unknown message type",
            ErrorCode::Empty => "message text is blank",
            ErrorCode::TooLong => "message text is over 4096 bytes",
            ErrorCode::NotPaired => "you are not talking to a stranger",
            ErrorCode::RateLimited => "too many messages, slow down",
            ErrorCode::BadInterests => "interests must be at most 10 tags of 1 to 32 characters",
            ErrorCode::SignalTooLarge => "signal data is over 16384 bytes",
            ErrorCode::BadReport => {
                "reason must be spam, nudity, harassment, underage or other; note at most 500 bytes"
            }
            ErrorCode::BlockedWord => "your message contains a blocked word and was not delivered",
        }
    }
}

/// A message from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientMsg<'a> {
    /// Say something; `text` is non-blank and at most [`MAX_TEXT_BYTES`].
    Message {
        /// Borrowed from the input unless it had JSON escapes.
        text: Cow<'a, str>,
    },
    /// Typing started or stopped; relayed to the partner as is.
    Typing {
        /// `true`: started; `false`: stopped.
        active: bool,
    },
    /// Leave the current partner, if any, and be queued again.
    Next,
    /// Normalised tags: trimmed, lower-cased, 1..=32 chars, deduplicated,
    /// sorted, at most [`MAX_TAGS`].
    Interests {
        /// The tags, ready to match on (they apply to the next search).
        tags: Vec<String>,
    },
    /// Leave the current (or recent) stranger and never meet that
    /// address again (for `--block-hours`).
    Block,
    /// `Block`, and file a report about that stranger.
    Report {
        /// One of `safety::reports::REASONS`.
        reason: &'static str,
        /// At most `safety::reports::MAX_NOTE` bytes (may be empty).
        note: String,
    },
    /// Video signalling for the partner.
    Signal {
        /// `None`: not a well-formed pair id, so not the current pair.
        pair: Option<PairId>,
        /// The `data` object as received, at most [`MAX_SIGNAL_DATA`] bytes.
        data: &'a str,
    },
}

/// Parses one text message from a client (PROTOCOL.md "Client to server").
///
/// A message whose first non-blank character is not `{` is a chat text
/// (the whole message, blanks included). Input that is not UTF-8 (the
/// caller guarantees it is) is `bad_json`.
pub fn parse_client(bytes: &[u8]) -> Result<ClientMsg<'_>, ErrorCode> {
    let Ok(s) = std::str::from_utf8(bytes) else {
        return Err(ErrorCode::BadJson);
    };
    if !s.trim_start().starts_with('{') {
        return check_text(Cow::Borrowed(s));
    }
    let raw: Raw<'_> = serde_json::from_str(s).map_err(|_| ErrorCode::BadJson)?;
    let Some(Loose::Str(kind)) = raw.kind else {
        return Err(ErrorCode::BadJson);
    };
    match &*kind {
        "message" => match raw.text {
            Some(Loose::Str(text)) => check_text(text),
            _ => Err(ErrorCode::BadJson),
        },
        "typing" => match raw.active {
            Some(Loose::Bool(active)) => Ok(ClientMsg::Typing { active }),
            _ => Err(ErrorCode::BadJson),
        },
        "next" => Ok(ClientMsg::Next),
        "block" => Ok(ClientMsg::Block),
        "report" => parse_report(raw.reason, raw.note),
        "interests" => match raw.tags {
            Some(value) => parse_tags(&value).map(|tags| ClientMsg::Interests { tags }),
            None => Err(ErrorCode::BadJson),
        },
        "signal" => match (raw.pair, raw.data) {
            (Some(Loose::Str(pair)), Some(data)) if data.get().starts_with('{') => {
                if data.get().len() > MAX_SIGNAL_DATA {
                    return Err(ErrorCode::SignalTooLarge);
                }
                Ok(ClientMsg::Signal {
                    pair: PairId::parse(&pair),
                    data: data.get(),
                })
            }
            _ => Err(ErrorCode::BadJson),
        },
        _ => Err(ErrorCode::UnknownType),
    }
}

/// `report`: `reason` must be one of the listed strings, `note` (when
/// present and not null) a string of at most 500 bytes; anything else is
/// `bad_report`.
fn parse_report<'a>(
    reason: Option<Loose<'_>>,
    note: Option<Loose<'_>>,
) -> Result<ClientMsg<'a>, ErrorCode> {
    use crate::safety::reports::{MAX_NOTE, REASONS};
    let Some(Loose::Str(reason)) = reason else {
        return Err(ErrorCode::BadReport);
    };
    let reason = REASONS
        .iter()
        .find(|r| **r == reason)
        .ok_or(ErrorCode::BadReport)?;
    let note = match note {
        None | Some(Loose::Null) => String::new(),
        Some(Loose::Str(n)) if n.len() <= MAX_NOTE => n.into_owned(),
        Some(_) => return Err(ErrorCode::BadReport),
    };
    Ok(ClientMsg::Report { reason, note })
}

fn check_text(text: Cow<'_, str>) -> Result<ClientMsg<'_>, ErrorCode> {
    if text.len() > MAX_TEXT_BYTES {
        Err(ErrorCode::TooLong)
    } else if text.trim().is_empty() {
        Err(ErrorCode::Empty)
    } else {
        Ok(ClientMsg::Message { text })
    }
}

/// Trims and lower-cases a tag; `None` if it is then empty or over
/// [`MAX_TAG_CHARS`] characters.
fn normalize_tag(tag: &str) -> Option<String> {
    let tag = tag.trim().to_lowercase();
    let n = tag.chars().count();
    (1..=MAX_TAG_CHARS).contains(&n).then_some(tag)
}

fn parse_tags(value: &serde_json::Value) -> Result<Vec<String>, ErrorCode> {
    let Some(items) = value.as_array() else {
        return Err(ErrorCode::BadInterests);
    };
    if items.len() > MAX_TAGS {
        return Err(ErrorCode::BadInterests);
    }
    let mut tags = Vec::with_capacity(items.len());
    for item in items {
        let tag = item
            .as_str()
            .and_then(normalize_tag)
            .ok_or(ErrorCode::BadInterests)?;
        tags.push(tag);
    }
    tags.sort_unstable();
    tags.dedup();
    Ok(tags)
}

/// Interests from the connect URL's query string (`interests=music,rust&x=1`,
/// without the `?`).
///
/// Every `interests` parameter counts (`interests=a&interests=b` is `a,b`).
/// Values are percent-decoded (`+` is a space; bytes that are not UTF-8
/// become U+FFFD), split on commas and normalised like `interests`
/// messages. Tags that are invalid (empty, over 32 characters) are dropped
/// silently rather than refusing the connection, and only the first 10
/// distinct valid tags are kept. For convenience a string with neither `=`
/// nor `&` is taken as the bare parameter value (`music,rust`).
/// The result is deduplicated and sorted.
pub(crate) fn interests_from_query(query: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    let mut add_value = |value: &str| {
        let decoded = percent_decode(value);
        for part in decoded.split(',') {
            if tags.len() >= MAX_TAGS {
                return;
            }
            if let Some(tag) = normalize_tag(part) {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
    };
    if !query.contains('=') && !query.contains('&') {
        add_value(query);
    } else {
        for pair in query.split('&') {
            if let Some(("interests", value)) = pair.split_once('=') {
                add_value(value);
            }
        }
    }
    tags.sort_unstable();
    tags
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex);
                let lo = bytes.get(i + 2).copied().and_then(hex);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fields of a client message we look at. Each is read leniently so
/// that a field a message type does not use cannot make it fail.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Loose<'a>>,
    #[serde(default, borrow)]
    text: Option<Loose<'a>>,
    #[serde(default, borrow)]
    active: Option<Loose<'a>>,
    #[serde(default)]
    tags: Option<serde_json::Value>,
    #[serde(default, borrow)]
    pair: Option<Loose<'a>>,
    /// Borrowed as the bytes of the input, never parsed into a tree.
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    reason: Option<Loose<'a>>,
    #[serde(default, borrow)]
    note: Option<Loose<'a>>,
}

/// Any JSON value, keeping only strings (borrowed when unescaped) and
/// booleans.
enum Loose<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    Null,
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
}

/// Appends `msg` as compact JSON (no frame header) to `out`.
///
/// Fixed parts are copied as byte strings; chat text and tags go through
/// `serde_json` for correct escaping. Nothing is allocated beyond growing
/// `out`. (Writing into a `Vec` cannot fail, so the `io::Result`s of the
/// writers are ignored.)
pub fn write_json(out: &mut Vec<u8>, msg: &ServerMsg<'_>) {
    match msg {
        ServerMsg::Waiting { online } => {
            out.extend_from_slice(b"{\"type\":\"waiting\",\"online\":");
            let _ = write!(out, "{online}");
            out.push(b'}');
        }
        ServerMsg::Paired {
            common,
            pair,
            initiator,
            ice,
        } => {
            out.extend_from_slice(b"{\"type\":\"paired\",\"common\":[");
            for (i, tag) in common.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, tag.as_str());
            }
            out.extend_from_slice(b"],");
            video::write_pair(out, *pair);
            out.extend_from_slice(if *initiator {
                b",\"initiator\":true"
            } else {
                b",\"initiator\":false"
            });
            if let Some(ice) = ice {
                video::write_ice(out, ice);
            }
            out.push(b'}');
        }
        ServerMsg::Signal { pair, data } => {
            out.extend_from_slice(b"{\"type\":\"signal\",");
            video::write_pair(out, *pair);
            out.extend_from_slice(b",\"data\":");
            out.extend_from_slice(data.as_bytes());
            out.push(b'}');
        }
        ServerMsg::Message { text } => {
            out.extend_from_slice(b"{\"type\":\"message\",\"text\":");
            let _ = serde_json::to_writer(&mut *out, text);
            out.push(b'}');
        }
        ServerMsg::Typing { active } => {
            out.extend_from_slice(if *active {
                b"{\"type\":\"typing\",\"active\":true}"
            } else {
                b"{\"type\":\"typing\",\"active\":false}"
            });
        }
        ServerMsg::Left { reason } => {
            out.extend_from_slice(b"{\"type\":\"left\",\"reason\":\"");
            out.extend_from_slice(reason.as_str().as_bytes());
            out.extend_from_slice(b"\"}");
        }
        ServerMsg::Reported => out.extend_from_slice(b"{\"type\":\"reported\"}"),
        ServerMsg::Banned { until, reason } => {
            out.extend_from_slice(b"{\"type\":\"banned\",\"until\":");
            let _ = serde_json::to_writer(&mut *out, until);
            out.extend_from_slice(b",\"reason\":");
            let _ = serde_json::to_writer(&mut *out, reason);
            out.push(b'}');
        }
        ServerMsg::Error { code } => {
            out.extend_from_slice(b"{\"type\":\"error\",\"code\":\"");
            out.extend_from_slice(code.as_str().as_bytes());
            out.extend_from_slice(b"\",\"message\":\"");
            out.extend_from_slice(code.description().as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
}

/// [`write_json`] into a new `String` (for tests and logging).
pub fn to_json_string(msg: &ServerMsg<'_>) -> String {
    let mut out = Vec::new();
    write_json(&mut out, msg);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parsed(s: &str) -> Result<ClientMsg<'_>, ErrorCode> {
        parse_client(s.as_bytes())
    }

    fn msg(text: &str) -> Result<ClientMsg<'_>, ErrorCode> {
        Ok(ClientMsg::Message {
            text: Cow::Borrowed(text),
        })
    }

    fn as_value(m: &ServerMsg<'_>) -> Value {
        serde_json::from_str(&to_json_string(m)).unwrap_or(Value::Null)
    }

    #[test]
    fn parses_each_client_type() {
        assert_eq!(parsed(r#"{"type":"message","text":"hi"}"#), msg("hi"));
        assert_eq!(
            parsed(r#" {"type":"typing","active":true} "#),
            Ok(ClientMsg::Typing { active: true })
        );
        assert_eq!(
            parsed(r#"{"type":"typing","active":false}"#),
            Ok(ClientMsg::Typing { active: false })
        );
        assert_eq!(parsed(r#"{"type":"next"}"#), Ok(ClientMsg::Next));
        assert_eq!(
            parsed(r#"{"type":"interests","tags":[" Rust ","MUSIC","rust"]}"#),
            Ok(ClientMsg::Interests {
                tags: vec!["music".into(), "rust".into()]
            })
        );
        assert_eq!(
            parsed(r#"{"type":"interests","tags":[]}"#),
            Ok(ClientMsg::Interests { tags: vec![] })
        );
    }

    #[test]
    fn unescaped_text_is_borrowed_escaped_text_decoded() {
        match parsed(r#"{"type":"message","text":"plain"}"#) {
            Ok(ClientMsg::Message {
                text: Cow::Borrowed(t),
            }) => assert_eq!(t, "plain"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parsed(r#"{"type":"message","text":"a\"b\nc\u00e9"}"#),
            Ok(ClientMsg::Message {
                text: Cow::Owned("a\"b\ncé".into())
            })
        );
    }

    #[test]
    fn plain_text_is_a_message() {
        assert_eq!(parsed("hello there"), msg("hello there"));
        assert_eq!(parsed("  hi {not json}  "), msg("  hi {not json}  "));
        assert_eq!(parsed("[1,2]"), msg("[1,2]"));
        assert_eq!(parsed("\"quoted\""), msg("\"quoted\""));
        assert_eq!(parsed(""), Err(ErrorCode::Empty));
        assert_eq!(parsed(" \n\t "), Err(ErrorCode::Empty));
        assert_eq!(parsed(&"x".repeat(4096)), msg(&"x".repeat(4096)));
        assert_eq!(parsed(&"x".repeat(4097)), Err(ErrorCode::TooLong));
    }

    #[test]
    fn error_codes() {
        use ErrorCode::*;
        let cases: &[(&str, ErrorCode)] = &[
            ("{", BadJson),
            ("{}", BadJson),
            (r#"{"type":1}"#, BadJson),
            (r#"{"text":"hi"}"#, BadJson),
            (r#"{"type":"message"}"#, BadJson),
            (r#"{"type":"message","text":5}"#, BadJson),
            (r#"{"type":"typing"}"#, BadJson),
            (r#"{"type":"typing","active":"yes"}"#, BadJson),
            (r#"{"type":"interests"}"#, BadJson),
            (r#"{"type":"next"} x"#, BadJson),
            (r#"{"type":"next","type":"next"}"#, BadJson),
            (r#"{"type":"dance"}"#, UnknownType),
            (r#"{"type":"Message","text":"hi"}"#, UnknownType),
            (r#"{"type":"message","text":""}"#, Empty),
            (r#"{"type":"message","text":"  \n "}"#, Empty),
            (r#"{"type":"interests","tags":"rust"}"#, BadInterests),
            (r#"{"type":"interests","tags":[1]}"#, BadInterests),
            (r#"{"type":"interests","tags":["ok",""]}"#, BadInterests),
            (r#"{"type":"interests","tags":["   "]}"#, BadInterests),
        ];
        for (input, code) in cases {
            assert_eq!(parsed(input), Err(*code), "{input}");
        }
        let long = format!(r#"{{"type":"message","text":"{}"}}"#, "é".repeat(2049));
        assert_eq!(parsed(&long), Err(TooLong));
        let fits = format!(r#"{{"type":"message","text":"{}"}}"#, "é".repeat(2048));
        assert!(parsed(&fits).is_ok());
        let eleven =
            json!({"type":"interests","tags":(0..11).map(|i| format!("t{i}")).collect::<Vec<_>>()});
        assert_eq!(parsed(&eleven.to_string()), Err(BadInterests));
        let ten =
            json!({"type":"interests","tags":(0..10).map(|i| format!("t{i}")).collect::<Vec<_>>()});
        assert!(parsed(&ten.to_string()).is_ok());
        let tag33 = json!({"type":"interests","tags":["a".repeat(33)]});
        assert_eq!(parsed(&tag33.to_string()), Err(BadInterests));
        let tag32 = json!({"type":"interests","tags":[format!("  {}  ", "ü".repeat(32))]});
        assert!(parsed(&tag32.to_string()).is_ok());
        assert_eq!(parse_client(&[0xff, 0xfe]), Err(BadJson));
    }

    #[test]
    fn unused_and_unknown_fields_are_ignored() {
        assert_eq!(
            parsed(r#"{"text":{"a":[1,2]},"type":"next","x":null,"active":3}"#),
            Ok(ClientMsg::Next)
        );
        assert_eq!(
            parsed(r#"{"type":"message","text":"hi","tags":7,"active":[]}"#),
            msg("hi")
        );
    }

    #[test]
    fn query_interests() {
        assert_eq!(
            interests_from_query("interests=music,rust&x=1"),
            vec!["music", "rust"]
        );
        assert_eq!(
            interests_from_query("x=1&interests=Rock%20Music,%E2%9C%93,,rust+lang"),
            vec!["rock music", "rust lang", "✓"]
        );
        assert_eq!(interests_from_query("music,rust"), vec!["music", "rust"]);
        assert_eq!(
            interests_from_query("interests=a&interests=b,a"),
            vec!["a", "b"]
        );
        assert!(interests_from_query("").is_empty());
        assert!(interests_from_query("x=1").is_empty());
        assert!(interests_from_query("interests=").is_empty());
        let long = format!("interests={},ok,%zz", "a".repeat(33));
        assert_eq!(interests_from_query(&long), vec!["%zz", "ok"]);
        let many: Vec<String> = (0..15).map(|i| format!("t{i:02}")).collect();
        let q = format!("interests={}", many.join(","));
        assert_eq!(interests_from_query(&q), many[..10].to_vec());
        assert_eq!(interests_from_query("interests=%"), vec!["%"]);
        assert_eq!(interests_from_query("interests=%ff"), vec!["\u{fffd}"]);
    }

    #[test]
    fn writes_exact_shapes() {
        let common = vec!["music".to_string(), "rust".to_string()];
        let cases: Vec<(ServerMsg<'_>, &str)> = vec![
            (
                ServerMsg::Waiting { online: 42 },
                r#"{"type":"waiting","online":42}"#,
            ),
            (
                ServerMsg::Paired {
                    common: &common,
                    pair: PairId(0x0123_4567_89ab_cdef),
                    initiator: true,
                    ice: None,
                },
                r#"{"type":"paired","common":["music","rust"],"pair":"0123456789abcdef","initiator":true}"#,
            ),
            (
                ServerMsg::Paired {
                    common: &[],
                    pair: PairId(1),
                    initiator: false,
                    ice: None,
                },
                r#"{"type":"paired","common":[],"pair":"0000000000000001","initiator":false}"#,
            ),
            (
                ServerMsg::Signal {
                    pair: PairId(u64::MAX),
                    data: r#"{ "sdp" : "v=0\r\n" }"#,
                },
                r#"{"type":"signal","pair":"ffffffffffffffff","data":{ "sdp" : "v=0\r\n" }}"#,
            ),
            (
                ServerMsg::Message { text: "hi" },
                r#"{"type":"message","text":"hi"}"#,
            ),
            (
                ServerMsg::Typing { active: true },
                r#"{"type":"typing","active":true}"#,
            ),
            (
                ServerMsg::Typing { active: false },
                r#"{"type":"typing","active":false}"#,
            ),
            (
                ServerMsg::Left {
                    reason: LeftReason::Next,
                },
                r#"{"type":"left","reason":"next"}"#,
            ),
            (
                ServerMsg::Left {
                    reason: LeftReason::Disconnected,
                },
                r#"{"type":"left","reason":"disconnected"}"#,
            ),
        ];
        for (m, want) in cases {
            assert_eq!(to_json_string(&m), want);
        }
        for code in ErrorCode::ALL {
            let v = as_value(&ServerMsg::Error { code });
            assert_eq!(v["type"], "error");
            assert_eq!(v["code"], code.as_str());
            assert_eq!(v["message"], code.description());
            assert_eq!(v.as_object().map(|o| o.len()), Some(3));
            assert_eq!(ErrorCode::ALL[code.index()], code);
        }
    }

    #[test]
    fn escapes_text() {
        let text = "say \"hi\"\nback\\slash\ttab \u{1} é 日本 😀 </script>";
        let out = to_json_string(&ServerMsg::Message { text });
        assert!(!out.contains('\n'));
        assert_eq!(
            as_value(&ServerMsg::Message { text }),
            json!({"type":"message","text":text})
        );
        let common = vec!["a\"b".to_string(), "ü".to_string()];
        assert_eq!(
            as_value(&ServerMsg::Paired {
                common: &common,
                pair: PairId(2),
                initiator: false,
                ice: None
            }),
            json!({"type":"paired","common":["a\"b","ü"],"pair":"0000000000000002","initiator":false})
        );
    }

    #[test]
    fn write_json_appends() {
        let mut out = b"xx".to_vec();
        write_json(&mut out, &ServerMsg::Typing { active: true });
        write_json(&mut out, &ServerMsg::Waiting { online: 0 });
        assert_eq!(
            out,
            br#"xx{"type":"typing","active":true}{"type":"waiting","online":0}"#.to_vec()
        );
    }
}
