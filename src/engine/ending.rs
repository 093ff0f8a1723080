//! Why the server ends a WebSocket session, each reason with the close code
//! and the close frame text it sends: one place for them, no bare numbers.

use crate::chat::SessionError;
use crate::ws::{CloseCode, ProtocolError};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// The frames broke RFC 6455 (failing).
    Protocol(ProtocolError),
    /// The chat client broke a rule that ends its session (failing).
    Chat(SessionError),
    /// A binary message on `/` (failing).
    BinaryInChat,
    /// Unsent output over the cap (failing).
    SlowReader,
    /// Silence for the whole idle timeout (a close handshake).
    IdleTimeout,
    /// SIGINT/SIGTERM (a close handshake).
    ShuttingDown,
    /// The client's address is banned (failing, after `banned`).
    Banned,
}

impl Ending {
    pub(super) fn close_code(self) -> CloseCode {
        match self {
            Ending::Protocol(e) => e.close_code(),
            Ending::Chat(e) => e.close_code(),
            Ending::BinaryInChat => CloseCode::UNSUPPORTED_DATA,
            Ending::SlowReader | Ending::Banned => CloseCode::POLICY_VIOLATION,
            Ending::IdleTimeout | Ending::ShuttingDown => CloseCode::GOING_AWAY,
        }
    }

    pub(super) fn reason(self) -> &'static str {
        match self {
            Ending::Protocol(e) => e.reason(),
            Ending::Chat(e) => e.reason(),
            Ending::BinaryInChat => "binary messages are not chat",
            Ending::SlowReader => "too slow to read",
            Ending::IdleTimeout => "idle timeout",
            Ending::ShuttingDown => "server shutting down",
            Ending::Banned => "banned",
        }
    }

    /// Counted as `chat_protocol_errors_total`: the client's frames were
    /// at fault (1002, 1003, 1007, 1009).
    pub(super) fn is_protocol_fault(self) -> bool {
        [
            CloseCode::PROTOCOL_ERROR,
            CloseCode::UNSUPPORTED_DATA,
            CloseCode::INVALID_PAYLOAD,
            CloseCode::MESSAGE_TOO_BIG,
        ]
        .contains(&self.close_code())
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.close_code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_reasons_as_sent_on_the_wire() {
        let cases = [
            (Ending::BinaryInChat, 1003, true),
            (Ending::SlowReader, 1008, false),
            (Ending::IdleTimeout, 1001, false),
            (Ending::ShuttingDown, 1001, false),
            (Ending::Chat(SessionError::Flooding), 1008, false),
            (Ending::Protocol(ProtocolError::TooBig), 1009, true),
            (Ending::Protocol(ProtocolError::BadUtf8), 1007, true),
            (Ending::Protocol(ProtocolError::Internal), 1011, false),
        ];
        for (ending, code, fault) in cases {
            assert_eq!(ending.close_code().as_u16(), code, "{ending:?}");
            assert_eq!(ending.is_protocol_fault(), fault, "{ending:?}");
        }
        assert_eq!(Ending::IdleTimeout.to_string(), "idle timeout (1001)");
    }
}
