//! TLS for SMTP: the security modes, the rustls client configuration and the handshake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector as RustlsConnector;

use super::stream::Stream;
use crate::error::{Error, ErrorKind, Result, Stage};

/// How the session is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// Implicit TLS on port 465, STARTTLS required everywhere else.
    #[default]
    Auto,
    /// Plain connection, then STARTTLS (RFC 3207), which is required: a server that does not
    /// offer it or refuses it ends the session before any AUTH or MAIL.
    StartTls,
    /// TLS from the first byte (RFC 8314 "implicit TLS", usually port 465).
    Tls,
    /// Plain text. Only when asked for explicitly; AUTH is then refused unless
    /// `allow_insecure_auth` is also set.
    None,
}

impl Security {
    /// `Auto` resolved for a port: 465 is implicit TLS, every other port STARTTLS.
    pub fn resolve(self, port: u16) -> Security {
        match self {
            Security::Auto if port == 465 => Security::Tls,
            Security::Auto => Security::StartTls,
            other => other,
        }
    }
}

/// Trust settings for certificate checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Skip certificate and host-name checks (the spec's `tls_skip_verify`). The session is
    /// still encrypted and handshake signatures are still verified. Use only for trusted
    /// internal servers.
    pub skip_verify: bool,
    /// A PEM file of extra trusted roots (the `ca_file` extension), added to the system's.
    pub ca_file: Option<PathBuf>,
}

/// A ready rustls configuration, cheap to clone and share between connections.
///
/// ```
/// use smtpkit::client::{TlsConnector, TlsSettings};
/// let connector = TlsConnector::new(&TlsSettings::default())?;
/// assert!(!connector.skips_verification());
/// # Ok::<(), smtpkit::Error>(())
/// ```
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    skip_verify: bool,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("skip_verify", &self.skip_verify)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trusted roots, read and parsed once per process. Certificates that could not
/// be read or parsed are reported once, as a warning: a verification failure later may be
/// their doing.
fn native_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (_, unparsable) = roots.add_parsable_certificates(loaded.certs);
        if let Some(warning) = native_roots_warning(roots.len(), unparsable, &loaded.errors) {
            tracing::warn!("{warning}");
        }
        roots
    })
}

/// What went wrong while loading the system's roots, or `None` when nothing did.
fn native_roots_warning(
    loaded: usize,
    unparsable: usize,
    errors: &[impl std::fmt::Display],
) -> Option<String> {
    if unparsable == 0 && errors.is_empty() {
        return None;
    }
    let mut problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
    if unparsable > 0 {
        problems.push(format!("{unparsable} certificate(s) could not be parsed"));
    }
    Some(format!(
        "system CA certificates: {loaded} root(s) loaded; problems: {}",
        problems.join("; ")
    ))
}

/// A TLS error at `stage`.
fn tls_error(stage: Stage, message: String) -> Error {
    Error::new(ErrorKind::Tls, stage, message)
}

/// How the handshake's errors name it: implicit TLS is part of connecting, the other follows
/// the server's `220` to STARTTLS.
fn handshake_label(stage: Stage) -> &'static str {
    if stage == Stage::StartTls {
        "TLS handshake after STARTTLS"
    } else {
        "TLS handshake (implicit TLS)"
    }
}

/// The certificates of a `ca_file`; errors name the file, not the key.
fn read_ca_file(path: &Path) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Checks that `path` holds certificates usable as trust roots, as [`TlsConnector::new`]
/// will read them (for errors when a configuration is loaded, naming its file and key).
pub(crate) fn check_ca_file(path: &Path) -> std::result::Result<(), String> {
    let mut roots = RootCertStore::empty();
    for cert in read_ca_file(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: unusable certificate: {e}", path.display()))?;
    }
    Ok(())
}

impl TlsConnector {
    /// Builds the configuration: system roots plus `ca_file`, or no checks with `skip_verify`
    /// (which logs a warning every time).
    ///
    /// Errors carry [`Stage::Connect`]: trust is set up before any connection, whichever the
    /// security mode.
    pub fn new(settings: &TlsSettings) -> Result<TlsConnector> {
        TlsConnector::build(settings).map_err(|m| tls_error(Stage::Connect, m))
    }

    fn build(settings: &TlsSettings) -> std::result::Result<TlsConnector, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        let config = if settings.skip_verify {
            tracing::warn!(
                "tls_skip_verify is set: TLS certificates and host names are NOT checked; \
                 the connection is encrypted but anyone in the path can impersonate the server"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipCertificateChecks(provider())))
                .with_no_client_auth()
        } else {
            let mut roots = native_roots().clone();
            if let Some(path) = &settings.ca_file {
                for cert in read_ca_file(path).map_err(|m| format!("ca_file: {m}"))? {
                    roots.add(cert).map_err(|e| {
                        format!("ca_file: {}: unusable certificate: {e}", path.display())
                    })?;
                }
            }
            if roots.is_empty() {
                return Err(
                    "no trusted CA certificates: install the system CA certificates (ca-certificates) or set ca_file"
                        .into(),
                );
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        Ok(TlsConnector {
            config: Arc::new(config),
            skip_verify: settings.skip_verify,
        })
    }

    /// The rustls configuration (for an HTTPS client that trusts the same roots).
    #[cfg(feature = "oauth2")]
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The connector with default settings (system roots), built once per process.
    pub fn system() -> Result<TlsConnector> {
        TlsConnector::system_at(Stage::Connect)
    }

    /// [`TlsConnector::system`], its error labelled with the `stage` that needed it.
    pub(crate) fn system_at(stage: Stage) -> Result<TlsConnector> {
        static SYSTEM: OnceLock<std::result::Result<TlsConnector, String>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| TlsConnector::build(&TlsSettings::default()))
            .clone()
            .map_err(|m| tls_error(stage, m))
    }

    /// True when certificate checks are off.
    pub fn skips_verification(&self) -> bool {
        self.skip_verify
    }

    /// Runs the handshake over `stream` for `host` (used for SNI and the name check). `stage`
    /// is [`Stage::Connect`] for implicit TLS and [`Stage::StartTls`] after STARTTLS; errors
    /// carry it and say which it was.
    pub(crate) async fn handshake(
        &self,
        stream: Box<dyn Stream>,
        host: &str,
        stage: Stage,
        limit: std::time::Duration,
    ) -> Result<(Box<dyn Stream>, TlsInfo)> {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            Error::new(
                ErrorKind::Tls,
                stage,
                format!("{host:?} is not a valid TLS server name"),
            )
        })?;
        let connector = RustlsConnector::from(self.config.clone());
        let started = std::time::Instant::now();
        let tls = match tokio::time::timeout(limit, connector.connect(name, stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                let detail = e
                    .get_ref()
                    .map_or_else(|| e.to_string(), |inner| inner.to_string());
                return Err(tls_error(
                    stage,
                    format!("{} with {host} failed: {detail}", handshake_label(stage)),
                )
                .with_source(e));
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    stage,
                    format!(
                        "{} with {host} not done within {limit:?}",
                        handshake_label(stage)
                    ),
                ))
            }
        };
        let (_, session) = tls.get_ref();
        let info = TlsInfo {
            protocol: session
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher_suite: session
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default(),
            peer_certificates: session
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            verified: !self.skip_verify,
            resumed: session.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            handshake: started.elapsed(),
        };
        Ok((Box::new(tls), info))
    }
}

/// What the TLS handshake settled.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// `TLSv1_3` or `TLSv1_2`.
    pub protocol: String,
    /// The negotiated cipher suite.
    pub cipher_suite: String,
    /// The server's certificate chain, leaf first (DER).
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// False when `skip_verify` was set: the certificate was not checked.
    pub verified: bool,
    /// True when an earlier session's secrets were reused (TLS session resumption: a
    /// connector's sessions share a cache, so a pool's sessions after the first resume),
    /// which spares the certificate exchange and its checks.
    pub resumed: bool,
    /// From the ClientHello to the handshake's end.
    pub handshake: std::time::Duration,
}

/// The leaf certificate's names and validity, for people checking a server.
#[cfg(feature = "certificate-summary")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// The subject, e.g. `CN=smtp.gmail.com`.
    pub subject: String,
    /// The issuer, e.g. `CN=WR2, O=Google Trust Services, C=US`.
    pub issuer: String,
    /// DNS names and IP addresses it is valid for.
    pub names: Vec<String>,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
}

#[cfg(feature = "certificate-summary")]
impl TlsInfo {
    /// Subject, issuer, names and validity of the server's leaf certificate.
    pub fn certificate_summary(&self) -> Option<CertificateSummary> {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let der = self.peer_certificates.first()?;
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => names
                            .push(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()),
                        16 => {
                            let mut octets = [0u8; 16];
                            octets.copy_from_slice(ip);
                            names.push(std::net::Ipv6Addr::from(octets).to_string());
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        Some(CertificateSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

/// `tls_skip_verify`: accepts any certificate for any name, but still checks that the server
/// signed the handshake with the key of the certificate it sent.
#[derive(Debug)]
struct SkipCertificateChecks(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipCertificateChecks {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_root_problems_name_the_count_and_every_error() {
        let none: [&str; 0] = [];
        assert_eq!(native_roots_warning(140, 0, &none), None);
        let warning = native_roots_warning(
            12,
            2,
            &[
                "could not load certs from dir /etc/ssl/certs: permission denied",
                "SSL_CERT_FILE /nope.pem: not found",
            ],
        )
        .expect("problems are reported");
        assert!(warning.contains("12 root(s) loaded"), "{warning}");
        assert!(
            warning.contains("/etc/ssl/certs: permission denied"),
            "{warning}"
        );
        assert!(warning.contains("SSL_CERT_FILE /nope.pem"), "{warning}");
        assert!(
            warning.contains("2 certificate(s) could not be parsed"),
            "{warning}"
        );
        let warning = native_roots_warning(0, 0, &["no certificates found"]).expect("reported");
        assert!(warning.contains("0 root(s) loaded"), "{warning}");
    }
}
