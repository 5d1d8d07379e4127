//! Scripted mock SMTP server for integration tests.
//!
//! A [`MockServer`] listens on `127.0.0.1:0`, accepts one connection (or several
//! sequential ones), runs a script of [`Step`]s against each, records everything
//! the client sent (keeping the boundaries of every socket read) and can inject
//! faults (slow, split, endless or truncated replies, early close).
//!
//! Nothing here can hang forever: every reading step has a deadline (10 s by
//! default), every write is bounded by the same deadline, every loop is bounded
//! and [`MockServer::finish`] gives up after 20 s with a panic.
//!
//! Only depends on `tokio` (features `full`).
#![allow(dead_code)]

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Any stream the mock can talk over: TCP, then TLS after [`Step::TlsHandshake`].
trait MockIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> MockIo for T {}
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, timeout_at, Instant};

/// Default deadline for each reading step (and for each write and accept).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`MockServer::finish`] waits for all scripts before panicking.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(20);

/// After a script ends without `Close`/`ExpectEof`, the server keeps reading
/// until the client closes or sends nothing for this long.
pub const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// Upper bound on the total time spent draining after a script ends.
const DRAIN_MAX: Duration = Duration::from_secs(10);

/// Upper bound on unconsumed bytes kept in a connection's receive buffer.
const MAX_BUFFER: usize = 64 * 1024 * 1024;

/// Size of the temporary buffer used for each socket `read()`.
const READ_CHUNK: usize = 64 * 1024;

/// Largest single write used by `Step::Endless`.
const ENDLESS_CHUNK: usize = 64 * 1024;

/// One step of a mock server script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write `line` followed by CRLF.
    Reply(String),
    /// Write raw bytes as-is (no CRLF added).
    Raw(Vec<u8>),
    /// Write bytes split into chunks of `chunk` bytes with `pause` between writes (flush each).
    /// A `chunk` of 0 is treated as 1.
    Split {
        /// Bytes to write.
        bytes: Vec<u8>,
        /// Size of each write.
        chunk: usize,
        /// Pause between two writes.
        pause: Duration,
    },
    /// Read one CRLF- (or LF-) terminated line from the client; assert it starts with `prefix`,
    /// compared ASCII-case-insensitively. Mismatch => record an error
    /// "expected line starting with X, got Y" and stop the script (close connection).
    Expect(String),
    /// Read lines until "." alone on a line (the SMTP DATA terminator), store the raw bytes
    /// received between the 354 and the terminator (still dot-stuffed, exactly as on the wire,
    /// excluding the final ".\r\n") as one message in the log.
    ExpectData,
    /// Read one `BDAT <n> [LAST]` line (the LAST marker must be there exactly when `last`),
    /// then exactly `n` octets, stored as one chunk in [`MockLog::chunks`].
    ExpectBdat {
        /// Whether the chunk must be the last (`LAST`).
        last: bool,
    },
    /// Assert that the client sends nothing more for this long (bytes already buffered and
    /// not consumed count as sent): a client that must wait for replies.
    ExpectQuiet(Duration),
    /// Sleep.
    Delay(Duration),
    /// Close the connection now (drop the socket), ending the script.
    Close,
    /// Read until the client closes the connection (EOF) or the read timeout passes; records
    /// the bytes. Ends script. A connection reset counts as the client closing; the timeout
    /// passing records an error (the client did not close).
    ExpectEof,
    /// Write `line` + CRLF repeatedly (e.g. "250-x") up to `max_bytes` total or until the write
    /// fails (client went away). Bounded. Exactly `max_bytes` bytes are written when the client
    /// keeps reading (the last line may be cut short); a failed or timed-out write just stops.
    Endless {
        /// Line to repeat (CRLF is appended).
        line: String,
        /// Total number of bytes to write at most.
        max_bytes: usize,
    },
    /// Write `bytes` one byte at a time with `interval` between bytes (a trickling server).
    /// Stops early if the write fails.
    Trickle {
        /// Bytes to write.
        bytes: Vec<u8>,
        /// Pause between two bytes.
        interval: Duration,
    },
    /// Wait until at least `n` bytes (beyond what was already consumed by previous steps) are
    /// buffered or the timeout passes; nothing asserted; used to observe read boundaries.
    WaitBytes(usize),
    /// Run a TLS server handshake now with the config given to [`MockServer::start_tls`]
    /// (first step for implicit TLS, after the 220 to STARTTLS otherwise). Bytes the client
    /// sent before are discarded. A failed handshake is recorded as an error.
    TlsHandshake,
    /// From here on, use this deadline instead of the server's step timeout for every later
    /// step of this connection (reads, writes, TLS handshake). Lets a test make only the step
    /// under test short, leaving accept and the rest of the script on the generous default.
    SetTimeout(Duration),
}

impl Step {
    /// Shorthand for `Step::Reply(line.into())`.
    pub fn reply(line: impl Into<String>) -> Step {
        Step::Reply(line.into())
    }

    /// Shorthand for `Step::Expect(prefix.into())`.
    pub fn expect(prefix: impl Into<String>) -> Step {
        Step::Expect(prefix.into())
    }

    /// Short description used in error messages (bytes are not dumped).
    fn describe(&self) -> String {
        match self {
            Step::Reply(l) => format!("Reply({l:?})"),
            Step::Raw(b) => format!("Raw({} bytes)", b.len()),
            Step::Split { bytes, chunk, .. } => {
                format!("Split({} bytes by {chunk})", bytes.len())
            }
            Step::Expect(p) => format!("Expect({p:?})"),
            Step::ExpectData => "ExpectData".to_string(),
            Step::ExpectBdat { last } => format!("ExpectBdat(last: {last})"),
            Step::ExpectQuiet(d) => format!("ExpectQuiet({d:?})"),
            Step::Delay(d) => format!("Delay({d:?})"),
            Step::Close => "Close".to_string(),
            Step::ExpectEof => "ExpectEof".to_string(),
            Step::Endless { line, max_bytes } => format!("Endless({line:?}, {max_bytes})"),
            Step::Trickle { bytes, .. } => format!("Trickle({} bytes)", bytes.len()),
            Step::WaitBytes(n) => format!("WaitBytes({n})"),
            Step::TlsHandshake => "TlsHandshake".to_string(),
            Step::SetTimeout(d) => format!("SetTimeout({d:?})"),
        }
    }
}

/// Everything recorded by a [`MockServer`].
#[derive(Debug, Default, Clone)]
pub struct MockLog {
    /// Per connection: every chunk returned by each `read()` call on the socket, in order
    /// (read boundaries kept).
    pub reads: Vec<Vec<Vec<u8>>>,
    /// Per connection: every complete line the script consumed via Expect (without CRLF),
    /// lossy UTF-8.
    pub lines: Vec<Vec<String>>,
    /// All messages captured by ExpectData, in order, across connections.
    pub messages: Vec<Vec<u8>>,
    /// All BDAT chunks captured by ExpectBdat, in order, across connections.
    pub chunks: Vec<Vec<u8>>,
    /// Script failures (expectation mismatches, read timeouts, unexpected EOF while expecting);
    /// tests assert this is empty.
    pub errors: Vec<String>,
    /// Number of connections accepted.
    pub connections: usize,
}

impl MockLog {
    /// All bytes the client sent on connection `i`, concatenated (empty if there is no such
    /// connection).
    pub fn received(&self, i: usize) -> Vec<u8> {
        self.reads.get(i).map(|r| r.concat()).unwrap_or_default()
    }

    /// [`MockLog::received`] as lossy UTF-8.
    pub fn received_str(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.received(i)).into_owned()
    }

    /// Panics with the errors listed if `errors` is non-empty.
    pub fn assert_ok(&self) {
        if !self.errors.is_empty() {
            panic!(
                "mock SMTP server recorded {} error(s):\n  {}\n{}",
                self.errors.len(),
                self.errors.join("\n  "),
                self.summary()
            );
        }
    }

    /// Human-readable dump of what each connection received (for panic messages).
    fn summary(&self) -> String {
        let mut s = format!("connections accepted: {}\n", self.connections);
        for i in 0..self.reads.len() {
            s.push_str(&format!(
                "connection {i} received: {:?}\n",
                self.received_str(i)
            ));
        }
        s
    }
}

/// Locks the shared log, ignoring poisoning (a panicking test must not hide the log).
fn lock(log: &Mutex<MockLog>) -> MutexGuard<'_, MockLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scripted mock SMTP server running in a spawned tokio task.
pub struct MockServer {
    addr: SocketAddr,
    log: Arc<Mutex<MockLog>>,
    handle: Option<JoinHandle<()>>,
}

impl fmt::Debug for MockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MockServer {
    /// Bind 127.0.0.1:0 and serve one connection with `script` in a spawned tokio task.
    pub async fn start(script: Vec<Step>) -> MockServer {
        Self::start_many_with_timeout(vec![script], DEFAULT_TIMEOUT).await
    }

    /// Like [`MockServer::start`], with a TLS server config for [`Step::TlsHandshake`].
    pub async fn start_tls(script: Vec<Step>, tls: Arc<ServerConfig>) -> MockServer {
        Self::spawn(vec![script], DEFAULT_TIMEOUT, Some(tls)).await
    }

    /// Like [`MockServer::start_many`], with a TLS server config for [`Step::TlsHandshake`]
    /// (shared by the connections, so a client may resume its first session).
    pub async fn start_many_tls(scripts: Vec<Vec<Step>>, tls: Arc<ServerConfig>) -> MockServer {
        Self::spawn(scripts, DEFAULT_TIMEOUT, Some(tls)).await
    }

    /// Like [`MockServer::start`], with `step_timeout` as the deadline of each reading step
    /// (and of each write and of the accept) instead of [`DEFAULT_TIMEOUT`].
    pub async fn start_with_timeout(script: Vec<Step>, step_timeout: Duration) -> MockServer {
        Self::start_many_with_timeout(vec![script], step_timeout).await
    }

    /// Serve `scripts.len()` sequential connections, connection i running scripts[i].
    pub async fn start_many(scripts: Vec<Vec<Step>>) -> MockServer {
        Self::start_many_with_timeout(scripts, DEFAULT_TIMEOUT).await
    }

    /// Like [`MockServer::start_many`], with a custom per-step timeout.
    pub async fn start_many_with_timeout(
        scripts: Vec<Vec<Step>>,
        step_timeout: Duration,
    ) -> MockServer {
        Self::spawn(scripts, step_timeout, None).await
    }

    async fn spawn(
        scripts: Vec<Vec<Step>>,
        step_timeout: Duration,
        tls: Option<Arc<ServerConfig>>,
    ) -> MockServer {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("mock server: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("mock server: local_addr");
        let log = Arc::new(Mutex::new(MockLog::default()));
        let task_log = Arc::clone(&log);
        let handle = tokio::spawn(serve(listener, scripts, step_timeout, task_log, tls));
        MockServer {
            addr,
            log,
            handle: Some(handle),
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A snapshot of the log recorded so far (the scripts may still be running).
    pub fn log_snapshot(&self) -> MockLog {
        lock(&self.log).clone()
    }

    /// Wait (bounded: 20 s, then panic with a clear message) for all scripts to finish and
    /// return the log.
    pub async fn finish(mut self) -> MockLog {
        let mut handle = self.handle.take().expect("mock server: finish called once");
        match timeout(FINISH_TIMEOUT, &mut handle).await {
            Ok(Ok(())) => lock(&self.log).clone(),
            Ok(Err(e)) => {
                let log = lock(&self.log).clone();
                panic!(
                    "mock SMTP server task failed: {e}\nerrors: {:?}\n{}",
                    log.errors,
                    log.summary()
                )
            }
            Err(_) => {
                handle.abort();
                let log = lock(&self.log).clone();
                panic!(
                    "mock SMTP server did not finish its scripts within {FINISH_TIMEOUT:?} \
                     (client never connected, or kept the connection busy?)\nerrors: {:?}\n{}",
                    log.errors,
                    log.summary()
                )
            }
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// Accepts `scripts.len()` connections one after the other and runs each script.
async fn serve(
    listener: TcpListener,
    scripts: Vec<Vec<Step>>,
    step_timeout: Duration,
    log: Arc<Mutex<MockLog>>,
    tls: Option<Arc<ServerConfig>>,
) {
    for (idx, script) in scripts.into_iter().enumerate() {
        let stream = match timeout(step_timeout, listener.accept()).await {
            Ok(Ok((stream, _peer))) => stream,
            Ok(Err(e)) => {
                lock(&log)
                    .errors
                    .push(format!("connection {idx}: accept failed: {e}"));
                return;
            }
            Err(_) => {
                lock(&log).errors.push(format!(
                    "connection {idx}: no client connected within {step_timeout:?}"
                ));
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        {
            let mut l = lock(&log);
            l.connections += 1;
            l.reads.push(Vec::new());
            l.lines.push(Vec::new());
        }
        let mut conn = Conn {
            idx,
            stream: Some(Box::new(stream)),
            tls: tls.clone(),
            buf: Vec::new(),
            eof: false,
            step_timeout,
            log: Arc::clone(&log),
        };
        conn.run(&script).await;
    }
}

/// Result of one attempt to read more bytes from the socket.
enum ReadOutcome {
    /// `n > 0` bytes were appended to the buffer.
    Data,
    /// The client closed its side (or reset the connection).
    Eof,
    /// The deadline passed.
    Timeout,
    /// The read failed.
    Error(io::Error),
}

/// How a script ended.
enum End {
    /// All steps ran; the socket is still open.
    Normal,
    /// The socket is already closed (Close / ExpectEof).
    Closed,
    /// A step failed; the error is recorded.
    Failed,
}

/// State of one accepted connection.
struct Conn {
    idx: usize,
    stream: Option<Box<dyn MockIo>>,
    tls: Option<Arc<ServerConfig>>,
    /// Received bytes not yet consumed by a step.
    buf: Vec<u8>,
    eof: bool,
    step_timeout: Duration,
    log: Arc<Mutex<MockLog>>,
}

impl Conn {
    async fn run(&mut self, script: &[Step]) {
        let mut end = End::Normal;
        for (i, step) in script.iter().enumerate() {
            match self.step(step).await {
                Ok(true) => {}
                Ok(false) => {
                    end = End::Closed;
                    break;
                }
                Err(msg) => {
                    lock(&self.log).errors.push(format!(
                        "connection {}, step {i} {}: {msg}",
                        self.idx,
                        step.describe()
                    ));
                    end = End::Failed;
                    break;
                }
            }
        }
        if let End::Normal = end {
            self.drain().await;
        }
        // Dropping the stream closes the connection.
        self.stream = None;
    }

    /// Runs one step. `Ok(true)`: continue; `Ok(false)`: connection closed, script over.
    async fn step(&mut self, step: &Step) -> Result<bool, String> {
        match step {
            Step::Reply(line) => {
                let mut bytes = Vec::with_capacity(line.len() + 2);
                bytes.extend_from_slice(line.as_bytes());
                bytes.extend_from_slice(b"\r\n");
                self.write(&bytes).await?;
            }
            Step::Raw(bytes) => self.write(bytes).await?,
            Step::Split {
                bytes,
                chunk,
                pause,
            } => {
                for (n, part) in bytes.chunks((*chunk).max(1)).enumerate() {
                    if n > 0 {
                        sleep(*pause).await;
                    }
                    self.write(part).await?;
                }
            }
            Step::Expect(prefix) => self.expect_line(prefix).await?,
            Step::ExpectData => self.expect_data().await?,
            Step::ExpectBdat { last } => self.expect_bdat(*last).await?,
            Step::ExpectQuiet(d) => {
                let deadline = Instant::now() + *d;
                while self.buf.is_empty() && !self.eof {
                    match self.read_more(deadline).await {
                        ReadOutcome::Data => {}
                        _ => break,
                    }
                }
                if !self.buf.is_empty() {
                    return Err(format!(
                        "expected the client to wait, got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ));
                }
            }
            Step::Delay(d) => sleep(*d).await,
            Step::Close => {
                self.stream = None;
                return Ok(false);
            }
            Step::ExpectEof => {
                self.expect_eof().await?;
                self.stream = None;
                return Ok(false);
            }
            Step::Endless { line, max_bytes } => self.endless(line, *max_bytes).await,
            Step::Trickle { bytes, interval } => {
                for (n, b) in bytes.iter().enumerate() {
                    if n > 0 {
                        sleep(*interval).await;
                    }
                    if self.write(std::slice::from_ref(b)).await.is_err() {
                        break;
                    }
                }
            }
            Step::TlsHandshake => {
                let config = self
                    .tls
                    .clone()
                    .ok_or("TlsHandshake without a TLS config")?;
                let stream = self.stream.take().ok_or("connection already closed")?;
                self.buf.clear();
                let accept = TlsAcceptor::from(config).accept(stream);
                match timeout(self.step_timeout, accept).await {
                    Ok(Ok(tls)) => self.stream = Some(Box::new(tls)),
                    Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
                    Err(_) => return Err("TLS handshake timed out".to_string()),
                }
            }
            Step::SetTimeout(d) => self.step_timeout = *d,
            Step::WaitBytes(n) => {
                let deadline = Instant::now() + self.step_timeout;
                while self.buf.len() < *n && !self.eof {
                    match self.read_more(deadline).await {
                        ReadOutcome::Data => {}
                        ReadOutcome::Eof | ReadOutcome::Timeout | ReadOutcome::Error(_) => break,
                    }
                }
            }
        }
        Ok(true)
    }

    /// Writes all of `bytes` and flushes, bounded by the step timeout.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let limit = self.step_timeout;
        let stream = self.stream.as_mut().ok_or("connection already closed")?;
        let fut = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match timeout(limit, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err(format!("write timed out after {limit:?}")),
        }
    }

    /// Reads once from the socket into the buffer, logging the chunk.
    async fn read_more(&mut self, deadline: Instant) -> ReadOutcome {
        if self.eof {
            return ReadOutcome::Eof;
        }
        if self.buf.len() >= MAX_BUFFER {
            return ReadOutcome::Error(io::Error::other(format!(
                "receive buffer exceeded {MAX_BUFFER} bytes"
            )));
        }
        let Some(stream) = self.stream.as_mut() else {
            return ReadOutcome::Eof;
        };
        let mut tmp = vec![0u8; READ_CHUNK];
        match timeout_at(deadline, stream.read(&mut tmp)).await {
            Err(_) => ReadOutcome::Timeout,
            Ok(Ok(0)) => {
                self.eof = true;
                ReadOutcome::Eof
            }
            Ok(Ok(n)) => {
                tmp.truncate(n);
                self.buf.extend_from_slice(&tmp);
                lock(&self.log).reads[self.idx].push(tmp);
                ReadOutcome::Data
            }
            Ok(Err(e)) => {
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) {
                    self.eof = true;
                    ReadOutcome::Eof
                } else {
                    ReadOutcome::Error(e)
                }
            }
        }
    }

    /// Turns a non-data read outcome into the error message for a step that needed data.
    fn read_failure(&self, outcome: ReadOutcome, what: &str) -> String {
        let pending = String::from_utf8_lossy(&self.buf);
        match outcome {
            ReadOutcome::Eof => {
                format!("unexpected EOF while expecting {what} (unconsumed: {pending:?})")
            }
            ReadOutcome::Timeout => format!(
                "read timed out after {:?} while expecting {what} (unconsumed: {pending:?})",
                self.step_timeout
            ),
            ReadOutcome::Error(e) => format!("read failed while expecting {what}: {e}"),
            ReadOutcome::Data => unreachable!("data is not a failure"),
        }
    }

    async fn expect_line(&mut self, prefix: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.step_timeout;
        let mut scanned = 0;
        let end = loop {
            if let Some(p) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                break scanned + p;
            }
            scanned = self.buf.len();
            match self.read_more(deadline).await {
                ReadOutcome::Data => {}
                other => {
                    let what = format!("line starting with {prefix:?}");
                    return Err(self.read_failure(other, &what));
                }
            }
        };
        let mut raw: Vec<u8> = self.buf.drain(..=end).collect();
        raw.pop(); // '\n'
        if raw.last() == Some(&b'\r') {
            raw.pop();
        }
        let line = String::from_utf8_lossy(&raw).into_owned();
        lock(&self.log).lines[self.idx].push(line.clone());
        let p = prefix.as_bytes();
        if raw.len() >= p.len() && raw[..p.len()].eq_ignore_ascii_case(p) {
            Ok(())
        } else {
            Err(format!(
                "expected line starting with {prefix:?}, got {line:?}"
            ))
        }
    }

    async fn expect_data(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.step_timeout;
        // Start of the next line not yet checked for being the terminator.
        let mut line_start = 0;
        loop {
            while let Some(p) = self.buf[line_start..].iter().position(|&b| b == b'\n') {
                let nl = line_start + p;
                let mut line = &self.buf[line_start..nl];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                if line == b"." {
                    let message = self.buf[..line_start].to_vec();
                    self.buf.drain(..=nl);
                    lock(&self.log).messages.push(message);
                    return Ok(());
                }
                line_start = nl + 1;
            }
            match self.read_more(deadline).await {
                ReadOutcome::Data => {}
                other => {
                    return Err(self.read_failure(other, "DATA terminator \".\" alone on a line"))
                }
            }
        }
    }

    async fn expect_bdat(&mut self, last: bool) -> Result<(), String> {
        self.expect_line("BDAT ").await?;
        let line = lock(&self.log).lines[self.idx]
            .last()
            .cloned()
            .unwrap_or_default();
        let words: Vec<&str> = line.split(' ').collect();
        let size = match (words.as_slice(), last) {
            ([_, n], false) => n.parse::<usize>().ok(),
            ([_, n, marker], true) if *marker == "LAST" => n.parse::<usize>().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "expected BDAT <n>{}, got {line:?}",
                if last { " LAST" } else { "" }
            )
        })?;
        let deadline = Instant::now() + self.step_timeout;
        while self.buf.len() < size {
            match self.read_more(deadline).await {
                ReadOutcome::Data => {}
                other => return Err(self.read_failure(other, &format!("{size} BDAT octets"))),
            }
        }
        let chunk: Vec<u8> = self.buf.drain(..size).collect();
        lock(&self.log).chunks.push(chunk);
        Ok(())
    }

    async fn expect_eof(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.step_timeout;
        loop {
            match self.read_more(deadline).await {
                ReadOutcome::Data => {}
                ReadOutcome::Eof => return Ok(()),
                ReadOutcome::Timeout => {
                    return Err(format!(
                        "client did not close the connection within {:?}",
                        self.step_timeout
                    ))
                }
                ReadOutcome::Error(e) => {
                    return Err(format!("read failed while expecting EOF: {e}"))
                }
            }
        }
    }

    async fn endless(&mut self, line: &str, max_bytes: usize) {
        let mut pattern = Vec::with_capacity(line.len() + 2);
        pattern.extend_from_slice(line.as_bytes());
        pattern.extend_from_slice(b"\r\n");
        let mut written = 0;
        let mut offset = 0; // position inside `pattern` where the next chunk starts
        let mut chunk = Vec::with_capacity(ENDLESS_CHUNK.min(max_bytes));
        while written < max_bytes {
            let len = (max_bytes - written).min(ENDLESS_CHUNK);
            chunk.clear();
            while chunk.len() < len {
                let take = (pattern.len() - offset).min(len - chunk.len());
                chunk.extend_from_slice(&pattern[offset..offset + take]);
                offset = (offset + take) % pattern.len();
            }
            if self.write(&chunk).await.is_err() {
                break;
            }
            written += len;
        }
    }

    /// After a normal end: keep logging what the client sends until EOF or idle timeout.
    async fn drain(&mut self) {
        let hard_deadline = Instant::now() + DRAIN_MAX;
        loop {
            let deadline = (Instant::now() + DRAIN_IDLE).min(hard_deadline);
            match self.read_more(deadline).await {
                ReadOutcome::Data => {}
                _ => break,
            }
        }
    }
}

/// Greeting + EHLO reply with the given extension keywords, e.g.
/// `ehlo_ok(&["PIPELINING", "SIZE 1000"])` gives
/// `[Reply("220 mock.test ESMTP"), Expect("EHLO"), Reply("250-mock.test"),
/// Reply("250-PIPELINING"), Reply("250 SIZE 1000")]`
/// (with no extensions: a single "250 mock.test").
pub fn ehlo_ok(extensions: &[&str]) -> Vec<Step> {
    let mut steps = vec![
        Step::Reply("220 mock.test ESMTP".to_string()),
        Step::Expect("EHLO".to_string()),
    ];
    if extensions.is_empty() {
        steps.push(Step::Reply("250 mock.test".to_string()));
    } else {
        steps.push(Step::Reply("250-mock.test".to_string()));
        for (i, ext) in extensions.iter().enumerate() {
            let sep = if i + 1 == extensions.len() { ' ' } else { '-' };
            steps.push(Step::Reply(format!("250{sep}{ext}")));
        }
    }
    steps
}

/// `[Expect("QUIT"), Reply("221 mock.test Bye")]`.
pub fn quit_ok() -> Vec<Step> {
    vec![
        Step::Expect("QUIT".to_string()),
        Step::Reply("221 mock.test Bye".to_string()),
    ]
}
