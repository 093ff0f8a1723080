//! What the engines of one process share with `--threads N`: the
//! matchmaker, the connection count behind `--max-connections`, and each
//! loop's counters for `/metrics`. Nothing here is touched per relayed
//! message: the matchmaker on joins, `next` and leaves; the connection
//! count on accept and close; the counters once per loop turn that read or
//! wrote (a copy into the loop's own slot, read by whoever renders
//! `/metrics`).

use super::metrics::Totals;
use crate::chat::matchmaker::Matchmaker;
use crate::chat::ChatMetrics;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Shared by every engine of the process.
#[derive(Debug)]
pub struct Process {
    pub(super) matchmaker: Arc<Mutex<Matchmaker>>,
    open: AtomicUsize,
    max_connections: usize,
    /// One per loop, written by its loop only.
    snapshots: Box<[Mutex<Snapshot>]>,
    /// `--redis`: the cluster thread's counters for `/metrics`.
    cluster: Option<Arc<crate::cluster::view::ClusterView>>,
}

/// One loop's counters as last published.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshot {
    pub totals: Totals,
    pub chat: ChatMetrics,
    /// The loop's open connections.
    pub open: usize,
}

impl Process {
    /// For `threads` loops; `interest_wait_ms` and `pair_key` as in
    /// [`Matchmaker::new`].
    pub fn new(
        threads: usize,
        max_connections: usize,
        interest_wait_ms: u64,
        seed: super::Seed,
        safety: crate::safety::SafetyHandle,
    ) -> Process {
        let matchmaker = Matchmaker::new(interest_wait_ms, seed.pair_key)
            .with_safety(safety, seed.unix_start_s.saturating_mul(1000));
        Process {
            matchmaker: Arc::new(Mutex::new(matchmaker)),
            open: AtomicUsize::new(0),
            max_connections,
            snapshots: (0..threads.max(1)).map(|_| Mutex::default()).collect(),
            cluster: None,
        }
    }

    /// `--redis`: the matchmaker works in cluster mode (see
    /// `chat::matchmaker::cluster`) and `/metrics` shows `view`.
    pub fn join_cluster(
        &mut self,
        view: Arc<crate::cluster::view::ClusterView>,
        enable: impl FnOnce(&mut Matchmaker),
    ) {
        enable(&mut self.matchmaker.lock().unwrap_or_else(|e| e.into_inner()));
        self.cluster = Some(view);
    }

    /// The shared matchmaker (the cluster thread's way in).
    pub fn matchmaker(&self) -> Arc<Mutex<Matchmaker>> {
        self.matchmaker.clone()
    }

    /// The cluster's series for `/metrics` (nothing without `--redis`).
    pub(super) fn render_cluster(&self, out: &mut String) {
        if let Some(view) = &self.cluster {
            view.render(out);
        }
    }

    /// Loops sharing this.
    pub fn threads(&self) -> usize {
        self.snapshots.len()
    }

    /// Takes one connection of the process-wide limit; false when full.
    pub(super) fn try_open(&self) -> bool {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives one connection back.
    pub(super) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Open connections in the whole process.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub(super) fn snapshot(&self, thread: usize) -> Option<MutexGuard<'_, Snapshot>> {
        self.snapshots
            .get(thread)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `chat_loop_open_connections{loop="i"}`: how evenly accepting spreads
    /// the connections over the loops.
    pub(super) fn render_loops(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str(
            "# HELP chat_loop_open_connections Open TCP connections per event loop.\n\
             # TYPE chat_loop_open_connections gauge\n",
        );
        for (i, slot) in self.snapshots.iter().enumerate() {
            let open = slot.lock().unwrap_or_else(|e| e.into_inner()).open;
            let _ = writeln!(out, "chat_loop_open_connections{{loop=\"{i}\"}} {open}");
        }
    }

    /// Every loop's counters added up.
    pub(super) fn sum(&self) -> Snapshot {
        let mut sum = Snapshot::default();
        for slot in self.snapshots.iter() {
            let s = slot.lock().unwrap_or_else(|e| e.into_inner());
            sum.totals.add(&s.totals);
            sum.chat.add(&s.chat);
        }
        sum
    }
}
