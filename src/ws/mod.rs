//! RFC 6455 WebSocket, sans-IO: byte slices in, events and bytes out.
//!
//! Nothing here touches a socket. The event loop hands [`decode::Decoder`]
//! the bytes it read and appends what [`encode`] produces to a connection's
//! output buffer.

pub mod close;
pub mod decode;
pub mod encode;
pub mod error;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use decode::{Decoder, Message, Role};
pub use error::ProtocolError;

/// Frame opcodes (RFC 6455 §5.2). Any other value is a protocol error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    pub fn from_u8(b: u8) -> Option<OpCode> {
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

    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A close status code (RFC 6455 §7.4), as it goes on the wire.
///
/// The constants are the codes the server sends itself. A peer's code is
/// any that [`close::is_valid_code`] accepts (the decoder checks it), and
/// the encoder writes whatever it is given, so the load tool and tests can
/// send any code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(u16);

impl CloseCode {
    /// The purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// The server is shutting down, or the peer has been silent too long.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// The peer broke the framing rules.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// A message of a type the endpoint does not take (binary in a chat).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// Text that is not UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// A rule of the service broken: flooding, reading too slowly.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// A message over `--max-message-size`.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// The server hit a condition it should never hit.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// Any code, unchecked.
    pub const fn new(code: u16) -> CloseCode {
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
