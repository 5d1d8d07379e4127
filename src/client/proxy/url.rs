//! The proxy URL: `socks5://[user:pass@]host:port`, `socks5h://…`, `http://…`, and the
//! `ALL_PROXY` / `HTTPS_PROXY` / `NO_PROXY` environment.

use std::fmt;
use std::str::FromStr;

use crate::proto::Secret;

/// How smtpkit speaks to a [`Proxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyKind {
    /// `socks5://`: SOCKS5 (RFC 1928). smtpkit resolves the SMTP host's name itself and gives
    /// the proxy an address. Needs the `socks` feature.
    Socks5,
    /// `socks5h://`: SOCKS5 where the proxy resolves the SMTP host's name (for networks whose
    /// names only the proxy can resolve). Needs the `socks` feature.
    Socks5h,
    /// `http://`: an HTTP proxy's CONNECT method (RFC 9110 §9.3.6).
    HttpConnect,
}

impl ProxyKind {
    /// The URL scheme: `socks5`, `socks5h` or `http`.
    pub fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
            ProxyKind::HttpConnect => "http",
        }
    }

    fn is_socks(self) -> bool {
        matches!(self, ProxyKind::Socks5 | ProxyKind::Socks5h)
    }
}

/// A proxy that sessions reach their SMTP server through ([`ClientOptions::proxy`](crate::client::ClientOptions::proxy)):
/// SOCKS5 or HTTP CONNECT, with an optional user name and password.
///
/// TLS, implicit or after STARTTLS, runs end to end through the tunnel, checked against the
/// SMTP host's name as on a direct connection: the proxy sees only encrypted bytes.
///
/// The password is a [`Secret`]: `Debug` and `Display` never show it, and neither does any
/// error, transcript line or log. In the URL, `@`, `:`, `/`, `%` and other special characters
/// of the user name and password are percent-encoded (`p%40ss` for `p@ss`).
///
/// ```
/// use smtpkit::client::{ClientOptions, Proxy, ProxyKind};
///
/// let proxy: Proxy = "http://alice:s3cr%40t@proxy.example.com:3128".parse()?;
/// assert_eq!(proxy.kind(), ProxyKind::HttpConnect);
/// assert_eq!((proxy.host(), proxy.port()), ("proxy.example.com", 3128));
/// assert_eq!(proxy.username(), Some("alice"));
/// assert_eq!(proxy.password().map(|p| p.expose()), Some("s3cr@t"));
/// // Shown without its password:
/// assert_eq!(proxy.to_string(), "http://alice@proxy.example.com:3128");
/// assert!(!format!("{proxy:?}").contains("s3cr"));
///
/// let options = ClientOptions { proxy: Some(proxy), ..ClientOptions::default() };
/// # let _ = options;
/// # Ok::<(), smtpkit::client::ProxyUrlError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    /// The host name or IP address, an IPv6 address without its brackets.
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<Secret>,
}

/// Why a text is not a proxy URL. The message never contains the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrlError {
    message: String,
}

impl ProxyUrlError {
    fn new(message: impl Into<String>) -> ProxyUrlError {
        ProxyUrlError {
            message: message.into(),
        }
    }

    /// What is wrong, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ProxyUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProxyUrlError {}

/// The environment variables `proxy: env` reads, in order: the first one set and not empty
/// names the proxy.
pub(crate) const PROXY_ENV_VARS: [&str; 4] =
    ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"];

impl Proxy {
    /// Reads a proxy URL: `socks5://[user:pass@]host:port`, `socks5h://…` or
    /// `http://[user:pass@]host:port` (a final `/` is allowed; no other path). The port is
    /// required. An IPv6 address is written in brackets: `socks5://[2001:db8::1]:1080`.
    ///
    /// SOCKS5 needs both a user name and a password when either is given (RFC 1929), each at
    /// most 255 bytes; HTTP takes a user name alone too (an empty password).
    pub fn parse(url: &str) -> Result<Proxy, ProxyUrlError> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(ProxyUrlError::new(
                "not a proxy URL: write scheme://host:port, with socks5://, socks5h:// or http://",
            ));
        };
        let kind = parse_scheme(scheme)?;
        // The user name and password end at the last `@`, so that a password with a raw `@`,
        // `/` or `#` is still read whole; they are never quoted in an error.
        let (userinfo, host_port) = match rest.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, rest),
        };
        let host_port = host_port.strip_suffix('/').unwrap_or(host_port);
        if let Some(c) = host_port.chars().find(|c| matches!(c, '/' | '?' | '#')) {
            return Err(ProxyUrlError::new(format!(
                "a proxy URL is only scheme://host:port: remove what starts at {c:?}"
            )));
        }
        let (host, port) = parse_host_port(host_port, kind)?;
        let (user, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => parse_userinfo(userinfo, kind)?,
        };
        #[cfg(not(feature = "socks"))]
        if kind.is_socks() {
            return Err(ProxyUrlError::new(format!(
                "{}:// proxies need smtpkit's `socks` feature, which this build does not have \
                 (an http:// proxy works without it)",
                kind.scheme()
            )));
        }
        Ok(Proxy {
            kind,
            host,
            port,
            user,
            password,
        })
    }

    /// The proxy the environment names for sessions to `smtp_host`, as curl reads it: the
    /// first of `ALL_PROXY`, `all_proxy`, `HTTPS_PROXY`, `https_proxy` that is set and not
    /// empty, unless `NO_PROXY` (or `no_proxy`) lists the host; `None` for a direct connection.
    /// A value without a scheme is taken as `http://`.
    ///
    /// `NO_PROXY` is a comma-separated list of host names, domain suffixes (`example.com`
    /// and `.example.com` both cover `smtp.example.com`) and IP addresses; `*` covers every
    /// host. Address ranges (CIDR) are not read.
    ///
    /// ```
    /// use smtpkit::client::Proxy;
    /// // Unless the environment names a proxy, there is none:
    /// if std::env::var_os("ALL_PROXY").is_none() && std::env::var_os("all_proxy").is_none()
    ///     && std::env::var_os("HTTPS_PROXY").is_none() && std::env::var_os("https_proxy").is_none()
    /// {
    ///     assert_eq!(Proxy::from_env("smtp.example.com")?, None);
    /// }
    /// # Ok::<(), smtpkit::client::ProxyUrlError>(())
    /// ```
    pub fn from_env(smtp_host: &str) -> Result<Option<Proxy>, ProxyUrlError> {
        Proxy::from_env_with(smtp_host, &|name| std::env::var(name).ok())
    }

    /// [`Proxy::from_env`] with a variable lookup of the caller's.
    pub(crate) fn from_env_with(
        smtp_host: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>, ProxyUrlError> {
        let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let Some((name, value)) = PROXY_ENV_VARS
            .iter()
            .find_map(|name| set(name).map(|v| (*name, v)))
        else {
            return Ok(None);
        };
        let no_proxy = set("NO_PROXY").or_else(|| set("no_proxy"));
        if no_proxy.is_some_and(|list| no_proxy_covers(&list, smtp_host)) {
            return Ok(None);
        }
        let value = value.trim();
        let url = if value.contains("://") {
            value.to_owned()
        } else {
            format!("http://{value}")
        };
        Proxy::parse(&url)
            .map(Some)
            .map_err(|e| ProxyUrlError::new(format!("{name}: {}", e.message)))
    }

    /// How smtpkit speaks to the proxy.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host name or IP address (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name for the proxy, when one is given.
    pub fn username(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password for the proxy, when one is given.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The host as it stands in a URL: an IPv6 address in brackets.
    fn url_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl FromStr for Proxy {
    type Err = ProxyUrlError;

    fn from_str(url: &str) -> Result<Proxy, ProxyUrlError> {
        Proxy::parse(url)
    }
}

/// The URL without the password: `socks5://alice@proxy.example.com:1080`.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.kind.scheme())?;
        if let Some(user) = &self.user {
            write!(f, "{}@", super::super::transcript::escape(user))?;
        }
        write!(f, "{}:{}", self.url_host(), self.port)
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.to_string())
            .field("password", &self.password)
            .finish()
    }
}

fn parse_scheme(scheme: &str) -> Result<ProxyKind, ProxyUrlError> {
    match scheme.to_ascii_lowercase().as_str() {
        "socks5" => Ok(ProxyKind::Socks5),
        "socks5h" => Ok(ProxyKind::Socks5h),
        "http" => Ok(ProxyKind::HttpConnect),
        "https" => Err(ProxyUrlError::new(
            "https:// proxies (TLS to the proxy itself) are not supported: use http:// (the SMTP \
             session's own TLS still runs end to end through the tunnel)",
        )),
        "socks" | "socks4" | "socks4a" => Err(ProxyUrlError::new(format!(
            "`{scheme}://` (SOCKS4) is not supported: use socks5:// (smtpkit resolves the SMTP \
             host) or socks5h:// (the proxy resolves it)"
        ))),
        _ => Err(ProxyUrlError::new(format!(
            "unknown proxy scheme `{}`: use socks5://, socks5h:// or http://",
            super::super::transcript::escape(scheme)
        ))),
    }
}

fn parse_host_port(host_port: &str, kind: ProxyKind) -> Result<(String, u16), ProxyUrlError> {
    let example = match kind {
        ProxyKind::HttpConnect => "http://proxy.example.com:3128",
        _ => "socks5://proxy.example.com:1080",
    };
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((v6, after)) = bracketed.split_once(']') else {
            return Err(ProxyUrlError::new(
                "an IPv6 address in brackets lacks its `]`",
            ));
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(ProxyUrlError::new(format!(
                "[{}] is not an IPv6 address",
                super::super::transcript::escape(v6)
            )));
        }
        let port = after.strip_prefix(':').ok_or_else(|| {
            ProxyUrlError::new(format!("no port after the host: write it as in {example}"))
        })?;
        (v6.to_owned(), port)
    } else {
        let Some((host, port)) = host_port.rsplit_once(':') else {
            return Err(ProxyUrlError::new(format!(
                "no port after the host: write it as in {example}"
            )));
        };
        if host.contains(':') {
            return Err(ProxyUrlError::new(
                "write an IPv6 address in brackets: socks5://[2001:db8::1]:1080",
            ));
        }
        (host.to_owned(), port)
    };
    if host.is_empty() {
        return Err(ProxyUrlError::new(format!(
            "no host: write it as in {example}"
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
    if let Some(c) = host.chars().find(|&c| !allowed(c)) {
        return Err(ProxyUrlError::new(format!(
            "the proxy host contains {}; a host name has only letters, digits, '-', '_' and '.'",
            super::super::transcript::escape(&format!("{c:?}"))
        )));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(ProxyUrlError::new(format!(
                "the port {:?} is not a number from 1 to 65535",
                super::super::transcript::escape(port)
            )))
        }
    };
    Ok((host, port))
}

type UserInfo = (Option<String>, Option<Secret>);

fn parse_userinfo(userinfo: &str, kind: ProxyKind) -> Result<UserInfo, ProxyUrlError> {
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    let user = percent_decode(user).ok_or_else(|| {
        ProxyUrlError::new("the proxy user name has a bad %-escape or is not UTF-8")
    })?;
    let password = password
        .map(|p| {
            percent_decode(p).map(Secret::new).ok_or_else(|| {
                ProxyUrlError::new("the proxy password has a bad %-escape or is not UTF-8")
            })
        })
        .transpose()?;
    if user.is_empty() {
        return Err(ProxyUrlError::new(
            "the proxy user name is empty: write user:password@ before the host, or neither",
        ));
    }
    if user.chars().any(char::is_control) {
        return Err(ProxyUrlError::new(
            "the proxy user name contains a control character",
        ));
    }
    if password
        .as_ref()
        .is_some_and(|p| p.expose().chars().any(char::is_control))
    {
        return Err(ProxyUrlError::new(
            "the proxy password contains a control character",
        ));
    }
    if kind.is_socks() {
        // RFC 1929: a user name and a password, each 1 to 255 bytes.
        let Some(password) = &password else {
            return Err(ProxyUrlError::new(
                "a SOCKS5 proxy login needs a password too: socks5://user:password@host:port",
            ));
        };
        if password.is_empty() {
            return Err(ProxyUrlError::new(
                "the SOCKS5 proxy password is empty (RFC 1929 needs 1 to 255 bytes)",
            ));
        }
        if user.len() > 255 || password.expose().len() > 255 {
            return Err(ProxyUrlError::new(
                "a SOCKS5 proxy user name or password is longer than 255 bytes (RFC 1929)",
            ));
        }
    }
    Ok((Some(user), Some(password.unwrap_or_default())))
}

/// `%XX` escapes decoded; `None` for a bad escape or text that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a `NO_PROXY` list covers `host`.
fn no_proxy_covers(list: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    list.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.trim_start_matches('.').trim_end_matches('.');
        let entry = entry.trim_start_matches('[').trim_end_matches(']');
        let entry = entry.to_ascii_lowercase();
        !entry.is_empty()
            && (host == entry
                || (host.len() > entry.len()
                    && host.ends_with(&entry)
                    && host.as_bytes()[host.len() - entry.len() - 1] == b'.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Proxy {
        Proxy::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn error(url: &str) -> String {
        match Proxy::parse(url) {
            Ok(p) => panic!("{url} parsed as {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_three_schemes_with_and_without_a_login() {
        let p = parse("http://proxy.example.com:3128");
        assert_eq!(p.kind(), ProxyKind::HttpConnect);
        assert_eq!((p.host(), p.port()), ("proxy.example.com", 3128));
        assert_eq!((p.username(), p.password()), (None, None));
        assert_eq!(p.to_string(), "http://proxy.example.com:3128");

        let p = parse("HTTP://u:pw@10.0.0.1:8080/");
        assert_eq!(p.kind(), ProxyKind::HttpConnect);
        assert_eq!(p.username(), Some("u"));
        assert_eq!(p.password().map(Secret::expose), Some("pw"));
        assert_eq!(p.to_string(), "http://u@10.0.0.1:8080");

        let p = parse("http://u@proxy:3128");
        assert_eq!(p.password().map(Secret::expose), Some(""));
    }

    #[cfg(feature = "socks")]
    #[test]
    fn socks_urls() {
        let p = parse("socks5://127.0.0.1:1080");
        assert_eq!(p.kind(), ProxyKind::Socks5);
        let p = parse("socks5h://alice:p%40ss%3Aw%2Frd@[::1]:1080");
        assert_eq!(p.kind(), ProxyKind::Socks5h);
        assert_eq!(p.host(), "::1");
        assert_eq!(p.username(), Some("alice"));
        assert_eq!(p.password().map(Secret::expose), Some("p@ss:w/rd"));
        assert_eq!(p.to_string(), "socks5h://alice@[::1]:1080");
        // A raw `@` or `/` in the password is read whole: the host starts after the last `@`.
        let p = parse("socks5://alice:p@ss/x@proxy:1080");
        assert_eq!(p.password().map(Secret::expose), Some("p@ss/x"));
        assert_eq!(p.host(), "proxy");

        assert!(error("socks5://alice@proxy:1080").contains("needs a password"));
        assert!(error("socks5://alice:@proxy:1080").contains("password is empty"));
        let long = "x".repeat(256);
        assert!(error(&format!("socks5://{long}:pw@proxy:1080")).contains("255"));
    }

    #[cfg(not(feature = "socks"))]
    #[test]
    fn socks_urls_name_the_feature() {
        assert!(error("socks5://127.0.0.1:1080").contains("`socks` feature"));
    }

    #[test]
    fn what_is_wrong_is_said_without_the_password() {
        for (url, wanted) in [
            ("proxy.example.com:3128", "not a proxy URL"),
            ("https://u:hunter2@proxy:3128", "https:// proxies"),
            ("socks4://u:hunter2@proxy:1080", "SOCKS4"),
            ("ftp://u:hunter2@proxy:21", "unknown proxy scheme `ftp`"),
            ("http://u:hunter2@proxy", "no port"),
            ("http://u:hunter2@proxy:", "not a number"),
            ("http://u:hunter2@proxy:70000", "not a number"),
            ("http://u:hunter2@proxy:0", "not a number"),
            ("http://u:hunter2@:3128", "no host"),
            (
                "http://u:hunter2@proxy:3128/path",
                "remove what starts at '/'",
            ),
            (
                "http://u:hunter2@proxy:3128?x=1",
                "remove what starts at '?'",
            ),
            ("http://u:hunter2@pro xy:3128", "contains ' '"),
            ("http://u:hunter2@::1:3128", "in brackets"),
            ("http://u:hunter2@[::1:3128", "lacks its `]`"),
            ("http://u:hunter2@[zz]:3128", "not an IPv6 address"),
            ("http://u:hunter2@[::1]", "no port"),
            ("http://:hunter2@proxy:3128", "user name is empty"),
            ("http://u:hunter2%zz@proxy:3128", "bad %-escape"),
            ("http://u:hunter2%0d%0a@proxy:3128", "control character"),
            ("http://u%0a:hunter2@proxy:3128", "control character"),
        ] {
            let e = error(url);
            assert!(e.contains(wanted), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
    }

    #[test]
    fn debug_and_display_never_show_the_password() {
        let p = parse("http://alice:hunter2@proxy:3128");
        for shown in [format!("{p}"), format!("{p:?}"), format!("{p:#?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("alice@proxy:3128"), "{shown}");
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_environment_in_curl_s_order_and_no_proxy() {
        let host = "smtp.example.com";
        let from = |vars: &[(&str, &str)]| {
            Proxy::from_env_with(host, &env(vars))
                .expect("valid")
                .map(|p| p.to_string())
        };
        assert_eq!(from(&[]), None);
        assert_eq!(from(&[("HTTPS_PROXY", "  ")]), None);
        assert_eq!(
            from(&[("https_proxy", "proxy:3128")]).as_deref(),
            Some("http://proxy:3128")
        );
        assert_eq!(
            from(&[
                ("HTTPS_PROXY", "http://h:3128"),
                ("all_proxy", "http://a:3128"),
            ])
            .as_deref(),
            Some("http://a:3128")
        );
        assert_eq!(
            from(&[
                ("ALL_PROXY", "http://upper:3128"),
                ("all_proxy", "http://lower:3128"),
            ])
            .as_deref(),
            Some("http://upper:3128")
        );
        for no_proxy in [
            "*",
            "example.com",
            ".example.com",
            "localhost, smtp.example.com",
            "EXAMPLE.COM.",
        ] {
            assert_eq!(
                from(&[("HTTPS_PROXY", "http://p:3128"), ("NO_PROXY", no_proxy)]),
                None,
                "{no_proxy}"
            );
        }
        for no_proxy in ["ample.com", "other.example.com", "", ","] {
            assert!(
                from(&[("HTTPS_PROXY", "http://p:3128"), ("no_proxy", no_proxy)]).is_some(),
                "{no_proxy}"
            );
        }
        let err = Proxy::from_env_with(host, &env(&[("ALL_PROXY", "https://u:hunter2@p:1")]))
            .expect_err("https");
        assert!(err.to_string().starts_with("ALL_PROXY: https://"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn no_proxy_matches_names_suffixes_and_addresses() {
        assert!(no_proxy_covers("127.0.0.1", "127.0.0.1"));
        assert!(no_proxy_covers("::1", "[::1]"));
        assert!(no_proxy_covers("[::1]", "::1"));
        assert!(!no_proxy_covers("127.0.0.1", "127.0.0.10"));
        assert!(no_proxy_covers("corp", "mail.corp"));
        assert!(!no_proxy_covers("corp", "mailcorp"));
    }
}
