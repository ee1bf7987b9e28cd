//! The log cleaner's key → latest-offset map (Kafka `SkimpyOffsetMap`).

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Bytes one hash-table bucket costs: a 16-byte key hash, an 8-byte offset and one
/// control byte (the std `HashMap` is a SwissTable).
pub(crate) const BUCKET_BYTES: usize = 16 + 8 + 1;

/// The keys' hashes are already uniformly random: the table uses their low 64 bits.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; fold anything else so the hasher stays total.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// Maps a record key to the offset of its latest occurrence in the dirty range.
///
/// Like Kafka's `SkimpyOffsetMap` it stores a 128-bit hash of each key instead of the
/// key (Kafka uses MD5): two SipHash-1-3 digests under keys drawn at random for every
/// map, so keys chosen by producers cannot be made to collide, and an accidental
/// collision (which would make the cleaner drop a record whose key only shares the
/// hash) has probability about `n² / 2¹²⁹` for `n` keys.
///
/// Memory: the table is limited to the largest power-of-two bucket count whose
/// buckets ([`BUCKET_BYTES`] each) fit in `dedupe_buffer_bytes`, filled to at most 7/8
/// (the table's own load factor), so it never reallocates beyond that size.
pub(crate) struct OffsetMap {
    map: HashMap<u128, i64, BuildHasherDefault<PassThrough>>,
    hashers: (RandomState, RandomState),
    max_entries: usize,
}

impl OffsetMap {
    /// An empty map whose table may use up to `dedupe_buffer_bytes` bytes.
    pub(crate) fn new(dedupe_buffer_bytes: usize) -> OffsetMap {
        let buckets = (dedupe_buffer_bytes / BUCKET_BYTES).max(1);
        // Largest power of two <= buckets.
        let buckets = 1usize << (usize::BITS - 1 - buckets.leading_zeros());
        OffsetMap {
            map: HashMap::default(),
            hashers: (RandomState::new(), RandomState::new()),
            max_entries: buckets / 8 * 7,
        }
    }

    /// Most distinct keys the map takes within its memory budget.
    pub(crate) fn capacity(&self) -> usize {
        self.max_entries
    }

    /// Distinct keys held.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The 128-bit hash the map uses for `key`.
    pub(crate) fn hash(&self, key: &[u8]) -> u128 {
        let hi = self.hashers.0.hash_one(key);
        let lo = self.hashers.1.hash_one(key);
        (u128::from(hi) << 64) | u128::from(lo)
    }

    /// True if `hash` is held.
    pub(crate) fn contains(&self, hash: u128) -> bool {
        self.map.contains_key(&hash)
    }

    /// Records `offset` for `hash`, keeping the larger offset if one is already held.
    pub(crate) fn put(&mut self, hash: u128, offset: i64) {
        match self.map.entry(hash) {
            Entry::Occupied(mut e) => {
                if *e.get() < offset {
                    e.insert(offset);
                }
            }
            Entry::Vacant(e) => {
                e.insert(offset);
            }
        }
    }

    /// The latest offset recorded for `hash`.
    pub(crate) fn get(&self, hash: u128) -> Option<i64> {
        self.map.get(&hash).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_latest_offset_and_respects_budget() {
        let mut m = OffsetMap::new(1_000);
        // 1000 / 25 = 40 buckets -> 32 -> 28 entries.
        assert_eq!(m.capacity(), 28);
        let a = m.hash(b"a");
        let b = m.hash(b"b");
        assert_ne!(a, b);
        assert_eq!(a, m.hash(b"a"));
        m.put(a, 5);
        m.put(a, 3);
        m.put(b, 9);
        assert_eq!((m.get(a), m.get(b), m.len()), (Some(5), Some(9), 2));
        assert!(m.contains(a) && !m.contains(m.hash(b"c")));
        assert_eq!(OffsetMap::new(0).capacity(), 0);
        assert_eq!(OffsetMap::new(128 << 20).capacity(), (1 << 22) / 8 * 7);
    }
}
