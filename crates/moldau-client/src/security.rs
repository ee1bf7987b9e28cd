//! TLS and SASL for the client, configured with Kafka's client property names
//! (`security.protocol`, `ssl.*`, `sasl.*`; librdkafka's `ssl.ca.location`,
//! `ssl.certificate.location`, `ssl.key.location`, `sasl.username`, `sasl.password`
//! too), so one `client.properties` serves Kafka's scripts, kcat and Moldau.
//!
//! TLS is `rustls` (server certificates checked against `ssl.truststore.location` /
//! `ssl.ca.location`, host name checked as `ssl.endpoint.identification.algorithm=https`
//! requires); SASL is PLAIN or SCRAM-SHA-256/512 through SaslHandshake v1 and
//! SaslAuthenticate v2, run on each new connection before anything else.

use crate::error::{Error, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use moldau_protocol::scram::{self, ScramHash};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// No TLS, no SASL (default).
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism by its SASL name (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`), in
    /// any case; `None` for any other.
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        [Self::Plain, Self::ScramSha256, Self::ScramSha512]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials.
#[derive(Clone)]
pub struct SaslCredentials {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How connections are secured.
#[derive(Clone, Default)]
pub struct Security {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// The TLS config (SSL and SASL_SSL).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// SASL credentials (SASL_PLAINTEXT and SASL_SSL).
    pub sasl: Option<SaslCredentials>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

/// Client properties this module reads.
pub const PROPERTIES: &[&str] = &[
    "security.protocol",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.ca.location",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
    "sasl.mechanism",
    "sasl.jaas.config",
    "sasl.username",
    "sasl.password",
];

fn invalid(name: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{name}: {why}"))
}

fn read_file(name: &str, path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| invalid(name, format!("cannot read {path}: {e}")))
}

fn certificates(name: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(name, format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(name, "no certificate found"));
    }
    Ok(certs)
}

impl Security {
    /// Reads the security properties of `props` (other names are ignored here; the
    /// caller refuses names it does not know). Errors name the property.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<Security> {
        let get = |k: &str| props.get(k).map(|v| v.trim().to_owned());
        let protocol = match get("security.protocol")
            .unwrap_or_else(|| "PLAINTEXT".into())
            .to_ascii_uppercase()
            .as_str()
        {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            other => {
                return Err(invalid(
                    "security.protocol",
                    format!("{other} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
                ))
            }
        };
        for t in ["ssl.truststore.type", "ssl.keystore.type"] {
            if let Some(v) = get(t).filter(|v| !v.eq_ignore_ascii_case("PEM")) {
                return Err(invalid(t, format!("{v}: only PEM is read")));
            }
        }
        if let Some(v) = get("ssl.endpoint.identification.algorithm") {
            if !v.eq_ignore_ascii_case("https") {
                return Err(invalid(
                    "ssl.endpoint.identification.algorithm",
                    "only https (check the broker's host name) is supported",
                ));
            }
        }
        let tls_wanted = matches!(protocol, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl);
        let tls = if tls_wanted {
            let mut roots = rustls::RootCertStore::empty();
            let ca = get("ssl.truststore.location").or_else(|| get("ssl.ca.location"));
            let Some(ca) = ca else {
                return Err(invalid(
                    "ssl.truststore.location",
                    "give the PEM file of the CA that signed the brokers' certificates",
                ));
            };
            for cert in certificates(
                "ssl.truststore.location",
                &read_file("ssl.truststore.location", &ca)?,
            )? {
                roots
                    .add(cert)
                    .map_err(|e| invalid("ssl.truststore.location", e))?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid("security.protocol", e))?
                .with_root_certificates(roots);
            let identity = match (
                get("ssl.keystore.location"),
                get("ssl.certificate.location"),
                get("ssl.key.location"),
            ) {
                (Some(keystore), None, None) => {
                    let pem = read_file("ssl.keystore.location", &keystore)?;
                    Some((pem.clone(), pem, "ssl.keystore.location"))
                }
                (None, Some(cert), Some(key)) => Some((
                    read_file("ssl.certificate.location", &cert)?,
                    read_file("ssl.key.location", &key)?,
                    "ssl.certificate.location",
                )),
                (None, None, None) => None,
                _ => return Err(invalid(
                    "ssl.keystore.location",
                    "give ssl.keystore.location, or ssl.certificate.location with ssl.key.location",
                )),
            };
            let config = match identity {
                Some((cert_pem, key_pem, name)) => {
                    let chain = certificates(name, &cert_pem)?;
                    let key = PrivateKeyDer::from_pem_slice(&key_pem)
                        .map_err(|e| invalid(name, format!("no usable private key: {e}")))?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| invalid(name, e))?
                }
                None => builder.with_no_client_auth(),
            };
            Some(Arc::new(config))
        } else {
            None
        };
        let sasl_wanted = matches!(
            protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        );
        let sasl = if sasl_wanted {
            let mechanism = match get("sasl.mechanism").as_deref().unwrap_or("GSSAPI") {
                "PLAIN" => SaslMechanism::Plain,
                "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                other => {
                    return Err(invalid(
                        "sasl.mechanism",
                        format!(
                            "{other} is not supported (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are)"
                        ),
                    ))
                }
            };
            let (username, password) = match (get("sasl.username"), get("sasl.password")) {
                (Some(u), Some(p)) => (u, p),
                _ => {
                    let jaas = get("sasl.jaas.config").ok_or_else(|| {
                        invalid(
                            "sasl.jaas.config",
                            "give sasl.jaas.config (… required username=\"…\" password=\"…\";) or sasl.username and sasl.password",
                        )
                    })?;
                    let option = |key: &str| -> Option<String> {
                        let start = jaas.find(&format!("{key}=\""))? + key.len() + 2;
                        let end = jaas[start..].find('"')? + start;
                        Some(jaas[start..end].to_owned())
                    };
                    match (option("username"), option("password")) {
                        (Some(u), Some(p)) => (u, p),
                        _ => {
                            return Err(invalid(
                                "sasl.jaas.config",
                                "no username=\"…\" and password=\"…\" options",
                            ))
                        }
                    }
                }
            };
            Some(SaslCredentials {
                mechanism,
                username,
                password,
            })
        } else {
            None
        };
        Ok(Security {
            protocol,
            tls,
            sasl,
        })
    }
}

/// The read and write halves of a connection, whatever it runs over.
pub type Halves = (
    Box<dyn AsyncRead + Send + Unpin>,
    Box<dyn AsyncWrite + Send + Unpin>,
);

/// Opens a connection to `addr`: TCP, then TLS and SASL as `security` says (the broker
/// uses it for its inter-broker connections too). Errors: [`Error::Connect`],
/// [`Error::Connection`] (TLS handshake), [`Error::Authentication`], [`Error::Timeout`].
pub async fn connect(addr: &str, security: &Security, timeout: Duration) -> Result<Halves> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Timeout(timeout))?
        .map_err(|source| Error::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let broken = |reason: String| Error::Connection {
        addr: addr.to_owned(),
        reason,
    };
    match &security.tls {
        None => {
            let mut stream = stream;
            if let Some(sasl) = &security.sasl {
                tokio::time::timeout(timeout, authenticate(&mut stream, sasl, addr))
                    .await
                    .map_err(|_| Error::Timeout(timeout))??;
            }
            let (rd, wr) = stream.into_split();
            Ok((Box::new(rd), Box::new(wr)))
        }
        Some(config) => {
            let host = addr
                .rsplit_once(':')
                .map_or(addr, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| broken(format!("{host} is not a valid TLS server name: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let mut tls = tokio::time::timeout(timeout, connector.connect(name, stream))
                .await
                .map_err(|_| Error::Timeout(timeout))?
                .map_err(|e| broken(format!("TLS handshake failed: {e}")))?;
            if let Some(sasl) = &security.sasl {
                tokio::time::timeout(timeout, authenticate(&mut tls, sasl, addr))
                    .await
                    .map_err(|_| Error::Timeout(timeout))??;
            }
            let (rd, wr) = tokio::io::split(tls);
            Ok((Box::new(rd), Box::new(wr)))
        }
    }
}

/// One request/response on a stream no one else uses yet.
async fn call<S, Req, Resp>(
    stream: &mut S,
    addr: &str,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Result<Resp>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Req: Encodable,
    Resp: Decodable,
{
    let broken = |reason: String| Error::Connection {
        addr: addr.to_owned(),
        reason,
    };
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("moldau-client")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, key.request_header_version(version))
        .and_then(|()| request.encode(&mut buf, version))
        .map_err(|e| Error::Invalid(format!("cannot encode {key:?}: {e}")))?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    stream
        .write_all(&buf)
        .await
        .map_err(|e| broken(format!("write failed during SASL: {e}")))?;
    let size = stream
        .read_i32()
        .await
        .map_err(|e| broken(format!("the broker closed the connection during SASL: {e}")))?;
    // SASL answers are small; a huge size means a confused stream.
    let size = usize::try_from(size)
        .ok()
        .filter(|s| *s <= 1 << 20)
        .ok_or_else(|| broken(format!("SASL response size {size} out of range")))?;
    let mut body = vec![0u8; size];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| broken(format!("read failed during SASL: {e}")))?;
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
        .map_err(|e| broken(format!("bad SASL response header: {e}")))?;
    if header.correlation_id != correlation_id {
        return Err(broken("SASL response out of order".into()));
    }
    let resp = Resp::decode(&mut body, version)
        .map_err(|e| broken(format!("bad {key:?} response: {e}")))?;
    let _ = body.remaining();
    Ok(resp)
}

fn sasl_failed(resp: &SaslAuthenticateResponse) -> Option<Error> {
    (resp.error_code != 0).then(|| {
        Error::Authentication(
            resp.error_message
                .as_ref()
                .map(|m| m.to_string())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| {
                    format!("SASL authentication failed (error {})", resp.error_code)
                }),
        )
    })
}

async fn token<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    addr: &str,
    correlation_id: i32,
    bytes: Vec<u8>,
) -> Result<Vec<u8>> {
    let resp: SaslAuthenticateResponse = call(
        stream,
        addr,
        ApiKey::SaslAuthenticate,
        2,
        correlation_id,
        &SaslAuthenticateRequest::default().with_auth_bytes(bytes.into()),
    )
    .await?;
    if let Some(e) = sasl_failed(&resp) {
        return Err(e);
    }
    Ok(resp.auth_bytes.to_vec())
}

/// The SASL exchange: SaslHandshake v1, then the mechanism's tokens in SaslAuthenticate v2.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    sasl: &SaslCredentials,
    addr: &str,
) -> Result<()> {
    let resp: SaslHandshakeResponse = call(
        stream,
        addr,
        ApiKey::SaslHandshake,
        1,
        -1,
        &SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name())),
    )
    .await?;
    if resp.error_code != 0 {
        let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(Error::Authentication(format!(
            "the broker does not offer {} (it offers {}){}",
            sasl.mechanism.name(),
            offered.join(", "),
            if resp.error_code == ResponseError::UnsupportedSaslMechanism.code() {
                ""
            } else {
                "; error during the SASL handshake"
            }
        )));
    }
    let h = match sasl.mechanism {
        SaslMechanism::Plain => {
            let mut t = vec![0u8];
            t.extend_from_slice(sasl.username.as_bytes());
            t.push(0);
            t.extend_from_slice(sasl.password.as_bytes());
            token(stream, addr, -2, t).await?;
            return Ok(());
        }
        SaslMechanism::ScramSha256 => ScramHash::Sha256,
        SaslMechanism::ScramSha512 => ScramHash::Sha512,
    };
    let nonce: String = {
        use rand::RngCore;
        let mut raw = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        raw.iter().map(|b| format!("{b:02x}")).collect()
    };
    let first_bare = format!("n={},r={nonce}", scram::encode_saslname(&sasl.username));
    let server_first = token(stream, addr, -2, format!("n,,{first_bare}").into_bytes()).await?;
    let server_first = String::from_utf8(server_first)
        .map_err(|_| Error::Authentication("server-first-message is not UTF-8".into()))?;
    let attr = |k: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(k).map(str::to_owned))
    };
    let bad = |what: &str| Error::Authentication(format!("bad server-first-message: {what}"));
    let server_nonce = attr("r=").ok_or_else(|| bad("no nonce"))?;
    if !server_nonce.starts_with(&nonce) || server_nonce.len() == nonce.len() {
        return Err(bad("the nonce does not extend ours"));
    }
    let salt = B64
        .decode(attr("s=").ok_or_else(|| bad("no salt"))?)
        .map_err(|_| bad("salt is not base64"))?;
    let iterations: u32 = attr("i=")
        .and_then(|i| i.parse().ok())
        .filter(|i| (4096..=1_000_000).contains(i))
        .ok_or_else(|| bad("iteration count missing or outside 4096..=1000000"))?;
    let salted = scram::salted_password(h, sasl.password.as_bytes(), &salt, iterations);
    let client_key = scram::client_key(h, &salted);
    let stored_key = scram::hash(h, &client_key);
    let without_proof = format!("c=biws,r={server_nonce}");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let proof = scram::xor(
        &client_key,
        &scram::hmac(h, &stored_key, auth_message.as_bytes()),
    );
    let last = format!("{without_proof},p={}", B64.encode(proof));
    let server_final = token(stream, addr, -3, last.into_bytes()).await?;
    let expected = format!(
        "v={}",
        B64.encode(scram::hmac(
            h,
            &scram::server_key(h, &salted),
            auth_message.as_bytes()
        ))
    );
    if server_final != expected.as_bytes() {
        return Err(Error::Authentication(
            "the broker's SCRAM signature is wrong: it does not know this user's credential".into(),
        ));
    }
    Ok(())
}
