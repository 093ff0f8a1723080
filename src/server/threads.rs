//! `--threads N`: N event loops, one per thread, each with its own `Poll`,
//! listener, engine and buffers; what they share is in `engine/process.rs`
//! (matchmaking, the connection limit, counters) and `link.rs` (inboxes,
//! wakers, shutdown).
//!
//! Accepting: every loop has its own listening socket on the same address
//! (`SO_REUSEPORT`), and the kernel spreads new connections over them by a
//! hash of the addresses. BENCHMARKS.md ("Threads") has the measured spread
//! for 10,000 connections against one acceptor handing sockets out
//! round-robin, and why this one was kept.
//!
//! One loop (`--threads 1`) is exactly the server of before: one
//! [`Server`], no link, no shared state — unless `--redis` is given: then
//! the cluster thread (`cluster::node`) joins the mesh as one more
//! participant, with any number of loops.

use super::event_loop::{Server, WAKER};
use super::link::{Link, Links};
use crate::chat::matchmaker::Notify;
use crate::cluster::node::{ClusterThread, Setup};
use crate::cluster::view::ClusterView;
use crate::cluster::RedisUrl;
use crate::config::Config;
use crate::engine::{Engine, Process, Seed};
use crate::safety::SafetyHandle;
use crate::server::TlsAcceptor;
use mio::net::TcpListener;
use mio::{Poll, Waker};
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A bound, not yet running server of one or more loops.
pub struct Threads {
    loops: Vec<Server>,
    links: Option<Arc<Links>>,
    /// `--redis`: the cluster thread, started by [`Threads::run`].
    cluster: Option<ClusterThread>,
}

impl Threads {
    /// Binds every loop's listening socket (port 0 picks one free port
    /// for all of them), with the safety state the config describes (an
    /// unreadable ban file or word list is an `InvalidData` error).
    pub fn bind(config: Config) -> io::Result<Threads> {
        let now_ms = crate::sys::unix_now_s().saturating_mul(1000);
        let safety = SafetyHandle::new(config.safety.clone(), now_ms)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Threads::bind_with_safety(config, safety)
    }

    /// [`Threads::bind`] with every loop sharing `safety` (and the admin
    /// door with them): bans, blocks and per-address limits are
    /// process-wide, and a ban wakes every loop.
    pub fn bind_with_safety(config: Config, safety: SafetyHandle) -> io::Result<Threads> {
        let n = config.loops();
        if n <= 1 && config.redis.is_none() {
            return Ok(Threads {
                loops: vec![Server::bind_with_safety(config, safety)?],
                links: None,
                cluster: None,
            });
        }
        let seed = Seed {
            unix_start_s: crate::sys::unix_now_s(),
            pair_key: crate::sys::random_u64(),
        };
        let interest_wait_ms = u64::try_from(config.interest_wait.as_millis()).unwrap_or(u64::MAX);
        let mut process = Process::new(
            n,
            config.max_connections,
            interest_wait_ms,
            seed,
            safety.clone(),
        );
        let cluster_parts = match &config.redis {
            Some(url) => Some(cluster_parts(
                &config,
                url.clone(),
                n,
                &mut process,
                &safety,
            )?),
            None => None,
        };
        let process = Arc::new(process);
        let mut polls = Vec::with_capacity(n);
        let mut wakers = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            safety.add_waker(waker.clone());
            wakers.push(waker);
            polls.push(poll);
        }
        let links = match &cluster_parts {
            Some((_, waker, _, _)) => {
                wakers.push(waker.clone());
                Arc::new(Links::with_cluster(wakers))
            }
            None => Arc::new(Links::new(wakers)),
        };
        let start = Instant::now();
        let mut addr = config.listen;
        refuse_if_taken(addr)?;
        let mut loops = Vec::with_capacity(n);
        for (i, poll) in polls.into_iter().enumerate() {
            let listener = reuseport_listener(addr)?;
            addr = listener.local_addr()?;
            let engine = Engine::threaded(config.clone(), seed, process.clone(), i, safety.clone());
            let link = Link::new(links.clone(), i);
            loops.push(Server::with_parts(
                config.clone(),
                poll,
                listener,
                engine,
                start,
                Some(link),
            )?);
        }
        let start_cluster = cluster_parts.map(|(poll, _, setup, view)| {
            let setup = Setup { start, ..setup };
            let link = Link::new(links.clone(), n);
            ClusterThread::new(poll, setup, link, process.matchmaker(), view)
        });
        Ok(Threads {
            loops,
            links: Some(links),
            cluster: start_cluster,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.loops.first() {
            Some(l) => l.local_addr(),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "no loop")),
        }
    }

    /// Every loop's accepted connections speak TLS with `acceptor` (one
    /// certificate store for all: a SIGHUP reload reaches them all).
    pub fn set_tls(&mut self, acceptor: TlsAcceptor) {
        for server in &mut self.loops {
            server.set_tls(acceptor.clone());
        }
    }

    /// Event loops that will run.
    pub fn loop_count(&self) -> usize {
        self.loops.len()
    }

    /// Shut down gracefully on SIGINT/SIGTERM: the first loop receives
    /// them and tells the others.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        match self.loops.first_mut() {
            Some(l) => l.handle_signals(),
            None => Ok(()),
        }
    }

    /// Runs every loop (the first on the calling thread) until all have
    /// shut down; the first error of any loop is returned.
    pub fn run(mut self) -> io::Result<()> {
        if self.loops.is_empty() {
            return Ok(());
        }
        let first = self.loops.remove(0);
        let cluster = match self.cluster.take() {
            Some(c) => Some(
                std::thread::Builder::new()
                    .name("chat-cluster".to_string())
                    .spawn(move || c.run())?,
            ),
            None => None,
        };
        let mut handles = Vec::with_capacity(self.loops.len());
        for (i, server) in self.loops.into_iter().enumerate() {
            let handle = std::thread::Builder::new()
                .name(format!("chat-loop-{}", i + 1))
                .spawn(move || server.run())?;
            handles.push(handle);
        }
        let mut result = first.run();
        if let Some(links) = &self.links {
            // A loop that failed takes the others down with it.
            links.shut_down_all();
        }
        for handle in handles {
            let outcome = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("an event loop panicked")));
            if result.is_ok() {
                result = outcome;
            }
        }
        if let Some(handle) = cluster {
            // It said goodbye (bounded) when the loops were told to stop.
            let _ = handle.join();
        }
        result
    }
}

/// The cluster thread's poll and waker, its setup (but the clock, which
/// the loops set), and its counters; the matchmaker is put in cluster mode.
fn cluster_parts(
    config: &Config,
    url: RedisUrl,
    loops: usize,
    process: &mut Process,
    safety: &SafetyHandle,
) -> io::Result<(Poll, Arc<Waker>, Setup, Arc<ClusterView>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), crate::cluster::node::WAKER)?);
    // Bans made here wake the cluster thread, which shares them.
    safety.share_bans();
    safety.add_waker(waker.clone());
    let node = loop {
        // 0 means "this process" in an address: never a node's id.
        let id = crate::sys::random_u64();
        if id != 0 {
            break id;
        }
    };
    let view = Arc::new(ClusterView::default());
    let notify = {
        let waker = waker.clone();
        Notify(Arc::new(move || {
            let _ = waker.wake();
        }))
    };
    // Every queued client has a command or two in flight at most.
    let max_commands = config
        .max_connections
        .saturating_mul(2)
        .saturating_add(1024);
    let key = crate::cluster::pair_key(&config.cluster);
    process.join_cluster(view.clone(), |m| {
        m.enable_cluster(node, key, loops, max_commands, notify)
    });
    let setup = Setup {
        url,
        name: config.cluster.clone(),
        grace_ms: u64::try_from(config.redis_grace.as_millis()).unwrap_or(u64::MAX),
        node,
        threads: loops,
        start: Instant::now(),
        safety: safety.clone(),
    };
    Ok((poll, waker, setup, view))
}

/// `SO_REUSEPORT` would let this process share a port that another
/// process (of the same user) listens on, each getting part of the
/// connections. A port in use is an error, as with one loop: a socket
/// without `SO_REUSEPORT` is bound to it first and let go (port 0 always
/// gets a free port). Another process can still take the port in the
/// microseconds between that check and the loops' binds.
fn refuse_if_taken(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// A listening socket that other loops' sockets share (`SO_REUSEPORT`).
fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(super::event_loop::LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}
