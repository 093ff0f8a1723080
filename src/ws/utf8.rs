//! Incremental UTF-8 validation: fails on the first byte that can never be
//! part of valid UTF-8, even when the sequence is split across feeds.
//!
//! The bulk of every feed is checked by `std::str::from_utf8` (SIMD-fast);
//! only the 1..=3 bytes of a character cut by the end of a feed are kept.
//! They are completed byte by byte on the next feed, so an impossible
//! continuation (`F4 90`, `ED A0`, `F0 8F`, ...) fails at that very byte.

/// True when `bytes` is UTF-8: a whole message, checked at once (an
/// inflated message, which arrives whole).
pub fn is_valid(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
}

/// Streaming validator. Small: it lives in every connection's decoder
/// (4 bytes: the incomplete tail of the last feed and its length).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    tail: [u8; 3],
    tail_len: u8,
}

impl Utf8Validator {
    /// Feeds more bytes; Err(()) as soon as the input cannot be valid UTF-8.
    ///
    /// After an error the validator's state is unspecified (the connection
    /// is failed); reset it (or start a new one) before reusing it.
    #[allow(clippy::result_unit_err)]
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let mut rest = bytes;
        if self.tail_len > 0 {
            // Finish the character cut by the previous feed, one byte at a
            // time, so the first impossible byte fails right away.
            let mut ch = [0u8; 4];
            let mut n = 0;
            for (dst, src) in ch
                .iter_mut()
                .zip(self.tail.iter().take(self.tail_len.into()))
            {
                *dst = *src;
                n += 1;
            }
            loop {
                let Some((&b, r)) = rest.split_first() else {
                    // Still incomplete: keep it (at most 3 bytes).
                    return self.keep(ch.get(..n).ok_or(())?);
                };
                rest = r;
                *ch.get_mut(n).ok_or(())? = b;
                n += 1;
                match std::str::from_utf8(ch.get(..n).ok_or(())?) {
                    Ok(_) => break,
                    Err(e) if e.error_len().is_none() => continue,
                    Err(_) => return Err(()),
                }
            }
            self.tail_len = 0;
        }
        match std::str::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(()),
                // A valid prefix of a character at the very end.
                None => self.keep(rest.get(e.valid_up_to()..).ok_or(())?),
            },
        }
    }

    fn keep(&mut self, incomplete: &[u8]) -> Result<(), ()> {
        if incomplete.len() > self.tail.len() {
            return Err(());
        }
        for (dst, src) in self.tail.iter_mut().zip(incomplete) {
            *dst = *src;
        }
        self.tail_len = incomplete.len() as u8;
        Ok(())
    }

    /// True when everything fed so far ends on a character boundary.
    pub fn is_complete(&self) -> bool {
        self.tail_len == 0
    }

    /// Forgets any incomplete character: the next feed starts a new text.
    pub(crate) fn reset(&mut self) {
        self.tail_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feeds(parts: &[&[u8]]) -> Vec<bool> {
        let mut v = Utf8Validator::default();
        parts.iter().map(|p| v.feed(p).is_ok()).collect()
    }

    #[test]
    fn size_is_tiny() {
        assert!(std::mem::size_of::<Utf8Validator>() <= 4);
    }

    #[test]
    fn split_sequences_fail_at_first_bad_byte() {
        // F4 90: above U+10FFFF.
        assert_eq!(feeds(&[b"\xF4", b"\x90"]), [true, false]);
        // ED A0: surrogate.
        assert_eq!(feeds(&[b"\xED", b"\xA0"]), [true, false]);
        assert_eq!(feeds(&[b"a\xED\xA0"]), [false]);
        // F0 8F: overlong.
        assert_eq!(feeds(&[b"\xF0", b"\x8F"]), [true, false]);
        // E0 80: overlong.
        assert_eq!(feeds(&[b"x\xE0", b"\x80"]), [true, false]);
        // Lead then ASCII.
        assert_eq!(feeds(&[b"\xE2\x82", b"A"]), [true, false]);
        // Bytes that can never start anything.
        assert_eq!(feeds(&[b"ok", b"\xC0"]), [true, false]);
        assert_eq!(feeds(&[b"\xF5"]), [false]);
        assert_eq!(feeds(&[b"\xFF"]), [false]);
        assert_eq!(feeds(&[b"\x80"]), [false]);
    }

    #[test]
    fn split_valid_sequences_pass() {
        let s = "aé€𝄞z".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                let mut v = Utf8Validator::default();
                assert!(v.feed(&s[..i]).is_ok());
                assert!(v.feed(&s[i..j]).is_ok());
                assert!(v.feed(&s[j..]).is_ok());
                assert!(v.is_complete());
            }
        }
        let mut v = Utf8Validator::default();
        for b in "𝄞".as_bytes() {
            assert!(v.is_complete() || v.tail_len > 0);
            v.feed(&[*b]).unwrap();
        }
        assert!(v.is_complete());
        v.feed(b"\xF0\x9D").unwrap();
        assert!(!v.is_complete());
        v.reset();
        assert!(v.is_complete());
        v.feed(b"").unwrap();
        assert!(v.is_complete());
    }

    /// Status of a prefix: Ok(true) complete, Ok(false) incomplete but
    /// could still become valid, Err: can never be valid.
    fn prefix_status(bytes: &[u8]) -> Result<bool, ()> {
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(true),
            Err(e) if e.error_len().is_none() => Ok(false),
            Err(_) => Err(()),
        }
    }

    proptest! {
        #[test]
        fn prop_byte_at_a_time_fails_at_first_impossible_byte(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), 0x80u8..0xC0, 0xE0u8..0xF5], 0..40)) {
            let mut v = Utf8Validator::default();
            for k in 0..bytes.len() {
                let r = v.feed(&bytes[k..=k]);
                let expect = prefix_status(&bytes[..=k]);
                prop_assert_eq!(r.is_ok(), expect.is_ok(), "at byte {}", k);
                if r.is_err() { break; }
                prop_assert_eq!(v.is_complete(), expect == Ok(true));
            }
        }

        #[test]
        fn prop_chunked_equals_prefix_status(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), 0x80u8..0xC0, 0xE0u8..0xF5], 0..60),
            cuts in proptest::collection::vec(0usize..60, 0..6)) {
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= bytes.len()).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let mut v = Utf8Validator::default();
            let mut start = 0;
            for c in cuts {
                let r = v.feed(&bytes[start..c]);
                let expect = prefix_status(&bytes[..c]);
                prop_assert_eq!(r.is_ok(), expect.is_ok());
                if r.is_err() { break; }
                prop_assert_eq!(v.is_complete(), expect == Ok(true));
                start = c;
            }
        }

        #[test]
        fn prop_valid_strings_pass_any_split(s in ".{0,30}", cut in 0usize..200) {
            let b = s.as_bytes();
            let cut = cut.min(b.len());
            let mut v = Utf8Validator::default();
            prop_assert!(v.feed(&b[..cut]).is_ok());
            prop_assert!(v.feed(&b[cut..]).is_ok());
            prop_assert!(v.is_complete());
        }
    }
}
