//! Record-batch compression codecs, shared by the broker and Moldau's client.
//!
//! The broker decompresses only on the few paths that must look inside a compressed
//! batch (ListOffsets by timestamp and max-timestamp, the log cleaner, coordinator
//! replay) and compresses only the cleaner's rewritten batches; the produce and fetch
//! paths never decompress. The client compresses what it produces and decompresses what
//! it fetches.
//!
//! Every codec is read with an output bound, [`MAX_DECOMPRESSED_BYTES`]: a producer can
//! store a small batch with a valid CRC that inflates to gigabytes, and a timestamp
//! lookup must not turn that into an allocation. A batch over the bound counts as
//! undecompressable, and the lookup moves on to the next batch.
//!
//! Formats (protocol guide, "Record Batch"; Kafka's codecs): gzip stream, snappy in the
//! xerial framing Kafka's Java client writes (or raw snappy when the magic is absent, as
//! the Java client accepts), LZ4 frame, zstd frame.

use crate::batch::Compression;
use std::io::{Read, Write};

/// Most bytes one batch may decompress to here (64 MiB; Kafka's own batches are capped
/// at `max.message.bytes`, 1 MiB by default, compressed).
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;
/// Uncompressed bytes per xerial block (snappy-java's `SnappyOutputStream` default).
const XERIAL_BLOCK: usize = 32 * 1024;

/// Decompresses a batch's records section; `None` for an unknown codec, bad data, or
/// output above [`MAX_DECOMPRESSED_BYTES`]. Has the shape of `moldau_storage::Decompress`.
pub fn decompress(codec: Compression, compressed: &[u8]) -> Option<Vec<u8>> {
    decompress_bounded(codec, compressed, MAX_DECOMPRESSED_BYTES)
}

/// [`decompress`] with an explicit output bound, bytes.
pub fn decompress_bounded(codec: Compression, compressed: &[u8], limit: usize) -> Option<Vec<u8>> {
    match codec {
        Compression::None => (compressed.len() <= limit).then(|| compressed.to_vec()),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(compressed), limit),
        Compression::Zstd => {
            read_bounded(zstd::stream::read::Decoder::new(compressed).ok()?, limit)
        }
        Compression::Lz4 => read_bounded(lz4::Decoder::new(compressed).ok()?, limit),
        Compression::Snappy => snappy(compressed, limit),
        Compression::Unknown(_) => None,
    }
}

/// Compresses a records section with `codec` as Kafka's Java producer writes it: gzip
/// stream (default level), snappy in xerial framing (32 KiB blocks), LZ4 frame (64 KiB
/// independent blocks, no checksums, as Kafka's `Lz4BlockOutputStream`), zstd frame
/// (level 3, Kafka's default). `Compression::None` returns the bytes unchanged; `None`
/// for an unknown codec or an encoder failure. Has the shape of `moldau_storage::Compress`
/// (the log cleaner recompresses the batches it rewrites with it).
pub fn compress(codec: Compression, raw: &[u8]) -> Option<Vec<u8>> {
    match codec {
        Compression::None => Some(raw.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(raw).ok()?;
            e.finish().ok()
        }
        Compression::Zstd => zstd::stream::encode_all(raw, 3).ok(),
        Compression::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .ok()?;
            e.write_all(raw).ok()?;
            let (out, result) = e.finish();
            result.ok()?;
            Some(out)
        }
        Compression::Snappy => {
            let mut encoder = snap::raw::Encoder::new();
            let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + raw.len() / 2);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
            for chunk in raw.chunks(XERIAL_BLOCK) {
                let block = encoder.compress_vec(chunk).ok()?;
                out.extend_from_slice(&u32::try_from(block.len()).ok()?.to_be_bytes());
                out.extend_from_slice(&block);
            }
            Some(out)
        }
        Compression::Unknown(_) => None,
    }
}

/// Reads at most `limit` bytes; more than that is a failure, not a truncation.
fn read_bounded(reader: impl Read, limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut out).ok()?;
    (out.len() <= limit).then_some(out)
}

fn snappy(compressed: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut decoder = snap::raw::Decoder::new();
    let mut block = |input: &[u8], out: &mut Vec<u8>| -> Option<()> {
        let len = snap::raw::decompress_len(input).ok()?;
        if out.len().checked_add(len)? > limit {
            return None;
        }
        let start = out.len();
        out.resize(start + len, 0);
        let written = decoder.decompress(input, &mut out[start..]).ok()?;
        out.truncate(start + written);
        Some(())
    };
    let mut out = Vec::new();
    if !compressed.starts_with(XERIAL_MAGIC) {
        block(compressed, &mut out)?;
        return Some(out);
    }
    let mut rest = compressed.get(XERIAL_HEADER_LEN..)?;
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let chunk = rest.get(4..4usize.checked_add(len)?)?;
        block(chunk, &mut out)?;
        rest = &rest[4 + len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_respects_the_bound() {
        let data = sample();
        let gzip = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&data).expect("gzip");
            e.finish().expect("gzip")
        };
        let zstd = zstd::stream::encode_all(&data[..], 3).expect("zstd");
        let lz4 = {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
            e.write_all(&data).expect("lz4");
            let (out, r) = e.finish();
            r.expect("lz4");
            out
        };
        let raw_snappy = snap::raw::Encoder::new()
            .compress_vec(&data)
            .expect("snappy");
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for chunk in data.chunks(32 * 1024) {
            let c = snap::raw::Encoder::new()
                .compress_vec(chunk)
                .expect("snappy");
            xerial.extend_from_slice(&(c.len() as u32).to_be_bytes());
            xerial.extend_from_slice(&c);
        }
        let cases = [
            (Compression::Gzip, gzip),
            (Compression::Zstd, zstd),
            (Compression::Lz4, lz4),
            (Compression::Snappy, raw_snappy),
            (Compression::Snappy, xerial),
        ];
        for (codec, compressed) in cases {
            let out = decompress(codec, &compressed);
            assert!(out.as_deref() == Some(&data[..]), "{codec:?} round trip");
            let bounded = decompress_bounded(codec, &compressed, data.len() - 1);
            assert!(bounded.is_none(), "{codec:?} over the bound");
            // A torn stream never yields the whole data (lz4 returns what it could read).
            let torn = decompress(codec, &compressed[..compressed.len() / 2]);
            assert!(torn.map_or(0, |t| t.len()) < data.len(), "{codec:?} torn");
        }
        assert_eq!(decompress(Compression::Unknown(6), &[1, 2, 3]), None);
    }

    #[test]
    fn compress_round_trips_in_every_codec() {
        let data = sample();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compress(codec, &data).expect("compress");
            if codec != Compression::None {
                assert!(packed.len() < data.len(), "{codec:?} compresses");
            }
            let out = decompress(codec, &packed);
            assert!(out.as_deref() == Some(&data[..]), "{codec:?} round trip");
            let empty = compress(codec, &[]).expect("compress nothing");
            assert_eq!(
                decompress(codec, &empty).as_deref(),
                Some(&[][..]),
                "{codec:?} empty"
            );
        }
        let snappy = compress(Compression::Snappy, &data).expect("snappy");
        assert!(snappy.starts_with(XERIAL_MAGIC), "xerial framing");
        assert_eq!(compress(Compression::Unknown(5), &data), None);
    }

    #[test]
    fn a_bomb_is_refused_without_inflating_it() {
        let zeros = vec![0u8; 200 << 20];
        let bomb = zstd::stream::encode_all(&zeros[..], 19).expect("zstd");
        assert!(bomb.len() < 1 << 20, "a small batch: {} bytes", bomb.len());
        assert_eq!(decompress(Compression::Zstd, &bomb), None);
    }
}
