//! What a failure means for a delivery: try again here, try the next provider, or stop —
//! read from the reply's enhanced status code (RFC 3463) where there is one.

use crate::error::{Error, ErrorKind};
use crate::proto::Reply;

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Worth another try through the same provider later: 4yz, a lost or refused connection,
    /// a timeout before the final `.`.
    Transient,
    /// This provider cannot send it now, another may: policy and security refusals (`X.7.x`,
    /// AUTH failures, TLS unavailable), quotas and congestion (`X.4.5`, e.g. Gmail's daily
    /// limit `550 5.4.5`), the mail system (`X.3.x`, e.g. a message too large for it), a host
    /// name that does not resolve.
    Provider,
    /// No provider will do better: bad addresses (`X.1.x`), content (`X.6.x`), protocol
    /// (`X.5.x`), input that cannot be sent.
    Permanent,
}

/// The verdict on a 5yz reply from the subject and detail of its enhanced code (RFC 3463
/// §3); `None` without one.
fn permanent_reply(reply: &Reply) -> Option<Verdict> {
    let code = reply.enhanced_code()?;
    Some(by_subject(code.subject, code.detail))
}

fn by_subject(subject: u16, detail: u16) -> Verdict {
    match (subject, detail) {
        // X.7.x security or policy, X.4.5 mail system congestion (provider quotas),
        // X.3.x mail system status.
        (7, _) | (4, 5) | (3, _) => Verdict::Provider,
        _ => Verdict::Permanent,
    }
}

/// What a refusal of one recipient at RCPT means, from its code and enhanced code:
/// [`Verdict::Permanent`] for that address (`X.1.x`, or a 5yz without an enhanced code),
/// [`Verdict::Provider`] when the provider, not the address, is the problem,
/// [`Verdict::Transient`] for 4yz.
pub(crate) fn summary_verdict(code: u16, enhanced: Option<&str>) -> Verdict {
    if code < 500 {
        return Verdict::Transient;
    }
    // RFC 4954 §6: authentication required / credentials invalid, whatever the address.
    if matches!(code, 530 | 535) {
        return Verdict::Provider;
    }
    let mut parts = enhanced.unwrap_or_default().split('.').skip(1);
    match (
        parts.next().and_then(|s| s.parse().ok()),
        parts.next().and_then(|d| d.parse().ok()),
    ) {
        (Some(subject), Some(detail)) => by_subject(subject, detail),
        _ => Verdict::Permanent,
    }
}

/// What `err`, the failure of a whole try, means.
pub(crate) fn verdict(err: &Error) -> Verdict {
    match err.kind() {
        ErrorKind::Auth | ErrorKind::Tls | ErrorKind::TlsRequired => {
            return match err.reply() {
                Some(r) if r.is_transient() => Verdict::Transient,
                _ => Verdict::Provider,
            }
        }
        // Checked on our side against this server's limits and extensions; or this provider's
        // host name does not resolve (its configuration, not the message, is wrong).
        ErrorKind::MessageTooLarge | ErrorKind::Unsupported | ErrorKind::HostNotFound => {
            return Verdict::Provider
        }
        ErrorKind::InvalidInput => return Verdict::Permanent,
        _ => {}
    }
    if err.is_transient() {
        return Verdict::Transient;
    }
    match err.reply() {
        Some(reply) if reply.is_permanent() => match reply.code().value() {
            // RFC 4954 §6: authentication required / credentials invalid.
            530 | 535 => Verdict::Provider,
            _ => permanent_reply(reply).unwrap_or(Verdict::Permanent),
        },
        _ => Verdict::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::ReplySummary;
    use crate::proto::ReplyCode;

    fn reply(code: u16, text: &str) -> Reply {
        Reply::new(ReplyCode::new(code).expect("valid"), vec![text.to_owned()])
    }

    fn recipient_verdict(reply: &Reply) -> Verdict {
        let s = ReplySummary::from(reply);
        summary_verdict(s.code, s.enhanced_code.as_deref())
    }

    #[test]
    fn recipients_are_judged_by_the_subject_of_their_enhanced_code() {
        let table = [
            (550, "5.1.1 no such user", Verdict::Permanent),
            (553, "5.1.3 bad address syntax", Verdict::Permanent),
            (550, "no such user here", Verdict::Permanent),
            (550, "5.7.1 relaying denied", Verdict::Provider),
            (
                550,
                "5.4.5 Daily user sending limit exceeded",
                Verdict::Provider,
            ),
            (552, "5.3.4 message too big for system", Verdict::Provider),
            (450, "4.2.1 mailbox busy", Verdict::Transient),
            (452, "4.5.3 too many recipients", Verdict::Transient),
        ];
        for (code, text, want) in table {
            assert_eq!(recipient_verdict(&reply(code, text)), want, "{code} {text}");
        }
    }

    #[test]
    fn a_host_that_does_not_resolve_is_the_provider_s_problem_not_retried_here() {
        use crate::error::Stage;
        let err = Error::new(
            ErrorKind::HostNotFound,
            Stage::Connect,
            "cannot resolve host nonexistent.invalid: Name or service not known",
        );
        assert_eq!(verdict(&err), Verdict::Provider);
        // A resolver that cannot answer for now is retried like a refused connection.
        let err = Error::new(
            ErrorKind::Connect,
            Stage::Connect,
            "cannot resolve host smtp.example.com for now: Temporary failure in name resolution",
        );
        assert_eq!(verdict(&err), Verdict::Transient);
    }
}
