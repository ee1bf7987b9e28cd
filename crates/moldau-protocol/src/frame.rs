//! Request framing: every Kafka request and response is `int32 size` followed by `size`
//! bytes (protocol guide, "Common Request and Response Structure").
//!
//! The size prefix is checked against `socket.request.max.bytes` before anything is
//! allocated, so a hostile 2 GiB prefix costs nothing; the caller closes that connection.
//! The request header's first fields (`api_key`, `api_version`, `correlation_id`) sit at
//! the same place in every header version, which lets the broker answer an unsupported
//! ApiVersions version before it knows how to parse the rest.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;
use thiserror::Error;

/// Bytes of the size prefix.
pub const SIZE_PREFIX: usize = 4;

/// Kafka's default `socket.request.max.bytes` (100 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 104_857_600;

/// Why a frame or request header cannot be accepted. Every variant means "close this
/// connection" except where the caller can still answer (see [`peek_header`]).
#[derive(Debug, Error)]
pub enum FrameError {
    /// Negative size prefix.
    #[error("negative frame size {0}")]
    NegativeSize(i32),
    /// Size prefix above `socket.request.max.bytes`.
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge {
        /// Declared size.
        size: usize,
        /// Configured limit.
        max: usize,
    },
    /// Frame shorter than the fixed part of a request header (8 bytes).
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    /// The api key is not one Kafka defines; Kafka closes the connection.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// The header could not be decoded.
    #[error("malformed request header: {0}")]
    MalformedHeader(String),
}

/// Checks a 4-byte size prefix: returns the frame length in bytes (prefix excluded).
pub fn check_size(prefix: [u8; 4], max_request_bytes: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    if size < 0 {
        return Err(FrameError::NegativeSize(size));
    }
    let size = size as usize;
    if size > max_request_bytes {
        return Err(FrameError::TooLarge {
            size,
            max: max_request_bytes,
        });
    }
    Ok(size)
}

/// The fixed start of every request header: present and readable in all header versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    /// Raw api key (may be unknown to Kafka).
    pub api_key: i16,
    /// Requested api version.
    pub api_version: i16,
    /// Correlation id to echo in the response.
    pub correlation_id: i32,
}

/// Reads `api_key`, `api_version`, `correlation_id` from a frame without consuming it.
pub fn peek_header(frame: &[u8]) -> Result<HeaderPrefix, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    Ok(HeaderPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes the request header (v0/v1/v2, chosen by api key and version) from the front of
/// `frame`, leaving `frame` positioned at the request body.
pub fn decode_header(frame: &mut Bytes) -> Result<(ApiKey, RequestHeader), FrameError> {
    let prefix = peek_header(frame)?;
    let api_key =
        ApiKey::try_from(prefix.api_key).map_err(|_| FrameError::UnknownApiKey(prefix.api_key))?;
    let header_version = api_key.request_header_version(prefix.api_version);
    let header = RequestHeader::decode(frame, header_version)
        .map_err(|e| FrameError::MalformedHeader(e.to_string()))?;
    Ok((api_key, header))
}

/// Returns true if nothing of `body` is left unread (used to reject trailing garbage).
pub fn fully_consumed(body: &Bytes) -> bool {
    !body.has_remaining()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_prefix_is_capped_before_allocation() {
        assert_eq!(check_size(100i32.to_be_bytes(), 1000).ok(), Some(100));
        assert!(matches!(
            check_size(i32::MAX.to_be_bytes(), DEFAULT_MAX_REQUEST_BYTES),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            check_size((-1i32).to_be_bytes(), 10),
            Err(FrameError::NegativeSize(-1))
        ));
    }

    #[test]
    fn header_prefix_and_unknown_key() {
        let mut f = vec![0, 18, 0, 3, 0, 0, 0, 9];
        let p = peek_header(&f).expect("prefix");
        assert_eq!((p.api_key, p.api_version, p.correlation_id), (18, 3, 9));
        f[0] = 0x7f;
        let mut b = Bytes::from(f);
        assert!(matches!(
            decode_header(&mut b),
            Err(FrameError::UnknownApiKey(_))
        ));
        assert!(matches!(peek_header(&[0, 1]), Err(FrameError::TooShort(2))));
    }
}
