//! Frame encoding. Server frames are unmasked; client frames (the load
//! tool) are masked.

use super::mask::apply_mask;
use super::{CloseCode, OpCode};

/// Longest frame header: 2 + 8 (64-bit length) + 4 (mask).
pub(crate) const MAX_HEADER_LEN: usize = 14;

/// Longest close reason that fits a control frame (125 - 2 code bytes).
pub(crate) const MAX_CLOSE_REASON: usize = 123;

/// Builds a frame header: returns the buffer and how many of its bytes are
/// the header (2..=14). Uses the shortest length encoding (7, 16 or 64 bits).
pub(crate) fn frame_header(
    opcode: OpCode,
    fin: bool,
    len: usize,
    mask: Option<[u8; 4]>,
) -> ([u8; MAX_HEADER_LEN], usize) {
    let mut h = [0u8; MAX_HEADER_LEN];
    h[0] = (if fin { 0x80 } else { 0 }) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = 2;
    if len < 126 {
        h[1] = mask_bit | len as u8;
    } else if len <= 0xFFFF {
        h[1] = mask_bit | 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        n = 4;
    } else {
        h[1] = mask_bit | 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        n = 10;
    }
    if let Some(m) = mask {
        h[n..n + 4].copy_from_slice(&m);
        n += 4;
    }
    (h, n)
}

/// Appends one frame with every knob exposed: `fin` false writes a
/// fragment; `mask` Some masks the payload (client role).
pub fn write_raw_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let (h, n) = frame_header(opcode, fin, payload.len(), mask);
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(m) = mask {
        apply_mask(&mut out[start..], m, 0);
    }
}

/// RSV1: the frame starts a compressed message (RFC 7692 §6).
pub(crate) const RSV1: u8 = 0x40;

/// Appends one unmasked, final frame carrying a whole compressed message
/// (RSV1 set).
pub fn write_compressed_frame(out: &mut Vec<u8>, opcode: OpCode, data: &[u8]) {
    let (mut h, n) = frame_header(opcode, true, data.len(), None);
    h[0] |= RSV1;
    out.reserve(n + data.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(data);
}

/// Appends one unmasked, final frame.
///
/// The echo and relay path: a short payload (under 126 bytes, a 2-byte
/// header) skips building the general 14-byte header.
#[inline]
pub fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    if payload.len() < 126 {
        out.extend_from_slice(&[0x80 | opcode as u8, payload.len() as u8]);
        out.extend_from_slice(payload);
        return;
    }
    write_raw_frame(out, opcode, true, payload, None);
}

/// Appends one masked, final frame (client role).
pub fn write_masked_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    write_raw_frame(out, opcode, true, payload, Some(mask));
}

/// `reason` cut to at most [`MAX_CLOSE_REASON`] bytes on a char boundary.
pub(crate) fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Appends an unmasked close frame with `code` and `reason` (reason is cut
/// to fit the 125-byte control frame limit on a char boundary).
pub(crate) fn write_close(out: &mut Vec<u8>, code: CloseCode, reason: &str) {
    let reason = truncate_reason(reason).as_bytes();
    let (h, n) = frame_header(OpCode::Close, true, 2 + reason.len(), None);
    out.reserve(n + 2 + reason.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(&code.as_u16().to_be_bytes());
    out.extend_from_slice(reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_length_encodings() {
        let cases: [(usize, &[u8]); 6] = [
            (0, &[0x81, 0]),
            (125, &[0x81, 125]),
            (126, &[0x81, 126, 0, 126]),
            (65535, &[0x81, 126, 0xFF, 0xFF]),
            (65536, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            (1 << 40, &[0x81, 127, 0, 0, 1, 0, 0, 0, 0, 0]),
        ];
        for (len, want) in cases {
            let (h, n) = frame_header(OpCode::Text, true, len, None);
            assert_eq!(&h[..n], want, "len {len}");
            let (h, n) = frame_header(OpCode::Text, true, len, Some([1, 2, 3, 4]));
            assert_eq!(n, want.len() + 4);
            assert_eq!(h[1] & 0x80, 0x80);
            assert_eq!(&h[n - 4..n], &[1, 2, 3, 4]);
        }
        let (h, n) = frame_header(OpCode::Continuation, false, 3, None);
        assert_eq!(&h[..n], &[0x00, 3]);
        let (h, _) = frame_header(OpCode::Ping, true, 3, None);
        assert_eq!(h[0], 0x89);
    }

    #[test]
    fn frames() {
        let mut out = Vec::new();
        write_frame(&mut out, OpCode::Binary, b"abc");
        assert_eq!(out, [0x82, 3, b'a', b'b', b'c']);
        out.clear();
        write_masked_frame(&mut out, OpCode::Text, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        // RFC 6455 §5.7 example.
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn close_frames() {
        let mut out = Vec::new();
        write_close(&mut out, CloseCode::NORMAL, "");
        assert_eq!(out, [0x88, 2, 0x03, 0xe8]);
        out.clear();
        write_close(&mut out, CloseCode::GOING_AWAY, "bye");
        assert_eq!(out, [0x88, 5, 0x03, 0xe9, b'b', b'y', b'e']);
        // 122 ASCII + a 2-byte char would be 124 > 123: the char is dropped.
        let long = format!("{}é", "x".repeat(122));
        out.clear();
        write_close(&mut out, CloseCode::NORMAL, &long);
        assert_eq!(out[1], 2 + 122);
        assert_eq!(out.len(), 2 + 2 + 122);
        let long = "€".repeat(100);
        out.clear();
        write_close(&mut out, CloseCode::NORMAL, &long);
        assert_eq!(out[1] as usize, 2 + 123); // 41 three-byte chars
        assert!(std::str::from_utf8(&out[4..]).is_ok());
        assert_eq!(truncate_reason("short"), "short");
    }
}
