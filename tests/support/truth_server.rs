//! A small SMTP server that remembers exactly what it answered, for checking that a client
//! attributes every reply to the right message after cancellations.
//!
//! Each session: `220`, EHLO with PIPELINING (and AUTH PLAIN when configured), then MAIL,
//! RCPT, DATA and the body, answered line by line. A recipient whose local part starts with
//! `bad` gets `550 5.1.1`, one starting with `busy` gets `450 4.2.1`, any other `250`. Every
//! stored message is kept with its queue id, its connection and its accepted recipients.
//!
//! A [`Stall`] holds the server at one point of one session (before the reply to MAIL, before
//! the 354, half-way through reading a body, before the reply to the final `.`, inside AUTH,
//! on a NOOP) and reports that it got there, so a test can cancel the client at that exact
//! moment instead of guessing with a timer. The server then waits for [`TruthServer::release`]
//! (or a fixed delay) and carries on as if nothing happened: a late reply lands on the old
//! connection, where a client that reused it would read it as its own.
//!
//! Bounded everywhere: every read and every stall gives up after 30 s.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};

/// How long any read or stall may take before the session gives up.
const LIMIT: Duration = Duration::from_secs(30);

/// Where a session can be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The MAIL command arrived (with the rest of its pipelined group); nothing answered yet.
    Group,
    /// MAIL and RCPT answered; the reply to DATA (354) not sent yet.
    Before354,
    /// 354 sent and at least 64 KiB of the body read; the server stops reading.
    BodyHalf,
    /// The whole body arrived and the message is stored; its `250` not sent yet.
    FinalReply,
    /// The AUTH command arrived; no reply yet.
    Auth,
    /// A NOOP arrived; no reply yet.
    Noop,
}

/// Hold the first session that reaches `point`.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    /// Where.
    pub point: Point,
    /// Carry on after this long; `None`: wait for [`TruthServer::release`].
    pub release_after: Option<Duration>,
}

/// A message the server stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Index of the connection it came over (0 for the first accepted).
    pub conn: usize,
    /// The queue id in its `250` reply.
    pub queue_id: String,
    /// MAIL FROM.
    pub from: String,
    /// The recipients accepted at RCPT.
    pub rcpts: Vec<String>,
    /// The message as received (dot-unstuffed).
    pub body: Vec<u8>,
}

impl Stored {
    /// The message as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the server did.
#[derive(Debug, Default, Clone)]
pub struct Truth {
    /// Connections accepted.
    pub connections: usize,
    /// Per connection, every command line received (bodies excluded), in order.
    pub commands: Vec<Vec<String>>,
    /// Every stored message, in order.
    pub stored: Vec<Stored>,
    /// Per connection, whether its session is over.
    pub ended: Vec<bool>,
}

impl Truth {
    /// Stored messages whose text contains `marker`.
    pub fn stored_with(&self, marker: &str) -> Vec<&Stored> {
        self.stored
            .iter()
            .filter(|s| s.text().contains(marker))
            .collect()
    }
}

/// What the RCPT rule answers for `address` (an address starting with `later` gets `450` the
/// first time the server sees it, `250` after).
pub fn rcpt_reply(address: &str) -> (u16, &'static str) {
    if address.starts_with("bad") {
        (550, "5.1.1 no such user")
    } else if address.starts_with("busy") {
        (450, "4.2.1 mailbox busy, try later")
    } else {
        (250, "2.1.5 ok")
    }
}

struct Shared {
    truth: Mutex<Truth>,
    stall: Mutex<Option<Stall>>,
    reached: mpsc::UnboundedSender<Point>,
    release: Notify,
    auth: bool,
    behaviour: Behaviour,
    dropped_once: std::sync::atomic::AtomicBool,
    /// Addresses already answered (for the `later` rule).
    seen: Mutex<std::collections::HashSet<String>>,
    /// Random delay before each reply, at most this many milliseconds (0: none).
    max_reply_delay_ms: u64,
    rng: Mutex<fastrand::Rng>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The server. Dropping it stops every session.
pub struct TruthServer {
    /// The port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
    reached: mpsc::UnboundedReceiver<Point>,
    task: tokio::task::JoinHandle<()>,
}

/// How a [`TruthServer`] behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Offer and accept AUTH PLAIN (any credentials).
    pub auth: bool,
    /// Delay each reply by a random 0..=N ms.
    pub max_reply_delay_ms: u64,
    /// Seed for those delays.
    pub seed: u64,
    /// Answer the final `.` with a malformed reply (`250-` then `550`) after storing.
    pub malformed_final: bool,
    /// Close the connection instead of answering the first final `.` (after storing).
    pub drop_after_first_dot: bool,
    /// Answer every MAIL with this instead of 250.
    pub mail_reply: Option<&'static str>,
    /// Answer every AUTH with this instead of 235.
    pub auth_reply: Option<&'static str>,
    /// After answering a message, say `421` at once and close (an idle timeout, early).
    pub close_with_421_after_message: bool,
}

impl TruthServer {
    /// Starts on a free loopback port.
    pub async fn start(behaviour: Behaviour) -> TruthServer {
        TruthServer::start_on(0, behaviour).await
    }

    /// Starts on loopback port `port` (0: a free one), e.g. where clients were already
    /// failing to connect (a server coming back after an outage).
    pub async fn start_on(port: u16, behaviour: Behaviour) -> TruthServer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("truth server: bind");
        let port = listener.local_addr().expect("truth server: addr").port();
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            truth: Mutex::new(Truth::default()),
            stall: Mutex::new(None),
            reached: tx,
            release: Notify::new(),
            auth: behaviour.auth,
            behaviour,
            dropped_once: std::sync::atomic::AtomicBool::new(false),
            seen: Mutex::new(std::collections::HashSet::new()),
            max_reply_delay_ms: behaviour.max_reply_delay_ms,
            rng: Mutex::new(fastrand::Rng::with_seed(behaviour.seed)),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        TruthServer {
            port,
            shared,
            reached: rx,
            task,
        }
    }

    /// Holds the next session that reaches `stall.point`.
    pub fn stall(&self, stall: Stall) {
        *lock(&self.shared.stall) = Some(stall);
    }

    /// Waits (at most 30 s, then panics) until a session is held at `point`.
    pub async fn reached(&mut self, point: Point) {
        match timeout(LIMIT, self.reached.recv()).await {
            Ok(Some(p)) => assert_eq!(p, point, "the server stalled somewhere else"),
            _ => panic!("the server never reached {point:?}"),
        }
    }

    /// Lets a held session carry on.
    pub fn release(&self) {
        self.shared.release.notify_one();
    }

    /// Waits (at most 30 s, then panics) until session `conn` is over, and returns the truth.
    pub async fn ended(&self, conn: usize) -> Truth {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let truth = self.truth();
            if truth.ended.get(conn).copied().unwrap_or(false) {
                return truth;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session {conn} did not end"
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// What happened so far.
    pub fn truth(&self) -> Truth {
        lock(&self.shared.truth).clone()
    }
}

impl Drop for TruthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { return };
                let _ = stream.set_nodelay(true);
                let conn = {
                    let mut t = lock(&shared.truth);
                    t.connections += 1;
                    t.commands.push(Vec::new());
                    t.ended.push(false);
                    t.connections - 1
                };
                let mut session = Session { stream, buf: Vec::new(), conn, shared: shared.clone() };
                sessions.spawn(async move {
                    let _ = session.run().await;
                    lock(&session.shared.truth).ended[session.conn] = true;
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

struct Session {
    stream: TcpStream,
    buf: Vec<u8>,
    conn: usize,
    shared: Arc<Shared>,
}

/// The session ended (EOF, error, QUIT, time limit).
struct Ended;

impl Session {
    async fn run(&mut self) -> Result<(), Ended> {
        self.send("220 truth.test ESMTP").await?;
        let mut from: Option<String> = None;
        let mut rcpts: Vec<String> = Vec::new();
        loop {
            let line = self.line().await?;
            lock(&self.shared.truth).commands[self.conn].push(line.clone());
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                let mut lines = vec!["250-truth.test", "250-PIPELINING"];
                if self.shared.auth {
                    lines.push("250-AUTH PLAIN");
                }
                lines.push("250 ENHANCEDSTATUSCODES");
                self.send(&lines.join("\r\n")).await?;
            } else if upper.starts_with("AUTH") {
                self.hold(Point::Auth).await?;
                let reply = self
                    .shared
                    .behaviour
                    .auth_reply
                    .unwrap_or("235 2.7.0 authenticated");
                self.send(reply).await?;
            } else if upper.starts_with("NOOP") {
                self.hold(Point::Noop).await?;
                self.send("250 2.0.0 ok").await?;
            } else if upper.starts_with("RSET") {
                from = None;
                rcpts.clear();
                self.send("250 2.0.0 ok").await?;
            } else if upper.starts_with("QUIT") {
                self.send("221 2.0.0 bye").await?;
                return Ok(());
            } else if upper.starts_with("MAIL FROM:") {
                self.hold(Point::Group).await?;
                rcpts.clear();
                if let Some(reply) = self.shared.behaviour.mail_reply {
                    self.send(reply).await?;
                    continue;
                }
                from = Some(path(&line));
                self.send("250 2.1.0 sender ok").await?;
            } else if upper.starts_with("RCPT TO:") {
                let to = path(&line);
                let first_time = lock(&self.shared.seen).insert(to.clone());
                let (code, text) = if to.starts_with("later") {
                    if first_time {
                        (450, "4.2.1 try again later")
                    } else {
                        (250, "2.1.5 ok")
                    }
                } else {
                    rcpt_reply(&to)
                };
                if code == 250 {
                    rcpts.push(to);
                }
                self.send(&format!("{code} {text}")).await?;
            } else if upper.starts_with("DATA") {
                if from.is_none() || rcpts.is_empty() {
                    self.send("554 5.5.1 no valid recipients").await?;
                    continue;
                }
                self.hold(Point::Before354).await?;
                self.send("354 go ahead").await?;
                let body = self.body().await?;
                let queue_id = {
                    let mut t = lock(&self.shared.truth);
                    let id = format!("Q{:05}", t.stored.len());
                    t.stored.push(Stored {
                        conn: self.conn,
                        queue_id: id.clone(),
                        from: from.take().unwrap_or_default(),
                        rcpts: std::mem::take(&mut rcpts),
                        body,
                    });
                    id
                };
                self.hold(Point::FinalReply).await?;
                let b = self.shared.behaviour;
                if b.drop_after_first_dot
                    && !self
                        .shared
                        .dropped_once
                        .swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    return Ok(());
                }
                if b.malformed_final {
                    self.send(&format!(
                        "250-2.0.0 Ok: queued as {queue_id}\r\n550 5.0.0 oops"
                    ))
                    .await?;
                    continue;
                }
                self.send(&format!("250 2.0.0 Ok: queued as {queue_id}"))
                    .await?;
                if b.close_with_421_after_message {
                    self.send("421 4.4.2 truth.test idle too long, closing")
                        .await?;
                    return Ok(());
                }
            } else {
                self.send("500 5.5.2 unknown command").await?;
            }
        }
    }

    /// Holds here if a stall is set for `point` (once).
    async fn hold(&mut self, point: Point) -> Result<(), Ended> {
        let stall = {
            let mut s = lock(&self.shared.stall);
            match *s {
                Some(st) if st.point == point => s.take(),
                _ => None,
            }
        };
        let Some(stall) = stall else { return Ok(()) };
        let _ = self.shared.reached.send(point);
        match stall.release_after {
            Some(d) => sleep(d).await,
            None => {
                if timeout(LIMIT, self.shared.release.notified())
                    .await
                    .is_err()
                {
                    return Err(Ended);
                }
            }
        }
        Ok(())
    }

    async fn send(&mut self, reply: &str) -> Result<(), Ended> {
        let delay = match self.shared.max_reply_delay_ms {
            0 => 0,
            max => lock(&self.shared.rng).u64(0..=max),
        };
        if delay > 0 {
            sleep(Duration::from_millis(delay)).await;
        }
        let mut bytes = reply.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        match timeout(LIMIT, self.stream.write_all(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Ended),
        }
    }

    async fn fill(&mut self) -> Result<(), Ended> {
        let mut chunk = [0u8; 16 * 1024];
        match timeout(LIMIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            _ => Err(Ended),
        }
    }

    async fn line(&mut self) -> Result<String, Ended> {
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=p).collect();
                let text = String::from_utf8_lossy(&raw);
                return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            self.fill().await?;
        }
    }

    /// Reads a body up to the lone `.`, undoing dot-stuffing.
    async fn body(&mut self) -> Result<Vec<u8>, Ended> {
        let mut body = Vec::new();
        let mut held = false;
        loop {
            while let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=p).collect();
                if raw == b".\r\n" || raw == b".\n" {
                    return Ok(body);
                }
                let line = raw.strip_prefix(b".").unwrap_or(&raw);
                body.extend_from_slice(line);
            }
            if !held && body.len() >= 64 * 1024 {
                held = true;
                self.hold(Point::BodyHalf).await?;
            }
            self.fill().await?;
        }
    }
}

/// The address between `<` and `>`.
fn path(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_owned()
}
