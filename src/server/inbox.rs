//! A fixed-capacity byte ring with one writer thread and one reader
//! thread: the inbox one event loop keeps for each other loop.
//!
//! The writer appends whole records ([`Ring::push`]); the reader takes
//! every byte written so far in one go ([`Ring::take_all`]) into a buffer
//! of the ring's capacity that it reuses, so neither side allocates nor
//! locks. Bound: [`Ring::capacity`] bytes in flight; a record that does
//! not fit is refused, never queued elsewhere by the ring.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Single-producer single-consumer byte ring (see the module doc).
pub struct Ring {
    /// `capacity` bytes; zeroed by the allocator, so pages become resident
    /// only as far as the ring is ever filled.
    buf: Box<[UnsafeCell<u8>]>,
    /// Bytes taken by the reader since creation (only the reader stores).
    head: AtomicUsize,
    /// Bytes pushed by the writer since creation (only the writer stores).
    tail: AtomicUsize,
}

// SAFETY: the writer only writes bytes in [tail, head + capacity), which
// the reader does not read until `tail` is published past them (Release /
// Acquire); the reader only reads [head, tail), which the writer does not
// touch until `head` is published past them. One writer thread and one
// reader thread per ring is the caller's contract (`Link`: ring (a, b) is
// written by loop a and read by loop b only).
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring of `capacity` bytes (a power of two, at least 64).
    pub fn new(capacity: usize) -> Ring {
        let capacity = capacity.max(64).next_power_of_two();
        let zeroed: Box<[u8]> = vec![0u8; capacity].into_boxed_slice();
        // SAFETY: UnsafeCell<u8> has the same layout as u8
        // (repr(transparent)), so the slice reinterprets in place.
        let buf = unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [UnsafeCell<u8>]) };
        Ring {
            buf,
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// The bound on bytes in flight.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Free bytes, as the writer sees them (the reader may free more).
    pub fn free(&self) -> usize {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        self.capacity() - tail.wrapping_sub(head)
    }

    /// Writer only: appends `record` whole, or nothing (false) when fewer
    /// than `record.len() + keep_free` bytes are free.
    pub fn push(&self, record: &[u8], keep_free: usize) -> bool {
        let cap = self.capacity();
        let tail = self.tail.load(Ordering::Relaxed);
        if self.free() < record.len().saturating_add(keep_free) {
            return false;
        }
        let at = tail & (cap - 1);
        let first = record.len().min(cap - at);
        let base = UnsafeCell::raw_get(self.buf.as_ptr());
        // SAFETY: [at, at + first) and [0, len - first) lie inside the
        // buffer and in the free region (checked above); see `impl Sync`.
        unsafe {
            std::ptr::copy_nonoverlapping(record.as_ptr(), base.add(at), first);
            std::ptr::copy_nonoverlapping(record.as_ptr().add(first), base, record.len() - first);
        }
        self.tail
            .store(tail.wrapping_add(record.len()), Ordering::Release);
        true
    }

    /// Reader only: appends everything pushed so far to `into` (which
    /// should have [`Ring::capacity`] spare capacity so it never grows).
    pub fn take_all(&self, into: &mut Vec<u8>) {
        let cap = self.capacity();
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let len = tail.wrapping_sub(head);
        if len == 0 {
            return;
        }
        let at = head & (cap - 1);
        let first = len.min(cap - at);
        let base = UnsafeCell::raw_get(self.buf.as_ptr()) as *const u8;
        // SAFETY: [head, tail) was published by the writer (Acquire above)
        // and is not written again until `head` moves past it.
        unsafe {
            into.extend_from_slice(std::slice::from_raw_parts(base.add(at), first));
            into.extend_from_slice(std::slice::from_raw_parts(base, len - first));
        }
        self.head.store(tail, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_whole_and_in_order_across_the_wrap() {
        let ring = Ring::new(64);
        let mut out = Vec::with_capacity(64);
        let mut expected = Vec::new();
        for i in 0..100u8 {
            let record = vec![i; usize::from(i % 7) + 1];
            assert!(ring.push(&record, 0));
            expected.extend_from_slice(&record);
            if i % 3 == 0 {
                ring.take_all(&mut out);
            }
        }
        ring.take_all(&mut out);
        assert_eq!(out, expected);
    }

    #[test]
    fn a_full_ring_refuses_and_keeps_what_it_holds() {
        let ring = Ring::new(64);
        assert!(ring.push(&[1; 60], 0));
        assert!(!ring.push(&[2; 5], 0));
        assert!(!ring.push(&[2; 1], 4));
        assert!(ring.push(&[3; 4], 0));
        let mut out = Vec::new();
        ring.take_all(&mut out);
        assert_eq!(out.len(), 64);
        assert_eq!(ring.free(), 64);
    }

    #[test]
    fn one_writer_and_one_reader_thread_see_every_byte_in_order() {
        let ring = std::sync::Arc::new(Ring::new(256));
        let writer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut n = 0u32;
                while n < 20_000 {
                    if ring.push(&n.to_le_bytes(), 0) {
                        n += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut got = Vec::with_capacity(256);
        let mut next = 0u32;
        while next < 20_000 {
            got.clear();
            ring.take_all(&mut got);
            for chunk in got.chunks(4) {
                assert_eq!(chunk, next.to_le_bytes());
                next += 1;
            }
            std::thread::yield_now();
        }
        writer.join().unwrap();
    }
}
