//! XOAUTH2 from the configuration file to the wire: `auth: xoauth2` and the token in `pass`,
//! over implicit TLS trusted through `ca_file`, sending a notification with the Mailer.

mod support;

use base64::Engine as _;
use smtpkit::client::Transcript;
use smtpkit::message::Notification;
use smtpkit::proto::Mechanism;
use smtpkit::provider::{AuthSetting, Config, Mailer};
use support::certs::{Leaf, TestPki};
use support::mock::{quit_ok, MockServer, Step};

const USER: &str = "alice@example.com";
const TOKEN: &str = "ya29.a0AfB_byC-test.token_0123456789";

fn r(line: &str) -> Step {
    Step::reply(line)
}

fn e(prefix: &str) -> Step {
    Step::expect(prefix)
}

#[tokio::test]
async fn xoauth2_from_config_sends_the_bearer_token_over_tls() {
    let pki = TestPki::new();
    let script = vec![
        Step::TlsHandshake,
        r("220 mock.test ESMTP"),
        e("EHLO"),
        r("250-mock.test"),
        r("250 AUTH PLAIN LOGIN XOAUTH2"),
        e("AUTH XOAUTH2 "),
        r("235 2.7.0 Accepted"),
        e(&format!("MAIL FROM:<{USER}>")),
        r("250 2.1.0 ok"),
        e("RCPT TO:<bob@example.org>"),
        r("250 2.1.5 ok"),
        e("DATA"),
        r("354 go ahead"),
        Step::ExpectData,
        r("250 2.0.0 queued as Q123"),
    ]
    .into_iter()
    .chain(quit_ok())
    .collect();
    let server = MockServer::start_tls(script, pki.server_config(Leaf::Valid)).await;

    let yaml = format!(
        "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {port}\n      user: {USER}\n      pass: \"{TOKEN}\"\n      from: {USER}\n      security: tls\n      ca_file: \"{ca}\"\n      auth: xoauth2\n      retry: {{attempts: 1}}\n      timeouts: {{connect: 10s, greeting: 10s, command: 10s, data_start: 10s, data_block: 10s, data_end: 10s}}\n",
        port = server.port(),
        ca = pki.ca_file.display(),
    );
    let config = Config::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(
        config.provider(None).expect("provider").smtp.auth,
        AuthSetting::Mechanism(Mechanism::XOAuth2)
    );
    let (transcript, lines) = Transcript::buffer();
    let mailer = Mailer::with_options(&config, None, Some(transcript)).expect("mailer");
    let report = mailer
        .send(
            &Notification::new("Access Request Approval Required")
                .to("bob@example.org".parse().expect("valid"))
                .text("A new access request requires your approval."),
        )
        .await
        .expect("sent");
    mailer.close().await;
    let log = server.finish().await;
    log.assert_ok();

    assert_eq!(report.final_reply.code, 250);
    assert!(report.recipients.iter().all(|r| r.accepted));
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(log.messages.len(), 1);

    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("user={USER}\x01auth=Bearer {TOKEN}\x01\x01"));
    let auth: Vec<&String> = log.lines[0]
        .iter()
        .filter(|l| l.starts_with("AUTH"))
        .collect();
    assert_eq!(
        auth,
        [&format!("AUTH XOAUTH2 {expected}")],
        "exactly one AUTH, with the XOAUTH2 initial response"
    );

    let shown = lines.lines().join("\n");
    assert!(
        shown.contains("C: AUTH XOAUTH2 <redacted>"),
        "the transcript shows the command: {shown}"
    );
    assert!(
        !shown.contains(TOKEN) && !shown.contains(&expected),
        "the token stays out of the transcript: {shown}"
    );
}
