//! Sessions through real proxies started by the tests: microsocks (SOCKS5, `socks5://` and
//! `socks5h://`, with and without a login) and tinyproxy (HTTP CONNECT, with and without
//! Basic authentication), to the capture server in plain text, STARTTLS and implicit TLS, each
//! message checked as stored. Then `smtpkit send` through them: exit codes for a wrong proxy
//! password (77), a proxy refusing the target or not reachable (75), `proxy: env`, and no
//! proxy password in any output (`--json`, `--transcript`).
//!
//! Runs on the libtest-mimic harness (`harness = false` in `Cargo.toml`): a test whose proxy
//! is not installed is reported as ignored, or fails with `SMTPKIT_REAL_SERVERS=1` (see
//! `support::real_servers`). Every test is listed in `main`.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use smtpkit::client::{
    ClientOptions, Connection, Credentials, Envelope, Proxy, Security, Timeouts, TlsConnector,
    TlsSettings, Transcript, TranscriptBuffer,
};
use smtpkit::proto::{Address, Secret};
use smtpkit::server::{LocalCa, Server, ServerConfig, StoredMessage};
use smtpkit::ErrorKind;
use support::proxies::{Microsocks, Tinyproxy};
use support::real_servers::{run_tests, tokio_trials, Flavor, TestResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

fn main() -> std::process::ExitCode {
    run_tests(tokio_trials![Flavor::MultiThread { workers: 2 };
        socks5_without_a_login_plain_text,
        socks5_with_a_login_starttls_and_auth,
        socks5h_the_proxy_resolves_the_name_implicit_tls,
        http_connect_without_a_login_plain_and_implicit_tls,
        http_connect_with_a_login_starttls_and_auth,
        http_connect_greeting_in_the_same_packet_as_the_200,
        a_proxy_that_never_answers_times_out_within_the_connect_timeout,
        a_proxy_speaking_another_protocol_is_a_protocol_error,
        smtpkit_send_through_each_proxy_and_proxy_env_shows_no_password,
        a_wrong_proxy_password_exits_77_socks_and_http,
        a_proxy_refusing_the_target_or_unreachable_exits_75,
        smtpkit_check_shows_the_proxy_step,
    ])
}

/// The SOCKS5 proxy's login: the password has characters a URL must percent-encode.
const SOCKS_USER: &str = "alice";
const SOCKS_PASS: &str = "Pr0xy@pa:ss/wd";
const SOCKS_PASS_IN_URL: &str = "Pr0xy%40pa%3Ass%2Fwd";
/// tinyproxy's `BasicAuth` takes words only.
const HTTP_USER: &str = "bob";
const HTTP_PASS: &str = "Tiny-Proxy-Secret-7";
/// The SMTP server's login.
const SMTP_USER: &str = "user";
const SMTP_PASS: &str = "smtp-Secret-3";

/// What `Transcript` and errors must never show.
fn assert_no_secret(shown: &str) {
    for secret in [
        SOCKS_PASS,
        SOCKS_PASS_IN_URL,
        HTTP_PASS,
        SMTP_PASS,
        &BASE64.encode(format!("{HTTP_USER}:{HTTP_PASS}")),
    ] {
        assert!(!shown.contains(secret), "{secret:?} shown in:\n{shown}");
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    StartTls,
    Implicit,
}

/// The capture server, on a loopback address, storing what it accepts.
struct Capture {
    port: u16,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    stored: mpsc::UnboundedReceiver<StoredMessage>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Capture {
    async fn start(mode: Mode, ip: IpAddr) -> Capture {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca =
            LocalCa::generate(&["localhost".into(), "127.0.0.1".into(), "::1".into()]).expect("ca");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.ca_pem).expect("write ca");
        let mut config = ServerConfig::new(SocketAddr::new(ip, 0), dir.path().join("mail"));
        if mode != Mode::Plain {
            config.tls = Some(ca.server_config);
            config.implicit_tls = mode == Mode::Implicit;
            config.auth = Some((SMTP_USER.into(), Secret::new(SMTP_PASS)));
        }
        let (tx, stored) = mpsc::unbounded_channel();
        let hook = Arc::new(move |m: &StoredMessage| {
            let _ = tx.send(m.clone());
        });
        let server = Server::bind_with(config, Some(hook)).await.expect("bind");
        let port = server.local_addr().port();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            let _ = stop_rx.await;
        }));
        Capture {
            port,
            dir,
            ca_file,
            stored,
            stop: Some(stop),
            task,
        }
    }

    /// The next stored message and its file's text.
    async fn next_message(&mut self) -> (StoredMessage, Vec<u8>) {
        let stored = tokio::time::timeout(Duration::from_secs(10), self.stored.recv())
            .await
            .expect("stored in time")
            .expect("a message");
        let file = std::fs::read(&stored.path).expect("stored file");
        (stored, file)
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

/// A message of about 300 KB with dot lines, so that the tunnel carries many writes.
fn big_message(subject: &str) -> Vec<u8> {
    let mut m = format!("Subject: {subject}\r\nFrom: from@example.com\r\n\r\n").into_bytes();
    for i in 0..4000 {
        m.extend(
            format!(".line {i:05} through the proxy, dot-stuffed on the wire ...........\r\n")
                .as_bytes(),
        );
    }
    m.extend(b"..\r\n.\r\nlast\r\n");
    m
}

fn proxied_options(
    capture: &Capture,
    security: Security,
    proxy: &str,
) -> (ClientOptions, TranscriptBuffer) {
    let (transcript, lines) = Transcript::buffer();
    let t = Duration::from_secs(10);
    let options = ClientOptions {
        security,
        tls: Some(
            TlsConnector::new(&TlsSettings {
                skip_verify: false,
                ca_file: Some(capture.ca_file.clone()),
            })
            .expect("tls"),
        ),
        credentials: (security != Security::None)
            .then(|| Credentials::new(SMTP_USER, Secret::new(SMTP_PASS)).expect("valid")),
        transcript: Some(transcript),
        timeouts: Timeouts {
            connect: t,
            greeting: t,
            command: t,
            data_start: t,
            data_block: t,
            data_end: t,
        },
        proxy: Some(Proxy::parse(proxy).expect("proxy URL")),
        ..ClientOptions::default()
    };
    (options, lines)
}

/// Sends `big_message` to `host:capture.port` with `options`, checks it arrived intact (and
/// over TLS when asked), and returns the transcript.
async fn send_and_check(
    capture: &mut Capture,
    host: &str,
    options: ClientOptions,
    lines: &TranscriptBuffer,
    subject: &str,
) -> String {
    let tls = options.security != Security::None;
    let mut conn = Connection::connect(host, capture.port, options)
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}\n{}", lines.lines().join("\n")));
    assert_eq!(conn.tls_info().is_some(), tls, "{subject}");
    let envelope = Envelope::new(
        Address::new("from@example.com").expect("valid"),
        vec![Address::new("to@example.org").expect("valid")],
    )
    .expect("envelope");
    let message = big_message(subject);
    conn.send_mail(&envelope, &message).await.expect("sent");
    conn.quit().await.expect("quit");
    let (stored, file) = capture.next_message().await;
    assert_eq!(stored.tls, tls, "{subject}");
    assert_eq!(stored.rcpt_to, ["to@example.org"]);
    if tls {
        assert_eq!(stored.authenticated_as.as_deref(), Some(SMTP_USER));
    }
    assert!(
        file.ends_with(&message),
        "{subject}: the message arrived changed"
    );
    let transcript = lines.lines().join("\n");
    assert_no_secret(&transcript);
    transcript
}

fn assert_line(transcript: &str, wanted: &str) {
    assert!(
        transcript.lines().any(|l| l.contains(wanted)),
        "no line with {wanted:?} in:\n{transcript}"
    );
}

async fn socks5_without_a_login_plain_text() -> TestResult {
    let proxy = Microsocks::start("socks5_without_a_login_plain_text", None)?;
    let mut capture = Capture::start(Mode::Plain, Ipv4Addr::LOCALHOST.into()).await;
    let url = format!("socks5://127.0.0.1:{}", proxy.port);
    let (options, lines) = proxied_options(&capture, Security::None, &url);
    let transcript =
        send_and_check(&mut capture, "127.0.0.1", options, &lines, "socks5 plain").await;
    assert_line(&transcript, &format!("* connected to proxy {url}"));
    assert_line(
        &transcript,
        &format!("* proxy {url}: tunnel to 127.0.0.1:{} open", capture.port),
    );
    // `socks5://` with a name: smtpkit resolves it and gives the proxy an address (the next
    // one when the proxy cannot reach the first, e.g. `::1` where nothing listens).
    let (options, lines) = proxied_options(&capture, Security::None, &url);
    let transcript =
        send_and_check(&mut capture, "localhost", options, &lines, "socks5 name").await;
    assert_line(
        &transcript,
        &format!(
            "tunnel to localhost:{} (127.0.0.1:{}) open",
            capture.port, capture.port
        ),
    );
    capture.stop().await;
    Ok(())
}

async fn socks5_with_a_login_starttls_and_auth() -> TestResult {
    let proxy = Microsocks::start(
        "socks5_with_a_login_starttls_and_auth",
        Some((SOCKS_USER, SOCKS_PASS)),
    )?;
    let mut capture = Capture::start(Mode::StartTls, Ipv4Addr::LOCALHOST.into()).await;
    let url = format!(
        "socks5://{SOCKS_USER}:{SOCKS_PASS_IN_URL}@127.0.0.1:{}",
        proxy.port
    );
    let (options, lines) = proxied_options(&capture, Security::StartTls, &url);
    let transcript = send_and_check(
        &mut capture,
        "127.0.0.1",
        options,
        &lines,
        "socks5 STARTTLS",
    )
    .await;
    assert_line(
        &transcript,
        &format!(
            "* connected to proxy socks5://{SOCKS_USER}@127.0.0.1:{}",
            proxy.port
        ),
    );
    assert_line(&transcript, "* TLS established");
    capture.stop().await;
    Ok(())
}

async fn socks5h_the_proxy_resolves_the_name_implicit_tls() -> TestResult {
    let proxy = Microsocks::start(
        "socks5h_the_proxy_resolves_the_name_implicit_tls",
        Some((SOCKS_USER, SOCKS_PASS)),
    )?;
    // The server listens where `localhost` first resolves, as the proxy will resolve it.
    let first = ("localhost", 25)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map_or(Ipv4Addr::LOCALHOST.into(), |a| a.ip());
    let mut capture = Capture::start(Mode::Implicit, first).await;
    let url = format!(
        "socks5h://{SOCKS_USER}:{SOCKS_PASS_IN_URL}@127.0.0.1:{}",
        proxy.port
    );
    let (options, lines) = proxied_options(&capture, Security::Tls, &url);
    // The certificate is checked against `localhost`, the SMTP host, not the proxy's name.
    let transcript = send_and_check(
        &mut capture,
        "localhost",
        options,
        &lines,
        "socks5h implicit TLS",
    )
    .await;
    assert_line(
        &transcript,
        &format!(
            "tunnel to localhost:{} (the proxy resolved the name) open",
            capture.port
        ),
    );
    capture.stop().await;
    Ok(())
}

async fn http_connect_without_a_login_plain_and_implicit_tls() -> TestResult {
    let mut plain = Capture::start(Mode::Plain, Ipv4Addr::LOCALHOST.into()).await;
    let mut implicit = Capture::start(Mode::Implicit, Ipv4Addr::LOCALHOST.into()).await;
    let proxy = Tinyproxy::start(
        "http_connect_without_a_login_plain_and_implicit_tls",
        None,
        &[plain.port, implicit.port],
    )?;
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let (options_plain, lines) = proxied_options(&plain, Security::None, &url);
    let transcript =
        send_and_check(&mut plain, "127.0.0.1", options_plain, &lines, "http plain").await;
    assert_line(
        &transcript,
        &format!("* proxy {url}: tunnel to 127.0.0.1:{} open", plain.port),
    );
    let (options_tls, lines) = proxied_options(&implicit, Security::Tls, &url);
    send_and_check(
        &mut implicit,
        "127.0.0.1",
        options_tls,
        &lines,
        "http implicit TLS",
    )
    .await;
    assert!(
        proxy
            .log()
            .contains(&format!("CONNECT 127.0.0.1:{} HTTP/1.1", implicit.port)),
        "{}",
        proxy.log()
    );
    plain.stop().await;
    implicit.stop().await;
    Ok(())
}

async fn http_connect_with_a_login_starttls_and_auth() -> TestResult {
    let mut capture = Capture::start(Mode::StartTls, Ipv4Addr::LOCALHOST.into()).await;
    let proxy = Tinyproxy::start(
        "http_connect_with_a_login_starttls_and_auth",
        Some((HTTP_USER, HTTP_PASS)),
        &[capture.port],
    )?;
    let url = format!("http://{HTTP_USER}:{HTTP_PASS}@127.0.0.1:{}", proxy.port);
    let (options, lines) = proxied_options(&capture, Security::StartTls, &url);
    let transcript =
        send_and_check(&mut capture, "127.0.0.1", options, &lines, "http STARTTLS").await;
    assert_line(&transcript, "* TLS established");
    assert_no_secret(&proxy.log());
    capture.stop().await;
    Ok(())
}

/// A one-connection HTTP proxy that sends its `200` and the SMTP server's greeting in one
/// write: the greeting must not be lost with the reply header.
async fn eager_connect_proxy(listener: TcpListener) {
    let Ok((mut client, _)) = listener.accept().await else {
        return;
    };
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") && request.len() < 8192 {
        match client.read(&mut byte).await {
            Ok(1) => request.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&request);
    let Some(target) = text
        .strip_prefix("CONNECT ")
        .and_then(|rest| rest.split(' ').next())
    else {
        return;
    };
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let mut greeting = Vec::new();
    while !greeting.ends_with(b"\r\n") && greeting.len() < 1024 {
        match server.read(&mut byte).await {
            Ok(1) => greeting.push(byte[0]),
            _ => return,
        }
    }
    let mut reply = b"HTTP/1.1 200 Connection established\r\nVia: eager\r\n\r\n".to_vec();
    reply.extend_from_slice(&greeting);
    if client.write_all(&reply).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

async fn http_connect_greeting_in_the_same_packet_as_the_200() -> TestResult {
    let mut capture = Capture::start(Mode::Plain, Ipv4Addr::LOCALHOST.into()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let proxy = tokio::spawn(eager_connect_proxy(listener));
    let (options, lines) = proxied_options(
        &capture,
        Security::None,
        &format!("http://127.0.0.1:{port}"),
    );
    let transcript =
        send_and_check(&mut capture, "127.0.0.1", options, &lines, "eager proxy").await;
    assert_line(&transcript, "S: 220 ");
    proxy.abort();
    capture.stop().await;
    Ok(())
}

async fn a_proxy_that_never_answers_times_out_within_the_connect_timeout() -> TestResult {
    // Takes connections and says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    // `socks5://` resolves the name here: give it an address, so no DNS is asked.
    for (scheme, host) in [
        ("http", "smtp.example.com"),
        ("socks5h", "smtp.example.com"),
        ("socks5", "127.0.0.1"),
    ] {
        let options = ClientOptions {
            timeouts: Timeouts {
                connect: Duration::from_millis(800),
                ..Timeouts::default()
            },
            security: Security::None,
            proxy: Some(Proxy::parse(&format!("{scheme}://127.0.0.1:{port}")).expect("URL")),
            ..ClientOptions::default()
        };
        let started = Instant::now();
        let err = Connection::connect(host, 587, options)
            .await
            .expect_err("no tunnel");
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{scheme}: {err}");
        assert!(
            err.message().starts_with(&format!(
                "proxy {scheme}://127.0.0.1:{port} opened no tunnel to {host}:587 within"
            )),
            "{scheme}: {err}"
        );
        assert!(err.is_transient());
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(3),
            "{scheme}: took {took:?}"
        );
    }
    silent.abort();
    Ok(())
}

async fn a_proxy_speaking_another_protocol_is_a_protocol_error() -> TestResult {
    // An SSH server where the proxy should be: it greets and hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let ssh = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
            let mut sink = [0u8; 256];
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut sink)).await;
        }
    });
    for (scheme, wanted) in [
        (
            "http",
            "sent a malformed reply: not an HTTP reply: \"SSH-2.0-OpenSSH_9.2\"",
        ),
        ("socks5h", "sent a malformed reply: not a SOCKS5 reply"),
    ] {
        let options = ClientOptions {
            security: Security::None,
            proxy: Some(Proxy::parse(&format!("{scheme}://127.0.0.1:{port}")).expect("URL")),
            ..ClientOptions::default()
        };
        let err = Connection::connect("smtp.example.com", 587, options)
            .await
            .expect_err("not a proxy");
        assert_eq!(err.kind(), ErrorKind::Protocol, "{scheme}: {err}");
        assert!(err.message().contains(wanted), "{scheme}: {err}");
        assert!(err
            .hint()
            .is_some_and(|h| h.contains("socks5://, socks5h:// or http://")));
    }
    ssh.abort();
    Ok(())
}

// ----- `smtpkit send` -----------------------------------------------------------------------

/// A configuration for the capture server (STARTTLS with AUTH) with the `proxy:` line.
fn config_file(capture: &Capture, proxy: &str) -> PathBuf {
    let path = capture.dir.path().join("smtpkit.yaml");
    std::fs::write(
        &path,
        format!(
            "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {}\n      user: {SMTP_USER}\n      pass: {SMTP_PASS}\n      from: noreply@example.com\n      ca_file: {}\n      retry: {{attempts: 1}}\n      timeouts: {{connect: 10s}}\n      proxy: \"{proxy}\"\n",
            capture.port,
            capture.ca_file.display()
        ),
    )
    .expect("write config");
    path
}

/// `smtpkit send --json --transcript` with `config` and the given environment (every proxy
/// variable of the test's own environment removed); returns the exit code, the JSON object
/// on stdout and stdout and stderr together.
async fn smtpkit_send(config: &Path, env: &[(&str, &str)]) -> (i32, serde_json::Value, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"));
    command
        .args(["send", "--config"])
        .arg(config)
        .args([
            "--to",
            "a@example.org",
            "--subject",
            "through a proxy",
            "--text",
            "hello",
            "--json",
            "--transcript",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for name in [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let out: Output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("send ends in time")
        .expect("run smtpkit");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let shown = format!(
        "{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e}):\n{shown}"));
    (out.status.code().unwrap_or(-1), json, shown)
}

async fn smtpkit_send_through_each_proxy_and_proxy_env_shows_no_password() -> TestResult {
    let test = "smtpkit_send_through_each_proxy_and_proxy_env_shows_no_password";
    let socks = Microsocks::start(test, Some((SOCKS_USER, SOCKS_PASS)))?;
    let mut capture = Capture::start(Mode::StartTls, Ipv4Addr::LOCALHOST.into()).await;
    let http = Tinyproxy::start(test, Some((HTTP_USER, HTTP_PASS)), &[capture.port])?;
    let socks_url = format!(
        "socks5://{SOCKS_USER}:{SOCKS_PASS_IN_URL}@127.0.0.1:{}",
        socks.port
    );
    let http_url = format!("http://{HTTP_USER}:{HTTP_PASS}@127.0.0.1:{}", http.port);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    // The `proxy:` value, the environment, and the proxy the transcript names (none: direct).
    type Run<'a> = (&'a str, Vec<(&'a str, String)>, Option<String>);
    let runs: [Run; 4] = [
        (
            socks_url.as_str(),
            vec![],
            Some(format!("socks5://{SOCKS_USER}@127.0.0.1:{}", socks.port)),
        ),
        (
            http_url.as_str(),
            vec![],
            Some(format!("http://{HTTP_USER}@127.0.0.1:{}", http.port)),
        ),
        // `proxy: env`: ALL_PROXY names the proxy…
        (
            "env",
            vec![("ALL_PROXY", socks_url.clone())],
            Some(format!("socks5://{SOCKS_USER}@127.0.0.1:{}", socks.port)),
        ),
        // … unless NO_PROXY lists the host: then directly (the proxy named is not running).
        (
            "env",
            vec![
                ("HTTPS_PROXY", format!("http://127.0.0.1:{dead}")),
                ("NO_PROXY", "localhost,127.0.0.1".into()),
            ],
            None,
        ),
    ];
    for (proxy, env, shown_proxy) in runs {
        let config = config_file(&capture, proxy);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, json, shown) = smtpkit_send(&config, &env).await;
        assert_eq!(code, 0, "{proxy} {env:?}:\n{shown}");
        assert_eq!(json["ok"], true, "{shown}");
        assert_no_secret(&shown);
        match shown_proxy {
            Some(p) => assert_line(&shown, &format!("* connected to proxy {p}")),
            None => assert!(!shown.contains("connected to proxy"), "{shown}"),
        }
        let (stored, file) = capture.next_message().await;
        assert!(stored.tls && stored.authenticated_as.as_deref() == Some(SMTP_USER));
        assert!(String::from_utf8_lossy(&file).contains("Subject: through a proxy"));
    }
    capture.stop().await;
    Ok(())
}

async fn a_wrong_proxy_password_exits_77_socks_and_http() -> TestResult {
    let test = "a_wrong_proxy_password_exits_77_socks_and_http";
    let socks = Microsocks::start(test, Some((SOCKS_USER, SOCKS_PASS)))?;
    let mut capture = Capture::start(Mode::StartTls, Ipv4Addr::LOCALHOST.into()).await;
    let http = Tinyproxy::start(test, Some((HTTP_USER, HTTP_PASS)), &[capture.port])?;
    // A wrong password that is the right one with a letter changed; and none at all.
    let wrong_socks = format!("{}X", &SOCKS_PASS_IN_URL[..SOCKS_PASS_IN_URL.len() - 1]);
    let wrong_http = format!("{}X", &HTTP_PASS[..HTTP_PASS.len() - 1]);
    for (url, wanted) in [
        (
            format!(
                "socks5://{SOCKS_USER}:{wrong_socks}@127.0.0.1:{}",
                socks.port
            ),
            "refused the user name or password (SOCKS5 login status",
        ),
        (
            format!("socks5h://127.0.0.1:{}", socks.port),
            "requires a user name and password",
        ),
        (
            format!("http://{HTTP_USER}:{wrong_http}@127.0.0.1:{}", http.port),
            // tinyproxy answers a wrong login 401, a missing one 407.
            "refused the user name or password (401 Unauthorized)",
        ),
        (
            format!("http://127.0.0.1:{}", http.port),
            "requires a user name and password (407",
        ),
    ] {
        let config = config_file(&capture, &url);
        let (code, json, shown) = smtpkit_send(&config, &[]).await;
        assert_eq!(code, 77, "{url}:\n{shown}");
        let error = &json["error"];
        assert_eq!(error["kind"], "auth", "{shown}");
        assert_eq!(error["stage"], "connect", "{shown}");
        assert_eq!(error["transient"], false, "{shown}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(wanted), "{url}: {message}");
        let hint = error["hint"].as_str().unwrap_or_default();
        assert!(
            hint.contains("user name and password in the `proxy` URL"),
            "{hint}"
        );
        assert_no_secret(&shown);
        assert!(
            !shown.contains(&wrong_socks) && !shown.contains(&wrong_http),
            "{shown}"
        );
    }
    assert!(capture.stored.try_recv().is_err(), "nothing was sent");
    capture.stop().await;
    Ok(())
}

async fn a_proxy_refusing_the_target_or_unreachable_exits_75() -> TestResult {
    let test = "a_proxy_refusing_the_target_or_unreachable_exits_75";
    let capture = Capture::start(Mode::StartTls, Ipv4Addr::LOCALHOST.into()).await;
    // CONNECT only to 443: the SMTP port is refused with 403.
    let http = Tinyproxy::start(test, Some((HTTP_USER, HTTP_PASS)), &[443])?;
    let socks = Microsocks::start(test, None)?;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let http_url = format!("http://{HTTP_USER}:{HTTP_PASS}@127.0.0.1:{}", http.port);
    let config = config_file(&capture, &http_url);
    let (code, json, shown) = smtpkit_send(&config, &[]).await;
    assert_eq!(code, 75, "{shown}");
    assert_eq!(json["error"]["kind"], "connect", "{shown}");
    assert_eq!(json["error"]["transient"], true, "{shown}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "proxy http://{HTTP_USER}@127.0.0.1:{} refused the tunnel to 127.0.0.1:{}: 403",
            http.port, capture.port
        )),
        "{message}"
    );
    assert!(
        json["error"]["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("would not open a tunnel"),
        "{shown}"
    );
    assert_no_secret(&shown);

    // microsocks reaches nothing on a closed port: SOCKS reply 5.
    let mut config_text = std::fs::read_to_string(&config).expect("config");
    config_text = config_text.replace(
        &format!("port: {}", capture.port),
        &format!("port: {closed}"),
    );
    std::fs::write(&config, &config_text).expect("config");
    let socks_config = {
        let text = config_text.replace(&http_url, &format!("socks5://127.0.0.1:{}", socks.port));
        let path = capture.dir.path().join("socks.yaml");
        std::fs::write(&path, text).expect("config");
        path
    };
    let (code, json, shown) = smtpkit_send(&socks_config, &[]).await;
    assert_eq!(code, 75, "{shown}");
    assert_eq!(json["error"]["kind"], "connect", "{shown}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("(SOCKS reply 5)"), "{message}");

    // A proxy that is not there: like a refused connection.
    let gone = config_text.replace(
        &http_url,
        &format!("http://{HTTP_USER}:{HTTP_PASS}@127.0.0.1:{closed}"),
    );
    std::fs::write(&config, gone).expect("config");
    let (code, json, shown) = smtpkit_send(&config, &[]).await;
    assert_eq!(code, 75, "{shown}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "connect: cannot reach proxy http://{HTTP_USER}@127.0.0.1:{closed}"
        )),
        "{message}"
    );
    assert!(
        json["error"]["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("The proxy could not be reached"),
        "{shown}"
    );
    assert_no_secret(&shown);
    capture.stop().await;
    Ok(())
}

async fn smtpkit_check_shows_the_proxy_step() -> TestResult {
    let socks = Microsocks::start(
        "smtpkit_check_shows_the_proxy_step",
        Some((SOCKS_USER, SOCKS_PASS)),
    )?;
    let capture = Capture::start(Mode::StartTls, Ipv4Addr::LOCALHOST.into()).await;
    let check = |proxy: String| {
        let config = config_file(&capture, &proxy);
        async move {
            let out = tokio::time::timeout(
                Duration::from_secs(60),
                tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
                    .arg("check")
                    .arg("--config")
                    .arg(&config)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .expect("check ends in time")
            .expect("run smtpkit");
            let shown = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.code(), shown)
        }
    };
    let (code, shown) = check(format!(
        "socks5://{SOCKS_USER}:{SOCKS_PASS_IN_URL}@127.0.0.1:{}",
        socks.port
    ))
    .await;
    assert_eq!(code, Some(0), "{shown}");
    assert_line(
        &shown,
        &format!(
            "✓ proxy        connected to socks5://{SOCKS_USER}@127.0.0.1:{}; tunnel to 127.0.0.1:{} open",
            socks.port, capture.port
        ),
    );
    assert_line(&shown, "(through the proxy)");
    assert_line(&shown, "✓ AUTH");
    assert_no_secret(&shown);
    let (code, shown) = check(format!(
        "socks5://{SOCKS_USER}:wrong@127.0.0.1:{}",
        socks.port
    ))
    .await;
    assert_eq!(code, Some(77), "{shown}");
    assert_line(&shown, "✗ proxy        connect: proxy socks5://alice@");
    assert_line(&shown, "hint: The proxy refused its login");
    assert!(!shown.contains("wrong"), "{shown}");
    capture.stop().await;
    Ok(())
}
