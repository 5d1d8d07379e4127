#![allow(dead_code)]
//! Helpers for interoperability tests against real SMTP server binaries.
//!
//! Servers started here:
//!
//! * Postfix `smtp-sink` (Debian package `postfix`), see [`SmtpSink`].
//! * `aiosmtpd` run with Debian's `/usr/bin/python3` (package `python3-aiosmtpd`), see [`AioSmtpd`].
//! * `aiosmtpd` with TLS (STARTTLS or implicit) and AUTH PLAIN/LOGIN, driven by the script
//!   `tests/support/aiosmtpd_server.py`, see [`AioSmtpdTls`]; every accepted message becomes a
//!   file that [`AioSmtpdTls::wait_for_messages`] returns.
//!
//! A full private Postfix instance (smtpd with STARTTLS, implicit TLS and Cyrus SASL) lives in
//! the sibling module `postfix_smtpd`, which reuses the helpers below.
//!
//! When a binary is missing, the start functions return `Err(Skip)` saying what to install,
//! unless the environment variable `SMTPKIT_REAL_SERVERS=1` is set (as `.ci/run` does), in which
//! case they panic and the test fails. A test passes the [`Skip`] up with `?`; the test binaries
//! that use these servers run on the custom harness at the end of this file ([`run_tests`],
//! `harness = false` in `Cargo.toml`), which reports such a test as *ignored*, with the reason,
//! so the summary line counts the skips (`test result: ok. 3 passed; 0 failed; 2 ignored; ...`).
//! Under the standard libtest harness a test returning `Err(Skip)` fails instead of passing.
//!
//! Every server runs as a child process bound to `127.0.0.1` on a free port. Its stdout and
//! stderr go to a log file in a private temporary directory (never to a pipe, so the child can
//! never block on a full pipe). On drop the child is killed with SIGKILL and reaped; the
//! temporary directory is removed, except when the current thread is panicking, in which case
//! the tail of the log is written to stderr and the directory is kept for inspection.
//!
//! The server helpers use only `std`, so they are synchronous; calling them from an async test
//! is fine (start-up normally blocks for well under a second, bounded by [`STARTUP_TIMEOUT`]).

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::future::Future;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Completion, Trial};

/// Environment variable that turns "binary missing" from a skip into a test failure.
pub const REAL_SERVERS_ENV: &str = "SMTPKIT_REAL_SERVERS";

/// Where Postfix's smtp-sink lives on Debian.
pub const SMTP_SINK_CANDIDATES: &[&str] =
    &["/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"];

/// aiosmtpd must run under Debian's python, not whatever `python3` is first on PATH.
pub const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// How long a server gets to start accepting connections. Generous: it is only a bound (a
/// healthy server is ready in well under a second) and the CI machine may be loaded.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times start-up is retried with a fresh port (e.g. when another process grabbed the
/// port between [`free_port`] and the child's bind).
pub(crate) const START_ATTEMPTS: usize = 3;

/// Whether `SMTPKIT_REAL_SERVERS=1` is set.
pub fn real_servers_required() -> bool {
    std::env::var(REAL_SERVERS_ENV)
        .map(|v| v.trim() == "1")
        .unwrap_or(false)
}

/// Writes a line straight to the process's stderr.
///
/// `eprintln!` inside a test is captured by the libtest harness and only shown for failing
/// tests; writing to `io::stderr()` directly bypasses the capture, so a server's log shown
/// when a test panics is visible under any harness.
pub(crate) fn visible_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

fn install_command(apt_hint: &str) -> String {
    let hint = apt_hint.trim();
    if hint.starts_with("apt-get") || hint.starts_with("apt ") {
        hint.to_string()
    } else {
        format!("apt-get install {hint}")
    }
}

/// A real-server test cannot run on this machine: a prerequisite is missing and
/// `SMTPKIT_REAL_SERVERS` is not 1. [`run_tests`] reports the test as ignored with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    reason: String,
}

impl Skip {
    /// Why the test was skipped, e.g. `smtp_sink_faults: smtp-sink not found (apt-get install
    /// postfix)`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped: {}", self.reason)
    }
}

/// What a real-server test returns: `Ok(())` when it ran and passed (failures panic as usual),
/// `Err(Skip)` when it could not run here.
pub type TestResult = Result<(), Skip>;

/// Reports a missing prerequisite: panics when real servers are required, otherwise returns the
/// [`Skip`] saying what to install.
pub(crate) fn report_missing(test: &str, what: &str, details: &str, apt_hint: &str) -> Skip {
    let install = install_command(apt_hint);
    if real_servers_required() {
        panic!(
            "{test}: {what} not found ({details}); {REAL_SERVERS_ENV}=1 requires the real \
             servers, install them with: {install}"
        );
    }
    Skip {
        reason: format!("{test}: {what} not found ({install})"),
    }
}

/// Reports a prerequisite that is not about a missing package (e.g. not running as root):
/// panics when real servers are required, otherwise returns a [`Skip`] with `reason`.
pub(crate) fn report_unusable(test: &str, reason: &str) -> Skip {
    if real_servers_required() {
        panic!("{test}: {reason}; {REAL_SERVERS_ENV}=1 requires the real servers");
    }
    Skip {
        reason: format!("{test}: {reason}"),
    }
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolves one candidate: a path containing `/` is checked as is, a bare name is searched for
/// in `PATH`.
fn resolve_candidate(candidate: &str) -> Option<PathBuf> {
    if candidate.contains('/') {
        let path = PathBuf::from(candidate);
        return is_executable_file(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH")?;
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(candidate))
        .find(|path| is_executable_file(path))
}

/// Outcome of looking for a real server binary.
///
/// Returns the first of `path_candidates` that is an executable file (bare names are looked up
/// in `PATH`). If none is found: when `SMTPKIT_REAL_SERVERS=1`, panics with a message saying
/// what to install; otherwise returns the [`Skip`] `<test>: <binary> not found (apt-get install
/// <apt_hint>)`.
pub fn require_binary(
    test: &str,
    path_candidates: &[&str],
    apt_hint: &str,
) -> Result<PathBuf, Skip> {
    if let Some(found) = path_candidates.iter().find_map(|c| resolve_candidate(c)) {
        return Ok(found);
    }
    let binary = path_candidates
        .first()
        .and_then(|c| Path::new(c).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "server binary".to_string());
    let details = format!("tried {}", path_candidates.join(", "));
    Err(report_missing(test, &binary, &details, apt_hint))
}

/// Ports handed out by [`free_port`] in this process, so that two servers started concurrently
/// by parallel tests never get the same port.
static HANDED_OUT_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Pick a free loopback TCP port (bind 127.0.0.1:0, read the port, drop the listener).
///
/// A port is never returned twice by the same process. There is an unavoidable window between
/// dropping the listener and the server binding the port; the server start functions retry
/// with a new port if the bind fails.
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let used = guard.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind a TCP listener on 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("cannot read the local address of a bound listener")
            .port();
        drop(listener);
        if used.insert(port) {
            return port;
        }
    }
    panic!("free_port: could not find an unused loopback port after 100 attempts");
}

pub(crate) fn running_as_root() -> bool {
    // /proc/self is owned by the effective uid of the process.
    if let Ok(meta) = fs::metadata("/proc/self") {
        return meta.uid() == 0;
    }
    Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

static DIR_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Creates a fresh directory `<temp dir>/smtpkit-<kind>-<pid of this process>-<n>`.
pub(crate) fn make_temp_dir(kind: &str) -> PathBuf {
    let base = std::env::temp_dir();
    loop {
        let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("smtpkit-{kind}-{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create temp dir {}: {e}", dir.display()),
        }
    }
}

pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub(crate) fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

/// A child server process with its log directory; killed, reaped and cleaned up on drop.
pub(crate) struct ServerProcess {
    kind: &'static str,
    child: Child,
    dir: PathBuf,
    log_path: PathBuf,
}

enum Readiness {
    Ready,
    Exited(ExitStatus),
    TimedOut,
}

/// How [`spawn_server_with`] decides that a freshly spawned server is ready.
#[derive(Clone, Copy)]
enum ReadyProbe {
    /// A TCP connection to the port succeeds (the probe connection is closed right away).
    Connect,
    /// The log contains a line starting with this text (no probe connection is made, which
    /// matters for implicit-TLS servers that would log a failed handshake otherwise).
    LogLine(&'static str),
}

impl ServerProcess {
    fn wait_ready(&mut self, port: u16, probe: ReadyProbe) -> Readiness {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Readiness::Exited(status);
            }
            let ready = match probe {
                ReadyProbe::Connect => {
                    TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok()
                }
                ReadyProbe::LogLine(prefix) => {
                    self.log().lines().any(|line| line.starts_with(prefix))
                }
            };
            if ready {
                // Make sure it is our child that answered, not someone else on the same port.
                return match self.child.try_wait() {
                    Ok(Some(status)) => Readiness::Exited(status),
                    _ => Readiness::Ready,
                };
            }
            if Instant::now() >= deadline {
                return Readiness::TimedOut;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    pub(crate) fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // kill() fails harmlessly if the child already exited; wait() reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            visible_line(&format!(
                "--- {} log ({}), last lines ---\n{}\n--- end of {} log ---",
                self.kind,
                self.log_path.display(),
                tail(&self.log(), 40),
                self.kind
            ));
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Spawns the server built by `make_command(port, dir)` on a free port and waits until it accepts
/// connections, retrying with a new port a few times. Panics if it never comes up.
pub(crate) fn spawn_server(
    test: &str,
    kind: &'static str,
    make_command: impl Fn(u16, &Path) -> Command,
) -> (u16, ServerProcess) {
    spawn_server_with(test, kind, ReadyProbe::Connect, make_command)
}

/// [`spawn_server`] with a choice of readiness probe.
fn spawn_server_with(
    test: &str,
    kind: &'static str,
    probe: ReadyProbe,
    make_command: impl Fn(u16, &Path) -> Command,
) -> (u16, ServerProcess) {
    let mut failures = Vec::new();
    for attempt in 1..=START_ATTEMPTS {
        let port = free_port();
        let dir = make_temp_dir(kind);
        let log_path = dir.join("server.log");
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone log file handle: {e}"));
        let mut command = make_command(port, &dir);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                panic!("{test}: cannot spawn {kind} ({command:?}): {e}");
            }
        };
        let mut server = ServerProcess {
            kind,
            child,
            dir,
            log_path,
        };
        let problem = match server.wait_ready(port, probe) {
            Readiness::Ready => return (port, server),
            Readiness::Exited(status) => format!("exited with {status}"),
            Readiness::TimedOut => match probe {
                ReadyProbe::Connect => {
                    format!("not accepting connections after {STARTUP_TIMEOUT:?}")
                }
                ReadyProbe::LogLine(prefix) => {
                    format!("no {prefix:?} line in its output after {STARTUP_TIMEOUT:?}")
                }
            },
        };
        failures.push(format!(
            "attempt {attempt} on port {port}: {problem}; command: {command:?}; log:\n{}",
            tail(&server.log(), 20)
        ));
        drop(server);
    }
    panic!(
        "{test}: {kind} did not start on 127.0.0.1:\n{}",
        failures.join("\n")
    );
}

/// A running Postfix smtp-sink on 127.0.0.1:<free port>. Killed (and waited for) on Drop.
///
/// Command line: `/usr/sbin/smtp-sink [-u nobody] <flags...> 127.0.0.1:<port> 64`
/// (`-u nobody` only when running as root, where smtp-sink refuses to run without it, and only
/// if `flags` does not already contain `-u`). The greeting is `220 smtp-sink ESMTP`; by default
/// the EHLO reply advertises PIPELINING, 8BITMIME, DSN, ENHANCEDSTATUSCODES, XCLIENT, XFORWARD
/// among others (see `man smtp-sink` for the flags that turn them off). Messages are discarded.
pub struct SmtpSink {
    pub port: u16,
    process: ServerProcess,
}

impl SmtpSink {
    /// Start smtp-sink with the given extra flags (e.g. `&["-p"]` disables PIPELINING, see
    /// `man smtp-sink`), bound to 127.0.0.1 on a free port; waits (bounded by
    /// [`STARTUP_TIMEOUT`]) until the port accepts connections. That probe connection counts as
    /// one session for `-n` and in the `-c` counters ([`SmtpSink::PROBE_SESSIONS`]).
    ///
    /// Returns a [`Skip`] when smtp-sink is missing and `SMTPKIT_REAL_SERVERS` is not 1; panics
    /// if it is missing and required, or if it fails to start.
    pub fn start(test: &str, flags: &[&str]) -> Result<SmtpSink, Skip> {
        let binary = require_binary(test, SMTP_SINK_CANDIDATES, "postfix")?;
        let add_user = running_as_root() && !flags.iter().any(|f| f.starts_with("-u"));
        let (port, process) = spawn_server(test, "smtp-sink", |port, _dir| {
            let mut cmd = Command::new(&binary);
            if add_user {
                cmd.args(["-u", "nobody"]);
            }
            cmd.args(flags);
            cmd.arg(format!("127.0.0.1:{port}"));
            cmd.arg("64");
            cmd
        });
        Ok(SmtpSink { port, process })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Process id of the smtp-sink child.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Everything smtp-sink wrote to stdout/stderr so far (e.g. the conversation with `-v`).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Path of the log file receiving smtp-sink's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.process.log_path
    }

    /// Sessions [`SmtpSink::start`] opened itself (the readiness probe): the `sess` counter
    /// counts them too.
    pub const PROBE_SESSIONS: usize = 1;

    /// The last counters smtp-sink printed with `-c` (all zero before the first print).
    /// smtp-sink prints them, as `sess=N quit=N mesg=N` followed by a carriage return, whenever
    /// a session ends, a QUIT is executed or a message's final `.` is received.
    pub fn counters(&self) -> SinkCounters {
        SinkCounters::parse_last(&self.log())
    }

    /// Connections smtp-sink accepted so far, from the `connect (...)` lines it prints only
    /// with `-v` (including [`SmtpSink::PROBE_SESSIONS`]).
    pub fn connections(&self) -> usize {
        count_connects(&self.log())
    }

    /// Waits (bounded by `timeout`, then panics with the log) until smtp-sink has accepted at
    /// least `min_connections` connections and every connection it accepted has ended and been
    /// counted, then returns the counters: from then on they can only change if someone
    /// connects again. Needs the flags `-v` (to see the connections) and `-c` (the counters).
    ///
    /// For a connection a client has closed this happens as soon as smtp-sink has read the
    /// rest of its input, unless smtp-sink is stalled on purpose in that session (`-W`, `-w`),
    /// where it happens when the stall ends.
    pub fn wait_until_idle(&self, min_connections: usize, timeout: Duration) -> SinkCounters {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            let connections = count_connects(&log);
            let counters = SinkCounters::parse_last(&log);
            if connections >= min_connections && counters.sessions == connections {
                return counters;
            }
            assert!(
                Instant::now() < deadline,
                "smtp-sink not idle after {timeout:?}: {connections} connection(s) accepted \
                 (want at least {min_connections}), counters {counters:?}; log:\n{}",
                tail(&log, 40)
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Polls [`SmtpSink::counters`] until `done` holds for them or `timeout` passes; returns the
    /// last counters seen either way (check them, or `done`, again to tell which).
    pub fn wait_for_counters(
        &self,
        timeout: Duration,
        done: impl Fn(&SinkCounters) -> bool,
    ) -> SinkCounters {
        let deadline = Instant::now() + timeout;
        loop {
            let counters = self.counters();
            if done(&counters) || Instant::now() >= deadline {
                return counters;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}

/// The number of `smtp-sink: connect (` lines (printed with `-v` for each accepted connection).
fn count_connects(log: &str) -> usize {
    log.lines()
        .filter(|line| line.contains("smtp-sink: connect ("))
        .count()
}

/// smtp-sink's `-c` counters (see [`SmtpSink::counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounters {
    /// Sessions that have ended (including [`SmtpSink::PROBE_SESSIONS`]).
    pub sessions: usize,
    /// QUIT commands executed.
    pub quits: usize,
    /// Messages received (final `.` seen).
    pub messages: usize,
}

impl SinkCounters {
    /// The last complete `sess=N quit=N mesg=N` record in `log` (one that smtp-sink finished
    /// with its carriage return).
    fn parse_last(log: &str) -> SinkCounters {
        let complete = log.rfind('\r').map_or("", |end| &log[..end]);
        complete
            .split(['\r', '\n'])
            .rev()
            .find_map(|record| {
                let mut fields = record.split_whitespace();
                let mut next = |name: &str| -> Option<usize> {
                    fields.next()?.strip_prefix(name)?.parse().ok()
                };
                Some(SinkCounters {
                    sessions: next("sess=")?,
                    quits: next("quit=")?,
                    messages: next("mesg=")?,
                })
            })
            .unwrap_or_default()
    }
}

/// Debian's python if it can import aiosmtpd; otherwise the skip/fail logic of
/// [`require_binary`] (package `python3-aiosmtpd`).
pub(crate) fn python_with_aiosmtpd(test: &str) -> Result<PathBuf, Skip> {
    let python = require_binary(test, &[DEBIAN_PYTHON], "python3-aiosmtpd")?;
    let module_ok = Command::new(&python)
        .args(["-c", "import aiosmtpd.smtp"])
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !module_ok {
        return Err(report_missing(
            test,
            "aiosmtpd",
            &format!("{} cannot import aiosmtpd", python.display()),
            "python3-aiosmtpd",
        ));
    }
    Ok(python)
}

/// A running aiosmtpd (Debian's `/usr/bin/python3 -m aiosmtpd`) on 127.0.0.1:<free port>,
/// killed on Drop.
///
/// Command line:
/// `/usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:<port> <extra_args...> -c aiosmtpd.handlers.Debugging stdout`
/// with `PYTHONUNBUFFERED=1`. The `Debugging` handler (aiosmtpd's default, named explicitly
/// here) prints every received message to stdout, which goes to the log file: check it with
/// [`AioSmtpd::log`] / [`AioSmtpd::wait_for_log`]. If `extra_args` contains `-c`/`--class`
/// the default handler is not added. Do not pass `-l` in `extra_args`.
/// The greeting is `220 <hostname> Python SMTP <version>`.
pub struct AioSmtpd {
    pub port: u16,
    process: ServerProcess,
}

impl AioSmtpd {
    /// Start with extra CLI args (see `/usr/bin/python3 -m aiosmtpd --help`, e.g. `-u` for
    /// SMTPUTF8 or `-s SIZE`); `-n` (no setuid) is always passed. Same skip/fail logic as
    /// [`SmtpSink::start`]; waits (bounded by [`STARTUP_TIMEOUT`]) until the port accepts
    /// connections.
    pub fn start(test: &str, extra_args: &[&str]) -> Result<AioSmtpd, Skip> {
        let python = python_with_aiosmtpd(test)?;
        let custom_class = extra_args
            .iter()
            .any(|a| *a == "-c" || a.starts_with("--class"));
        let (port, process) = spawn_server(test, "aiosmtpd", |port, _dir| {
            let mut cmd = Command::new(&python);
            cmd.args(["-m", "aiosmtpd", "-n", "-l"]);
            cmd.arg(format!("127.0.0.1:{port}"));
            cmd.args(extra_args);
            if !custom_class {
                cmd.args(["-c", "aiosmtpd.handlers.Debugging", "stdout"]);
            }
            cmd.env("PYTHONUNBUFFERED", "1")
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env_remove("PYTHONPATH")
                .env_remove("PYTHONHOME");
            cmd
        });
        Ok(AioSmtpd { port, process })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Process id of the python child.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Everything aiosmtpd wrote so far; with the default handler this includes each received
    /// message between `---------- MESSAGE FOLLOWS ----------` and
    /// `------------ END MESSAGE ------------`.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Polls the log until it contains `needle` or `timeout` passes; returns whether it was seen.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.process.wait_for_log(needle, timeout)
    }

    /// Path of the log file receiving aiosmtpd's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.process.log_path
    }
}

/// Path of `aiosmtpd_server.py`: `$CARGO_MANIFEST_DIR/tests/support/aiosmtpd_server.py`, or
/// next to this source file when the support module is compiled into another crate.
fn aiosmtpd_script() -> PathBuf {
    let in_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/aiosmtpd_server.py");
    if in_crate.is_file() {
        return in_crate;
    }
    Path::new(file!()).with_file_name("aiosmtpd_server.py")
}

/// Polls `dir` until it holds at least `n` files named `*.eml` (names starting with `.` are
/// temporary files and ignored) or `timeout` passes; returns the contents of all `.eml` files
/// present then (lossy UTF-8), sorted by file name. Fewer than `n` means the wait timed out.
pub(crate) fn wait_for_eml_files(dir: &Path, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| {
                        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                        name.is_some_and(|n| n.ends_with(".eml") && !n.starts_with('.'))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if names.len() >= n || Instant::now() >= deadline {
            names.sort();
            return names.iter().map(|p| read_lossy(p)).collect();
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// TLS mode of an [`AioSmtpdTls`] server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AioTlsMode {
    /// Plain listener; STARTTLS is offered and required before anything but
    /// EHLO/HELO/NOOP/QUIT (`530 Must issue a STARTTLS command first`); AUTH only after it.
    StartTls,
    /// TLS from the first byte; no STARTTLS; AUTH offered right away.
    Implicit,
}

/// aiosmtpd with TLS and AUTH on 127.0.0.1:<free port>: Debian's `/usr/bin/python3` running
/// `tests/support/aiosmtpd_server.py` (see the script's docstring). Killed and reaped on Drop.
///
/// Command line:
/// `/usr/bin/python3 aiosmtpd_server.py --host 127.0.0.1 --port <port> --cert <cert> --key <key>
/// --mode starttls|implicit --user <user> --password <password> --maildir <tempdir>/maildir`.
///
/// * Greeting `220 localhost Python SMTP <version>`; EHLO advertises SIZE 33554432, 8BITMIME,
///   STARTTLS (StartTls mode, before TLS) and, once the session is encrypted, `AUTH LOGIN PLAIN`.
///   No PIPELINING, no SMTPUTF8, no ENHANCEDSTATUSCODES (though some replies carry codes).
/// * Only `user`/`password` authenticates (`235 2.7.0`); anything else gets
///   `535 5.7.8 Authentication credentials invalid`; MAIL before AUTH gets
///   `530 5.7.0 Authentication required`; AUTH before STARTTLS gets
///   `530 Must issue a STARTTLS command first`.
/// * Each accepted message becomes `<maildir>/NNNNNN.eml` (6-digit counter from 000001, written
///   to a temp name then renamed): `X-Mail-From: <reverse path>\r\n`,
///   `X-Rcpt-To: <rcpt>, <rcpt>\r\n`, then the DATA content as received (dot-unstuffed, CRLF).
///   See [`AioSmtpdTls::wait_for_messages`].
///
/// The certificate/key PEM files are read once at start-up (any key format OpenSSL loads:
/// PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY`); the certificate file
/// may hold a chain. Readiness: the script prints `READY 127.0.0.1:<port>` once it listens (no
/// probe connection is made).
pub struct AioSmtpdTls {
    pub port: u16,
    /// Directory receiving the `.eml` files.
    pub maildir: PathBuf,
    pub mode: AioTlsMode,
    process: ServerProcess,
}

impl AioSmtpdTls {
    /// Starts `tests/support/aiosmtpd_server.py` (path via `env!("CARGO_MANIFEST_DIR")`) with
    /// the given cert/key PEM paths and credentials, on a free port, and waits (bounded by
    /// [`STARTUP_TIMEOUT`] per attempt, 3 attempts with fresh ports) for its `READY` line.
    ///
    /// Returns a [`Skip`] when `/usr/bin/python3` or aiosmtpd is missing and
    /// `SMTPKIT_REAL_SERVERS` is not 1; panics if they are missing and required, or if the
    /// server does not start (e.g. unreadable certificate: the log says why).
    pub fn start(
        test: &str,
        mode: AioTlsMode,
        cert: &Path,
        key: &Path,
        user: &str,
        password: &str,
    ) -> Result<AioSmtpdTls, Skip> {
        let python = python_with_aiosmtpd(test)?;
        let script = aiosmtpd_script();
        assert!(script.is_file(), "{test}: {} is missing", script.display());
        let mode_arg = match mode {
            AioTlsMode::StartTls => "starttls",
            AioTlsMode::Implicit => "implicit",
        };
        let kind = match mode {
            AioTlsMode::StartTls => "aiosmtpd-starttls",
            AioTlsMode::Implicit => "aiosmtpd-implicit",
        };
        let (port, process) =
            spawn_server_with(test, kind, ReadyProbe::LogLine("READY "), |port, dir| {
                let mut cmd = Command::new(&python);
                cmd.arg(&script)
                    .args(["--host", "127.0.0.1", "--port"])
                    .arg(port.to_string())
                    .arg("--cert")
                    .arg(cert)
                    .arg("--key")
                    .arg(key)
                    .args(["--mode", mode_arg, "--user", user, "--password", password])
                    .arg("--maildir")
                    .arg(dir.join("maildir"));
                cmd.env("PYTHONUNBUFFERED", "1")
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .env_remove("PYTHONPATH")
                    .env_remove("PYTHONHOME");
                cmd
            });
        let maildir = process.dir.join("maildir");
        Ok(AioSmtpdTls {
            port,
            maildir,
            mode,
            process,
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Waits (bounded by `timeout`, polling every 25 ms) until at least `n` `.eml` files exist
    /// in [`AioSmtpdTls::maildir`]; returns the contents of all of them sorted by name (=
    /// arrival order). Returns fewer than `n` if the timeout passed: assert on the length.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<String> {
        wait_for_eml_files(&self.maildir, n, timeout)
    }

    /// Process id of the python child.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Everything the script wrote so far: the `READY` line, one `AUTH OK <mech> <user>` /
    /// `AUTH FAILED <mech>` line per AUTH attempt and one `MESSAGE <n> from=<..> rcpts=<k>
    /// bytes=<len>` line per message, plus Python/aiosmtpd errors on stderr.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Polls the log until it contains `needle` or `timeout` passes; returns whether it was seen.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.process.wait_for_log(needle, timeout)
    }

    /// Path of the log file receiving the script's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.process.log_path
    }
}

/// How [`tokio_trial`] runs an async test: the runtimes `#[tokio::test]` and
/// `#[tokio::test(flavor = "multi_thread", worker_threads = N)]` build.
#[derive(Debug, Clone, Copy)]
pub enum Flavor {
    CurrentThread,
    MultiThread { workers: usize },
}

/// A test for [`run_tests`] named `name`: builds a fresh tokio runtime of `flavor` (all drivers
/// enabled, as `#[tokio::test]` does), runs `test` on it and drops the runtime. `Ok(())`
/// passes, `Err(Skip)` is reported as ignored with the skip's reason, a panic fails the test.
pub fn tokio_trial<F, Fut>(name: &str, flavor: Flavor, test: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = TestResult>,
{
    Trial::ignorable_test(name, move || {
        let mut builder = match flavor {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread { workers } => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(workers);
                builder
            }
        };
        let runtime = builder
            .enable_all()
            .build()
            .expect("build the tokio runtime for the test");
        match runtime.block_on(test()) {
            Ok(()) => Ok(Completion::Completed),
            Err(skip) => Ok(Completion::ignored_with(skip.reason)),
        }
    })
}

/// `tokio_trials![flavor; test_a, test_b]`: one [`tokio_trial`] per async test function
/// (`async fn test_a() -> TestResult`), named after the function, so names and filters are
/// those `#[tokio::test]` gave. (Unused in the test binaries on the standard harness, which
/// compile this module too.)
#[allow(unused_macros)]
macro_rules! tokio_trials {
    ($flavor:expr; $($test:ident),+ $(,)?) => {
        vec![$($crate::support::real_servers::tokio_trial(stringify!($test), $flavor, $test)),+]
    };
}
#[allow(unused_imports)]
pub(crate) use tokio_trials;

/// The `main` of a test binary with `harness = false` (libtest-mimic): parses libtest's
/// command line (name filters, `--exact`, `--list`, `--test-threads`, `--skip`, `--ignored`,
/// ...), runs `tests` in parallel like libtest and prints libtest's output, ending with
/// `test result: ok. N passed; M failed; K ignored; ...`, where K counts the tests that
/// returned a [`Skip`]. Returns exit code 101 if a test failed, like libtest.
///
/// Differences from libtest: the output of tests is not captured, and `RUST_TEST_THREADS` is
/// read here since libtest-mimic does not.
pub fn run_tests(tests: Vec<Trial>) -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = std::env::var("RUST_TEST_THREADS")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .filter(|&n: &usize| n > 0);
    }
    libtest_mimic::run(&args, tests).exit_code()
}
