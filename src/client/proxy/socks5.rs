//! SOCKS5 (RFC 1928) with the user name and password login (RFC 1929), spoken by tokio-socks
//! over the TCP connection smtpkit opened to the proxy.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_socks::tcp::Socks5Stream;
use tokio_socks::TargetAddr;

use super::{
    auth_refused, authority, checked_host, connect_to_proxy, io_failed, malformed, tunnel_refused,
    Proxy, ProxyKind, Tunnel,
};
use crate::client::stream::Stream;
use crate::client::transcript::{record, Direction};
use crate::client::ClientOptions;
use crate::error::{Error, ErrorKind, Result, Stage};

/// The longest name SOCKS5 can carry (one length byte, RFC 1928 §5).
const MAX_SOCKS_NAME: usize = 255;

/// Opens the tunnel: `socks5h://` gives the proxy the SMTP host's name; `socks5://` resolves
/// it here and asks for each address in turn (over a new connection to the proxy each time)
/// until the proxy reaches one. Sets `reached` once the proxy has accepted a connection.
pub(super) async fn tunnel(
    proxy: &Proxy,
    host: &str,
    port: u16,
    deadline: Instant,
    limit: Duration,
    options: &ClientOptions,
    reached: &mut bool,
) -> Result<Tunnel> {
    let transcript = options.transcript.as_ref();
    let host = checked_host(proxy, host)?;
    let shown = authority(host, port);
    let ip = host.parse::<IpAddr>().ok();
    if proxy.kind() == ProxyKind::Socks5h || ip.is_some() {
        let target = match ip {
            Some(ip) => TargetAddr::Ip(SocketAddr::new(ip, port)),
            None if host.len() > MAX_SOCKS_NAME => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    Stage::Connect,
                    format!(
                        "cannot ask proxy {proxy} for {shown}: a SOCKS5 name has at most \
                         {MAX_SOCKS_NAME} bytes"
                    ),
                ))
            }
            None => TargetAddr::Domain(host.into(), port),
        };
        let tcp = connect_to_proxy(proxy, limit, options).await?;
        *reached = true;
        let (stream, local) = handshake(tcp, proxy, target, &shown).await?;
        let target = match ip {
            Some(_) => shown,
            None => format!("{shown} (the proxy resolved the name)"),
        };
        return Ok(Tunnel {
            stream,
            local,
            target,
        });
    }
    let addrs = crate::client::tcp::resolve(host, port, deadline, limit).await?;
    let mut last = None;
    for addr in addrs {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let tcp = connect_to_proxy(proxy, remaining, options).await?;
        *reached = true;
        let target = format!("{shown} ({addr})");
        match handshake(tcp, proxy, TargetAddr::Ip(addr), &target).await {
            Ok((stream, local)) => {
                return Ok(Tunnel {
                    stream,
                    local,
                    target,
                })
            }
            // The proxy could not reach this address: the next may answer.
            Err(err) if err.kind() == ErrorKind::Connect => {
                record(transcript, Direction::Info, &err.to_string());
                last = Some(err);
            }
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::new(
            ErrorKind::HostNotFound,
            Stage::Connect,
            format!("cannot resolve host {host}: no address for this name"),
        )
    }))
}

/// The SOCKS5 exchange on `tcp`: login when the URL has one, then CONNECT to `target`.
/// Returns the tunnel and the address the proxy connects from (its `BND.ADDR`), when given.
async fn handshake(
    tcp: TcpStream,
    proxy: &Proxy,
    target: TargetAddr<'_>,
    shown: &str,
) -> Result<(Box<dyn Stream>, Option<SocketAddr>)> {
    let connected = match (proxy.username(), proxy.password()) {
        (Some(user), Some(password)) => {
            Socks5Stream::connect_with_password_and_socket(tcp, target, user, password.expose())
                .await
        }
        _ => Socks5Stream::connect_with_socket(tcp, target).await,
    };
    let stream = connected.map_err(|e| socks_error(proxy, shown, e))?;
    let bound = match stream.target_addr() {
        TargetAddr::Ip(addr) if !addr.ip().is_unspecified() => Some(addr),
        _ => None,
    };
    // The reply was read to its last byte: nothing of the tunnel is buffered.
    Ok((Box::new(stream.into_inner()), bound))
}

/// What a tokio-socks error means here.
fn socks_error(proxy: &Proxy, target: &str, err: tokio_socks::Error) -> Error {
    use tokio_socks::Error as E;
    let refused = |what: &str| tunnel_refused(proxy, target, what);
    match err {
        E::Io(e) => io_failed(proxy, e),
        E::PasswordAuthFailure(status) => {
            auth_refused(proxy, &format!("SOCKS5 login status {status}"))
        }
        E::NoAcceptableAuthMethods if proxy.username().is_none() => {
            auth_refused(proxy, "it takes no connection without a login")
        }
        E::NoAcceptableAuthMethods => {
            auth_refused(proxy, "it takes none of the login methods offered")
        }
        E::AuthorizationRequired => auth_refused(proxy, "it asks for a login"),
        E::GeneralSocksServerFailure => refused("general SOCKS server failure (SOCKS reply 1)"),
        E::ConnectionNotAllowedByRuleset => {
            refused("connection not allowed by its rules (SOCKS reply 2)")
        }
        E::NetworkUnreachable => refused("network unreachable (SOCKS reply 3)"),
        E::HostUnreachable => refused("host unreachable (SOCKS reply 4)"),
        E::ConnectionRefused => refused("connection refused (SOCKS reply 5)"),
        E::TtlExpired => refused("TTL expired (SOCKS reply 6)"),
        E::CommandNotSupported => refused("it does not support CONNECT (SOCKS reply 7)"),
        E::AddressTypeNotSupported if proxy.kind() == ProxyKind::Socks5h => refused(
            "it does not resolve names (SOCKS reply 8): use socks5:// to give it an address",
        ),
        E::AddressTypeNotSupported => {
            refused("it does not take this kind of address (SOCKS reply 8)")
        }
        E::InvalidResponseVersion => malformed(proxy, "not a SOCKS5 reply (version byte)"),
        E::InvalidReservedByte => malformed(proxy, "a reserved byte is not zero"),
        E::UnknownAddressType => malformed(proxy, "an unknown address type"),
        E::UnknownAuthMethod => malformed(proxy, "an unknown reply code or login method"),
        // The name was checked before: a bad address is the one in the proxy's reply.
        E::InvalidTargetAddress(what) => malformed(proxy, &format!("its address: {what}")),
        E::InvalidAuthValues(what) => Error::new(
            ErrorKind::InvalidInput,
            Stage::Connect,
            format!("cannot log in to proxy {proxy}: {what}"),
        ),
        other => malformed(proxy, &other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_are_refusals_logins_are_auth_and_the_rest_malformed() {
        let with_login = Proxy::parse("socks5://alice:hunter2@proxy:1080").expect("valid");
        let without = Proxy::parse("socks5h://proxy:1080").expect("valid");
        let target = "smtp.example.com:587";
        use tokio_socks::Error as E;
        for (proxy, err, kind) in [
            (&with_login, E::PasswordAuthFailure(1), ErrorKind::Auth),
            (&with_login, E::NoAcceptableAuthMethods, ErrorKind::Auth),
            (&without, E::NoAcceptableAuthMethods, ErrorKind::Auth),
            (&without, E::AuthorizationRequired, ErrorKind::Auth),
            (
                &with_login,
                E::ConnectionNotAllowedByRuleset,
                ErrorKind::Connect,
            ),
            (&with_login, E::ConnectionRefused, ErrorKind::Connect),
            (&without, E::AddressTypeNotSupported, ErrorKind::Connect),
            (&with_login, E::InvalidResponseVersion, ErrorKind::Protocol),
            (&with_login, E::UnknownAuthMethod, ErrorKind::Protocol),
            (
                &with_login,
                E::Io(std::io::ErrorKind::UnexpectedEof.into()),
                ErrorKind::Closed,
            ),
        ] {
            let what = err.to_string();
            let err = socks_error(proxy, target, err);
            assert_eq!(err.kind(), kind, "{what}: {err}");
            assert_eq!(err.stage(), Stage::Connect);
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("proxy:1080"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        let err = socks_error(&without, target, E::NoAcceptableAuthMethods);
        assert!(
            err.message().contains("socks5h://user:password@proxy:1080"),
            "{err}"
        );
        let err = socks_error(&without, target, E::AddressTypeNotSupported);
        assert!(err.message().contains("use socks5://"), "{err}");
    }
}
