//! Record decompression for the few broker paths that must look inside a compressed
//! batch (ListOffsets by timestamp and max-timestamp). The produce and fetch paths never
//! decompress.
//!
//! Every codec is read with an output bound, [`MAX_DECOMPRESSED_BYTES`]: a producer can
//! store a small batch with a valid CRC that inflates to gigabytes, and a timestamp
//! lookup must not turn that into an allocation. A batch over the bound counts as
//! undecompressable, and the lookup moves on to the next batch.
//!
//! Formats (protocol guide, "Record Batch"; Kafka's codecs): gzip stream, snappy in the
//! xerial framing Kafka's Java client writes (or raw snappy when the magic is absent, as
//! the Java client accepts), LZ4 frame, zstd frame.

use moldau_protocol::batch::Compression;
use std::io::Read;

/// Most bytes one batch may decompress to here (64 MiB; Kafka's own batches are capped
/// at `max.message.bytes`, 1 MiB by default, compressed).
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses a batch's records section; `None` for an unknown codec, bad data, or
/// output above [`MAX_DECOMPRESSED_BYTES`]. Matches [`moldau_storage::Decompress`].
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
    fn a_bomb_is_refused_without_inflating_it() {
        let zeros = vec![0u8; 200 << 20];
        let bomb = zstd::stream::encode_all(&zeros[..], 19).expect("zstd");
        assert!(bomb.len() < 1 << 20, "a small batch: {} bytes", bomb.len());
        assert_eq!(decompress(Compression::Zstd, &bomb), None);
    }
}
