//! `smtpkit auth login` against a local identity server (tests/support/oauth_world.py): the
//! device flow (RFC 8628) approved, denied and expired; the browser flow with a loopback
//! redirect and PKCE (RFC 8252, RFC 7636), with this test as the browser; `--print`; an
//! unreachable endpoint; Ctrl-C; and the sender's token source finding what login stored.
//!
//! Every wait is bounded by a generous timeout; nothing asserts on how long a step took.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use smtpkit::oauth::TokenSource;
use smtpkit::provider::Config;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const USER: &str = "agent@example.com";
const CLIENT: &str = "test-client";
/// Long enough for a slow machine; the flows finish in a few seconds.
const WAIT: Duration = Duration::from_secs(60);

/// The identity server, killed when dropped.
struct World {
    _child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start(extra: &[&str]) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("oauth_world.log")).expect("log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oauth_world.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--host", "127.0.0.1", "--state-dir"])
            .arg(dir.path().join("state"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start oauth_world.py (Debian's python3 with aiosmtpd)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("oauth_world READY in time")
            .expect("read")
            .expect("a READY line");
        let ready: Value =
            serde_json::from_str(line.strip_prefix("READY ").expect("READY")).expect("json");
        let port = ready["http"].as_u64().expect("http port") as u16;
        World {
            _child: child,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn stats(&self) -> Value {
        let (status, _, body) = http("GET", &self.url("/stats"), None).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("stats json")
    }

    async fn post(&self, path: &str, body: &str) -> Value {
        let (status, _, answer) = http("POST", &self.url(path), Some(body)).await;
        assert_eq!(status, 200, "{path}: {answer}");
        serde_json::from_str(&answer).expect("json")
    }
}

/// One HTTP/1.1 request (no redirects followed): status, headers (lower-case names), body.
async fn http(method: &str, url: &str, body: Option<&str>) -> (u16, Vec<(String, String)>, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .expect("connect");
        let body = body.unwrap_or_default();
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        String::from_utf8(answer).expect("utf-8 answer")
    };
    let answer = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("HTTP answer in time");
    let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The value of `key` in a URL's query (the test's values need no decoding).
fn query_value(url: &str, key: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}

struct Endpoints {
    device: bool,
    browser: bool,
}

const BOTH: Endpoints = Endpoints {
    device: true,
    browser: true,
};

/// A config file for a custom provider at `token_port` (the world's, or a closed port).
fn write_config(dir: &Path, token_port: u16, endpoints: Endpoints) -> PathBuf {
    let base = format!("http://127.0.0.1:{token_port}");
    let mut oauth2 = format!(
        "        provider: custom\n        client_id: {CLIENT}\n        token_url: {base}/token\n        scope: https://mail.google.com/\n"
    );
    if endpoints.device {
        oauth2.push_str(&format!(
            "        device_authorization_url: {base}/devicecode\n"
        ));
    }
    if endpoints.browser {
        oauth2.push_str(&format!("        authorization_url: {base}/authorize\n"));
    }
    let yaml = format!(
        "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: 2525\n      user: {USER}\n      from: {USER}\n      timeouts: {{command: 20s}}\n      oauth2:\n{oauth2}"
    );
    let path = dir.join("smtpkit.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// A running `smtpkit` whose stderr is read line by line as it comes.
struct Cli {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Cli {
    fn start(args: &[&str]) -> Cli {
        let mut child = Command::new(env!("CARGO_BIN_EXE_smtpkit"))
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start smtpkit");
        let stderr = child.stderr.take().expect("stderr");
        let (send, lines) = mpsc::unbounded_channel();
        let kept = Arc::new(Mutex::new(Vec::new()));
        let keep = kept.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                keep.lock().expect("lock").push(line.clone());
                let _ = send.send(line);
            }
        });
        Cli {
            child,
            lines,
            stderr: kept,
        }
    }

    /// The first stderr line from now on for which `f` gives a value.
    async fn wait_line<T>(&mut self, what: &str, f: impl Fn(&str) -> Option<T>) -> T {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                if let Some(v) = f(&line) {
                    return Some(v);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(v)) => v,
            _ => panic!(
                "no stderr line with {what}; stderr so far:\n{}",
                self.stderr.lock().expect("lock").join("\n")
            ),
        }
    }

    /// Exit code, stdout and stderr once the process ends.
    async fn finish(mut self) -> (i32, String, String) {
        let mut stdout = self.child.stdout.take().expect("stdout");
        let mut out = String::new();
        let status = tokio::time::timeout(WAIT, async {
            stdout.read_to_string(&mut out).await.expect("stdout");
            self.child.wait().await.expect("wait")
        })
        .await
        .expect("smtpkit ends in time");
        // Let the stderr reader take the last lines.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while self.lines.recv().await.is_some() {}
        })
        .await;
        let err = self.stderr.lock().expect("lock").join("\n");
        (status.code().unwrap_or(-1), out, err)
    }

    /// The user code from the device flow's instructions.
    async fn user_code(&mut self) -> String {
        self.wait_line("the user code", |l| {
            l.split("enter the code ")
                .nth(1)
                .map(|rest| rest.trim_end_matches('.').trim().to_owned())
        })
        .await
    }

    /// The authorization URL of the browser flow.
    async fn authorization_url(&mut self) -> String {
        self.wait_line("the authorization URL", |l| {
            let l = l.trim();
            (l.starts_with("http://") && l.contains("/authorize?")).then(|| l.to_owned())
        })
        .await
    }
}

/// Token-shaped values with the identity server's prefixes (refresh, access, device and
/// authorization codes) that start a run of token characters.
fn leaked_secrets(text: &str) -> Vec<String> {
    let token_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut found = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    for i in 0..chars.len() {
        if i > 0 && token_char(chars[i - 1]) {
            continue;
        }
        let run: String = chars[i..].iter().take_while(|c| token_char(**c)).collect();
        if ["rt-", "at-", "dc-", "ac-"]
            .iter()
            .any(|p| run.starts_with(p))
            && run.len() >= 13
        {
            found.push(run);
        }
    }
    found
}

fn assert_no_secrets(out: &str, err: &str) {
    for (name, text) in [("stdout", out), ("stderr", err)] {
        let leaked = leaked_secrets(text);
        assert!(
            leaked.is_empty(),
            "{name} shows secrets {leaked:?}:\n{text}"
        );
    }
}

/// The refresh token that the cache file holds for the test account.
fn cached_refresh_token(cache: &Path, world: &World) -> String {
    let text = std::fs::read_to_string(cache).expect("token cache written");
    let json: Value = serde_json::from_str(&text).expect("cache json");
    let key = format!("{} {CLIENT} {USER}", world.url("/token"));
    json["tokens"][&key]["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no entry {key:?} in {text}"))
        .to_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
}

fn current_refresh_tokens(stats: &Value) -> Vec<String> {
    stats["current_refresh_tokens"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn device_flow_polls_while_pending_then_stores_the_refresh_token() {
    let world = World::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), world.port, BOTH);
    let mut cli = Cli::start(&["auth", "login", "--config", config.to_str().expect("utf-8")]);
    let code = cli.user_code().await;
    // Approve only once the CLI has been told `authorization_pending` at least twice.
    tokio::time::timeout(WAIT, async {
        while world.stats().await["device_polls"].as_u64().unwrap_or(0) < 2 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the CLI polls");
    let approved = world
        .post("/device/approve", &format!("{{\"user_code\": \"{code}\"}}"))
        .await;
    assert_eq!(approved["approved"], 1);
    let (status, out, err) = cli.finish().await;
    assert_eq!(status, 0, "stdout:\n{out}\nstderr:\n{err}");

    let cache = dir.path().join("smtpkit-tokens.json");
    assert!(
        out.contains("stored in") && out.contains("smtpkit-tokens.json"),
        "{out}"
    );
    assert!(err.contains(&code) && err.contains("/device"), "{err}");
    #[cfg(unix)]
    assert_eq!(mode(&cache), 0o600);
    let stats = world.stats().await;
    let stored = cached_refresh_token(&cache, &world);
    assert!(
        current_refresh_tokens(&stats).contains(&stored),
        "the stored token is one the server accepts: {stats}"
    );
    assert!(stats["device_polls"].as_u64().unwrap_or(0) >= 3, "{stats}");
    // The CLI waits the interval the server gave: never polled too early.
    assert_eq!(stats["slow_downs"], 0, "{stats}");
    assert_no_secrets(&out, &err);
    assert!(!out.contains(&stored) && !err.contains(&stored));
}

#[tokio::test(flavor = "multi_thread")]
async fn device_flow_denied_exits_77_and_stores_nothing() {
    let world = World::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), world.port, BOTH);
    let mut cli = Cli::start(&["auth", "login", "--config", config.to_str().expect("utf-8")]);
    let code = cli.user_code().await;
    let denied = world
        .post("/device/deny", &format!("{{\"user_code\": \"{code}\"}}"))
        .await;
    assert_eq!(denied["denied"], 1);
    let (status, out, err) = cli.finish().await;
    assert_eq!(status, 77, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("declined") && err.contains("access_denied"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
    assert!(!dir.path().join("smtpkit-tokens.json").exists());
    assert_no_secrets(&out, &err);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_flow_expired_exits_77_with_a_clear_message() {
    let world = World::start(&["--device-expires-in", "2"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), world.port, BOTH);
    let cli = Cli::start(&[
        "auth",
        "login",
        "--config",
        config.to_str().expect("utf-8"),
        "--json",
    ]);
    let (status, out, err) = cli.finish().await;
    assert_eq!(status, 77, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("expired") && err.contains("auth login"),
        "{err}"
    );
    let json: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(json["ok"], false);
    assert_eq!(json["exit_code"], 77);
    assert_eq!(json["error"]["kind"], "auth");
    assert_eq!(json["error"]["stage"], "token");
    assert!(!dir.path().join("smtpkit-tokens.json").exists());
    assert_no_secrets(&out, &err);
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_flow_with_pkce_ignores_a_wrong_state_then_stores_the_refresh_token() {
    let world = World::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Only the authorization endpoint: the browser flow is chosen without --flow.
    let config = write_config(
        dir.path(),
        world.port,
        Endpoints {
            device: false,
            browser: true,
        },
    );
    let mut cli = Cli::start(&["auth", "login", "--config", config.to_str().expect("utf-8")]);
    let url = cli.authorization_url().await;
    assert_eq!(
        query_value(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query_value(&url, "redirect_uri").map(|r| r.starts_with("http%3A%2F%2F127.0.0.1%3A")),
        Some(true),
        "{url}"
    );
    let redirect = cli
        .wait_line("the redirect URI", |l| {
            l.split("come back to ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned)
        })
        .await;

    // A forged answer (wrong state) is refused, and the CLI keeps waiting.
    let (status, _, page) = http(
        "GET",
        &format!("{redirect}?code=ac-forgedcode0000&state=nope"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("state"), "{page}");

    // The browser: the authorization server approves at once and redirects back.
    let (status, headers, _) = http("GET", &url, None).await;
    assert_eq!(status, 302);
    let location = header(&headers, "location").expect("Location").to_owned();
    assert!(location.starts_with(&redirect), "{location} vs {redirect}");
    let auth_code = query_value(&location, "code").expect("code");
    let (status, headers, page) = http("GET", &location, None).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        header(&headers, "content-type").is_some_and(|c| c.starts_with("text/html")),
        "{headers:?}"
    );
    assert!(page.contains("You can close this window"), "{page}");

    let (status, out, err) = cli.finish().await;
    assert_eq!(status, 0, "stdout:\n{out}\nstderr:\n{err}");
    let cache = dir.path().join("smtpkit-tokens.json");
    #[cfg(unix)]
    assert_eq!(mode(&cache), 0o600);
    let stats = world.stats().await;
    let stored = cached_refresh_token(&cache, &world);
    assert!(current_refresh_tokens(&stats).contains(&stored), "{stats}");
    assert_eq!(stats["authorize_requests"], 1, "{stats}");
    assert_eq!(stats["by_grant"]["authorization_code"], 1, "{stats}");
    for secret in [&stored, &auth_code] {
        assert!(!out.contains(secret.as_str()) && !err.contains(secret.as_str()));
    }
    // The authorization URL (state, challenge) is the one line allowed random values.
    let other: String = err
        .lines()
        .filter(|l| !l.contains("/authorize?"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_no_secrets(&out, &other);
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_flow_declined_in_the_browser_exits_77() {
    let world = World::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), world.port, BOTH);
    let mut cli = Cli::start(&[
        "auth",
        "login",
        "--config",
        config.to_str().expect("utf-8"),
        "--flow",
        "browser",
    ]);
    let url = cli.authorization_url().await;
    let state = query_value(&url, "state").expect("state");
    let redirect = cli
        .wait_line("the redirect URI", |l| {
            l.split("come back to ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned)
        })
        .await;
    let (status, _, page) = http(
        "GET",
        &format!("{redirect}?error=access_denied&state={state}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let (status, out, err) = cli.finish().await;
    assert_eq!(status, 77, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("access_denied"), "{err}");
    assert!(!dir.path().join("smtpkit-tokens.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn print_writes_only_the_refresh_token_and_no_cache() {
    let world = World::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), world.port, BOTH);
    let mut cli = Cli::start(&[
        "auth",
        "login",
        "--config",
        config.to_str().expect("utf-8"),
        "--flow",
        "browser",
        "--print",
    ]);
    let url = cli.authorization_url().await;
    let (status, headers, _) = http("GET", &url, None).await;
    assert_eq!(status, 302);
    let location = header(&headers, "location").expect("Location").to_owned();
    let (status, _, _) = http("GET", &location, None).await;
    assert_eq!(status, 200);
    let (status, out, err) = cli.finish().await;
    assert_eq!(status, 0, "stdout:\n{out}\nstderr:\n{err}");
    let token = out.strip_suffix('\n').expect("one line");
    assert!(!token.contains('\n') && token.starts_with("rt-"), "{out:?}");
    assert!(
        current_refresh_tokens(&world.stats().await).contains(&token.to_owned()),
        "a valid refresh token"
    );
    assert!(!err.contains(token), "{err}");
    assert!(!dir.path().join("smtpkit-tokens.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_senders_token_source_uses_what_login_stored() {
    let world = World::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), world.port, BOTH);
    let mut cli = Cli::start(&[
        "auth",
        "login",
        "--config",
        config.to_str().expect("utf-8"),
        "--flow",
        "browser",
        "--json",
    ]);
    let url = cli.authorization_url().await;
    let (_, headers, _) = http("GET", &url, None).await;
    let location = header(&headers, "location").expect("Location").to_owned();
    http("GET", &location, None).await;
    let (status, out, err) = cli.finish().await;
    assert_eq!(status, 0, "stdout:\n{out}\nstderr:\n{err}");
    let json: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(json["ok"], true);
    assert_eq!(json["flow"], "browser");
    assert_eq!(json["user"], USER);
    assert!(json["token_cache"]
        .as_str()
        .is_some_and(|p| p.ends_with("smtpkit-tokens.json")));
    assert_no_secrets(&out, "");

    // The configuration has no refresh_token: the token source starts from the cache entry
    // that login wrote, under the same key.
    let loaded = Config::from_file(&config).expect("config");
    let provider = loaded.provider(None).expect("provider");
    let oauth2 = provider.smtp.oauth2.clone().expect("oauth2");
    assert!(oauth2.refresh_token.is_none());
    let source = TokenSource::new(oauth2, USER, None, Duration::from_secs(20)).expect("source");
    let access = source.access_token().await.expect("an access token");
    assert!(access.expose().starts_with("at-"));
    let stats = world.stats().await;
    assert_eq!(stats["by_grant"]["refresh_token"], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_identity_provider_exits_75() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), port, BOTH);
    let cli = Cli::start(&["auth", "login", "--config", config.to_str().expect("utf-8")]);
    let (status, out, err) = cli.finish().await;
    assert_eq!(status, 75, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("cannot reach"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_providers_need_no_login_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("smtpkit.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: smtp.office365.com\n      port: 587\n      user: {USER}\n      from: {USER}\n      oauth2:\n        provider: microsoft\n        tenant: contoso.onmicrosoft.com\n        client_id: {CLIENT}\n        client_secret: s3cret-value\n        grant: client_credentials\n"
        ),
    )
    .expect("write");
    let cli = Cli::start(&["auth", "login", "--config", config.to_str().expect("utf-8")]);
    let (status, out, err) = cli.finish().await;
    assert_eq!(status, 64, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("client_credentials"), "{err}");
    assert!(!err.contains("s3cret-value") && !out.contains("s3cret-value"));
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_problems_exit_78_naming_the_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A custom provider with neither login endpoint.
    let config = write_config(
        dir.path(),
        9,
        Endpoints {
            device: false,
            browser: false,
        },
    );
    let cli = Cli::start(&["auth", "login", "--config", config.to_str().expect("utf-8")]);
    let (status, _, err) = cli.finish().await;
    assert_eq!(status, 78, "{err}");
    assert!(
        err.contains("device_authorization_url") && err.contains("authorization_url"),
        "{err}"
    );
    // --flow device without a device endpoint.
    let config = write_config(
        dir.path(),
        9,
        Endpoints {
            device: false,
            browser: true,
        },
    );
    let cli = Cli::start(&[
        "auth",
        "login",
        "--config",
        config.to_str().expect("utf-8"),
        "--flow",
        "device",
    ]);
    let (status, _, err) = cli.finish().await;
    assert_eq!(status, 78, "{err}");
    assert!(err.contains("device_authorization_url"), "{err}");
    // No oauth2 block at all.
    std::fs::write(
        &config,
        format!("providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: 2525\n      user: {USER}\n      pass: secret\n      from: {USER}\n"),
    )
    .expect("write");
    let cli = Cli::start(&["auth", "login", "--config", config.to_str().expect("utf-8")]);
    let (status, _, err) = cli.finish().await;
    assert_eq!(status, 78, "{err}");
    assert!(err.contains("oauth2"), "{err}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_while_waiting_cancels_with_130() {
    let world = World::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), world.port, BOTH);
    let mut cli = Cli::start(&["auth", "login", "--config", config.to_str().expect("utf-8")]);
    cli.user_code().await;
    let pid = cli.child.id().expect("pid");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (status, out, err) = cli.finish().await;
    assert_eq!(status, 130, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("login cancelled"), "{err}");
    assert!(!dir.path().join("smtpkit-tokens.json").exists());
}
