//! Incremental frame decoder with message reassembly and fail-fast UTF-8.
//!
//! CONTRACT (the event loop relies on it):
//!
//! ```text
//! let mut pos = 0;
//! loop {
//!     match decoder.decode(&mut input[pos..], &mut message) {
//!         Ok((n, Some(msg))) => { pos += n; handle(msg) }   // one event
//!         Ok((n, None)) => { pos += n; break }             // need more bytes
//!         Err(e) => { fail(e.code, e.reason); break }      // close with e.code
//!     }
//! }
//! // input[pos..] (an incomplete frame header, or an incomplete control
//! // frame: never more than 14 + 125 bytes) is kept by the caller and
//! // presented again, followed by the next bytes read.
//! ```
//!
//! * `input` is mutable so payloads can be unmasked in place.
//! * A complete unfragmented data frame that lies whole in `input` is
//!   returned as a slice of `input` (zero copy). Data frame payload that
//!   does not lie whole in `input` (a frame split across reads, or a
//!   fragmented message) is unmasked, UTF-8 checked (text) and appended to
//!   `message` as it arrives; the finished message is returned as a slice
//!   of `message`. The caller never touches `message` itself except to give
//!   the same Vec back on the next call; the decoder clears it when the
//!   message has been delivered (on the next call).
//! * Text is validated as bytes arrive, across frames and reads: invalid
//!   UTF-8 fails with 1007 as soon as the bad byte is seen, before the frame
//!   or message is complete.
//! * Limits: a message (after reassembly) over `max_message_size` fails with
//!   1009 as soon as a frame header announces it, without allocating.
//!   Control frames over 125 bytes or fragmented → 1002.
//! * Role::Server requires masked frames (unmasked → 1002); Role::Client
//!   requires unmasked frames (masked → 1002).
//! * After an error or a Close message the decoder must not be fed again.

/// Which side of the connection we are; decides the masking rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Frames come from clients and must be masked.
    Server,
    /// Frames come from a server and must not be masked.
    Client,
}

/// One decoded event. Text payloads are already valid UTF-8.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A valid close frame: code (None when the payload was empty) and reason.
    Close(Option<u16>, &'a str),
}

/// Why the connection must be failed: the close code to send and a short
/// reason for the close frame and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: u16,
    pub reason: &'static str,
}

/// Per-connection decoder state. Kept small: it lives in every connection.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message_size: usize,
}

impl Decoder {
    pub fn new(role: Role, max_message_size: usize) -> Decoder {
        Decoder {
            role,
            max_message_size,
        }
    }

    /// See the module documentation for the contract.
    pub fn decode<'a>(
        &mut self,
        input: &'a mut [u8],
        message: &'a mut Vec<u8>,
    ) -> Result<(usize, Option<Message<'a>>), ProtocolError> {
        let _ = (input, message, self.role, self.max_message_size);
        Err(ProtocolError {
            code: super::status::PROTOCOL_ERROR,
            reason: "unimplemented",
        })
    }

    /// True while a fragmented or split message is being reassembled (the
    /// caller may recycle an empty `message` buffer only when this is false).
    pub fn in_message(&self) -> bool {
        false
    }
}
