//! One `Sender` interface: a session, a pool, a mailer, a stub and a directory all take the
//! same envelope and bytes, so code written against it can be tested without a server.

mod support;

use smtpkit::client::{ClientOptions, Connection, Envelope, Security, Sender, Sent};
use smtpkit::delivery::{FileSender, Pool, PoolSettings, StubSender};
use smtpkit::proto::Address;
use smtpkit::provider::{Config, Mailer};
use smtpkit::{ErrorKind, Stage};
use support::truth_server::{Behaviour, TruthServer};

/// Code of "the user's" that only knows the trait.
async fn notify_approvers(sender: &mut impl Sender, marker: &str) -> smtpkit::Result<Sent> {
    let envelope = Envelope::new(
        Address::new("noreply@example.com")?,
        vec![
            Address::new("ok-approver@example.org")?,
            Address::new("bad-approver@example.org")?,
        ],
    )?;
    let message = format!(
        "From: noreply@example.com\r\nMessage-ID: <{marker}@example.com>\r\nSubject: approve\r\n\r\n{marker}\r\n"
    );
    sender.send(&envelope, message.as_bytes()).await
}

fn addresses(list: &[Address]) -> Vec<&str> {
    list.iter().map(Address::as_str).collect()
}

fn plain() -> ClientOptions {
    ClientOptions {
        security: Security::None,
        ..ClientOptions::default()
    }
}

/// What every real sender must report for `notify_approvers` against the truth server.
fn check_real(sent: &Sent, server: &TruthServer, marker: &str) {
    assert_eq!(addresses(&sent.accepted), ["ok-approver@example.org"]);
    assert_eq!(addresses(&sent.refused), ["bad-approver@example.org"]);
    let truth = server.truth();
    let stored = truth.stored_with(marker);
    assert_eq!(stored.len(), 1);
    assert_eq!(sent.queue_id.as_deref(), Some(stored[0].queue_id.as_str()));
    assert_eq!(stored[0].from, "noreply@example.com");
}

#[tokio::test]
async fn a_connection_a_pool_and_a_mailer_are_senders() {
    let server = TruthServer::start(Behaviour::default()).await;

    let mut conn = Connection::connect("127.0.0.1", server.port, plain())
        .await
        .expect("connected");
    let sent = notify_approvers(&mut conn, "via-connection")
        .await
        .expect("sent");
    check_real(&sent, &server, "via-connection");
    conn.quit().await.expect("quit");

    let mut pool = Pool::new("127.0.0.1", server.port, plain(), PoolSettings::default());
    let sent = notify_approvers(&mut pool, "via-pool").await.expect("sent");
    check_real(&sent, &server, "via-pool");
    pool.close_idle().await;

    let yaml = format!(
        "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {}\n      from: other@example.com\n      security: none\n      auth: none\n",
        server.port
    );
    let mut mailer =
        Mailer::new(&Config::from_yaml_str(&yaml).expect("config"), None).expect("mailer");
    let sent = notify_approvers(&mut mailer, "via-mailer")
        .await
        .expect("sent");
    // The message goes as given: its own envelope sender, not the provider's `from`.
    check_real(&sent, &server, "via-mailer");
    let report = mailer
        .send_message(
            &Envelope::new(
                Address::new("noreply@example.com").expect("valid"),
                vec![Address::new("ok-x@example.org").expect("valid")],
            )
            .expect("envelope"),
            b"Message-ID: <kept-id@example.com>\r\nSubject: id\r\n\r\nid-marker\r\n",
        )
        .await
        .expect("sent");
    assert_eq!(report.message_id, "kept-id@example.com");
    mailer.close().await;
}

#[tokio::test]
async fn a_stub_records_or_refuses() {
    let mut stub = StubSender::new();
    let observer = stub.clone();
    let sent = notify_approvers(&mut stub, "stubbed").await.expect("taken");
    assert_eq!(sent.accepted.len(), 2);
    let taken = observer.messages();
    assert_eq!(taken.len(), 1, "clones share the record");
    assert_eq!(
        addresses(taken[0].envelope.to()),
        ["ok-approver@example.org", "bad-approver@example.org"]
    );
    assert!(String::from_utf8_lossy(&taken[0].message).contains("stubbed"));

    let mut refusing = StubSender::refusing(550, "5.7.1 not allowed");
    let err = notify_approvers(&mut refusing, "refused")
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.stage(), Stage::DataEnd);
    assert!(err.is_permanent());
    assert_eq!(err.reply().map(|r| r.code().value()), Some(550));
    assert!(refusing.messages().is_empty());
}

#[tokio::test]
async fn a_file_sender_writes_each_message_whole_with_its_envelope() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = FileSender::new(dir.path().join("outbox")).expect("dir");
    let first = notify_approvers(&mut files, "file-one")
        .await
        .expect("written");
    let second = notify_approvers(&mut files, "file-two")
        .await
        .expect("written");
    assert_ne!(first.queue_id, second.queue_id);
    for (sent, marker) in [(first, "file-one"), (second, "file-two")] {
        let id = sent.queue_id.expect("an id");
        let text = std::fs::read_to_string(files.path_of(&id)).expect("the file");
        assert!(
            text.starts_with("X-Envelope-From: <noreply@example.com>\r\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "X-Envelope-To: <ok-approver@example.org>, <bad-approver@example.org>\r\n"
            ),
            "{text}"
        );
        assert!(text.ends_with(&format!("\r\n{marker}\r\n")), "{text}");
    }
    let names: Vec<String> = std::fs::read_dir(dir.path().join("outbox"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
}

/// Gives `rotated-1`, `rotated-2`, … : a password that changes while the program runs.
#[derive(Debug, Default)]
struct Rotating(std::sync::atomic::AtomicUsize);

impl smtpkit::client::SecretSource for Rotating {
    fn secret(&self) -> smtpkit::client::SecretFuture<'_> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Box::pin(async move { Ok(smtpkit::proto::Secret::new(format!("rotated-{n}"))) })
    }
}

#[tokio::test]
async fn a_mailers_new_sessions_authenticate_with_the_current_secret() {
    use base64::Engine as _;
    let server = TruthServer::start(Behaviour {
        auth: true,
        ..Behaviour::default()
    })
    .await;
    let yaml = format!(
        "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {}\n      user: relay-user\n      pass: unused-fixed-password\n      from: noreply@example.com\n      security: none\n      allow_insecure_auth: true\n      auth: plain\n      pool: {{max_messages_per_connection: 1}}\n",
        server.port
    );
    let config = Config::from_yaml_str(&yaml).expect("config");
    let source = std::sync::Arc::new(Rotating::default());
    let mailer = Mailer::with_secret_source(&config, None, source).expect("mailer");
    for i in 0..2 {
        let n = smtpkit::message::Notification::new("rotating")
            .to("ok@example.org".parse().expect("valid"))
            .text(format!("rotation-{i}"));
        mailer.send(&n).await.expect("sent");
    }
    let truth = server.truth();
    let passwords: Vec<String> = truth
        .commands
        .iter()
        .flatten()
        .filter_map(|l| l.strip_prefix("AUTH PLAIN "))
        .map(|b64| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
            String::from_utf8_lossy(&raw).into_owned()
        })
        .collect();
    assert_eq!(
        passwords,
        ["\0relay-user\0rotated-1", "\0relay-user\0rotated-2"],
        "each new session asked the source"
    );
}
