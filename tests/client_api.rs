//! Library API for fine control: a connector of the caller's choosing under every session,
//! and streams the caller has already secured.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use smtpkit::client::{
    ClientOptions, ConnectFuture, Connection, Connector, Credentials, Envelope, Security,
};
use smtpkit::delivery::{Pool, PoolSettings};
use smtpkit::proto::{Address, MailParams, Notify, RcptParams, Ret, Secret};
use smtpkit::ErrorKind;
use support::mock::{ehlo_ok, quit_ok, MockServer, Step};

/// Dials one address whatever host it is asked for, and counts its calls.
#[derive(Debug)]
struct FixedRelay {
    addr: std::net::SocketAddr,
    calls: AtomicUsize,
    asked: std::sync::Mutex<Vec<(String, u16)>>,
}

impl Connector for FixedRelay {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> ConnectFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.asked
            .lock()
            .expect("lock")
            .push((host.to_owned(), port));
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn smtpkit::client::Stream>)
        })
    }
}

fn envelope() -> Envelope {
    Envelope::new(
        Address::new("a@example.org").expect("valid"),
        vec![Address::new("b@example.org").expect("valid")],
    )
    .expect("envelope")
}

fn transaction() -> Vec<Step> {
    vec![
        Step::expect("MAIL FROM:<a@example.org>"),
        Step::reply("250 ok"),
        Step::expect("RCPT TO:<b@example.org>"),
        Step::reply("250 ok"),
        Step::expect("DATA"),
        Step::reply("354 go"),
        Step::ExpectData,
        Step::reply("250 ok queued as C1"),
    ]
}

#[tokio::test]
async fn sessions_and_pools_open_their_streams_through_the_connector() {
    let script: Vec<Step> = [ehlo_ok(&[]), transaction(), quit_ok()].concat();
    let server = MockServer::start(script).await;
    let relay = Arc::new(FixedRelay {
        addr: server.addr(),
        calls: AtomicUsize::new(0),
        asked: std::sync::Mutex::new(Vec::new()),
    });
    let options = ClientOptions {
        security: Security::None,
        connector: Some(relay.clone()),
        ..ClientOptions::default()
    };
    // The name does not resolve: only the connector can have reached the mock.
    let pool = Pool::new("smtp.invalid", 2525, options, PoolSettings::default());
    let mut session = pool.get().await.expect("connected through the relay");
    let report = session
        .send_mail(&envelope(), b"Subject: via relay\r\n\r\nhi\r\n")
        .await
        .expect("sent");
    assert_eq!(report.queue_id().as_deref(), Some("C1"));
    drop(session);
    pool.close_idle().await;
    assert_eq!(relay.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        *relay.asked.lock().expect("lock"),
        vec![("smtp.invalid".to_owned(), 2525)]
    );
    server.finish().await.assert_ok();
}

#[derive(Debug)]
struct Refusing;

impl Connector for Refusing {
    fn connect<'a>(&'a self, _host: &'a str, _port: u16) -> ConnectFuture<'a> {
        Box::pin(async {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "tunnel is down",
            ))
        })
    }
}

#[tokio::test]
async fn a_connector_failure_is_a_connect_error_naming_it() {
    let options = ClientOptions {
        security: Security::None,
        connector: Some(Arc::new(Refusing)),
        ..ClientOptions::default()
    };
    let err = Connection::connect("smtp.example.com", 587, options)
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("Refusing") && text.contains("tunnel is down"),
        "{text}"
    );
}

fn auth_script() -> Vec<Step> {
    [
        ehlo_ok(&["AUTH PLAIN"]),
        vec![
            // base64("\0user\0pass")
            Step::expect("AUTH PLAIN AHVzZXIAcGFzcw=="),
            Step::reply("235 2.7.0 ok"),
        ],
        quit_ok(),
    ]
    .concat()
}

#[tokio::test]
async fn auth_goes_over_a_stream_the_caller_secured_and_not_over_a_plain_one() {
    let credentials = Credentials::new("user", Secret::new("pass")).expect("valid");

    // Declared secure by the caller: AUTH with the default (TLS-requiring) options.
    let server = MockServer::start(auth_script()).await;
    let stream = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let mut conn = Connection::from_secured_stream(stream, ClientOptions::default())
        .await
        .expect("greeted");
    assert!(conn.is_secure() && conn.tls_info().is_none());
    conn.authenticate(&credentials, None).await.expect("235");
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();

    // The same stream not declared secure: AUTH is refused before anything is sent.
    let server = MockServer::start([ehlo_ok(&["AUTH PLAIN"]), quit_ok()].concat()).await;
    let stream = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let mut conn = Connection::from_stream(stream, ClientOptions::default())
        .await
        .expect("greeted");
    assert!(!conn.is_secure());
    let err = conn
        .authenticate(&credentials, None)
        .await
        .expect_err("refused in plain text");
    assert_eq!(err.kind(), ErrorKind::Auth);
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert!(!log.received_str(0).contains("AUTH"));
}

#[tokio::test]
async fn starttls_is_refused_on_a_stream_the_caller_secured() {
    let server = MockServer::start([ehlo_ok(&["STARTTLS"]), vec![Step::ExpectEof]].concat()).await;
    let stream = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let conn = Connection::from_secured_stream(stream, ClientOptions::default())
        .await
        .expect("greeted");
    let err = conn.starttls().await.expect_err("already secured");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let log = server.finish().await;
    log.assert_ok();
    assert!(!log.received_str(0).contains("STARTTLS"));
}

fn dsn_envelope(drop_unsupported: bool) -> Envelope {
    let b = Address::new("b@example.org").expect("valid");
    Envelope::new(
        Address::new("a@example.org").expect("valid"),
        vec![b.clone()],
    )
    .expect("envelope")
    .with_mail_params(MailParams {
        ret: Some(Ret::Headers),
        envid: Some("order 42+x".into()),
        mt_priority: Some(4),
        drop_unsupported,
        ..MailParams::default()
    })
    .with_rcpt_params(
        &b,
        RcptParams {
            notify: Some(Notify::On {
                success: false,
                failure: true,
                delay: true,
            }),
            orcpt: Some(Address::new("b+orig@example.org").expect("valid")),
        },
    )
    .expect("a recipient of the envelope")
}

fn plain() -> ClientOptions {
    ClientOptions {
        security: Security::None,
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn dsn_and_priority_parameters_go_on_the_wire_xtext_encoded_when_offered() {
    let script = [
        ehlo_ok(&["DSN", "MT-PRIORITY"]),
        vec![
            Step::expect("MAIL FROM:<a@example.org> RET=HDRS ENVID=order+2042+2Bx MT-PRIORITY=4"),
            Step::reply("250 ok"),
            Step::expect(
                "RCPT TO:<b@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b+2Borig@example.org",
            ),
            Step::reply("250 ok"),
            Step::expect("DATA"),
            Step::reply("354 go"),
            Step::ExpectData,
            Step::reply("250 ok"),
        ],
        quit_ok(),
    ]
    .concat();
    let server = MockServer::start(script).await;
    let mut conn = Connection::connect("127.0.0.1", server.port(), plain())
        .await
        .expect("connected");
    conn.send_mail(&dsn_envelope(false), b"Subject: dsn\r\n\r\nhi\r\n")
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    let lines = &log.lines[0];
    assert!(
        lines.contains(
            &"MAIL FROM:<a@example.org> RET=HDRS ENVID=order+2042+2Bx MT-PRIORITY=4".to_owned()
        ),
        "{lines:?}"
    );
    assert!(lines.contains(
        &"RCPT TO:<b@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b+2Borig@example.org"
            .to_owned()
    ));
}

#[tokio::test]
async fn parameters_the_server_does_not_offer_fail_before_sending_or_are_dropped_when_asked() {
    // Not offered, not droppable: nothing is sent, the error names the extension.
    let server = MockServer::start([ehlo_ok(&[]), quit_ok()].concat()).await;
    let mut conn = Connection::connect("127.0.0.1", server.port(), plain())
        .await
        .expect("connected");
    let err = conn
        .send_mail(&dsn_envelope(false), b"Subject: dsn\r\n\r\nhi\r\n")
        .await
        .expect_err("DSN not offered");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("DSN"), "{err}");
    assert!(conn.is_usable());
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert!(!log.received_str(0).contains("MAIL"));

    // Droppable: sent without them, and the transcript says what was dropped.
    let script = [
        ehlo_ok(&[]),
        vec![
            Step::expect("MAIL FROM:<a@example.org>"),
            Step::reply("250 ok"),
            Step::expect("RCPT TO:<b@example.org>"),
            Step::reply("250 ok"),
            Step::expect("DATA"),
            Step::reply("354 go"),
            Step::ExpectData,
            Step::reply("250 ok"),
        ],
        quit_ok(),
    ]
    .concat();
    let server = MockServer::start(script).await;
    let (transcript, lines) = smtpkit::client::Transcript::buffer();
    let options = ClientOptions {
        transcript: Some(transcript),
        ..plain()
    };
    let mut conn = Connection::connect("127.0.0.1", server.port(), options)
        .await
        .expect("connected");
    conn.send_mail(&dsn_envelope(true), b"Subject: dsn\r\n\r\nhi\r\n")
        .await
        .expect("sent without DSN");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert!(log.lines[0].contains(&"MAIL FROM:<a@example.org>".to_owned()));
    assert!(log.lines[0].contains(&"RCPT TO:<b@example.org>".to_owned()));
    let text = lines.lines().join("\n");
    assert!(
        text.contains("dropped RET: the server does not offer DSN"),
        "{text}"
    );
    assert!(text.contains("dropped NOTIFY"), "{text}");
}

#[tokio::test]
async fn requiretls_is_never_dropped_and_needs_tls() {
    let server = MockServer::start([ehlo_ok(&["REQUIRETLS"]), quit_ok()].concat()).await;
    let mut conn = Connection::connect("127.0.0.1", server.port(), plain())
        .await
        .expect("connected");
    let envelope = envelope().with_mail_params(MailParams {
        requiretls: true,
        drop_unsupported: true,
        ..MailParams::default()
    });
    let err = conn
        .send_mail(&envelope, b"Subject: tls\r\n\r\nhi\r\n")
        .await
        .expect_err("plain-text session");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("REQUIRETLS"), "{err}");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert!(!log.received_str(0).contains("MAIL"));
}

/// A plain-text client on an implicit-TLS port gets no greeting: smtpkit probes the port,
/// finds TLS, and says so after a few seconds instead of waiting out the greeting timeout
/// (here 60 s, so a result before it can only come from the probe).
#[cfg(feature = "server")]
#[tokio::test]
async fn a_missing_greeting_on_an_implicit_tls_port_is_diagnosed() {
    use smtpkit::server::{LocalCa, Server, ServerConfig};
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = LocalCa::generate(&["127.0.0.1".into()]).expect("ca");
    let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), dir.path().into());
    config.tls = Some(ca.server_config);
    config.implicit_tls = true;
    let server = Server::bind(config).await.expect("bind");
    let port = server.local_addr().port();
    let task = tokio::spawn(server.run_until(std::future::pending()));

    let mut options = ClientOptions {
        security: Security::StartTls,
        ..ClientOptions::default()
    };
    options.timeouts.greeting = std::time::Duration::from_secs(60);
    let attempt = Connection::connect("127.0.0.1", port, options);
    let err = tokio::time::timeout(std::time::Duration::from_secs(50), attempt)
        .await
        .expect("diagnosed before the greeting timeout")
        .expect_err("no SMTP greeting in plain text");
    assert_eq!(err.stage(), smtpkit::Stage::Greeting);
    let text = err.to_string();
    assert!(
        text.contains("implicit TLS") && text.contains("security: tls"),
        "{text}"
    );
    assert!(
        err.hint().is_some_and(|h| h.contains("465")),
        "{:?}",
        err.hint()
    );
    task.abort();
}

/// A slow greeting on a plain port is not mistaken for TLS: the probe finds SMTP, and the
/// session goes on as usual.
#[tokio::test]
async fn a_slow_plain_greeting_is_waited_for() {
    let script = [
        vec![Step::Delay(std::time::Duration::from_secs(4))],
        ehlo_ok(&[]),
        quit_ok(),
    ]
    .concat();
    // The mock serves the probe's connection too: it accepts connections one after the other,
    // so the probe's connection waits in the backlog and reads nothing: "not TLS".
    let server = MockServer::start(script).await;
    let conn = Connection::connect("127.0.0.1", server.port(), plain())
        .await
        .expect("greeted after the delay");
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}
