//! Connecting to Redis, losing it and getting it back, and leaving the
//! cluster at SIGTERM.

use super::{ClusterThread, Phase, Sent, BACKOFF_MAX_MS, BACKOFF_MIN_MS, CMD, FLUSH_MS, SUB};
use crate::cluster::conn::Conn;
use crate::cluster::proto::node_hex;
use crate::cluster::records::Out;
use crate::cluster::script;
use log::{info, warn};
use mio::net::TcpStream;
use mio::{Events, Interest};
use std::io;
use std::net::ToSocketAddrs;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl ClusterThread {
    pub(super) fn connect(&mut self, now: u64) {
        let url = &self.setup.url;
        let addr = match (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map(|mut a| a.next())
        {
            Ok(Some(a)) => a,
            Ok(None) | Err(_) => {
                self.retry_later(now, &format!("cannot resolve {}", url.host));
                return;
            }
        };
        let open = |token| -> io::Result<Conn> {
            let mut stream = TcpStream::connect(addr)?;
            self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            let _ = stream.set_nodelay(true);
            Ok(Conn::new(stream))
        };
        let (mut cmd, mut sub) = match (open(CMD), open(SUB)) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => {
                self.retry_later(now, &format!("connect to {addr}: {e}"));
                return;
            }
        };
        self.inflight.clear();
        let auth = |c: &mut Conn| match (&url.user, &url.password) {
            (Some(u), Some(p)) => c.send(&[b"AUTH", u.as_bytes(), p.as_bytes()]),
            (None, Some(p)) => c.send(&[b"AUTH", p.as_bytes()]),
            _ => {}
        };
        auth(&mut cmd);
        auth(&mut sub);
        if url.password.is_some() {
            self.inflight.push_back((Sent::Ignore, now));
        }
        if url.db != 0 {
            cmd.send(&[b"SELECT", url.db.to_string().as_bytes()]);
            self.inflight.push_back((Sent::Ignore, now));
        }
        cmd.send(&[b"SCRIPT", b"LOAD", script::SOURCE.as_bytes()]);
        self.inflight.push_back((Sent::Load, now));
        sub.send(&[b"SUBSCRIBE", &self.channel, &self.bans_channel]);
        self.cmd = Some(cmd);
        self.sub = Some(sub);
        self.phase = Phase::Connecting {
            since_ms: now,
            loaded: false,
            subscribed: false,
        };
    }

    pub(super) fn retry_later(&mut self, now: u64, why: &str) {
        if !self.ever_up && self.backoff_ms == BACKOFF_MIN_MS {
            warn!("cluster: {why}; pairing this node's clients alone until Redis answers");
        }
        self.phase = Phase::Down {
            retry_ms: now + self.backoff_ms,
        };
        self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_MAX_MS);
    }

    /// Both connections are dropped; reconnect after the backoff.
    pub(super) fn down(&mut self, now: u64, why: &str) {
        for conn in [self.cmd.take(), self.sub.take()].into_iter().flatten() {
            let mut stream = conn.stream;
            let _ = self.poll.registry().deregister(&mut stream);
        }
        self.inflight.clear();
        let was_up = self.up();
        if was_up {
            warn!("cluster: Redis lost ({why}); pairing this node's clients alone");
            self.down_since_ms = Some(now);
            self.grace_done = false;
            self.view.connected.store(false, Ordering::Relaxed);
            self.view.nodes.store(1, Ordering::Relaxed);
            let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
            // Other nodes' counts are unknown from here: `/stats` shows ours.
            mm.cluster_set_others(crate::chat::Counts::default());
            mm.cluster_set_up(
                false,
                now,
                &mut Out::new(self.setup.threads, &mut self.decided),
            );
        }
        if matches!(self.phase, Phase::Down { .. }) {
            return;
        }
        self.retry_later(now, why);
    }

    pub(super) fn maybe_up(&mut self, now: u64) {
        let Phase::Connecting {
            loaded: true,
            subscribed: true,
            ..
        } = self.phase
        else {
            return;
        };
        info!(
            "cluster: node {} joined cluster '{}' on {}",
            node_hex(self.setup.node),
            self.setup.name,
            self.setup.url
        );
        if self.ever_up {
            self.view.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        // Cross-node pairs still running (the grace has not ended them)
        // though our node key expired while we were away.
        let expired =
            self.ever_up && !self.grace_done && now >= self.beat_ok_ms + script::NODE_TTL_MS;
        let reconnect = self.ever_up;
        self.ever_up = true;
        self.phase = Phase::Up { since_ms: now };
        self.backoff_ms = BACKOFF_MIN_MS;
        self.down_since_ms = None;
        self.grace_done = true;
        self.probe_seen_ms = now;
        self.view.connected.store(true, Ordering::Relaxed);
        // The node key first: other nodes skip tickets of nodes without one.
        self.beat(now);
        let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
        if expired {
            // Our key expired while we were away: the other nodes have
            // ended our cross-node pairs (and their `left` could not reach
            // us), so ours end too, before anything else.
            mm.cluster_grace_over(&mut Out::new(self.setup.threads, &mut self.decided));
        }
        // What the outage may have left half-made or half-ended is compared
        // with every live node, before any client is re-joined.
        let requests = if reconnect {
            mm.cluster_sync_start(&self.live)
        } else {
            Vec::new()
        };
        drop(mm);
        for (node, payload) in requests {
            self.publish(node, &payload, now);
        }
        let mut mm = self.matchmaker.lock().unwrap_or_else(|e| e.into_inner());
        mm.cluster_set_up(
            true,
            now,
            &mut Out::new(self.setup.threads, &mut self.decided),
        );
        mm.cluster_commands(&mut self.commands);
    }

    /// SIGTERM: tell the live nodes now, remove our key, write it out
    /// (bounded by [`FLUSH_MS`]).
    pub(super) fn goodbye(&mut self) {
        if !self.up() {
            return;
        }
        let now = self.now_ms();
        let me = self.setup.node;
        let gone = format!("G{}", node_hex(me));
        for node in self.live.clone() {
            if node != me {
                self.publish(node, gone.as_bytes(), now);
            }
        }
        let key = format!(
            "{}:node:{}",
            String::from_utf8_lossy(&self.prefix),
            node_hex(me)
        );
        if let Some(cmd) = &mut self.cmd {
            cmd.send(&[b"DEL", key.as_bytes()]);
        }
        let deadline = Instant::now() + Duration::from_millis(FLUSH_MS);
        let mut events = Events::with_capacity(4);
        while let Some(cmd) = &mut self.cmd {
            if cmd.flush().is_err() || cmd.unsent.is_empty() || Instant::now() >= deadline {
                break;
            }
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(50)));
        }
        info!("cluster: node {} left the cluster", node_hex(me));
    }
}
