//! BDAT (CHUNKING, RFC 3030) against the scripted mock server: what goes on the wire, the
//! window of messages in flight, and each message's outcome when something fails half-way.

mod support;

use std::time::Duration;

use smtpkit::client::{
    Chunking, ClientOptions, Connection, Envelope, Security, Timeouts, TransactionReport,
    Transcript,
};
use smtpkit::proto::{Address, ClientName, Command};
use smtpkit::{ErrorKind, Stage};
use support::fault_server::{FaultServer, Faults};
use support::mock::{ehlo_ok, quit_ok, MockLog, MockServer, Step};

const GENEROUS: Duration = Duration::from_secs(10);

/// How long the mock watches for bytes a client must not send yet.
const QUIET: Duration = Duration::from_millis(300);

fn options(chunking: Chunking) -> ClientOptions {
    let (transcript, _) = Transcript::buffer();
    ClientOptions {
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
        chunking,
        ..ClientOptions::default()
    }
}

fn envelope(to: &[&str]) -> Envelope {
    Envelope::new(
        Address::new("sender@example.com").expect("valid"),
        to.iter()
            .map(|a| Address::new(*a).expect("valid"))
            .collect(),
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

fn bdat_last() -> Step {
    Step::ExpectBdat { last: true }
}

const EHLO: &[&str] = &["PIPELINING", "CHUNKING", "8BITMIME"];

async fn connect(server: &MockServer, chunking: Chunking) -> Connection {
    Connection::connect("127.0.0.1", server.port(), options(chunking))
        .await
        .expect("connects")
}

/// One message of one recipient, pipelined: `[RSET] MAIL RCPT BDAT LAST`.
fn one_message(rset: bool) -> Vec<Step> {
    let mut s = Vec::new();
    if rset {
        s.push(e("RSET"));
    }
    s.extend([
        e("MAIL FROM:<sender@example.com>"),
        e("RCPT TO:<"),
        bdat_last(),
    ]);
    s
}

fn accepted(rset: bool, id: &str) -> Vec<Step> {
    let mut s = Vec::new();
    if rset {
        s.push(r("250 2.0.0 Ok"));
    }
    s.extend([
        r("250 2.1.0 Ok"),
        r("250 2.1.5 Ok"),
        r(&format!("250 2.0.0 Ok: queued as {id}")),
    ]);
    s
}

fn not_sent(result: &smtpkit::Result<TransactionReport>, which: &str) {
    let err = result.as_ref().expect_err(&format!("{which} was not sent"));
    assert!(
        err.is_transient() && !err.is_outcome_unknown(),
        "{which}: {err:?}"
    );
}

fn unknown(result: &smtpkit::Result<TransactionReport>, which: &str) {
    let err = result.as_ref().expect_err(&format!("{which} has no reply"));
    assert!(
        err.is_outcome_unknown() && !err.is_transient(),
        "{which}: {err:?}"
    );
    assert_eq!(err.stage(), Stage::DataEnd, "{which}");
}

const BODY: &[u8] = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\r\n.\r\nend\r\n";

#[tokio::test]
async fn mail_rcpt_and_the_last_chunk_leave_in_one_write_without_dot_stuffing() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        vec![
            e("MAIL FROM:<sender@example.com> BODY=8BITMIME"),
            e("RCPT TO:<a@example.org>"),
            e("RCPT TO:<b@example.org>"),
            bdat_last(),
        ],
        vec![
            r("250 2.1.0 ok"),
            r("550 5.1.1 no such user"),
            r("250 2.1.5 ok"),
            r("250 2.0.0 Ok: queued as BDAT1"),
        ],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server, Chunking::default()).await;
    let mut body = BODY.to_vec();
    body.extend_from_slice("caf\u{e9}\n".as_bytes());
    let report = conn
        .send_mail(&envelope(&["a@example.org", "b@example.org"]), &body)
        .await
        .expect("sent");
    assert_eq!(report.queue_id().as_deref(), Some("BDAT1"));
    assert_eq!(report.rejected().count(), 1);
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    // Not stuffed; the bare LF made CRLF, so the message ends with CRLF.
    let mut want = BODY.to_vec();
    want.extend_from_slice("caf\u{e9}\r\n".as_bytes());
    assert_eq!(log.chunks, [want.clone()]);
    let mut group = b"MAIL FROM:<sender@example.com> BODY=8BITMIME\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n".to_vec();
    group.extend_from_slice(format!("BDAT {} LAST\r\n", want.len()).as_bytes());
    group.extend_from_slice(&want);
    assert!(
        log.reads[0].contains(&group),
        "one write with the commands and the chunk: {:?}",
        log.reads[0]
    );
    assert!(!log.received_str(0).contains("DATA\r\n"));
}

#[tokio::test]
async fn chunking_disabled_sends_data() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        vec![e("MAIL"), e("RCPT"), e("DATA")],
        vec![r("250 ok"), r("250 ok"), r("354 go")],
        vec![Step::ExpectData, r("250 2.0.0 Ok: queued as D1")],
        quit_ok(),
    ]))
    .await;
    let chunking = Chunking {
        enabled: false,
        ..Chunking::default()
    };
    let mut conn = connect(&server, chunking).await;
    conn.send_mail(&envelope(&["a@example.org"]), BODY)
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert!(!log.received_str(0).contains("BDAT"));
    // The DATA path stuffs.
    assert!(log.messages[0].starts_with(b"Subject: dots\r\n\r\n..starts"));
}

#[tokio::test]
async fn without_pipelining_chunking_alone_is_not_used() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(&["CHUNKING"]),
        vec![e("MAIL"), r("250 ok"), e("RCPT"), r("250 ok"), e("DATA")],
        vec![r("354 go"), Step::ExpectData, r("250 ok")],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server, Chunking::default()).await;
    conn.send_mail(&envelope(&["a@example.org"]), BODY)
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn every_recipient_refused_still_sends_the_chunk_and_the_message_is_not_sent() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        one_message(false),
        vec![
            r("250 2.1.0 ok"),
            r("550 5.1.1 no such user"),
            // RFC 3030 §3: no valid recipient, so the BDAT is refused (its octets consumed).
            r("554 5.5.1 Error: no valid recipients"),
        ],
        // The transaction is reset before anything else.
        vec![e("RSET"), r("250 2.0.0 Ok")],
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server, Chunking::default()).await;
    let err = conn
        .send_mail(&envelope(&["nobody@example.org"]), BODY)
        .await
        .expect_err("all refused");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.stage(), Stage::RcptTo);
    assert!(err.is_permanent() && !err.is_outcome_unknown(), "{err:?}");
    assert_eq!(err.recipients().len(), 1);
    assert_eq!(err.reply().map(|r| r.code().value()), Some(550));
    assert!(conn.is_usable());
    conn.quit().await.expect("quit");
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.chunks, [BODY.to_vec()], "the octets went anyway");
}

#[tokio::test]
async fn a_refused_bdat_mid_window_fails_that_message_only() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        one_message(false),
        one_message(true),
        one_message(true),
        vec![
            r("250 2.1.0 ok"),
            r("250 2.1.5 ok"),
            r("554 5.6.0 message refused: content"),
        ],
        accepted(true, "B"),
        accepted(true, "C"),
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server, Chunking::default()).await;
    let env = envelope(&["a@example.org"]);
    let results = conn
        .send_many(&[(&env, BODY), (&env, BODY), (&env, BODY)])
        .await;
    let first = results[0].as_ref().expect_err("refused");
    assert_eq!(first.stage(), Stage::DataEnd);
    assert!(
        first.is_permanent() && !first.is_outcome_unknown(),
        "{first:?}"
    );
    assert_eq!(first.recipients().len(), 1);
    let ids: Vec<Option<String>> = results[1..]
        .iter()
        .map(|r| r.as_ref().expect("sent").queue_id())
        .collect();
    assert_eq!(ids, [Some("B".to_owned()), Some("C".to_owned())]);
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn a_refused_mail_mid_window_fails_that_message_only() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        one_message(false),
        one_message(true),
        vec![
            r("451 4.3.0 try later"),
            r("503 5.5.1 need MAIL"),
            r("503 5.5.1 need RCPT"),
        ],
        accepted(true, "B"),
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server, Chunking::default()).await;
    let env = envelope(&["a@example.org"]);
    let results = conn.send_many(&[(&env, BODY), (&env, BODY)]).await;
    let first = results[0].as_ref().expect_err("refused");
    assert_eq!(first.stage(), Stage::MailFrom);
    assert!(first.is_transient(), "{first:?}");
    assert_eq!(
        results[1].as_ref().expect("sent").queue_id().as_deref(),
        Some("B")
    );
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn connection_lost_after_the_last_chunk_was_written_is_outcome_unknown() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        one_message(false),
        one_message(true),
        accepted(false, "A"),
        vec![r("250 2.0.0 Ok"), r("250 2.1.0 Ok"), Step::Close],
    ]))
    .await;
    let mut conn = connect(&server, Chunking::default()).await;
    let env = envelope(&["a@example.org"]);
    let results = conn.send_many(&[(&env, BODY), (&env, BODY)]).await;
    assert_eq!(
        results[0].as_ref().expect("sent").queue_id().as_deref(),
        Some("A")
    );
    unknown(&results[1], "the second");
    assert!(!conn.is_usable());
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn connection_lost_before_a_message_was_written_leaves_it_not_sent() {
    // One message in flight at a time: the second waits for the first's replies, which never
    // come. The first left whole (unknown); the second never did (not sent).
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        one_message(false),
        vec![Step::ExpectQuiet(QUIET), Step::Close],
    ]))
    .await;
    let chunking = Chunking {
        max_messages_in_flight: 1,
        ..Chunking::default()
    };
    let mut conn = connect(&server, chunking).await;
    let env = envelope(&["a@example.org"]);
    let results = conn
        .send_many(&[(&env, BODY), (&env, BODY), (&env, BODY)])
        .await;
    unknown(&results[0], "the first");
    not_sent(&results[1], "the second");
    not_sent(&results[2], "the third");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn a_loss_while_reading_mail_replies_after_every_recipient_was_refused_is_not_unknown() {
    // The replies that came settle the first message (all refused): not unknown even though
    // its chunk left; the second, whole on the wire, is unknown.
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        one_message(false),
        one_message(true),
        vec![r("250 2.1.0 ok"), r("550 5.1.1 unknown"), Step::Close],
    ]))
    .await;
    let mut conn = connect(&server, Chunking::default()).await;
    let env = envelope(&["a@example.org"]);
    let results = conn.send_many(&[(&env, BODY), (&env, BODY)]).await;
    let first = results[0].as_ref().expect_err("refused");
    assert_eq!(first.stage(), Stage::RcptTo);
    assert!(
        first.is_permanent() && !first.is_outcome_unknown(),
        "{first:?}"
    );
    unknown(&results[1], "the second");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn a_421_mid_window_poisons_and_the_rest_is_not_sent() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        one_message(false),
        one_message(true),
        vec![r("250 2.1.0 ok"), r("421 4.3.2 shutting down"), Step::Close],
    ]))
    .await;
    let mut conn = connect(&server, Chunking::default()).await;
    let env = envelope(&["a@example.org"]);
    let results = conn.send_many(&[(&env, BODY), (&env, BODY)]).await;
    let first = results[0].as_ref().expect_err("421");
    assert_eq!(first.reply().map(|r| r.code().value()), Some(421));
    assert!(
        first.is_transient() && !first.is_outcome_unknown(),
        "{first:?}"
    );
    not_sent(&results[1], "the second");
    assert!(!conn.is_usable());
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn a_timeout_waiting_for_the_last_chunks_reply_is_outcome_unknown() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        one_message(false),
        vec![r("250 2.1.0 ok"), r("250 2.1.5 ok"), Step::ExpectEof],
    ]))
    .await;
    let mut options = options(Chunking::default());
    options.timeouts.data_end = Duration::from_millis(300);
    let mut conn = Connection::connect("127.0.0.1", server.port(), options)
        .await
        .expect("connects");
    let err = conn
        .send_mail(&envelope(&["a@example.org"]), BODY)
        .await
        .expect_err("no reply");
    assert!(err.is_timeout() && err.is_outcome_unknown(), "{err:?}");
    assert_eq!(err.recipients().len(), 1, "RCPT's replies came");
    assert!(!conn.is_usable());
    drop(conn);
    server.finish().await.assert_ok();
}

/// Window tests: `n` messages, at most two in flight; the mock checks that the third is
/// not written before the first is answered.
async fn window_of_two(chunking: Chunking) {
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        one_message(false),
        one_message(true),
        vec![Step::ExpectQuiet(QUIET)],
        accepted(false, "A"),
        one_message(true),
        vec![Step::ExpectQuiet(QUIET)],
        accepted(true, "B"),
        one_message(true),
        vec![Step::ExpectQuiet(QUIET)],
        accepted(true, "C"),
        accepted(true, "D"),
        quit_ok(),
    ]))
    .await;
    let mut conn = connect(&server, chunking).await;
    let env = envelope(&["a@example.org"]);
    let results = conn
        .send_many(&[(&env, BODY), (&env, BODY), (&env, BODY), (&env, BODY)])
        .await;
    let ids: Vec<String> = results
        .iter()
        .map(|r| r.as_ref().expect("sent").queue_id().expect("an id"))
        .collect();
    assert_eq!(ids, ["A", "B", "C", "D"]);
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn the_window_holds_at_most_max_messages_in_flight() {
    window_of_two(Chunking {
        max_messages_in_flight: 2,
        ..Chunking::default()
    })
    .await;
}

#[tokio::test]
async fn the_window_holds_at_most_max_bytes_in_flight() {
    window_of_two(Chunking {
        max_bytes_in_flight: 2 * BODY.len() + 1,
        ..Chunking::default()
    })
    .await;
}

#[tokio::test]
async fn a_large_body_goes_in_bounded_chunks_with_last_on_the_final_one() {
    // 25 octets: two chunks of 10 and a last one of 5.
    let body = b".bcdefghij.lmnopqrstuvw\r\n".to_vec();
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        vec![
            e("MAIL"),
            e("RCPT"),
            Step::ExpectBdat { last: false },
            Step::ExpectBdat { last: false },
            bdat_last(),
        ],
        vec![
            r("250 ok"),
            r("250 ok"),
            r("250 2.0.0 10 octets received"),
            r("250 2.0.0 10 octets received"),
            r("250 2.0.0 Ok: queued as BIG"),
        ],
        quit_ok(),
    ]))
    .await;
    let chunking = Chunking {
        max_chunk_size: 10,
        ..Chunking::default()
    };
    let mut conn = connect(&server, chunking).await;
    let report = conn
        .send_mail(&envelope(&["a@example.org"]), &body)
        .await
        .expect("sent");
    assert_eq!(report.queue_id().as_deref(), Some("BIG"));
    conn.quit().await.expect("quit");
    let log: MockLog = server.finish().await;
    log.assert_ok();
    let sizes: Vec<usize> = log.chunks.iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(log.chunks.concat(), body);
}

#[tokio::test]
async fn a_refused_middle_chunk_fails_the_message() {
    let server = MockServer::start(steps(vec![
        ehlo_ok(EHLO),
        vec![
            e("MAIL"),
            e("RCPT"),
            Step::ExpectBdat { last: false },
            bdat_last(),
        ],
        vec![
            r("250 ok"),
            r("250 ok"),
            r("552 5.3.4 too big"),
            r("554 5.5.0 earlier chunk failed"),
        ],
        vec![e("RSET"), r("250 ok")],
        quit_ok(),
    ]))
    .await;
    let chunking = Chunking {
        max_chunk_size: BODY.len() - 1,
        ..Chunking::default()
    };
    let mut conn = connect(&server, chunking).await;
    let err = conn
        .send_mail(&envelope(&["a@example.org"]), BODY)
        .await
        .expect_err("refused");
    assert_eq!(err.stage(), Stage::Data);
    assert_eq!(err.reply().map(|r| r.code().value()), Some(552));
    assert!(err.is_permanent() && !err.is_outcome_unknown());
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn bdat_cannot_be_sent_as_a_bare_command() {
    let server = MockServer::start(steps(vec![ehlo_ok(EHLO), quit_ok()])).await;
    let mut conn = connect(&server, Chunking::default()).await;
    let err = conn
        .command(&Command::Bdat {
            size: 3,
            last: true,
        })
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(conn.is_usable());
    conn.quit().await.expect("quit");
    server.finish().await.assert_ok();
}

/// A thousand messages in batches of 20, up to 8 in flight, through a server that fails at
/// random at every stage (refusals, lost connections before and after the last chunk, a
/// message stored and then no reply): per recipient, what was reported delivered was stored
/// exactly once, what was reported failed never, what was reported unknown at most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_through_random_faults_are_each_accounted_for_exactly() {
    let faults = Faults {
        greeting_421: 20,
        mail_451: 20,
        rcpt_450: 20,
        rcpt_550: 10,
        data_451: 20,
        drop_at_command: 5,
        final_451: 20,
        accept_then_drop: 10,
        drop_after_dot: 10,
        noop_421: 0,
        close_after_message: 10,
    };
    let server = FaultServer::start_chunking(faults, 20261129).await;
    let chunking = Chunking {
        max_messages_in_flight: 8,
        ..Chunking::default()
    };
    const N: usize = 1000;
    const BATCH: usize = 20;
    let bodies: Vec<String> = (0..N)
        .map(|i| format!("Subject: msg-{i}\r\n\r\n.body {i}\r\n"))
        .collect();
    let envelopes: Vec<Envelope> = (0..N)
        .map(|i| envelope(&[&format!("a{i}@example.org"), &format!("b{i}@example.org")]))
        .collect();
    let mut outcomes = Vec::with_capacity(N);
    let mut next = 0;
    let mut connects = 0;
    while next < N {
        connects += 1;
        assert!(connects < 10 * N, "bounded");
        let Ok(mut conn) = Connection::connect("127.0.0.1", server.port, options(chunking)).await
        else {
            continue;
        };
        assert!(conn.capabilities().chunking());
        let end = (next + BATCH).min(N);
        let batch: Vec<(&Envelope, &[u8])> = (next..end)
            .map(|i| (&envelopes[i], bodies[i].as_bytes()))
            .collect();
        outcomes.extend(conn.send_many(&batch).await);
        next = end;
        if conn.is_usable() {
            let _ = conn.quit().await;
        }
    }
    assert_eq!(outcomes.len(), N);
    let stored = server.stats.recipients.lock().expect("lock").clone();
    let (mut delivered, mut failed, mut unknown, mut unknown_stored) = (0, 0, 0, 0);
    let mut counted_copies = 0;
    for (i, outcome) in outcomes.iter().enumerate() {
        let subject = format!("msg-{i}");
        let mut copies: std::collections::HashMap<String, usize> = Default::default();
        for rcpts in stored.get(&subject).into_iter().flatten() {
            for r in rcpts {
                *copies.entry(r.clone()).or_default() += 1;
            }
        }
        let n = |a: &str| copies.get(a).copied().unwrap_or(0);
        match outcome {
            Ok(report) => {
                for r in report.recipients() {
                    let want = usize::from(r.accepted());
                    assert_eq!(n(r.address.as_str()), want, "{subject}: {r:?}");
                    counted_copies += want;
                }
                delivered += 1;
            }
            Err(e) if e.is_outcome_unknown() => {
                for a in envelopes[i].to() {
                    assert!(n(a.as_str()) <= 1, "{subject}: stored twice");
                    unknown_stored += n(a.as_str());
                }
                unknown += 1;
            }
            Err(e) => {
                for a in envelopes[i].to() {
                    assert_eq!(
                        n(a.as_str()),
                        0,
                        "{subject} reported failed ({e}) but stored"
                    );
                }
                failed += 1;
            }
        }
    }
    let total: usize = stored.values().flatten().map(Vec::len).sum();
    assert_eq!(
        total,
        counted_copies + unknown_stored,
        "every stored copy is known"
    );
    eprintln!(
        "{N} messages in {connects} sessions: {delivered} delivered, {failed} failed, {unknown} unknown ({unknown_stored} copies stored)"
    );
    assert!(
        delivered > N / 2 && failed > 0 && unknown > 0,
        "the faults happened"
    );
}
