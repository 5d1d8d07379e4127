//! Certificates made in the test with rcgen: a private CA, leaves signed by it (valid, expired,
//! for another name) and self-signed ones, plus the rustls server configs the mock serves them with.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;

/// What kind of server certificate to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// Signed by the test CA, valid now, for `localhost` and 127.0.0.1.
    Valid,
    /// Signed by the test CA, valid only in 2020.
    Expired,
    /// Signed by the test CA, for `mail.other.test` only.
    WrongName,
    /// Self-signed, for `localhost`.
    SelfSigned,
}

/// A private CA in a temporary directory, with its PEM file for `ca_file`.
pub struct TestPki {
    ca_params: CertificateParams,
    ca_key: KeyPair,
    dir: tempfile::TempDir,
    /// The CA certificate as a PEM file.
    pub ca_file: PathBuf,
}

impl TestPki {
    pub fn new() -> TestPki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "smtpkit test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write CA PEM");
        TestPki {
            ca_params,
            ca_key,
            dir,
            ca_file,
        }
    }

    /// A certificate chain and key for `leaf`.
    pub fn leaf(&self, leaf: Leaf) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let (cert, key) = self.make(leaf);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], key)
    }

    fn make(&self, leaf: Leaf) -> (rcgen::Certificate, KeyPair) {
        let names: Vec<String> = match leaf {
            Leaf::WrongName => vec!["mail.other.test".into()],
            _ => vec!["localhost".into(), "127.0.0.1".into()],
        };
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "mock.test");
        if leaf == Leaf::Expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 12, 31);
        }
        let cert = if leaf == Leaf::SelfSigned {
            params.self_signed(&key).expect("self-signed")
        } else {
            let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
            params.signed_by(&key, &issuer).expect("signed leaf")
        };
        (cert, key)
    }

    /// A rustls server config presenting `leaf`.
    pub fn server_config(&self, leaf: Leaf) -> Arc<ServerConfig> {
        let (chain, key) = self.leaf(leaf);
        let config = ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        Arc::new(config)
    }

    /// Writes `leaf` as PEM files (certificate, key) for servers started as processes.
    pub fn write_leaf_pem(&self, leaf: Leaf) -> (PathBuf, PathBuf) {
        let (cert, key) = self.make(leaf);
        let cert_path = self.dir.path().join(format!("{leaf:?}.crt"));
        let key_path = self.dir.path().join(format!("{leaf:?}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }
}
