//! The client against the scripted mock server: each wire rule of DESIGN.md, precisely.

mod support;

use std::time::Duration;

use smtpkit::client::{
    ClientOptions, Connection, Envelope, Greeted, Security, Timeouts, TransactionReport,
    Transcript, TranscriptBuffer,
};
use smtpkit::proto::{Address, ClientName, Command};
use smtpkit::{ErrorKind, Stage};
use support::mock::{ehlo_ok, quit_ok, MockLog, MockServer, Step};

/// A deadline no stage reaches on a loaded machine unless the server really stalls.
const GENEROUS: Duration = Duration::from_secs(10);

/// The deadline of the one stage a timeout test is about.
const SHORT: Duration = Duration::from_millis(300);

fn options() -> (ClientOptions, TranscriptBuffer) {
    let (transcript, lines) = Transcript::buffer();
    let options = ClientOptions {
        client_name: Some(ClientName::new("client.test").expect("valid")),
        timeouts: Timeouts {
            connect: GENEROUS,
            greeting: GENEROUS,
            command: GENEROUS,
            data_start: GENEROUS,
            data_block: GENEROUS,
            data_end: GENEROUS,
        },
        transcript: Some(transcript),
        security: Security::None,
        ..ClientOptions::default()
    };
    (options, lines)
}

/// Generous deadlines, except what `short` changes: only the stage under test is short, so
/// a slow connect, greeting or EHLO on a loaded machine cannot fail the test.
fn short_deadline(short: impl FnOnce(&mut Timeouts)) -> ClientOptions {
    let mut options = options().0;
    short(&mut options.timeouts);
    options
}

fn addr(s: &str) -> Address {
    Address::new(s).expect("valid address")
}

fn envelope(to: &[&str]) -> Envelope {
    Envelope::new(
        addr("sender@example.com"),
        to.iter().map(|a| addr(a)).collect(),
    )
    .expect("valid envelope")
}

fn steps(parts: Vec<Vec<Step>>) -> Vec<Step> {
    parts.into_iter().flatten().collect()
}

fn r(line: &str) -> Step {
    Step::reply(line)
}

fn e(prefix: &str) -> Step {
    Step::expect(prefix)
}

async fn connect(server: &MockServer) -> Connection {
    Connection::connect("127.0.0.1", server.port(), options().0)
        .await
        .expect("connects")
}

/// Chunks of the first connection's reads, as text.
fn reads(log: &MockLog) -> Vec<String> {
    log.reads[0]
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

const MESSAGE: &[u8] = b"Subject: test\r\n\r\nHello\r\n";

#[tokio::test]
async fn pipelined_mail_rcpt_and_data_arrive_in_one_read() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING"]),
        vec![
            e("MAIL FROM:<sender@example.com>"),
            e("RCPT TO:<a@example.org>"),
            e("RCPT TO:<b@example.org>"),
            e("DATA"),
        ],
        vec![
            r("250 2.1.0 ok"),
            r("250 2.1.5 ok"),
            r("250 2.1.5 ok"),
            r("354 go"),
        ],
        vec![Step::ExpectData, r("250 2.0.0 Ok: queued as ABC123")],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    let report = conn
        .send_mail(&envelope(&["a@example.org", "b@example.org"]), MESSAGE)
        .await
        .expect("sent");
    assert_eq!(report.queue_id().as_deref(), Some("ABC123"));
    assert_eq!(report.recipients().len(), 2);
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    let group = "MAIL FROM:<sender@example.com>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n";
    assert!(
        reads(&log).iter().any(|c| c == group),
        "one read with the whole group: {:?}",
        reads(&log)
    );
}

#[tokio::test]
async fn without_pipelining_each_command_waits_for_its_reply() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&[]),
        vec![
            e("MAIL"),
            Step::Delay(Duration::from_millis(50)),
            r("250 ok"),
        ],
        vec![
            e("RCPT TO:<a@"),
            Step::Delay(Duration::from_millis(50)),
            r("250 ok"),
        ],
        vec![
            e("RCPT TO:<b@"),
            r("250 ok"),
            e("DATA"),
            r("354 go"),
            Step::ExpectData,
            r("250 queued"),
        ],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    conn.send_mail(&envelope(&["a@example.org", "b@example.org"]), MESSAGE)
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    let chunks = reads(&log);
    for command in ["MAIL FROM", "RCPT TO:<a@", "RCPT TO:<b@", "DATA\r\n"] {
        let chunk = chunks
            .iter()
            .find(|c| c.starts_with(command))
            .expect("command seen");
        assert_eq!(
            chunk.matches("\r\n").count(),
            1,
            "{command} alone in its read: {chunk:?}"
        );
    }
}

#[tokio::test]
async fn rejected_recipients_are_reported_one_by_one_and_the_rest_get_the_message() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING", "ENHANCEDSTATUSCODES"]),
        vec![e("MAIL"), e("RCPT"), e("RCPT"), e("RCPT"), e("DATA")],
        vec![
            r("250 2.1.0 ok"),
            r("550 5.1.1 no such user"),
            r("250 2.1.5 ok"),
            r("452 4.2.2 mailbox full"),
            r("354 go"),
        ],
        vec![Step::ExpectData, r("250 2.0.0 queued as Q1")],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    let report = conn
        .send_mail(
            &envelope(&["gone@example.org", "ok@example.org", "full@example.org"]),
            MESSAGE,
        )
        .await
        .expect("partial delivery is a success");
    let rejected: Vec<(String, u16, String)> = report
        .rejected()
        .map(|r| {
            let enhanced = r
                .reply
                .enhanced_code()
                .map(|e| e.to_string())
                .unwrap_or_default();
            (r.address.to_string(), r.reply.code().value(), enhanced)
        })
        .collect();
    assert_eq!(
        rejected,
        [
            ("gone@example.org".into(), 550, "5.1.1".into()),
            ("full@example.org".into(), 452, "4.2.2".into())
        ]
    );
    assert!(report.recipients()[1].accepted());
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn all_recipients_refused_after_354_sends_a_lone_dot_then_rset() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING"]),
        vec![e("MAIL"), e("RCPT"), e("RCPT"), e("DATA")],
        vec![
            r("250 ok"),
            r("550 5.1.1 no"),
            r("550 5.1.1 no"),
            r("354 go"),
        ],
        vec![
            Step::ExpectData,
            r("554 5.5.1 no valid recipients"),
            e("RSET"),
            r("250 ok"),
        ],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    let err = conn
        .send_mail(&envelope(&["x@example.org", "y@example.org"]), MESSAGE)
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.stage(), Stage::RcptTo);
    assert!(err.is_permanent());
    assert_eq!(err.recipients().len(), 2);
    assert!(err.recipients().iter().all(|r| !r.accepted()));
    assert!(conn.is_usable());
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(
        log.messages,
        [Vec::<u8>::new()],
        "the data was only the terminating dot"
    );
    assert!(
        !log.received_str(0).contains("Hello"),
        "the body never left"
    );
}

#[tokio::test]
async fn all_recipients_refused_and_data_refused_resets_without_a_body() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING"]),
        vec![
            e("MAIL"),
            e("RCPT"),
            e("DATA"),
            r("250 ok"),
            r("550 no"),
            r("503 5.5.1 no valid recipients"),
        ],
        vec![e("RSET"), r("250 ok")],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    let err = conn
        .send_mail(&envelope(&["x@example.org"]), MESSAGE)
        .await
        .expect_err("refused");
    assert_eq!(err.stage(), Stage::RcptTo);
    assert_eq!(err.reply().map(|r| r.code().value()), Some(550));
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn mail_from_refused_in_lockstep_sends_no_recipient() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&[]),
        vec![e("MAIL"), r("553 5.7.1 sender not allowed")],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    let err = conn
        .send_mail(&envelope(&["x@example.org"]), MESSAGE)
        .await
        .expect_err("refused");
    assert_eq!(
        (err.kind(), err.stage()),
        (ErrorKind::Rejected, Stage::MailFrom)
    );
    assert!(err.is_permanent() && !err.is_transient());
    assert!(err
        .hint()
        .expect("hint")
        .contains("sender address is authorized"));
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert!(!log.received_str(0).contains("RCPT"));
}

#[tokio::test]
async fn many_messages_on_one_connection_with_a_failure_between() {
    let mut script = ehlo_ok(&["PIPELINING"]);
    for i in 0..5 {
        script.extend([
            e("MAIL"),
            e("RCPT"),
            e("DATA"),
            r("250 ok"),
            r("250 ok"),
            r("354 go"),
            Step::ExpectData,
        ]);
        if i == 2 {
            script.push(r("451 4.3.0 try later"));
        } else {
            script.push(r(&format!("250 ok id={i}")));
        }
    }
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let mut conn = connect(&server).await;
    for i in 0..5 {
        let body = format!("Subject: {i}\r\n\r\nbody {i}\r\n");
        let result = conn
            .send_mail(&envelope(&["x@example.org"]), body.as_bytes())
            .await;
        if i == 2 {
            let err = result.expect_err("451");
            assert_eq!(err.stage(), Stage::DataEnd);
            assert!(err.is_transient() && !err.is_outcome_unknown());
        } else {
            assert_eq!(result.expect("sent").queue_id(), Some(i.to_string()));
        }
    }
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.messages.len(), 5);
    assert_eq!(log.messages[4], b"Subject: 4\r\n\r\nbody 4\r\n");
}

#[tokio::test]
async fn data_rejected_after_accepted_recipients_resets() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&[]),
        vec![
            e("MAIL"),
            r("250 ok"),
            e("RCPT"),
            r("250 ok"),
            e("DATA"),
            r("451 4.3.2 not now"),
        ],
        vec![e("RSET"), r("250 ok")],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    let err = conn
        .send_mail(&envelope(&["x@example.org"]), MESSAGE)
        .await
        .expect_err("refused");
    assert_eq!(err.stage(), Stage::Data);
    assert!(err.is_transient());
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn greeting_554_is_a_permanent_refusal_and_the_client_quits() {
    let server = MockServer::start(vec![
        r("554 5.7.1 no service for you"),
        e("QUIT"),
        r("221 bye"),
    ])
    .await;
    let err = Connection::connect("127.0.0.1", server.port(), options().0)
        .await
        .expect_err("refused");
    assert_eq!(
        (err.kind(), err.stage()),
        (ErrorKind::Rejected, Stage::Greeting)
    );
    assert!(err.is_permanent());
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn greeting_421_is_transient() {
    let server = MockServer::start(vec![r("421 4.3.2 busy"), Step::Close]).await;
    let err = Connection::connect("127.0.0.1", server.port(), options().0)
        .await
        .expect_err("busy");
    assert!(err.is_transient());
    assert_eq!(err.reply().map(|r| r.code().value()), Some(421));
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn ehlo_500_or_502_falls_back_to_helo() {
    for code in ["500", "502"] {
        let server = MockServer::start(vec![
            r("220 old.test"),
            e("EHLO client.test"),
            r(&format!("{code} unrecognized")),
            e("HELO client.test"),
            r("250 old.test"),
            e("QUIT"),
            r("221 bye"),
        ])
        .await;
        let conn = connect(&server).await;
        assert!(!conn.capabilities().pipelining());
        conn.quit().await.expect("quit");
        server.finish().await.assert_ok();
    }
}

#[tokio::test]
async fn ehlo_other_failures_do_not_fall_back() {
    let server = MockServer::start(vec![
        r("220 x"),
        e("EHLO"),
        r("550 go away"),
        Step::ExpectEof,
    ])
    .await;
    let err = Connection::connect("127.0.0.1", server.port(), options().0)
        .await
        .expect_err("refused");
    assert_eq!(err.stage(), Stage::Ehlo);
    assert_eq!(err.reply().map(|r| r.code().value()), Some(550));
    let log = server.finish().await;
    log.assert_ok();
    assert!(!log.received_str(0).contains("HELO"));
}

#[tokio::test]
async fn a_trickling_greeting_still_times_out() {
    // One byte every 50 ms: each read makes progress, the whole reply never completes in time.
    let server = MockServer::start(vec![Step::Trickle {
        bytes: b"220 slooooooooooooooooooooooooooooow\r\n".to_vec(),
        interval: Duration::from_millis(50),
    }])
    .await;
    // The whole line takes ~1.8 s to arrive; a loaded machine only makes it slower.
    let err = Greeted::open(
        "127.0.0.1",
        server.port(),
        short_deadline(|t| t.greeting = SHORT),
    )
    .await
    .expect_err("times out");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.stage(), Stage::Greeting);
    assert!(err.hint().expect("hint").contains("465"));
    drop(server);
}

#[tokio::test]
async fn after_a_timeout_the_connection_is_poisoned_and_writes_nothing() {
    // EHLO, NOOP and MAIL share the command deadline, so the timeout under test is DATA's
    // (data_start): the server never answers it.
    let server =
        MockServer::start(steps(vec![ehlo_ok(&[]), vec![e("DATA"), Step::ExpectEof]])).await;
    let mut conn = Connection::connect(
        "127.0.0.1",
        server.port(),
        short_deadline(|t| t.data_start = SHORT),
    )
    .await
    .expect("connects");
    let err = conn.command(&Command::Data).await.expect_err("times out");
    assert_eq!(
        (err.kind(), err.stage()),
        (ErrorKind::Timeout, Stage::Command)
    );
    assert!(err.is_transient() && !err.is_outcome_unknown());
    assert!(!conn.is_usable());
    let err = conn.noop().await.expect_err("poisoned");
    assert_eq!(err.kind(), ErrorKind::Poisoned);
    let err = conn
        .send_mail(&envelope(&["x@example.org"]), MESSAGE)
        .await
        .expect_err("poisoned");
    assert_eq!(err.kind(), ErrorKind::Poisoned);
    drop(conn);
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(
        log.received_str(0),
        "EHLO client.test\r\nDATA\r\n",
        "nothing written after the timeout, and the session closed"
    );
}

#[tokio::test]
async fn garbage_is_a_protocol_error_that_poisons() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&[]),
        vec![e("NOOP"), Step::Raw(b"HTTP/1.1 200 OK\r\n".to_vec())],
    ]))
    .await;
    let mut conn = connect(&server).await;
    let err = conn.noop().await.expect_err("garbage");
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(!conn.is_usable());
    assert_eq!(
        conn.noop().await.expect_err("poisoned").kind(),
        ErrorKind::Poisoned
    );
    drop(conn);
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn an_endless_multiline_reply_ends_in_an_error() {
    let server = MockServer::start(vec![
        r("220 x"),
        e("EHLO"),
        Step::Endless {
            line: "250-PIPELINING".into(),
            max_bytes: 8 * 1024 * 1024,
        },
    ])
    .await;
    let err = Connection::connect("127.0.0.1", server.port(), options().0)
        .await
        .expect_err("endless");
    assert_eq!(
        (err.kind(), err.stage()),
        (ErrorKind::Protocol, Stage::Ehlo)
    );
    assert!(err.to_string().contains("more than"), "{err}");
    drop(server);
}

#[tokio::test]
async fn a_line_without_end_ends_in_an_error() {
    let server = MockServer::start(vec![
        r("220 x"),
        e("EHLO"),
        Step::Raw(vec![b'2'; 100_000]),
        Step::Delay(Duration::from_secs(2)),
    ])
    .await;
    let err = Connection::connect("127.0.0.1", server.port(), options().0)
        .await
        .expect_err("endless");
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(err.to_string().contains("longer than"), "{err}");
    drop(server);
}

#[tokio::test]
async fn connection_lost_after_the_final_dot_is_outcome_unknown() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING"]),
        vec![
            e("MAIL"),
            e("RCPT"),
            e("DATA"),
            r("250 ok"),
            r("250 ok"),
            r("354 go"),
            Step::ExpectData,
            Step::Close,
        ],
    ]))
    .await;
    let mut conn = connect(&server).await;
    let err = conn
        .send_mail(&envelope(&["x@example.org"]), MESSAGE)
        .await
        .expect_err("lost");
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert!(!err.is_transient(), "never retried silently");
    assert!(err.to_string().contains("may have been delivered"));
    assert!(!conn.is_usable());
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn timeout_after_the_final_dot_is_outcome_unknown() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&[]),
        vec![
            e("MAIL"),
            r("250 ok"),
            e("RCPT"),
            r("250 ok"),
            e("DATA"),
            r("354 go"),
            Step::ExpectData,
            // Never answers the final dot; ends when the client gives up and closes.
            Step::ExpectEof,
        ],
    ]))
    .await;
    let mut conn = Connection::connect(
        "127.0.0.1",
        server.port(),
        short_deadline(|t| t.data_end = SHORT),
    )
    .await
    .expect("connects");
    let err = conn
        .send_mail(&envelope(&["x@example.org"]), MESSAGE)
        .await
        .expect_err("timeout");
    assert_eq!(
        (err.kind(), err.stage()),
        (ErrorKind::Timeout, Stage::DataEnd)
    );
    assert!(err.is_outcome_unknown() && !err.is_transient());
    assert!(!conn.is_usable());
    drop(conn);
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.messages, [MESSAGE.to_vec()], "the whole message left");
}

#[tokio::test]
async fn connection_lost_at_rcpt_is_transient_not_unknown() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&[]),
        vec![e("MAIL"), r("250 ok"), e("RCPT"), Step::Close],
    ]))
    .await;
    let mut conn = connect(&server).await;
    let err = conn
        .send_mail(&envelope(&["x@example.org"]), MESSAGE)
        .await
        .expect_err("lost");
    assert_eq!(
        (err.kind(), err.stage()),
        (ErrorKind::Closed, Stage::RcptTo)
    );
    assert!(err.is_transient() && !err.is_outcome_unknown());
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn service_closing_421_mid_transaction_poisons_without_rset() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING"]),
        vec![
            e("MAIL"),
            e("RCPT"),
            e("DATA"),
            r("421 4.7.0 closing"),
            Step::Close,
        ],
    ]))
    .await;
    let mut conn = connect(&server).await;
    let err = conn
        .send_mail(&envelope(&["x@example.org"]), MESSAGE)
        .await
        .expect_err("421");
    assert!(err.is_transient());
    assert_eq!(err.stage(), Stage::MailFrom);
    assert!(!conn.is_usable());
    drop(conn);
    let log = server.finish().await;
    log.assert_ok();
    assert!(!log.received_str(0).contains("RSET"));
}

#[tokio::test]
async fn replies_split_into_single_bytes_parse_the_same() {
    let replies = b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n".to_vec();
    let server = MockServer::start(steps(vec![
        vec![Step::Split {
            bytes: b"220-mock\r\n220 ready\r\n".to_vec(),
            chunk: 1,
            pause: Duration::from_millis(1),
        }],
        vec![e("EHLO")],
        vec![Step::Split {
            bytes: b"250-mock\r\n250-PIPELINING\r\n250 SIZE 100000\r\n".to_vec(),
            chunk: 3,
            pause: Duration::from_millis(1),
        }],
        vec![
            e("MAIL"),
            e("RCPT"),
            e("DATA"),
            Step::Split {
                bytes: replies,
                chunk: 1,
                pause: Duration::ZERO,
            },
        ],
        vec![
            Step::ExpectData,
            Step::Split {
                bytes: b"250 queued\r\n".to_vec(),
                chunk: 2,
                pause: Duration::ZERO,
            },
        ],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    assert_eq!(conn.greeting().lines(), ["mock", "ready"]);
    assert_eq!(conn.capabilities().size_limit(), Some(100_000));
    conn.send_mail(&envelope(&["x@example.org"]), MESSAGE)
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn body_is_dot_stuffed_normalised_and_leaves_with_its_terminator_in_one_write() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING"]),
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
    ]))
    .await;
    let mut conn = connect(&server).await;
    conn.send_mail(
        &envelope(&["x@example.org"]),
        b"Subject: dots\n\n.leading\r\nbare\rcr\n..two\n.",
    )
    .await
    .expect("sent");
    conn.send_mail(&envelope(&["x@example.org"]), b".")
        .await
        .expect("a message that is only a dot");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(
        log.messages[0],
        b"Subject: dots\r\n\r\n..leading\r\nbare\r\ncr\r\n...two\r\n..\r\n"
    );
    assert_eq!(log.messages[1], b"..\r\n");
    let body_read = reads(&log)
        .into_iter()
        .find(|c| c.starts_with("Subject: dots"))
        .expect("body read");
    assert!(
        body_read.ends_with("\r\n..\r\n.\r\n"),
        "body and terminator in one read: {body_read:?}"
    );
}

#[tokio::test]
async fn size_is_announced_and_an_oversized_message_fails_before_mail() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["SIZE 100"]),
        vec![
            e("MAIL FROM:<sender@example.com> SIZE=24"),
            r("250 ok"),
            e("RCPT"),
            r("250 ok"),
        ],
        vec![e("DATA"), r("354 go"), Step::ExpectData, r("250 ok")],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    let err = conn
        .send_mail(&envelope(&["x@example.org"]), &[b'a'; 200])
        .await
        .expect_err("too big");
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    assert!(err.is_permanent());
    assert!(conn.is_usable());
    conn.send_mail(&envelope(&["x@example.org"]), MESSAGE)
        .await
        .expect("small one fits");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(
        log.received_str(0).matches("MAIL FROM").count(),
        1,
        "nothing sent for the big one"
    );
}

#[tokio::test]
async fn eight_bit_and_utf8_need_their_extensions() {
    // Without 8BITMIME / SMTPUTF8: refused before anything is written.
    let server = MockServer::start(steps(vec![ehlo_ok(&["PIPELINING"]), quit_ok()])).await;
    let mut conn = connect(&server).await;
    let err = conn
        .send_mail(
            &envelope(&["x@example.org"]),
            "Subject: café\r\n\r\n".as_bytes(),
        )
        .await
        .expect_err("8bit");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let err = conn
        .send_mail(&envelope(&["jörg@example.org"]), MESSAGE)
        .await
        .expect_err("utf8");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert!(!log.received_str(0).contains("MAIL"));

    // With them: the parameters are sent, and only when needed.
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["8BITMIME", "SMTPUTF8"]),
        vec![
            e("MAIL FROM:<sender@example.com> BODY=8BITMIME SMTPUTF8"),
            r("250 ok"),
            e("RCPT TO:<jörg@"),
            r("250 ok"),
        ],
        vec![e("DATA"), r("354 go"), Step::ExpectData, r("250 ok")],
        vec![
            e("MAIL FROM:<sender@example.com>"),
            r("250 ok"),
            e("RCPT"),
            r("250 ok"),
        ],
        vec![e("DATA"), r("354 go"), Step::ExpectData, r("250 ok")],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    conn.send_mail(
        &envelope(&["jörg@example.org"]),
        "Subject: café\r\n\r\n".as_bytes(),
    )
    .await
    .expect("sent");
    conn.send_mail(&envelope(&["x@example.org"]), MESSAGE)
        .await
        .expect("plain message, plain MAIL");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert!(
        log.received_str(0)
            .contains("\r\nMAIL FROM:<sender@example.com>\r\n"),
        "no parameters when not needed"
    );
}

#[tokio::test]
async fn raw_utf8_headers_ask_for_smtputf8_when_offered() {
    // RFC 6532 headers need SMTPUTF8 even with an ASCII envelope; 8-bit only in the body
    // needs BODY=8BITMIME alone.
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["8BITMIME", "SMTPUTF8"]),
        vec![
            e("MAIL FROM:<sender@example.com> BODY=8BITMIME SMTPUTF8"),
            r("250 ok"),
            e("RCPT TO:<x@example.org>"),
            r("250 ok"),
        ],
        vec![e("DATA"), r("354 go"), Step::ExpectData, r("250 ok")],
        vec![
            e("MAIL FROM:<sender@example.com> BODY=8BITMIME"),
            r("250 ok"),
            e("RCPT TO:<x@example.org>"),
            r("250 ok"),
        ],
        vec![e("DATA"), r("354 go"), Step::ExpectData, r("250 ok")],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    conn.send_mail(
        &envelope(&["x@example.org"]),
        "From: Jörg <sender@example.com>\r\nSubject: Grüße\r\n\r\nhello\r\n".as_bytes(),
    )
    .await
    .expect("UTF-8 headers sent");
    conn.send_mail(
        &envelope(&["x@example.org"]),
        "Subject: plain\r\n\r\nGrüße\r\n".as_bytes(),
    )
    .await
    .expect("8-bit body sent");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    let sent = log.received_str(0);
    assert!(
        sent.contains("\r\nMAIL FROM:<sender@example.com> BODY=8BITMIME\r\n"),
        "an 8-bit body alone does not ask for SMTPUTF8: {sent}"
    );

    // A server without SMTPUTF8 cannot take raw UTF-8 headers (RFC 6531 §3.2): refused
    // before anything is sent, and the session stays usable.
    let server = MockServer::start(steps(vec![ehlo_ok(&["8BITMIME"]), quit_ok()])).await;
    let mut conn = connect(&server).await;
    let err = conn
        .send_mail(
            &envelope(&["x@example.org"]),
            "Subject: Grüße\r\n\r\nhello\r\n".as_bytes(),
        )
        .await
        .expect_err("needs SMTPUTF8");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("SMTPUTF8"), "{err}");
    assert!(conn.is_usable());
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert!(!log.received_str(0).contains("MAIL"));
}

#[tokio::test]
async fn a_line_over_998_octets_is_refused_before_anything_is_sent() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING", "8BITMIME"]),
        vec![
            e("MAIL FROM:<sender@example.com>"),
            e("RCPT TO:<x@example.org>"),
            e("DATA"),
            r("250 ok"),
            r("250 ok"),
            r("354 go"),
            Step::ExpectData,
            r("250 ok"),
        ],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    // Line 3 (bare LF line ends count too) is 999 octets.
    let long = format!("Subject: long\n\n{}\r\nshort\r\n", "a".repeat(999));
    let err = conn
        .send_mail(&envelope(&["x@example.org"]), long.as_bytes())
        .await
        .expect_err("line too long");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("line 3") && shown.contains("999 octets") && shown.contains("998"),
        "{shown}"
    );
    assert!(conn.is_usable(), "nothing was written");
    // 998 octets is the limit; a leading dot doubled for transparency does not count.
    let at_limit = format!("Subject: ok\r\n\r\n.{}\r\n", "b".repeat(997));
    conn.send_mail(&envelope(&["x@example.org"]), at_limit.as_bytes())
        .await
        .expect("998 octets fit");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    let sent = log.received_str(0);
    assert_eq!(
        sent.matches("MAIL FROM").count(),
        1,
        "nothing sent for the long one"
    );
    assert!(!sent.contains(&"a".repeat(999)));
    assert_eq!(log.messages.len(), 1);
    assert!(
        String::from_utf8_lossy(&log.messages[0]).contains(&format!("..{}\r\n", "b".repeat(997)))
    );
}

#[tokio::test]
async fn commands_with_control_characters_are_never_written() {
    let server = MockServer::start(steps(vec![ehlo_ok(&[]), quit_ok()])).await;
    let mut conn = connect(&server).await;
    let err = conn
        .command(&Command::Vrfy("user\r\nRSET".into()))
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(conn.is_usable(), "nothing was written, the session is fine");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.received_str(0), "EHLO client.test\r\nQUIT\r\n");
}

#[tokio::test]
async fn command_returns_any_reply_and_noop_rset_work() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&[]),
        vec![e("VRFY postmaster"), r("252 2.1.5 cannot verify")],
        vec![
            e("NOOP"),
            r("250 2.0.0 ok"),
            e("RSET"),
            r("250 2.0.0 ok"),
            e("EHLO"),
            r("250-again"),
            r("250 DSN"),
        ],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    let reply = conn
        .command(&Command::Vrfy("postmaster".into()))
        .await
        .expect("reply");
    assert_eq!(reply.code().value(), 252);
    conn.noop().await.expect("noop");
    conn.rset().await.expect("rset");
    assert!(conn.ehlo().await.expect("ehlo").dsn());
    let bye = conn.quit().await.expect("quit");
    assert_eq!(bye.code().value(), 221);
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn transcript_shows_both_sides_escaped() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&[]),
        vec![e("NOOP"), r("250 ok\x1b[31m")],
        quit_ok(),
    ]))
    .await;
    let (opts, lines) = options();
    let mut conn = Connection::connect("127.0.0.1", server.port(), opts)
        .await
        .expect("connects");
    conn.noop().await.expect("noop");
    conn.quit().await.expect("quit");
    let port = server.port();
    server.finish().await.assert_ok();
    let mut lines = lines.lines();
    // First the address connected to (RFC 8305: every address tried is noted).
    let connected = lines.remove(0);
    let expected = format!("* connect 127.0.0.1:{port} connected in ");
    assert!(connected.starts_with(&expected), "{connected}");
    assert_eq!(
        lines,
        [
            "S: 220 mock.test ESMTP",
            "C: EHLO client.test",
            "S: 250 mock.test",
            "C: NOOP",
            "S: 250 ok\\x1b[31m",
            "C: QUIT",
            "S: 221 mock.test Bye",
        ]
    );
}

#[tokio::test]
async fn a_server_that_answers_nothing_after_connect_times_out_at_greeting() {
    // Silent until the client gives up and closes.
    let server = MockServer::start(vec![Step::ExpectEof]).await;
    let err = Connection::connect(
        "127.0.0.1",
        server.port(),
        short_deadline(|t| t.greeting = SHORT),
    )
    .await
    .expect_err("silent");
    assert_eq!(
        (err.kind(), err.stage()),
        (ErrorKind::Timeout, Stage::Greeting)
    );
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.received(0), b"", "nothing sent before a greeting");
}

#[tokio::test]
async fn connection_refused_is_a_connect_error_with_the_spec_hint() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let err = Connection::connect("127.0.0.1", port, options().0)
        .await
        .expect_err("refused");
    assert_eq!(
        (err.kind(), err.stage()),
        (ErrorKind::Connect, Stage::Connect)
    );
    assert!(err.is_transient());
    assert!(err.hint().expect("hint").contains("telnet"));
}

#[tokio::test]
async fn send_many_pipelines_each_body_with_the_next_commands() {
    let group = |to: &str| vec![e("MAIL"), e(&format!("RCPT TO:<{to}>")), e("DATA")];
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING"]),
        group("a@example.org"),
        vec![r("250 ok"), r("250 ok"), r("354 go"), Step::ExpectData],
        // Message 2's commands arrived with message 1's body; now answer both.
        group("b@example.org"),
        vec![
            r("451 4.3.0 first one failed"),
            r("250 ok"),
            r("550 5.1.1 no such user"),
            r("554 5.5.1 no valid recipients"),
        ],
        vec![e("RSET"), r("250 ok")],
        group("c@example.org"),
        vec![
            r("250 ok"),
            r("250 ok"),
            r("354 go"),
            Step::ExpectData,
            r("250 ok id=third"),
        ],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server).await;
    let (a, b, c) = (
        envelope(&["a@example.org"]),
        envelope(&["b@example.org"]),
        envelope(&["c@example.org"]),
    );
    let bad =
        Envelope::new(addr("sender@example.com"), vec![addr("x@example.org")]).expect("envelope");
    let eight_bit = vec![0xE9u8; 10];
    let results = conn
        .send_many(&[
            (&a, b"Subject: 1\r\n\r\none\r\n"),
            (&b, b"Subject: 2\r\n\r\ntwo\r\n"),
            (&bad, &eight_bit),
            (&c, MESSAGE),
        ])
        .await;
    assert_eq!(results.len(), 4);
    let e0 = results[0].as_ref().expect_err("451 for the first");
    assert_eq!((e0.stage(), e0.is_transient()), (Stage::DataEnd, true));
    let e1 = results[1].as_ref().expect_err("recipient refused");
    assert_eq!(e1.stage(), Stage::RcptTo);
    assert!(
        results[2].is_err(),
        "the third (8-bit, no 8BITMIME) fails on its own, before sending"
    );
    assert_eq!(
        results[3]
            .as_ref()
            .expect("fourth sent")
            .queue_id()
            .as_deref(),
        Some("third")
    );
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    let chunks = reads(&log);
    let joined = chunks
        .iter()
        .find(|c| c.starts_with("Subject: 1"))
        .expect("body of message 1");
    assert!(
        joined.ends_with(
            "one\r\n.\r\nMAIL FROM:<sender@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
        ),
        "body, terminator and the next group in one read: {joined:?}"
    );
}

/// Checks that `result` is the error of a message never sent because the session ended
/// during an earlier one.
fn assert_not_sent(result: &smtpkit::Result<TransactionReport>, which: usize) {
    let err = result.as_ref().expect_err("not sent");
    assert_eq!(
        (err.kind(), err.stage()),
        (ErrorKind::Closed, Stage::MailFrom),
        "message {which}: {err:?}"
    );
    assert!(
        err.is_transient() && !err.is_outcome_unknown(),
        "message {which}: {err:?}"
    );
    assert!(
        err.to_string().contains("not sent"),
        "message {which}: {err}"
    );
}

#[tokio::test]
async fn send_many_loss_after_a_pipelined_body_is_outcome_unknown_and_the_rest_not_sent() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING"]),
        vec![
            e("MAIL"),
            e("RCPT"),
            e("DATA"),
            r("250 ok"),
            r("250 ok"),
            r("354 go"),
            Step::ExpectData,
            Step::Close,
        ],
    ]))
    .await;
    let mut conn = connect(&server).await;
    let env = envelope(&["a@example.org"]);
    let results = conn
        .send_many(&[(&env, MESSAGE), (&env, MESSAGE), (&env, MESSAGE)])
        .await;
    assert_eq!(results.len(), 3, "one result per message");
    let first = results[0].as_ref().expect_err("lost");
    assert_eq!(
        (first.kind(), first.stage()),
        (ErrorKind::Closed, Stage::DataEnd),
        "{first:?}"
    );
    assert!(
        first.is_outcome_unknown() && !first.is_transient(),
        "{first:?}"
    );
    assert_not_sent(&results[1], 2);
    assert_not_sent(&results[2], 3);
    assert!(!conn.is_usable());
    drop(conn);
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.messages, [MESSAGE.to_vec()], "only the first body left");
}

#[tokio::test]
async fn send_many_loss_while_reading_a_later_messages_replies() {
    // Message 2's commands left with message 1's body; the server answers MAIL and closes.
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING"]),
        vec![
            e("MAIL"),
            e("RCPT"),
            e("DATA"),
            r("250 ok"),
            r("250 ok"),
            r("354 go"),
            Step::ExpectData,
            r("250 ok id=one"),
        ],
        vec![e("MAIL"), e("RCPT"), e("DATA"), r("250 ok"), Step::Close],
    ]))
    .await;
    let mut conn = connect(&server).await;
    let env = envelope(&["a@example.org"]);
    let results = conn
        .send_many(&[
            (&env, b"Subject: 1\r\n\r\none\r\n"),
            (&env, b"Subject: 2\r\n\r\ntwo\r\n"),
            (&env, b"Subject: 3\r\n\r\nthree\r\n"),
            (&env, b"Subject: 4\r\n\r\nfour\r\n"),
        ])
        .await;
    assert_eq!(results.len(), 4, "one result per message");
    assert_eq!(
        results[0]
            .as_ref()
            .expect("first delivered")
            .queue_id()
            .as_deref(),
        Some("one")
    );
    let second = results[1].as_ref().expect_err("lost");
    assert_eq!(
        (second.kind(), second.stage()),
        (ErrorKind::Closed, Stage::RcptTo),
        "{second:?}"
    );
    assert!(
        second.is_transient() && !second.is_outcome_unknown(),
        "no body left, so it was not delivered: {second:?}"
    );
    assert_not_sent(&results[2], 3);
    assert_not_sent(&results[3], 4);
    assert!(!conn.is_usable());
    drop(conn);
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.messages, [b"Subject: 1\r\n\r\none\r\n".to_vec()]);
    assert_eq!(
        log.received_str(0).matches("MAIL FROM").count(),
        2,
        "message 3's commands never left"
    );
}

#[tokio::test]
async fn send_many_in_lockstep_loss_in_the_middle() {
    // A server without PIPELINING, and one that offers it to a client told not to use it.
    for (extensions, disable_pipelining) in [(&[][..], false), (&["PIPELINING"][..], true)] {
        let server = MockServer::start(steps(vec![
            ehlo_ok(extensions),
            vec![
                e("MAIL"),
                r("250 ok"),
                e("RCPT"),
                r("250 ok"),
                e("DATA"),
                r("354 go"),
                Step::ExpectData,
                r("250 ok id=one"),
            ],
            vec![e("MAIL"), r("250 ok"), e("RCPT"), Step::Close],
        ]))
        .await;
        let mut opts = options().0;
        opts.disable_pipelining = disable_pipelining;
        let mut conn = Connection::connect("127.0.0.1", server.port(), opts)
            .await
            .expect("connects");
        let env = envelope(&["a@example.org"]);
        let results = conn
            .send_many(&[
                (&env, b"Subject: 1\r\n\r\none\r\n"),
                (&env, b"Subject: 2\r\n\r\ntwo\r\n"),
                (&env, b"Subject: 3\r\n\r\nthree\r\n"),
            ])
            .await;
        let case = format!("extensions {extensions:?}, disable_pipelining {disable_pipelining}");
        assert_eq!(results.len(), 3, "{case}");
        assert_eq!(
            results[0]
                .as_ref()
                .expect("first delivered")
                .queue_id()
                .as_deref(),
            Some("one"),
            "{case}"
        );
        let second = results[1].as_ref().expect_err("lost");
        assert_eq!(
            (second.kind(), second.stage()),
            (ErrorKind::Closed, Stage::RcptTo),
            "{case}: {second:?}"
        );
        assert!(
            second.is_transient() && !second.is_outcome_unknown(),
            "{case}: {second:?}"
        );
        assert_not_sent(&results[2], 3);
        assert!(!conn.is_usable(), "{case}");
        drop(conn);
        let log = server.finish().await;
        log.assert_ok();
        assert_eq!(
            log.messages,
            [b"Subject: 1\r\n\r\none\r\n".to_vec()],
            "{case}"
        );
        // Lock-step: every command waited for the previous reply, so each read holds one
        // command, and no body carried the next message's commands.
        for chunk in reads(&log) {
            if chunk.contains("MAIL") || chunk.contains("RCPT") || chunk.contains("DATA") {
                assert_eq!(
                    chunk.matches("\r\n").count(),
                    1,
                    "{case}: one command per read: {chunk:?}"
                );
            }
        }
        assert_eq!(
            log.received_str(0).matches("MAIL FROM").count(),
            2,
            "{case}"
        );
    }
}

#[tokio::test]
async fn send_many_loss_during_a_later_messages_body_is_not_outcome_unknown() {
    // Message 2's body is far larger than the socket buffers can hold, so the server closing
    // after a part of it cuts the upload short: the client sees the loss while still writing
    // the body, before the final dot could have left.
    let mut big = b"Subject: 2\r\n\r\n".to_vec();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    while big.len() < 24 * 1024 * 1024 {
        big.extend_from_slice(line);
    }
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["PIPELINING"]),
        vec![
            e("MAIL"),
            e("RCPT"),
            e("DATA"),
            r("250 ok"),
            r("250 ok"),
            r("354 go"),
            Step::ExpectData,
            r("250 ok id=one"),
        ],
        vec![
            e("MAIL"),
            e("RCPT"),
            e("DATA"),
            r("250 ok"),
            r("250 ok"),
            r("354 go"),
            Step::WaitBytes(256 * 1024),
            Step::Close,
        ],
    ]))
    .await;
    let mut conn = connect(&server).await;
    let env = envelope(&["a@example.org"]);
    let results = conn
        .send_many(&[
            (&env, b"Subject: 1\r\n\r\none\r\n"),
            (&env, &big),
            (&env, b"Subject: 3\r\n\r\nthree\r\n"),
            (&env, b"Subject: 4\r\n\r\nfour\r\n"),
        ])
        .await;
    assert_eq!(results.len(), 4, "one result per message");
    assert_eq!(
        results[0]
            .as_ref()
            .expect("first delivered")
            .queue_id()
            .as_deref(),
        Some("one")
    );
    let second = results[1].as_ref().expect_err("lost");
    assert_eq!(
        (second.kind(), second.stage()),
        (ErrorKind::Closed, Stage::Body),
        "{second:?}"
    );
    assert!(
        second.is_transient() && !second.is_outcome_unknown(),
        "the final dot never left: {second:?}"
    );
    assert_not_sent(&results[2], 3);
    assert_not_sent(&results[3], 4);
    assert!(!conn.is_usable());
    drop(conn);
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.messages, [b"Subject: 1\r\n\r\none\r\n".to_vec()]);
    let received = log.received(0);
    assert!(
        received.len() < big.len(),
        "the server took only part of the body ({} bytes)",
        received.len()
    );
}

#[tokio::test]
async fn noop_answered_with_221_marks_the_session_unusable() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&[]),
        vec![e("NOOP"), r("221 2.0.0 closing"), Step::Close],
    ]))
    .await;
    let mut conn = connect(&server).await;
    let err = conn.noop().await.expect_err("221 is not a NOOP success");
    assert_eq!(err.reply().map(|r| r.code().value()), Some(221));
    assert!(
        !conn.is_usable(),
        "a pool health check must not pass a closing session"
    );
    server.finish().await.assert_ok();
}
