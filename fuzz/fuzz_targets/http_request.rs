//! `chat::http::parse_request` on arbitrary bytes.
//!
//! Input: byte 0 picks the head limit, bytes 1..3 a cut offset, the rest is
//! what a client sent. Invariants checked besides "never panics":
//! * a complete head lies within the bytes given and within the limit;
//! * bytes after the head do not change the parse (pipelining);
//! * any strict prefix of a complete head is "need more" (the event loop
//!   re-parses as bytes arrive, so a split must never turn into an error);
//! * "need more" is only answered while within the limit.
#![no_main]

use chat::http::parse_request;
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 4] = [16, 128, 1024, 8 * 1024];

fuzz_target!(|data: &[u8]| {
    let [sel, c0, c1, buf @ ..] = data else {
        return;
    };
    let max_head = LIMITS[usize::from(sel & 3)];
    match parse_request(buf, max_head) {
        Ok(Some(req)) => {
            let head_len = req.head_len;
            assert!(
                head_len > 0 && head_len <= buf.len(),
                "head_len {head_len} of {}",
                buf.len()
            );
            assert!(
                head_len <= max_head,
                "head_len {head_len} over limit {max_head}"
            );
            assert!(
                !req.path.contains('?'),
                "path keeps its query: {:?}",
                req.path
            );
            assert!(req.minor_version <= 1);
            // The head alone parses the same.
            let alone = parse_request(&buf[..head_len], max_head);
            assert_eq!(alone, Ok(Some(req)), "head alone parses differently");
            // A strict prefix is incomplete, never an error.
            let cut = usize::from(u16::from_le_bytes([*c0, *c1])) % head_len;
            assert_eq!(
                parse_request(&buf[..cut], max_head),
                Ok(None),
                "prefix of {cut} bytes of a {head_len}-byte head"
            );
        }
        Ok(None) => assert!(buf.len() <= max_head, "need-more past the limit"),
        Err(_) => {}
    }
});
