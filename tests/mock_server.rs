//! Self-tests of the scripted mock server used by the client tests.

mod support;

use std::time::Duration;

use support::mock::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

/// Upper bound for every client-side operation in these tests: generous, only a hung mock
/// reaches it.
const T: Duration = Duration::from_secs(10);

/// The deadline of the one mock step a timeout test is about.
const SHORT: Duration = Duration::from_millis(200);

async fn connect(server: &MockServer) -> TcpStream {
    timeout(T, TcpStream::connect(server.addr()))
        .await
        .expect("connect timed out")
        .expect("connect")
}

async fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    timeout(T, r.read_line(&mut s))
        .await
        .expect("read_line timed out")
        .expect("read_line");
    s
}

async fn send(r: &mut BufReader<TcpStream>, bytes: &[u8]) {
    timeout(T, r.get_mut().write_all(bytes))
        .await
        .expect("write timed out")
        .expect("write");
}

/// Waits until the mock has read `n` bytes on its first connection (an event, not a delay).
async fn wait_received(server: &MockServer, n: usize) {
    timeout(T, async {
        while server.log_snapshot().received(0).len() < n {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the mock did not read the bytes sent");
}

async fn read_to_end(r: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut v = Vec::new();
    timeout(T, r.read_to_end(&mut v))
        .await
        .expect("read_to_end timed out")
        .expect("read_to_end");
    v
}

#[test]
fn ehlo_ok_builds_expected_script() {
    assert_eq!(
        ehlo_ok(&["PIPELINING", "SIZE 1000"]),
        vec![
            Step::reply("220 mock.test ESMTP"),
            Step::expect("EHLO"),
            Step::reply("250-mock.test"),
            Step::reply("250-PIPELINING"),
            Step::reply("250 SIZE 1000"),
        ]
    );
    assert_eq!(
        ehlo_ok(&[]),
        vec![
            Step::reply("220 mock.test ESMTP"),
            Step::expect("EHLO"),
            Step::reply("250 mock.test"),
        ]
    );
}

#[tokio::test]
async fn reply_expect_round_trip() {
    let mut script = ehlo_ok(&["PIPELINING", "SIZE 1000"]);
    script.extend(quit_ok());
    script.push(Step::ExpectEof);
    let server = MockServer::start(script).await;
    let mut c = BufReader::new(connect(&server).await);
    assert_eq!(read_line(&mut c).await, "220 mock.test ESMTP\r\n");
    send(&mut c, b"ehlo client.test\r\n").await; // case-insensitive prefix
    assert_eq!(read_line(&mut c).await, "250-mock.test\r\n");
    assert_eq!(read_line(&mut c).await, "250-PIPELINING\r\n");
    assert_eq!(read_line(&mut c).await, "250 SIZE 1000\r\n");
    send(&mut c, b"QUIT\n").await; // bare LF accepted
    assert_eq!(read_line(&mut c).await, "221 mock.test Bye\r\n");
    drop(c);
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.connections, 1);
    assert_eq!(log.lines, vec![vec!["ehlo client.test", "QUIT"]]);
    assert_eq!(log.received(0), b"ehlo client.test\r\nQUIT\n");
    assert_eq!(log.received(7), b"");
}

#[tokio::test]
async fn expect_data_captures_dot_stuffed_body_verbatim() {
    let script = vec![
        Step::reply("220 hi"),
        Step::expect("DATA"),
        Step::reply("354 go"),
        Step::ExpectData,
        Step::reply("250 queued"),
        Step::expect("DATA"),
        Step::reply("354 go"),
        Step::ExpectData,
        Step::reply("250 queued"),
        Step::expect("QUIT"),
        Step::reply("221 bye"),
        Step::Close,
    ];
    let server = MockServer::start(script).await;
    let mut c = BufReader::new(connect(&server).await);
    read_line(&mut c).await;
    send(&mut c, b"DATA\r\n").await;
    assert_eq!(read_line(&mut c).await, "354 go\r\n");
    // Terminator split across reads, a ".." line that must not terminate. Each piece is sent
    // once the mock has read the previous one, so each is one read (checked below).
    let pieces: [&[u8]; 3] = [
        b"Subject: t\r\n\r\n..leading dot\r\n",
        b"..\r\nend\r\n.",
        b"\r\n",
    ];
    let mut total = b"DATA\r\n".len();
    for piece in pieces {
        send(&mut c, piece).await;
        total += piece.len();
        wait_received(&server, total).await;
    }
    assert_eq!(read_line(&mut c).await, "250 queued\r\n");
    // Empty message, terminator pipelined with the next command.
    send(&mut c, b"DATA\r\n").await;
    assert_eq!(read_line(&mut c).await, "354 go\r\n");
    send(&mut c, b".\r\nQUIT\r\n").await;
    assert_eq!(read_line(&mut c).await, "250 queued\r\n");
    assert_eq!(read_line(&mut c).await, "221 bye\r\n");
    assert!(read_to_end(&mut c).await.is_empty());
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(
        log.messages,
        vec![
            b"Subject: t\r\n\r\n..leading dot\r\n..\r\nend\r\n".to_vec(),
            Vec::new()
        ]
    );
    assert_eq!(log.lines[0], vec!["DATA", "DATA", "QUIT"]);
    assert_eq!(
        log.reads[0],
        [
            &b"DATA\r\n"[..],
            pieces[0],
            pieces[1],
            pieces[2],
            b"DATA\r\n",
            b".\r\nQUIT\r\n"
        ],
        "the terminator really was split across reads"
    );
}

#[tokio::test]
async fn read_boundaries_are_logged() {
    let script = vec![
        Step::WaitBytes(6),
        Step::expect("A"),
        Step::expect("B"),
        Step::reply("250 ab"),
        Step::expect("C"),
        Step::reply("250 c"),
        Step::expect("D"),
        Step::reply("250 d"),
    ];
    let server = MockServer::start(script).await;
    let mut c = BufReader::new(connect(&server).await);
    send(&mut c, b"A\r\nB\r\n").await;
    assert_eq!(read_line(&mut c).await, "250 ab\r\n");
    send(&mut c, b"C\r\n").await;
    assert_eq!(read_line(&mut c).await, "250 c\r\n");
    send(&mut c, b"D\r\n").await;
    assert_eq!(read_line(&mut c).await, "250 d\r\n");
    // Trailing bytes after the script ends are still recorded, without errors.
    send(&mut c, b"QUIT\r\n").await;
    drop(c);
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(
        log.reads[0],
        vec![
            b"A\r\nB\r\n".to_vec(),
            b"C\r\n".to_vec(),
            b"D\r\n".to_vec(),
            b"QUIT\r\n".to_vec()
        ]
    );
}

#[tokio::test]
async fn wait_bytes_times_out_silently() {
    // Accept, the first byte and the reply have the default deadline; only the wait for
    // 100 bytes, which never come, is short.
    let server = MockServer::start(vec![
        Step::WaitBytes(1),
        Step::SetTimeout(SHORT),
        Step::WaitBytes(100),
        Step::SetTimeout(DEFAULT_TIMEOUT),
        Step::reply("250 ok"),
        Step::Close,
    ])
    .await;
    let mut c = BufReader::new(connect(&server).await);
    send(&mut c, b"x").await;
    assert_eq!(read_line(&mut c).await, "250 ok\r\n");
    assert!(read_to_end(&mut c).await.is_empty(), "then the mock closed");
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.reads[0], [b"x"]);
}

#[tokio::test]
async fn endless_is_bounded_by_max_bytes() {
    let server = MockServer::start(vec![
        Step::Endless {
            line: "250-x".into(),
            max_bytes: 1000,
        },
        Step::Close,
    ])
    .await;
    let mut c = BufReader::new(connect(&server).await);
    let got = read_to_end(&mut c).await;
    assert_eq!(got.len(), 1000);
    let expected: Vec<u8> = b"250-x\r\n".iter().copied().cycle().take(1000).collect();
    assert_eq!(got, expected);
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn endless_stops_when_client_goes_away() {
    // No byte limit to speak of: only the failed write can end the step, and finish() panics
    // if the script is still running after FINISH_TIMEOUT.
    let line = "250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    let server = MockServer::start(vec![
        Step::Endless {
            line: line.into(),
            max_bytes: usize::MAX,
        },
        Step::Close,
    ])
    .await;
    let mut c = BufReader::new(connect(&server).await);
    let mut buf = [0u8; 4096];
    let n = timeout(T, c.read_exact(&mut buf))
        .await
        .expect("read timed out")
        .expect("read");
    let expected: Vec<u8> = format!("{line}\r\n").bytes().cycle().take(n).collect();
    assert_eq!(&buf[..n], &expected[..], "the line, repeated");
    drop(c);
    let log = server.finish().await;
    log.assert_ok();
}

#[tokio::test]
async fn trickle_and_split_deliver_all_bytes_slowly() {
    let server = MockServer::start(vec![
        Step::Trickle {
            bytes: b"220 slow\r\n".to_vec(),
            interval: Duration::from_millis(15),
        },
        Step::Split {
            bytes: b"250-a\r\n250 b\r\n".to_vec(),
            chunk: 4,
            pause: Duration::from_millis(15),
        },
        Step::Raw(b"221 raw".to_vec()),
        Step::Delay(Duration::from_millis(10)),
        Step::Close,
    ])
    .await;
    let mut c = connect(&server).await;
    let mut got = Vec::new();
    let mut reads = 0;
    let mut buf = [0u8; 1024];
    loop {
        let n = timeout(T, c.read(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        reads += 1;
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"220 slow\r\n250-a\r\n250 b\r\n221 raw");
    // 13 writes with a pause between each: they cannot all arrive together.
    assert!(reads >= 5, "expected many small reads, got {reads}");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn close_drops_connection() {
    let server = MockServer::start(vec![
        Step::reply("220 hi"),
        Step::Close,
        Step::reply("250 never sent"),
    ])
    .await;
    let mut c = BufReader::new(connect(&server).await);
    assert_eq!(read_line(&mut c).await, "220 hi\r\n");
    assert!(read_to_end(&mut c).await.is_empty());
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn mismatched_expect_records_error_and_closes() {
    let server = MockServer::start(vec![
        Step::reply("220 hi"),
        Step::expect("EHLO"),
        Step::reply("250 never sent"),
    ])
    .await;
    let mut c = BufReader::new(connect(&server).await);
    read_line(&mut c).await;
    send(&mut c, b"HELO x\r\n").await;
    assert!(read_to_end(&mut c).await.is_empty());
    let log = server.finish().await;
    assert_eq!(log.errors.len(), 1, "{:?}", log.errors);
    assert!(
        log.errors[0].contains("expected line starting with \"EHLO\", got \"HELO x\""),
        "{}",
        log.errors[0]
    );
    assert_eq!(log.lines[0], vec!["HELO x"]);
    let l = log.clone();
    assert!(std::panic::catch_unwind(move || l.assert_ok()).is_err());
}

#[tokio::test]
async fn read_timeout_records_error() {
    // Only the line that never completes has a short deadline, and it starts once the mock
    // holds the partial line.
    let server = MockServer::start(vec![
        Step::reply("220 hi"),
        Step::WaitBytes(2),
        Step::SetTimeout(SHORT),
        Step::expect("EHLO"),
    ])
    .await;
    let mut c = BufReader::new(connect(&server).await);
    read_line(&mut c).await;
    send(&mut c, b"EH").await; // partial line, never completed
                               // The server gives up and closes; the client sees EOF.
    assert!(read_to_end(&mut c).await.is_empty());
    let log = server.finish().await;
    assert_eq!(log.errors.len(), 1, "{:?}", log.errors);
    assert!(
        log.errors[0].contains(&format!("read timed out after {SHORT:?}")),
        "{}",
        log.errors[0]
    );
    assert!(log.errors[0].contains("\"EH\""), "{}", log.errors[0]);
}

#[tokio::test]
async fn unexpected_eof_records_error() {
    let server = MockServer::start(vec![Step::reply("220 hi"), Step::expect("EHLO")]).await;
    let mut c = BufReader::new(connect(&server).await);
    read_line(&mut c).await;
    drop(c);
    let log = server.finish().await;
    assert_eq!(log.errors.len(), 1, "{:?}", log.errors);
    assert!(
        log.errors[0].contains("unexpected EOF"),
        "{}",
        log.errors[0]
    );
}

#[tokio::test]
async fn expect_eof_records_trailing_bytes() {
    let server = MockServer::start(vec![Step::reply("220 hi"), Step::ExpectEof]).await;
    let mut c = BufReader::new(connect(&server).await);
    read_line(&mut c).await;
    send(&mut c, b"QUIT\r\n").await;
    drop(c);
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.received(0), b"QUIT\r\n");
}

#[tokio::test]
async fn expect_eof_timeout_is_an_error() {
    let server = MockServer::start(vec![Step::SetTimeout(SHORT), Step::ExpectEof]).await;
    let mut c = BufReader::new(connect(&server).await);
    // The client stays connected; the mock gives up and closes.
    assert!(read_to_end(&mut c).await.is_empty());
    let log = server.finish().await;
    assert_eq!(log.errors.len(), 1, "{:?}", log.errors);
    assert!(
        log.errors[0].contains(&format!(
            "client did not close the connection within {SHORT:?}"
        )),
        "{}",
        log.errors[0]
    );
}

#[tokio::test]
async fn start_many_serves_sequential_connections() {
    let server = MockServer::start_many(vec![vec![Step::reply("421 busy"), Step::Close], {
        let mut s = ehlo_ok(&[]);
        s.extend(quit_ok());
        s.push(Step::Close);
        s
    }])
    .await;
    let mut c1 = BufReader::new(connect(&server).await);
    assert_eq!(read_line(&mut c1).await, "421 busy\r\n");
    assert!(read_to_end(&mut c1).await.is_empty());
    let mut c2 = BufReader::new(connect(&server).await);
    assert_eq!(read_line(&mut c2).await, "220 mock.test ESMTP\r\n");
    send(&mut c2, b"EHLO me\r\n").await;
    assert_eq!(read_line(&mut c2).await, "250 mock.test\r\n");
    send(&mut c2, b"QUIT\r\n").await;
    assert_eq!(read_line(&mut c2).await, "221 mock.test Bye\r\n");
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.connections, 2);
    assert_eq!(log.lines, vec![vec![], vec!["EHLO me", "QUIT"]]);
    assert_eq!(log.received(0), b"");
    assert_eq!(log.received_str(1), "EHLO me\r\nQUIT\r\n");
}

#[tokio::test]
async fn missing_client_is_reported_not_hung() {
    let server =
        MockServer::start_with_timeout(vec![Step::reply("220 hi")], Duration::from_millis(100))
            .await;
    let log = server.finish().await;
    assert_eq!(log.connections, 0);
    assert_eq!(log.errors.len(), 1, "{:?}", log.errors);
    assert!(log.errors[0].contains("no client connected"));
}
