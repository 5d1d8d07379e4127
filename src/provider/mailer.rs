//! The Mailer: configured providers turned into deliveries, with pools, retries, rate limits
//! and fallbacks.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::{AuthSetting, Config, ProviderConfig, SmtpSettings};
use super::error::ConfigError;
use crate::client::{ClientOptions, Credentials, Envelope, SecretSource, Sender, Sent, Transcript};
use crate::delivery::{
    deliver, deliver_message, DeliveryError, DeliveryReport, Pool, RateLimiter, RateLimits, Route,
};
use crate::error::ErrorKind;
use crate::message::{BuiltMessage, Notification};
use crate::proto::InvalidInput;

/// The routes of a configuration, one per provider, built once so every sender through a
/// provider shares its pool and its rate limiter.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: HashMap<String, Built>,
}

#[derive(Debug, Clone)]
struct Built {
    route: Route,
    settings: SmtpSettings,
    options: ClientOptions,
    fallback: Vec<String>,
}

/// Checks the credentials as [`SmtpSettings::client_options`] will, so that a bad one is
/// reported under `user` or `pass` (the password itself never shown).
fn check_credentials(s: &SmtpSettings, path: &str) -> Result<(), ConfigError> {
    let (Some(user), Some(pass)) = (&s.user, &s.pass) else {
        return Ok(());
    };
    if s.auth == AuthSetting::None {
        return Ok(());
    }
    Credentials::new(user.clone(), pass.clone())
        .map(drop)
        .map_err(|e| {
            let blames_password = matches!(
                &e,
                InvalidInput::ControlCharacter { what, .. } | InvalidInput::Invalid { what, .. }
                    if *what == "password"
            );
            if blames_password {
                ConfigError::new(
                    format!("{path}.pass"),
                    format!(
                        "{e}; a trailing newline from a file or an environment variable is a \
                         common cause"
                    ),
                )
            } else {
                ConfigError::new(format!("{path}.user"), e.to_string())
            }
        })
}

/// Secret sources by provider id, replacing those providers' `pass`.
pub type SecretSources = HashMap<String, Arc<dyn SecretSource>>;

fn build_route(
    p: &ProviderConfig,
    transcript: Option<&Transcript>,
    sources: &SecretSources,
) -> Result<Built, ConfigError> {
    let path = format!("providers.{}.config", p.id);
    let from = p.smtp.check_ready(&path)?;
    check_credentials(&p.smtp, &path)?;
    let mut options = p.smtp.client_options().map_err(|e| {
        // With the credentials checked, what is left is building the TLS configuration: with
        // `tls_skip_verify` no trust store is read; otherwise the CA file or the system's roots
        // (whose absence `ca_file` fixes) failed.
        let key = match e.kind() {
            ErrorKind::Tls if p.smtp.tls_skip_verify => ".tls_skip_verify",
            ErrorKind::Tls => ".ca_file",
            _ => "",
        };
        // The key names where; the stage (connect, STARTTLS) would only mislead.
        ConfigError::new(format!("{path}{key}"), e.message())
    })?;
    options.transcript = transcript.cloned();
    let source = match (sources.get(&p.id), &p.smtp.oauth2) {
        (Some(source), _) => Some(source.clone()),
        (None, Some(oauth2)) => Some(token_source(&p.smtp, oauth2, &path)?),
        (None, None) => None,
    };
    if let Some(source) = source {
        let user = p.smtp.user.clone().unwrap_or_default();
        let credentials = Credentials::from_source(user, source)
            .map_err(|e| ConfigError::new(format!("{path}.user"), e.to_string()))?;
        options.credentials = Some(credentials);
    }
    let pool = Pool::new(&p.smtp.host, p.smtp.port, options.clone(), p.smtp.pool);
    let limiter = (!p.smtp.rate_limit.is_unlimited()).then(|| RateLimiter::new(p.smtp.rate_limit));
    let route = Route {
        provider: p.id.clone(),
        pool,
        retry: p.smtp.retry,
        limiter,
        transcript: transcript.cloned(),
        from: from.clone(),
    };
    Ok(Built {
        route,
        settings: p.smtp.clone(),
        options,
        fallback: p.smtp.fallback.clone(),
    })
}

/// The provider's OAuth 2.0 token source, shared with every other route of the same account
/// in the process.
#[cfg(feature = "oauth2")]
fn token_source(
    s: &SmtpSettings,
    oauth2: &crate::oauth::OAuth2Settings,
    path: &str,
) -> Result<Arc<dyn SecretSource>, ConfigError> {
    let user = s.user.as_deref().unwrap_or_default();
    let source = crate::oauth::TokenSource::shared(
        oauth2.clone(),
        user,
        s.ca_file.clone(),
        s.timeouts.command,
    )
    .map_err(|e| ConfigError::new(format!("{path}.oauth2"), e.message()))?;
    Ok(source)
}

#[cfg(not(feature = "oauth2"))]
fn token_source(
    _: &SmtpSettings,
    _: &crate::oauth::OAuth2Settings,
    path: &str,
) -> Result<Arc<dyn SecretSource>, ConfigError> {
    Err(ConfigError::new(
        format!("{path}.oauth2"),
        "this build of smtpkit has no OAuth 2.0 support: enable the crate feature `oauth2`",
    ))
}

impl RouteTable {
    /// Builds the routes of `ids` and, transitively, of their `fallback` providers.
    pub fn build(
        config: &Config,
        ids: &[&str],
        transcript: Option<Transcript>,
    ) -> Result<RouteTable, ConfigError> {
        RouteTable::build_with_sources(config, ids, transcript, &SecretSources::new())
    }

    /// Like [`RouteTable::build`], where the providers named in `sources` take their secret
    /// from it each time a session authenticates, instead of their fixed `pass`.
    pub fn build_with_sources(
        config: &Config,
        ids: &[&str],
        transcript: Option<Transcript>,
        sources: &SecretSources,
    ) -> Result<RouteTable, ConfigError> {
        let mut routes = HashMap::new();
        let mut todo: Vec<(String, Option<String>)> =
            ids.iter().map(|id| ((*id).to_owned(), None)).collect();
        while let Some((id, named_by)) = todo.pop() {
            if routes.contains_key(&id) {
                continue;
            }
            let p = config.provider(Some(&id)).map_err(|e| match &named_by {
                Some(by) => {
                    ConfigError::new(format!("providers.{by}.config.fallback"), e.to_string())
                }
                None => e,
            })?;
            let built = build_route(p, transcript.as_ref(), sources)?;
            for f in &built.fallback {
                todo.push((f.clone(), Some(id.clone())));
            }
            routes.insert(id, built);
        }
        Ok(RouteTable { routes })
    }

    /// Replaces the rate limiter of every provider that has a `rate_limit` with
    /// `make(provider id, limits)`: e.g. [`RateLimiter::shared`] on a ledger that other
    /// processes use too, or one limiter shared by several tables.
    pub fn with_rate_limiters(
        mut self,
        mut make: impl FnMut(&str, RateLimits) -> RateLimiter,
    ) -> RouteTable {
        for (id, built) in &mut self.routes {
            if let Some(limiter) = &mut built.route.limiter {
                *limiter = make(id, limiter.limits());
            }
        }
        self
    }

    /// QUITs the idle sessions of every provider.
    ///
    /// Cancel safety: sessions not yet closed when the future is dropped are closed without
    /// QUIT.
    pub async fn close(&self) {
        for b in self.routes.values() {
            b.route.pool.close_idle().await;
        }
    }

    /// A mailer trying `ids` in order, each followed by its fallbacks (each provider once).
    pub fn mailer(&self, ids: &[&str]) -> Result<Mailer, ConfigError> {
        let mut order: Vec<String> = Vec::new();
        let mut stack: Vec<String> = ids.iter().rev().map(|s| (*s).to_owned()).collect();
        while let Some(id) = stack.pop() {
            if order.contains(&id) {
                continue;
            }
            let built = self.routes.get(&id).ok_or_else(|| {
                ConfigError::new(
                    format!("providers.{id}"),
                    "not built: name it when building the table",
                )
            })?;
            for f in built.fallback.iter().rev() {
                stack.push(f.clone());
            }
            order.push(id);
        }
        let first = order
            .first()
            .and_then(|id| self.routes.get(id))
            .ok_or_else(|| ConfigError::new("providers", "no provider named"))?;
        Ok(Mailer {
            routes: order
                .iter()
                .filter_map(|id| self.routes.get(id))
                .map(|b| b.route.clone())
                .collect(),
            settings: first.settings.clone(),
            options: first.options.clone(),
        })
    }
}

/// Sends notifications through a provider, its retries and its fallbacks.
///
/// Cheap to clone; clones share connections and rate limits, so one `Mailer` can serve many
/// tasks at once. While all of a provider's sessions are busy, the messages of other tasks
/// wait to share them: a session takes them in batches and pipelines them, each task still
/// getting its own report.
///
/// ```no_run
/// use smtpkit::message::Notification;
/// use smtpkit::provider::{Config, Mailer};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_file("smtpkit.yaml")?;
/// let mailer = Mailer::new(&config, Some("email"))?;
/// let report = mailer
///     .send(&Notification::new("Access Request Approval Required")
///         .to("approver@example.com".parse()?)
///         .text("A new access request requires your approval."))
///     .await?;
/// println!("{} accepted as {:?} after {} attempt(s)", report.message_id, report.queue_id, report.attempts.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Mailer {
    routes: Vec<Route>,
    settings: SmtpSettings,
    options: ClientOptions,
}

impl Mailer {
    /// A mailer for the provider named `provider` (or the only enabled one) and its fallbacks.
    /// Builds the TLS configuration now, so a bad `ca_file` is reported here.
    pub fn new(config: &Config, provider: Option<&str>) -> Result<Mailer, ConfigError> {
        Mailer::with_options(config, provider, None)
    }

    /// Like [`Mailer::new`], with every session's lines sent to `transcript` (secrets redacted).
    pub fn with_options(
        config: &Config,
        provider: Option<&str>,
        transcript: Option<Transcript>,
    ) -> Result<Mailer, ConfigError> {
        let id = config.provider(provider)?.id.clone();
        RouteTable::build(config, &[&id], transcript)?.mailer(&[&id])
    }

    /// Like [`Mailer::new`], with the provider's secret taken from `source` each time a
    /// session authenticates (a rotated password, an OAuth 2.0 token), instead of its fixed
    /// `pass`: the mailer keeps working as the secret changes.
    pub fn with_secret_source(
        config: &Config,
        provider: Option<&str>,
        source: Arc<dyn SecretSource>,
    ) -> Result<Mailer, ConfigError> {
        let id = config.provider(provider)?.id.clone();
        let sources = SecretSources::from([(id.clone(), source)]);
        RouteTable::build_with_sources(config, &[&id], None, &sources)?.mailer(&[&id])
    }

    /// The first provider's id.
    pub fn provider(&self) -> &str {
        self.routes.first().map_or("", |r| r.provider.as_str())
    }

    /// The providers tried, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first provider's settings.
    pub fn settings(&self) -> &SmtpSettings {
        &self.settings
    }

    /// Client options of the first provider (for [`crate::client::Connection::connect`]).
    pub fn client_options(&self) -> &ClientOptions {
        &self.options
    }

    /// Builds the message and delivers it: pooled sessions, retries of transient failures
    /// (only for the recipients that failed), fallback providers, rate limits.
    ///
    /// Cancel safety: a dropped future may leave the message sent, partly sent or not sent;
    /// a session it was using is closed, never lent to another send (so no other message can
    /// be confused with this one).
    pub async fn send(&self, notification: &Notification) -> Result<DeliveryReport, DeliveryError> {
        deliver(&self.routes, notification, self.settings.total_timeout).await
    }

    /// Delivers a message built already (RFC 5322 bytes) to `envelope`'s recipients, with
    /// the same pools, retries, rate limits and fallbacks as [`Mailer::send`]; a fallback
    /// provider sends it unchanged. Its Message-ID is read from the message's header.
    ///
    /// Cancel safety: as [`Mailer::send`].
    pub async fn send_message(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<DeliveryReport, DeliveryError> {
        let built = BuiltMessage {
            envelope: envelope.clone(),
            bytes: message.to_vec(),
            message_id: header_message_id(message).unwrap_or_default(),
        };
        deliver_message(&self.routes, &built, self.settings.total_timeout).await
    }

    /// QUITs the idle sessions of every provider (call before the program ends).
    ///
    /// Cancel safety: sessions not yet closed when the future is dropped are closed without
    /// QUIT.
    pub async fn close(&self) {
        for r in &self.routes {
            r.pool.close_idle().await;
        }
    }
}

impl Sender for Mailer {
    /// [`Mailer::send_message`]; a delivery that fails gives its error.
    async fn send(&mut self, envelope: &Envelope, message: &[u8]) -> crate::Result<Sent> {
        let report = self
            .send_message(envelope, message)
            .await
            .map_err(|failure| failure.error)?;
        let (accepted, refused): (Vec<_>, Vec<_>) =
            report.recipients.iter().partition(|r| r.accepted);
        let parse = |list: Vec<&crate::delivery::RecipientStatus>| {
            list.into_iter()
                .filter_map(|r| crate::proto::Address::new(&r.address).ok())
                .collect()
        };
        let mut sent = Sent::all(envelope, report.queue_id.clone());
        sent.accepted = parse(accepted);
        sent.refused = parse(refused);
        Ok(sent)
    }
}

/// The Message-ID of a message's header section, without angle brackets.
fn header_message_id(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    text.lines()
        .take_while(|l| !l.trim_end_matches('\r').is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("message-id").then(|| {
                value
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
        })
        .filter(|id| !id.is_empty())
}
