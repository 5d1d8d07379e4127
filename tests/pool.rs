//! The pool's time limits seen from the server: the idle reaper, `max_lifetime`, and the
//! reaper's end when the pool goes away.
//!
//! The pool judges age and idleness by the real clock (`std::time::Instant`), so these tests
//! run in real time. They assert only what a slow machine cannot break: events the server
//! saw (awaited, with a generous deadline) and lower bounds on when they happened.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtpkit::client::{ClientOptions, Envelope, Security};
use smtpkit::delivery::{Pool, PoolSettings};
use smtpkit::proto::{Address, ClientName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a test waits for an event the server should see before failing.
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq)]
enum What {
    Accepted,
    /// A command line the client sent (DATA content is not reported).
    Line(String),
    /// The connection ended (client closed it, or the server did after QUIT).
    Closed,
}

#[derive(Debug, Clone)]
struct Event {
    conn: usize,
    at: Instant,
    what: What,
}

/// A minimal SMTP server that accepts any number of sessions at once, says yes to
/// everything, and reports each connection, command and close as a timestamped event.
struct Recorder {
    port: u16,
    accepted: Arc<AtomicUsize>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Every event received so far, in order.
    seen: Vec<Event>,
    task: JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start() -> Recorder {
        Recorder::start_with_quit_delay(Duration::ZERO).await
    }

    /// Like [`Recorder::start`], waiting `quit_delay` before answering QUIT (and closing).
    async fn start_with_quit_delay(quit_delay: Duration) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, events) = mpsc::unbounded_channel();
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = count.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                let _ = tx.send(Event {
                    conn,
                    at: Instant::now(),
                    what: What::Accepted,
                });
                tokio::spawn(async move {
                    serve(conn, stream, &tx, quit_delay).await;
                    let _ = tx.send(Event {
                        conn,
                        at: Instant::now(),
                        what: What::Closed,
                    });
                });
            }
        });
        Recorder {
            port,
            accepted,
            events,
            seen: Vec::new(),
            task,
        }
    }

    /// Connections accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits for connection `conn` to produce `what` (a line is matched by its start) and
    /// returns when the server saw it. Panics after [`PATIENCE`].
    async fn wait_for(&mut self, conn: usize, what: What) -> Instant {
        let matches = |e: &Event| {
            e.conn == conn
                && match (&e.what, &what) {
                    (What::Line(l), What::Line(prefix)) => l.starts_with(prefix.as_str()),
                    (a, b) => a == b,
                }
        };
        if let Some(e) = self.seen.iter().find(|e| matches(e)) {
            return e.at;
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => {
                    let hit = matches(&e);
                    let at = e.at;
                    self.seen.push(e);
                    if hit {
                        return at;
                    }
                }
                Ok(None) => panic!("the server stopped; saw {:?}", self.seen),
                Err(_) => panic!(
                    "connection {conn} did not show {what:?} within {PATIENCE:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// The events received so far, without waiting.
    fn seen_now(&mut self) -> &[Event] {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
        &self.seen
    }
}

async fn serve(
    conn: usize,
    stream: TcpStream,
    tx: &mpsc::UnboundedSender<Event>,
    quit_delay: Duration,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    if write.write_all(b"220 pool.test ESMTP\r\n").await.is_err() {
        return;
    }
    let mut in_data = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if in_data {
            if line == "." {
                in_data = false;
                if write.write_all(b"250 2.0.0 queued\r\n").await.is_err() {
                    return;
                }
            }
            continue;
        }
        let upper = line.to_ascii_uppercase();
        let _ = tx.send(Event {
            conn,
            at: Instant::now(),
            what: What::Line(line),
        });
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250 pool.test\r\n"
        } else if upper == "DATA" {
            in_data = true;
            b"354 go ahead\r\n"
        } else if upper == "QUIT" {
            tokio::time::sleep(quit_delay).await;
            let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            b"250 2.0.0 ok\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        client_name: Some(ClientName::new("client.test").expect("valid")),
        security: Security::None,
        ..ClientOptions::default()
    }
}

/// Settings where nothing expires unless the test says so.
fn far_limits() -> PoolSettings {
    PoolSettings {
        idle_timeout: Duration::from_secs(3600),
        max_lifetime: Duration::from_secs(3600),
        health_check_after: Duration::from_secs(3600),
        ..PoolSettings::default()
    }
}

#[tokio::test]
async fn the_reaper_quits_an_idle_session_after_idle_timeout_without_a_checkout() {
    let mut server = Recorder::start().await;
    let idle_timeout = Duration::from_millis(300);
    let pool = Pool::new(
        "127.0.0.1",
        server.port,
        options(),
        PoolSettings {
            idle_timeout,
            ..far_limits()
        },
    );
    let session = pool.get().await.expect("session");
    server.wait_for(0, What::Line("EHLO".into())).await;
    let returned = Instant::now();
    drop(session);
    assert_eq!(pool.idle_count(), 1, "back in the pool");

    // Nobody asks the pool for anything from here on.
    let quit_at = server.wait_for(0, What::Line("QUIT".into())).await;
    server.wait_for(0, What::Closed).await;
    assert!(
        quit_at.duration_since(returned) >= idle_timeout,
        "closed after {:?} idle, before the idle timeout {idle_timeout:?}",
        quit_at.duration_since(returned)
    );
    assert_eq!(pool.idle_count(), 0, "the reaper took it out of the pool");
    assert_eq!(pool.opened(), 1);
    assert_eq!(server.accepted(), 1, "no other connection");
    let lines: Vec<&What> = server
        .seen_now()
        .iter()
        .filter(|e| matches!(e.what, What::Line(_)))
        .map(|e| &e.what)
        .collect();
    assert_eq!(
        lines,
        [
            &What::Line("EHLO client.test".into()),
            &What::Line("QUIT".into())
        ],
        "greeted, then quit: nothing else was sent"
    );
}

#[tokio::test]
async fn a_session_past_max_lifetime_is_not_reused() {
    let mut server = Recorder::start().await;
    let max_lifetime = Duration::from_secs(1);
    let pool = Pool::new(
        "127.0.0.1",
        server.port,
        options(),
        PoolSettings {
            max_lifetime,
            ..far_limits()
        },
    );
    let before_first = Instant::now();
    let first = pool.get().await.expect("session");
    // The session was created at or before this moment.
    let born_by = Instant::now();
    drop(first);

    // Control: young enough, the same session is lent again. Checked only when the clock
    // says so; a machine stalled for a whole second between the two calls proves nothing.
    let again = pool.get().await.expect("session");
    if before_first.elapsed() < max_lifetime {
        assert_eq!(
            (pool.opened(), pool.reused()),
            (1, 1),
            "a young idle session is reused"
        );
    }
    drop(again);
    assert_eq!(pool.idle_count(), 1);

    tokio::time::sleep_until((born_by + max_lifetime).into()).await;
    let old = pool.opened();
    let reused = pool.reused();
    let second = pool.get().await.expect("session");
    assert_eq!(pool.opened(), old + 1, "a new session was opened");
    assert_eq!(pool.reused(), reused, "the old one was not lent again");
    let conn = server.accepted() - 1;
    assert!(conn >= 1);
    server.wait_for(conn, What::Line("EHLO".into())).await;
    // The one past its lifetime is closed politely, in the background.
    server.wait_for(0, What::Line("QUIT".into())).await;
    server.wait_for(0, What::Closed).await;
    drop(second);
    assert_eq!(pool.idle_count(), 1, "only the new session is idle");
}

#[tokio::test]
async fn a_session_lent_past_max_lifetime_is_quit_when_returned() {
    let mut server = Recorder::start().await;
    let max_lifetime = Duration::from_millis(300);
    let pool = Pool::new(
        "127.0.0.1",
        server.port,
        options(),
        PoolSettings {
            max_lifetime,
            ..far_limits()
        },
    );
    let session = pool.get().await.expect("session");
    let born_by = Instant::now();
    tokio::time::sleep_until((born_by + max_lifetime).into()).await;
    drop(session);
    assert_eq!(pool.idle_count(), 0, "not put back");
    server.wait_for(0, What::Line("QUIT".into())).await;
    server.wait_for(0, What::Closed).await;
    assert_eq!(server.accepted(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_reaper_task_ends_when_the_last_pool_clone_is_dropped() {
    // No connection is ever made: the port is never dialled. Paused time only moves the
    // reaper's sleeps along.
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let settings = PoolSettings {
        idle_timeout: Duration::from_secs(10),
        ..PoolSettings::default()
    };
    let pool = Pool::new("127.0.0.1", 9, options(), settings);
    assert_eq!(metrics.num_alive_tasks(), before + 1, "the reaper runs");

    let clone = pool.clone();
    drop(pool);
    // Several reaper periods (half the idle timeout each).
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        metrics.num_alive_tasks(),
        before + 1,
        "a clone is left: the reaper keeps running"
    );

    drop(clone);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        metrics.num_alive_tasks(),
        before,
        "the reaper ended with the last clone"
    );
}

#[tokio::test]
async fn dropping_the_last_pool_clone_closes_its_idle_sessions() {
    let mut server = Recorder::start().await;
    let pool = Pool::new("127.0.0.1", server.port, options(), far_limits());
    let clone = pool.clone();
    drop(pool.get().await.expect("session"));
    drop(pool);
    assert_eq!(clone.idle_count(), 1);
    drop(clone);
    server.wait_for(0, What::Closed).await;
    assert_eq!(server.accepted(), 1);
}

/// "At most `max_connections` sessions exist at once" holds while a retired session is still
/// saying QUIT: it keeps its slot until it is closed, so the next checkout waits for it. With
/// `max_connections: 1` and a server slow to answer QUIT, the second session must not open
/// before the first has closed.
#[tokio::test]
async fn max_connections_bounds_open_sessions_even_while_one_is_retired() {
    let mut server = Recorder::start_with_quit_delay(Duration::from_secs(2)).await;
    let pool = Pool::new(
        "127.0.0.1",
        server.port,
        options(),
        PoolSettings {
            max_connections: 1,
            max_messages_per_connection: 1,
            ..far_limits()
        },
    );
    let envelope = Envelope::new(
        Address::new("a@x.test").expect("valid"),
        vec![Address::new("b@x.test").expect("valid")],
    )
    .expect("envelope");
    let mut first = pool.get().await.expect("session");
    first
        .send_mail(&envelope, b"Subject: one\r\n\r\nbody\r\n")
        .await
        .expect("sent");
    drop(first); // Retired: it reached max_messages_per_connection.
    let second = pool.get().await.expect("session");
    let opened = server.wait_for(1, What::Accepted).await;
    let closed = server.wait_for(0, What::Closed).await;
    drop(second);
    assert!(
        closed <= opened,
        "with max_connections: 1 the server had two sessions open at once \
         (the second opened {:?} before the first closed)",
        closed.duration_since(opened)
    );
}
