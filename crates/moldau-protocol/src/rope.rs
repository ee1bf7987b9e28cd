//! An encode target that references record bytes instead of copying them.
//!
//! A Fetch response is mostly stored record batches. Encoding it into one `BytesMut`
//! copies every batch a second time in user space. [`Rope`] is a `kafka-protocol`
//! `ByteBufMut` that keeps a list of chunks: the encoder's own small writes go into a
//! growing tail buffer, but a `put_slice` of exactly one of the [`Bytes`] registered with
//! [`Rope::share`] becomes a reference to that `Bytes` (a reference-count bump). The
//! connection then writes the chunks in order.
//!
//! `kafka-protocol` writes a `bytes` field with one `put_slice` of the whole value, and
//! its message encoders never seek back (only the record-batch compressors use gaps), so
//! `seek` and `range` only need to work inside the tail; outside it they do nothing.

#![allow(unsafe_code)]

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;
use std::ops::Range;

/// Slices shorter than this are copied even when shared: a reference is not worth it.
const SHARE_MIN: usize = 4096;

/// Encoded bytes as a list of chunks (see the module docs).
#[derive(Debug, Default)]
pub struct Rope {
    chunks: Vec<Bytes>,
    tail: BytesMut,
    shared: Vec<Bytes>,
    len: usize,
}

impl Rope {
    /// An empty rope whose tail starts with `capacity` bytes reserved.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            tail: BytesMut::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// Registers `bytes`: a later `put_slice` of exactly these bytes (same address and
    /// length) is kept by reference instead of copied.
    pub fn share(&mut self, bytes: &Bytes) {
        if bytes.len() >= SHARE_MIN {
            self.shared.push(bytes.clone());
        }
    }

    /// Total encoded length, bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks, in order; their concatenation is the encoding.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.tail.is_empty() {
            self.chunks.push(self.tail.freeze());
        }
        self.chunks
    }

    fn tail_start(&self) -> usize {
        self.len - self.tail.len()
    }
}

// SAFETY: every method forwards to the tail `BytesMut` with the caller's arguments, and
// `len` mirrors the tail's growth, so the `BufMut` contract holds as it does for
// `BytesMut`.
unsafe impl BufMut for Rope {
    fn remaining_mut(&self) -> usize {
        usize::MAX - self.len
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of the tail's `chunk_mut`.
        unsafe { self.tail.advance_mut(cnt) };
        self.len += cnt;
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.tail.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SHARE_MIN {
            let found = self
                .shared
                .iter()
                .position(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len());
            if let Some(i) = found {
                let bytes = self.shared.swap_remove(i);
                if !self.tail.is_empty() {
                    let tail = self.tail.split();
                    self.chunks.push(tail.freeze());
                }
                self.len += bytes.len();
                self.chunks.push(bytes);
                return;
            }
        }
        self.tail.extend_from_slice(src);
        self.len += src.len();
    }
}

impl ByteBufMut for Rope {
    fn offset(&self) -> usize {
        self.len
    }

    fn seek(&mut self, offset: usize) {
        let start = self.tail_start();
        if offset >= start {
            self.tail.resize(offset - start, 0);
            self.len = offset;
        }
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = self.tail_start();
        if r.start >= start && r.start <= r.end && r.end - start <= self.tail.len() {
            return &mut self.tail[r.start - start..r.end - start];
        }
        &mut []
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_bytes_are_referenced_and_order_is_kept() {
        let big = Bytes::from(vec![7u8; 10_000]);
        let other = Bytes::from(vec![9u8; 10_000]);
        let mut rope = Rope::with_capacity(16);
        rope.share(&big);
        rope.put_i32(5);
        rope.put_slice(&big);
        rope.put_slice(&other); // not shared: copied
        rope.put_u8(1);
        assert_eq!(rope.len(), 4 + 10_000 + 10_000 + 1);
        let chunks = rope.into_chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), big.as_ptr(), "referenced, not copied");
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let mut expected = 5i32.to_be_bytes().to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(&other);
        expected.push(1);
        assert_eq!(joined, expected);
    }

    #[test]
    fn seek_and_range_stay_inside_the_tail() {
        let mut rope = Rope::default();
        rope.put_slice(&[1, 2, 3]);
        rope.range(1..3).copy_from_slice(&[8, 9]);
        rope.seek(5);
        assert_eq!(rope.len(), 5);
        assert!(rope.range(10..20).is_empty());
        assert_eq!(&rope.into_chunks()[0][..], &[1, 8, 9, 0, 0]);
    }
}
