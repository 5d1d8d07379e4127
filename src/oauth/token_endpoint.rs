//! The token endpoint (RFC 6749 §3.2) over HTTPS: form requests out, token or error responses
//! in, every failure turned into an [`Error`] at [`Stage::Token`] that never carries a secret.

use std::time::Duration;

use serde_json::Value;

use super::settings::OAuth2Settings;
use crate::client::{TlsConnector, TlsSettings};
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::proto::Secret;

/// A token endpoint's successful answer (RFC 6749 §5.1). `Debug` hides the tokens.
#[derive(Clone)]
pub struct TokenResponse {
    /// `access_token`.
    pub access_token: Secret,
    /// `expires_in`: the access token's lifetime, when the endpoint says.
    pub expires_in: Option<Duration>,
    /// `refresh_token`: a new refresh token (rotation), when the endpoint issued one.
    pub refresh_token: Option<Secret>,
    /// `scope`, when the endpoint says.
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<new>"),
            )
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// An error response's `error` code (RFC 6749 §5.2, RFC 8628 §3.5), and its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub(crate) code: String,
    pub(crate) description: Option<String>,
}

/// What came back from a form POST: a JSON object with a 2xx status, or an OAuth error
/// object.
pub(crate) enum Answer {
    Ok(serde_json::Map<String, Value>),
    Refused(OAuthError),
}

/// An HTTPS client for one provider's endpoints: the system's roots plus the provider's
/// `ca_file`, rustls with *ring*, no redirects (a token request is never sent elsewhere).
#[derive(Clone)]
pub struct TokenEndpoint {
    http: reqwest::Client,
    settings: OAuth2Settings,
    timeout: Duration,
}

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("token_url", &self.settings.token_url)
            .field("grant", &self.settings.grant)
            .finish_non_exhaustive()
    }
}

impl TokenEndpoint {
    /// A client for `settings`' endpoints; `ca_file` adds trusted roots (as for SMTP);
    /// `timeout` bounds each request, connection included.
    pub fn new(
        settings: OAuth2Settings,
        ca_file: Option<std::path::PathBuf>,
        timeout: Duration,
    ) -> Result<TokenEndpoint> {
        let tls = match TlsConnector::new(&TlsSettings {
            skip_verify: false,
            ca_file,
        }) {
            Ok(tls) => (*tls.client_config()).clone(),
            // No trusted roots at all: only plain-http loopback endpoints can work; an https
            // one fails at its handshake with an error that names the missing roots.
            Err(_) => empty_trust(),
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("smtpkit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                token_error(ErrorKind::Connect, format!("HTTP client setup failed: {e}"))
            })?;
        Ok(TokenEndpoint {
            http,
            settings,
            timeout,
        })
    }

    /// The settings this endpoint was made for.
    pub fn settings(&self) -> &OAuth2Settings {
        &self.settings
    }

    /// Exchanges a refresh token for an access token (RFC 6749 §6).
    ///
    /// Cancel safety: dropping the future abandons the request; a refresh token the endpoint
    /// rotated in that moment is lost with it (use [`super::TokenSource`], which finishes
    /// every refresh it starts).
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenResponse> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.expose().to_owned()),
        ];
        if let Some(scope) = &self.settings.scope {
            form.push(("scope", scope.clone()));
        }
        self.token_request(form).await
    }

    /// Gets an access token with the application's own credentials (RFC 6749 §4.4).
    ///
    /// Cancel safety: dropping the future abandons the request; nothing is kept.
    pub async fn client_credentials(&self) -> Result<TokenResponse> {
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if let Some(scope) = &self.settings.scope {
            form.push(("scope", scope.clone()));
        }
        self.token_request(form).await
    }

    /// A token request with `form` plus the client's identity; the answer as a token.
    pub(crate) async fn token_request(
        &self,
        form: Vec<(&'static str, String)>,
    ) -> Result<TokenResponse> {
        match self.post(&self.settings.token_url, form).await? {
            Answer::Ok(object) => parse_token(&object),
            Answer::Refused(err) => Err(refused(&err)),
        }
    }

    /// POSTs `form` (plus `client_id`, and `client_secret` when there is one, in the body as
    /// RFC 6749 §2.3.1 allows) to `url`.
    pub(crate) async fn post(
        &self,
        url: &str,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<Answer> {
        form.push(("client_id", self.settings.client_id.clone()));
        if let Some(secret) = &self.settings.client_secret {
            form.push(("client_secret", secret.expose().to_owned()));
        }
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await;
        for (_, value) in &mut form {
            zeroize::Zeroize::zeroize(value);
        }
        let response = sent.map_err(|e| unreachable(url, &e, self.timeout))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(url, &e, self.timeout))?;
        let object = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| match v {
                Value::Object(map) => Some(map),
                _ => None,
            });
        // RFC 6749 §5.2: an error response is a JSON object with `error`, usually with 400
        // (401 for client authentication).
        if let Some(code) = object
            .as_ref()
            .and_then(|o| o.get("error"))
            .and_then(Value::as_str)
        {
            if !status.is_server_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                let description = object
                    .as_ref()
                    .and_then(|o| o.get("error_description"))
                    .and_then(Value::as_str)
                    .map(printable);
                return Ok(Answer::Refused(OAuthError {
                    code: printable(code),
                    description,
                }));
            }
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(token_error(
                ErrorKind::Connect,
                format!("the token endpoint {url} answered HTTP {status}: try again later"),
            ));
        }
        match object {
            Some(object) if status.is_success() => Ok(Answer::Ok(object)),
            _ => Err(token_error(
                ErrorKind::Protocol,
                format!(
                    "the token endpoint {url} answered HTTP {status} without an OAuth 2.0 JSON object"
                ),
            )),
        }
    }
}

/// A rustls configuration that trusts nothing (used only for plain-http loopback endpoints).
fn empty_trust() -> rustls::ClientConfig {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        // The ring provider supports the default versions; this arm is not reached.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    }
}

/// Text from the endpoint, shown to the user: control characters replaced, length capped.
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if text.chars().count() > 300 {
        out.push('…');
    }
    out
}

fn token_error(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error::new(kind, Stage::Token, message)
}

/// The endpoint could not be asked: temporary, retried like a connection failure.
fn unreachable(url: &str, err: &reqwest::Error, timeout: Duration) -> Error {
    if err.is_timeout() {
        return token_error(
            ErrorKind::Timeout,
            format!("the token endpoint {url} did not answer within {timeout:?}"),
        );
    }
    // The innermost cause says what happened (refused, no such host…); reqwest's own text
    // only says the request failed.
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    token_error(
        ErrorKind::Connect,
        format!("cannot reach the token endpoint {url}: {cause}"),
    )
}

/// An OAuth error response as an [`Error`]: the client or the grant is not accepted, which
/// trying again will not change.
pub(crate) fn refused(err: &OAuthError) -> Error {
    let what = match err.code.as_str() {
        "invalid_grant" => "the refresh token is not accepted (revoked or expired)",
        "invalid_client" => "the client id or client secret is not accepted",
        "unauthorized_client" => "this client may not use this grant",
        "invalid_scope" => "the scope is not accepted",
        "access_denied" => "access was denied",
        _ => "the token request was refused",
    };
    let mut message = format!("{what} ({}", err.code);
    if let Some(d) = &err.description {
        message.push_str(": ");
        message.push_str(d);
    }
    message.push(')');
    token_error(ErrorKind::Auth, message)
}

pub(crate) fn parse_token(object: &serde_json::Map<String, Value>) -> Result<TokenResponse> {
    let access_token = object
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            token_error(
                ErrorKind::Protocol,
                "the token endpoint's answer has no access_token",
            )
        })?;
    // RFC 6750 §1: XOAUTH2 carries a bearer token; a control character would break the
    // AUTH line.
    if access_token.chars().any(char::is_control) {
        return Err(token_error(
            ErrorKind::Protocol,
            "the token endpoint's access_token contains a control character",
        ));
    }
    if let Some(kind) = object.get("token_type").and_then(Value::as_str) {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(token_error(
                ErrorKind::Protocol,
                format!("the token endpoint issued a {kind:?} token; XOAUTH2 needs a Bearer token"),
            ));
        }
    }
    // Some endpoints send the number as a string.
    let expires_in = match object.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .map(Duration::from_secs);
    let refresh_token = object
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    Ok(TokenResponse {
        access_token: Secret::new(access_token),
        expires_in,
        refresh_token,
        scope: object
            .get("scope")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> serde_json::Map<String, Value> {
        match serde_json::from_str(json) {
            Ok(Value::Object(map)) => map,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn a_token_response_is_read_with_string_or_number_lifetimes() {
        let t = parse_token(&object(
            r#"{"access_token":"at","token_type":"Bearer","expires_in":"3599","refresh_token":"rt2"}"#,
        ))
        .expect("token");
        assert_eq!(t.expires_in, Some(Duration::from_secs(3599)));
        assert_eq!(t.refresh_token.as_ref().map(Secret::expose), Some("rt2"));
        let t = parse_token(&object(r#"{"access_token":"at","expires_in":2}"#)).expect("token");
        assert_eq!(t.expires_in, Some(Duration::from_secs(2)));
        assert!(t.refresh_token.is_none());
        assert!(!format!("{t:?}").contains("at\""));
    }

    #[test]
    fn answers_that_are_not_tokens_are_protocol_errors() {
        for bad in [
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":"a\nb"}"#,
            r#"{"access_token":"at","token_type":"mac"}"#,
        ] {
            let e = parse_token(&object(bad)).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::Protocol, "{bad}");
            assert_eq!(e.stage(), Stage::Token);
        }
    }

    #[test]
    fn an_invalid_grant_is_an_authentication_error_naming_the_code() {
        let e = refused(&OAuthError {
            code: "invalid_grant".into(),
            description: Some("AADSTS70000: token revoked".into()),
        });
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.is_permanent());
        assert!(e.to_string().contains("invalid_grant"), "{e}");
    }
}
