//! RESP2, the Redis wire format, sans-IO: commands out as arrays of bulk
//! strings, replies in through an incremental decoder over whatever bytes
//! have arrived so far.
//!
//! Hand-rolled rather than the `redis-protocol` crate: the cluster needs
//! one encoder (arrays of bulk strings) and a decoder of five reply types;
//! a hundred lines with explicit bounds beat a crate built around `bytes`
//! and async codecs we do not use.
//!
//! Bounds: a bulk string is at most [`MAX_BULK`] bytes, an array at most
//! [`MAX_ARRAY`] elements and [`MAX_DEPTH`] levels deep, a simple line at
//! most [`MAX_LINE`] bytes. Anything else is an [`Error`], and the caller
//! drops the connection: a reply we cannot bound is a broken server.

/// Largest bulk string accepted (a batch of relayed records is far smaller).
pub const MAX_BULK: usize = 8 * 1024 * 1024;
/// Most elements in one array (the stats reply: two per live node).
pub const MAX_ARRAY: usize = 64 * 1024;
/// Deepest nesting (a pub/sub message is an array of bulks: depth 1).
pub const MAX_DEPTH: usize = 4;
/// Longest `+`/`-`/`:` line or length header.
pub const MAX_LINE: usize = 64 * 1024;

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`.
    Simple(Vec<u8>),
    /// `-ERR ...`.
    Error(Vec<u8>),
    /// `:42`.
    Int(i64),
    /// `$3\r\nfoo` (None: `$-1`, nil).
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...` (None: `*-1`, nil).
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(b)) | Value::Simple(b) => Some(b),
            _ => None,
        }
    }

    /// An integer reply, or a string holding one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            other => std::str::from_utf8(other.bytes()?).ok()?.parse().ok(),
        }
    }

    /// The elements of a non-nil array.
    pub fn array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(items)) => Some(items),
            _ => None,
        }
    }
}

/// Bytes that are not RESP2 within our bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error;

/// Appends one command (`*N` of bulk strings) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_usize(out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_usize(out, arg.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_usize(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

/// The first complete reply in `buf` and the bytes it took; `Ok(None)`
/// when more bytes are needed. Incremental by re-parsing: the caller keeps
/// the unparsed bytes and calls again after the next read (a reply is
/// bounded, so re-parsing is bounded too).
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, Error> {
    parse(buf, 0)
}

fn parse(buf: &[u8], depth: usize) -> Result<Option<(Value, usize)>, Error> {
    if depth > MAX_DEPTH {
        return Err(Error);
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some((line, after)) = line(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    let after = after + 1;
    match kind {
        b'+' => Ok(Some((Value::Simple(line.to_vec()), after))),
        b'-' => Ok(Some((Value::Error(line.to_vec()), after))),
        b':' => Ok(Some((Value::Int(number(line)?), after))),
        b'$' => {
            let len = number(line)?;
            if len == -1 {
                return Ok(Some((Value::Bulk(None), after)));
            }
            let len = usize::try_from(len).map_err(|_| Error)?;
            if len > MAX_BULK {
                return Err(Error);
            }
            let end = after + len;
            match buf.get(after..end + 2) {
                None => Ok(None),
                Some(body) if body.ends_with(b"\r\n") => Ok(Some((
                    Value::Bulk(Some(body.get(..len).unwrap_or_default().to_vec())),
                    end + 2,
                ))),
                Some(_) => Err(Error),
            }
        }
        b'*' => {
            let n = number(line)?;
            if n == -1 {
                return Ok(Some((Value::Array(None), after)));
            }
            let n = usize::try_from(n).map_err(|_| Error)?;
            if n > MAX_ARRAY {
                return Err(Error);
            }
            let mut items = Vec::with_capacity(n.min(64));
            let mut at = after;
            for _ in 0..n {
                match parse(buf.get(at..).unwrap_or_default(), depth + 1)? {
                    None => return Ok(None),
                    Some((v, used)) => {
                        items.push(v);
                        at += used;
                    }
                }
            }
            Ok(Some((Value::Array(Some(items)), at)))
        }
        _ => Err(Error),
    }
}

/// The line before `\r\n` and the offset just past it.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, Error> {
    let window = buf.get(..buf.len().min(MAX_LINE + 2)).unwrap_or_default();
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(at) => Ok(Some((buf.get(..at).unwrap_or_default(), at + 2))),
        None if buf.len() > MAX_LINE + 1 => Err(Error),
        None => Ok(None),
    }
}

fn number(line: &[u8]) -> Result<i64, Error> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(mut buf: &[u8]) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some((v, used)) = decode(buf).unwrap() {
            out.push(v);
            buf = &buf[used..];
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SET", b"k", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let mut big = Vec::new();
        encode(&mut big, &[&[b'x'; 1234][..]]);
        assert!(big.starts_with(b"*1\r\n$1234\r\n"));
    }

    #[test]
    fn every_reply_type_decodes() {
        let wire = b"+OK\r\n-NOSCRIPT No matching script\r\n:-12\r\n$5\r\nhe\r\no\r\n$-1\r\n*-1\r\n*2\r\n*1\r\n:1\r\n$0\r\n\r\n";
        assert_eq!(
            all(wire),
            vec![
                Value::Simple(b"OK".to_vec()),
                Value::Error(b"NOSCRIPT No matching script".to_vec()),
                Value::Int(-12),
                Value::Bulk(Some(b"he\r\no".to_vec())),
                Value::Bulk(None),
                Value::Array(None),
                Value::Array(Some(vec![
                    Value::Array(Some(vec![Value::Int(1)])),
                    Value::Bulk(Some(Vec::new())),
                ])),
            ]
        );
    }

    #[test]
    fn split_input_waits_for_the_rest_at_every_cut() {
        let wire = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$6\r\npay\r\nl\r\n:7\r\n";
        for cut in 0..wire.len() {
            let head = &wire[..cut];
            match decode(head).unwrap() {
                None => {}
                Some((_, used)) => assert!(used <= cut),
            }
        }
        let (first, used) = decode(wire).unwrap().unwrap();
        assert_eq!(first.array().unwrap().len(), 3);
        assert_eq!(decode(&wire[used..]).unwrap(), Some((Value::Int(7), 4)));
    }

    #[test]
    fn garbage_and_oversize_are_errors_not_panics() {
        for bad in [
            &b"?what\r\n"[..],
            b":12a\r\n",
            b"$3\r\nabcde\r\n",
            b"$-5\r\n",
            b"*99999999\r\n",
            b"$99999999999\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert_eq!(decode(bad), Err(Error), "{bad:?}");
        }
        let long = vec![b'+'; MAX_LINE + 10];
        assert_eq!(decode(&long), Err(Error));
        // Arbitrary bytes never panic.
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..32)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    b"*$:+-\r\n0123-x"[(x % 13) as usize]
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
