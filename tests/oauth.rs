//! OAuth 2.0 for XOAUTH2 against a real local identity server and an independent XOAUTH2
//! SMTP server (aiosmtpd), both in `tests/support/oauth_world.py`: tokens that expire in two
//! seconds, rotated refresh tokens, revoked tokens answered with Gmail's 334 JSON error,
//! `invalid_grant`, an endpoint that is down, and the spec's Outlook and Gmail examples with
//! an `oauth2:` block in place of `pass`, through the library and the binary.
//!
//! Runs on the libtest-mimic harness (`harness = false`): without Debian's python3-aiosmtpd
//! the tests are reported as ignored, unless `SMTPKIT_REAL_SERVERS=1`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::json;
use smtpkit::message::Notification;
use smtpkit::oauth::TokenSource;
use smtpkit::provider::{Config, Mailer};
use support::certs::{Leaf, TestPki};
use support::oauth_world::OAuthWorld;
use support::real_servers::{run_tests, tokio_trials, Flavor, TestResult};

fn main() -> std::process::ExitCode {
    run_tests(tokio_trials![Flavor::MultiThread { workers: 2 };
        tokens_are_refreshed_ahead_of_expiry_not_per_message,
        concurrent_senders_share_one_token_fetch,
        a_rotated_refresh_token_is_kept_in_a_private_cache_and_used_after_a_restart,
        a_revoked_token_gets_the_334_error_then_one_refresh_and_a_new_session,
        a_token_refused_twice_is_an_authentication_error,
        invalid_grant_exits_77_with_a_hint_to_sign_in_again,
        an_unreachable_token_endpoint_is_temporary_and_retried,
        check_shows_the_token_step_without_the_token,
        the_spec_outlook_and_gmail_examples_send_with_oauth2_in_place_of_pass,
    ])
}

const USER: &str = "agent@example.com";
const CLIENT_SECRET: &str = "cs-very-secret-client-value";

/// A config file for `world`'s SMTP side (plain text on loopback: `security: none` with
/// `allow_insecure_auth`), its identity server as a custom provider; `extra` goes under
/// `config:` (indented six spaces), `oauth_extra` under `oauth2:` (eight).
fn write_config(
    dir: &Path,
    world: &OAuthWorld,
    user: &str,
    extra: &str,
    oauth_extra: &str,
) -> PathBuf {
    let smtp = world.smtp.expect("smtp port");
    // One try per send unless `extra` says otherwise.
    let retry = if extra.contains("retry:") {
        ""
    } else {
        "      retry: {attempts: 1}\n"
    };
    let yaml = format!(
        "providers:
  email:
    provider: email.smtp
    config:
      host: 127.0.0.1
      port: {smtp}
      user: {user}
      from: {USER}
      security: none
      allow_insecure_auth: true
{retry}{extra}      oauth2:
        provider: custom
        token_url: {token}
        client_id: test-client
        client_secret: {CLIENT_SECRET}
        refresh_token: rt-initial
        token_cache: tokens.json
{oauth_extra}",
        token = world.url("/token"),
    );
    let path = dir.join("smtpkit.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

fn notification(n: usize) -> Notification {
    Notification::new(format!("message {n}"))
        .to("approver@example.com".parse().expect("address"))
        .text("A new access request requires your approval.")
}

/// Every access and refresh token oauth_world issues starts with `at-` or `rt-`; the client
/// secret is [`CLIENT_SECRET`].
fn assert_no_secret(what: &str, text: &str) {
    for needle in ["at-", "rt-", CLIENT_SECRET, "dc-", "ac-"] {
        assert!(
            !text.contains(needle),
            "{what} shows a secret ({needle}…):\n{text}"
        );
    }
}

async fn smtpkit(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(args)
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("smtpkit ends in time")
        .expect("run smtpkit")
}

/// `smtpkit send --json` through `cfg`'s provider: the output and its one JSON object.
async fn send_json(cfg: &Path) -> (Output, serde_json::Value) {
    let out = smtpkit(&[
        "send",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--to",
        "approver@example.com",
        "--subject",
        "s",
        "--text",
        "t",
        "--json",
    ])
    .await;
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", shown(&out)));
    (out, value)
}

fn shown(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn token_requests(world: &OAuthWorld) -> u64 {
    world.stats()["by_grant"]["refresh_token"]
        .as_u64()
        .unwrap_or(0)
}

/// The `X-Auth-Token` each accepted message was sent with.
fn tokens_used(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("X-Auth-Token: "))
                .expect("X-Auth-Token header")
                .trim()
                .to_owned()
        })
        .collect()
}

/// Tokens live two seconds and every message opens its own session (so every message
/// authenticates): over about five seconds of sending, a few fetches, not one per message,
/// and no expired token ever reaches the server.
async fn tokens_are_refreshed_ahead_of_expiry_not_per_message() -> TestResult {
    let world = OAuthWorld::start(
        "tokens_are_refreshed_ahead_of_expiry_not_per_message",
        &[
            "--smtp",
            "--expires-in",
            "2",
            "--client-secret",
            CLIENT_SECRET,
        ],
    )?;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        &world,
        USER,
        "      pool: {max_messages_per_connection: 1}\n",
        "",
    );
    let config = Config::from_file(&cfg).expect("config");
    let mailer = Mailer::new(&config, None).expect("mailer");
    let counted_before = TokenSource::process_fetches().succeeded;
    let messages = 10;
    for n in 0..messages {
        let report = mailer.send(&notification(n)).await.expect("sent");
        assert_eq!(report.attempts.len(), 1, "{report:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    mailer.close().await;
    let stored = world.wait_for_messages(messages, Duration::from_secs(10));
    assert_eq!(stored.len(), messages);
    let stats = world.stats();
    let fetches = token_requests(&world);
    // ~5 s of sending with tokens used for 1.5 s of their 2 s: about four fetches.
    assert!(
        (2..messages as u64).contains(&fetches),
        "{fetches} fetches: {stats}"
    );
    let mut distinct = tokens_used(&stored);
    distinct.dedup();
    assert_eq!(
        distinct.len() as u64,
        fetches,
        "one token per fetch, used in turn"
    );
    // What `smtpkit worker --metrics` shows (other tests of this process may add theirs).
    let counted = TokenSource::process_fetches().succeeded - counted_before;
    assert!(
        counted >= fetches,
        "{counted} fetches counted, {fetches} made"
    );
    assert_eq!(
        stats["smtp_auth_failed"], 0,
        "no expired token was presented: {stats}"
    );
    assert_eq!(stats["smtp_auth_ok"], messages as u64, "{stats}");
    assert_no_secret("oauth_world's log", &world.log());
    Ok(())
}

/// Eight sends at once, each on its own session: one token request between them.
async fn concurrent_senders_share_one_token_fetch() -> TestResult {
    let world = OAuthWorld::start(
        "concurrent_senders_share_one_token_fetch",
        &["--smtp", "--client-secret", CLIENT_SECRET],
    )?;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        &world,
        USER,
        "      pool: {max_connections: 8, max_messages_per_connection: 1}\n",
        "",
    );
    let config = Config::from_file(&cfg).expect("config");
    let mailer = Mailer::new(&config, None).expect("mailer");
    let sends = (0..8).map(|n| {
        let mailer = mailer.clone();
        tokio::spawn(async move { mailer.send(&notification(n)).await })
    });
    for send in sends.collect::<Vec<_>>() {
        send.await.expect("task").expect("sent");
    }
    mailer.close().await;
    let stored = world.wait_for_messages(8, Duration::from_secs(10));
    assert_eq!(stored.len(), 8);
    assert_eq!(token_requests(&world), 1, "{}", world.stats());
    let mut used = tokens_used(&stored);
    used.dedup();
    assert_eq!(used.len(), 1, "every session used the one token");
    Ok(())
}

/// With rotation, the configuration's refresh token is void after the first refresh: the
/// new one is in the cache (mode 0600) and a new process starts from it.
async fn a_rotated_refresh_token_is_kept_in_a_private_cache_and_used_after_a_restart() -> TestResult
{
    let world = OAuthWorld::start(
        "a_rotated_refresh_token_is_kept_in_a_private_cache_and_used_after_a_restart",
        &["--smtp", "--rotate", "--client-secret", CLIENT_SECRET],
    )?;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), &world, USER, "", "");
    let cfg = cfg.to_str().expect("utf-8");
    let send = [
        "send",
        "--config",
        cfg,
        "--to",
        "approver@example.com",
        "--subject",
        "rotation",
        "--text",
        "t",
        "--transcript",
    ];
    for run in 1..=3 {
        let out = smtpkit(&send).await;
        assert_eq!(out.status.code(), Some(0), "run {run}: {}", shown(&out));
        assert_no_secret(&format!("run {run}"), &shown(&out));
        let cache_path = dir.path().join("tokens.json");
        let cache = std::fs::read_to_string(&cache_path).expect("the token cache exists");
        let current = world.stats()["current_refresh_tokens"].clone();
        let current = current.as_array().expect("list");
        assert_eq!(current.len(), 1, "{current:?}");
        let current = current[0].as_str().expect("token");
        assert!(
            cache.contains(current),
            "run {run}: the cache holds the server's current refresh token"
        );
        assert!(!cache.contains("rt-initial"), "the void one is gone");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cache_path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "run {run}");
    }
    assert_eq!(token_requests(&world), 3, "{}", world.stats());
    assert_eq!(world.wait_for_messages(3, Duration::from_secs(10)).len(), 3);
    Ok(())
}

/// The server revokes the token a session would reuse: the next AUTH gets Gmail's `334`
/// JSON error, answered with an empty line, then `535`; smtpkit fetches a new token once
/// and authenticates on a new session; the send succeeds in one attempt.
async fn a_revoked_token_gets_the_334_error_then_one_refresh_and_a_new_session() -> TestResult {
    let world = OAuthWorld::start(
        "a_revoked_token_gets_the_334_error_then_one_refresh_and_a_new_session",
        &["--smtp", "--client-secret", CLIENT_SECRET],
    )?;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        &world,
        USER,
        "      pool: {max_messages_per_connection: 1}\n",
        "",
    );
    let config = Config::from_file(&cfg).expect("config");
    let (transcript, lines) = smtpkit::client::Transcript::buffer();
    let mailer = Mailer::with_options(&config, None, Some(transcript)).expect("mailer");
    mailer.send(&notification(1)).await.expect("first send");
    world.control(json!({"revoke_access_tokens": true}));
    let report = mailer.send(&notification(2)).await.expect("second send");
    assert_eq!(report.attempts.len(), 1, "{report:?}");
    mailer.close().await;
    let stats = world.stats();
    assert_eq!(stats["smtp_auth_failed"], 1, "{stats}");
    assert_eq!(token_requests(&world), 2, "{stats}");
    let text = lines.lines().join("\n");
    let challenge = text
        .lines()
        .position(|l| l.starts_with("S: 334 "))
        .expect("the 334 error challenge");
    let after: Vec<&str> = text.lines().skip(challenge + 1).take(2).collect();
    assert_eq!(after[0], "C: <redacted>", "{text}");
    assert!(after[1].starts_with("S: 535 "), "{text}");
    assert!(
        text.contains("one more session with a new secret"),
        "{text}"
    );
    assert_no_secret("the transcript", &text);
    let stored = world.wait_for_messages(2, Duration::from_secs(10));
    let used = tokens_used(&stored);
    assert_ne!(used[0], used[1], "the second message used the new token");
    Ok(())
}

/// Every token is refused (the mailbox is not the one the tokens are for): one refresh and
/// one more session, then an authentication failure, exit 77, not an endless loop.
async fn a_token_refused_twice_is_an_authentication_error() -> TestResult {
    let world = OAuthWorld::start(
        "a_token_refused_twice_is_an_authentication_error",
        &["--smtp", "--client-secret", CLIENT_SECRET],
    )?;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        &world,
        "someone-else@example.com",
        "      retry: {attempts: 3, initial_backoff: 10ms}\n",
        "",
    );
    let (out, value) = send_json(&cfg).await;
    assert_eq!(out.status.code(), Some(77), "{}", shown(&out));
    assert_eq!(value["error"]["kind"], "auth", "{value}");
    assert_no_secret("send --json", &shown(&out));
    let stats = world.stats();
    assert_eq!(stats["smtp_auth_failed"], 2, "{stats}");
    assert_eq!(token_requests(&world), 2, "{stats}");
    Ok(())
}

async fn invalid_grant_exits_77_with_a_hint_to_sign_in_again() -> TestResult {
    let world = OAuthWorld::start(
        "invalid_grant_exits_77_with_a_hint_to_sign_in_again",
        &["--smtp", "--client-secret", CLIENT_SECRET],
    )?;
    world.control(json!({"mode": "invalid_grant"}));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), &world, USER, "", "");
    let cfg = cfg.to_str().expect("utf-8");
    let out = smtpkit(&[
        "send",
        "--config",
        cfg,
        "--to",
        "approver@example.com",
        "--subject",
        "s",
        "--text",
        "t",
    ])
    .await;
    assert_eq!(out.status.code(), Some(77), "{}", shown(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid_grant"), "{err}");
    assert!(err.contains("smtpkit auth login"), "{err}");
    assert_no_secret("send", &shown(&out));
    let out = smtpkit(&["check", "--config", cfg]).await;
    assert_eq!(out.status.code(), Some(77), "{}", shown(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("✗ token"), "{text}");
    assert!(text.contains("smtpkit auth login"), "{text}");
    assert_eq!(world.stats()["smtp_auth_ok"], 0);
    Ok(())
}

/// Nothing listens at the token URL: a temporary failure, retried like a connection
/// failure, exit 75.
async fn an_unreachable_token_endpoint_is_temporary_and_retried() -> TestResult {
    let world = OAuthWorld::start(
        "an_unreachable_token_endpoint_is_temporary_and_retried",
        &["--smtp"],
    )?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        &world,
        USER,
        "      retry: {attempts: 2, initial_backoff: 10ms, max_backoff: 10ms}\n",
        "",
    );
    let yaml = std::fs::read_to_string(&cfg).expect("read").replace(
        &world.url("/token"),
        &format!("http://127.0.0.1:{port}/token"),
    );
    std::fs::write(&cfg, yaml).expect("write");
    let (out, value) = send_json(&cfg).await;
    assert_eq!(out.status.code(), Some(75), "{}", shown(&out));
    assert_eq!(value["error"]["stage"], "token", "{value}");
    assert_eq!(value["error"]["transient"], true, "{value}");
    assert_eq!(
        value["attempts"].as_array().map(Vec::len),
        Some(2),
        "{value}"
    );
    assert!(
        value["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot reach the token endpoint")),
        "{value}"
    );
    Ok(())
}

async fn check_shows_the_token_step_without_the_token() -> TestResult {
    let world = OAuthWorld::start(
        "check_shows_the_token_step_without_the_token",
        &[
            "--smtp",
            "--expires-in",
            "600",
            "--client-secret",
            CLIENT_SECRET,
        ],
    )?;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), &world, USER, "", "");
    let out = smtpkit(&[
        "check",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--transcript",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let token_line = text
        .lines()
        .find(|l| l.contains("✓ token"))
        .unwrap_or_else(|| panic!("no token step:\n{text}"));
    assert!(
        token_line.contains("refresh_token grant")
            && token_line.contains(&world.url("/token"))
            && token_line.contains("expires in 600 s"),
        "{token_line}"
    );
    assert!(text.contains("✓ AUTH"), "{text}");
    assert_no_secret("check", &shown(&out));
    // The AUTH step used the token the token step fetched.
    assert_eq!(token_requests(&world), 1, "{}", world.stats());
    Ok(())
}

/// The spec's Outlook and Gmail examples as written, with `pass` replaced by an `oauth2:`
/// block (Microsoft and Google presets, endpoints pointed at the local identity server) and
/// the host at the local XOAUTH2 server over STARTTLS: each sends unattended twice in two
/// processes, the refresh token rotating in between.
async fn the_spec_outlook_and_gmail_examples_send_with_oauth2_in_place_of_pass() -> TestResult {
    let pki = TestPki::new();
    let (cert, key) = pki.write_leaf_pem(Leaf::Valid);
    let (cert, key) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    for (fixture, provider, host, placeholders) in [
        (
            "outlook.yaml",
            "email-outlook",
            "smtp-mail.outlook.com",
            ["<your-outlook-email>", "<your-password>"],
        ),
        (
            "gmail.yaml",
            "email-gmail",
            "smtp.gmail.com",
            ["<your-gmail-address>", "<your-app-password>"],
        ),
    ] {
        let world = OAuthWorld::start(
            "the_spec_outlook_and_gmail_examples_send_with_oauth2_in_place_of_pass",
            &[
                "--smtp",
                "--cert",
                cert,
                "--key",
                key,
                "--rotate",
                "--expires-in",
                "2",
                "--client-secret",
                CLIENT_SECRET,
            ],
        )?;
        let spec = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/spec")
                .join(fixture),
        )
        .expect("fixture");
        let oauth2 = if provider == "email-outlook" {
            format!(
                "oauth2:
        provider: microsoft
        tenant: contoso.onmicrosoft.com
        client_id: test-client
        client_secret: ${{SMTP_CLIENT_SECRET}}
        refresh_token: ${{SMTP_REFRESH_TOKEN}}
        token_url: {}",
                world.url("/token")
            )
        } else {
            format!(
                "oauth2:
        provider: google
        client_id: test-client
        client_secret: ${{SMTP_CLIENT_SECRET}}
        refresh_token: ${{SMTP_REFRESH_TOKEN}}
        token_url: {}",
                world.url("/token")
            )
        };
        let yaml = spec
            .replace(host, "127.0.0.1")
            .replace("port: 587", &format!("port: {}", world.smtp.expect("smtp")))
            .replace(placeholders[0], USER)
            .replace(&format!("pass: {}", placeholders[1]), &oauth2)
            + &format!("      ca_file: {}\n", pki.ca_file.display());
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join(fixture);
        std::fs::write(&cfg, &yaml).expect("write");
        let cfg = cfg.to_str().expect("utf-8");
        for run in 1..=2 {
            let out = tokio::time::timeout(
                Duration::from_secs(120),
                tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
                    .args([
                        "send",
                        "--config",
                        cfg,
                        "--to",
                        "approver@example.com",
                        "--subject",
                        "Access Request Approval Required",
                        "--text",
                        "approve",
                        "--json",
                    ])
                    .env("SMTP_CLIENT_SECRET", CLIENT_SECRET)
                    .env("SMTP_REFRESH_TOKEN", "rt-initial")
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .expect("in time")
            .expect("run");
            assert_eq!(
                out.status.code(),
                Some(0),
                "{fixture} run {run}: {}\n{yaml}",
                shown(&out)
            );
            let value: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("one JSON object");
            assert_eq!(value["provider"], provider, "{value}");
            assert_no_secret(fixture, &shown(&out));
            // Past the first token's life: the second run must not depend on it.
            tokio::time::sleep(Duration::from_millis(2100)).await;
        }
        let stored = world.wait_for_messages(2, Duration::from_secs(10));
        assert_eq!(stored.len(), 2, "{fixture}");
        assert!(stored
            .iter()
            .all(|m| m.contains(&format!("X-Auth-User: {USER}"))));
        assert_eq!(world.stats()["smtp_auth_failed"], 0, "{fixture}");
        assert_eq!(token_requests(&world), 2, "{fixture}: {}", world.stats());
    }
    Ok(())
}
