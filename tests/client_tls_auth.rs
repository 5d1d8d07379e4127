//! TLS and AUTH against the scripted mock: security modes, certificate checks, STARTTLS
//! hygiene, SASL mechanisms, and secrets kept out of every transcript, error and `Debug`.

mod support;

use std::time::Duration;

use base64::Engine as _;
use smtpkit::client::{
    ClientOptions, Connection, Credentials, Envelope, Security, Timeouts, TlsConnector,
    TlsSettings, Transcript, TranscriptBuffer,
};
use smtpkit::proto::{Address, ClientName, Mechanism, Secret};
use smtpkit::{ErrorKind, Stage};
use support::certs::{Leaf, TestPki};
use support::mock::{quit_ok, MockServer, Step};

const PASSWORD: &str = "S3cr3t-Pa55word!";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn r(line: &str) -> Step {
    Step::reply(line)
}

fn e(prefix: &str) -> Step {
    Step::expect(prefix)
}

fn steps(parts: Vec<Vec<Step>>) -> Vec<Step> {
    parts.into_iter().flatten().collect()
}

fn options(
    pki: &TestPki,
    security: Security,
    skip_verify: bool,
) -> (ClientOptions, TranscriptBuffer) {
    let (transcript, lines) = Transcript::buffer();
    let t = Duration::from_secs(5);
    let tls = TlsConnector::new(&TlsSettings {
        skip_verify,
        ca_file: Some(pki.ca_file.clone()),
    })
    .expect("tls config");
    let options = ClientOptions {
        client_name: Some(ClientName::new("client.test").expect("valid")),
        timeouts: Timeouts {
            connect: t,
            greeting: t,
            command: t,
            data_start: t,
            data_block: t,
            data_end: t,
        },
        transcript: Some(transcript),
        security,
        tls: Some(tls),
        tls_server_name: Some("localhost".into()),
        ..ClientOptions::default()
    };
    (options, lines)
}

fn with_credentials(mut options: ClientOptions, mechanism: Option<Mechanism>) -> ClientOptions {
    options.credentials =
        Some(Credentials::new("alice@example.com", Secret::new(PASSWORD)).expect("valid"));
    options.auth_mechanism = mechanism;
    options
}

/// Greeting and a pre-TLS EHLO offering `extensions` (STARTTLS among them when wanted).
fn plain_ehlo(extensions: &[&str]) -> Vec<Step> {
    let mut s = vec![r("220 mock.test ESMTP"), e("EHLO client.test")];
    s.extend(ehlo_reply(extensions));
    s
}

fn ehlo_reply(extensions: &[&str]) -> Vec<Step> {
    let mut s = vec![r(if extensions.is_empty() {
        "250 mock.test"
    } else {
        "250-mock.test"
    })];
    for (i, ext) in extensions.iter().enumerate() {
        let sep = if i + 1 == extensions.len() { ' ' } else { '-' };
        s.push(r(&format!("250{sep}{ext}")));
    }
    s
}

/// STARTTLS accepted, handshake, second EHLO offering `after`.
fn starttls_then(after: &[&str]) -> Vec<Step> {
    let mut s = vec![
        e("STARTTLS"),
        r("220 2.0.0 go ahead"),
        Step::TlsHandshake,
        e("EHLO client.test"),
    ];
    s.extend(ehlo_reply(after));
    s
}

fn envelope() -> Envelope {
    Envelope::new(
        Address::new("alice@example.com").expect("valid"),
        vec![Address::new("bob@example.org").expect("valid")],
    )
    .expect("envelope")
}

#[tokio::test]
async fn starttls_upgrades_forgets_old_capabilities_and_asks_again() {
    let pki = TestPki::new();
    let server = MockServer::start_tls(
        steps(vec![
            plain_ehlo(&["STARTTLS", "SIZE 1000"]),
            // A STARTTLS offer after TLS is ignored.
            starttls_then(&["PIPELINING", "AUTH PLAIN LOGIN", "STARTTLS"]),
            vec![
                e("MAIL"),
                e("RCPT"),
                e("DATA"),
                r("250 ok"),
                r("250 ok"),
                r("354 go"),
                Step::ExpectData,
                r("250 ok"),
            ],
            quit_ok(),
        ]),
        pki.server_config(Leaf::Valid),
    )
    .await;
    let (opts, lines) = options(&pki, Security::StartTls, false);
    let mut conn = Connection::connect("127.0.0.1", server.port(), opts)
        .await
        .expect("starttls works");
    assert!(conn.tls_info().expect("tls").verified);
    assert_eq!(
        conn.capabilities().size_limit(),
        None,
        "pre-TLS SIZE forgotten"
    );
    assert!(
        conn.capabilities().pipelining(),
        "post-TLS capabilities learned"
    );
    conn.send_mail(&envelope(), b"Subject: x\r\n\r\nx\r\n")
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    let transcript = lines.lines().join("\n");
    assert!(transcript.contains("* TLS established"), "{transcript}");
    assert_eq!(transcript.matches("C: STARTTLS").count(), 1);
    assert_eq!(transcript.matches("C: EHLO").count(), 2);
}

#[tokio::test]
async fn tls_required_but_not_offered_ends_the_session_before_auth_or_mail() {
    let pki = TestPki::new();
    let server = MockServer::start(steps(vec![
        plain_ehlo(&["AUTH PLAIN", "PIPELINING"]),
        quit_ok(),
    ]))
    .await;
    let (opts, _) = options(&pki, Security::Auto, false);
    let err = Connection::connect("127.0.0.1", server.port(), with_credentials(opts, None))
        .await
        .expect_err("no tls");
    assert_eq!(
        (err.kind(), err.stage()),
        (ErrorKind::TlsRequired, Stage::StartTls)
    );
    assert!(err.is_tls() && err.is_permanent());
    assert!(
        err.to_string().contains("security: tls"),
        "says how to change it: {err}"
    );
    let log = server.finish().await;
    log.assert_ok();
    let sent = log.received_str(0);
    assert!(!sent.contains("AUTH") && !sent.contains("MAIL"), "{sent}");
}

#[tokio::test]
async fn starttls_refused_with_any_code_ends_the_session() {
    let pki = TestPki::new();
    for refusal in [
        "454 4.7.0 TLS not available",
        "502 5.5.1 not implemented",
        "501 5.5.4 syntax",
        "250 sure",
    ] {
        let server = MockServer::start(steps(vec![
            plain_ehlo(&["STARTTLS", "AUTH PLAIN"]),
            vec![e("STARTTLS"), r(refusal)],
            quit_ok(),
        ]))
        .await;
        let (opts, _) = options(&pki, Security::StartTls, false);
        let err = Connection::connect("127.0.0.1", server.port(), with_credentials(opts, None))
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::TlsRequired, "{refusal}");
        let log = server.finish().await;
        log.assert_ok();
        assert!(!log.received_str(0).contains("AUTH"), "{refusal}");
    }
}

#[tokio::test]
async fn helo_only_server_cannot_satisfy_tls_required() {
    let pki = TestPki::new();
    let server = MockServer::start(steps(vec![
        vec![
            r("220 old"),
            e("EHLO"),
            r("502 what"),
            e("HELO"),
            r("250 old"),
        ],
        quit_ok(),
    ]))
    .await;
    let (opts, _) = options(&pki, Security::StartTls, false);
    let err = Connection::connect("127.0.0.1", server.port(), opts)
        .await
        .expect_err("no tls");
    assert_eq!(err.kind(), ErrorKind::TlsRequired);
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn bytes_injected_after_the_starttls_reply_are_an_error() {
    let pki = TestPki::new();
    for injected in [
        &b"220 go ahead\r\n250-injected line\r\n"[..],
        b"220 go ahead\r\n250 frag",
    ] {
        let server = MockServer::start_tls(
            steps(vec![
                plain_ehlo(&["STARTTLS"]),
                vec![
                    e("STARTTLS"),
                    Step::Raw(injected.to_vec()),
                    Step::Delay(Duration::from_millis(300)),
                ],
            ]),
            pki.server_config(Leaf::Valid),
        )
        .await;
        let (opts, _) = options(&pki, Security::StartTls, false);
        let err = Connection::connect("127.0.0.1", server.port(), with_credentials(opts, None))
            .await
            .expect_err("injection");
        assert_eq!(
            (err.kind(), err.stage()),
            (ErrorKind::Protocol, Stage::StartTls),
            "{err}"
        );
        assert!(err.to_string().contains("injection"), "{err}");
        let log = server.finish().await;
        assert!(!log.received_str(0).contains("AUTH"));
    }
}

#[tokio::test]
async fn implicit_tls_with_auth_plain() {
    let pki = TestPki::new();
    let initial = b64(&format!("\0alice@example.com\0{PASSWORD}"));
    let server = MockServer::start_tls(
        steps(vec![
            vec![Step::TlsHandshake],
            plain_ehlo(&["AUTH LOGIN PLAIN", "PIPELINING"]),
            vec![
                e(&format!("AUTH PLAIN {initial}")),
                r("235 2.7.0 Authentication successful"),
            ],
            quit_ok(),
        ]),
        pki.server_config(Leaf::Valid),
    )
    .await;
    let (opts, lines) = options(&pki, Security::Tls, false);
    let conn = Connection::connect("127.0.0.1", server.port(), with_credentials(opts, None))
        .await
        .expect("tls + auth");
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
    assert!(
        lines
            .lines()
            .contains(&"C: AUTH PLAIN <redacted>".to_owned()),
        "{:?}",
        lines.lines()
    );
}

/// Two sessions through one connector (as a pool's are): the second resumes the first's TLS
/// session (rustls' in-memory cache on both sides), and says so in its `TlsInfo` and the
/// transcript.
#[tokio::test]
async fn a_second_session_through_the_same_connector_resumes_tls() {
    let pki = TestPki::new();
    let session = || {
        steps(vec![
            vec![Step::TlsHandshake],
            plain_ehlo(&["PIPELINING"]),
            quit_ok(),
        ])
    };
    let server =
        MockServer::start_many_tls(vec![session(), session()], pki.server_config(Leaf::Valid))
            .await;
    let (opts, lines) = options(&pki, Security::Tls, false);
    let mut resumed = Vec::new();
    for _ in 0..2 {
        let conn = Connection::connect("127.0.0.1", server.port(), opts.clone())
            .await
            .expect("tls");
        let info = conn.tls_info().expect("implicit TLS").clone();
        assert!(info.handshake > Duration::ZERO);
        resumed.push(info.resumed);
        conn.quit().await.expect("quit");
    }
    server.finish().await.assert_ok();
    assert_eq!(
        resumed,
        [false, true],
        "the first is full, the second resumed"
    );
    let noted = lines
        .lines()
        .iter()
        .filter(|l| l.contains("(session resumed)"))
        .count();
    assert_eq!(noted, 1, "{:?}", lines.lines());
}

#[tokio::test]
async fn certificate_problems_are_rejected_and_skip_verify_accepts_them() {
    let pki = TestPki::new();
    for leaf in [Leaf::WrongName, Leaf::Expired, Leaf::SelfSigned] {
        for skip in [false, true] {
            let mut script = vec![Step::TlsHandshake];
            if skip {
                script.extend(plain_ehlo(&[]));
                script.extend(quit_ok());
            }
            let server = MockServer::start_tls(script, pki.server_config(leaf)).await;
            let (opts, lines) = options(&pki, Security::Tls, skip);
            let result = Connection::connect("127.0.0.1", server.port(), opts).await;
            if skip {
                let conn =
                    result.unwrap_or_else(|e| panic!("{leaf:?} accepted with skip_verify: {e}"));
                assert!(!conn.tls_info().expect("tls").verified);
                conn.quit().await.expect("quit");
                server.finish().await.assert_ok();
                assert!(
                    lines.lines().iter().any(|l| l.contains("NOT verified")),
                    "warned in transcript"
                );
            } else {
                let err = result.expect_err("bad certificate rejected");
                assert_eq!(err.kind(), ErrorKind::Tls, "{leaf:?}: {err}");
                assert!(err.hint().expect("hint").contains("CA certificates"));
                drop(server);
            }
        }
    }
}

#[tokio::test]
async fn handshake_failures_say_whether_tls_was_implicit_or_starttls() {
    let pki = TestPki::new();
    // Implicit TLS: the handshake is part of connecting.
    let server =
        MockServer::start_tls(vec![Step::TlsHandshake], pki.server_config(Leaf::WrongName)).await;
    let (opts, _) = options(&pki, Security::Tls, false);
    let err = Connection::connect("127.0.0.1", server.port(), opts)
        .await
        .expect_err("certificate for another name");
    assert_eq!((err.kind(), err.stage()), (ErrorKind::Tls, Stage::Connect));
    let shown = err.to_string();
    assert!(shown.contains("TLS handshake (implicit TLS)"), "{shown}");
    assert!(!shown.contains("STARTTLS"), "{shown}");
    drop(server);

    // STARTTLS: the same certificate, after the server's 220.
    let server = MockServer::start_tls(
        steps(vec![
            plain_ehlo(&["STARTTLS"]),
            vec![e("STARTTLS"), r("220 2.0.0 go ahead"), Step::TlsHandshake],
        ]),
        pki.server_config(Leaf::WrongName),
    )
    .await;
    let (opts, _) = options(&pki, Security::StartTls, false);
    let err = Connection::connect("127.0.0.1", server.port(), opts)
        .await
        .expect_err("certificate for another name");
    assert_eq!((err.kind(), err.stage()), (ErrorKind::Tls, Stage::StartTls));
    let shown = err.to_string();
    assert!(shown.contains("TLS handshake after STARTTLS"), "{shown}");
    assert!(!shown.contains("implicit"), "{shown}");
    drop(server);
}

#[tokio::test]
async fn plain_client_on_an_implicit_tls_port_times_out_at_greeting_with_a_hint() {
    let pki = TestPki::new();
    let server =
        MockServer::start_tls(vec![Step::TlsHandshake], pki.server_config(Leaf::Valid)).await;
    let (mut opts, _) = options(&pki, Security::StartTls, false);
    opts.timeouts.greeting = Duration::from_millis(500);
    let err = Connection::connect("127.0.0.1", server.port(), opts)
        .await
        .expect_err("silent server");
    assert!(err.is_timeout());
    assert_eq!(err.stage(), Stage::Greeting);
    assert!(err.hint().expect("hint").contains("465"));
    drop(server);
}

#[tokio::test]
async fn tls_client_on_a_plain_port_fails_the_handshake_without_waiting() {
    let pki = TestPki::new();
    let server = MockServer::start(vec![
        r("220 plain.test ESMTP"),
        Step::Delay(Duration::from_secs(3)),
    ])
    .await;
    let (opts, _) = options(&pki, Security::Tls, false);
    let err = Connection::connect("127.0.0.1", server.port(), opts)
        .await
        .expect_err("not TLS");
    assert_eq!(
        err.kind(),
        ErrorKind::Tls,
        "a handshake error, not a timeout: {err}"
    );
    drop(server);
}

#[tokio::test]
async fn auth_login_answers_by_round_whatever_the_prompt() {
    let pki = TestPki::new();
    for (user_prompt, pass_prompt) in [
        ("Username:", "Password:"),
        ("User Name\0", "Password\0"),
        ("anything", "else"),
    ] {
        let server = MockServer::start_tls(
            steps(vec![
                plain_ehlo(&["STARTTLS"]),
                starttls_then(&["AUTH LOGIN"]),
                vec![e("AUTH LOGIN"), r(&format!("334 {}", b64(user_prompt)))],
                vec![
                    e(&b64("alice@example.com")),
                    r(&format!("334 {}", b64(pass_prompt))),
                ],
                vec![e(&b64(PASSWORD)), r("235 ok")],
                quit_ok(),
            ]),
            pki.server_config(Leaf::Valid),
        )
        .await;
        let (opts, lines) = options(&pki, Security::StartTls, false);
        let conn = Connection::connect("127.0.0.1", server.port(), with_credentials(opts, None))
            .await
            .expect("login");
        conn.quit().await.expect("quit");
        server.finish().await.assert_ok();
        let t = lines.lines();
        assert!(t.contains(&"C: AUTH LOGIN".to_owned()));
        assert_eq!(
            t.iter().filter(|l| *l == "C: <redacted>").count(),
            2,
            "{t:?}"
        );
    }
}

/// The OAuth 2.0 access token used as the XOAUTH2 secret.
const TOKEN: &str = "ya29.a0AfB_byC-Test_Token.42";

/// The XOAUTH2 initial response for alice and [`TOKEN`], built from the format Google and
/// Microsoft document: base64("user=" user ^A "auth=Bearer " token ^A ^A).
fn xoauth2_initial() -> String {
    b64(&format!(
        "user=alice@example.com\x01auth=Bearer {TOKEN}\x01\x01"
    ))
}

fn xoauth2_options(pki: &TestPki) -> (ClientOptions, TranscriptBuffer) {
    let (mut opts, lines) = options(pki, Security::StartTls, false);
    opts.credentials =
        Some(Credentials::new("alice@example.com", Secret::new(TOKEN)).expect("valid"));
    opts.auth_mechanism = Some(Mechanism::XOAuth2);
    (opts, lines)
}

/// Fails if the token, or any base64 form of it the client builds, is in `text`.
fn assert_no_token(text: &str) {
    for secret in [TOKEN.to_owned(), xoauth2_initial(), b64(TOKEN)] {
        assert!(
            !text.contains(&secret),
            "secret {secret:?} leaked in:\n{text}"
        );
    }
}

#[tokio::test]
async fn xoauth2_success_sends_the_exact_initial_response_and_keeps_the_token_out_of_the_transcript(
) {
    let pki = TestPki::new();
    let auth_line = format!("AUTH XOAUTH2 {}", xoauth2_initial());
    let server = MockServer::start_tls(
        steps(vec![
            plain_ehlo(&["STARTTLS"]),
            starttls_then(&["AUTH LOGIN PLAIN XOAUTH2"]),
            vec![e(&auth_line), r("235 2.7.0 Accepted")],
            quit_ok(),
        ]),
        pki.server_config(Leaf::Valid),
    )
    .await;
    let (opts, lines) = xoauth2_options(&pki);
    let conn = Connection::connect("127.0.0.1", server.port(), opts)
        .await
        .expect("235 means authenticated");
    assert!(conn.is_usable());
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    // Expect only checks a prefix: the whole line, and nothing else in its place, is checked here.
    assert!(
        log.lines[0].contains(&auth_line),
        "the exact AUTH line: {:?}",
        log.lines[0]
    );
    assert!(
        log.received_str(0)
            .ends_with(&format!("\r\n{auth_line}\r\nQUIT\r\n")),
        "AUTH, then nothing but QUIT: {:?}",
        log.received_str(0)
    );
    let transcript = lines.lines();
    assert!(
        transcript.contains(&"C: AUTH XOAUTH2 <redacted>".to_owned()),
        "{transcript:?}"
    );
    assert!(
        transcript.contains(&"S: 235 2.7.0 Accepted".to_owned()),
        "{transcript:?}"
    );
    assert_no_token(&transcript.join("\n"));
}

#[tokio::test]
async fn xoauth2_error_challenge_gets_an_empty_reply_then_fails() {
    let pki = TestPki::new();
    let auth_line = format!("AUTH XOAUTH2 {}", xoauth2_initial());
    let challenge =
        b64(r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#);
    let server = MockServer::start_tls(
        steps(vec![
            plain_ehlo(&["STARTTLS"]),
            starttls_then(&["AUTH XOAUTH2 PLAIN"]),
            vec![e(&auth_line), r(&format!("334 {challenge}"))],
            // Expect("") matches any line; the bytes are checked exactly below.
            vec![e(""), r("535 5.7.8 Username and Password not accepted")],
            quit_ok(),
        ]),
        pki.server_config(Leaf::Valid),
    )
    .await;
    let (opts, lines) = xoauth2_options(&pki);
    let err = Connection::connect("127.0.0.1", server.port(), opts)
        .await
        .expect_err("535");
    assert_eq!((err.kind(), err.stage()), (ErrorKind::Auth, Stage::Auth));
    assert_eq!(err.reply().map(|r| r.code().value()), Some(535));
    assert!(err.is_permanent());
    assert!(err.hint().expect("hint").contains("App Password"));
    let log = server.finish().await;
    log.assert_ok();
    // The answer to the error challenge is an empty line: exactly CRLF, then QUIT.
    let sent = log.received_str(0);
    assert!(
        sent.ends_with(&format!("\r\n{auth_line}\r\n\r\nQUIT\r\n")),
        "AUTH, an empty line, QUIT: {sent:?}"
    );
    assert_eq!(
        log.lines[0][log.lines[0].len() - 3..],
        [auth_line.as_str(), "", "QUIT"]
    );
    assert_no_token(&format!("{}\n{err}\n{err:?}", lines.lines().join("\n")));
}

#[tokio::test]
async fn xoauth2_a_second_challenge_after_the_empty_reply_is_cancelled() {
    let pki = TestPki::new();
    let auth_line = format!("AUTH XOAUTH2 {}", xoauth2_initial());
    let challenge = b64(r#"{"status":"401","schemes":"bearer"}"#);
    let server = MockServer::start_tls(
        steps(vec![
            plain_ehlo(&["STARTTLS"]),
            starttls_then(&["AUTH XOAUTH2"]),
            vec![e(&auth_line), r(&format!("334 {challenge}"))],
            // A server that challenges again instead of failing: the client cancels with "*".
            vec![e(""), r(&format!("334 {challenge}"))],
            vec![e("*"), r("501 5.7.0 authentication cancelled")],
            quit_ok(),
        ]),
        pki.server_config(Leaf::Valid),
    )
    .await;
    let (opts, lines) = xoauth2_options(&pki);
    let err = Connection::connect("127.0.0.1", server.port(), opts)
        .await
        .expect_err("cancelled");
    assert_eq!((err.kind(), err.stage()), (ErrorKind::Auth, Stage::Auth));
    assert_eq!(err.reply().map(|r| r.code().value()), Some(501));
    let log = server.finish().await;
    log.assert_ok();
    let sent = log.received_str(0);
    assert!(
        sent.ends_with(&format!("\r\n{auth_line}\r\n\r\n*\r\nQUIT\r\n")),
        "AUTH, an empty line, \"*\", QUIT: {sent:?}"
    );
    let transcript = lines.lines();
    assert!(
        transcript.iter().any(|l| l.contains("cancelling AUTH")),
        "the cancel is noted: {transcript:?}"
    );
    assert_no_token(&transcript.join("\n"));
}

#[tokio::test]
async fn malformed_challenges_are_cancelled_and_rounds_are_capped() {
    let pki = TestPki::new();
    // A challenge that is not base64 gets "*".
    let server = MockServer::start_tls(
        steps(vec![
            plain_ehlo(&["STARTTLS"]),
            starttls_then(&["AUTH LOGIN"]),
            vec![
                e("AUTH LOGIN"),
                r("334 this is not base64!"),
                e("*"),
                r("501 5.7.0 cancelled"),
            ],
            quit_ok(),
        ]),
        pki.server_config(Leaf::Valid),
    )
    .await;
    let (opts, _) = options(&pki, Security::StartTls, false);
    let err = Connection::connect("127.0.0.1", server.port(), with_credentials(opts, None))
        .await
        .expect_err("cancelled");
    assert_eq!(err.kind(), ErrorKind::Auth);
    server.finish().await.assert_ok();

    // A server that challenges forever is cut off.
    let mut script = steps(vec![
        plain_ehlo(&["STARTTLS"]),
        starttls_then(&["AUTH LOGIN"]),
        vec![e("AUTH LOGIN")],
    ]);
    for _ in 0..40 {
        script.push(r("334 VXNlcm5hbWU6"));
        script.push(e(""));
    }
    let server = MockServer::start_tls(script, pki.server_config(Leaf::Valid)).await;
    let (opts, _) = options(&pki, Security::StartTls, false);
    let err = Connection::connect("127.0.0.1", server.port(), with_credentials(opts, None))
        .await
        .expect_err("capped");
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(err.to_string().contains("AUTH challenges"), "{err}");
    drop(server);
}

#[tokio::test]
async fn no_auth_over_plain_text_unless_explicitly_allowed() {
    let pki = TestPki::new();
    let server = MockServer::start(steps(vec![plain_ehlo(&["AUTH PLAIN"]), quit_ok()])).await;
    let (opts, _) = options(&pki, Security::None, false);
    let err = Connection::connect("127.0.0.1", server.port(), with_credentials(opts, None))
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.to_string().contains("unencrypted"));
    let log = server.finish().await;
    log.assert_ok();
    assert!(!log.received_str(0).contains("AUTH"));

    let initial = b64(&format!("\0alice@example.com\0{PASSWORD}"));
    let server = MockServer::start(steps(vec![
        plain_ehlo(&["AUTH PLAIN"]),
        vec![e(&format!("AUTH PLAIN {initial}")), r("235 ok")],
        quit_ok(),
    ]))
    .await;
    let (mut opts, _) = options(&pki, Security::None, false);
    opts.allow_insecure_auth = true;
    let conn = Connection::connect("127.0.0.1", server.port(), with_credentials(opts, None))
        .await
        .expect("allowed");
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn mechanism_choice() {
    let pki = TestPki::new();
    // (offered, configured, expected AUTH line prefix or None for an error before AUTH)
    let cases: [(&str, Option<Mechanism>, Option<&str>); 4] = [
        ("AUTH LOGIN PLAIN", None, Some("AUTH PLAIN")),
        ("AUTH=LOGIN", None, Some("AUTH LOGIN")),
        ("AUTH PLAIN", Some(Mechanism::XOAuth2), None),
        ("AUTH CRAM-MD5", None, None),
    ];
    for (offered, configured, expected) in cases {
        let mut script = steps(vec![plain_ehlo(&["STARTTLS"]), starttls_then(&[offered])]);
        if let Some(line) = expected {
            script.extend([e(line), r("535 5.7.8 no")]);
        }
        script.extend(quit_ok());
        let server = MockServer::start_tls(script, pki.server_config(Leaf::Valid)).await;
        let (opts, _) = options(&pki, Security::StartTls, false);
        let err = Connection::connect(
            "127.0.0.1",
            server.port(),
            with_credentials(opts, configured),
        )
        .await
        .expect_err("fails");
        assert_eq!(err.kind(), ErrorKind::Auth, "{offered}");
        if expected.is_none() {
            assert!(err.reply().is_none(), "refused before sending AUTH: {err}");
        }
        server.finish().await.assert_ok();
    }
}

#[tokio::test]
async fn secrets_never_appear_in_transcripts_errors_or_debug() {
    let pki = TestPki::new();
    let server = MockServer::start_tls(
        steps(vec![
            plain_ehlo(&["STARTTLS"]),
            starttls_then(&["AUTH LOGIN"]),
            vec![e("AUTH LOGIN"), r(&format!("334 {}", b64("Username:")))],
            vec![e(""), r(&format!("334 {}", b64("Password:")))],
            vec![e(""), r("535 5.7.8 Authentication credentials invalid")],
            quit_ok(),
        ]),
        pki.server_config(Leaf::Valid),
    )
    .await;
    let (opts, lines) = options(&pki, Security::StartTls, false);
    let opts = with_credentials(opts, None);
    let options_debug = format!("{opts:?}");
    let err = Connection::connect("127.0.0.1", server.port(), opts)
        .await
        .expect_err("535");
    let log = server.finish().await;
    log.assert_ok();
    assert!(
        log.lines[0].iter().any(|l| l == &b64(PASSWORD)),
        "the server did get the password"
    );
    let everything = format!(
        "{}\n{err}\n{err:?}\n{options_debug}\n{:?}",
        lines.lines().join("\n"),
        err.hint()
    );
    for secret in [
        PASSWORD.to_owned(),
        b64(PASSWORD),
        b64(&format!("\0alice@example.com\0{PASSWORD}")),
    ] {
        assert!(
            !everything.contains(&secret),
            "secret {secret:?} leaked in:\n{everything}"
        );
    }
    assert!(everything.contains("<redacted>"));
}

#[tokio::test]
async fn a_missing_ca_file_is_a_clear_error() {
    let err = TlsConnector::new(&TlsSettings {
        skip_verify: false,
        ca_file: Some("/nonexistent/ca.pem".into()),
    })
    .expect_err("missing file");
    assert_eq!(err.kind(), ErrorKind::Tls);
    // Trust is set up before any connection, whichever the security mode: not a STARTTLS error.
    assert_eq!(err.stage(), Stage::Connect, "{err}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
