//! TLS for SSL and SASL_SSL listeners, by `rustls` (ring provider).
//!
//! A listener's [`TlsAcceptor`] rebuilds its `rustls` config when a key or trust store
//! file changes (checked at most once a second, at the next connection), so a renewed
//! certificate is served without a restart; a file that no longer loads leaves the last
//! good config in place and is logged. Client certificates (`ssl.client.auth`) are
//! checked against the truststore by `rustls`' WebPKI verifier; the principal is the
//! certificate's subject (RFC 2253) mapped by `ssl.principal.mapping.rules`.

use crate::config::security::{
    map_principal, ClientAuth, KeyStore, TlsSettings, TlsVersion, TrustStore,
};
use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the key and trust store files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: bad PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate found"));
    }
    Ok(certs)
}

/// The certificate chain and key of a keystore.
fn key_material(
    keystore: &KeyStore,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let (chain_pem, key_pem, what) = match keystore {
        KeyStore::File(path) => {
            let bytes = read(path)?;
            (bytes.clone(), bytes, path.display().to_string())
        }
        KeyStore::Inline { chain, key } => (
            chain.as_bytes().to_vec(),
            key.as_bytes().to_vec(),
            "ssl.keystore.certificate.chain".to_owned(),
        ),
    };
    let chain = certificates(&chain_pem, &what)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "{what}: no usable private key ({e}); give an unencrypted PKCS#8, PKCS#1 or SEC1 key"
        )
    })?;
    Ok((chain, key))
}

fn trust_roots(truststore: &TrustStore) -> Result<rustls::RootCertStore, String> {
    let (pem, what) = match truststore {
        TrustStore::File(path) => (read(path)?, path.display().to_string()),
        TrustStore::Inline(pem) => (
            pem.as_bytes().to_vec(),
            "ssl.truststore.certificates".to_owned(),
        ),
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&pem, &what)? {
        roots
            .add(cert)
            .map_err(|e| format!("{what}: unusable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// IANA name of a suite (`rustls` writes TLS 1.3 suites as `TLS13_…`).
fn iana_name(suite: rustls::CipherSuite) -> String {
    let name = format!("{suite:?}");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// Builds the `rustls` server config of a listener. Errors say what failed to load or
/// which setting names something `rustls` does not offer.
pub fn server_config(settings: &TlsSettings) -> Result<rustls::ServerConfig, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !settings.cipher_suites.is_empty() {
        for name in &settings.cipher_suites {
            if !provider
                .cipher_suites
                .iter()
                .any(|s| iana_name(s.suite()) == *name)
            {
                let offered: Vec<String> = provider
                    .cipher_suites
                    .iter()
                    .map(|s| iana_name(s.suite()))
                    .collect();
                return Err(format!(
                    "ssl.cipher.suites: {name} is not offered (offered: {})",
                    offered.join(", ")
                ));
            }
        }
        provider
            .cipher_suites
            .retain(|s| settings.cipher_suites.contains(&iana_name(s.suite())));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = settings
        .protocols
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let provider = Arc::new(provider);
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("ssl.enabled.protocols / ssl.cipher.suites: {e}"))?;
    let builder = match (&settings.truststore, settings.client_auth) {
        (Some(trust), auth @ (ClientAuth::Requested | ClientAuth::Required)) => {
            let roots = Arc::new(trust_roots(trust)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("ssl.truststore: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        (Some(trust), ClientAuth::None) => {
            // Loaded to report a bad truststore at start, though no client is asked.
            trust_roots(trust)?;
            builder.with_no_client_auth()
        }
        (None, _) => builder.with_no_client_auth(),
    };
    let (chain, key) = key_material(&settings.keystore)?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a usable pair: {e}"))?;
    config.alpn_protocols.clear();
    Ok(config)
}

struct Loaded {
    config: Arc<rustls::ServerConfig>,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

/// A TLS server connection over `S`.
pub type ServerTlsStream<S> = tokio_rustls::server::TlsStream<S>;

/// A listener's TLS acceptor, reloading its key material when the files change.
pub struct TlsAcceptor {
    settings: TlsSettings,
    listener: Arc<str>,
    loaded: Mutex<Loaded>,
}

impl TlsAcceptor {
    /// Builds the acceptor (the config was already checked at start-up).
    pub fn new(listener: Arc<str>, settings: TlsSettings) -> Result<Self, String> {
        let config = Arc::new(server_config(&settings)?);
        let stamps = stamps(&settings);
        Ok(Self {
            settings,
            listener,
            loaded: Mutex::new(Loaded {
                config,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The current config, reloaded first if a file changed since the last check.
    fn config(&self) -> Arc<rustls::ServerConfig> {
        let mut loaded = self.loaded.lock();
        if loaded.checked.elapsed() >= RELOAD_CHECK {
            loaded.checked = Instant::now();
            let now = stamps(&self.settings);
            if now != loaded.stamps {
                loaded.stamps = now;
                match server_config(&self.settings) {
                    Ok(config) => {
                        tracing::info!(listener = %self.listener, "TLS key or trust store changed: reloaded");
                        loaded.config = Arc::new(config);
                    }
                    Err(e) => tracing::error!(
                        listener = %self.listener,
                        error = %e,
                        "TLS key or trust store changed but does not load; serving the previous one"
                    ),
                }
            }
        }
        loaded.config.clone()
    }

    /// Runs the server handshake on `stream`. Returns the stream and the principal name
    /// of the client certificate (`None` without one). A certificate whose subject cannot
    /// be read or that no `ssl.principal.mapping.rules` rule matches is an error (Kafka
    /// refuses it too): the connection must not fall back to `User:ANONYMOUS`.
    pub async fn accept<S>(
        &self,
        stream: S,
    ) -> std::io::Result<(tokio_rustls::server::TlsStream<S>, Option<String>)>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
        let tls = acceptor.accept(stream).await?;
        let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
            return Ok((tls, None));
        };
        let Some(dn) = subject_dn(leaf.as_ref()) else {
            return Err(std::io::Error::other(
                "the client certificate's subject cannot be read",
            ));
        };
        match map_principal(&self.settings.principal_rules, &dn) {
            Some(name) => Ok((tls, Some(name))),
            None => Err(std::io::Error::other(format!(
                "no ssl.principal.mapping.rules rule matches the client certificate {dn}"
            ))),
        }
    }
}

fn stamps(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    let mut files = Vec::new();
    if let KeyStore::File(p) = &settings.keystore {
        files.push(p);
    }
    if let Some(TrustStore::File(p)) = &settings.truststore {
        files.push(p);
    }
    files
        .into_iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// The subject of a DER certificate as an RFC 2253 string (`CN=alice,OU=eng,O=Acme`,
/// last RDN first, as Java's `X500Principal.getName()` gives it).
pub fn subject_dn(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut rdns: Vec<String> = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let key = match oid.as_str() {
                "2.5.4.3" => "CN".to_owned(),
                "2.5.4.6" => "C".to_owned(),
                "2.5.4.7" => "L".to_owned(),
                "2.5.4.8" => "ST".to_owned(),
                "2.5.4.9" => "STREET".to_owned(),
                "2.5.4.10" => "O".to_owned(),
                "2.5.4.11" => "OU".to_owned(),
                "0.9.2342.19200300.100.1.25" => "DC".to_owned(),
                "0.9.2342.19200300.100.1.1" => "UID".to_owned(),
                _ => oid,
            };
            let value = attr.as_str().ok()?;
            parts.push(format!("{key}={}", escape_dn_value(value)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::security::parse_principal_rules;

    #[test]
    fn subject_as_rfc_2253_and_mapped_principal() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "DE");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "eng");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let cert = params.self_signed(&key).expect("cert");
        let dn = subject_dn(cert.der()).expect("subject");
        // rcgen writes the CN first, so the last RDN (OU) leads the RFC 2253 form.
        assert_eq!(dn, r"OU=eng,O=Acme\, Inc.,C=DE,CN=alice");
        let rules = parse_principal_rules(r"RULE:^OU=([^,]+),.*,CN=([^,]+)$/$2@$1/U,DEFAULT")
            .expect("rules");
        assert_eq!(map_principal(&rules, &dn).as_deref(), Some("ALICE@ENG"));
    }
}
