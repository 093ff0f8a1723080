//! Bytes owed to one connection's socket.
//!
//! Appending takes a buffer from the pool only when there is something to
//! send; a partial write advances a read offset instead of moving the rest
//! to the front (a slow reader owed ~1 MiB would otherwise cost a memmove
//! of up to 1 MiB per write); the buffer goes back to the pool the moment
//! it is drained.

use super::pool::BufferPool;

/// A buffer kept after a partial write is shrunk when its capacity is more
/// than this many times what it still holds (plus [`FIT_SLACK`]), so a few
/// unsent bytes never pin a large allocation.
const FIT_RATIO: usize = 4;
/// Capacity below this is never worth shrinking.
const FIT_SLACK: usize = 4 * 1024;

#[derive(Debug, Default)]
pub(super) struct SendBuffer {
    buf: Vec<u8>,
    /// Bytes of `buf` already written to the socket.
    sent: usize,
}

impl SendBuffer {
    /// The bytes still to write.
    pub(super) fn unsent(&self) -> &[u8] {
        self.buf.get(self.sent..).unwrap_or_default()
    }

    pub(super) fn unsent_len(&self) -> usize {
        self.buf.len().saturating_sub(self.sent)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.unsent_len() == 0
    }

    /// The buffer to append to, taken from the pool if there was none.
    pub(super) fn writer(&mut self, pool: &mut BufferPool) -> &mut Vec<u8> {
        pool.ensure(&mut self.buf);
        &mut self.buf
    }

    /// `n` more bytes went out. A drained buffer goes back to the pool; a
    /// kept one is compacted only once the written part is at least as long
    /// as the unsent rest, so each byte is moved at most once on average.
    pub(super) fn consume(&mut self, n: usize, pool: &mut BufferPool) {
        self.sent = self.sent.saturating_add(n).min(self.buf.len());
        if self.sent == self.buf.len() {
            self.clear(pool);
            return;
        }
        if self.sent >= self.unsent_len() {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        self.fit();
    }

    /// Drops everything owed and gives the allocation back.
    pub(super) fn clear(&mut self, pool: &mut BufferPool) {
        self.buf.clear();
        self.sent = 0;
        pool.release(&mut self.buf);
    }

    /// Shrinks a buffer that holds far less than its capacity.
    fn fit(&mut self) {
        let held = self.unsent_len();
        if self.buf.capacity() > held.saturating_mul(FIT_RATIO).saturating_add(FIT_SLACK) {
            self.buf.drain(..self.sent);
            self.sent = 0;
            self.buf.shrink_to(held.saturating_mul(2));
        }
    }

    /// Bytes of heap this buffer holds.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_writes_advance_an_offset_without_moving_bytes() {
        let mut pool = BufferPool::default();
        let mut out = SendBuffer::default();
        out.writer(&mut pool).extend_from_slice(&[7u8; 100_000]);
        let start = out.unsent().as_ptr();
        out.consume(10_000, &mut pool);
        // The rest was not moved to the front: it is read in place.
        assert_eq!(out.unsent().as_ptr(), start.wrapping_add(10_000));
        assert_eq!(out.unsent_len(), 90_000);
        out.consume(30_000, &mut pool);
        assert_eq!(out.unsent().as_ptr(), start.wrapping_add(40_000));
        // Once the written part outweighs the rest, the rest moves once.
        out.consume(20_000, &mut pool);
        assert_eq!(out.unsent_len(), 40_000);
        assert_eq!(out.unsent().as_ptr(), start);
        out.consume(40_000, &mut pool);
        assert!(out.is_empty());
        assert_eq!(out.capacity(), 0, "a drained buffer goes back to the pool");
    }

    #[test]
    fn a_few_unsent_bytes_do_not_pin_a_big_buffer() {
        let mut pool = BufferPool::default();
        let mut out = SendBuffer::default();
        out.writer(&mut pool).extend_from_slice(&[1u8; 200_000]);
        out.consume(199_990, &mut pool);
        assert_eq!(out.unsent(), &[1u8; 10]);
        assert!(out.capacity() <= FIT_SLACK, "kept {} bytes", out.capacity());
    }

    #[test]
    fn drained_buffers_are_reused() {
        let mut pool = BufferPool::default();
        let mut out = SendBuffer::default();
        out.writer(&mut pool).extend_from_slice(b"hello");
        out.consume(5, &mut pool);
        assert_eq!(pool.pooled(), 1);
        out.writer(&mut pool).extend_from_slice(b"again");
        assert_eq!(pool.pooled(), 0);
        assert_eq!(out.unsent(), b"again");
    }
}
