//! The TCP connection under a session: the host resolved (or the addresses given), every
//! address raced as RFC 8305 says (`happy_eyeballs`), TCP_NODELAY set.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::happy_eyeballs::{self, AttemptOutcome, ConnectAttempt, DEFAULT_ATTEMPT_DELAY};
use super::options::ClientOptions;
use super::transcript::record_note;
use crate::error::{Error, ErrorKind, Result, Stage};

/// Opens a TCP connection to `host:port` with TCP_NODELAY set (without it, Nagle's algorithm
/// and delayed ACKs add ~40 ms to every pipelined command group): the options' `addresses`, or
/// the host's, raced as RFC 8305 says (see `happy_eyeballs`), from `source_address` when set,
/// all within the `connect` timeout. Every attempt is noted in the transcript.
///
/// The host name is resolved first, within the same limit, so that a name that does not
/// resolve ([`ErrorKind::HostNotFound`], not retried) is told apart from a server that cannot
/// be reached ([`ErrorKind::Connect`], retried).
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    options: &ClientOptions,
) -> Result<(TcpStream, Vec<ConnectAttempt>)> {
    let limit = options.timeouts().connect;
    let deadline = Instant::now() + limit;
    let host = bare_host(host);
    let resolved = if options.addresses.is_empty() {
        resolve(host, port, deadline, limit).await?
    } else {
        options.addresses.clone()
    };
    let ordered = happy_eyeballs::order(&resolved, &options.recent_failures);
    let delay = options.attempt_delay.unwrap_or(DEFAULT_ATTEMPT_DELAY);
    let raced = happy_eyeballs::race(
        &ordered,
        options.source_address,
        delay,
        deadline,
        &options.recent_failures,
    )
    .await;
    if let Some(t) = &options.transcript {
        for a in &raced.attempts {
            record_note(t, &format!("connect {a}"));
        }
    }
    if let Some(stream) = raced.stream {
        return Ok((stream, raced.attempts));
    }
    let tried = |attempts: &[ConnectAttempt]| {
        attempts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    if raced.timed_out {
        return Err(Error::new(
            ErrorKind::Timeout,
            Stage::Connect,
            format!(
                "cannot connect to {host}:{port}: no answer within {limit:?} ({})",
                tried(&raced.attempts)
            ),
        ));
    }
    // Nothing tried: no address of the source address's family. Not retried: it will not change.
    if raced
        .attempts
        .iter()
        .all(|a| matches!(a.outcome, AttemptOutcome::Skipped(_)))
    {
        return Err(Error::new(
            ErrorKind::HostNotFound,
            Stage::Connect,
            format!(
                "cannot connect to {host}:{port}: {}; set `source_address` to an address of \
                 the server's family, or remove it",
                tried(&raced.attempts)
            ),
        ));
    }
    let message = match (&raced.last_error, raced.attempts.as_slice()) {
        // One address: the error alone, as the operating system put it.
        (Some(e), [_]) => format!("cannot connect to {host}:{port}: {e}"),
        _ => format!(
            "cannot connect to {host}:{port}: {}",
            tried(&raced.attempts)
        ),
    };
    let err = Error::new(ErrorKind::Connect, Stage::Connect, message);
    Err(match raced.last_error {
        Some(e) => err.with_source(e),
        None => err,
    })
}

/// `host` without the brackets of an IPv6 literal (`[2001:db8::1]` → `2001:db8::1`); any
/// other host as it is.
///
/// ```
/// assert_eq!(smtpkit::client::bare_host("[2001:db8::1]"), "2001:db8::1");
/// assert_eq!(smtpkit::client::bare_host("smtp.example.com"), "smtp.example.com");
/// ```
pub fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .filter(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
        .unwrap_or(host)
}

/// The addresses of `host` (an IP address needs no lookup).
///
/// std reports a failed `getaddrinfo` as text only, so the answer is read from it: a
/// temporary failure (`EAI_AGAIN`: no network, the DNS server unreachable or failing, which
/// is how SERVFAIL comes back) or a system error is [`ErrorKind::Connect`], transient like a
/// refused connection; anything else (`EAI_NONAME`: NXDOMAIN; `EAI_NODATA`: no address for
/// the name; `EAI_FAIL`) is [`ErrorKind::HostNotFound`]. A lookup still running at the
/// deadline is a [`ErrorKind::Timeout`].
pub(super) async fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
    limit: Duration,
) -> Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let not_found = |detail: &str| {
        Error::new(
            ErrorKind::HostNotFound,
            Stage::Connect,
            format!("cannot resolve host {host}: {detail}"),
        )
    };
    match timeout_at(deadline, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                return Err(not_found("no address for this name"));
            }
            Ok(addrs)
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            let detail = text
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&text);
            let err = if lookup_failed_for_now(&e) {
                Error::new(
                    ErrorKind::Connect,
                    Stage::Connect,
                    format!("cannot resolve host {host} for now: {detail}"),
                )
            } else {
                not_found(detail)
            };
            Err(err.with_source(e))
        }
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            Stage::Connect,
            format!("cannot resolve host {host}: the DNS gave no answer within {limit:?}"),
        )),
    }
}

/// Whether a failed lookup may succeed later: the resolver could not answer, as opposed to
/// answering that the name has no address.
fn lookup_failed_for_now(e: &std::io::Error) -> bool {
    // Windows gives the WSA code: WSAHOST_NOT_FOUND (11001), WSANO_RECOVERY (11003) and
    // WSANO_DATA (11004) are answers; WSATRY_AGAIN (11002) and the rest are not.
    #[cfg(windows)]
    if let Some(code) = e.raw_os_error() {
        return !matches!(code, 11001 | 11003 | 11004);
    }
    // Unix: EAI_SYSTEM comes as the OS error; every other code as gai_strerror's text
    // ("Temporary failure in name resolution" in glibc and macOS, "Try again" in musl).
    if e.raw_os_error().is_some() {
        return true;
    }
    let text = e.to_string().to_ascii_lowercase();
    text.contains("temporary failure") || text.contains("try again")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_connections_have_nodelay_set() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (stream, attempts) = connect_tcp("127.0.0.1", port, &ClientOptions::default())
            .await
            .expect("connects");
        assert_eq!(attempts.len(), 1);
        assert!(
            stream.nodelay().expect("readable option"),
            "TCP_NODELAY must be set"
        );
    }

    #[test]
    fn a_lookup_that_may_succeed_later_is_told_from_a_name_that_does_not_exist() {
        use std::io::Error as IoError;
        let gai =
            |text: &str| IoError::other(format!("failed to lookup address information: {text}"));
        for now in [
            gai("Temporary failure in name resolution"), // glibc, macOS: EAI_AGAIN
            gai("Try again"),                            // musl: EAI_AGAIN
            IoError::from_raw_os_error(110),             // EAI_SYSTEM: the OS error
        ] {
            assert!(lookup_failed_for_now(&now), "{now}");
        }
        for answer in [
            gai("Name or service not known"),           // glibc: EAI_NONAME
            gai("No address associated with hostname"), // glibc: EAI_NODATA
            gai("Name does not resolve"),               // musl: EAI_NONAME
            gai("nodename nor servname provided, or not known"), // macOS
            gai("Non-recoverable failure in name resolution"), // EAI_FAIL
        ] {
            assert!(!lookup_failed_for_now(&answer), "{answer}");
        }
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_host_not_found_and_not_transient() {
        // RFC 2606: `.invalid` never resolves. A machine whose resolver cannot answer at all
        // gets the transient kind instead; either way the error says it could not resolve.
        let err = connect_tcp("nonexistent.invalid", 25, &ClientOptions::default())
            .await
            .expect_err("does not resolve");
        assert!(
            err.to_string()
                .contains("cannot resolve host nonexistent.invalid"),
            "{err}"
        );
        match err.kind() {
            ErrorKind::HostNotFound => {
                assert!(!err.is_transient() && err.is_permanent(), "{err}");
                let hint = err.hint().expect("a hint");
                assert!(
                    hint.contains("`host`") && !hint.contains("telnet"),
                    "{hint}"
                );
            }
            ErrorKind::Connect | ErrorKind::Timeout => assert!(err.is_transient(), "{err}"),
            other => panic!("unexpected {other:?}: {err}"),
        }
    }
}
