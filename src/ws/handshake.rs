//! The opening handshake's key check and accept value (RFC 6455 §4.2).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID every accept value is derived with (RFC 6455 §1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// True when `key` is base64 of exactly 16 bytes.
///
/// The key is expected already trimmed of header whitespace.
pub(crate) fn is_valid_key(key: &[u8]) -> bool {
    // 16 bytes are always 24 base64 characters ending in "==".
    if key.len() != 24 {
        return false;
    }
    let mut out = [0u8; 18];
    matches!(STANDARD.decode_slice(key, &mut out), Ok(16))
}

/// `Sec-WebSocket-Accept` for a client key: base64(sha1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn invalid_keys() {
        assert!(!is_valid_key(b""));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ")); // unpadded
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=")); // 23 chars
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ==="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZ!=="));
        assert!(!is_valid_key(b" dGhlIHNhbXBsZSBub25jZQ=")); // whitespace
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQAA")); // 18 bytes
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZR==")); // non-canonical trailing bits
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAA")); // 21 bytes
        assert!(is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAA=="));
    }
}
