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
//! When a binary is missing the test is skipped with a visible `SKIPPED: ...` line on stderr,
//! unless the environment variable `SMTPKIT_REAL_SERVERS=1` is set (as `.ci/run` does), in which
//! case the test panics and says what to install.
//!
//! Every server runs as a child process bound to `127.0.0.1` on a free port. Its stdout and
//! stderr go to a log file in a private temporary directory (never to a pipe, so the child can
//! never block on a full pipe). On drop the child is killed with SIGKILL and reaped; the
//! temporary directory is removed, except when the current thread is panicking, in which case
//! the tail of the log is written to stderr and the directory is kept for inspection.
//!
//! Only `std` is used, so the helpers are synchronous; calling them from a `#[tokio::test]` is
//! fine (start-up blocks for at most a few seconds).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Environment variable that turns "binary missing" from a skip into a test failure.
pub const REAL_SERVERS_ENV: &str = "SMTPKIT_REAL_SERVERS";

/// Where Postfix's smtp-sink lives on Debian.
pub const SMTP_SINK_CANDIDATES: &[&str] =
    &["/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"];

/// aiosmtpd must run under Debian's python, not whatever `python3` is first on PATH.
pub const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// How long a server gets to start accepting connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

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
/// tests; writing to `io::stderr()` directly bypasses the capture so skip lines stay visible.
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

/// Reports a missing prerequisite: panics when real servers are required, otherwise prints the
/// skip line.
pub(crate) fn report_missing(test: &str, what: &str, details: &str, apt_hint: &str) {
    let install = install_command(apt_hint);
    if real_servers_required() {
        panic!(
            "{test}: {what} not found ({details}); {REAL_SERVERS_ENV}=1 requires the real \
             servers, install them with: {install}"
        );
    }
    visible_line(&format!("SKIPPED: {test}: {what} not found ({install})"));
}

/// Reports a prerequisite that is not about a missing package (e.g. not running as root):
/// panics when real servers are required, otherwise prints `SKIPPED: <test>: <reason>`.
pub(crate) fn report_unusable(test: &str, reason: &str) {
    if real_servers_required() {
        panic!("{test}: {reason}; {REAL_SERVERS_ENV}=1 requires the real servers");
    }
    visible_line(&format!("SKIPPED: {test}: {reason}"));
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
/// what to install; otherwise prints `SKIPPED: <test>: <binary> not found (apt-get install
/// <apt_hint>)` to stderr (bypassing the test harness's output capture) and returns `None`.
pub fn require_binary(test: &str, path_candidates: &[&str], apt_hint: &str) -> Option<PathBuf> {
    if let Some(found) = path_candidates.iter().find_map(|c| resolve_candidate(c)) {
        return Some(found);
    }
    let binary = path_candidates
        .first()
        .and_then(|c| Path::new(c).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "server binary".to_string());
    let details = format!("tried {}", path_candidates.join(", "));
    report_missing(test, &binary, &details, apt_hint);
    None
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
struct ServerProcess {
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

    fn log(&self) -> String {
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
fn spawn_server(
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
    /// `man smtp-sink`), bound to 127.0.0.1 on a free port; waits (bounded, ~5 s) until the
    /// port accepts connections (that probe connection counts as one session for `-n`).
    ///
    /// Returns `None` (after the visible skip line) when smtp-sink is missing and
    /// `SMTPKIT_REAL_SERVERS` is not 1; panics if it is missing and required, or if it fails
    /// to start.
    pub fn start(test: &str, flags: &[&str]) -> Option<SmtpSink> {
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
        Some(SmtpSink { port, process })
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
}

/// Debian's python if it can import aiosmtpd; otherwise the skip/fail logic of
/// [`require_binary`] (package `python3-aiosmtpd`) and `None`.
fn python_with_aiosmtpd(test: &str) -> Option<PathBuf> {
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
        report_missing(
            test,
            "aiosmtpd",
            &format!("{} cannot import aiosmtpd", python.display()),
            "python3-aiosmtpd",
        );
        return None;
    }
    Some(python)
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
    /// [`SmtpSink::start`]; waits (bounded, ~5 s) until the port accepts connections.
    pub fn start(test: &str, extra_args: &[&str]) -> Option<AioSmtpd> {
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
        Some(AioSmtpd { port, process })
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
    /// the given cert/key PEM paths and credentials, on a free port, and waits (bounded, ~5 s
    /// per attempt, 3 attempts with fresh ports) for its `READY` line.
    ///
    /// Returns `None` (after the visible `SKIPPED:` line) when `/usr/bin/python3` or aiosmtpd
    /// is missing and `SMTPKIT_REAL_SERVERS` is not 1; panics if they are missing and required,
    /// or if the server does not start (e.g. unreadable certificate: the log says why).
    pub fn start(
        test: &str,
        mode: AioTlsMode,
        cert: &Path,
        key: &Path,
        user: &str,
        password: &str,
    ) -> Option<AioSmtpdTls> {
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
        Some(AioSmtpdTls {
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
