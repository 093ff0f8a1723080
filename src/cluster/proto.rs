//! What nodes tell each other over their pub/sub channels
//! (`{NAME}:n:<nodehex>`, one per node): a payload's first byte says what
//! it is.
//!
//! * `R` + engine cross records (`engine/cross.rs`), each length-prefixed,
//!   in the order the sending node's loops produced them: relays, `paired`
//!   and `left` for clients of the receiving node.
//! * `O` + JSON offer (published by the script when it claims a ticket of
//!   the receiving node), `A` + JSON accept, `J` + JSON reject.
//! * `N` + JSON nudge: search again for this ticket (re-pair rule).
//! * `G` + node id: that node is shutting down (SIGTERM), now.
//! * `P` + probe token: a node's probe of its own subscription.
//! * `B` + JSON [`BanFrom`], on the cluster-wide channel `{NAME}:bans`: a
//!   ban made on one node, applied by every other.
//! * `S` + `?` (a request) or `!` (the answer) + the sender's id (16 hex
//!   digits) + the pair ids (8 bytes each, big-endian) of every pair the
//!   sender holds with a client of the receiving node: sent by a node that
//!   got Redis back, to reconcile the pairs only one side still holds
//!   (`chat/matchmaker/cluster/reconcile.rs`).
//!
//! JSON keeps the control messages readable in `redis-cli MONITOR`; they
//! are a handful per pairing, never per relayed message.

use crate::chat::video::PairId;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A node id as Redis keys and channels spell it: 16 hex digits.
pub fn node_hex(node: u64) -> String {
    format!("{node:016x}")
}

/// A ticket id: `<nodehex>:<serial>`.
pub fn ticket_id(node: u64, serial: u64) -> String {
    format!("{}:{serial}", node_hex(node))
}

/// The searcher as an offer names it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct OfferFrom {
    /// Its node (hex).
    pub node: String,
    /// Its serial.
    pub serial: String,
    /// Its gid there.
    pub gid: String,
    /// Its address ("" for none).
    pub addr: String,
    /// Its loop there.
    pub thread: String,
    /// Its connection there.
    pub conn: String,
    /// Its tags as a JSON array.
    pub tags: String,
}

/// The claimed ticket of the receiving node.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct OfferTo {
    /// Its serial.
    pub serial: String,
    /// Its gid.
    pub gid: String,
}

/// `O`: the script claimed `y` (a ticket of this node) for `x`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Offer {
    /// The pair counter (decimal).
    pub pair: String,
    /// 1 when `y` is the initiator.
    pub y_init: u8,
    /// The searcher.
    pub x: OfferFrom,
    /// The claimed ticket.
    pub y: OfferTo,
}

/// `A`/`J`: the claimed ticket's node answers the offer for pair `pair`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Answer {
    /// The pair counter.
    pub pair: u64,
    /// The searcher (on the receiving node): serial and gid.
    pub x_serial: u64,
    /// Its gid.
    pub x_gid: usize,
    /// The accepting node.
    pub node: u64,
    /// The claimed client there: serial, loop, connection.
    pub y_serial: u64,
    /// Its loop.
    pub y_thread: usize,
    /// Its connection id.
    pub y_conn: usize,
}

/// `N`: search again for this ticket of the receiving node.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Nudge {
    /// Serial.
    pub serial: String,
    /// Gid.
    pub gid: String,
}

/// `B`: a ban made on `node`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BanFrom {
    /// The node that made it (it ignores its own).
    pub node: u64,
    /// The ban.
    pub ban: crate::safety::SharedBan,
}

/// A channel payload, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Cross records.
    Records(&'a [u8]),
    /// See [`Offer`].
    Offer(Offer),
    /// Offer accepted.
    Accept(Answer),
    /// Offer rejected.
    Reject(Answer),
    /// See [`Nudge`].
    Nudge(Nudge),
    /// A node shuts down.
    Gone(u64),
    /// A probe.
    Probe(&'a [u8]),
    /// A ban from another node.
    Ban(BanFrom),
    /// The pairs a node holds with ours (see the module doc).
    Sync {
        /// The sending node.
        from: u64,
        /// True for the answer to our own request.
        answer: bool,
        /// Its pair ids, 8 bytes each (a trailing partial one is ignored).
        pairs: &'a [u8],
    },
}

/// Parses one payload (None: not ours or malformed; ignored).
pub fn parse(payload: &[u8]) -> Option<Message<'_>> {
    let (&kind, rest) = payload.split_first()?;
    Some(match kind {
        b'R' => Message::Records(rest),
        b'O' => Message::Offer(serde_json::from_slice(rest).ok()?),
        b'A' => Message::Accept(serde_json::from_slice(rest).ok()?),
        b'J' => Message::Reject(serde_json::from_slice(rest).ok()?),
        b'N' => Message::Nudge(serde_json::from_slice(rest).ok()?),
        b'G' => Message::Gone(u64::from_str_radix(std::str::from_utf8(rest).ok()?, 16).ok()?),
        b'P' => Message::Probe(rest),
        b'B' => Message::Ban(serde_json::from_slice(rest).ok()?),
        b'S' => {
            let (&kind, rest) = rest.split_first()?;
            let hex = std::str::from_utf8(rest.get(..16)?).ok()?;
            Message::Sync {
                from: u64::from_str_radix(hex, 16).ok()?,
                answer: match kind {
                    b'?' => false,
                    b'!' => true,
                    _ => return None,
                },
                pairs: rest.get(16..)?,
            }
        }
        _ => return None,
    })
}

/// `S`: the pairs `from` holds with the receiving node (see the module doc).
pub fn sync(answer: bool, from: u64, pairs: &[PairId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + 8 * pairs.len());
    out.push(b'S');
    out.push(if answer { b'!' } else { b'?' });
    out.extend_from_slice(node_hex(from).as_bytes());
    for p in pairs {
        out.extend_from_slice(&p.0.to_be_bytes());
    }
    out
}

/// The pair ids of a [`Message::Sync`].
pub fn sync_pairs(pairs: &[u8]) -> impl Iterator<Item = PairId> + '_ {
    pairs.chunks_exact(8).map(|c| {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        PairId(u64::from_be_bytes(b))
    })
}

/// `A`/`J` + JSON.
pub fn answer(accept: bool, a: &Answer) -> Vec<u8> {
    let mut out = vec![if accept { b'A' } else { b'J' }];
    let _ = serde_json::to_writer(&mut out, a);
    out
}

/// Parses a decimal field of an offer or nudge.
pub fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

/// An address field ("" for none).
pub fn addr(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}
