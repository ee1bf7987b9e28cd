//! A Kafka-protocol connection from this broker to another one, over the
//! `inter.broker.listener.name` listener: how replica fetchers fetch from leaders and
//! transaction coordinators write markers to partition leaders. One request at a time
//! per connection (each user owns its connection).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response accepted, bytes (a fetch response is bounded by
/// `replica.fetch.response.max.bytes` plus one oversized batch).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// A connection to another broker.
pub struct KafkaConn {
    addr: String,
    rd: Box<dyn AsyncRead + Send + Unpin>,
    wr: Box<dyn AsyncWrite + Send + Unpin>,
    correlation_id: i32,
    client_id: StrBytes,
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

impl KafkaConn {
    /// Connects to `addr` within `timeout`, naming itself `client_id`, over TLS and
    /// after SASL authentication when the inter-broker listener asks for them
    /// (`security`, from [`crate::config::ClusterConfig::inter_broker_client`]).
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        security: &moldau_client::security::Security,
    ) -> std::io::Result<Self> {
        let (rd, wr) = moldau_client::security::connect(addr, security, timeout)
            .await
            .map_err(|e| match e {
                moldau_client::Error::Timeout(_) => std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {addr}"),
                ),
                other => std::io::Error::other(other.to_string()),
            })?;
        Ok(Self {
            addr: addr.to_owned(),
            rd,
            wr,
            correlation_id: 0,
            client_id: StrBytes::from_string(client_id.to_owned()),
        })
    }

    /// The peer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` as `api_key` version `version` and reads its response within
    /// `timeout`. Errors: I/O, timeout, or an undecodable or mismatched response (the
    /// connection must then be dropped).
    pub async fn send<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> std::io::Result<Resp> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, api_key.request_header_version(version))
            .map_err(invalid)?;
        request.encode(&mut buf, version).map_err(invalid)?;
        let size = i32::try_from(buf.len() - 4).map_err(invalid)?;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        let exchange = async {
            self.wr.write_all(&buf).await?;
            self.wr.flush().await?;
            let size = self.rd.read_i32().await?;
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s <= MAX_RESPONSE_BYTES)
                .ok_or_else(|| invalid(format!("response size {size}")))?;
            let mut body = Vec::with_capacity(size.min(1 << 20));
            let read = (&mut self.rd)
                .take(size as u64)
                .read_to_end(&mut body)
                .await?;
            if read != size {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "response cut short",
                ));
            }
            Ok(Bytes::from(body))
        };
        let mut body = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{api_key:?} to {}", self.addr),
                )
            })??;
        let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version))
            .map_err(invalid)?;
        if header.correlation_id != self.correlation_id {
            return Err(invalid(format!(
                "correlation id {} answers request {}",
                header.correlation_id, self.correlation_id
            )));
        }
        let response = Resp::decode(&mut body, version).map_err(invalid)?;
        if body.has_remaining() {
            tracing::debug!(
                ?api_key,
                trailing = body.remaining(),
                "bytes after a response body"
            );
        }
        Ok(response)
    }
}
