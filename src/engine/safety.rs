//! The engine's safety hooks: the client address of each connection, the
//! per-address limits at accept and upgrade (429 + `Retry-After`), bans
//! at upgrade and for open sessions (`banned` + 1008). The rules and
//! tables are `crate::safety`'s; this file only asks them at the right
//! moments, never per relayed message.
//!
//! When a connection counts toward `--max-connections-per-ip`:
//! * from an untrusted peer, at accept, under the peer's address: the
//!   connection that goes over the limit is answered 429 on its first
//!   request and closed (so a connection still in its request head
//!   counts, as PROTOCOL.md says);
//! * from a trusted proxy, at its WebSocket upgrade, under the client's
//!   address (only then is it known; a WebSocket has its proxy connection
//!   to itself). Plain HTTP through a proxy shares the proxy's keep-alive
//!   connections among clients, so it is not counted: limit it in the
//!   proxy (nginx `limit_conn`, `limit_req`) if need be.

use super::ending::Ending;
use super::{ConnId, Engine};
use crate::chat::{protocol, ServerMsg};
use crate::http::response::{self, Connection, Status};
use crate::safety::limits::CONNECTIONS_RETRY_AFTER_S;
use crate::ws::{encode, OpCode};
use std::net::IpAddr;

/// A connection's addresses, kept beside its session.
/// 36 bytes (`IpAddr` is 17 bytes, byte-aligned).
#[derive(Clone, Copy, Debug)]
pub(super) struct ConnAddr {
    /// The TCP peer.
    peer: IpAddr,
    /// The client: the peer, or what the trusted proxy said at upgrade.
    client: IpAddr,
    /// Counted toward the per-address connection limit under `client`.
    counted: bool,
    /// Over the connection limit at accept: its first request gets 429.
    over: bool,
}

/// How often stale per-address entries, expired blocks and bans go.
const SWEEP_EVERY_MS: u64 = 1000;

impl Engine {
    /// Unix milliseconds now (the safety state's clock).
    pub(super) fn unix_ms(&self) -> u64 {
        self.unix_start_ms.saturating_add(self.now_ms)
    }

    /// Records a new connection's peer; counts it when it is not a
    /// trusted proxy.
    pub(super) fn note_peer(&mut self, id: ConnId, peer: IpAddr) {
        let peer = crate::safety::addr::canonical(peer);
        let proxied = crate::safety::addr::is_trusted(peer, self.safety.trusted());
        let (counted, over) = if proxied {
            (false, false)
        } else {
            match self.safety.open_connection(peer, self.unix_ms()) {
                Ok(counted) => (counted, false),
                Err(_) => (false, true),
            }
        };
        self.addrs.insert(
            id,
            ConnAddr {
                peer,
                client: peer,
                counted,
                over,
            },
        );
    }

    /// A connection that became a WebSocket keeps its addresses only while
    /// it counts toward the per-address limit (a chat session's address is
    /// kept by the chat, `Pairing::client_addr`).
    pub(super) fn upgraded(&mut self, id: ConnId) {
        if self.addrs.get(&id).is_some_and(|a| !a.counted) {
            self.addrs.remove(&id);
        }
    }

    /// The connection is gone: it no longer counts.
    pub(super) fn forget_peer(&mut self, id: ConnId) {
        if let Some(addr) = self.addrs.remove(&id) {
            if addr.counted {
                self.safety.close_connection(addr.client);
            }
        }
    }

    /// The client address of connection `id`.
    pub(super) fn client_of(&self, id: ConnId) -> Option<IpAddr> {
        match self.addrs.get(&id) {
            Some(a) => Some(a.client),
            None => self.chat.client_addr(id),
        }
    }

    /// `Some(retry_after_s)` when the connection went over the per-address
    /// connection limit at accept.
    pub(super) fn over_connection_limit(&self, id: ConnId) -> Option<u64> {
        self.addrs
            .get(&id)
            .and_then(|a| a.over.then_some(CONNECTIONS_RETRY_AFTER_S))
    }

    /// A WebSocket upgrade with request head `head`: resolves the client
    /// address (from a trusted proxy's headers), counts a proxied
    /// connection, and draws from the address's session bucket.
    pub(super) fn admit_session(&mut self, id: ConnId, head: &[u8]) -> Result<(), u64> {
        let now = self.unix_ms();
        let Some(mut addr) = self.addrs.get(&id).copied() else {
            return Ok(());
        };
        let client = self.safety.client_addr(addr.peer, head);
        if client != addr.peer && !addr.counted {
            addr.client = client;
            addr.counted = self.safety.open_connection(client, now)?;
        }
        addr.client = if addr.counted { addr.client } else { client };
        self.addrs.insert(id, addr);
        self.safety.new_session(addr.client, now)
    }

    /// 429 with `Retry-After`, then close.
    pub(super) fn refuse_limited(&mut self, id: ConnId, retry_after_s: u64) {
        let client = self.client_of(id);
        log::debug!("connection {id} from {client:?}: per-address limit, 429");
        let retry = retry_after_s.to_string();
        if let Some(session) = self.sessions.get_mut(id) {
            response::write_response(
                session.out.writer(&mut self.pool),
                Status::TooManyRequests,
                "text/plain; charset=utf-8",
                b"Too Many Requests\n",
                false,
                Connection::Close,
                &[("Retry-After", &retry)],
            );
        }
        self.answered(id, Status::TooManyRequests, Connection::Close);
    }

    /// A chat session just opened from a banned address: `banned`, then
    /// close 1008. True when it was.
    pub(super) fn refuse_banned(&mut self, id: ConnId) -> bool {
        let Some(client) = self.client_of(id) else {
            return false;
        };
        let Some(ban) = self.safety.ban_for(client, self.unix_ms()) else {
            return false;
        };
        log::info!(
            "chat session from {client} refused: ban #{} until {}",
            ban.id,
            ban.until
        );
        self.kick(id, &ban.until, &ban.reason);
        true
    }

    fn kick(&mut self, id: ConnId, until: &str, reason: &str) {
        self.safety.count_banned_session();
        self.scratch.clear();
        protocol::write_json(&mut self.scratch, &ServerMsg::Banned { until, reason });
        if let Some(session) = self.sessions.get_mut(id) {
            encode::write_frame(
                session.out.writer(&mut self.pool),
                OpCode::Text,
                &self.scratch,
            );
        }
        self.mark_dirty(id);
        self.fail(id, Ending::Banned);
    }

    /// Every turn: when a ban was made since the last look, close this
    /// loop's banned chat sessions; once a second, the safety state's
    /// housekeeping.
    pub(super) fn safety_turn(&mut self) {
        let generation = self.safety.ban_generation();
        if generation != self.bans_seen {
            self.bans_seen = generation;
            let now = self.unix_ms();
            let chatting: Vec<(ConnId, IpAddr)> = self
                .sessions
                .iter()
                .filter(|(_, s)| s.is_chatting())
                .filter_map(|(id, _)| self.client_of(id).map(|a| (id, a)))
                .collect();
            for (id, client) in chatting {
                if let Some(ban) = self.safety.ban_for(client, now) {
                    log::info!("closing chat session from {client}: ban #{}", ban.id);
                    self.kick(id, &ban.until, &ban.reason);
                }
            }
        }
        if self.now_ms >= self.next_sweep_ms {
            self.next_sweep_ms = self.now_ms.saturating_add(SWEEP_EVERY_MS);
            self.safety.tick(self.unix_ms());
            // A burst of handshakes leaves the table's capacity behind.
            if self.addrs.capacity() > 64 && self.addrs.len() < self.addrs.capacity() / 4 {
                self.addrs.shrink_to(self.addrs.len().saturating_mul(2));
            }
        }
    }
}
