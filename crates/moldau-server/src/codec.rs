//! Record decompression for the few broker paths that must look inside a compressed
//! batch (ListOffsets by timestamp and max-timestamp). The produce and fetch paths never
//! decompress. Codecs come from the `kafka-protocol` crate (gzip, snappy with Kafka's
//! xerial framing, lz4 frame, zstd).

use bytes::Bytes;
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use moldau_protocol::batch::Compression;

/// Decompresses a batch's records section; `None` for an unknown codec or bad data.
/// Matches [`moldau_storage::Decompress`].
pub fn decompress(codec: Compression, compressed: &[u8]) -> Option<Vec<u8>> {
    let mut input = Bytes::copy_from_slice(compressed);
    let take = |b: &mut Bytes| Ok(b.to_vec());
    let out = match codec {
        Compression::None => Ok(compressed.to_vec()),
        Compression::Gzip => Gzip::decompress(&mut input, take),
        Compression::Snappy => Snappy::decompress(&mut input, take),
        Compression::Lz4 => Lz4::decompress(&mut input, take),
        Compression::Zstd => Zstd::decompress(&mut input, take),
        Compression::Unknown(_) => return None,
    };
    out.ok()
}
