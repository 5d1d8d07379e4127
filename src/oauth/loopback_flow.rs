//! The authorization code grant for a native app (RFC 8252): the user signs in with a browser
//! on this machine, which the identity provider sends back to a listener on the loopback
//! interface (§7.3), and PKCE (RFC 7636) binds the code to this process. Google's installed
//! apps use it; `smtpkit auth login` does for `provider: google`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SecureRandom as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::device_flow::require_refresh_token;
use super::login::login_refused;
use super::settings::IdentityProvider;
use super::token_endpoint::{parse_token, Answer, TokenEndpoint, TokenResponse};
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::proto::Secret;

/// How long [`LoopbackFlow::wait`] waits for the browser when the caller has no preference.
pub const DEFAULT_BROWSER_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The browser sign-in with a loopback redirect and PKCE.
///
/// [`LoopbackFlow::start`] listens on `127.0.0.1` on a port the system picks and builds the
/// authorization URL; the user opens it; [`LoopbackFlow::wait`] serves the one redirect
/// back (checking `state`) and exchanges the code for tokens.
///
/// ```no_run
/// use smtpkit::oauth::{LoopbackFlow, OAuth2Input, OAuth2Settings, TokenEndpoint};
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let settings = OAuth2Settings::resolve(OAuth2Input {
///     provider: "google".into(),
///     client_id: "1234.apps.googleusercontent.com".into(),
///     client_secret: Some(std::env::var("GOOGLE_CLIENT_SECRET")?.into()),
///     ..OAuth2Input::default()
/// })
/// .map_err(|e| e.message)?;
/// let endpoint = TokenEndpoint::new(settings, None, Duration::from_secs(30))?;
/// let flow = LoopbackFlow::start(endpoint).await?;
/// eprintln!("Open this URL in your browser: {}", flow.authorization_url());
/// let token = flow.wait(smtpkit::oauth::DEFAULT_BROWSER_TIMEOUT).await?;
/// # let _ = token;
/// # Ok(()) }
/// ```
pub struct LoopbackFlow {
    endpoint: TokenEndpoint,
    listener: TcpListener,
    redirect_uri: String,
    authorization_url: String,
    state: Secret,
    verifier: Secret,
}

impl std::fmt::Debug for LoopbackFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackFlow")
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// What came back to the redirect URI with the right `state`.
enum Callback {
    Code(Secret),
    /// RFC 6749 §4.1.2.1: `error` (and `error_description`) instead of a code.
    Refused(String, Option<String>),
}

impl LoopbackFlow {
    /// Listens on `127.0.0.1:0` and prepares the authorization request: a fresh PKCE code
    /// verifier and `state`, the authorization URL with the S256 challenge.
    ///
    /// Cancel safety: dropping the future closes the listener if it was opened; nothing was
    /// sent to the identity provider yet.
    pub async fn start(endpoint: TokenEndpoint) -> Result<LoopbackFlow> {
        let settings = endpoint.settings();
        let Some(authorize) = settings.authorization_url.clone() else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                Stage::Token,
                "no `authorization_url` for the browser flow: set it in the `oauth2` block",
            ));
        };
        // RFC 8252 §7.3, §8.3: the loopback IP literal rather than `localhost` (which may
        // resolve elsewhere; Google requires the IP form), any port.
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| {
            Error::new(
                ErrorKind::Io,
                Stage::Token,
                format!("cannot listen on 127.0.0.1 for the browser's redirect: {e}"),
            )
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::new(ErrorKind::Io, Stage::Token, e.to_string()))?
            .port();
        let redirect_uri = format!("http://127.0.0.1:{port}/");
        // RFC 7636 §4.1: 32 random octets, base64url: 43 characters of the unreserved set.
        let verifier = Secret::new(random_urlsafe(32)?);
        let state = Secret::new(random_urlsafe(16)?);
        let challenge = code_challenge(&verifier);
        let mut url = reqwest::Url::parse(&authorize).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                Stage::Token,
                format!("`authorization_url` {authorize:?} is not a URL: {e}"),
            )
        })?;
        {
            // RFC 6749 §4.1.1 with RFC 7636 §4.3.
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &settings.client_id)
                .append_pair("redirect_uri", &redirect_uri);
            if let Some(scope) = &settings.scope {
                query.append_pair("scope", scope);
            }
            query
                .append_pair("state", state.expose())
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if settings.provider == IdentityProvider::Google {
                // Google issues a refresh token only for offline access, and again only when
                // the consent screen is shown.
                query
                    .append_pair("access_type", "offline")
                    .append_pair("prompt", "consent");
            }
        }
        Ok(LoopbackFlow {
            endpoint,
            listener,
            redirect_uri,
            authorization_url: url.into(),
            state,
            verifier,
        })
    }

    /// The URL the user opens in a browser.
    pub fn authorization_url(&self) -> &str {
        &self.authorization_url
    }

    /// `http://127.0.0.1:PORT/`: where the browser comes back.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Serves the redirect until the browser comes back with this flow's `state` (requests
    /// with another or no `state` get a 400 page and the wait goes on: they cannot end a
    /// sign-in they did not start), then exchanges the code (RFC 6749 §4.1.3, with the
    /// RFC 7636 `code_verifier`). `error=access_denied` ends the wait as an authentication
    /// error; so does a token without refresh token. After `timeout` without an answer:
    /// a timeout error.
    ///
    /// Cancel safety: dropping the future closes the listener; no code was exchanged.
    pub async fn wait(self, timeout: Duration) -> Result<TokenResponse> {
        let LoopbackFlow {
            endpoint,
            listener,
            redirect_uri,
            state,
            verifier,
            ..
        } = self;
        let (sender, mut received) = mpsc::channel(1);
        let handler = Arc::new(Handler {
            state,
            sender,
            done: AtomicBool::new(false),
        });
        let mut connections = JoinSet::new();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let callback = loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        // Out of file descriptors, say: not a reason to give up, nor to spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let handler = handler.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let handler = handler.clone();
                            async move { Ok::<_, Infallible>(handler.answer(&request)) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Some(callback) = received.recv() => break callback,
                () = &mut deadline => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        Stage::Token,
                        format!(
                            "the browser did not come back to {redirect_uri} within {}: \
                             run `smtpkit auth login` again",
                            minutes(timeout)
                        ),
                    ));
                }
            }
        };
        drop(listener);
        let result = match callback {
            Callback::Code(code) => exchange(&endpoint, &code, &redirect_uri, &verifier).await,
            Callback::Refused(code, description) => Err(browser_refusal(&code, description)),
        };
        // The page went out with `Connection: close`; give the browser a moment to read it.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        result
    }
}

/// RFC 6749 §4.1.3 with RFC 7636 §4.5: the code, the same redirect URI, the verifier.
async fn exchange(
    endpoint: &TokenEndpoint,
    code: &Secret,
    redirect_uri: &str,
    verifier: &Secret,
) -> Result<TokenResponse> {
    let form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.expose().to_owned()),
        ("redirect_uri", redirect_uri.to_owned()),
        ("code_verifier", verifier.expose().to_owned()),
    ];
    let url = &endpoint.settings().token_url;
    let token = match endpoint.post(url, form).await? {
        Answer::Ok(object) => parse_token(&object)?,
        Answer::Refused(err) => return Err(login_refused(&err)),
    };
    require_refresh_token(token)
}

/// RFC 6749 §4.1.2.1: the browser came back with an error instead of a code.
fn browser_refusal(code: &str, description: Option<String>) -> Error {
    let what = if code == "access_denied" {
        "the sign-in was declined in the browser"
    } else {
        "the identity provider refused the sign-in"
    };
    let message = match description {
        Some(d) => format!("{what} ({code}: {d})"),
        None => format!("{what} ({code})"),
    };
    Error::new(ErrorKind::Auth, Stage::Token, message)
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// Random octets from the system's generator, base64url without padding (only characters
/// of RFC 3986's unreserved set).
fn random_urlsafe(octets: usize) -> Result<String> {
    let mut buf = vec![0u8; octets];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| {
            Error::new(
                ErrorKind::Io,
                Stage::Token,
                "the system's random number generator failed",
            )
        })?;
    Ok(URL_SAFE_NO_PAD.encode(&buf))
}

/// RFC 7636 §4.2: S256, `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`.
fn code_challenge(verifier: &Secret) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.expose().as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Answers the requests to the loopback listener.
struct Handler {
    state: Secret,
    sender: mpsc::Sender<Callback>,
    /// Set once a callback with the right `state` was taken: later ones are not.
    done: AtomicBool,
}

impl Handler {
    fn answer(&self, request: &hyper::Request<hyper::body::Incoming>) -> hyper::Response<String> {
        if request.method() != hyper::Method::GET {
            return page(hyper::StatusCode::METHOD_NOT_ALLOWED, "Not allowed", "");
        }
        if request.uri().path() != "/" {
            return page(hyper::StatusCode::NOT_FOUND, "Not found", "");
        }
        let params: Vec<(String, String)> =
            request.uri().query().map(url_query).unwrap_or_default();
        let get = |key: &str| {
            let mut values = params.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
            match (values.next(), values.next()) {
                (Some(v), None) => Some(v.as_str()),
                _ => None,
            }
        };
        // RFC 6749 §10.12: the `state` sent out must come back, else the answer belongs to
        // someone else's request (cross-site request forgery).
        if get("state") != Some(self.state.expose()) {
            return page(
                hyper::StatusCode::BAD_REQUEST,
                "Sign-in not accepted",
                "This answer does not belong to the sign-in smtpkit is waiting for (the \
                 <code>state</code> does not match). Open the URL that <code>smtpkit auth \
                 login</code> printed.",
            );
        }
        let callback = if let Some(error) = get("error") {
            Callback::Refused(printable(error), get("error_description").map(printable))
        } else if let Some(code) = get("code").filter(|c| !c.is_empty()) {
            Callback::Code(Secret::new(code))
        } else {
            return page(
                hyper::StatusCode::BAD_REQUEST,
                "Sign-in not completed",
                "The answer carries neither a code nor an error.",
            );
        };
        if self.done.swap(true, Ordering::SeqCst) {
            return page(
                hyper::StatusCode::CONFLICT,
                "Already answered",
                "smtpkit has already received the answer to this sign-in. You can close this window.",
            );
        }
        let refused = matches!(callback, Callback::Refused(..));
        let _ = self.sender.try_send(callback);
        if refused {
            page(
                hyper::StatusCode::OK,
                "Sign-in not completed",
                "The sign-in was not completed; smtpkit stops waiting. You can close this window.",
            )
        } else {
            page(
                hyper::StatusCode::OK,
                "Signed in",
                "smtpkit received the authorization. You can close this window and return to the terminal.",
            )
        }
    }
}

/// The decoded pairs of a query string.
fn url_query(query: &str) -> Vec<(String, String)> {
    let mut url = match reqwest::Url::parse("http://127.0.0.1/") {
        Ok(url) => url,
        Err(_) => return Vec::new(),
    };
    url.set_query(Some(query));
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Text from the browser, shown to the user: no control characters, bounded.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

/// A small HTML page; `body` is fixed text (never anything from the request).
fn page(status: hyper::StatusCode, title: &str, body: &str) -> hyper::Response<String> {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>smtpkit: {title}</title></head>\n\
         <body><h1>{title}</h1><p>{body}</p></body></html>\n"
    );
    let mut response = hyper::Response::new(html);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in [
        (hyper::header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (hyper::header::CACHE_CONTROL, "no-store"),
        (hyper::header::CONNECTION, "close"),
    ] {
        headers.insert(name, hyper::header::HeaderValue::from_static(value));
    }
    // The page's URL carries the code: it must not travel in a Referer.
    headers.insert(
        hyper::header::HeaderName::from_static("referrer-policy"),
        hyper::header::HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_and_challenge_follow_rfc_7636() {
        let verifier = random_urlsafe(32).expect("random");
        assert_eq!(verifier.len(), 43);
        assert!(verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)));
        assert_ne!(verifier, random_urlsafe(32).expect("random"));
        // RFC 7636 Appendix B.
        assert_eq!(
            code_challenge(&Secret::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
