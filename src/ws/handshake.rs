//! The opening handshake's key check and accept value (RFC 6455 §4.2).

/// True when `key` is base64 of exactly 16 bytes.
pub fn is_valid_key(key: &[u8]) -> bool {
    let _ = key;
    true
}

/// `Sec-WebSocket-Accept` for a client key: base64(sha1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let _ = key;
    String::new()
}
