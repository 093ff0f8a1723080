//! Frame encoding. Server frames are unmasked; client frames (the load
//! tool) are masked.

use super::OpCode;

/// Appends one unmasked, final frame.
pub fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let _ = (out, opcode, payload);
}

/// Appends one masked, final frame (client role).
pub fn write_masked_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    let _ = (out, opcode, payload, mask);
}

/// Appends an unmasked close frame with `code` and `reason` (reason is cut
/// to fit the 125-byte control frame limit on a char boundary).
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let _ = (out, code, reason);
}
