//! sysexits(3) exit codes, as sendmail and msmtp use them.

use smtpkit::{Error, ErrorKind};

/// Sent.
pub const OK: u8 = 0;
/// Bad command line.
pub const USAGE: u8 = 64;
/// Bad input data: an address, the message.
pub const DATA_ERR: u8 = 65;
/// The host name does not resolve (EX_NOHOST, as msmtp).
pub const NO_HOST: u8 = 68;
/// Rejected permanently (5yz).
pub const UNAVAILABLE: u8 = 69;
/// Temporary failure (4yz, connection, timeout): try again later.
pub const TEMP_FAIL: u8 = 75;
/// The server broke the protocol.
pub const PROTOCOL: u8 = 76;
/// Authentication failed or required (530), or TLS required but not available.
pub const NO_PERM: u8 = 77;
/// Configuration error.
pub const CONFIG: u8 = 78;
/// Interrupted by Ctrl-C (128 + SIGINT), as shells report it.
pub const INTERRUPTED: u8 = 130;

/// The exit code for a failed delivery.
pub fn for_error(err: &Error) -> u8 {
    match err.kind() {
        ErrorKind::InvalidInput | ErrorKind::MessageTooLarge => DATA_ERR,
        ErrorKind::HostNotFound => NO_HOST,
        ErrorKind::Auth | ErrorKind::TlsRequired | ErrorKind::Tls => NO_PERM,
        // RFC 4954 §6: 530, authentication (or in some servers' words, TLS) required.
        ErrorKind::Rejected if err.reply().is_some_and(|r| r.code().value() == 530) => NO_PERM,
        ErrorKind::Protocol | ErrorKind::Poisoned => PROTOCOL,
        ErrorKind::Unsupported => UNAVAILABLE,
        _ if err.is_permanent() => UNAVAILABLE,
        _ => TEMP_FAIL,
    }
}

/// The worse of two exit codes (a failure beats success; configuration beats delivery).
pub fn worst(a: u8, b: u8) -> u8 {
    a.max(b)
}
