//! permessage-deflate's codec (RFC 7692 §7.2): one loop's compressors and
//! decompressor, shared by all its connections.
//!
//! Every session is negotiated without context takeover in either
//! direction (see `extension.rs`), so no sliding window outlives a
//! message: the codec is reset before each one and serves whichever
//! connection comes next. Nothing here is per connection.
//!
//! Memory, per loop (not per connection), created on first use: one
//! inflater (a 32 KiB window plus zlib's state, about 40 KiB) and one
//! deflater per window size a client asked for (at most 7: 9..=15 bits; a
//! 15-bit one is about 270 KiB), plus the caller's output buffers.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::encode::{write_compressed_frame, write_frame};
use super::extension::MAX_WINDOW_BITS;
use super::OpCode;

/// The 4 bytes a sync flush ends with: stripped from every compressed
/// message we send, appended to every one we inflate (§7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// zlib's level 1: the fastest; chat JSON and echo payloads are short, and
/// the CPU spent per message matters more to a relay than the last bytes.
const LEVEL: u32 = 1;

/// The smallest window zlib deflates with (8 is rejected for raw streams).
const MIN_DEFLATE_BITS: u8 = 9;

/// Window sizes we may deflate with: 9..=15 bits.
const DEFLATERS: usize = (MAX_WINDOW_BITS - MIN_DEFLATE_BITS + 1) as usize;

/// Capacity the compression buffer keeps between messages: enough for a
/// 64 KiB message (the default size limit) with the deflater's worst-case
/// room, so steady traffic reallocates nothing; a larger one is freed.
const KEPT_COMPRESSED: usize = 64 * 1024 + 64 * 1024 / 8 + 64;

/// Why a compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the message size limit (1009).
    TooBig,
    /// It is not a valid deflate stream (1007).
    Corrupt,
}

/// One loop's deflate state (see the module documentation).
#[derive(Default)]
pub struct Codec {
    /// Deflaters by window size (index: bits - 9), created on first use.
    deflaters: [Option<Compress>; DEFLATERS],
    inflater: Option<Decompress>,
    /// A compressed message on its way into a frame; reused. It holds at
    /// most one message (bounded by the message size limit), and keeps at
    /// most [`KEPT_COMPRESSED`] bytes between messages.
    compressed: Vec<u8>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("deflaters", &self.deflaters.iter().flatten().count())
            .field("inflater", &self.inflater.is_some())
            .finish()
    }
}

impl Codec {
    /// Appends `payload` as one final data frame: compressed (RSV1) when
    /// the session negotiated compression (`window_bits` Some), the payload
    /// is at least `min_size` bytes and compressing makes it shorter;
    /// otherwise as it is.
    pub fn write_message(
        &mut self,
        out: &mut Vec<u8>,
        opcode: OpCode,
        payload: &[u8],
        window_bits: Option<u8>,
        min_size: usize,
    ) {
        if let Some(bits) = window_bits.filter(|_| payload.len() >= min_size) {
            let mut compressed = std::mem::take(&mut self.compressed);
            let shorter = self.compress(bits, payload, &mut compressed);
            if shorter {
                write_compressed_frame(out, opcode, &compressed);
            }
            if compressed.capacity() > KEPT_COMPRESSED {
                compressed = Vec::new();
            }
            self.compressed = compressed;
            if shorter {
                return;
            }
        }
        write_frame(out, opcode, payload);
    }

    /// Compresses `payload` into `out` (cleared first) as one message's
    /// data, with a window of at most `window_bits`. False when the result
    /// would not be smaller than `payload`, or the window is too small for
    /// zlib (8 bits): send it uncompressed then, which is always allowed.
    pub fn compress(&mut self, window_bits: u8, payload: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        let bits = window_bits.min(MAX_WINDOW_BITS);
        let Some(slot) = bits
            .checked_sub(MIN_DEFLATE_BITS)
            .and_then(|i| self.deflaters.get_mut(usize::from(i)))
        else {
            return false;
        };
        let deflater = slot.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(LEVEL), false, bits)
        });
        // A library panic must not end every connection of the loop: the
        // deflater is dropped (a new one is made next time) and the
        // message goes out uncompressed.
        match catch_unwind(AssertUnwindSafe(|| deflate_into(deflater, payload, out))) {
            Ok(shorter) => shorter,
            Err(_) => {
                *slot = None;
                out.clear();
                false
            }
        }
    }

    /// Inflates one message's compressed data into `out` (cleared first),
    /// failing as soon as it would exceed `max` bytes: `out` never grows
    /// past `max + 1` bytes, however much the data claims to expand.
    pub fn inflate(
        &mut self,
        payload: &[u8],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        out.clear();
        let inflater = self.inflater.get_or_insert_with(|| Decompress::new(false));
        // As for deflating: a library panic fails this message, not the loop.
        match catch_unwind(AssertUnwindSafe(|| {
            inflate_into(inflater, payload, max, out)
        })) {
            Ok(result) => result,
            Err(_) => {
                self.inflater = None;
                out.clear();
                Err(InflateError::Corrupt)
            }
        }
    }
}

/// [`Codec::compress`] with its deflater.
fn deflate_into(deflater: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> bool {
    deflater.reset();
    // Room for the worst case (zlib-rs's level 1 stores a literal in up to
    // 9 bits: 1/8 more, plus block headers), so the compressor never runs
    // out of output mid-block: zlib-rs 0.6.8 panics at level 1 when it
    // does (reproduced with incompressible data and a buffer of the
    // payload's size). Worth sending only if shorter than the payload.
    out.reserve(payload.len() + payload.len() / 8 + 64);
    let mut rest = payload;
    loop {
        let before = deflater.total_in();
        if deflater
            .compress_vec(rest, out, FlushCompress::Sync)
            .is_err()
        {
            return false;
        }
        let used = usize::try_from(deflater.total_in() - before).unwrap_or(usize::MAX);
        rest = rest.get(used..).unwrap_or_default();
        if rest.is_empty() && out.len() < out.capacity() {
            break;
        }
        if out.len() >= out.capacity() || used == 0 {
            return false;
        }
    }
    if !out.ends_with(&TAIL) || out.len() - TAIL.len() >= payload.len() {
        return false;
    }
    out.truncate(out.len() - TAIL.len());
    true
}

/// [`Codec::inflate`] with its inflater.
fn inflate_into(
    inflater: &mut Decompress,
    payload: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    inflater.reset(false);
    for input in [payload, &TAIL] {
        let mut rest = input;
        loop {
            if out.len() == out.capacity() {
                // Grow by doubling, never past max + 1 (one byte over the
                // limit is how we learn the limit is crossed).
                let cap = out
                    .capacity()
                    .saturating_mul(2)
                    .max(256)
                    .min(max.saturating_add(1));
                out.reserve_exact(cap.saturating_sub(out.len()));
            }
            let (in_before, out_before) = (inflater.total_in(), out.len());
            let status = inflater
                .decompress_vec(rest, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            let used = usize::try_from(inflater.total_in() - in_before).unwrap_or(usize::MAX);
            rest = rest.get(used..).unwrap_or_default();
            if status == Status::StreamEnd {
                // A final block (BFINAL) ended the data: what follows, the
                // tail included, is not part of it.
                return Ok(());
            }
            if out.len() < out.capacity() && rest.is_empty() {
                break;
            }
            if used == 0 && out.len() == out_before && out.len() < out.capacity() {
                return Err(InflateError::Corrupt);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(codec: &mut Codec, bits: u8, msg: &[u8]) -> Option<Vec<u8>> {
        let mut z = Vec::new();
        if !codec.compress(bits, msg, &mut z) {
            return None;
        }
        assert!(z.len() < msg.len());
        let mut out = Vec::new();
        codec.inflate(&z, usize::MAX / 2, &mut out).unwrap();
        Some(out)
    }

    #[test]
    fn compresses_and_inflates_every_window() {
        let mut codec = Codec::default();
        let msg = br#"{"type":"message","text":"hello hello hello hello hello"}"#.repeat(50);
        for bits in 9..=15 {
            assert_eq!(round_trip(&mut codec, bits, &msg).unwrap(), msg, "{bits}");
        }
        // 8 bits: zlib cannot; the message goes uncompressed.
        assert_eq!(round_trip(&mut codec, 8, &msg), None);
        // Incompressible or tiny: not worth it.
        assert_eq!(round_trip(&mut codec, 15, b"ab"), None);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(round_trip(&mut codec, 15, &noise), None);
        assert_eq!(
            format!("{codec:?}"),
            "Codec { deflaters: 7, inflater: true }"
        );
    }

    /// zlib-rs 0.6.8 panicked at level 1 on incompressible data given an
    /// output buffer of the payload's size: with the room we give it, no
    /// input of any size panics (a panic would drop the deflater).
    #[test]
    fn incompressible_and_mixed_data_never_panics() {
        let mut codec = Codec::default();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..600u32 {
            let size = (rnd() % 140_000) as usize >> (rnd() % 12);
            let kind = round % 3;
            let data: Vec<u8> = (0..size)
                .map(|i| match kind {
                    0 => rnd() as u8,
                    1 if rnd() % 3 == 0 => rnd() as u8,
                    1 => b'x',
                    _ => (i % 251) as u8,
                })
                .collect();
            for bits in [9, 15] {
                if let Some(back) = round_trip(&mut codec, bits, &data) {
                    assert_eq!(back, data);
                }
            }
        }
        assert_eq!(
            codec.deflaters.iter().flatten().count(),
            2,
            "a deflater panicked"
        );
    }

    #[test]
    fn rfc_examples_inflate() {
        let mut codec = Codec::default();
        let mut out = Vec::new();
        // RFC 7692 §7.2.3.1: "Hello", and the same with BFINAL set (7.2.3.4
        // style: a final block followed by nothing).
        codec
            .inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello");
        codec
            .inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.3: a stored (uncompressed) block.
        codec
            .inflate(
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00,
                ],
                100,
                &mut out,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
        // Exactly at the limit passes; one under fails.
        codec
            .inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 5, &mut out)
            .unwrap();
        assert_eq!(
            codec.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 4, &mut out),
            Err(InflateError::TooBig)
        );
        // An empty message.
        codec.inflate(&[0x00], 100, &mut out).unwrap();
        assert_eq!(out, b"");
        assert_eq!(
            codec.inflate(&[0xff, 0xff, 0xff], 100, &mut out),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let mut codec = Codec::default();
        let zeros = vec![0u8; 8 << 20];
        let mut z = Vec::new();
        assert!(codec.compress(15, &zeros, &mut z));
        assert!(z.len() < 128 * 1024, "{}", z.len());
        let mut out = Vec::new();
        assert_eq!(
            codec.inflate(&z, 1 << 20, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
        // The same data under a limit it fits.
        codec.inflate(&z, 8 << 20, &mut out).unwrap();
        assert_eq!(out.len(), 8 << 20);
    }
}
