//! The request decoders cost nothing for a count they cannot back with bytes, under the
//! system allocator (no guard: the allocator here only counts): bodies whose array
//! counts, string lengths and varints say "2^31" make no allocation above 64 KiB.
//!
//! Checked against the bug it exists for: with `kafka-protocol` as released (its array
//! decoders reserve `Vec::with_capacity(count)` before reading an element), this test
//! process aborts with "memory allocation of … bytes failed" at the first Metadata v1
//! body; with the patch in `vendor/kafka-protocol` the largest allocation is small.

#![allow(unsafe_code)]

use bytes::Bytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, noting the largest single request.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's guarantees, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

/// Bodies that start with a huge count in every encoding the protocol uses: int32
/// `0x7fffffff` (arrays, bytes), int16 `0x7fff` (strings), and unsigned varints of
/// 2^31 (compact arrays and strings in flexible versions).
fn hostile_bodies() -> Vec<Bytes> {
    let int32 = [0x7f, 0xff, 0xff, 0xff].repeat(8);
    let varint = [0xff, 0xff, 0xff, 0xff, 0x07].repeat(8);
    let mut mixed = Vec::new();
    for _ in 0..4 {
        mixed.extend_from_slice(&[0x00, 0x01]);
        mixed.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        mixed.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    }
    vec![int32.into(), varint.into(), mixed.into()]
}

/// Decodes every hostile body as `T` at each of `versions` (a body may even decode:
/// a count of -1 is a null array), and checks that no allocation was large.
fn refuses<T: Decodable>(name: &str, versions: std::ops::RangeInclusive<i16>) {
    for version in versions {
        for body in hostile_bodies() {
            LARGEST.store(0, Ordering::Relaxed);
            let mut buf = body.clone();
            let _ = T::decode(&mut buf, version);
            let largest = LARGEST.load(Ordering::Relaxed);
            assert!(
                largest <= 64 * 1024,
                "{name} v{version}: a {}-byte body made an allocation of {largest} bytes",
                body.len()
            );
        }
    }
}

#[test]
fn huge_counts_cost_nothing() {
    refuses::<MetadataRequest>("Metadata", 1..=12);
    refuses::<ProduceRequest>("Produce", 3..=11);
    refuses::<FetchRequest>("Fetch", 4..=16);
    refuses::<ListOffsetsRequest>("ListOffsets", 1..=8);
    refuses::<CreateTopicsRequest>("CreateTopics", 2..=7);
    refuses::<DeleteTopicsRequest>("DeleteTopics", 1..=6);
    refuses::<OffsetCommitRequest>("OffsetCommit", 2..=9);
    refuses::<OffsetFetchRequest>("OffsetFetch", 1..=9);
    refuses::<JoinGroupRequest>("JoinGroup", 0..=9);
    refuses::<SyncGroupRequest>("SyncGroup", 0..=5);
    refuses::<DescribeGroupsRequest>("DescribeGroups", 0..=5);
    refuses::<DescribeConfigsRequest>("DescribeConfigs", 1..=4);
    refuses::<IncrementalAlterConfigsRequest>("IncrementalAlterConfigs", 0..=1);
    refuses::<CreateAclsRequest>("CreateAcls", 1..=3);
    refuses::<AddPartitionsToTxnRequest>("AddPartitionsToTxn", 0..=5);
    refuses::<TxnOffsetCommitRequest>("TxnOffsetCommit", 0..=4);
    refuses::<DeleteRecordsRequest>("DeleteRecords", 0..=2);
    refuses::<AlterClientQuotasRequest>("AlterClientQuotas", 0..=1);
    refuses::<AlterUserScramCredentialsRequest>("AlterUserScramCredentials", 0..=0);
    refuses::<WriteTxnMarkersRequest>("WriteTxnMarkers", 0..=1);
}
