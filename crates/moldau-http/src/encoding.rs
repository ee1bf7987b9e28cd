//! Payload encodings: UTF-8 text (default) or base64 for binary data.

use crate::error::{ApiError, ApiResult};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

/// How keys, values and header values travel in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// As UTF-8 text; a stored value that is not UTF-8 is an error asking for base64.
    #[default]
    Utf8,
    /// As standard base64 (RFC 4648, with padding).
    Base64,
}

impl Encoding {
    /// Bytes for a JSON string in this encoding. Errors: 400 INVALID_REQUEST for bad
    /// base64.
    pub fn decode(self, text: &str) -> ApiResult<Bytes> {
        match self {
            Encoding::Utf8 => Ok(Bytes::copy_from_slice(text.as_bytes())),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Bytes::from)
                .map_err(|e| ApiError::invalid(format!("not valid base64: {e}"))),
        }
    }

    /// A JSON string for stored bytes. Errors: 422 INVALID_REQUEST when the bytes are not
    /// UTF-8 and the encoding is utf8 (nothing is returned mangled).
    pub fn encode(self, bytes: &[u8], offset: i64) -> ApiResult<String> {
        match self {
            Encoding::Utf8 => String::from_utf8(bytes.to_vec()).map_err(|_| {
                ApiError::invalid(format!(
                    "the record at offset {offset} is not UTF-8 text; ask with encoding=base64"
                ))
                .with_status(axum::http::StatusCode::UNPROCESSABLE_ENTITY)
            }),
            Encoding::Base64 => Ok(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }

    /// [`Encoding::encode`] for an optional value.
    pub fn encode_opt(self, bytes: Option<&Bytes>, offset: i64) -> ApiResult<Option<String>> {
        bytes.map(|b| self.encode(b, offset)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_to_mangle() {
        let b64 = Encoding::Base64;
        let raw = [0u8, 159, 146, 150];
        let text = b64.encode(&raw, 0).expect("base64");
        assert_eq!(b64.decode(&text).expect("decode").as_ref(), &raw);
        assert!(Encoding::Utf8.encode(&raw, 7).is_err());
        assert_eq!(Encoding::Utf8.encode(b"hi", 0).expect("utf8"), "hi");
        assert!(b64.decode("***").is_err());
    }
}
