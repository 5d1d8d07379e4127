//! The device authorization grant (RFC 8628): the user signs in on another device (a phone, a
//! browser elsewhere) with a short code while smtpkit polls the token endpoint. Microsoft's
//! endpoints offer it; `smtpkit auth login` uses it for `provider: microsoft`.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::login::login_refused;
use super::token_endpoint::{
    parse_token, refused, Answer, OAuthError, TokenEndpoint, TokenResponse,
};
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::proto::Secret;

/// RFC 8628 §3.4: the token request's grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as the default" interval.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 §3.5: `slow_down` adds 5 seconds to the interval, for this and every later poll.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The longest interval a connection timeout's back-off grows to.
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// How long a device code is assumed to live when the answer does not say (`expires_in` is
/// REQUIRED by RFC 8628 §3.2; some endpoints still leave it out).
const ASSUMED_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// A device authorization response (RFC 8628 §3.2): what to show the user, and the device
/// code to poll with.
///
/// `Debug` does not show the device code, which only smtpkit needs and nobody should see.
#[derive(Clone)]
pub struct DeviceAuthorization {
    device_code: Secret,
    /// `user_code`: what the user types at the verification URI.
    pub user_code: String,
    /// `verification_uri` (Google spells it `verification_url`): where the user signs in.
    pub verification_uri: String,
    /// `verification_uri_complete`: the same page with the code filled in, when offered.
    pub verification_uri_complete: Option<String>,
    /// `expires_in`: how long the codes are valid.
    pub expires_in: Duration,
    /// `interval`: the wait between two polls (5 s when the answer does not say).
    pub interval: Duration,
    /// `message`: Microsoft's ready-made instruction for the user, when given.
    pub message: Option<String>,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("verification_uri_complete", &self.verification_uri_complete)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl DeviceAuthorization {
    /// The instruction to show: the endpoint's `message` when it gave one, else one made of
    /// the verification URI and the user code.
    pub fn instructions(&self) -> String {
        match &self.message {
            Some(m) if !m.trim().is_empty() => m.clone(),
            _ => format!(
                "To sign in, open {} in a web browser and enter the code {}.",
                self.verification_uri, self.user_code
            ),
        }
    }
}

/// The device authorization grant against one provider's endpoints.
///
/// ```no_run
/// use std::time::Duration;
/// use smtpkit::oauth::{DeviceFlow, OAuth2Input, OAuth2Settings, TokenEndpoint};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let settings = OAuth2Settings::resolve(OAuth2Input {
///     provider: "microsoft".into(),
///     client_id: "00000000-0000-0000-0000-000000000000".into(),
///     ..OAuth2Input::default()
/// })
/// .map_err(|e| e.message)?;
/// let endpoint = TokenEndpoint::new(settings, None, Duration::from_secs(30))?;
/// let flow = DeviceFlow::new(endpoint)?;
/// let authorization = flow.start().await?;
/// eprintln!("{}", authorization.instructions());
/// let token = flow.wait(&authorization).await?;
/// // token.refresh_token is set: store it (smtpkit::oauth::TokenCache) or hand it over.
/// # let _ = token;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DeviceFlow {
    endpoint: TokenEndpoint,
    url: String,
}

impl DeviceFlow {
    /// The flow for `endpoint`'s settings; a configuration without a
    /// `device_authorization_url` (nor a preset with one) is an error.
    pub fn new(endpoint: TokenEndpoint) -> Result<DeviceFlow> {
        let Some(url) = endpoint.settings().device_authorization_url.clone() else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                Stage::Token,
                "no `device_authorization_url` for the device flow: set it in the `oauth2` block",
            ));
        };
        Ok(DeviceFlow { endpoint, url })
    }

    /// RFC 8628 §3.1: asks for a device code and a user code (with the configured scope).
    ///
    /// Cancel safety: dropping the future abandons the request; an unused device code simply
    /// expires at the identity provider.
    pub async fn start(&self) -> Result<DeviceAuthorization> {
        let mut form = Vec::new();
        if let Some(scope) = &self.endpoint.settings().scope {
            form.push(("scope", scope.clone()));
        }
        match self.endpoint.post(&self.url, form).await? {
            Answer::Ok(object) => parse_authorization(&object),
            Answer::Refused(err) => Err(refused(&err)),
        }
    }

    /// RFC 8628 §3.4, §3.5: polls the token endpoint every `interval` until the user has
    /// signed in (the token, which must carry a refresh token), refused, or the codes
    /// expired.
    ///
    /// Cancel safety: dropping the future stops polling; nothing has been issued until it
    /// returns.
    pub async fn wait(&self, authorization: &DeviceAuthorization) -> Result<TokenResponse> {
        let token =
            poll_until_done(authorization, |_| self.poll(&authorization.device_code)).await?;
        require_refresh_token(token)
    }

    async fn poll(&self, device_code: &Secret) -> Result<Poll> {
        let form = vec![
            ("grant_type", DEVICE_CODE_GRANT.to_owned()),
            ("device_code", device_code.expose().to_owned()),
        ];
        let url = &self.endpoint.settings().token_url;
        match self.endpoint.post(url, form).await? {
            Answer::Ok(object) => parse_token(&object).map(|t| Poll::Token(Box::new(t))),
            Answer::Refused(err) => classify(&err),
        }
    }
}

/// What one poll of the token endpoint said.
pub(crate) enum Poll {
    /// Signed in.
    Token(Box<TokenResponse>),
    /// `authorization_pending`: the user has not finished yet.
    Pending,
    /// `slow_down`: pending, and polling too often.
    SlowDown,
}

/// RFC 8628 §3.5: the error codes of the device flow's token requests.
pub(crate) fn classify(err: &OAuthError) -> Result<Poll> {
    let detail = |what: &str| match &err.description {
        Some(d) => format!("{what} ({}: {d})", err.code),
        None => format!("{what} ({})", err.code),
    };
    match err.code.as_str() {
        "authorization_pending" => Ok(Poll::Pending),
        "slow_down" => Ok(Poll::SlowDown),
        "access_denied" => Err(Error::new(
            ErrorKind::Auth,
            Stage::Token,
            detail("the sign-in was declined"),
        )),
        "expired_token" => Err(expired(Some(&detail("the device code expired")))),
        _ => Err(login_refused(err)),
    }
}

fn expired(detail: Option<&str>) -> Error {
    let what = detail.unwrap_or("the device code expired before the sign-in was completed");
    Error::new(
        ErrorKind::Auth,
        Stage::Token,
        format!(
            "{what}: run `smtpkit auth login` again and finish signing in before the code expires"
        ),
    )
}

/// The polling loop, apart from HTTP: waits `interval` before each poll (tokio's clock, so
/// tests can pause it), grows the interval on `slow_down` and connection timeouts, stops at
/// the codes' expiry. `poll` gets the number of the poll (1, 2, …).
pub(crate) async fn poll_until_done<F, Fut>(
    authorization: &DeviceAuthorization,
    mut poll: F,
) -> Result<TokenResponse>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Poll>>,
{
    let deadline = Instant::now() + authorization.expires_in;
    let mut interval = authorization.interval;
    let mut number = 0;
    loop {
        // RFC 8628 §3.5: no poll after the codes expired; the answer could only be
        // `expired_token`.
        let next = Instant::now() + interval;
        if next >= deadline {
            return Err(expired(None));
        }
        tokio::time::sleep_until(next).await;
        number += 1;
        match poll(number).await {
            Ok(Poll::Token(token)) => return Ok(*token),
            Ok(Poll::Pending) => {}
            // RFC 8628 §3.5: "the interval MUST be increased by 5 seconds for this and all
            // subsequent requests".
            Ok(Poll::SlowDown) => interval += SLOW_DOWN_STEP,
            // RFC 8628 §3.5: on a connection timeout the client MUST poll less often;
            // doubling the interval is RECOMMENDED.
            Err(e) if e.kind() == ErrorKind::Timeout => {
                interval = (interval * 2).min(MAX_INTERVAL.max(interval));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A login that gives no refresh token is useless to an unattended sender.
pub(crate) fn require_refresh_token(token: TokenResponse) -> Result<TokenResponse> {
    if token.refresh_token.is_some() {
        return Ok(token);
    }
    Err(Error::new(
        ErrorKind::Auth,
        Stage::Token,
        "the sign-in succeeded but the identity provider issued no refresh token: for Microsoft \
         the `scope` must include `offline_access` (the preset's does); for Google the consent \
         must be asked again (smtpkit's browser flow asks for offline access)",
    ))
}

fn text<'a>(object: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    object
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Seconds as a number or a string ("900"), as endpoints send them.
fn seconds(object: &serde_json::Map<String, Value>, key: &str) -> Option<Duration> {
    match object.get(key) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .map(Duration::from_secs)
}

/// Shown to the user: no control characters (a hostile endpoint could move the cursor).
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect()
}

/// RFC 8628 §3.2: the device authorization response.
pub(crate) fn parse_authorization(
    object: &serde_json::Map<String, Value>,
) -> Result<DeviceAuthorization> {
    let missing = |key: &str| {
        Error::new(
            ErrorKind::Protocol,
            Stage::Token,
            format!("the device authorization endpoint's answer has no {key}"),
        )
    };
    let device_code = text(object, "device_code").ok_or_else(|| missing("device_code"))?;
    let user_code = text(object, "user_code").ok_or_else(|| missing("user_code"))?;
    // Google's device endpoint says `verification_url`.
    let verification_uri = text(object, "verification_uri")
        .or_else(|| text(object, "verification_url"))
        .ok_or_else(|| missing("verification_uri"))?;
    let interval = match seconds(object, "interval") {
        Some(i) if !i.is_zero() => i,
        // Absent (or a zero that would poll without pause): RFC 8628 §3.2's default.
        _ => DEFAULT_INTERVAL,
    };
    Ok(DeviceAuthorization {
        device_code: Secret::new(device_code),
        user_code: shown(user_code),
        verification_uri: shown(verification_uri),
        verification_uri_complete: text(object, "verification_uri_complete")
            .or_else(|| text(object, "verification_url_complete"))
            .map(shown),
        expires_in: seconds(object, "expires_in").unwrap_or(ASSUMED_LIFETIME),
        interval,
        message: text(object, "message").map(shown),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    fn object(json: &str) -> serde_json::Map<String, Value> {
        match serde_json::from_str(json) {
            Ok(Value::Object(map)) => map,
            other => panic!("not an object: {other:?}"),
        }
    }

    fn authorization(interval: u64, expires_in: u64) -> DeviceAuthorization {
        DeviceAuthorization {
            device_code: Secret::new("dc-test"),
            user_code: "BCDF-GHJK".into(),
            verification_uri: "https://example.com/device".into(),
            verification_uri_complete: None,
            expires_in: Duration::from_secs(expires_in),
            interval: Duration::from_secs(interval),
            message: None,
        }
    }

    fn token() -> TokenResponse {
        TokenResponse {
            access_token: Secret::new("at-1"),
            expires_in: Some(Duration::from_secs(3600)),
            refresh_token: Some(Secret::new("rt-1")),
            scope: None,
        }
    }

    fn oauth(code: &str) -> OAuthError {
        OAuthError {
            code: code.into(),
            description: Some("said the server".into()),
        }
    }

    /// Runs the loop against scripted answers; returns the result and the instants (seconds
    /// since the start, on the paused clock) of each poll.
    async fn scripted(
        auth: &DeviceAuthorization,
        answers: Vec<Result<Poll>>,
    ) -> (Result<TokenResponse>, Vec<u64>) {
        let start = Instant::now();
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        let times = Arc::new(Mutex::new(Vec::new()));
        let result = poll_until_done(auth, |_| {
            let answers = answers.clone();
            let times = times.clone();
            async move {
                times.lock().expect("lock").push(start.elapsed().as_secs());
                answers
                    .lock()
                    .expect("lock")
                    .pop_front()
                    .unwrap_or(Ok(Poll::Pending))
            }
        })
        .await;
        let times = times.lock().expect("lock").clone();
        (result, times)
    }

    #[test]
    fn a_microsoft_answer_is_read_and_the_device_code_stays_hidden() {
        let a = parse_authorization(&object(
            r#"{"device_code":"dc-secret","user_code":"BCDF-GHJK","verification_uri":"https://microsoft.com/devicelogin","expires_in":900,"interval":5,"message":"To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code BCDF-GHJK to authenticate."}"#,
        ))
        .expect("parsed");
        assert_eq!(a.user_code, "BCDF-GHJK");
        assert_eq!(a.expires_in, Duration::from_secs(900));
        assert_eq!(a.interval, Duration::from_secs(5));
        assert!(a.instructions().contains("microsoft.com/devicelogin"));
        assert_eq!(a.device_code.expose(), "dc-secret");
        assert!(!format!("{a:?}").contains("dc-secret"));
    }

    #[test]
    fn google_spelling_and_a_missing_interval_use_the_rfc_default() {
        let a = parse_authorization(&object(
            r#"{"device_code":"dc","user_code":"ABC-DEF","verification_url":"https://www.google.com/device","expires_in":"1800"}"#,
        ))
        .expect("parsed");
        assert_eq!(a.verification_uri, "https://www.google.com/device");
        assert_eq!(a.interval, Duration::from_secs(5));
        assert_eq!(a.expires_in, Duration::from_secs(1800));
        assert_eq!(
            a.instructions(),
            "To sign in, open https://www.google.com/device in a web browser and enter the code ABC-DEF."
        );
        let e = parse_authorization(&object(r#"{"device_code":"dc","user_code":"X"}"#))
            .expect_err("no uri");
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(e.to_string().contains("verification_uri"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn pending_polls_wait_the_interval_and_slow_down_adds_five_seconds() {
        let auth = authorization(1, 120);
        let (result, times) = scripted(
            &auth,
            vec![
                Ok(Poll::Pending),
                Ok(Poll::SlowDown),
                Ok(Poll::Pending),
                Ok(Poll::SlowDown),
                Ok(Poll::Pending),
                Ok(Poll::Token(Box::new(token()))),
            ],
        )
        .await;
        let token = result.expect("signed in");
        assert_eq!(
            token.refresh_token.as_ref().map(Secret::expose),
            Some("rt-1")
        );
        // 1 s, 1 s; 6 s after the first slow_down (at 2 s), 11 s after the second (at 14 s).
        assert_eq!(times, vec![1, 2, 8, 14, 25, 36]);
    }

    #[tokio::test(start_paused = true)]
    async fn polling_stops_when_the_codes_expire() {
        let auth = authorization(5, 12);
        let (result, times) = scripted(&auth, vec![]).await;
        let e = result.expect_err("expired");
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert_eq!(e.stage(), Stage::Token);
        assert!(e.to_string().contains("expired"), "{e}");
        // Polls at 5 and 10; the one at 15 would be after the expiry at 12.
        assert_eq!(times, vec![5, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_timeout_doubles_the_interval() {
        let auth = authorization(2, 600);
        let timeout = Error::new(ErrorKind::Timeout, Stage::Token, "no answer");
        let (result, times) = scripted(
            &auth,
            vec![Err(timeout), Ok(Poll::Token(Box::new(token())))],
        )
        .await;
        assert!(result.is_ok());
        assert_eq!(times, vec![2, 6]);
    }

    #[tokio::test(start_paused = true)]
    async fn denied_expired_and_other_refusals_end_the_wait_as_auth_errors() {
        for (code, words) in [
            ("access_denied", "declined"),
            ("expired_token", "expired"),
            ("invalid_grant", "invalid_grant"),
        ] {
            let auth = authorization(1, 60);
            let (result, times) = scripted(&auth, vec![classify(&oauth(code))]).await;
            let e = result.expect_err(code);
            assert_eq!(e.kind(), ErrorKind::Auth, "{code}");
            assert!(e.to_string().contains(words), "{code}: {e}");
            assert_eq!(times, vec![1], "{code}: no poll after the refusal");
        }
        assert!(matches!(
            classify(&oauth("authorization_pending")),
            Ok(Poll::Pending)
        ));
        assert!(matches!(classify(&oauth("slow_down")), Ok(Poll::SlowDown)));
    }

    #[test]
    fn a_token_without_refresh_token_names_offline_access() {
        let mut t = token();
        t.refresh_token = None;
        let e = require_refresh_token(t).expect_err("no refresh token");
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.to_string().contains("offline_access"), "{e}");
    }
}
