//! An in-process SMTP server for delivery tests: counts sessions (total and at once), records
//! every message it accepted by its Subject, and fails at random stages from a seed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smtpkit::proto::DotUnstuffer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Per-mille chances of each fault, drawn independently at each stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// `421` instead of the greeting.
    pub greeting_421: u32,
    /// `451` to MAIL.
    pub mail_451: u32,
    /// `450` to a RCPT.
    pub rcpt_450: u32,
    /// `550` to a RCPT.
    pub rcpt_550: u32,
    /// `451` to DATA.
    pub data_451: u32,
    /// Close without a reply, at any command.
    pub drop_at_command: u32,
    /// `451` to the final dot (not stored).
    pub final_451: u32,
    /// Store the message, then close without replying (the client cannot know).
    pub accept_then_drop: u32,
    /// Close after the final dot without storing.
    pub drop_after_dot: u32,
    /// `421` to NOOP.
    pub noop_421: u32,
    /// Close the session after each message with this chance (idle connection dies).
    pub close_after_message: u32,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub sessions: AtomicUsize,
    /// Connections open now, from accept until the server's task is done with the socket:
    /// this includes sessions the client is closing (a QUIT in flight, or a socket the client
    /// dropped that the server has not read the EOF of yet).
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
    /// Sessions inside a mail transaction now: from receiving MAIL FROM until just before the
    /// server sends the reply that ends it (or closes). A client sends MAIL only over a session
    /// it holds, and cannot let go of it before that reply, so this never counts a session
    /// that is being closed.
    pub in_transaction: AtomicUsize,
    pub max_in_transaction: AtomicUsize,
    /// Subject -> how many times it was stored.
    pub accepted: Mutex<HashMap<String, usize>>,
    /// Id -> recipients of each stored copy.
    pub recipients: Mutex<HashMap<String, Vec<Vec<String>>>>,
}

impl Stats {
    pub fn accepted_count(&self, id: &str) -> usize {
        self.accepted
            .lock()
            .expect("lock")
            .get(id)
            .copied()
            .unwrap_or(0)
    }
}

pub struct FaultServer {
    pub port: u16,
    pub stats: Arc<Stats>,
    handle: JoinHandle<()>,
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl FaultServer {
    pub async fn start(faults: Faults, seed: u64) -> FaultServer {
        FaultServer::start_with_delay(faults, seed, Duration::ZERO).await
    }

    /// `delay` is added before each reply to MAIL (to keep sessions busy and overlapping).
    /// Like [`FaultServer::start`], also offering CHUNKING (BDAT, RFC 3030), with the DATA
    /// faults applied to the last chunk: `data_451` refuses it, the others as after a `.`.
    pub async fn start_chunking(faults: Faults, seed: u64) -> FaultServer {
        FaultServer::spawn(faults, seed, Duration::ZERO, true).await
    }

    pub async fn start_with_delay(faults: Faults, seed: u64, delay: Duration) -> FaultServer {
        FaultServer::spawn(faults, seed, delay, false).await
    }

    async fn spawn(faults: Faults, seed: u64, delay: Duration, chunking: bool) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let handle = tokio::spawn(async move {
            let mut n = 0u64;
            // Bounded: the test drops the server (abort) when done.
            while let Ok((stream, _)) = listener.accept().await {
                n += 1;
                let s = s.clone();
                tokio::spawn(async move {
                    s.sessions.fetch_add(1, Ordering::SeqCst);
                    let now = s.active.fetch_add(1, Ordering::SeqCst) + 1;
                    s.max_active.fetch_max(now, Ordering::SeqCst);
                    let _ = tokio::time::timeout(
                        Duration::from_secs(60),
                        session(
                            stream,
                            faults,
                            fastrand::Rng::with_seed(seed.wrapping_add(n)),
                            &s,
                            delay,
                            chunking,
                        ),
                    )
                    .await;
                    s.active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        FaultServer {
            port,
            stats,
            handle,
        }
    }
}

struct Lines {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Lines {
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            if self.buf.len() > 64 * 1024 {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn data(&mut self) -> Option<Vec<u8>> {
        let mut decoder = DotUnstuffer::new();
        let mut message = Vec::new();
        loop {
            if !self.buf.is_empty() {
                let pending = std::mem::take(&mut self.buf);
                if let Some(end) = decoder.decode(&pending, &mut message) {
                    self.buf = pending[end..].to_vec();
                    return Some(message);
                }
            }
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Exactly `n` octets (a BDAT chunk).
    async fn octets(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    async fn reply(&mut self, line: &str) -> Option<()> {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .ok()
    }
}

fn chance(rng: &mut fastrand::Rng, per_mille: u32) -> bool {
    per_mille > 0 && rng.u32(0..1000) < per_mille
}

/// The test's id of a message: its Subject.
fn test_id(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    text.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "(none)".into())
}

/// Counts a session in [`Stats::in_transaction`] while a transaction is open; dropped (or
/// ended) before the reply that ends the transaction is written.
struct Transaction<'a> {
    stats: &'a Stats,
    open: bool,
}

impl Transaction<'_> {
    fn begin(&mut self) {
        if !self.open {
            self.open = true;
            let now = self.stats.in_transaction.fetch_add(1, Ordering::SeqCst) + 1;
            self.stats
                .max_in_transaction
                .fetch_max(now, Ordering::SeqCst);
        }
    }

    fn end(&mut self) {
        if self.open {
            self.open = false;
            self.stats.in_transaction.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

async fn session(
    stream: TcpStream,
    f: Faults,
    mut rng: fastrand::Rng,
    stats: &Stats,
    delay: Duration,
    chunking: bool,
) -> Option<()> {
    let _ = stream.set_nodelay(true);
    let mut io = Lines {
        stream,
        buf: Vec::new(),
    };
    if chance(&mut rng, f.greeting_421) {
        return io.reply("421 4.3.2 busy, try later").await;
    }
    io.reply("220 fault.test ESMTP").await?;
    let mut rcpts: Vec<String> = Vec::new();
    let mut mail = false;
    // The BDAT chunks of the transaction so far.
    let mut chunks: Vec<u8> = Vec::new();
    // Declared after `io`, so dropped (and counted out) before the socket closes.
    let mut tx = Transaction { stats, open: false };
    loop {
        let line = io.line().await?;
        let upper = line.to_ascii_uppercase();
        if chance(&mut rng, f.drop_at_command) && !upper.starts_with("QUIT") {
            return None;
        }
        if upper.starts_with("EHLO") {
            io.reply("250-fault.test").await?;
            io.reply("250-PIPELINING").await?;
            io.reply("250-8BITMIME").await?;
            if chunking {
                io.reply("250-CHUNKING").await?;
            }
            io.reply("250 ENHANCEDSTATUSCODES").await?;
        } else if upper.starts_with("MAIL FROM:") {
            tx.begin();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if chance(&mut rng, f.mail_451) {
                tx.end();
                io.reply("451 4.3.0 mail later").await?;
            } else {
                mail = true;
                rcpts.clear();
                io.reply("250 2.1.0 ok").await?;
            }
        } else if upper.starts_with("RCPT TO:") {
            if !mail {
                io.reply("503 5.5.1 MAIL first").await?;
            } else if chance(&mut rng, f.rcpt_450) {
                io.reply("450 4.2.1 mailbox busy").await?;
            } else if chance(&mut rng, f.rcpt_550) {
                io.reply("550 5.1.1 no such user").await?;
            } else {
                rcpts.push(
                    line[8..]
                        .trim()
                        .trim_matches(|c| c == '<' || c == '>')
                        .to_owned(),
                );
                io.reply("250 2.1.5 ok").await?;
            }
        } else if upper == "DATA" {
            if !mail || rcpts.is_empty() {
                tx.end();
                io.reply("554 5.5.1 no valid recipients").await?;
            } else if chance(&mut rng, f.data_451) {
                tx.end();
                io.reply("451 4.3.0 data later").await?;
            } else {
                io.reply("354 go ahead").await?;
                let message = io.data().await?;
                mail = false;
                let id = test_id(&message);
                if chance(&mut rng, f.drop_after_dot) {
                    return None;
                }
                if chance(&mut rng, f.final_451) {
                    tx.end();
                    io.reply("451 4.3.0 not stored").await?;
                    continue;
                }
                *stats
                    .accepted
                    .lock()
                    .expect("lock")
                    .entry(id.clone())
                    .or_default() += 1;
                stats
                    .recipients
                    .lock()
                    .expect("lock")
                    .entry(id)
                    .or_default()
                    .push(rcpts.clone());
                if chance(&mut rng, f.accept_then_drop) {
                    return None;
                }
                tx.end();
                io.reply("250 2.0.0 queued").await?;
                if chance(&mut rng, f.close_after_message) {
                    return None;
                }
            }
        } else if chunking && upper.starts_with("BDAT ") {
            let mut words = upper[5..].split(' ');
            let n: usize = words.next()?.parse().ok()?;
            let last = words.next() == Some("LAST");
            let octets = io.octets(n).await?;
            if !mail || rcpts.is_empty() {
                chunks.clear();
                if last {
                    tx.end();
                }
                io.reply("554 5.5.1 no valid recipients").await?;
                continue;
            }
            chunks.extend_from_slice(&octets);
            if !last {
                io.reply("250 2.0.0 chunk ok").await?;
                continue;
            }
            let message = std::mem::take(&mut chunks);
            mail = false;
            if chance(&mut rng, f.data_451) {
                tx.end();
                io.reply("451 4.3.0 data later").await?;
                continue;
            }
            let id = test_id(&message);
            if chance(&mut rng, f.drop_after_dot) {
                return None;
            }
            if chance(&mut rng, f.final_451) {
                tx.end();
                io.reply("451 4.3.0 not stored").await?;
                continue;
            }
            *stats
                .accepted
                .lock()
                .expect("lock")
                .entry(id.clone())
                .or_default() += 1;
            stats
                .recipients
                .lock()
                .expect("lock")
                .entry(id)
                .or_default()
                .push(rcpts.clone());
            if chance(&mut rng, f.accept_then_drop) {
                return None;
            }
            tx.end();
            io.reply("250 2.0.0 queued").await?;
            if chance(&mut rng, f.close_after_message) {
                return None;
            }
        } else if upper == "RSET" {
            tx.end();
            chunks.clear();
            mail = false;
            rcpts.clear();
            io.reply("250 2.0.0 ok").await?;
        } else if upper == "NOOP" {
            if chance(&mut rng, f.noop_421) {
                return io.reply("421 4.4.2 idle too long").await;
            }
            io.reply("250 2.0.0 ok").await?;
        } else if upper == "QUIT" {
            tx.end();
            return io.reply("221 2.0.0 bye").await;
        } else {
            io.reply("500 5.5.2 unknown command").await?;
        }
    }
}
