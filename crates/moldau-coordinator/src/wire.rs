//! The primitive types of Kafka's message schemas, as the coordinators' internal-topic
//! records use them (`__consumer_offsets` in [`crate::records`], `__transaction_state`
//! in [`crate::txn::records`]): big-endian integers, `string` (`int16` length),
//! `bytes` (`int32` length), and the flexible versions' unsigned varints, compact
//! strings and tagged fields. Decoding is defensive: every read checks the length
//! first, and no count read from the bytes allocates more than the bytes could hold.

use bytes::{Buf, BufMut, BytesMut};
use thiserror::Error;

/// Why bytes are not a valid encoding of a schema type.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum WireError {
    /// The bytes end before the schema says they should.
    #[error("record truncated")]
    Truncated,
    /// A string is not UTF-8.
    #[error("record holds a string that is not UTF-8")]
    NotUtf8,
    /// A length or count no valid record holds (negative where not allowed, beyond
    /// `i32`, or a varint longer than 64 bits).
    #[error("record holds an invalid length")]
    InvalidLength,
}

type Result<T> = std::result::Result<T, WireError>;

/// Writes a `string`. Text longer than the schema's `int16` length (32 KiB) is cut at
/// that limit rather than written with a wrapped length; group ids, transactional ids
/// and topic names (249 bytes) stay far below it.
pub(crate) fn put_str(out: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    out.put_i16(len as i16);
    out.put_slice(&s.as_bytes()[..len]);
}

/// Writes a nullable `string` (-1 for null).
pub(crate) fn put_nullable_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.put_i16(-1),
    }
}

/// Writes `bytes` (`int32` length).
pub(crate) fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

/// Writes an unsigned varint.
pub(crate) fn put_uvarint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Writes a compact string (varint length + 1), cut as [`put_str`] cuts.
pub(crate) fn put_compact_str(out: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    put_uvarint(out, len as u64 + 1);
    out.put_slice(&s.as_bytes()[..len]);
}

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.0.len()
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(crate) fn i8(&mut self) -> Result<i8> {
        Ok(self.take(1)?.get_i8())
    }
    pub(crate) fn i16(&mut self) -> Result<i16> {
        Ok(self.take(2)?.get_i16())
    }
    pub(crate) fn i32(&mut self) -> Result<i32> {
        Ok(self.take(4)?.get_i32())
    }
    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(self.take(8)?.get_i64())
    }
    pub(crate) fn uvarint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::InvalidLength)
    }
    fn utf8(&mut self, len: usize) -> Result<String> {
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| WireError::NotUtf8)
    }
    /// A nullable `string`: `int16` length, negative = null.
    pub(crate) fn nullable_str(&mut self) -> Result<Option<String>> {
        match usize::try_from(self.i16()?) {
            Ok(len) => self.utf8(len).map(Some),
            Err(_) => Ok(None),
        }
    }
    /// A `string`; `strict` refuses a null (negative length), else it reads as "".
    pub(crate) fn str(&mut self, strict: bool) -> Result<String> {
        match self.nullable_str()? {
            Some(s) => Ok(s),
            None if strict => Err(WireError::InvalidLength),
            None => Ok(String::new()),
        }
    }
    /// `bytes`: `int32` length, negative read as empty.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8]> {
        match usize::try_from(self.i32()?) {
            Ok(len) => self.take(len),
            Err(_) => Ok(&[]),
        }
    }
    /// A compact string: varint length + 1 (non-nullable).
    pub(crate) fn compact_str(&mut self) -> Result<String> {
        let len = self.compact_len()?.ok_or(WireError::InvalidLength)?;
        self.utf8(len)
    }
    /// A compact length: `None` for null (0), else the value - 1, at most `i32::MAX`.
    pub(crate) fn compact_len(&mut self) -> Result<Option<usize>> {
        let raw = self.uvarint()?;
        if raw == 0 {
            return Ok(None);
        }
        let len = usize::try_from(raw - 1).map_err(|_| WireError::InvalidLength)?;
        if len > i32::MAX as usize {
            return Err(WireError::InvalidLength);
        }
        Ok(Some(len))
    }
    /// A count of elements each at least `min_size` bytes long: more than the bytes left
    /// can hold is truncation, detected before anything is allocated.
    pub(crate) fn check_count(&self, count: usize, min_size: usize) -> Result<()> {
        if count.saturating_mul(min_size) > self.0.len() {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }
    /// Reads a tagged-field section, returning the tags it holds with their data.
    pub(crate) fn tagged_fields(&mut self) -> Result<Vec<(u64, &'a [u8])>> {
        let count = self.uvarint()?;
        let count = usize::try_from(count).map_err(|_| WireError::InvalidLength)?;
        self.check_count(count, 2)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()?;
            let size = usize::try_from(size).map_err(|_| WireError::InvalidLength)?;
            out.push((tag, self.take(size)?));
        }
        Ok(out)
    }
}
