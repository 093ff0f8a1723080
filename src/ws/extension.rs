//! permessage-deflate negotiation (RFC 7692 §5, §7.1): which offer in a
//! client's `Sec-WebSocket-Extensions` we accept, and the answer's line.
//!
//! What we accept, and why:
//! - We always answer `server_no_context_takeover` and
//!   `client_no_context_takeover`, offered or not (§7.1.1.1 and §7.1.1.2
//!   let the server add both, and every client must honour them): no
//!   sliding window survives a message, so a loop needs one compressor and
//!   one decompressor for all its connections, and an idle connection
//!   costs nothing for compression.
//! - `server_max_window_bits=N` binds us to compress with a window of at
//!   most N bits: we answer with the same N and compress with a window of
//!   N bits (N = 8, which zlib cannot deflate with, is answered and then
//!   never compressed to: sending uncompressed is always allowed).
//! - `client_max_window_bits` (with or without a value) only tells us the
//!   client can be limited: our inflater takes any window up to 15 bits,
//!   so we do not limit it and do not answer it (§7.1.2.2).
//! - An offer with an unknown, duplicate or invalid parameter is declined
//!   and the next one considered (§5); none acceptable → no extension, the
//!   handshake goes on uncompressed.

/// What was agreed for one connection: the window (in bits, 8..=15) our
/// compressed messages may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// `server_max_window_bits`: 15 unless the client asked for less.
    pub server_window_bits: u8,
    /// The offer named `server_max_window_bits`: accepting it means
    /// answering it (§7.1.2.1), even with 15.
    pub answer_window_bits: bool,
}

/// The largest window (bits), and the one we use when the client sets none.
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest window a client may ask for (§7.1.2.1).
pub const MIN_WINDOW_BITS: u8 = 8;

/// The first acceptable permessage-deflate offer in a header value (a
/// comma-separated list of extensions, each `name; param[=value]; ...`).
pub fn negotiate(header: &[u8]) -> Option<Agreement> {
    header.split(|&b| b == b',').find_map(accept_offer)
}

/// One offer: Some if it is permessage-deflate with valid parameters.
fn accept_offer(offer: &[u8]) -> Option<Agreement> {
    let mut parts = offer.split(|&b| b == b';').map(<[u8]>::trim_ascii);
    if !parts.next()?.eq_ignore_ascii_case(b"permessage-deflate") {
        return None;
    }
    let mut server_window_bits = None;
    let mut client_window_bits = None;
    let mut server_no_takeover = false;
    let mut client_no_takeover = false;
    for param in parts {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => (
                param.get(..eq)?.trim_ascii(),
                Some(unquote(param.get(eq + 1..)?.trim_ascii())?),
            ),
            None => (param, None),
        };
        let flag = |seen: &mut bool| -> Option<()> {
            // No value, and only once.
            if value.is_some() || std::mem::replace(seen, true) {
                return None;
            }
            Some(())
        };
        if name.eq_ignore_ascii_case(b"server_no_context_takeover") {
            flag(&mut server_no_takeover)?;
        } else if name.eq_ignore_ascii_case(b"client_no_context_takeover") {
            flag(&mut client_no_takeover)?;
        } else if name.eq_ignore_ascii_case(b"server_max_window_bits") {
            // Needs a value in an offer (§7.1.2.1).
            if server_window_bits.is_some() {
                return None;
            }
            server_window_bits = Some(window_bits(value?)?);
        } else if name.eq_ignore_ascii_case(b"client_max_window_bits") {
            // A value is optional in an offer (§7.1.2.2).
            if client_window_bits.is_some() {
                return None;
            }
            client_window_bits = Some(match value {
                Some(v) => window_bits(v)?,
                None => MAX_WINDOW_BITS,
            });
        } else {
            return None;
        }
    }
    Some(Agreement {
        server_window_bits: server_window_bits.unwrap_or(MAX_WINDOW_BITS),
        answer_window_bits: server_window_bits.is_some(),
    })
}

/// A value may be a token or a quoted string (§7.1).
fn unquote(v: &[u8]) -> Option<&[u8]> {
    match v {
        [b'"', inner @ .., b'"'] => Some(inner),
        [b'"', ..] => None,
        _ => Some(v),
    }
}

/// 1*DIGIT in 8..=15, no leading zero (§7.1.2.1).
fn window_bits(v: &[u8]) -> Option<u8> {
    let bits = match v {
        [d] if d.is_ascii_digit() => d - b'0',
        [b'1', d] if d.is_ascii_digit() => 10 + (d - b'0'),
        _ => return None,
    };
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
        .contains(&bits)
        .then_some(bits)
}

/// The `Sec-WebSocket-Extensions` response line for `agreed`, CRLF included.
pub fn write_response(out: &mut Vec<u8>, agreed: Agreement) {
    out.extend_from_slice(
        b"Sec-WebSocket-Extensions: permessage-deflate; \
          server_no_context_takeover; client_no_context_takeover",
    );
    let bits = agreed.server_window_bits;
    if agreed.answer_window_bits {
        out.extend_from_slice(b"; server_max_window_bits=");
        if bits >= 10 {
            out.push(b'1');
        }
        out.push(b'0' + bits % 10);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(h: &str) -> Option<u8> {
        negotiate(h.as_bytes()).map(|a| a.server_window_bits)
    }

    fn response(h: &str) -> String {
        let mut out = Vec::new();
        write_response(&mut out, negotiate(h.as_bytes()).unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_offers() {
        assert_eq!(bits("permessage-deflate"), Some(15));
        assert_eq!(bits("  PerMessage-Deflate  "), Some(15));
        // What browsers send.
        assert_eq!(bits("permessage-deflate; client_max_window_bits"), Some(15));
        assert_eq!(
            bits("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            Some(15)
        );
        assert_eq!(bits("x-webkit-deflate-frame"), None);
        assert_eq!(bits(""), None);
    }

    #[test]
    fn window_bits_are_honoured() {
        assert_eq!(
            bits("permessage-deflate; server_max_window_bits=9"),
            Some(9)
        );
        assert_eq!(
            bits("permessage-deflate; server_max_window_bits=\"10\""),
            Some(10)
        );
        assert_eq!(
            bits("permessage-deflate; server_max_window_bits=8"),
            Some(8)
        );
        assert_eq!(
            bits("permessage-deflate; client_max_window_bits=8"),
            Some(15)
        );
        assert_eq!(
            response("permessage-deflate; server_max_window_bits=9"),
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover; server_max_window_bits=9\r\n"
        );
        assert_eq!(
            response("permessage-deflate; server_max_window_bits=12"),
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover; server_max_window_bits=12\r\n"
        );
        assert_eq!(
            response("permessage-deflate; server_max_window_bits=15"),
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover; server_max_window_bits=15\r\n"
        );
        assert_eq!(
            response("permessage-deflate"),
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover\r\n"
        );
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; server_max_window_bits=\"9",
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
            "permessage-deflate; client_max_window_bits=x",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; unknown",
            "permessage-deflate; =",
        ] {
            assert_eq!(bits(bad), None, "{bad}");
            assert_eq!(
                bits(&format!(
                    "{bad}, permessage-deflate; server_max_window_bits=10"
                )),
                Some(10),
                "{bad}"
            );
        }
        // The first acceptable offer wins.
        assert_eq!(
            bits("permessage-deflate; server_max_window_bits=9, permessage-deflate"),
            Some(9)
        );
    }
}
