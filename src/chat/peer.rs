//! Where a chat partner is, and what crosses to a partner elsewhere.
//!
//! A session's partner is [`Peer::Here`] (a connection of the same event
//! loop: its message is written straight into that connection's output) or
//! [`Peer::Thread`] (a connection of another loop of this process: the
//! message becomes a [`Cross`] event that the driver carries through that
//! thread's bounded inbox) or [`Peer::Node`] (a client of another cluster
//! node, `--redis`: the same [`Cross`] event, carried by the driver to the
//! cluster thread, which publishes it to that node), so relays, `paired`
//! and `left` have one path whatever the distance.
//!
//! Every event names the pair it belongs to; a receiver drops what is not
//! for its session's current pair (the session ended, or its connection id
//! now belongs to someone else), so a stale event never reaches the wrong
//! client. The serial guards what comes before a pair exists.

use super::matchmaker::Gid;
use super::protocol::LeftReason;
use super::video::PairId;
use super::{ClientId, ServerMsg};

/// A chat client anywhere in the cluster. 24 bytes (a [`Peer`] is 32, in
/// every chat session): loop and connection ids are far below 2^32 (at
/// most 64 loops; connection ids are slab keys of open connections).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    /// The cluster node holding it: 0 for this process (a real node's id
    /// is never 0).
    pub node: u64,
    /// Its connection serial (ids are reused, serials are not).
    pub serial: u64,
    /// The event loop holding it (0 with one thread).
    pub thread: u32,
    /// Its connection id in that loop.
    pub conn: u32,
}

impl Address {
    /// This process's client `conn` of loop `thread`.
    pub fn here(thread: usize, conn: ClientId, serial: u64) -> Address {
        Address::on(0, thread, conn, serial)
    }

    /// Client `conn` of loop `thread` on `node`.
    pub fn on(node: u64, thread: usize, conn: ClientId, serial: u64) -> Address {
        Address {
            node,
            serial,
            thread: u32::try_from(thread).unwrap_or(u32::MAX),
            conn: u32::try_from(conn).unwrap_or(u32::MAX),
        }
    }

    /// Its loop, as an index.
    pub fn thread(&self) -> usize {
        self.thread as usize
    }

    /// Its connection id.
    pub fn conn(&self) -> ClientId {
        self.conn as usize
    }
}

/// Where a session's partner is, seen from the session's own loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// In this loop.
    Here {
        /// Its connection id.
        conn: ClientId,
    },
    /// In another loop of this process.
    Thread(Address),
    /// On another cluster node (`node` is set).
    Node(Address),
}

/// An event for a client of another loop (see the module doc).
#[derive(Debug)]
pub enum Cross<'a> {
    /// Relay `msg` to `to`, if its current pair is `pair`. `from` is the
    /// sender's connection (told `rate_limited` if the inbox is full).
    Relay {
        /// The receiver.
        to: Address,
        /// The sender, in the sending loop.
        from: ClientId,
        /// The pair the message belongs to.
        pair: PairId,
        /// A `message`, `typing` or `signal`.
        msg: &'a ServerMsg<'a>,
    },
    /// `to` is now paired with `partner`.
    Paired {
        /// The receiver.
        to: Address,
        /// Its new stranger.
        partner: Address,
        /// The stranger's address (for `block` and `report`).
        partner_addr: Option<std::net::IpAddr>,
        /// The new pair.
        pair: PairId,
        /// Whether `to` makes the offer.
        initiator: bool,
        /// Shared tags, sorted.
        common: &'a [String],
    },
    /// `to`'s stranger of pair `pair` left.
    Left {
        /// The receiver.
        to: Address,
        /// The pair that ended.
        pair: PairId,
        /// Why.
        reason: LeftReason,
    },
    /// Ask `thread` to retry pairing its client `gid` (see
    /// `MatchOut::nudge`).
    Nudge {
        /// The loop holding the client.
        thread: usize,
        /// The client.
        gid: Gid,
        /// Its serial.
        serial: u64,
    },
}

impl Cross<'_> {
    /// The other node the event is for (None: this process).
    pub fn node(&self) -> Option<u64> {
        match self {
            Cross::Relay { to, .. } | Cross::Paired { to, .. } | Cross::Left { to, .. } => {
                (to.node != 0).then_some(to.node)
            }
            Cross::Nudge { .. } => None,
        }
    }

    /// The loop the event is for.
    pub fn thread(&self) -> usize {
        match self {
            Cross::Relay { to, .. } | Cross::Paired { to, .. } | Cross::Left { to, .. } => {
                to.thread()
            }
            Cross::Nudge { thread, .. } => *thread,
        }
    }
}
