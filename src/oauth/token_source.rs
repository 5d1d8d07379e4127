//! [`TokenSource`]: the access token for one provider's XOAUTH2, fetched when first needed,
//! refreshed ahead of its expiry, one fetch at a time, shared by every session of the
//! provider in the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::settings::{Grant, OAuth2Settings};
use super::token_cache::{cache_key, TokenCache};
use super::token_endpoint::{TokenEndpoint, TokenResponse};
use crate::client::{SecretFuture, SecretSource};
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::proto::Secret;

/// Assumed lifetime of an access token whose endpoint does not say (`expires_in` is only
/// RECOMMENDED by RFC 6749 §5.1); a refusal by the server refreshes it sooner.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);
/// How long before its expiry a token is replaced: a quarter of its life, at most a minute,
/// so a session that authenticates now never carries a token about to lapse.
const MAX_MARGIN: Duration = Duration::from_secs(60);

struct Access {
    token: Secret,
    /// Used until then; fetched again after.
    fresh_until: Instant,
    lifetime: Option<Duration>,
}

#[derive(Default)]
struct State {
    access: Option<Access>,
    /// The refresh token in use (after the first fetch: the cache's or the configuration's,
    /// then each rotated one).
    refresh: Option<Secret>,
}

struct Inner {
    endpoint: TokenEndpoint,
    cache: TokenCache,
    state: Mutex<State>,
    /// Held while a fetch runs: never two requests for the same provider at once.
    fetching: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

/// An OAuth 2.0 access token source for XOAUTH2 (a [`SecretSource`]).
///
/// The token is fetched on first use and again shortly before it expires, or at once after a
/// server refused it ([`SecretSource::refused`]). Concurrent sessions wait for the same fetch.
/// A refresh token the endpoint rotates is written to the token cache before it is used.
/// A fetch, once started, runs to its end even when the session that asked for it is
/// cancelled, so a rotated refresh token is never lost in between.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use smtpkit::client::Credentials;
/// use smtpkit::oauth::{OAuth2Input, OAuth2Settings, TokenSource};
/// use smtpkit::proto::Secret;
///
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let settings = OAuth2Settings::resolve(OAuth2Input {
///     provider: "google".into(),
///     client_id: "1234.apps.googleusercontent.com".into(),
///     client_secret: Some(Secret::new(std::env::var("GOOGLE_CLIENT_SECRET")?)),
///     refresh_token: Some(Secret::new(std::env::var("GOOGLE_REFRESH_TOKEN")?)),
///     ..OAuth2Input::default()
/// })
/// .map_err(|e| e.message)?;
/// let source = TokenSource::shared(settings, "me@gmail.com", None, Duration::from_secs(30))?;
/// let credentials = Credentials::from_source("me@gmail.com", source)?;
/// # let _ = credentials;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("endpoint", &self.inner.endpoint)
            .field("cache", &self.inner.cache.path())
            .finish_non_exhaustive()
    }
}

/// What [`TokenSource::status`] reports: where tokens come from and how long the current one
/// lasts. Never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStatus {
    /// The token endpoint.
    pub token_url: String,
    /// The grant used.
    pub grant: Grant,
    /// The lifetime the endpoint gave the current token (`None`: it did not say).
    pub lifetime: Option<Duration>,
    /// How many tokens were fetched by this source so far.
    pub fetches: u64,
}

type Registry = Mutex<HashMap<String, Weak<Inner>>>;

fn registry() -> &'static Registry {
    static SOURCES: OnceLock<Registry> = OnceLock::new();
    SOURCES.get_or_init(Registry::default)
}

impl TokenSource {
    /// A source for `user`'s tokens as `settings` say; `ca_file` adds trusted roots for the
    /// endpoint; `timeout` bounds each token request.
    pub fn new(
        settings: OAuth2Settings,
        user: &str,
        ca_file: Option<std::path::PathBuf>,
        timeout: Duration,
    ) -> Result<TokenSource> {
        let key = cache_key(&settings, user);
        let cache = TokenCache::new(settings.token_cache.clone(), key);
        let endpoint = TokenEndpoint::new(settings, ca_file, timeout)?;
        Ok(TokenSource {
            inner: Arc::new(Inner {
                endpoint,
                cache,
                state: Mutex::new(State::default()),
                fetching: tokio::sync::Mutex::new(()),
                fetches: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The one source in this process for the same endpoint, client, user, grant, scope and
    /// cache: every mailer and pool of a provider shares its token and its refreshes.
    pub fn shared(
        settings: OAuth2Settings,
        user: &str,
        ca_file: Option<std::path::PathBuf>,
        timeout: Duration,
    ) -> Result<Arc<TokenSource>> {
        let key = format!(
            "{}\u{0}{:?}\u{0}{}\u{0}{}",
            cache_key(&settings, user),
            settings.grant,
            settings.scope.as_deref().unwrap_or_default(),
            settings.token_cache.display()
        );
        let mut sources = registry()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sources.retain(|_, weak| weak.strong_count() > 0);
        if let Some(inner) = sources.get(&key).and_then(Weak::upgrade) {
            return Ok(Arc::new(TokenSource { inner }));
        }
        let source = TokenSource::new(settings, user, ca_file, timeout)?;
        sources.insert(key, Arc::downgrade(&source.inner));
        Ok(Arc::new(source))
    }

    /// Token fetches of every source in this process so far, for metrics.
    pub fn process_fetches() -> TokenFetches {
        TokenFetches {
            succeeded: PROCESS_FETCHED.load(std::sync::atomic::Ordering::Relaxed),
            failed: PROCESS_FAILED.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &OAuth2Settings {
        self.inner.endpoint.settings()
    }

    /// Where tokens come from and how the current one stands.
    pub fn status(&self) -> TokenStatus {
        let lifetime = self
            .inner
            .lock_state()
            .access
            .as_ref()
            .and_then(|a| a.lifetime);
        TokenStatus {
            token_url: self.settings().token_url.clone(),
            grant: self.settings().grant,
            lifetime,
            fetches: self
                .inner
                .fetches
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The current access token, fetched first if there is none or it is about to expire.
    ///
    /// Cancel safety: dropping the future does not stop a fetch it started; the next call
    /// uses that fetch's token.
    pub async fn access_token(&self) -> Result<Secret> {
        if let Some(token) = self.inner.fresh() {
            return Ok(token);
        }
        let inner = self.inner.clone();
        let fetch = tokio::spawn(async move {
            let _one_at_a_time = inner.fetching.lock().await;
            // Another caller may have fetched while this one waited.
            if let Some(token) = inner.fresh() {
                return Ok(token);
            }
            let fetched = inner.fetch().await;
            let counter = match fetched {
                Ok(_) => &PROCESS_FETCHED,
                Err(_) => &PROCESS_FAILED,
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            fetched
        });
        fetch.await.map_err(|e| {
            Error::new(
                ErrorKind::Auth,
                Stage::Token,
                format!("the token fetch failed: {e}"),
            )
        })?
    }
}

/// Access tokens fetched (and fetches failed) by every [`TokenSource`] of the process.
static PROCESS_FETCHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static PROCESS_FAILED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Token fetches of the whole process ([`TokenSource::process_fetches`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenFetches {
    /// Access tokens fetched from token endpoints.
    pub succeeded: u64,
    /// Fetches that failed (endpoint unreachable, refused, `invalid_grant`).
    pub failed: u64,
}

impl Inner {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fresh(&self) -> Option<Secret> {
        let state = self.lock_state();
        state
            .access
            .as_ref()
            .filter(|a| Instant::now() < a.fresh_until)
            .map(|a| a.token.clone())
    }

    async fn fetch(&self) -> Result<Secret> {
        let settings = self.endpoint.settings();
        let response = match settings.grant {
            Grant::ClientCredentials => self.endpoint.client_credentials().await?,
            Grant::RefreshToken => {
                let refresh = self.refresh_token().await?;
                let response = self.endpoint.refresh(&refresh).await?;
                if let Some(rotated) = &response.refresh_token {
                    self.keep_rotated(rotated).await;
                }
                response
            }
        };
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.remember(response))
    }

    /// The refresh token to use: the one in use, else the cache's or the configuration's.
    async fn refresh_token(&self) -> Result<Secret> {
        if let Some(r) = self.lock_state().refresh.clone() {
            return Ok(r);
        }
        let cache = self.cache.clone();
        let configured = self.endpoint.settings().refresh_token.clone();
        let loaded =
            tokio::task::spawn_blocking(move || cache.initial_refresh_token(configured.as_ref()))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|m| Error::new(ErrorKind::Auth, Stage::Token, m))?;
        let Some(refresh) = loaded else {
            return Err(Error::new(
                ErrorKind::Auth,
                Stage::Token,
                format!(
                    "no refresh token: neither `refresh_token` in the configuration nor an entry in {}",
                    self.cache.path().display()
                ),
            ));
        };
        self.lock_state().refresh = Some(refresh.clone());
        Ok(refresh)
    }

    /// A rotated refresh token: the old one may already be void, so it is written to the
    /// cache before anything else uses the new access token.
    async fn keep_rotated(&self, rotated: &Secret) {
        self.lock_state().refresh = Some(rotated.clone());
        let cache = self.cache.clone();
        let configured = self.endpoint.settings().refresh_token.clone();
        let rotated = rotated.clone();
        let stored =
            tokio::task::spawn_blocking(move || cache.store(&rotated, configured.as_ref()))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
        if let Err(message) = stored {
            tracing::warn!(
                "the identity provider rotated the refresh token but it could not be saved: {message}; \
                 after a restart `smtpkit auth login` may be needed"
            );
        }
    }

    fn remember(&self, response: TokenResponse) -> Secret {
        let lifetime = response.expires_in;
        let life = lifetime.unwrap_or(ASSUMED_LIFETIME);
        let margin = (life / 4).min(MAX_MARGIN);
        let token = response.access_token;
        self.lock_state().access = Some(Access {
            token: token.clone(),
            fresh_until: Instant::now() + life.saturating_sub(margin),
            lifetime,
        });
        token
    }
}

impl SecretSource for TokenSource {
    fn secret(&self) -> SecretFuture<'_> {
        Box::pin(self.access_token())
    }

    fn refused(&self, secret: &Secret) -> bool {
        let mut state = self.inner.lock_state();
        if state.access.as_ref().is_some_and(|a| a.token == *secret) {
            // Revoked or expired early: fetch a new one on the next AUTH.
            state.access = None;
        }
        true
    }
}
