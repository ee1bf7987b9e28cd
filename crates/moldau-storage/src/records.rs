//! Reading batches back out of a `.log` file: a chunked header scanner, the validating
//! recovery scan, and a walk over the records of an uncompressed batch.
//!
//! All reads are positional (`FileExt::read_exact_at`) so readers need only `&File`, and
//! every length read from disk is checked against the bytes that remain before it is used
//! to allocate or slice.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use moldau_protocol::batch::{self, BatchError, BatchHeader, LOG_OVERHEAD, RECORD_BATCH_OVERHEAD};

use crate::error::{IoContext, Result, StorageError};

/// Bytes read per syscall when only headers are needed.
pub(crate) const HEADER_CHUNK: usize = 16 * 1024;
/// Bytes read per syscall by the validating recovery scan.
pub(crate) const RECOVERY_CHUNK: usize = 1024 * 1024;

pub(crate) fn corrupt(path: &Path, position: u64, reason: impl Into<String>) -> StorageError {
    StorageError::CorruptSegment {
        path: path.to_path_buf(),
        position,
        reason: reason.into(),
    }
}

/// Walks batch headers forward in `[start, end)` of a `.log`, reading `HEADER_CHUNK`
/// bytes at a time into one reused buffer (several headers per syscall for small
/// batches, one syscall per batch for large ones). Checks magic, length and that each
/// batch ends by `end`; does not check CRCs.
pub(crate) struct HeaderScanner<'a> {
    file: &'a File,
    path: &'a Path,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_start: u64,
}

impl<'a> HeaderScanner<'a> {
    pub(crate) fn new(file: &'a File, path: &'a Path, start: u64, end: u64) -> Self {
        HeaderScanner {
            file,
            path,
            pos: start,
            end,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// The next `(position, header)`, `None` at `end`. A malformed or cut-off batch is
    /// [`StorageError::CorruptSegment`].
    pub(crate) fn next_batch(&mut self) -> Result<Option<(u64, BatchHeader)>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let remaining = self.end - self.pos;
        if remaining < RECORD_BATCH_OVERHEAD as u64 {
            return Err(corrupt(self.path, self.pos, "truncated batch header"));
        }
        let buffered_end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos + RECORD_BATCH_OVERHEAD as u64 > buffered_end {
            let len = remaining.min(HEADER_CHUNK as u64) as usize;
            self.buf.resize(len, 0);
            self.file
                .read_exact_at(&mut self.buf, self.pos)
                .ctx(|| format!("read {}", self.path.display()))?;
            self.buf_start = self.pos;
        }
        let at = (self.pos - self.buf_start) as usize;
        let header = BatchHeader::parse(&self.buf[at..])
            .map_err(|e| corrupt(self.path, self.pos, e.to_string()))?;
        let size = header.size_in_bytes() as u64;
        if size > remaining {
            return Err(corrupt(
                self.path,
                self.pos,
                format!("batch of {size} bytes runs past the end of the data"),
            ));
        }
        if header.last_offset_delta < 0 {
            return Err(corrupt(self.path, self.pos, "negative lastOffsetDelta"));
        }
        let position = self.pos;
        self.pos += size;
        Ok(Some((position, header)))
    }
}

/// Outcome of [`scan_valid`].
#[derive(Debug)]
pub(crate) struct ValidScan {
    /// Bytes of valid batches from the start of the file.
    pub(crate) valid_bytes: u64,
    /// Offset after the last valid batch (`segment base` if none).
    pub(crate) next_offset: i64,
    /// Why the scan stopped before the end of the file, if it did.
    pub(crate) stopped: Option<String>,
}

/// Validates the `.log` file batch by batch from position 0 to `file_len`: header,
/// length, CRC-32C, `lastOffsetDelta >= 0`, base offsets at or above the segment base
/// and never going backwards, relative offsets that fit a 32-bit index entry. Calls
/// `on_batch(position, header)` for each valid batch and stops at the first invalid one.
/// Reads `RECOVERY_CHUNK` bytes per syscall; a batch larger than that is read on its own
/// after checking it fits in the file.
pub(crate) fn scan_valid(
    file: &File,
    path: &Path,
    file_len: u64,
    base_offset: i64,
    mut on_batch: impl FnMut(u64, &BatchHeader),
) -> Result<ValidScan> {
    let mut buf: Vec<u8> = Vec::new();
    let mut big: Vec<u8> = Vec::new();
    let mut buf_start = 0u64;
    let mut pos = 0u64;
    let mut next_offset = base_offset;
    let stop = |reason: String, pos: u64, next_offset: i64| ValidScan {
        valid_bytes: pos,
        next_offset,
        stopped: Some(reason),
    };
    while pos < file_len {
        let remaining = file_len - pos;
        let buffered_end = buf_start + buf.len() as u64;
        if pos + (RECORD_BATCH_OVERHEAD as u64).min(remaining) > buffered_end || pos < buf_start {
            let len = remaining.min(RECOVERY_CHUNK as u64) as usize;
            buf.resize(len, 0);
            file.read_exact_at(&mut buf, pos)
                .ctx(|| format!("read {}", path.display()))?;
            buf_start = pos;
        }
        let at = (pos - buf_start) as usize;
        let header = match BatchHeader::parse(&buf[at..]) {
            Ok(h) => h,
            Err(e) => return Ok(stop(e.to_string(), pos, next_offset)),
        };
        let size = header.size_in_bytes() as u64;
        if size > remaining {
            let e = BatchError::Truncated {
                needed: size as usize,
                available: remaining as usize,
            };
            return Ok(stop(e.to_string(), pos, next_offset));
        }
        let bytes: &[u8] = if at as u64 + size <= buf.len() as u64 {
            &buf[at..at + size as usize]
        } else if size <= RECOVERY_CHUNK as u64 {
            let len = remaining.min(RECOVERY_CHUNK as u64) as usize;
            buf.resize(len, 0);
            file.read_exact_at(&mut buf, pos)
                .ctx(|| format!("read {}", path.display()))?;
            buf_start = pos;
            &buf[..size as usize]
        } else {
            big.resize(size as usize, 0);
            file.read_exact_at(&mut big, pos)
                .ctx(|| format!("read {}", path.display()))?;
            &big[..]
        };
        if let Err(e) = batch::validate(bytes) {
            return Ok(stop(e.to_string(), pos, next_offset));
        }
        if header.last_offset_delta < 0 {
            return Ok(stop("negative lastOffsetDelta".into(), pos, next_offset));
        }
        if header.base_offset < next_offset {
            return Ok(stop(
                format!(
                    "base offset {} below expected {next_offset}",
                    header.base_offset
                ),
                pos,
                next_offset,
            ));
        }
        if header.last_offset() - base_offset > i64::from(i32::MAX) {
            return Ok(stop(
                "offset too far from segment base".into(),
                pos,
                next_offset,
            ));
        }
        on_batch(pos, &header);
        next_offset = header.next_offset();
        pos += size;
    }
    Ok(ValidScan {
        valid_bytes: pos,
        next_offset,
        stopped: None,
    })
}

/// Reads the whole batch at `position` (its header already parsed) into `buf`.
pub(crate) fn read_batch(
    file: &File,
    path: &Path,
    position: u64,
    header: &BatchHeader,
    buf: &mut Vec<u8>,
) -> Result<()> {
    buf.resize(header.size_in_bytes(), 0);
    file.read_exact_at(buf, position)
        .ctx(|| format!("read {}", path.display()))
}

/// Decompresses the records section of a compressed batch: given the batch's codec and
/// the bytes after its 61-byte header, returns the uncompressed records (`None` on
/// failure). Storage has no codecs of its own; the broker supplies them.
pub type Decompress = dyn Fn(batch::Compression, &[u8]) -> Option<Vec<u8>>;

/// Walks the records of a v2 batch (`batch` = the whole batch; compressed batches are
/// first handed to `decompress`) and returns `(offset, timestamp)` of the first record
/// for which `pred(offset, timestamp)` holds. Malformed records end the walk (`None`),
/// never panic.
pub(crate) fn find_record(
    batch: &[u8],
    header: &BatchHeader,
    decompress: &Decompress,
    mut pred: impl FnMut(i64, i64) -> bool,
) -> Option<(i64, i64)> {
    let end = batch
        .len()
        .min(LOG_OVERHEAD + header.batch_length.max(0) as usize);
    let section = batch.get(RECORD_BATCH_OVERHEAD..end)?;
    let inflated;
    let body = if header.compression() == batch::Compression::None {
        section
    } else {
        inflated = decompress(header.compression(), section)?;
        &inflated[..]
    };
    batch::records_in(body, header.records_count)?
        .into_iter()
        .map(|r| {
            (
                header.base_offset.saturating_add(i64::from(r.offset_delta)),
                header.base_timestamp.saturating_add(r.timestamp_delta),
            )
        })
        .find(|&(offset, ts)| pred(offset, ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_codec(_: batch::Compression, _: &[u8]) -> Option<Vec<u8>> {
        None
    }

    #[test]
    fn find_record_walks_records_and_survives_corruption() {
        let b = batch::build_batch(
            50,
            1_000,
            &[(None, Some(b"a")), (Some(b"k"), Some(b"bb")), (None, None)],
        );
        let h = match batch::validate(&b) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            find_record(&b, &h, &no_codec, |o, _| o >= 51),
            Some((51, 1_000))
        );
        assert_eq!(find_record(&b, &h, &no_codec, |o, _| o >= 53), None);
        // Random damage in the record area must not panic.
        for i in RECORD_BATCH_OVERHEAD..b.len() {
            let mut bad = b.clone();
            bad[i] = 0xff;
            let _ = find_record(&bad, &h, &no_codec, |_, _| false);
            bad.truncate(i);
            let _ = find_record(&bad, &h, &no_codec, |_, _| false);
        }
    }
}
