//! Named limits that bound what a hostile or broken server can make the client hold in memory.
//!
//! RFC 5321 §4.5.3.1 sets minimum sizes that implementations must accept; real servers exceed
//! them a little (long EHLO lines, long enhanced-status texts), so the caps for what we *read*
//! are generous multiples, while the caps for what we *write* are the RFC's own numbers.

/// Longest reply line accepted, CRLF included. RFC 5321 §4.5.3.1.5 says 512; we allow slack.
pub const MAX_REPLY_LINE_LEN: usize = 4096;

/// Most lines accepted in one multi-line reply (an EHLO reply lists maybe 20 extensions).
pub const MAX_REPLY_LINES: usize = 256;

/// Most bytes accepted for one whole reply, all lines together.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Longest command line written, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE_LEN: usize = 512;

/// Longest local part of a mailbox (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;

/// Longest domain (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 255;

/// Longest reverse- or forward-path, angle brackets included (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH_LEN: usize = 256;

/// Most `334` challenges answered in one AUTH exchange before giving up.
pub const MAX_AUTH_ROUNDS: usize = 8;

/// Longest AUTH command or SASL response line written, CRLF included (RFC 4954 §4).
pub const MAX_AUTH_LINE_LEN: usize = 12288;
