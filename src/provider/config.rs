//! The configuration file of the spec (`version`, `providers`, `workflows`) as typed values.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::error::{nearest, ConfigError};
use super::outbox_config;
use super::outbox_settings::OutboxSettings;
use super::workflow::{parse_workflows, Workflow};
use super::yaml_document;
use super::yaml_literal::Literal;
use super::yaml_node::{Env, Node};
use crate::client::{ClientOptions, Credentials, Security, Timeouts, TlsConnector, TlsSettings};
use crate::delivery::{PoolSettings, RateCount, RateLimits, RetryPolicy};
use crate::message::Mailbox;
use crate::proto::{ClientName, Mechanism, Secret};

/// Which AUTH to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthSetting {
    /// The best mechanism both sides support.
    #[default]
    Auto,
    /// This mechanism.
    Mechanism(Mechanism),
    /// No AUTH; `user` and `pass` may be left out.
    None,
}

/// The SMTP settings of one provider: the spec's keys and smtpkit's extensions.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `host`.
    pub host: String,
    /// `port`.
    pub port: u16,
    /// `user`; `None` only with `auth: none`.
    pub user: Option<String>,
    /// `pass`; `None` only with `auth: none`.
    pub pass: Option<Secret>,
    /// `from`: the default sender, as written (checked by [`SmtpSettings::check_ready`], so the
    /// spec's examples with `<your-gmail-address>` placeholders still load).
    pub from: String,
    /// `tls_skip_verify`.
    pub tls_skip_verify: bool,
    /// `security` (extension): `auto`, `starttls`, `tls` or `none`.
    pub security: Security,
    /// `allow_insecure_auth` (extension).
    pub allow_insecure_auth: bool,
    /// `auth` (extension).
    pub auth: AuthSetting,
    /// `ca_file` (extension).
    pub ca_file: Option<PathBuf>,
    /// `helo_name` (extension).
    pub helo_name: Option<ClientName>,
    /// `timeouts` (extension), per stage of a session.
    pub timeouts: Timeouts,
    /// `timeouts.total` (extension): one deadline over every try of a send, retries and
    /// fallbacks included. Default 3 minutes.
    pub total_timeout: Option<std::time::Duration>,
    /// `pool` (extension).
    pub pool: PoolSettings,
    /// `retry` (extension).
    pub retry: RetryPolicy,
    /// `rate_limit` (extension); all zero means no limit.
    pub rate_limit: RateLimits,
    /// `fallback` (extension): providers tried in order when this one fails transiently.
    pub fallback: Vec<String>,
    /// `oauth2` (extension): XOAUTH2 with tokens from an identity provider instead of `pass`.
    pub oauth2: Option<crate::oauth::OAuth2Settings>,
    /// `source_address` (extension): the local IP address connections are made from.
    pub source_address: Option<std::net::IpAddr>,
    /// `connect_attempt_delay` (extension): the wait before the server's next address is
    /// tried while the previous attempt is still connecting (RFC 8305). Default 250 ms.
    pub connect_attempt_delay: Option<std::time::Duration>,
    /// `proxy` (extension): the SOCKS5 or HTTP CONNECT proxy sessions go through; with
    /// `proxy: env`, the one the environment named when the file was read. `None` connects
    /// directly.
    pub proxy: Option<crate::client::Proxy>,
    /// `chunking` (extension): send with BDAT when the server offers CHUNKING and
    /// PIPELINING (RFC 3030). Default `true`; `false` always sends DATA.
    pub chunking: bool,
}

/// What the `provider:` key said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// `provider: email` (with `platform: smtp`, or no platform).
    Email,
    /// `provider: email.smtp`.
    EmailSmtp,
}

/// One entry of `providers:`.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The key under `providers:` (`email`, `email-gmail`…), used to refer to it.
    pub id: String,
    /// `name`.
    pub name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `provider`.
    pub kind: ProviderKind,
    /// `enabled` (default true).
    pub enabled: bool,
    /// `config`.
    pub smtp: SmtpSettings,
}

/// A provider this build does not handle (another kind of notification), listed, not lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedProvider {
    /// The key under `providers:`.
    pub id: String,
    /// Its `provider:` value.
    pub provider: String,
}

/// A whole configuration: providers and workflows, from one file or several merged.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `version`, when given (only "1.0" is accepted).
    pub version: Option<String>,
    /// Email providers, in file order.
    pub providers: Vec<ProviderConfig>,
    /// Providers of other kinds, not handled by smtpkit.
    pub skipped_providers: Vec<SkippedProvider>,
    /// Workflows, in file order.
    pub workflows: Vec<Workflow>,
    /// `outbox` (extension): the durable outbox's database and schedule, when the file has the
    /// block. [`Config::outbox_settings`] gives the settings to use, with the defaults applied.
    pub outbox: Option<OutboxSettings>,
    /// The directory of the (first) file this was read from, for defaults next to it.
    dir: Option<PathBuf>,
}

const TOP_KEYS: &[&str] = &["version", "providers", "workflows", "outbox"];
const PROVIDER_KEYS: &[&str] = &["name", "description", "provider", "enabled", "config"];
const SMTP_KEYS: &[&str] = &[
    "platform",
    "host",
    "port",
    "user",
    "pass",
    "from",
    "tls_skip_verify",
    "security",
    "allow_insecure_auth",
    "auth",
    "ca_file",
    "helo_name",
    "timeouts",
    "pool",
    "retry",
    "rate_limit",
    "fallback",
    "oauth2",
    "source_address",
    "connect_attempt_delay",
    "proxy",
    "chunking",
];
const POOL_KEYS: &[&str] = &[
    "max_connections",
    "max_messages_per_connection",
    "idle_timeout",
    "max_lifetime",
    "health_check_after",
    "health_check_timeout",
    "checkout_timeout",
];
const RETRY_KEYS: &[&str] = &[
    "attempts",
    "initial_backoff",
    "max_backoff",
    "max_elapsed",
    "retry_unknown_outcome",
];
const RATE_KEYS: &[&str] = &["per_second", "per_minute", "per_hour", "per_day", "count"];
const TIMEOUT_KEYS: &[&str] = &[
    "connect",
    "greeting",
    "command",
    "data_start",
    "data_block",
    "data_end",
    "total",
];

/// The default of `timeouts.total`: a notification that cannot be handed over in 3 minutes,
/// retries included, is reported rather than held (the outbox is for waiting longer).
pub const DEFAULT_TOTAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3 * 60);

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Parses YAML text, expanding `${VAR}` from the process environment.
    ///
    /// ```
    /// use smtpkit::provider::Config;
    /// let config = Config::from_yaml_str(r#"
    /// version: "1.0"
    /// providers:
    ///   email:
    ///     provider: email.smtp
    ///     enabled: true
    ///     config:
    ///       host: smtp.example.com
    ///       port: 587
    ///       user: apikey
    ///       pass: secret
    ///       from: noreply@example.com
    /// "#)?;
    /// assert_eq!(config.provider(None)?.smtp.port, 587);
    /// # Ok::<(), smtpkit::provider::ConfigError>(())
    /// ```
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str_with_env(text, &process_env)
    }

    /// Parses YAML text with a custom variable lookup for `${VAR}`.
    pub fn from_yaml_str_with_env(text: &str, env: Env<'_>) -> Result<Config, ConfigError> {
        let value = yaml_document::parse(text)
            .map_err(|e| ConfigError::new("", format!("not valid YAML: {e}")))?;
        // Keys that take text read scalars as written (`pass: 1.10`), not as YAML typed them.
        let literal = Literal::read(text, &value);
        Config::from_value(&value, literal.as_ref(), env)
    }

    /// Reads and parses a file; errors start with the file name.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read: {e}")).in_file(&shown))?;
        let mut config = Config::from_yaml_str(&text).map_err(|e| e.in_file(&shown))?;
        // Relative ca_file and token_cache paths are relative to the file that names them.
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(outbox) = &mut config.outbox {
            outbox.url = outbox_config::resolve_sqlite_url(&outbox.url, base);
        }
        config.dir = Some(base.to_path_buf());
        for p in &mut config.providers {
            if let Some(ca) = &p.smtp.ca_file {
                if ca.is_relative() {
                    p.smtp.ca_file = Some(base.join(ca));
                }
            }
            if let Some(o) = &mut p.smtp.oauth2 {
                if o.token_cache.is_relative() {
                    o.token_cache = base.join(&o.token_cache);
                }
            }
        }
        config.check_files().map_err(|e| e.in_file(&shown))?;
        Ok(config)
    }

    /// Reads several files (providers in one, workflows in another…) into one configuration.
    pub fn from_files<P: AsRef<Path>>(paths: &[P]) -> Result<Config, ConfigError> {
        let mut merged = Config::default();
        for path in paths {
            let config = Config::from_file(path)?;
            let shown = path.as_ref().display().to_string();
            for p in config.providers {
                if merged.providers.iter().any(|m| m.id == p.id) {
                    return Err(ConfigError::new(
                        format!("providers.{}", p.id),
                        "defined in more than one file",
                    )
                    .in_file(shown));
                }
                merged.providers.push(p);
            }
            merged.skipped_providers.extend(config.skipped_providers);
            merged.workflows.extend(config.workflows);
            merged.version = merged.version.or(config.version);
            // The first file's `outbox` block and directory, as for `version`.
            merged.outbox = merged.outbox.or(config.outbox);
            merged.dir = merged.dir.or(config.dir);
        }
        Ok(merged)
    }

    fn check_files(&self) -> Result<(), ConfigError> {
        for p in &self.providers {
            if let Some(ca) = &p.smtp.ca_file {
                let path = format!("providers.{}.config.ca_file", p.id);
                if !ca.is_file() {
                    return Err(ConfigError::new(
                        path,
                        format!("file {} not found", ca.display()),
                    ));
                }
                // Unless no certificate is checked at all, its certificates must be usable.
                if !p.smtp.tls_skip_verify {
                    crate::client::check_ca_file(ca).map_err(|m| ConfigError::new(path, m))?;
                }
            }
        }
        Ok(())
    }

    fn from_value(
        value: &Value,
        literal: Option<&Literal>,
        env: Env<'_>,
    ) -> Result<Config, ConfigError> {
        let root = Node::root(value, literal, env);
        if root.is_null() {
            return Err(root.error("the file is empty"));
        }
        root.check_keys(TOP_KEYS)?;
        let mut config = Config::default();
        if let Some(version) = root.get("version") {
            let v = version.node(env).string()?;
            if v != "1.0" && v != "1" {
                return Err(version.node(env).error(format!(
                    "unsupported version {v:?}: this build reads \"1.0\""
                )));
            }
            config.version = Some("1.0".into());
        }
        if let Some(providers) = root.get("providers") {
            let providers = providers.node(env);
            for id in providers.keys()? {
                let child = providers.get(id).ok_or_else(|| {
                    ConfigError::new(
                        format!("providers.{id}"),
                        "is empty: expected provider settings",
                    )
                })?;
                match parse_provider(id, child.node(env))? {
                    Parsed::Email(p) => config.providers.push(*p),
                    Parsed::Skipped(s) => config.skipped_providers.push(s),
                }
            }
        }
        if let Some(workflows) = root.get("workflows") {
            config.workflows = parse_workflows(workflows.node(env))?;
        }
        if let Some(outbox) = root.get("outbox") {
            config.outbox = Some(outbox_config::parse_outbox(outbox.node(env))?);
        }
        Ok(config)
    }

    /// The outbox settings to use: the `outbox` block when there is one, else the defaults
    /// with the database `smtpkit-outbox.db` next to the (first) configuration file read by
    /// [`Config::from_file`] or [`Config::from_files`] (in the current directory for a
    /// configuration parsed from text).
    ///
    /// ```
    /// use smtpkit::provider::Config;
    /// let config = Config::from_yaml_str("outbox: {max_age: 2d, backoff: {initial: 30s}}")?;
    /// let settings = config.outbox_settings();
    /// assert_eq!(settings.max_age, std::time::Duration::from_secs(2 * 86400));
    /// assert_eq!(settings.url, "sqlite://smtpkit-outbox.db");
    /// # Ok::<(), smtpkit::provider::ConfigError>(())
    /// ```
    pub fn outbox_settings(&self) -> OutboxSettings {
        match (&self.outbox, &self.dir) {
            (Some(settings), _) => settings.clone(),
            (None, Some(dir)) => OutboxSettings {
                url: outbox_config::default_url(dir),
                ..OutboxSettings::default()
            },
            (None, None) => OutboxSettings::default(),
        }
    }

    /// The provider to use: `name`, or the only enabled provider when `name` is `None`.
    pub fn provider(&self, name: Option<&str>) -> Result<&ProviderConfig, ConfigError> {
        let enabled: Vec<&ProviderConfig> = self.providers.iter().filter(|p| p.enabled).collect();
        match name {
            None => match enabled.as_slice() {
                [only] => Ok(only),
                [] => Err(ConfigError::new("providers", "no enabled email provider")),
                many => Err(ConfigError::new(
                    "providers",
                    format!(
                        "{} enabled providers ({}); choose one with --provider",
                        many.len(),
                        many.iter()
                            .map(|p| p.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            },
            Some(name) => {
                let Some(p) = self.providers.iter().find(|p| p.id == name) else {
                    let ids: Vec<&str> = self.providers.iter().map(|p| p.id.as_str()).collect();
                    let hint = nearest(name, &ids)
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_else(|| {
                            format!(
                                "; configured: {}",
                                if ids.is_empty() {
                                    "none".into()
                                } else {
                                    ids.join(", ")
                                }
                            )
                        });
                    return Err(ConfigError::new(
                        format!("providers.{name}"),
                        format!("no such email provider{hint}"),
                    ));
                };
                if !p.enabled {
                    return Err(ConfigError::new(
                        format!("providers.{name}.enabled"),
                        "this provider is disabled",
                    ));
                }
                Ok(p)
            }
        }
    }
}

enum Parsed {
    Email(Box<ProviderConfig>),
    Skipped(SkippedProvider),
}

fn parse_provider(id: &str, node: Node<'_, '_>) -> Result<Parsed, ConfigError> {
    let env = node.env();
    node.check_keys(PROVIDER_KEYS)?;
    let provider = node.require("provider", "email or email.smtp")?;
    let provider_node = provider.node(env);
    let provider_name = provider_node.string()?.trim().to_owned();
    let kind = match provider_name.as_str() {
        "email" => ProviderKind::Email,
        "email.smtp" => ProviderKind::EmailSmtp,
        "email.ses" | "email.acs" => {
            return Err(provider_node.error(format!(
                "`{provider_name}` is not supported by this build (smtpkit speaks SMTP: use email.smtp)"
            )))
        }
        other => {
            if let Some(s) = nearest(other, &["email", "email.smtp"]) {
                return Err(provider_node.error(format!("unknown provider `{other}`; did you mean `{s}`?")));
            }
            return Ok(Parsed::Skipped(SkippedProvider { id: id.to_owned(), provider: other.to_owned() }));
        }
    };
    let enabled = match node.get("enabled") {
        Some(e) => e.node(env).boolean()?,
        None => true,
    };
    let name = node.get("name").map(|n| n.node(env).string()).transpose()?;
    let description = node
        .get("description")
        .map(|n| n.node(env).string())
        .transpose()?;
    let config = node.require("config", "the SMTP settings")?;
    let smtp = parse_smtp(config.node(env))?;
    Ok(Parsed::Email(Box::new(ProviderConfig {
        id: id.to_owned(),
        name,
        description,
        kind,
        enabled,
        smtp,
    })))
}

fn parse_smtp(node: Node<'_, '_>) -> Result<SmtpSettings, ConfigError> {
    let env = node.env();
    node.check_keys(SMTP_KEYS)?;
    if let Some(platform) = node.get("platform") {
        let platform = platform.node(env);
        match platform.string()?.trim() {
            "smtp" => {}
            p @ ("ses" | "acs") => {
                return Err(platform.error(format!(
                    "platform `{p}` is not supported by this build (smtpkit speaks SMTP: use platform: smtp)"
                )))
            }
            other => {
                return Err(platform.error(match nearest(other, &["smtp"]) {
                    Some(_) => format!("unknown platform `{other}`; did you mean `smtp`?"),
                    None => format!("unknown platform `{other}`; this build supports `smtp`"),
                }))
            }
        }
    }
    let host_key = node.require("host", "the SMTP server host name")?;
    let host_node = host_key.node(env);
    let host = host_node.non_empty("host")?;
    // An IPv6 literal may be written in brackets, as in a URL.
    let host = crate::client::bare_host(&host).to_owned();
    if let Some(problem) = host_problem(&host) {
        return Err(host_node.error(format!(
            "{host:?} is not a host name or IP address: {problem}"
        )));
    }
    let port = node
        .require("port", "587 for STARTTLS, 465 for implicit TLS")?
        .node(env)
        .number(1..=65535)? as u16;
    let auth = match node.get("auth") {
        None => AuthSetting::Auto,
        Some(a) => match a
            .node(env)
            .choice(&["auto", "plain", "login", "xoauth2", "none"])?
        {
            "auto" => AuthSetting::Auto,
            "none" => AuthSetting::None,
            m => AuthSetting::Mechanism(
                Mechanism::from_name(m).ok_or_else(|| a.node(env).error("unknown mechanism"))?,
            ),
        },
    };
    let oauth2 = node
        .get("oauth2")
        .map(|o| super::oauth2_config::parse_oauth2(o.node(env)))
        .transpose()?;
    if oauth2.is_some() {
        // The block means XOAUTH2 with its tokens: `auth` may say so, nothing else.
        if let Some(a) = node.get("auth") {
            if !matches!(
                auth,
                AuthSetting::Auto | AuthSetting::Mechanism(Mechanism::XOAuth2)
            ) {
                return Err(a.node(env).error(
                    "with `oauth2` the mechanism is xoauth2: remove `auth` or set `auth: xoauth2`",
                ));
            }
        }
        if let Some(p) = node.get("pass") {
            return Err(p.node(env).error(
                "not used with `oauth2` (the access token replaces the password): remove `pass`",
            ));
        }
        let user = node
            .require(
                "user",
                "the mailbox to send as; it goes into the XOAUTH2 string",
            )?
            .node(env)
            .non_empty("user")?;
        let login = Login {
            auth: AuthSetting::Mechanism(Mechanism::XOAuth2),
            user: Some(user),
            pass: None,
            oauth2,
        };
        return finish_smtp(node, (host, port), login);
    }
    let (user, pass) = if auth == AuthSetting::None {
        (
            node.get("user").map(|u| u.node(env).string()).transpose()?,
            node.get("pass")
                .map(|p| p.node(env).string().map(Secret::new))
                .transpose()?,
        )
    } else {
        let user = node
            .require("user", "the SMTP user name; or set `auth: none`")?
            .node(env)
            .non_empty("user")?;
        let pass = node.require(
            "pass",
            "the SMTP password; use ${SMTP_PASSWORD} to read it from the environment",
        )?;
        (
            Some(user),
            Some(Secret::new(pass.node(env).non_empty("pass")?)),
        )
    };
    let login = Login {
        auth,
        user,
        pass,
        oauth2: None,
    };
    finish_smtp(node, (host, port), login)
}

/// How a provider logs in, as read from `auth`, `user`, `pass` and `oauth2`.
struct Login {
    auth: AuthSetting,
    user: Option<String>,
    pass: Option<Secret>,
    oauth2: Option<crate::oauth::OAuth2Settings>,
}

/// The keys after the server and the login, the same with and without `oauth2`.
fn finish_smtp(
    node: Node<'_, '_>,
    (host, port): (String, u16),
    login: Login,
) -> Result<SmtpSettings, ConfigError> {
    let env = node.env();
    let Login {
        auth,
        user,
        pass,
        oauth2,
    } = login;
    let from = node
        .require("from", "the default sender address")?
        .node(env)
        .non_empty("from")?;
    let tls_skip_verify = node
        .get("tls_skip_verify")
        .map(|n| n.node(env).boolean())
        .transpose()?
        .unwrap_or(false);
    let security = match node.get("security") {
        None => Security::Auto,
        Some(s) => match s.node(env).choice(&["auto", "starttls", "tls", "none"])? {
            "starttls" => Security::StartTls,
            "tls" => Security::Tls,
            "none" => Security::None,
            _ => Security::Auto,
        },
    };
    let allow_insecure_auth = node
        .get("allow_insecure_auth")
        .map(|n| n.node(env).boolean())
        .transpose()?
        .unwrap_or(false);
    if allow_insecure_auth && security != Security::None {
        let path = format!("{}.allow_insecure_auth", node.path());
        return Err(ConfigError::new(
            path,
            "only allowed together with `security: none`",
        ));
    }
    let ca_file = node
        .get("ca_file")
        .map(|n| n.node(env).non_empty("ca_file").map(PathBuf::from))
        .transpose()?;
    let helo_name = match node.get("helo_name") {
        None => None,
        Some(h) => {
            let text = h.node(env).string()?;
            Some(ClientName::new(text).map_err(|e| h.node(env).error(e.to_string()))?)
        }
    };
    let (timeouts, total_timeout) = match node.get("timeouts") {
        None => (Timeouts::default(), DEFAULT_TOTAL_TIMEOUT),
        Some(t) => {
            let t = t.node(env);
            let total = match t.get("total") {
                None => DEFAULT_TOTAL_TIMEOUT,
                Some(total) => positive_duration(total.node(env))?,
            };
            (parse_timeouts(t)?, total)
        }
    };
    let pool = node
        .get("pool")
        .map(|p| parse_pool(p.node(env)))
        .transpose()?
        .unwrap_or_default();
    let retry = node
        .get("retry")
        .map(|r| parse_retry(r.node(env)))
        .transpose()?
        .unwrap_or_default();
    let rate_limit = node
        .get("rate_limit")
        .map(|r| parse_rate(r.node(env)))
        .transpose()?
        .unwrap_or_default();
    let fallback = node
        .get("fallback")
        .map(|f| f.node(env).strings())
        .transpose()?
        .unwrap_or_default();
    let source_address = match node.get("source_address") {
        None => None,
        Some(a) => {
            let a = a.node(env);
            let text = a.string()?;
            let ip = crate::client::bare_host(text.trim())
                .parse::<std::net::IpAddr>()
                .map_err(|_| {
                    a.error(format!(
                        "{text:?} is not an IP address (like 192.0.2.10 or 2001:db8::10)"
                    ))
                })?;
            Some(ip)
        }
    };
    let connect_attempt_delay = match node.get("connect_attempt_delay") {
        None => None,
        Some(d) => {
            let d = d.node(env);
            let delay = d.duration()?;
            // RFC 8305 §5: at least 10 ms; more than 2 s defeats the purpose.
            if delay < std::time::Duration::from_millis(10)
                || delay > std::time::Duration::from_secs(2)
            {
                return Err(d.error("must be from 10ms to 2s (RFC 8305 recommends 250ms)"));
            }
            Some(delay)
        }
    };
    let proxy = match node.get("proxy") {
        Some(p) => super::proxy_config::parse_proxy(p.node(env), &host)?,
        None => None,
    };
    let chunking = node
        .get("chunking")
        .map(|n| n.node(env).boolean())
        .transpose()?
        .unwrap_or(true);
    Ok(SmtpSettings {
        chunking,
        source_address,
        connect_attempt_delay,
        pool,
        retry,
        rate_limit,
        fallback,
        host,
        port,
        user,
        pass,
        from,
        tls_skip_verify,
        security,
        allow_insecure_auth,
        auth,
        ca_file,
        helo_name,
        timeouts,
        total_timeout: Some(total_timeout),
        oauth2,
        proxy,
    })
}

fn positive_duration(node: Node<'_, '_>) -> Result<std::time::Duration, ConfigError> {
    let d = node.duration()?;
    if d.is_zero() {
        return Err(node.error("must be more than 0"));
    }
    Ok(d)
}

fn parse_pool(node: Node<'_, '_>) -> Result<PoolSettings, ConfigError> {
    let env = node.env();
    node.check_keys(POOL_KEYS)?;
    let mut p = PoolSettings::default();
    if let Some(v) = node.get("max_connections") {
        p.max_connections = v.node(env).number(1..=1024)? as usize;
    }
    if let Some(v) = node.get("max_messages_per_connection") {
        p.max_messages_per_connection = v.node(env).number(1..=1_000_000)? as usize;
    }
    for (key, slot) in [
        ("idle_timeout", &mut p.idle_timeout),
        ("max_lifetime", &mut p.max_lifetime),
        ("health_check_after", &mut p.health_check_after),
        ("health_check_timeout", &mut p.health_check_timeout),
        ("checkout_timeout", &mut p.checkout_timeout),
    ] {
        if let Some(v) = node.get(key) {
            *slot = positive_duration(v.node(env))?;
        }
    }
    Ok(p)
}

fn parse_retry(node: Node<'_, '_>) -> Result<RetryPolicy, ConfigError> {
    let env = node.env();
    node.check_keys(RETRY_KEYS)?;
    let mut r = RetryPolicy::default();
    if let Some(v) = node.get("attempts") {
        r.attempts = v.node(env).number(1..=100)? as u32;
    }
    for (key, slot) in [
        ("initial_backoff", &mut r.initial_backoff),
        ("max_backoff", &mut r.max_backoff),
        ("max_elapsed", &mut r.max_elapsed),
    ] {
        if let Some(v) = node.get(key) {
            *slot = positive_duration(v.node(env))?;
        }
    }
    if let Some(v) = node.get("retry_unknown_outcome") {
        r.retry_unknown_outcome = v.node(env).boolean()?;
    }
    Ok(r)
}

fn parse_rate(node: Node<'_, '_>) -> Result<RateLimits, ConfigError> {
    let env = node.env();
    node.check_keys(RATE_KEYS)?;
    let mut l = RateLimits::default();
    for (key, slot) in [
        ("per_second", &mut l.per_second),
        ("per_minute", &mut l.per_minute),
        ("per_hour", &mut l.per_hour),
        ("per_day", &mut l.per_day),
    ] {
        if let Some(v) = node.get(key) {
            *slot = v.node(env).number(0..=u64::from(u32::MAX))? as u32;
        }
    }
    if let Some(v) = node.get("count") {
        l.count = match v.node(env).choice(&["messages", "recipients"])? {
            "recipients" => RateCount::Recipients,
            _ => RateCount::Messages,
        };
    }
    Ok(l)
}

fn parse_timeouts(node: Node<'_, '_>) -> Result<Timeouts, ConfigError> {
    let env = node.env();
    node.check_keys(TIMEOUT_KEYS)?;
    let mut t = Timeouts::default();
    for (key, slot) in [
        ("connect", &mut t.connect),
        ("greeting", &mut t.greeting),
        ("command", &mut t.command),
        ("data_start", &mut t.data_start),
        ("data_block", &mut t.data_block),
        ("data_end", &mut t.data_end),
    ] {
        if let Some(v) = node.get(key) {
            *slot = positive_duration(v.node(env))?;
        }
    }
    Ok(t)
}

/// Why `host` can be neither a host name nor an IP address, when it cannot: caught when the
/// configuration is read rather than left to the resolver, which would only say "not known".
fn host_problem(host: &str) -> Option<String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    if let Some((scheme, _)) = host.split_once("://") {
        return Some(format!(
            "write the host name alone, without `{scheme}://` (the port goes under `port`)"
        ));
    }
    if let Some((name, port)) = host.rsplit_once(':') {
        if !name.contains(':') && port.parse::<u16>().is_ok() {
            return Some(format!(
                "write the port under `port`, not after the host name (`host: {name}`)"
            ));
        }
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if let Some(c) = host.chars().find(|&c| !allowed(c)) {
        let what = match c {
            ' ' => "a space".to_owned(),
            c if c.is_whitespace() => "white space".to_owned(),
            c if c.is_control() => "a control character".to_owned(),
            c if !c.is_ascii() => format!(
                "the non-ASCII character {c:?} (write an internationalized name in its \
                 ASCII form, xn--…)"
            ),
            c => format!("{c:?}"),
        };
        return Some(format!(
            "it contains {what}; a host name has only letters, digits, '-', '_' and '.'"
        ));
    }
    // A final dot is allowed: `smtp.example.com.` is the fully qualified form.
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Some("it is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("it has an empty label (a leading dot, or two dots in a row)".into());
        }
        if label.len() > 63 {
            return Some(format!("its label {label:?} is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("its label {label:?} begins or ends with '-'"));
        }
    }
    None
}

/// A value still holding a placeholder of the spec's examples, such as `<your-smtp-password>`.
fn is_placeholder(value: &str) -> bool {
    value.len() > 2
        && value.starts_with('<')
        && value.ends_with('>')
        && value[1..value.len() - 1]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl SmtpSettings {
    /// Checks what can only be checked before sending: the sender is an address and no
    /// placeholder of the examples (`<your-smtp-username>`) is left. `path` is the settings' path.
    pub fn check_ready(&self, path: &str) -> Result<Mailbox, ConfigError> {
        for (key, value) in [
            ("user", self.user.as_deref()),
            ("pass", self.pass.as_ref().map(Secret::expose)),
        ] {
            if let Some(v) = value.filter(|v| is_placeholder(v)) {
                let shown = if key == "pass" {
                    "<…>".to_owned()
                } else {
                    v.to_owned()
                };
                return Err(ConfigError::new(
                    format!("{path}.{key}"),
                    format!(
                        "still the placeholder {shown}: put the real value (or ${{ENV_VAR}}) here"
                    ),
                ));
            }
        }
        if is_placeholder(&self.from) {
            return Err(ConfigError::new(
                format!("{path}.from"),
                format!(
                    "still the placeholder {}: put the sender address here",
                    self.from
                ),
            ));
        }
        self.from
            .parse::<Mailbox>()
            .map_err(|e| ConfigError::new(format!("{path}.from"), e.to_string()))
    }

    /// Client options for these settings: security, TLS trust, credentials, timeouts.
    /// Builds the TLS configuration, which logs a warning when `tls_skip_verify` is set.
    pub fn client_options(&self) -> crate::Result<ClientOptions> {
        let tls = TlsConnector::new(&TlsSettings {
            skip_verify: self.tls_skip_verify,
            ca_file: self.ca_file.clone(),
        })?;
        let credentials = match (self.auth, &self.user, &self.pass) {
            (AuthSetting::None, _, _) => None,
            (_, Some(user), Some(pass)) => {
                Some(Credentials::new(user.clone(), pass.clone()).map_err(crate::Error::from)?)
            }
            _ => None,
        };
        Ok(ClientOptions {
            client_name: self.helo_name.clone(),
            timeouts: self.timeouts,
            transcript: None,
            security: self.security,
            tls: Some(tls),
            tls_server_name: None,
            credentials,
            auth_mechanism: match self.auth {
                AuthSetting::Mechanism(m) => Some(m),
                _ => None,
            },
            allow_insecure_auth: self.allow_insecure_auth,
            source_address: self.source_address,
            attempt_delay: self.connect_attempt_delay,
            proxy: self.proxy.clone(),
            chunking: crate::client::Chunking {
                enabled: self.chunking,
                ..crate::client::Chunking::default()
            },
            ..ClientOptions::default()
        })
    }
}
