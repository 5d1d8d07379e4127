//! The one error type of the crate: what went wrong, at which stage, and what the server said.

use std::fmt;

use crate::client::RecipientResult;
use crate::proto::{InvalidInput, Reply, ReplyError};

/// Where in the session an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Opening the TCP connection.
    Connect,
    /// Waiting for the server's `220` greeting.
    Greeting,
    /// EHLO, or the HELO fallback.
    Ehlo,
    /// STARTTLS and the TLS handshake.
    StartTls,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// The DATA command, up to its `354`.
    Data,
    /// Writing the message body and its terminating `.`.
    Body,
    /// Waiting for the reply to the final `.`: a loss here leaves the outcome unknown.
    DataEnd,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
    /// A command sent with [`crate::client::Connection::command`].
    Command,
    /// Around the sessions of a delivery: rate limits, the send's total deadline.
    Delivery,
    /// Getting an OAuth 2.0 access token from the token endpoint, before AUTH.
    Token,
    /// Building the message, before any session: its subject, body, attachments and
    /// recipients (input that cannot be sent; nothing reached a server).
    Message,
}

impl Stage {
    /// A stable snake_case name for machine-readable output (`mail_from`, `data_end`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "ehlo",
            Stage::StartTls => "starttls",
            Stage::Auth => "auth",
            Stage::MailFrom => "mail_from",
            Stage::RcptTo => "rcpt_to",
            Stage::Data => "data",
            Stage::Body => "body",
            Stage::DataEnd => "data_end",
            Stage::Rset => "rset",
            Stage::Noop => "noop",
            Stage::Quit => "quit",
            Stage::Command => "command",
            Stage::Delivery => "delivery",
            Stage::Message => "message",
            Stage::Token => "token",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Body => "message body",
            Stage::DataEnd => "end of data",
            Stage::Rset => "RSET",
            Stage::Noop => "NOOP",
            Stage::Quit => "QUIT",
            Stage::Command => "command",
            Stage::Delivery => "delivery",
            Stage::Message => "message",
            Stage::Token => "OAuth 2.0 token",
        })
    }
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The TCP connection could not be opened (refused, unreachable), or the host name could
    /// not be resolved for now (the resolver failed or was unreachable: retried).
    Connect,
    /// The host name does not resolve: the DNS says there is no such name, or no address for
    /// it. Neither transient (trying the same name again soon gives the same answer) nor a
    /// reply: a configuration problem, which a fallback provider may get around. A resolver
    /// that cannot answer for now (no network, a failing DNS server) gives
    /// [`ErrorKind::Connect`] instead, and one that does not answer in time
    /// [`ErrorKind::Timeout`]; both are transient.
    HostNotFound,
    /// Reading or writing failed on an open connection.
    Io,
    /// The server closed the connection.
    Closed,
    /// A deadline passed.
    Timeout,
    /// The server broke the protocol (malformed reply, limits exceeded, bytes out of turn).
    Protocol,
    /// The server answered with a 4yz or 5yz reply; see [`Error::reply`].
    Rejected,
    /// Input that can never be sent (bad address, control characters, no recipients).
    InvalidInput,
    /// The message is larger than the server's SIZE limit (RFC 1870).
    MessageTooLarge,
    /// The message needs an extension the server does not offer (SMTPUTF8, 8BITMIME).
    Unsupported,
    /// TLS failed (handshake, certificate).
    Tls,
    /// TLS was required but the server does not offer it or refused it.
    TlsRequired,
    /// Authentication failed or is impossible.
    Auth,
    /// The connection already failed before (timeout, protocol error, 421) and is not used again.
    Poisoned,
}

impl ErrorKind {
    /// A stable snake_case name for machine-readable output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::HostNotFound => "host_not_found",
            ErrorKind::Io => "io",
            ErrorKind::Closed => "closed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Rejected => "rejected",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::MessageTooLarge => "message_too_large",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Tls => "tls",
            ErrorKind::TlsRequired => "tls_required",
            ErrorKind::Auth => "auth",
            ErrorKind::Poisoned => "poisoned",
        }
    }
}

/// An error from connecting, talking to, or sending through an SMTP server.
///
/// Carries the [`Stage`], the server's [`Reply`] when there was one, and for a transaction
/// the per-recipient results. Never contains a password or AUTH payload.
pub struct Error {
    kind: ErrorKind,
    stage: Stage,
    message: String,
    reply: Option<Reply>,
    recipients: Vec<RecipientResult>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// AUTH was refused with a secret whose source will give a new one: one more session
    /// may succeed (see `Connection::connect`).
    pub(crate) new_secret_may_help: bool,
}

impl Error {
    /// An error of `kind` at `stage` (for your own [`crate::client::Sender`] or stream).
    ///
    /// ```
    /// use smtpkit::{Error, ErrorKind, Stage};
    /// let err = Error::new(ErrorKind::Closed, Stage::Connect, "tunnel went away");
    /// assert!(err.is_transient());
    /// ```
    pub fn new(kind: ErrorKind, stage: Stage, message: impl Into<String>) -> Error {
        Error {
            kind,
            stage,
            message: message.into(),
            reply: None,
            recipients: Vec::new(),
            source: None,
            new_secret_may_help: false,
        }
    }

    /// The server refused at `stage` with `reply` ([`ErrorKind::Rejected`]).
    pub fn rejected(stage: Stage, reply: Reply) -> Error {
        Error::new(ErrorKind::Rejected, stage, "server rejected the command").with_reply(reply)
    }

    pub(crate) fn io(stage: Stage, err: std::io::Error) -> Error {
        let kind = match err.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => ErrorKind::Closed,
            _ => ErrorKind::Io,
        };
        Error::new(kind, stage, err.to_string()).with_source(err)
    }

    /// The same error without its source (for reporting one failure against several items).
    pub(crate) fn duplicate(&self) -> Error {
        Error {
            kind: self.kind,
            stage: self.stage,
            message: self.message.clone(),
            reply: self.reply.clone(),
            recipients: self.recipients.clone(),
            source: None,
            new_secret_may_help: self.new_secret_may_help,
        }
    }

    /// The same error, carrying the server's reply.
    pub fn with_reply(mut self, reply: Reply) -> Error {
        self.reply = Some(reply);
        self
    }

    pub(crate) fn with_recipients(mut self, recipients: Vec<RecipientResult>) -> Error {
        self.recipients = recipients;
        self
    }

    /// The same error, with the failure that caused it as its [`std::error::Error::source`].
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Where in the session it happened.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// What went wrong, in words: without the stage and the server's reply, which
    /// [`Error`]'s `Display` adds.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The server's reply, when the error is a reply.
    pub fn reply(&self) -> Option<&Reply> {
        self.reply.as_ref()
    }

    /// Per-recipient results, when the error ended a transaction after RCPT TO.
    pub fn recipients(&self) -> &[RecipientResult] {
        &self.recipients
    }

    /// True when trying again later may succeed: 4yz replies, lost or refused connections and
    /// timeouts — but not when the outcome is unknown (see [`Error::is_outcome_unknown`]).
    pub fn is_transient(&self) -> bool {
        if self.is_outcome_unknown() {
            return false;
        }
        match self.kind {
            ErrorKind::Connect | ErrorKind::Io | ErrorKind::Closed | ErrorKind::Timeout => true,
            ErrorKind::Rejected | ErrorKind::Auth => {
                self.reply.as_ref().is_some_and(Reply::is_transient)
            }
            _ => false,
        }
    }

    /// True when trying again will fail the same way: 5yz replies, input that cannot be sent,
    /// a host name that does not resolve.
    pub fn is_permanent(&self) -> bool {
        match self.kind {
            ErrorKind::Rejected | ErrorKind::Auth => {
                self.reply.as_ref().is_none_or(Reply::is_permanent)
            }
            ErrorKind::InvalidInput
            | ErrorKind::HostNotFound
            | ErrorKind::MessageTooLarge
            | ErrorKind::Unsupported
            | ErrorKind::TlsRequired => true,
            _ => false,
        }
    }

    /// True when a deadline passed.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// True for TLS failures, including TLS required but unavailable.
    pub fn is_tls(&self) -> bool {
        matches!(self.kind, ErrorKind::Tls | ErrorKind::TlsRequired)
    }

    /// True when the connection was lost or timed out after the whole message and its final
    /// `.` were sent, before the server's reply: the message may or may not have been accepted.
    /// Retrying could deliver it twice.
    pub fn is_outcome_unknown(&self) -> bool {
        // RFC 1047: once the final `.` left, the server may have taken the message whatever
        // goes wrong before a complete, well-formed reply — a lost connection, a timeout, or a
        // malformed reply (`250-…` then another code).
        self.stage == Stage::DataEnd
            && matches!(
                self.kind,
                ErrorKind::Io | ErrorKind::Closed | ErrorKind::Timeout | ErrorKind::Protocol
            )
    }

    /// Troubleshooting advice for this failure, following the provider documentation.
    pub fn hint(&self) -> Option<&'static str> {
        let code = self.reply.as_ref().map(|r| r.code().value());
        let proxy_unreachable = self.message.starts_with(crate::client::PROXY_UNREACHABLE);
        let proxy_said = self.message.starts_with("proxy ");
        Some(match (self.kind, self.stage, code) {
            // A proxy (`ClientOptions::proxy`, the `proxy` key): its own advice.
            (ErrorKind::HostNotFound, Stage::Connect, _) if proxy_unreachable => {
                "The proxy's host name does not resolve: check the host in `proxy` (with `proxy: env`, in ALL_PROXY or HTTPS_PROXY)."
            }
            (_, Stage::Connect, _) if proxy_unreachable => {
                "The proxy could not be reached: check the host and port in `proxy` (with `proxy: env`, in ALL_PROXY or HTTPS_PROXY) and that the proxy is running and lets this machine connect. It is retried like a refused connection."
            }
            (ErrorKind::Auth, Stage::Connect, _) => {
                "The proxy refused its login: check the user name and password in the `proxy` URL (percent-encode `@`, `:`, `/` and `%` in them: `p%40ss` for `p@ss`). They are the proxy's, not the SMTP server's `user` and `pass`."
            }
            (ErrorKind::Connect, Stage::Connect, _) if proxy_said => {
                "The proxy would not open a tunnel to the SMTP server: it may not allow this host or port (HTTP proxies often allow CONNECT to port 443 only: ask for the SMTP port, 587 or 465, to be allowed), or it cannot reach the server itself. It is retried like a refused connection."
            }
            (ErrorKind::Timeout, Stage::Connect, _) if proxy_said => {
                "The proxy took the connection but opened no tunnel in time: the SMTP server may be unreachable from the proxy. Check `host`, `port` and `timeouts.connect`."
            }
            (_, Stage::Connect, _) if proxy_said => {
                "The proxy did not answer as a proxy of its scheme should: check that `proxy` names the right kind (socks5://, socks5h:// or http://) and the proxy's port for it."
            }
            (ErrorKind::HostNotFound, _, _) => {
                "The host name does not resolve: check `host` for a typo, and that the name exists (`host NAME` or `dig NAME`). Not retried: the same name gives the same answer."
            }
            (ErrorKind::Auth, Stage::Token, _) if self.message.contains("invalid_grant") => {
                "The refresh token was revoked or has expired (password change, long unused, or a policy): run `smtpkit auth login --config FILE --provider NAME` to sign in again; the new token goes to `token_cache`."
            }
            (ErrorKind::Auth, Stage::Token, _) if self.message.starts_with("no refresh token") => {
                "Sign in once with `smtpkit auth login --config FILE --provider NAME`: it stores the refresh token in `token_cache` (or prints it with `--print`, for `refresh_token: ${VAR}`)."
            }
            (ErrorKind::Auth, Stage::Token, _) if self.message.contains("invalid_client") => {
                "Check `client_id` and `client_secret` against the app registration (client secrets expire: create a new one); a public client has no `client_secret`."
            }
            (ErrorKind::Auth, Stage::Token, _) => {
                "Check the `oauth2` settings (tenant, client_id, scope, grant) against the app registration; the words in parentheses are the identity provider's."
            }
            (ErrorKind::Connect | ErrorKind::Timeout, Stage::Token, _) => {
                "The token endpoint could not be reached: check the network and `token_url` (or the preset's endpoint). It is retried like a connection failure."
            }
            (_, Stage::Token, _) => {
                "The token endpoint did not answer as an OAuth 2.0 token endpoint: check `token_url`."
            }
            // Microsoft 365 with Basic authentication turned off for SMTP AUTH.
            (ErrorKind::Auth | ErrorKind::Rejected, _, Some(535 | 550))
                if self.enhanced_is("5.7.139") || self.enhanced_is("5.7.30") =>
            {
                "Microsoft 365 refuses password (Basic) authentication here: add an `oauth2:` block with `provider: microsoft` (README: \"Gmail, Outlook.com and Microsoft 365 with OAuth 2.0\"), or have an administrator enable Authenticated SMTP for the mailbox."
            }
            (ErrorKind::Auth | ErrorKind::Rejected, _, Some(535)) if self.enhanced_is("5.7.3") => {
                "Microsoft 365 did not accept the login: with a password, check it and that Authenticated SMTP is enabled for the mailbox; with `oauth2`, check that the app has SMTP.Send (or SMTP.SendAsApp, with its service principal registered in Exchange Online) and that `user` is the mailbox."
            }
            // Gmail: 2-Step Verification on, a plain password given.
            (ErrorKind::Auth | ErrorKind::Rejected, _, Some(534)) if self.enhanced_is("5.7.9") => {
                "Gmail wants an App Password (Google Account → Security → 2-Step Verification → App passwords) in `pass`, or an `oauth2:` block with `provider: google`."
            }
            (ErrorKind::Auth | ErrorKind::Rejected, _, Some(535)) if self.reply_mentions("BADCREDENTIALS") => {
                "Gmail did not accept these credentials: use an App Password, not the account password, or an `oauth2:` block with `provider: google`. With `oauth2` (already refreshed once), check that the scope is https://mail.google.com/ and that `user` is the account the token belongs to."
            }
            (ErrorKind::Connect, _, _) if self.message.starts_with("cannot resolve host") => {
                "The DNS lookup failed for now (no network, or the DNS server is unreachable or failing): check the network and the resolver (/etc/resolv.conf); it is retried."
            }
            (ErrorKind::Connect, _, _) => {
                "Verify host and port are correct; check that firewall rules allow outbound connections on SMTP ports; test connectivity with `telnet HOST PORT`."
            }
            (ErrorKind::Timeout | ErrorKind::Protocol, Stage::Greeting, _) => {
                "The server did not greet in plain SMTP: port 465 expects implicit TLS (`security: tls`), ports 587 and 25 expect STARTTLS (`security: starttls`). Check that host and port are right."
            }
            // RFC 4954 §6 / RFC 3207 §4: 530 to MAIL (or another command) says the server wants
            // AUTH first, or, in some servers' words, STARTTLS first.
            (ErrorKind::Rejected, _, Some(530)) if self.reply_mentions("TLS") => {
                "The server requires TLS first: use `security: starttls` (port 587) or `security: tls` (port 465), not `security: none`."
            }
            (ErrorKind::Rejected, _, Some(530)) => {
                "The server requires authentication: configure `user` and `pass` for this provider (and remove `auth: none`, or set `auth` to a mechanism the server offers)."
            }
            (ErrorKind::Auth, _, _) | (ErrorKind::Rejected, Stage::Auth, _) => {
                "Verify username and password; for Gmail and other providers with 2FA use an App Password; check that the account is not locked or suspended."
            }
            (ErrorKind::Tls, _, _) if self.message.contains("InvalidContentType") || self.message.contains("corrupt message") => {
                "The server answered in plain text, not TLS: this port expects STARTTLS. Set `security: starttls` (port 587), or use port 465 for implicit TLS."
            }
            (ErrorKind::Tls, _, _) if self.message.contains("UnknownIssuer") => {
                "The server's certificate is signed by a CA this machine does not trust: for a private CA (a company relay, `smtpkit serve`), set `ca_file` to that CA's certificate (PEM); for a public provider, update the system CA certificates. Use `tls_skip_verify: true` only for trusted internal servers."
            }
            (ErrorKind::Tls, _, _) if self.message.contains("CaUsedAsEndEntity") => {
                "The server presents a CA certificate as its own (a self-signed certificate made with CA:TRUE, as `openssl req -x509` does by default), which TLS refuses even when it is in `ca_file`: give the server a certificate signed by that CA (CA:FALSE) and keep the CA in `ca_file`; use `tls_skip_verify: true` only for trusted internal servers."
            }
            (ErrorKind::Tls, _, _) => {
                "Update the system CA certificates (or set `ca_file` for a private CA), check that the server's certificate is valid for this host name, and check whether the port wants STARTTLS (587) or implicit TLS (465). Use `tls_skip_verify: true` only for trusted internal servers."
            }
            (ErrorKind::TlsRequired, _, _) => {
                "The server does not offer STARTTLS on this port. Use port 465 with `security: tls`, or, only on a trusted network, `security: none`."
            }
            (ErrorKind::Rejected, Stage::MailFrom, _) => {
                "Verify that the sender address is authorized on this server and that its domain is verified (SPF, DKIM, DMARC)."
            }
            (ErrorKind::Rejected, Stage::RcptTo, _) => {
                "Ensure the recipient addresses are valid and that the server relays for you (authenticate first)."
            }
            (ErrorKind::Rejected, Stage::Data | Stage::DataEnd, _) => {
                "The server refused the message: review its reply and the server logs (content, SPF/DKIM/DMARC, rate limits)."
            }
            (ErrorKind::Rejected, Stage::Greeting, Some(554)) => "The server refuses service to this client address.",
            (ErrorKind::Rejected, _, Some(421)) => "The server is busy or closing; try again later.",
            (ErrorKind::MessageTooLarge, _, _) => "Make the message smaller (attachments) or use a server with a larger SIZE limit.",
            (ErrorKind::Unsupported, _, _) => {
                "The server lacks an extension the message needs: use ASCII addresses (no SMTPUTF8) or a 7-bit transfer encoding (no 8BITMIME)."
            }
            (ErrorKind::Timeout, _, _) => "The server stopped answering; check the network and the timeouts configured.",
            _ if self.is_outcome_unknown() => {
                "The message may have been delivered: check the recipient before sending again."
            }
            _ => return None,
        })
    }
}

impl Error {
    /// Whether the server's reply carries the enhanced status code `code` (`5.7.139`).
    fn enhanced_is(&self, code: &str) -> bool {
        self.reply
            .as_ref()
            .and_then(Reply::enhanced_code)
            .is_some_and(|e| e.to_string() == code)
    }

    /// Whether the server's reply says `word` (case-insensitive).
    fn reply_mentions(&self, word: &str) -> bool {
        self.reply.as_ref().is_some_and(|r| {
            r.lines()
                .iter()
                .any(|l| l.to_ascii_uppercase().contains(word))
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.stage, self.message)?;
        if let Some(reply) = &self.reply {
            write!(f, ": {reply}")?;
        }
        if self.is_outcome_unknown() {
            f.write_str(" (the message may have been delivered)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("stage", &self.stage)
            .field("message", &self.message)
            .field("reply", &self.reply.as_ref().map(ToString::to_string))
            .field("recipients", &self.recipients.len())
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<InvalidInput> for Error {
    fn from(err: InvalidInput) -> Error {
        Error::new(ErrorKind::InvalidInput, Stage::Command, err.to_string()).with_source(err)
    }
}

impl Error {
    pub(crate) fn protocol(stage: Stage, err: ReplyError) -> Error {
        Error::new(ErrorKind::Protocol, stage, err.to_string()).with_source(err)
    }

    pub(crate) fn invalid(stage: Stage, err: InvalidInput) -> Error {
        Error::new(ErrorKind::InvalidInput, stage, err.to_string()).with_source(err)
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ReplyCode;

    fn rejected(stage: Stage, code: u16, text: &str) -> Error {
        let reply = Reply::new(ReplyCode::new(code).expect("valid"), vec![text.to_owned()]);
        Error::rejected(stage, reply)
    }

    fn auth_refused(code: u16, text: &str) -> Error {
        let reply = Reply::new(ReplyCode::new(code).expect("valid"), vec![text.to_owned()]);
        Error::new(
            ErrorKind::Auth,
            Stage::Auth,
            "XOAUTH2 authentication failed",
        )
        .with_reply(reply)
    }

    #[test]
    fn microsoft_and_gmail_refusals_name_their_fix() {
        for (code, text, wanted) in [
            (535, "5.7.139 Authentication unsuccessful, basic authentication is disabled.", "`oauth2:`"),
            (550, "5.7.30 Basic authentication is not supported for Client Submission.", "Authenticated SMTP"),
            (535, "5.7.3 Authentication unsuccessful", "SMTP.Send"),
            (534, "5.7.9 Application-specific password required. Learn more at https://support.google.com/mail/?p=InvalidSecondFactor", "App Password"),
            (535, "5.7.8 Username and Password not accepted. For more information, go to https://support.google.com/mail/?p=BadCredentials", "https://mail.google.com/"),
        ] {
            let hint = auth_refused(code, text).hint().expect("hint");
            assert!(hint.contains(wanted), "{code} {text}: {hint}");
        }
        // Not Microsoft's 5.7.3 because it starts with the same digits.
        let other = auth_refused(535, "5.7.8 Error: authentication failed");
        assert!(other.hint().expect("hint").contains("App Password"));
        assert!(!other.hint().expect("hint").contains("SMTP.Send"));
    }

    #[test]
    fn token_endpoint_failures_point_at_the_oauth2_block_or_the_login() {
        let invalid_grant = Error::new(
            ErrorKind::Auth,
            Stage::Token,
            "the refresh token is not accepted (revoked or expired) (invalid_grant)",
        );
        assert!(invalid_grant
            .hint()
            .expect("hint")
            .contains("smtpkit auth login"));
        assert!(invalid_grant.is_permanent());
        let down = Error::new(
            ErrorKind::Connect,
            Stage::Token,
            "cannot reach the token endpoint",
        );
        assert!(down.is_transient());
        assert!(down.hint().expect("hint").contains("token_url"));
        assert!(!down.hint().expect("hint").contains("telnet"));
    }

    #[test]
    fn a_530_is_about_credentials_or_tls_not_the_sender_domain() {
        let auth = rejected(Stage::MailFrom, 530, "5.7.0 Authentication required");
        let hint = auth.hint().expect("hint");
        assert!(hint.contains("`user` and `pass`"), "{hint}");
        let tls = rejected(
            Stage::MailFrom,
            530,
            "5.7.0 Must issue a STARTTLS command first",
        );
        let hint = tls.hint().expect("hint");
        assert!(hint.contains("`security: starttls`"), "{hint}");
        let other = rejected(Stage::MailFrom, 550, "5.7.1 sender not allowed");
        assert!(other.hint().expect("hint").contains("SPF"));
    }

    #[test]
    fn a_ca_certificate_served_as_the_servers_own_is_explained() {
        let err = Error::new(
            ErrorKind::Tls,
            Stage::Connect,
            "TLS handshake (implicit TLS) with 127.0.0.1 failed: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
        );
        let hint = err.hint().expect("hint");
        assert!(
            hint.contains("CA:FALSE") && hint.contains("`ca_file`"),
            "{hint}"
        );
    }

    #[test]
    fn an_unknown_ca_is_fixed_with_ca_file_first() {
        let err = Error::new(
            ErrorKind::Tls,
            Stage::StartTls,
            "TLS handshake after STARTTLS with 127.0.0.1 failed: invalid peer certificate: UnknownIssuer",
        );
        let hint = err.hint().expect("hint");
        let ca_file = hint.find("`ca_file`").expect("names ca_file");
        let skip = hint
            .find("`tls_skip_verify")
            .expect("names tls_skip_verify");
        assert!(ca_file < skip, "{hint}");
    }
}
