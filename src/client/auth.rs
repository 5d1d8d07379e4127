//! AUTH (RFC 4954): mechanism choice, the challenge loop, and the refusal to send credentials
//! in the clear.

use super::connection::Connection;
use super::tls::Security;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::proto::limits::MAX_AUTH_ROUNDS;
use crate::proto::{
    reject_control, Command, InvalidInput, Mechanism, Reply, SaslExchange, SaslStep, Secret,
};

/// A user name and its password (or OAuth 2.0 token for XOAUTH2). `Debug` never shows the secret.
///
/// ```
/// use smtpkit::client::Credentials;
/// use smtpkit::proto::Secret;
/// let c = Credentials::new("apikey", Secret::new("SG.secret"))?;
/// assert!(!format!("{c:?}").contains("SG.secret"));
/// # Ok::<(), smtpkit::proto::InvalidInput>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    secret: Secret,
}

impl Credentials {
    /// Checks that neither part has a control character (a NUL would break PLAIN's framing).
    pub fn new(username: impl Into<String>, secret: Secret) -> Result<Credentials, InvalidInput> {
        let username = username.into();
        reject_control("user name", &username)?;
        if secret.expose().chars().any(char::is_control) {
            return Err(InvalidInput::ControlCharacter {
                what: "password",
                value: "<redacted>".into(),
            });
        }
        Ok(Credentials { username, secret })
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password or token.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &self.secret)
            .finish()
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
        self.wire().begin(Stage::Auth)?;
        let result = self.auth_exchange(credentials, mechanism).await;
        self.wire().end();
        result
    }

    async fn auth_exchange(
        &mut self,
        credentials: &Credentials,
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
        let mut exchange = SaslExchange::new(
            mechanism,
            credentials.username(),
            credentials.secret().clone(),
        );
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
