//! What a peer did wrong, one variant per fault, and what that costs it:
//! the close code and the close frame reason the connection is failed with.
//!
//! Both the frame decoder and the close payload parser report through this
//! type, so neither needs the other for its errors.

use super::CloseCode;
use std::fmt;

/// Why a WebSocket connection must be failed (RFC 6455 §7.1.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// RSV2 or RSV3 set, or RSV1 where permessage-deflate does not allow
    /// it (not negotiated, a continuation or a control frame).
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    UnknownOpcode,
    /// A control frame without FIN (§5.5).
    FragmentedControl,
    /// A control frame with over 125 payload bytes (§5.5).
    ControlTooLong,
    /// A continuation frame while no message is in progress.
    OrphanContinuation,
    /// A new text or binary frame inside a fragmented message.
    NestedMessage,
    /// A client frame without a mask (§5.1).
    Unmasked,
    /// A server frame with a mask (§5.1).
    Masked,
    /// A 64-bit length with its most significant bit set (§5.2).
    LengthTopBit,
    /// A message over the size limit, known from a frame header.
    TooBig,
    /// A text message that is not UTF-8 (§8.1).
    BadUtf8,
    /// A compressed message that inflates past the size limit, found
    /// while inflating (RFC 7692 §8.1: a decompression bomb).
    InflatedTooBig,
    /// A compressed message that is not a valid deflate stream.
    BadDeflate,
    /// A close payload of one byte: a code needs two (§5.5.1).
    ShortClosePayload,
    /// A close code a peer may not send (§7.4).
    InvalidCloseCode,
    /// A close reason that is not UTF-8 (§5.5.1).
    CloseReasonNotUtf8,
    /// An internal invariant broke. Cannot happen; the connection is
    /// failed instead of the process panicking.
    Internal,
}

impl ProtocolError {
    /// The code the close frame carries.
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtocolError::TooBig | ProtocolError::InflatedTooBig => CloseCode::MESSAGE_TOO_BIG,
            ProtocolError::BadUtf8
            | ProtocolError::CloseReasonNotUtf8
            | ProtocolError::BadDeflate => CloseCode::INVALID_PAYLOAD,
            ProtocolError::Internal => CloseCode::INTERNAL_ERROR,
            ProtocolError::ReservedBits
            | ProtocolError::UnknownOpcode
            | ProtocolError::FragmentedControl
            | ProtocolError::ControlTooLong
            | ProtocolError::OrphanContinuation
            | ProtocolError::NestedMessage
            | ProtocolError::Unmasked
            | ProtocolError::Masked
            | ProtocolError::LengthTopBit
            | ProtocolError::ShortClosePayload
            | ProtocolError::InvalidCloseCode => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// The close frame's reason text (also what the log says). These
    /// strings are on the wire: clients and tests may match them.
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::UnknownOpcode => "unknown opcode",
            ProtocolError::FragmentedControl => "fragmented control frame",
            ProtocolError::ControlTooLong => "control frame over 125 bytes",
            ProtocolError::OrphanContinuation => "continuation frame without a message",
            ProtocolError::NestedMessage => "new message inside a fragmented message",
            ProtocolError::Unmasked => "unmasked client frame",
            ProtocolError::Masked => "masked server frame",
            ProtocolError::LengthTopBit => "frame length top bit set",
            ProtocolError::TooBig => "message too big",
            ProtocolError::BadUtf8 => "invalid UTF-8 in text message",
            ProtocolError::InflatedTooBig => "message too big once inflated",
            ProtocolError::BadDeflate => "invalid compressed data",
            ProtocolError::ShortClosePayload => "close payload of 1 byte",
            ProtocolError::InvalidCloseCode => "invalid close code",
            ProtocolError::CloseReasonNotUtf8 => "close reason is not UTF-8",
            ProtocolError::Internal => "internal decoder error",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_reasons_are_what_goes_on_the_wire() {
        use ProtocolError::*;
        let table = [
            (ReservedBits, 1002, "reserved bits set"),
            (UnknownOpcode, 1002, "unknown opcode"),
            (FragmentedControl, 1002, "fragmented control frame"),
            (ControlTooLong, 1002, "control frame over 125 bytes"),
            (
                OrphanContinuation,
                1002,
                "continuation frame without a message",
            ),
            (
                NestedMessage,
                1002,
                "new message inside a fragmented message",
            ),
            (Unmasked, 1002, "unmasked client frame"),
            (Masked, 1002, "masked server frame"),
            (LengthTopBit, 1002, "frame length top bit set"),
            (TooBig, 1009, "message too big"),
            (BadUtf8, 1007, "invalid UTF-8 in text message"),
            (InflatedTooBig, 1009, "message too big once inflated"),
            (BadDeflate, 1007, "invalid compressed data"),
            (ShortClosePayload, 1002, "close payload of 1 byte"),
            (InvalidCloseCode, 1002, "invalid close code"),
            (CloseReasonNotUtf8, 1007, "close reason is not UTF-8"),
            (Internal, 1011, "internal decoder error"),
        ];
        for (e, code, reason) in table {
            assert_eq!(e.close_code().as_u16(), code, "{e:?}");
            assert_eq!(e.reason(), reason, "{e:?}");
            assert_eq!(e.to_string(), reason, "{e:?}");
            // A reason fits a close frame whole.
            assert!(reason.len() <= crate::ws::encode::MAX_CLOSE_REASON);
        }
        let e: Box<dyn std::error::Error> = Box::new(TooBig);
        assert_eq!(e.to_string(), "message too big");
    }
}
