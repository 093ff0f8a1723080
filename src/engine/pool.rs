//! Recycled byte buffers, so steady-state traffic allocates nothing while
//! idle connections hold no buffer at all.
//!
//! A connection takes a buffer when it first has bytes to keep (unsent
//! output, a partial frame) and gives it back when it is empty again.

/// Buffers start at this capacity.
const INITIAL_CAPACITY: usize = 4 * 1024;
/// Buffers that grew past this (one default-size message and its frame
/// header) are freed rather than kept.
const MAX_POOLED_CAPACITY: usize = 64 * 1024 + 16;
/// At most this many idle buffers are kept. A turn takes and gives back a
/// buffer per connection it writes to, flushed at once; only connections
/// whose output is stuck keep theirs, so a few dozen serve any steady load.
const MAX_POOLED: usize = 64;
/// And at most this many bytes in all (64 small buffers, or four of the
/// largest): memory kept for traffic that may not come back is bounded, so
/// a burst of large messages does not leave megabytes behind.
const MAX_POOLED_BYTES: usize = 256 * 1024;

#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
    /// Capacity of the buffers in `free`, summed.
    bytes: usize,
}

impl BufferPool {
    /// Makes sure `buf` has room to grow without allocating in the common case.
    pub fn ensure(&mut self, buf: &mut Vec<u8>) {
        if buf.capacity() == 0 {
            *buf = match self.free.pop() {
                Some(pooled) => {
                    self.bytes -= pooled.capacity();
                    pooled
                }
                None => Vec::with_capacity(INITIAL_CAPACITY),
            };
        }
    }

    /// Takes `buf`'s allocation back if it is empty.
    pub fn release(&mut self, buf: &mut Vec<u8>) {
        if !buf.is_empty() || buf.capacity() == 0 {
            return;
        }
        let taken = std::mem::take(buf);
        let capacity = taken.capacity();
        if capacity <= MAX_POOLED_CAPACITY
            && self.free.len() < MAX_POOLED
            && self.bytes + capacity <= MAX_POOLED_BYTES
        {
            self.bytes += capacity;
            self.free.push(taken);
        }
    }

    #[cfg(test)]
    pub fn pooled(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_recycled() {
        let mut pool = BufferPool::default();
        let mut a = Vec::new();
        pool.ensure(&mut a);
        assert!(a.capacity() >= INITIAL_CAPACITY);
        let ptr = a.as_ptr();
        pool.release(&mut a);
        assert_eq!(a.capacity(), 0);
        let mut b = Vec::new();
        pool.ensure(&mut b);
        assert_eq!(b.as_ptr(), ptr);
    }

    #[test]
    fn non_empty_buffers_are_kept() {
        let mut pool = BufferPool::default();
        let mut a = vec![1u8];
        pool.release(&mut a);
        assert_eq!(a, vec![1u8]);
        assert_eq!(pool.pooled(), 0);
    }

    #[test]
    fn huge_buffers_are_freed() {
        let mut pool = BufferPool::default();
        let mut a: Vec<u8> = Vec::with_capacity(MAX_POOLED_CAPACITY * 2);
        pool.release(&mut a);
        assert_eq!(pool.pooled(), 0);
    }

    #[test]
    fn pooled_bytes_are_bounded() {
        let mut pool = BufferPool::default();
        for _ in 0..10 {
            let mut big: Vec<u8> = Vec::with_capacity(64 * 1024);
            pool.release(&mut big);
        }
        assert_eq!(pool.pooled(), 4, "4 x 64 KiB fill the 256 KiB");
        let mut small: Vec<u8> = Vec::with_capacity(INITIAL_CAPACITY);
        pool.release(&mut small);
        assert_eq!(pool.pooled(), 4);
        let mut taken = Vec::new();
        pool.ensure(&mut taken);
        let mut small: Vec<u8> = Vec::with_capacity(INITIAL_CAPACITY);
        pool.release(&mut small);
        assert_eq!(pool.bytes, 3 * 64 * 1024 + INITIAL_CAPACITY);
    }
}
