//! Reaching the SMTP server through a proxy: SOCKS5 (RFC 1928, RFC 1929; feature `socks`) or
//! an HTTP proxy's CONNECT (RFC 9110 §9.3.6). The tunnel stands where the TCP connection
//! would: TLS and SMTP run over it unchanged.
//!
//! Every error names the proxy (its URL without the password) and says what happened:
//!
//! | what | kind |
//! |---|---|
//! | the proxy cannot be reached (refused, unreachable, its name does not resolve) | as for a server: [`ErrorKind::Connect`], [`ErrorKind::HostNotFound`], [`ErrorKind::Timeout`] |
//! | the proxy refused the user name or password, or wants one | [`ErrorKind::Auth`] |
//! | the proxy would not (or could not) open the tunnel to the SMTP server | [`ErrorKind::Connect`], transient |
//! | the proxy's answer is not SOCKS5 or HTTP | [`ErrorKind::Protocol`] |
//! | no tunnel within the `connect` timeout | [`ErrorKind::Timeout`] |
//!
//! All of it at [`Stage::Connect`], within the `connect` timeout.

mod http_connect;
#[cfg(feature = "socks")]
mod socks5;
mod url;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::{timeout_at, Instant};

use super::options::ClientOptions;
use super::stream::Stream;
use super::transcript::{record, Direction};
use crate::error::{Error, ErrorKind, Result, Stage};

pub use url::{Proxy, ProxyKind, ProxyUrlError};

/// How the start of every error about a proxy that could not be reached reads.
pub(crate) const UNREACHABLE_PREFIX: &str = "cannot reach proxy ";

/// Opens a tunnel through `proxy` to `host:port`, all within `limit`: connects to the proxy,
/// logs in when the URL has a user name, and asks for the tunnel. Returns the tunnel and,
/// when the proxy tells it (SOCKS5), the address the SMTP server sees the connection from.
///
/// Cancel safety: nothing outlives a dropped future; the connection to the proxy is closed.
pub(crate) async fn open_tunnel(
    proxy: &Proxy,
    host: &str,
    port: u16,
    limit: Duration,
    options: &ClientOptions,
) -> Result<(Box<dyn Stream>, Option<SocketAddr>)> {
    let transcript = options.transcript.as_ref();
    let deadline = Instant::now() + limit;
    // Set once the proxy took the connection: a timeout after it is the tunnel's.
    let mut reached = false;
    let attempt = async {
        match proxy.kind() {
            #[cfg(feature = "socks")]
            ProxyKind::Socks5 | ProxyKind::Socks5h => {
                socks5::tunnel(proxy, host, port, deadline, limit, options, &mut reached).await
            }
            #[cfg(not(feature = "socks"))]
            ProxyKind::Socks5 | ProxyKind::Socks5h => Err(Error::new(
                ErrorKind::InvalidInput,
                Stage::Connect,
                format!("{proxy}: SOCKS5 proxies need smtpkit's `socks` feature"),
            )),
            ProxyKind::HttpConnect => {
                let tcp = connect_to_proxy(proxy, limit, options).await?;
                reached = true;
                let stream = http_connect::tunnel(tcp, proxy, host, port).await?;
                Ok(Tunnel {
                    stream,
                    local: None,
                    target: authority(checked_host(proxy, host)?, port),
                })
            }
        }
    };
    let result = timeout_at(deadline, attempt).await;
    match result {
        Ok(Ok(tunnel)) => {
            record(
                transcript,
                Direction::Info,
                &format!("proxy {proxy}: tunnel to {} open", tunnel.target),
            );
            Ok((tunnel.stream, tunnel.local))
        }
        Ok(Err(err)) => Err(err),
        Err(_) if !reached => Err(Error::new(
            ErrorKind::Timeout,
            Stage::Connect,
            format!("{UNREACHABLE_PREFIX}{proxy}: no answer within {limit:?}"),
        )),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            Stage::Connect,
            format!("proxy {proxy} opened no tunnel to {host}:{port} within {limit:?}"),
        )),
    }
}

/// An open tunnel.
struct Tunnel {
    stream: Box<dyn Stream>,
    /// The address the SMTP server sees the connection from, when the proxy says.
    local: Option<SocketAddr>,
    /// What the tunnel leads to, for the transcript: `host:port` and how the name was resolved.
    target: String,
}

/// The TCP connection to the proxy itself, as to any server (its errors keep their kind: a
/// refused connection is [`ErrorKind::Connect`], a name that does not resolve
/// [`ErrorKind::HostNotFound`]), with the message naming the proxy.
async fn connect_to_proxy(
    proxy: &Proxy,
    limit: Duration,
    options: &ClientOptions,
) -> Result<tokio::net::TcpStream> {
    let transcript = options.transcript.as_ref();
    // The proxy's own addresses (Happy Eyeballs, from `source_address` if set), not the
    // SMTP server's, within what is left of the connect timeout.
    let direct = ClientOptions {
        addresses: Vec::new(),
        proxy: None,
        timeouts: crate::client::Timeouts {
            connect: limit,
            ..options.timeouts
        },
        ..options.clone()
    };
    let (tcp, _attempts) = super::tcp::connect_tcp(proxy.host(), proxy.port(), &direct)
        .await
        .map_err(|e| {
            Error::new(
                e.kind(),
                Stage::Connect,
                format!("{UNREACHABLE_PREFIX}{proxy}: {}", e.message()),
            )
            .with_source(e)
        })?;
    record(
        transcript,
        Direction::Info,
        &format!("connected to proxy {proxy}"),
    );
    Ok(tcp)
}

/// The proxy refused the user name and password, or wants some: [`ErrorKind::Auth`].
fn auth_refused(proxy: &Proxy, what: &str) -> Error {
    let message = if proxy.username().is_some() {
        format!("proxy {proxy} refused the user name or password ({what})")
    } else {
        format!(
            "proxy {proxy} requires a user name and password ({what}): write them in the URL, \
             {}://user:password@{}",
            proxy.kind().scheme(),
            proxy
                .to_string()
                .split_once("://")
                .map_or("", |(_, rest)| rest)
        )
    };
    Error::new(ErrorKind::Auth, Stage::Connect, message)
}

/// The proxy would not, or could not, open the tunnel: transient, like a refused connection.
fn tunnel_refused(proxy: &Proxy, target: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::Connect,
        Stage::Connect,
        format!("proxy {proxy} refused the tunnel to {target}: {what}"),
    )
}

/// `host:port`, an IPv6 address in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The proxy's answer is not what the protocol says.
fn malformed(proxy: &Proxy, what: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        Stage::Connect,
        format!("proxy {proxy} sent a malformed reply: {what}"),
    )
}

/// Reading from or writing to the proxy failed before the tunnel was open.
fn io_failed(proxy: &Proxy, err: std::io::Error) -> Error {
    let kind = match err.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe => ErrorKind::Closed,
        _ => ErrorKind::Io,
    };
    let what = if kind == ErrorKind::Closed {
        "closed the connection before the tunnel was open".to_owned()
    } else {
        format!("failed before the tunnel was open: {err}")
    };
    Error::new(kind, Stage::Connect, format!("proxy {proxy} {what}")).with_source(err)
}

/// `host` as the authority of a CONNECT request or a SOCKS5 domain name: an IPv6 address
/// without brackets for SOCKS, in brackets for HTTP. Refuses anything that is not a host.
fn checked_host<'h>(proxy: &Proxy, host: &'h str) -> Result<&'h str> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
    if bare.is_empty() || !bare.chars().all(allowed) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            Stage::Connect,
            format!(
                "cannot ask proxy {proxy} for a tunnel to {:?}: not a host name or IP address",
                super::transcript::escape(host)
            ),
        ));
    }
    Ok(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_proxy_and_never_its_password() {
        let proxy = Proxy::parse("http://alice:hunter2@proxy.example.com:3128").expect("valid");
        let anonymous = Proxy::parse("http://proxy.example.com:3128").expect("valid");
        for err in [
            auth_refused(&proxy, "407 Proxy Authentication Required"),
            auth_refused(&anonymous, "407 Proxy Authentication Required"),
            tunnel_refused(&proxy, "smtp.example.com:587", "403 Forbidden"),
            malformed(&proxy, "not HTTP"),
            io_failed(
                &proxy,
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            ),
        ] {
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("proxy.example.com:3128"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert_eq!(err.stage(), Stage::Connect);
        }
        let err = auth_refused(&anonymous, "407");
        assert!(
            err.message()
                .contains("http://user:password@proxy.example.com:3128"),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert!(!err.is_transient());
        let err = tunnel_refused(&proxy, "smtp.example.com:587", "403 Forbidden");
        assert!(err.is_transient(), "{err}");
    }

    #[test]
    fn each_proxy_failure_has_its_own_hint() {
        let proxy = Proxy::parse("http://alice:hunter2@proxy:3128").expect("valid");
        let unreachable = |kind| {
            Error::new(
                kind,
                Stage::Connect,
                format!("{UNREACHABLE_PREFIX}{proxy}: cannot connect to proxy:3128: refused"),
            )
        };
        let timeout = Error::new(
            ErrorKind::Timeout,
            Stage::Connect,
            format!("proxy {proxy} opened no tunnel to smtp.example.com:587 within 15s"),
        );
        for (err, wanted) in [
            (
                unreachable(ErrorKind::HostNotFound),
                "host name does not resolve: check the host in `proxy`",
            ),
            (
                unreachable(ErrorKind::Connect),
                "The proxy could not be reached",
            ),
            (
                unreachable(ErrorKind::Timeout),
                "The proxy could not be reached",
            ),
            (auth_refused(&proxy, "407"), "The proxy refused its login"),
            (
                tunnel_refused(&proxy, "smtp.example.com:587", "403"),
                "would not open a tunnel",
            ),
            (timeout, "opened no tunnel in time"),
            (malformed(&proxy, "x"), "right kind (socks5://"),
        ] {
            let hint = err.hint().unwrap_or_else(|| panic!("a hint for {err}"));
            assert!(hint.contains(wanted), "{err}: {hint}");
        }
    }

    #[test]
    fn only_hosts_are_asked_for() {
        let proxy = Proxy::parse("http://proxy:3128").expect("valid");
        assert_eq!(
            checked_host(&proxy, "smtp.example.com").ok(),
            Some("smtp.example.com")
        );
        assert_eq!(
            checked_host(&proxy, "[2001:db8::1]").ok(),
            Some("2001:db8::1")
        );
        for bad in ["", "a b", "smtp\r\nX-Injected: 1", "a/b", "user@host"] {
            let err = checked_host(&proxy, bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
    }
}
