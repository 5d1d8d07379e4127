//! SASL mechanisms for AUTH (RFC 4954) as small state machines: challenges in, responses out.
//! They only build base64 lines; the client decides when it is safe to send them.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::command::MechanismName;
use super::limits::MAX_AUTH_ROUNDS;
use super::secret::Secret;

/// A mechanism smtpkit can authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// PLAIN (RFC 4616): identity and password in the initial response.
    Plain,
    /// LOGIN (draft-murchison-sasl-login): user name, then password, one per challenge.
    Login,
    /// XOAUTH2 (Google, Microsoft): user name and an OAuth 2.0 bearer token.
    XOAuth2,
}

impl Mechanism {
    /// The name used in `AUTH` and in the EHLO reply.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }

    /// Parses `plain`, `login` or `xoauth2`, any case.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        [Mechanism::Plain, Mechanism::Login, Mechanism::XOAuth2]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The password mechanisms in order of preference: PLAIN needs one round trip, LOGIN two;
    /// both send the password as it is, so neither is stronger.
    pub const PASSWORD_PREFERENCE: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

    pub(crate) fn command_name(self) -> MechanismName {
        MechanismName::from_static(self.name())
    }
}

/// What a mechanism answers to a `334` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send this base64 line.
    Respond(Secret),
    /// Send `*` to cancel (malformed challenge, too many rounds, nothing left to say).
    Cancel(&'static str),
}

/// One AUTH exchange in progress.
///
/// ```
/// use smtpkit::proto::{Mechanism, SaslExchange, SaslStep, Secret};
/// let mut login = SaslExchange::new(Mechanism::Login, "alice", Secret::new("pw"));
/// assert!(login.initial_response().is_none());
/// // The prompt text is ignored: rounds decide what is sent.
/// assert_eq!(login.respond("VXNlciBOYW1lAA=="), SaslStep::Respond(Secret::new("YWxpY2U=")));
/// assert_eq!(login.respond("UGFzc3dvcmQ6"), SaslStep::Respond(Secret::new("cHc=")));
/// ```
pub struct SaslExchange {
    mechanism: Mechanism,
    username: String,
    secret: Secret,
    rounds: usize,
}

impl std::fmt::Debug for SaslExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslExchange")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

impl SaslExchange {
    /// Starts an exchange; `secret` is the password, or the OAuth token for XOAUTH2.
    pub fn new(mechanism: Mechanism, username: &str, secret: Secret) -> SaslExchange {
        SaslExchange {
            mechanism,
            username: username.to_owned(),
            secret,
            rounds: 0,
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The base64 initial response sent with `AUTH` (RFC 4954 §4), if the mechanism has one.
    pub fn initial_response(&self) -> Option<Secret> {
        match self.mechanism {
            // RFC 4616 §2: [authzid] NUL authcid NUL passwd.
            Mechanism::Plain => Some(encode(
                format!("\0{}\0{}", self.username, self.secret.expose()).as_bytes(),
            )),
            Mechanism::Login => None,
            Mechanism::XOAuth2 => Some(encode(
                format!(
                    "user={}\x01auth=Bearer {}\x01\x01",
                    self.username,
                    self.secret.expose()
                )
                .as_bytes(),
            )),
        }
    }

    /// Answers one `334` challenge (its text, base64). Rounds are capped by
    /// [`MAX_AUTH_ROUNDS`]; a challenge that is not base64 is answered with `*`.
    pub fn respond(&mut self, challenge: &str) -> SaslStep {
        self.rounds += 1;
        if self.rounds > MAX_AUTH_ROUNDS {
            return SaslStep::Cancel("too many AUTH rounds");
        }
        let challenge = challenge.trim();
        if BASE64.decode(challenge).is_err() {
            return SaslStep::Cancel("server challenge is not valid base64");
        }
        match (self.mechanism, self.rounds) {
            // LOGIN: answer by round, whatever the prompt says ("Username:", "User Name\0"…).
            (Mechanism::Login, 1) => SaslStep::Respond(encode(self.username.as_bytes())),
            (Mechanism::Login, 2) => SaslStep::Respond(encode(self.secret.expose().as_bytes())),
            // XOAUTH2: a challenge carries an error description; the client answers with an
            // empty line and the server then sends its final failure reply.
            (Mechanism::XOAuth2, 1) => SaslStep::Respond(Secret::new("")),
            _ => SaslStep::Cancel("unexpected AUTH challenge"),
        }
    }
}

fn encode(bytes: &[u8]) -> Secret {
    let mut text = BASE64.encode(bytes);
    let secret = Secret::new(text.as_str());
    zeroize::Zeroize::zeroize(&mut text);
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &Secret) -> Vec<u8> {
        BASE64.decode(s.expose()).expect("base64")
    }

    #[test]
    fn plain_initial_response() {
        let ex = SaslExchange::new(Mechanism::Plain, "alice", Secret::new("s3cret"));
        assert_eq!(
            decode(&ex.initial_response().expect("initial")),
            b"\0alice\0s3cret"
        );
    }

    #[test]
    fn login_answers_by_round_whatever_the_prompt() {
        for prompts in [
            ["VXNlcm5hbWU6", "UGFzc3dvcmQ6"],
            ["VXNlciBOYW1lAA==", "UGFzc3dvcmQA"],
            ["", ""],
        ] {
            let mut ex = SaslExchange::new(Mechanism::Login, "bob", Secret::new("pw"));
            assert_eq!(
                ex.respond(prompts[0]),
                SaslStep::Respond(Secret::new("Ym9i"))
            );
            assert_eq!(
                ex.respond(prompts[1]),
                SaslStep::Respond(Secret::new("cHc="))
            );
            assert!(matches!(ex.respond(""), SaslStep::Cancel(_)));
        }
    }

    #[test]
    fn xoauth2_initial_response_and_error_challenge() {
        let mut ex = SaslExchange::new(
            Mechanism::XOAuth2,
            "u@example.com",
            Secret::new("ya29.token"),
        );
        assert_eq!(
            decode(&ex.initial_response().expect("initial")),
            b"user=u@example.com\x01auth=Bearer ya29.token\x01\x01"
        );
        let error = BASE64
            .encode(br#"{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}"#);
        assert_eq!(ex.respond(&error), SaslStep::Respond(Secret::new("")));
    }

    #[test]
    fn malformed_base64_is_cancelled() {
        let mut ex = SaslExchange::new(Mechanism::Login, "bob", Secret::new("pw"));
        assert!(matches!(ex.respond("not base64!!"), SaslStep::Cancel(_)));
    }

    #[test]
    fn rounds_are_capped() {
        let mut ex = SaslExchange::new(Mechanism::Login, "bob", Secret::new("pw"));
        let steps: Vec<SaslStep> = (0..MAX_AUTH_ROUNDS + 3).map(|_| ex.respond("")).collect();
        assert!(steps[MAX_AUTH_ROUNDS..]
            .iter()
            .all(|s| matches!(s, SaslStep::Cancel(_))));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let ex = SaslExchange::new(Mechanism::Plain, "alice", Secret::new("hunter2"));
        assert!(!format!("{ex:?}").contains("hunter2"));
    }
}
