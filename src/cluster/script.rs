//! The matchmaking script (`match.lua`) as Rust sees it: the operations,
//! the arguments each takes, and its replies parsed back into types.
//!
//! # Keys (all under the hash tag `{NAME}`, NAME = `--cluster`)
//!
//! * `{NAME}:node:<id>`: liveness and counts (`online waiting chatting`),
//!   `PX 3000`, refreshed every second by `beat`; `{NAME}:nodes`: the ids
//!   ever registered (the dead are dropped by `beat`).
//! * `{NAME}:seq`: the global queue order; `{NAME}:pairs`: the pair counter.
//! * `{NAME}:q` (every ticket), `{NAME}:open` (takes anyone),
//!   `{NAME}:t:<tag>`: sorted sets scored by seq, member = ticket id
//!   `<nodehex>:<serial>`; `{NAME}:tk:<ticket>`: the ticket's hash (node,
//!   serial, gid, tags as JSON, prev ticket, addr, seq, open).
//! * `{NAME}:blk:<addrA>|<addrB>` (sorted pair): a block, with its TTL.
//!
//! The script names keys it builds itself rather than in `KEYS`: fine on a
//! single Redis (what this cluster uses); on Redis Cluster the shared hash
//! tag keeps them on one slot.
//!
//! # Operations
//!
//! * `join`: a searcher. Finds its partner by the rules of
//!   `Matchmaker::find_partner_with` (longest-waiting sharing a tag; else,
//!   if it takes anyone, longest-waiting open; never its previous stranger
//!   while three are queued counting it; never a blocked pair), skipping
//!   and deleting tickets of dead nodes (at most 1003 entries per set).
//!   Found: the partner's ticket is removed, the pair counter taken and,
//!   if the partner is on another node, an offer published to that node,
//!   all in the same atomic step. Not found: the ticket is added.
//! * `search`: an already queued ticket searches again (interest wait over,
//!   or a nudge); a match removes both tickets.
//! * `leave`: the ticket goes; when two remain, the older one's node gets a
//!   nudge (the re-pair rule's "down to two").
//! * `beat`: sets this node's key and returns every live node's counts.

use super::proto::{node_hex, ticket_id};
use super::resp::Value;
use crate::chat::Counts;
use std::net::IpAddr;

/// The script's source.
pub const SOURCE: &str = include_str!("match.lua");

/// SHA-1 of [`SOURCE`] in hex, for EVALSHA.
pub fn sha1_hex() -> String {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(SOURCE.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long a node key lives without a refresh.
pub const NODE_TTL_MS: u64 = 3000;

/// A waiting client as its ticket records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// Its node.
    pub node: u64,
    /// Its matchmaking serial (unique per node start).
    pub serial: u64,
    /// Its matchmaking id on that node.
    pub gid: usize,
    /// Its event loop and connection id there.
    pub thread: usize,
    /// Its connection id.
    pub conn: usize,
    /// Its previous stranger's ticket: (node, serial).
    pub prev: Option<(u64, u64)>,
    /// Its address (blocks).
    pub addr: Option<IpAddr>,
    /// Takes anyone.
    pub open: bool,
    /// Its place in line when re-queued (None: a new place).
    pub keep_seq: Option<u64>,
    /// Its interests, sorted.
    pub tags: Vec<String>,
}

/// One call of the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// See the module doc.
    Join(Ticket),
    /// `node:serial` searches again; `open`: it now takes anyone.
    Search {
        /// Node.
        node: u64,
        /// Serial.
        serial: u64,
        /// Its gid (not sent: for the reply's handler).
        gid: usize,
        /// Takes anyone from now on.
        open: bool,
    },
    /// The ticket `node:serial` leaves the queue.
    Leave {
        /// Node.
        node: u64,
        /// Serial.
        serial: u64,
    },
    /// Heartbeat with this node's counts.
    Beat {
        /// Node.
        node: u64,
        /// Its counts.
        counts: Counts,
    },
}

/// The partner a `join` or `search` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// The pair counter (pair id = `PairId::new(counter, cluster key)`).
    pub counter: u64,
    /// Whether the searcher is the initiator (it was queued first).
    pub x_initiator: bool,
    /// The partner's node.
    pub node: u64,
    /// Its serial on that node.
    pub serial: u64,
    /// Its matchmaking id on that node.
    pub gid: usize,
    /// Its event loop there.
    pub thread: usize,
    /// Its connection id there.
    pub conn: usize,
    /// Its address.
    pub addr: Option<IpAddr>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// What the script answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The ticket waits, at `seq`.
    Queued(u64),
    /// A partner was found (and claimed).
    Matched(Match),
    /// `search` for a ticket that is no longer there.
    Gone,
    /// `leave` done.
    Done,
    /// `beat`: the live nodes and their counts.
    Nodes(Vec<(u64, Counts)>),
}

impl Op {
    /// The EVALSHA arguments (after `EVALSHA sha 1 prefix`).
    pub fn args(&self) -> Vec<Vec<u8>> {
        let s = |v: &dyn std::fmt::Display| v.to_string().into_bytes();
        match self {
            Op::Join(t) => vec![
                b"join".to_vec(),
                node_hex(t.node).into_bytes(),
                s(&t.serial),
                s(&t.gid),
                t.prev
                    .map(|(n, s)| ticket_id(n, s))
                    .unwrap_or_default()
                    .into_bytes(),
                t.addr
                    .map(|a| a.to_string())
                    .unwrap_or_default()
                    .into_bytes(),
                if t.open { b"1".to_vec() } else { b"0".to_vec() },
                t.keep_seq
                    .map(|q| q.to_string())
                    .unwrap_or_default()
                    .into_bytes(),
                serde_json::to_vec(&t.tags).unwrap_or_else(|_| b"[]".to_vec()),
                s(&t.thread),
                s(&t.conn),
            ],
            Op::Search {
                node, serial, open, ..
            } => vec![
                b"search".to_vec(),
                node_hex(*node).into_bytes(),
                s(serial),
                if *open { b"1".to_vec() } else { b"0".to_vec() },
            ],
            Op::Leave { node, serial } => {
                vec![b"leave".to_vec(), node_hex(*node).into_bytes(), s(serial)]
            }
            Op::Beat { node, counts } => vec![
                b"beat".to_vec(),
                node_hex(*node).into_bytes(),
                format!("{} {} {}", counts.online, counts.waiting, counts.chatting).into_bytes(),
                s(&NODE_TTL_MS),
            ],
        }
    }

    /// Parses the script's reply to this op (None: not what it returns).
    pub fn parse(&self, reply: &Value) -> Option<Reply> {
        let items = reply.array()?;
        if let Op::Beat { .. } = self {
            let mut nodes = Vec::with_capacity(items.len() / 2);
            for pair in items.chunks(2) {
                let (id, counts) = (pair.first()?.bytes()?, pair.get(1)?.bytes()?);
                let id = u64::from_str_radix(std::str::from_utf8(id).ok()?, 16).ok()?;
                let mut it = std::str::from_utf8(counts).ok()?.split(' ');
                let mut next = || it.next().and_then(|n| n.parse::<usize>().ok());
                let counts = Counts {
                    online: next()?,
                    waiting: next()?,
                    chatting: next()?,
                };
                nodes.push((id, counts));
            }
            return Some(Reply::Nodes(nodes));
        }
        match items.first()?.int()? {
            0 if matches!(self, Op::Leave { .. }) => Some(Reply::Done),
            0 => Some(Reply::Queued(u64::try_from(items.get(1)?.int()?).ok()?)),
            2 => Some(Reply::Gone),
            1 => {
                let text = |i: usize| items.get(i).and_then(Value::bytes);
                let num = |i: usize| items.get(i).and_then(Value::int);
                let node = std::str::from_utf8(text(3)?).ok()?;
                let addr = std::str::from_utf8(text(6)?).ok()?;
                Some(Reply::Matched(Match {
                    counter: u64::try_from(num(1)?).ok()?,
                    x_initiator: num(2)? == 1,
                    node: u64::from_str_radix(node, 16).ok()?,
                    serial: u64::try_from(num(4)?).ok()?,
                    gid: usize::try_from(num(5)?).ok()?,
                    addr: addr.parse().ok(),
                    tags: serde_json::from_slice(text(7)?).ok()?,
                    thread: usize::try_from(num(8)?).ok()?,
                    conn: usize::try_from(num(9)?).ok()?,
                }))
            }
            _ => None,
        }
    }
}
