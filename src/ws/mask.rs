//! XOR masking, word at a time.

/// XORs `buf` with `mask`, as if `buf` started `offset` bytes into the
/// masked payload (so a payload can be unmasked in pieces).
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[(offset + i) & 3];
    }
}
