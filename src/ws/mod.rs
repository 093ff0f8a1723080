//! RFC 6455 WebSocket, sans-IO: byte slices in, events and bytes out.
//!
//! Nothing here touches a socket. The event loop hands [`Decoder`] the
//! bytes it read and appends what [`encode`] produces to a connection's
//! output buffer.

mod close;
mod decode;
pub mod deflate;
pub mod encode;
mod error;
pub mod extension;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use decode::{Decoder, Message, Role};
pub use error::ProtocolError;

/// Frame opcodes (RFC 6455 §5.2). Any other value is a protocol error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// A later fragment of the message in progress.
    Continuation = 0x0,
    /// The first (or only) frame of a UTF-8 text message.
    Text = 0x1,
    /// The first (or only) frame of a binary message.
    Binary = 0x2,
    /// Starts or answers the closing handshake.
    Close = 0x8,
    /// Asks the peer for a pong with the same payload.
    Ping = 0x9,
    /// Answers a ping (or, unsolicited, says the sender is alive).
    Pong = 0xA,
}

impl OpCode {
    /// The opcode for a header's low four bits, if RFC 6455 defines it.
    pub(crate) fn from_u8(b: u8) -> Option<OpCode> {
        Some(match b {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, Ping and Pong: at most 125 payload bytes, never fragmented.
    pub(crate) fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A close status code (RFC 6455 §7.4), as it goes on the wire.
///
/// Outside the crate a code is only read ([`CloseCode::as_u16`]) or sent as
/// [`CloseCode::NORMAL`]; the codes the server fails connections with are
/// crate-internal constants. A peer's code is any that RFC 6455 §7.4 lets
/// a peer send (the decoder checks it); the encoder writes whatever it is
/// given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(u16);

impl CloseCode {
    /// The purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// The server is shutting down, or the peer has been silent too long.
    pub(crate) const GOING_AWAY: CloseCode = CloseCode(1001);
    /// The peer broke the framing rules.
    pub(crate) const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// A message of a type the endpoint does not take (binary in a chat).
    pub(crate) const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// Text that is not UTF-8.
    pub(crate) const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// A rule of the service broken: flooding, reading too slowly.
    pub(crate) const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// A message over `--max-message-size`.
    pub(crate) const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// The server hit a condition it should never hit.
    pub(crate) const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// Any code, unchecked.
    pub(crate) const fn new(code: u16) -> CloseCode {
        CloseCode(code)
    }

    /// The number on the wire.
    pub const fn as_u16(self) -> u16 {
        self.0
    }
}

impl std::fmt::Display for CloseCode {
    /// The bare number, e.g. `1002`, as logs have always shown it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
