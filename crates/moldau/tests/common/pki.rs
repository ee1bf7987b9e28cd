//! A throwaway certificate authority for tests, made with `rcgen`.

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::PathBuf;

/// A certificate authority and the files of what it signed.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&ca_key).expect("CA");
        let pki = Pki {
            dir: tempfile::tempdir().expect("tempdir"),
            ca,
            ca_key,
        };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).expect("write CA");
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Signs a leaf; writes `<name>.pem` (certificate) and `<name>.key`, and
    /// `<name>-keystore.pem` (key then certificate, as `ssl.keystore.location` takes).
    pub fn leaf(&self, name: &str, cn: &str, server: bool, expired: bool) {
        let key = KeyPair::generate().expect("key");
        let sans = if server {
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "eng");
        // A server certificate may also be presented as a client's (nodes of a cluster
        // use one certificate both ways).
        params.extended_key_usages = if server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("sign");
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).expect("write");
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).expect("write");
        std::fs::write(
            self.path(&format!("{name}-keystore.pem")),
            format!("{}{}", key.serialize_pem(), cert.pem()),
        )
        .expect("write");
    }
}
