//! XOR masking, word at a time.

/// XORs `buf` with `mask`, as if `buf` started `offset` bytes into the
/// masked payload (so a payload can be unmasked in pieces).
///
/// Works eight bytes at a time (a `u64` XOR per word, which the compiler
/// turns into SIMD for long buffers) with a byte loop only for the last
/// few bytes. No `unsafe`: unaligned 8-byte loads/stores through
/// `from_ne_bytes`/`to_ne_bytes` compile to plain `mov`s on x86-64/aarch64.
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    // Rotate the mask so that buf[0] is XORed with rot[0].
    let s = offset & 3;
    let rot = [
        mask[s],
        mask[(s + 1) & 3],
        mask[(s + 2) & 3],
        mask[(s + 3) & 3],
    ];
    let [a, b, c, d] = rot;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // chunks_exact_mut(8) yields only 8-byte chunks; the conversion
        // never fails (and compiles to nothing).
        if let Ok(w) = <&mut [u8; 8]>::try_from(chunk) {
            *w = (u64::from_ne_bytes(*w) ^ word).to_ne_bytes();
        }
    }
    // Each chunk is a multiple of 4 bytes long, so the tail starts at mask
    // position 0 again.
    for (byte, m) in chunks.into_remainder().iter_mut().zip(rot.iter().cycle()) {
        *byte ^= m;
    }
}

/// Payloads up to this long are unmasked a word at a time with no vector
/// set-up (chat lines, echo messages); longer ones by [`apply_mask`].
const SHORT: usize = 128;

/// [`apply_mask`] for a whole payload (offset 0) that also tells whether
/// every unmasked byte is ASCII: the high bits are ORed together in the
/// same pass, so a text message that is all ASCII (most chat and echo
/// traffic) needs no separate UTF-8 check. Short payloads take no setup:
/// the mask word is built once, the at most 7 trailing bytes go byte by
/// byte.
#[inline]
pub fn unmask_is_ascii(buf: &mut [u8], mask: [u8; 4]) -> bool {
    if buf.len() > SHORT {
        return unmask_long_is_ascii(buf, mask);
    }
    let [a, b, c, d] = mask;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut high = 0u64;
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(w) = <&mut [u8; 8]>::try_from(chunk) {
            let v = u64::from_ne_bytes(*w) ^ word;
            high |= v;
            *w = v.to_ne_bytes();
        }
    }
    // The last 0..=7 bytes start at mask position 0, like every word.
    for (byte, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
        high |= u64::from(*byte);
    }
    high & 0x8080_8080_8080_8080 == 0
}

/// Long payloads: the vectorised unmasking, then the vectorised check
/// (kept out of line so the short path needs no stack frame for it).
#[cold]
#[inline(never)]
fn unmask_long_is_ascii(buf: &mut [u8], mask: [u8; 4]) -> bool {
    apply_mask(buf, mask, 0);
    buf.is_ascii()
}

/// The obvious byte-at-a-time definition, for tests.
#[cfg(test)]
fn apply_mask_naive(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[(offset + i) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_naive_for_all_small_lengths_and_offsets() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..70 {
            for offset in 0..9 {
                let orig: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = orig.clone();
                let mut slow = orig.clone();
                apply_mask(&mut fast, mask, offset);
                apply_mask_naive(&mut slow, mask, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
                // Unaligned start inside a larger buffer.
                let mut big = vec![0u8; len + 3];
                big[3..].copy_from_slice(&orig);
                apply_mask(&mut big[3..], mask, offset);
                assert_eq!(&big[3..], &slow[..]);
            }
        }
    }

    #[test]
    fn unmask_is_ascii_finds_any_high_byte() {
        let mask = [0x81, 0x7f, 0x00, 0xff];
        for len in (0..40).chain([127, 128, 129, 300]) {
            let plain: Vec<u8> = (0..len).map(|i| b' ' + (i * 7 % 95) as u8).collect();
            let mut buf = plain.clone();
            apply_mask_naive(&mut buf, mask, 0);
            assert!(unmask_is_ascii(&mut buf, mask), "len {len}");
            assert_eq!(buf, plain);
            for at in 0..len {
                let mut bad = plain.clone();
                bad[at] = 0xC3;
                apply_mask_naive(&mut bad, mask, 0);
                assert!(!unmask_is_ascii(&mut bad, mask), "len {len} at {at}");
            }
        }
    }

    #[test]
    fn pieces_equal_whole() {
        let mask = [0xde, 0xad, 0xbe, 0xef];
        let orig: Vec<u8> = (0..200u32).map(|i| (i * 13) as u8).collect();
        let mut whole = orig.clone();
        apply_mask(&mut whole, mask, 0);
        for cut in 0..orig.len() {
            let mut pieces = orig.clone();
            let (x, y) = pieces.split_at_mut(cut);
            apply_mask(x, mask, 0);
            apply_mask(y, mask, cut);
            assert_eq!(pieces, whole, "cut {cut}");
        }
    }

    proptest! {
        #[test]
        fn prop_unmask_is_ascii_matches_naive(data in proptest::collection::vec(
                prop_oneof![0u8..0x80, any::<u8>()], 0..300), mask in any::<[u8; 4]>()) {
            let mut fast = data.clone();
            let mut slow = data.clone();
            let ascii = unmask_is_ascii(&mut fast, mask);
            apply_mask_naive(&mut slow, mask, 0);
            prop_assert_eq!(&fast, &slow);
            prop_assert_eq!(ascii, slow.is_ascii());
        }

        #[test]
        fn prop_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..300),
                              mask in any::<[u8; 4]>(), offset in 0usize..1000) {
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask(&mut fast, mask, offset);
            apply_mask_naive(&mut slow, mask, offset);
            prop_assert_eq!(&fast, &slow);
            apply_mask(&mut fast, mask, offset);
            prop_assert_eq!(fast, data);
        }
    }
}
