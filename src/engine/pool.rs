//! Recycled byte buffers, so steady-state traffic allocates nothing while
//! idle connections hold no buffer at all.
//!
//! A connection takes a buffer when it first has bytes to keep (unsent
//! output, a partial frame) and gives it back when it is empty again.

/// Buffers start at this capacity.
const INITIAL_CAPACITY: usize = 4 * 1024;
/// Buffers that grew past this are freed rather than kept.
const MAX_POOLED_CAPACITY: usize = 256 * 1024;
/// At most this many idle buffers are kept.
const MAX_POOLED: usize = 1024;

#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
}

impl BufferPool {
    /// Makes sure `buf` has room to grow without allocating in the common case.
    pub fn ensure(&mut self, buf: &mut Vec<u8>) {
        if buf.capacity() == 0 {
            *buf = self
                .free
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(INITIAL_CAPACITY));
        }
    }

    /// Takes `buf`'s allocation back if it is empty.
    pub fn release(&mut self, buf: &mut Vec<u8>) {
        if !buf.is_empty() || buf.capacity() == 0 {
            return;
        }
        let taken = std::mem::take(buf);
        if taken.capacity() <= MAX_POOLED_CAPACITY && self.free.len() < MAX_POOLED {
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
}
