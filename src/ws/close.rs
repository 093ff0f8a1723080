//! Close frame payload rules (RFC 6455 §5.5.1, §7.4).

use super::error::ProtocolError;
use super::CloseCode;

/// True for close codes a peer may send (§7.4.1, §7.4.2).
///
/// Valid: 1000–1003, 1007–1014 (1012–1014 are IANA-registered and accepted
/// by Autobahn), 3000–4999. Invalid: below 1000, 1004–1006 (reserved or
/// never sent on the wire), 1015, 1016–2999, 5000 and above.
pub(crate) fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses an (unmasked) close frame payload into its code and reason.
///
/// * empty → `(None, "")`;
/// * 1 byte → [`ProtocolError::ShortClosePayload`] (a code needs two);
/// * a code that [`is_valid_code`] rejects →
///   [`ProtocolError::InvalidCloseCode`];
/// * a reason that is not UTF-8 → [`ProtocolError::CloseReasonNotUtf8`].
pub(crate) fn parse_close_payload(
    payload: &[u8],
) -> Result<(Option<CloseCode>, &str), ProtocolError> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(ProtocolError::ShortClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_code(code) {
                return Err(ProtocolError::InvalidCloseCode);
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::CloseReasonNotUtf8)?;
            Ok((Some(CloseCode::new(code)), reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ] {
            assert!(is_valid_code(c), "{c}");
        }
        for c in [3000, 3999, 4000, 4999] {
            assert!(is_valid_code(c), "{c}");
        }
        for c in [
            0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_code(c), "{c}");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_close_payload(b""), Ok((None, "")));
        assert_eq!(
            parse_close_payload(b"\x03"),
            Err(ProtocolError::ShortClosePayload)
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8"),
            Ok((Some(CloseCode::NORMAL), ""))
        );
        assert_eq!(
            parse_close_payload(&[b"\x0f\xa0", "bye é".as_bytes()].concat()),
            Ok((Some(CloseCode::new(4000)), "bye é"))
        );
        // 1005 is never sent on the wire; 0 is no code at all.
        for payload in [b"\x03\xed", b"\x00\x00"] {
            assert_eq!(
                parse_close_payload(payload),
                Err(ProtocolError::InvalidCloseCode)
            );
        }
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xce\xba\xed\xa0\x80"),
            Err(ProtocolError::CloseReasonNotUtf8)
        );
    }
}
