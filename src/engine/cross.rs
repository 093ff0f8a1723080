//! Events for other event loops of the process, as bytes.
//!
//! The engine stays sans-IO with `--threads N`: what the chat sends to a
//! client of another loop ([`Cross`]) is appended to [`Engine::cross_output`]
//! as a self-delimiting record; the driver carries each record to the loop
//! it names (`record_thread`) through that loop's bounded inbox and hands it
//! to that loop's engine with [`Engine::cross_input`]. A relayed message is
//! written as its final JSON, so the receiver only frames it: one copy into
//! the record, one out, no allocation.
//!
//! Record: `len: u32 | thread: u16 | kind: u8 | body`, little-endian, `len`
//! counting the whole record. Records are built and read by this file only.
//!
//! An event for a client of another cluster node (`Address::node` set) is
//! the same record wrapped once: `len | thread = REMOTE | FORWARD | node:
//! u64 | record`. The driver hands wrapped records to the cluster thread,
//! which publishes the inner record to that node, whose cluster thread
//! pushes it to the loop it names like any other record.

use super::{Engine, Mailer};
use crate::chat::peer::{Address, Cross};
use crate::chat::protocol::{self, LeftReason};
use crate::chat::PairId;
use crate::ws::OpCode;
use std::net::IpAddr;

const HEADER: usize = 7;
const RELAY: u8 = 1;
const PAIRED: u8 = 2;
const LEFT: u8 = 3;
const NUDGE: u8 = 4;
const FORWARD: u8 = 5;

/// The `thread` of a wrapped record: for another node, through the cluster
/// thread.
pub const REMOTE: usize = u16::MAX as usize;

/// A wrapped record's node and inner record (None: not wrapped).
pub fn forwarded(record: &[u8]) -> Option<(u64, &[u8])> {
    if record.get(6) != Some(&FORWARD) {
        return None;
    }
    let node = u64::from_le_bytes(record.get(HEADER..HEADER + 8)?.try_into().ok()?);
    Some((node, record.get(HEADER + 8..)?))
}

/// The loop a record is for (None: not a record).
pub fn record_thread(record: &[u8]) -> Option<usize> {
    let b: [u8; 2] = record.get(4..6)?.try_into().ok()?;
    Some(usize::from(u16::from_le_bytes(b)))
}

/// The length of the record at the start of `bytes` (None: incomplete).
pub fn record_len(bytes: &[u8]) -> Option<usize> {
    let b: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let len = u32::from_le_bytes(b) as usize;
    (len >= HEADER && len <= bytes.len()).then_some(len)
}

/// A `left` record's receiver (loop, connection) and pair: the cluster
/// thread tells the matchmaker when one comes from another node.
pub fn left_target(record: &[u8]) -> Option<(usize, usize, PairId)> {
    if record.get(6) != Some(&LEFT) {
        return None;
    }
    let mut r = Reader::new(record.get(HEADER..)?);
    let conn = r.u64()? as usize;
    let pair = PairId(r.u64()?);
    Some((record_thread(record)?, conn, pair))
}

/// The sending connection of a relay record (told when it is dropped).
pub fn relay_sender(record: &[u8]) -> Option<usize> {
    if let Some((_, inner)) = forwarded(record) {
        return relay_sender(inner);
    }
    if record.get(6) != Some(&RELAY) {
        return None;
    }
    Reader::new(record.get(HEADER..)?)
        .skip(16)
        .u64()
        .map(|v| v as usize)
}

/// Appends one record for `event` to `out` (wrapped when it is for
/// another node).
pub(crate) fn encode(out: &mut Vec<u8>, event: &Cross<'_>) {
    let Some(node) = event.node() else {
        return encode_local(out, event);
    };
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&u16::MAX.to_le_bytes());
    out.push(FORWARD);
    put(out, node);
    encode_local(out, event);
    set_len(out, start);
}

fn set_len(out: &mut [u8], start: usize) {
    let len = u32::try_from(out.len() - start).unwrap_or(0);
    if let Some(head) = out.get_mut(start..start + 4) {
        head.copy_from_slice(&len.to_le_bytes());
    }
}

fn encode_local(out: &mut Vec<u8>, event: &Cross<'_>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    // Never REMOTE: a loop index is far below it (MAX_THREADS).
    let thread = u16::try_from(event.thread()).unwrap_or(u16::MAX - 1);
    out.extend_from_slice(&thread.to_le_bytes());
    match event {
        Cross::Relay {
            to,
            from,
            pair,
            msg,
        } => {
            out.push(RELAY);
            put(out, u64::from(to.conn));
            put(out, pair.0);
            put(out, *from as u64);
            protocol::write_json(out, msg);
        }
        Cross::Paired {
            to,
            partner,
            partner_addr,
            pair,
            initiator,
            common,
        } => {
            out.push(PAIRED);
            put(out, u64::from(to.conn));
            put(out, to.serial);
            put(out, pair.0);
            out.push(u8::from(*initiator));
            put(out, u64::from(partner.thread));
            put(out, u64::from(partner.conn));
            put(out, partner.serial);
            put(out, partner.node);
            put_addr(out, *partner_addr);
            for tag in common.iter() {
                let len = u16::try_from(tag.len()).unwrap_or(0);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(tag.as_bytes().get(..usize::from(len)).unwrap_or_default());
            }
        }
        Cross::Left { to, pair, reason } => {
            out.push(LEFT);
            put(out, u64::from(to.conn));
            put(out, pair.0);
            out.push(u8::from(*reason == LeftReason::Next));
        }
        Cross::Nudge { gid, serial, .. } => {
            out.push(NUDGE);
            put(out, *gid as u64);
            put(out, *serial);
        }
    }
    set_len(out, start);
}

fn put(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// An optional address: a length byte (0, 4 or 16) and the octets.
fn put_addr(out: &mut Vec<u8>, addr: Option<IpAddr>) {
    match addr {
        None => out.push(0),
        Some(IpAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            out.push(16);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// Reads a record body front to back; every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader(bytes)
    }

    fn skip(self, n: usize) -> Reader<'a> {
        Reader(self.0.get(n..).unwrap_or_default())
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        let b: [u8; 8] = self.take(8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    /// What [`put_addr`] wrote; `Some(None)` for no address.
    fn addr(&mut self) -> Option<Option<IpAddr>> {
        match self.u8()? {
            0 => Some(None),
            4 => {
                let b: [u8; 4] = self.take(4)?.try_into().ok()?;
                Some(Some(IpAddr::from(b)))
            }
            16 => {
                let b: [u8; 16] = self.take(16)?.try_into().ok()?;
                Some(Some(IpAddr::from(b)))
            }
            _ => None,
        }
    }
}

impl Engine {
    /// Records for other loops produced since the last
    /// [`Engine::clear_cross_output`]. Bound: what one call into the engine
    /// produced (the driver takes them after every read and timer run), so
    /// at most one read's worth of relays.
    pub fn cross_output(&self) -> &[u8] {
        &self.cross_out
    }

    /// The driver took every record of [`Engine::cross_output`].
    pub fn clear_cross_output(&mut self) {
        self.cross_out.clear();
    }

    /// A relay from `from` could not be carried (the inbox of its
    /// partner's loop was full): the sender is told `rate_limited`.
    pub fn relay_refused(&mut self, from: usize, now_ms: u64) {
        self.now_ms = now_ms;
        self.totals.cross_dropped += 1;
        let (chat, mut mailer) = self.mailer();
        chat.relay_refused(from, &mut mailer);
    }

    /// One record from another loop (malformed ones are ignored).
    pub fn cross_input(&mut self, record: &[u8], now_ms: u64) {
        self.now_ms = now_ms;
        let _ = self.try_cross_input(record, now_ms);
    }

    fn try_cross_input(&mut self, record: &[u8], now_ms: u64) -> Option<()> {
        if record_len(record)? != record.len() {
            return None;
        }
        let kind = *record.get(6)?;
        let mut r = Reader::new(record.get(HEADER..)?);
        match kind {
            RELAY => {
                let conn = r.u64()? as usize;
                let pair = PairId(r.u64()?);
                let _from = r.u64()?;
                if self.chat.relay_in(conn, pair) {
                    self.chat.record_in(conn, r.0);
                    self.queue_frame(conn, OpCode::Text, r.0);
                }
            }
            PAIRED => {
                let conn = r.u64()? as usize;
                let to = Address::here(self.thread, conn, r.u64()?);
                let pair = PairId(r.u64()?);
                let initiator = r.u8()? != 0;
                let (thread, conn) = (r.u64()? as usize, r.u64()? as usize);
                let serial = r.u64()?;
                let partner = Address::on(r.u64()?, thread, conn, serial);
                let partner_addr = r.addr()?;
                let mut common = Vec::new();
                while let Some(len) = r.take(2) {
                    let len = usize::from(u16::from_le_bytes(len.try_into().ok()?));
                    common.push(String::from_utf8_lossy(r.take(len)?).into_owned());
                }
                let (chat, mut mailer) = self.mailer();
                chat.paired_in(
                    to,
                    (partner, partner_addr),
                    pair,
                    initiator,
                    &common,
                    now_ms,
                    &mut mailer,
                );
            }
            LEFT => {
                let to = Address::here(self.thread, r.u64()? as usize, 0);
                let pair = PairId(r.u64()?);
                let reason = if r.u8()? != 0 {
                    LeftReason::Next
                } else {
                    LeftReason::Disconnected
                };
                let (chat, mut mailer) = self.mailer();
                chat.left_in(to, pair, reason, now_ms, &mut mailer);
            }
            NUDGE => {
                let gid = r.u64()? as usize;
                let serial = r.u64()?;
                let (chat, mut mailer) = self.mailer();
                chat.nudge_in(gid, serial, now_ms, &mut mailer);
            }
            _ => {}
        }
        Some(())
    }
}

impl Mailer<'_> {
    pub(super) fn encode_cross(&mut self, event: &Cross<'_>) {
        encode(self.cross, event);
    }
}
