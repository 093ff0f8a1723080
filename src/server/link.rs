//! How one event loop reaches the others of the process (`--threads N`):
//! a bounded inbox per ordered pair of loops, a `mio::Waker` per loop, and
//! the shutdown flag. uWebSockets' `Loop::defer`, in bytes.
//!
//! What travels is the engine's cross-loop records (`engine/cross.rs`):
//! relayed messages, `paired`, `left`, nudges. After every read (and timer
//! run) the loop takes its engine's records and pushes each into the ring
//! of the loop it names, then wakes each loop it wrote to (at most one
//! wake-up syscall per loop and turn while the receiver has not woken yet:
//! the `pending` flag). A woken loop empties every ring it reads into one
//! reused buffer and hands each record to its engine.
//!
//! # A full inbox
//!
//! Each ring holds [`RING_BYTES`]. A relay that does not fit, keeping
//! [`RESERVE`] free for `paired`/`left`, is dropped and its sender is told
//! `rate_limited` (the answer PROTOCOL.md gives for a message the server
//! did not deliver because the sender goes too fast; the receiver's loop is
//! the bottleneck). `paired`, `left` and nudges are never dropped: one that
//! does not fit waits in this loop's backlog, retried every turn before
//! anything newer for that loop, and while it waits, relays to that loop
//! are refused the same way. The backlog holds at most a few records per
//! pairing made while the receiving loop was stuck.

use super::inbox::Ring;
use crate::engine::{record_len, record_thread, relay_sender, Engine, REMOTE};
use mio::Waker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Bytes in flight from one loop to another.
pub const RING_BYTES: usize = 256 * 1024;
/// Room in a ring that relays leave for `paired`, `left` and nudges.
pub const RESERVE: usize = RING_BYTES / 8;

/// What the loops of a process share for reaching each other.
pub struct Links {
    threads: usize,
    /// `rings[from * threads + to]`.
    rings: Box<[Ring]>,
    wakers: Box<[Arc<Waker>]>,
    /// Per loop: a wake-up is on its way (cleared by the loop when it wakes).
    pending: Box<[AtomicBool]>,
    shutdown: AtomicBool,
    /// The cluster thread's index (the last participant), with `--redis`.
    cluster: Option<usize>,
}

impl Links {
    /// For the loops whose wakers these are, in loop order.
    pub fn new(wakers: Vec<Arc<Waker>>) -> Links {
        let threads = wakers.len();
        Links {
            threads,
            rings: (0..threads * threads)
                .map(|_| Ring::new(RING_BYTES))
                .collect(),
            pending: (0..threads).map(|_| AtomicBool::new(false)).collect(),
            wakers: wakers.into_boxed_slice(),
            shutdown: AtomicBool::new(false),
            cluster: None,
        }
    }

    /// For the loops whose wakers these are and, last, the cluster
    /// thread's.
    pub fn with_cluster(wakers: Vec<Arc<Waker>>) -> Links {
        let cluster = wakers.len().checked_sub(1);
        Links {
            cluster,
            ..Links::new(wakers)
        }
    }

    /// The cluster thread's index, if there is one.
    pub fn cluster(&self) -> Option<usize> {
        self.cluster
    }

    fn ring(&self, from: usize, to: usize) -> Option<&Ring> {
        self.rings
            .get(from.checked_mul(self.threads)?.checked_add(to)?)
    }

    fn wake(&self, to: usize) {
        if let (Some(pending), Some(waker)) = (self.pending.get(to), self.wakers.get(to)) {
            if !pending.swap(true, Ordering::AcqRel) {
                let _ = waker.wake();
            }
        }
    }

    /// Tells every loop to shut down (a signal reached one of them).
    pub fn shut_down_all(&self) {
        self.shutdown.store(true, Ordering::Release);
        for to in 0..self.threads {
            self.wake(to);
        }
    }

    /// Whether a loop received SIGINT/SIGTERM.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

/// One loop's end of the [`Links`].
pub struct Link {
    links: Arc<Links>,
    me: usize,
    /// What the rings held at the last wake-up; capacity for all of them.
    incoming: Vec<u8>,
    /// Records that could not be pushed (never relays; see the module doc).
    backlog: Vec<u8>,
    /// Records being retried; reused.
    retry: Vec<u8>,
    /// Loops written to since the last wake-up calls.
    to_wake: Vec<bool>,
}

impl Link {
    /// Loop `me`'s end.
    pub fn new(links: Arc<Links>, me: usize) -> Link {
        let threads = links.threads;
        Link {
            incoming: Vec::with_capacity(RING_BYTES * threads),
            backlog: Vec::new(),
            retry: Vec::new(),
            to_wake: vec![false; threads],
            links,
            me,
        }
    }

    /// Whether a loop received SIGINT/SIGTERM.
    pub fn shutting_down(&self) -> bool {
        self.links.shutting_down()
    }

    /// Tells every loop to shut down.
    pub fn shut_down_all(&self) {
        self.links.shut_down_all();
    }

    /// Carries the engine's records for other loops into their inboxes
    /// and wakes those loops.
    pub fn send(&mut self, engine: &mut Engine, now_ms: u64) {
        if !self.backlog.is_empty() {
            std::mem::swap(&mut self.backlog, &mut self.retry);
            let mut at = 0;
            while let Some(len) = self.retry.get(at..).and_then(record_len) {
                let record = self.retry.get(at..at + len).unwrap_or_default();
                if let Some(from) = push(
                    &self.links,
                    self.me,
                    &mut self.backlog,
                    &mut self.to_wake,
                    record,
                ) {
                    engine.relay_refused(from, now_ms);
                }
                at += len;
            }
            self.retry.clear();
        }
        let out = engine.cross_output();
        if !out.is_empty() {
            // Refusals are rare (a full inbox): collected during the walk,
            // which borrows the engine's output, and told afterwards.
            let mut refused = Vec::new();
            let mut at = 0;
            while let Some(len) = out.get(at..).and_then(record_len) {
                if let Some(from) = out.get(at..at + len).and_then(|r| self.push(r)) {
                    refused.push(from);
                }
                at += len;
            }
            engine.clear_cross_output();
            for from in refused {
                engine.relay_refused(from, now_ms);
            }
        }
        for (to, flag) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(flag) {
                self.links.wake(to);
            }
        }
    }

    /// Everything the other participants pushed to this one since the
    /// last call (for the cluster thread; the loops' [`Link::receive`]
    /// uses it too).
    pub fn take_incoming(&mut self) -> &[u8] {
        if let Some(pending) = self.links.pending.get(self.me) {
            pending.store(false, Ordering::Release);
        }
        self.incoming.clear();
        for from in 0..self.links.threads {
            if from != self.me {
                if let Some(ring) = self.links.ring(from, self.me) {
                    ring.take_all(&mut self.incoming);
                }
            }
        }
        &self.incoming
    }

    /// The cluster thread: pushes records (for the loops) and wakes their
    /// loops; the backlog is retried first. Returns the relays dropped for
    /// a full inbox (never `paired`/`left`: those wait in the backlog).
    pub fn push_records(&mut self, records: &[u8]) -> u64 {
        let mut dropped = 0;
        if !self.backlog.is_empty() {
            std::mem::swap(&mut self.backlog, &mut self.retry);
            let mut at = 0;
            while let Some(len) = self.retry.get(at..).and_then(record_len) {
                let record = self.retry.get(at..at + len).unwrap_or_default();
                push(
                    &self.links,
                    self.me,
                    &mut self.backlog,
                    &mut self.to_wake,
                    record,
                );
                at += len;
            }
            self.retry.clear();
        }
        let mut at = 0;
        while let Some(len) = records.get(at..).and_then(record_len) {
            if let Some(record) = records.get(at..at + len) {
                if self.push(record).is_some() {
                    dropped += 1;
                }
            }
            at += len;
        }
        for (to, flag) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(flag) {
                self.links.wake(to);
            }
        }
        dropped
    }

    /// Whether records wait in the backlog (retried by the next
    /// [`Link::push_records`]).
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    fn push(&mut self, record: &[u8]) -> Option<usize> {
        push(
            &self.links,
            self.me,
            &mut self.backlog,
            &mut self.to_wake,
            record,
        )
    }

    /// The loop was woken: every record in its inboxes goes to its engine.
    pub fn receive(&mut self, engine: &mut Engine, now_ms: u64) {
        self.take_incoming();
        let mut at = 0;
        while let Some(len) = self.incoming.get(at..).and_then(record_len) {
            if let Some(record) = self.incoming.get(at..at + len) {
                engine.cross_input(record, now_ms);
            }
            at += len;
        }
    }
}

/// Pushes one record toward its loop: Some(sender) when it is a relay that
/// was refused; a refused `paired`/`left`/nudge goes to the backlog.
fn push(
    links: &Links,
    me: usize,
    backlog: &mut Vec<u8>,
    to_wake: &mut [bool],
    record: &[u8],
) -> Option<usize> {
    let to = match record_thread(record)? {
        REMOTE => links.cluster?,
        to => to,
    };
    let relay = relay_sender(record);
    let waiting = backlog_for(backlog, to, links.cluster);
    let ring = links.ring(me, to)?;
    let pushed = !waiting && ring.push(record, if relay.is_some() { RESERVE } else { 0 });
    if pushed {
        if let Some(flag) = to_wake.get_mut(to) {
            *flag = true;
        }
        return None;
    }
    if relay.is_none() {
        backlog.extend_from_slice(record);
    }
    relay
}

/// Whether `backlog` holds something for participant `to`.
fn backlog_for(backlog: &[u8], to: usize, links_cluster: Option<usize>) -> bool {
    let mut at = 0;
    while let Some(len) = backlog.get(at..).and_then(record_len) {
        let thread = backlog.get(at..).and_then(record_thread);
        if thread == Some(to) || (thread == Some(REMOTE) && links_cluster == Some(to)) {
            return true;
        }
        at += len;
    }
    false
}
