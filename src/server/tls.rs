//! Certificates for the local server: a throw-away CA and a leaf made at start, or files.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

use crate::proto::Secret;

/// A certificate authority made for one run, and a server certificate it signed.
///
/// Clients trust the run's server by trusting `ca_pem` (the `ca_file` setting), so no
/// certificate check has to be turned off.
pub struct LocalCa {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server's certificate (the leaf the CA signed), PEM: with `key_pem`, what
    /// [`load_cert_key`] reads back, to serve again with the same CA.
    pub cert_pem: String,
    /// The server certificate's private key, PEM (PKCS#8).
    pub key_pem: Secret,
    /// A rustls server configuration presenting the signed leaf.
    pub server_config: Arc<ServerConfig>,
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, String> {
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("unusable certificate or key: {e}"))?;
    Ok(Arc::new(config))
}

impl LocalCa {
    /// A CA and a leaf for `names` (host names or IP addresses, e.g. `localhost`, `127.0.0.1`).
    pub fn generate(names: &[String]) -> Result<LocalCa, String> {
        let err = |e: rcgen::Error| format!("cannot make a certificate: {e}");
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, "smtpkit local CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
        let leaf_key = KeyPair::generate().map_err(err)?;
        let mut leaf = CertificateParams::new(names.to_vec()).map_err(err)?;
        leaf.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("localhost", String::as_str),
        );
        let leaf_cert = leaf
            .signed_by(&leaf_key, &Issuer::from_params(&ca, &ca_key))
            .map_err(err)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        Ok(LocalCa {
            ca_pem: ca_cert.pem(),
            cert_pem: leaf_cert.pem(),
            key_pem: Secret::new(leaf_key.serialize_pem()),
            server_config: server_config(vec![leaf_cert.der().clone()], key)?,
        })
    }
}

/// A server configuration from PEM files: the certificate chain and its private key.
pub fn load_cert_key(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
    server_config(chain, key)
}
