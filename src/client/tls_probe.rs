//! Whether a port speaks TLS from its first byte (implicit TLS, RFC 8314): the likely reason
//! a server sends no SMTP greeting to a plain-text client.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use super::options::ClientOptions;

/// How long the greeting may be missing before the port is probed.
pub(crate) const PROBE_AFTER: Duration = Duration::from_secs(3);

/// How long a probe may take in all.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// A minimal TLS 1.2 ClientHello (RFC 5246 §7.4.1.2): version 3.3, a fixed random, no session,
/// two ECDHE-GCM suites, no compression, no extensions. A TLS server answers it with a
/// handshake record or an alert — a TLS record either way, which is all the probe asks.
const CLIENT_HELLO: [u8; 52] = [
    0x16, 0x03, 0x01, 0x00, 0x2f, // record: handshake, TLS 1.0 framing, 47 bytes
    0x01, 0x00, 0x00, 0x2b, // ClientHello, 43 bytes
    0x03, 0x03, // client_version TLS 1.2
    0x73, 0x6d, 0x74, 0x70, 0x6b, 0x69, 0x74, 0x2d, 0x74, 0x6c, 0x73, 0x2d, 0x70, 0x72, 0x6f, 0x62,
    0x65, 0x2d, 0x72, 0x61, 0x6e, 0x64, 0x6f, 0x6d, 0x2d, 0x62, 0x79, 0x74, 0x65, 0x73, 0x21, 0x21,
    0x00, // session id: none
    0x00, 0x04, 0xc0, 0x2f, 0xc0, 0x2b, // cipher suites
    0x01, 0x00, // compression: null
];

/// True when `bytes` start a TLS record (RFC 5246 §6.2.1): handshake or alert, version 3.x.
pub(crate) fn is_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}

/// Opens a second connection to `host:port` and says ClientHello: true when a TLS record
/// comes back. Any failure or silence is "not known to be TLS".
pub(crate) async fn speaks_tls(host: &str, port: u16, options: &ClientOptions) -> bool {
    let probe = async {
        let mut stream = super::connection::open_stream(host, port, options)
            .await
            .ok()?
            .stream;
        stream.write_all(&CLIENT_HELLO).await.ok()?;
        stream.flush().await.ok()?;
        let mut head = [0u8; 3];
        stream.read_exact(&mut head).await.ok()?;
        Some(is_tls_record(&head))
    };
    matches!(timeout(PROBE_LIMIT, probe).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_hello_is_framed_consistently() {
        let record_len = usize::from(u16::from_be_bytes([CLIENT_HELLO[3], CLIENT_HELLO[4]]));
        assert_eq!(record_len, CLIENT_HELLO.len() - 5);
        let body_len = usize::from(CLIENT_HELLO[8]);
        assert_eq!(body_len, CLIENT_HELLO.len() - 9);
    }

    #[test]
    fn tls_records_are_told_from_smtp() {
        assert!(is_tls_record(&[0x15, 0x03, 0x03]));
        assert!(is_tls_record(&[0x16, 0x03, 0x01]));
        assert!(!is_tls_record(b"220"));
        assert!(!is_tls_record(b"554"));
    }
}
