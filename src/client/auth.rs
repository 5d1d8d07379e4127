//! AUTH (RFC 4954): mechanism choice, the challenge loop, and the refusal to send credentials
//! in the clear.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::connection::Connection;
use super::tls::Security;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::proto::limits::MAX_AUTH_ROUNDS;
use crate::proto::{
    reject_control, Command, InvalidInput, Mechanism, Reply, SaslExchange, SaslStep, Secret,
};

/// What [`SecretSource::secret`] returns.
pub type SecretFuture<'a> = Pin<Box<dyn Future<Output = Result<Secret>> + Send + 'a>>;

/// Where a password or token comes from when it can change while the program runs: a rotated
/// password read from a vault, an OAuth 2.0 access token refreshed before it expires. Asked
/// each time a session authenticates, so a pool's new sessions use the current secret.
///
/// ```
/// use std::sync::Arc;
/// use smtpkit::client::{Credentials, SecretFuture, SecretSource};
/// use smtpkit::proto::Secret;
///
/// /// Reads the password from a file each time (a secret rotated by another program).
/// #[derive(Debug)]
/// struct PasswordFile(std::path::PathBuf);
///
/// impl SecretSource for PasswordFile {
///     fn secret(&self) -> SecretFuture<'_> {
///         Box::pin(async move {
///             let text = tokio::fs::read_to_string(&self.0).await.map_err(|e| {
///                 smtpkit::Error::new(smtpkit::ErrorKind::Auth, smtpkit::Stage::Auth, "cannot read the password file")
///                     .with_source(e)
///             })?;
///             Ok(Secret::new(text.trim_end()))
///         })
///     }
/// }
///
/// let credentials = Credentials::from_source("relay-user", Arc::new(PasswordFile("/run/secrets/smtp".into())))?;
/// # let _ = credentials;
/// # Ok::<(), smtpkit::proto::InvalidInput>(())
/// ```
pub trait SecretSource: std::fmt::Debug + Send + Sync + 'static {
    /// The secret to authenticate with now. An error ends the session's AUTH with it (never
    /// put the secret itself in it).
    ///
    /// Cancel safety: the future may be dropped (a timeout, a cancelled send); it must leave
    /// nothing half-done that a later call would trip over.
    fn secret(&self) -> SecretFuture<'_>;

    /// Told that the server refused `secret` (`535` after AUTH): an OAuth 2.0 token revoked
    /// or expired early. Return true when the next [`SecretSource::secret`] will give a
    /// different secret worth one more session; [`Connection::connect`] then tries once more.
    /// The default, for a secret that cannot change on demand, is false.
    fn refused(&self, secret: &Secret) -> bool {
        let _ = secret;
        false
    }
}

#[derive(Clone)]
enum SecretKind {
    Fixed(Secret),
    Source(Arc<dyn SecretSource>),
}

/// A user name and its password (or OAuth 2.0 token for XOAUTH2), fixed or from a
/// [`SecretSource`]. `Debug` never shows the secret.
///
/// ```
/// use smtpkit::client::Credentials;
/// use smtpkit::proto::Secret;
/// let c = Credentials::new("apikey", Secret::new("SG.secret"))?;
/// assert!(!format!("{c:?}").contains("SG.secret"));
/// # Ok::<(), smtpkit::proto::InvalidInput>(())
/// ```
#[derive(Clone)]
pub struct Credentials {
    username: String,
    secret: SecretKind,
}

/// A NUL would break PLAIN's framing, a line end the command line.
fn check_secret(secret: &Secret) -> Result<(), InvalidInput> {
    if secret.expose().chars().any(char::is_control) {
        return Err(InvalidInput::ControlCharacter {
            what: "password",
            value: "<redacted>".into(),
        });
    }
    Ok(())
}

impl Credentials {
    /// Checks that neither part has a control character (a NUL would break PLAIN's framing).
    pub fn new(username: impl Into<String>, secret: Secret) -> Result<Credentials, InvalidInput> {
        let username = username.into();
        reject_control("user name", &username)?;
        check_secret(&secret)?;
        Ok(Credentials {
            username,
            secret: SecretKind::Fixed(secret),
        })
    }

    /// A user name whose secret `source` gives each time a session authenticates (checked
    /// then for control characters).
    pub fn from_source(
        username: impl Into<String>,
        source: Arc<dyn SecretSource>,
    ) -> Result<Credentials, InvalidInput> {
        let username = username.into();
        reject_control("user name", &username)?;
        Ok(Credentials {
            username,
            secret: SecretKind::Source(source),
        })
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password or token, when it is fixed; `None` for one from a [`SecretSource`].
    pub fn secret(&self) -> Option<&Secret> {
        match &self.secret {
            SecretKind::Fixed(s) => Some(s),
            SecretKind::Source(_) => None,
        }
    }

    /// Tells the source that the server refused `secret`; true when a new one may help.
    pub(crate) fn refused(&self, secret: &Secret) -> bool {
        match &self.secret {
            SecretKind::Fixed(_) => false,
            SecretKind::Source(source) => source.refused(secret),
        }
    }

    /// The secret to use now: the fixed one, or what the source gives.
    pub(crate) async fn current_secret(&self) -> Result<Secret> {
        match &self.secret {
            SecretKind::Fixed(s) => Ok(s.clone()),
            SecretKind::Source(source) => {
                let secret = source.secret().await?;
                check_secret(&secret).map_err(|e| auth_error(e.to_string()))?;
                Ok(secret)
            }
        }
    }
}

impl PartialEq for Credentials {
    /// Same user name and the same fixed secret, or the same source.
    fn eq(&self, other: &Credentials) -> bool {
        self.username == other.username
            && match (&self.secret, &other.secret) {
                (SecretKind::Fixed(a), SecretKind::Fixed(b)) => a == b,
                (SecretKind::Source(a), SecretKind::Source(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for Credentials {}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Credentials");
        d.field("username", &self.username);
        match &self.secret {
            SecretKind::Fixed(s) => d.field("secret", s),
            SecretKind::Source(source) => d.field("secret_source", source),
        };
        d.finish()
    }
}

fn auth_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Auth, Stage::Auth, message)
}

impl Connection {
    /// Authenticates with `credentials`, using `mechanism` or else the best one both sides
    /// support (PLAIN, then LOGIN; XOAUTH2 only when asked for).
    ///
    /// Refused before anything is sent when the session is not encrypted, unless the options
    /// say [`Security::None`] and `allow_insecure_auth`. A `334` challenge that is not base64
    /// is answered with `*`; rounds are capped. Transcripts show `<redacted>` for every payload.
    ///
    /// Cancel safety: if the future is dropped after AUTH was written and before the server's
    /// final reply was read, the session is never used again.
    pub async fn authenticate(
        &mut self,
        credentials: &Credentials,
        mechanism: Option<Mechanism>,
    ) -> Result<Reply> {
        self.refuse_while_awaiting_body(Stage::Auth)?;
        // Before the exchange begins: a slow or cancelled secret source leaves the session
        // untouched.
        let secret = credentials.current_secret().await?;
        self.wire().begin(Stage::Auth)?;
        let result = self
            .auth_exchange(credentials.username(), secret.clone(), mechanism)
            .await;
        self.wire().end();
        result.map_err(|mut err| {
            // RFC 4954 §6: 535 says these credentials are not accepted; a source that can
            // give new ones (an OAuth token fetched anew) earns one more session.
            let refused = err.reply().is_some_and(|r| r.code().value() == 535);
            if refused && credentials.refused(&secret) {
                err.new_secret_may_help = true;
            }
            err
        })
    }

    async fn auth_exchange(
        &mut self,
        username: &str,
        secret: Secret,
        mechanism: Option<Mechanism>,
    ) -> Result<Reply> {
        let insecure_allowed =
            self.options().security == Security::None && self.options().allow_insecure_auth;
        if !(self.is_secure() || insecure_allowed) {
            return Err(auth_error(
                "refusing to send credentials over an unencrypted connection (use STARTTLS or implicit TLS; \
                 `allow_insecure_auth` with `security: none` only on a trusted network)",
            ));
        }
        let mechanism = self.choose_mechanism(mechanism)?;
        let mut exchange = SaslExchange::new(mechanism, username, secret);
        let limit = self.options().timeouts().command;
        let auth = Command::Auth {
            mechanism: mechanism.command_name(),
            initial_response: exchange.initial_response(),
        };
        self.wire().queue(&[&auth], Stage::Auth)?;
        self.wire().flush(Stage::Auth, limit).await?;
        // Each 334 costs one round; past the cap the server is stalling or hostile.
        for _ in 0..=MAX_AUTH_ROUNDS {
            let reply = self.wire().read_reply(Stage::Auth, limit).await?;
            if reply.is_positive() {
                return Ok(reply);
            }
            if !reply.code().is_intermediate() {
                let message = match reply.code().value() {
                    538 => "the server requires encryption for this mechanism".to_owned(),
                    _ => format!("{} authentication failed", mechanism.name()),
                };
                return Err(auth_error(message).with_reply(reply));
            }
            let challenge = reply
                .lines()
                .first()
                .map(String::as_str)
                .unwrap_or_default();
            let response = match exchange.respond(challenge) {
                SaslStep::Respond(secret) => secret,
                SaslStep::Cancel(why) => {
                    self.wire().note(&format!("cancelling AUTH: {why}"));
                    Secret::new("*")
                }
            };
            self.wire()
                .queue(&[&Command::AuthResponse(response)], Stage::Auth)?;
            self.wire().flush(Stage::Auth, limit).await?;
        }
        let err = Error::new(
            ErrorKind::Protocol,
            Stage::Auth,
            format!("server sent more than {MAX_AUTH_ROUNDS} AUTH challenges"),
        );
        Err(self.wire().poison(err))
    }

    fn choose_mechanism(&self, wanted: Option<Mechanism>) -> Result<Mechanism> {
        let offered = self.capabilities.auth_mechanisms();
        if offered.is_empty() {
            return Err(auth_error(
                "the server does not offer AUTH on this connection",
            ));
        }
        if let Some(m) = wanted {
            return if self.capabilities.supports_auth(m.name()) {
                Ok(m)
            } else {
                Err(auth_error(format!(
                    "the server does not offer AUTH {}; it offers {}",
                    m.name(),
                    offered.join(" ")
                )))
            };
        }
        Mechanism::PASSWORD_PREFERENCE.into_iter().find(|m| self.capabilities.supports_auth(m.name())).ok_or_else(|| {
            auth_error(format!(
                "no common AUTH mechanism: the server offers {}, smtpkit speaks PLAIN, LOGIN and XOAUTH2",
                offered.join(" ")
            ))
        })
    }
}
