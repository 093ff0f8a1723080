//! The chat's JSON messages (PROTOCOL.md "Chat session").

/// A message to a client.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerMsg<'a> {
    Waiting { online: usize },
    Paired { common: &'a [String] },
    Message { text: &'a str },
    Typing { active: bool },
    Left { reason: LeftReason },
    Error { code: ErrorCode },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeftReason {
    Next,
    Disconnected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadJson,
    UnknownType,
    Empty,
    TooLong,
    NotPaired,
    RateLimited,
    BadInterests,
}

/// Appends `msg` as compact JSON (no frame header) to `out`.
pub fn write_json(out: &mut Vec<u8>, msg: &ServerMsg<'_>) {
    let _ = (out, msg);
}
