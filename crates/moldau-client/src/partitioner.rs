//! Choosing a partition for a record the way Kafka's Java producer does, so that Moldau's
//! producer, Kafka's and librdkafka's `murmur2_random` put a key on the same partition.
//!
//! - Keyed records: `toPositive(murmur2(key)) % numPartitions` (Java
//!   `BuiltInPartitioner.partitionForKey`), with [`murmur2`] exactly as Kafka's
//!   `Utils.murmur2` and `toPositive(x) = x & 0x7fffffff`. An empty (non-null) key is
//!   hashed like any other.
//! - Keyless records: the sticky partitioner of KIP-480 (a random partition, kept until
//!   its batch is sent); the producer keeps that state and draws from [`random_partition`].

use crate::client::TopicInfo;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Kafka's 32-bit murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`): seed
/// `0x9747b28c`, little-endian 4-byte blocks, the tail folded in as Java's `switch`
/// fall-through does. Returns the hash as Java's signed `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java computes `seed ^ length` on ints; the length wraps the same way here.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Java's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows on
/// `i32::MIN`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition Kafka's Java producer (and librdkafka with
/// `partitioner=murmur2_random`) picks for `key` among `num_partitions`:
/// `toPositive(murmur2(key)) % num_partitions`, in `0..num_partitions`.
/// `num_partitions` must be positive; 0 or less gives 0.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    to_positive(murmur2(key)) % num_partitions
}

/// A uniformly random number in `0..n` (`n > 0`), from the standard library's randomly
/// keyed hasher: good enough to spread sticky partitions, not for cryptography.
fn random_below(n: u64) -> u64 {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
    h.finish() % n.max(1)
}

/// A random partition of `topic` for keyless records (KIP-480's "new sticky
/// partition"): one with a leader when there is any (Java picks among *available*
/// partitions), and not `previous` when another candidate exists, so that the stickiness
/// actually moves on. Returns 0 for a topic without partitions.
pub fn random_partition(topic: &TopicInfo, previous: Option<i32>) -> i32 {
    let with_leader: Vec<i32> = topic
        .partitions
        .iter()
        .filter(|p| p.leader >= 0)
        .map(|p| p.partition)
        .collect();
    let mut candidates = if with_leader.is_empty() {
        topic.partitions.iter().map(|p| p.partition).collect()
    } else {
        with_leader
    };
    if candidates.len() > 1 {
        candidates.retain(|p| Some(*p) != previous);
    }
    if candidates.is_empty() {
        return 0;
    }
    candidates[random_below(candidates.len() as u64) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::PartitionInfo;

    /// Kafka's `UtilsTest.testMurmur2` vectors.
    #[test]
    fn murmur2_matches_kafka_utils_test() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(
                murmur2(data),
                expected,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn keys_map_to_positive_hash_modulo_partitions() {
        // -973932308 & 0x7fffffff = 1173551340; 1173551340 % 7 = 3.
        assert_eq!(to_positive(-973_932_308), 1_173_551_340);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(partition_for_key(b"x", 1), 0);
        assert_eq!(partition_for_key(b"x", 0), 0);
        for n in 1..50 {
            for key in ["", "a", "ab", "abc", "abcd", "abcde", "key-12345"] {
                let p = partition_for_key(key.as_bytes(), n);
                assert!((0..n).contains(&p));
            }
        }
    }

    #[test]
    fn random_partition_prefers_led_partitions_and_moves_on() {
        let part = |partition, leader| PartitionInfo {
            partition,
            leader,
            leader_epoch: 0,
            replicas: vec![],
            isr: vec![],
        };
        let topic = TopicInfo {
            name: "t".into(),
            topic_id: uuid::Uuid::nil(),
            internal: false,
            partitions: vec![part(0, 1), part(1, -1), part(2, 1), part(3, 1)],
        };
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            let p = random_partition(&topic, Some(2));
            assert!(p == 0 || p == 3, "{p}");
            seen[p as usize] += 1;
        }
        assert!(seen[0] > 50 && seen[3] > 50, "{seen:?}");
        let single = TopicInfo {
            partitions: vec![part(0, 1)],
            ..topic.clone()
        };
        assert_eq!(random_partition(&single, Some(0)), 0);
        let empty = TopicInfo {
            partitions: vec![],
            ..topic
        };
        assert_eq!(random_partition(&empty, None), 0);
    }
}
