//! A raw Kafka connection for tests that speak the protocol with `kafka-protocol`
//! structs at an exact version.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One connection; requests are answered in order.
pub struct Conn {
    stream: TcpStream,
    correlation: i32,
    client_id: &'static str,
}

impl Conn {
    pub fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Conn {
            stream,
            correlation: 0,
            client_id: "versions-test",
        }
    }

    /// The same connection, sending `client_id` in its request headers.
    #[allow(dead_code)]
    pub fn with_client_id(mut self, client_id: &'static str) -> Conn {
        self.client_id = client_id;
        self
    }

    /// Sends `req` as `key` v`version` and decodes the response at that version.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        self.try_call(key, version, req)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: connection closed: {e}"))
    }

    /// Writes raw bytes (a hand-made frame).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one size-prefixed frame without decoding it.
    pub fn recv_raw(&mut self) -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body)?;
        Ok(body)
    }

    /// Whether the broker has closed the connection: a read returns end of stream (or
    /// a reset) within 10 s. A read that merely times out (the connection still open
    /// and silent) or returns bytes is `false`.
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(10)));
        let closed = match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(30)));
        closed
    }

    /// Whether the broker ends the connection within 10 s, whatever it sends first (a
    /// TLS alert, say): reads and discards until end of stream or a reset.
    pub fn ends(&mut self) -> bool {
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut sink = Vec::new();
        let ended = match (&mut self.stream).take(1 << 20).read_to_end(&mut sink) {
            Ok(n) => n < 1 << 20,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(30)));
        ended
    }

    /// As [`Conn::call`], but a closed connection is an `Err` instead of a panic.
    pub fn try_call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> std::io::Result<Resp> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .expect("header");
        req.encode(&mut buf, version).expect("request body");
        let mut framed = BytesMut::new();
        framed.put_i32(buf.len() as i32);
        framed.extend_from_slice(&buf);
        self.stream.write_all(&framed)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body)?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .expect("response header");
        assert_eq!(header.correlation_id, self.correlation);
        Ok(Resp::decode(&mut body, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: response does not decode: {e}")))
    }
}

/// Creates `name` with `partitions` partitions of `replication_factor` replicas and the
/// topic `configs` through CreateTopics v7 to `addr`; panics unless it was created.
pub fn create_topic(
    addr: &str,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_owned())))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string((*k).to_owned()))
                        .with_value(Some(StrBytes::from_string((*v).to_owned())))
                })
                .collect(),
        );
    let created: CreateTopicsResponse = Conn::open(addr).call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(30_000),
    );
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
}
