//! A private Postfix instance (the real `smtpd`) for interoperability tests: STARTTLS, implicit
//! TLS and SASL AUTH through Cyrus SASL, with every accepted message written to a file.
//!
//! [`PostfixSmtpd::start`] lays out a fresh temporary directory `D`
//! (`<temp dir>/smtpkit-postfix-<pid>-<n>`, mode 0755) and starts Postfix from it with
//! `postfix -c D/etc start`. Nothing outside `D` is written; `/etc/postfix` is only read
//! (`meta_directory`, i.e. `postfix-files` and `dynamicmaps.cf`, keeps its default there).
//!
//! ```text
//! D/etc/main.cf, master.cf     the configuration (config_directory)
//! D/etc/tls/cert.pem, key.pem  copies of the PEM files given to start (key 0600)
//! D/etc/sasl/smtpd.conf        Cyrus config: auxprop/sasldb, mech_list PLAIN LOGIN
//! D/etc/sasl/sasldb2           made with saslpasswd2, root:postfix 0640
//! D/queue/                     queue_directory (pid/master.pid, public/, private/, ...)
//! D/data/                      data_directory (master.lock), owned by postfix
//! D/messages/                  delivered messages, one NANOS-QUEUEID.eml file per message
//! D/deliver.sh                 the pipe(8) command writing those files
//! D/maillog                    Postfix's log (maillog_file + postlogd, no syslog needed)
//! D/commands.log               output of saslpasswd2 / postfix start / postfix stop
//! ```
//!
//! What the instance does (see `main_cf` and `master_cf` below for every setting):
//!
//! * `127.0.0.1:<smtp_port>`: smtpd with `smtpd_tls_security_level = may` (STARTTLS offered).
//! * `127.0.0.1:<smtps_port>`: smtpd with `smtpd_tls_wrappermode = yes` (TLS from the first byte).
//! * Greeting `220 postfix.smtpkit.test ESMTP smtpkit test Postfix`. EHLO offers PIPELINING,
//!   SIZE 10240000, VRFY, ETRN, STARTTLS (plain port, before TLS), ENHANCEDSTATUSCODES,
//!   8BITMIME, DSN, SMTPUTF8, CHUNKING, and `AUTH PLAIN LOGIN` once the session is encrypted.
//! * AUTH PLAIN and LOGIN via Cyrus SASL against the sasldb, offered and accepted only over TLS
//!   (`smtpd_tls_auth_only = yes`; AUTH before STARTTLS gets
//!   `503 5.5.1 Error: authentication not enabled`). The SASL realm is [`SASL_REALM`]: the user
//!   is stored as `<user>@smtpkit.test` (a user name that already contains `@` is stored as
//!   is), and both `<user>` and `<user>@smtpkit.test` log in. A wrong password gets
//!   `535 5.7.8 Error: authentication failed: authentication failure`.
//! * `smtpd_relay_restrictions = permit_sasl_authenticated, reject`: MAIL FROM is accepted
//!   without AUTH, but every recipient of an unauthenticated client gets
//!   `554 5.7.1 <rcpt>: Recipient address rejected: Access denied`.
//! * The certificate and key are loaded by each smtpd process, not by `postfix start`: a bad
//!   pair does not make [`PostfixSmtpd::start`] fail, it shows in the maillog
//!   (`cannot get RSA private key ... disabling TLS support`) and breaks the TLS sessions.
//! * No local delivery, no DNS, no relaying out: `transport_maps = static:sink:smtpkit` routes
//!   every recipient to a `pipe(8)` service `sink` that runs `D/deliver.sh` as `nobody` once per
//!   message (all recipients in one delivery, `sink_destination_recipient_limit = 1000`), and the
//!   script writes `D/messages/<nanoseconds>-<queue id>.eml`, renamed into place when complete:
//!
//!   ```text
//!   X-Mail-From: <envelope sender, empty for <>>
//!   X-Rcpt-To: <rcpt>, <rcpt>          (Postfix's order: grouped by domain, not the client's)
//!   X-Postfix-Queue-Id: <queue id>
//!   Received: from <ehlo name> (localhost [127.0.0.1])
//!   \tby postfix.smtpkit.test (Postfix) with ESMTPSA id <queue id>[ for <rcpt>]; <date>
//!   <the message as the client sent it, dot-unstuffed>
//!   ```
//!
//!   Line endings in these files are LF (Postfix stores lines, pipe(8) writes them with `\n`);
//!   the client's own headers are not rewritten (`local_header_rewrite_clients` is empty) and
//!   no headers are added other than `Received:`. [`PostfixSmtpd::wait_for_messages`] returns
//!   the files; the maillog (`status=sent (delivered via sink service)`) has the details.
//!
//! All Postfix daemons run unchrooted (chroot column `n`), since the chroot would need copies
//! of system files. Several instances may run at once (each has its own queue, data and config
//! directories, lock and pid files, ports). On Drop the instance is stopped with
//! `postfix -c D/etc stop` (bounded), then every process still carrying `MAIL_CONFIG=D/etc` in
//! its environment (master, smtpd, qmgr, ..., which all inherit it) is killed with SIGKILL, and
//! `D` is removed, except when the thread is panicking: then the tails of the logs are printed
//! and `D` is kept. An instance left behind by a test process that died without running Drop is
//! killed (and its directory removed) by the next [`PostfixSmtpd::start`].
//!
//! Requirements: root (Postfix's master must start as root), `/usr/sbin/postfix` (package
//! `postfix`), `/usr/sbin/saslpasswd2` (`sasl2-bin`), the Cyrus plugins for PLAIN, LOGIN and
//! sasldb (`libsasl2-modules`, `libsasl2-modules-db`), the `postfix` and `nobody` accounts and
//! the `postdrop` group (created by the postfix package), and a temp dir whose ancestors other
//! users may search (the postfix and nobody users work inside it). When one is missing
//! [`PostfixSmtpd::start`] returns a [`Skip`] (the test is reported as ignored), or panics when
//! `SMTPKIT_REAL_SERVERS=1`.
//!
//! Start-up takes about 0.2-0.6 s (`postfix start` runs Postfix's integrity checks; the config
//! files are backdated because Postfix waits up to 1.5 s for files modified within the last
//! second to settle), Drop about 0.1 s; delivery follows the `250 ... queued as` reply within
//! tens of milliseconds.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::real_servers::{
    free_port, make_temp_dir, read_lossy, report_missing, report_unusable, require_binary,
    running_as_root, tail, visible_line, wait_for_eml_files, Skip, START_ATTEMPTS,
};

/// Where the `postfix` command lives on Debian.
pub const POSTFIX_CANDIDATES: &[&str] = &["/usr/sbin/postfix"];

/// Where `saslpasswd2` lives on Debian (package `sasl2-bin`).
pub const SASLPASSWD2_CANDIDATES: &[&str] = &["/usr/sbin/saslpasswd2"];

/// `myhostname` of the instance: the greeting is `220 postfix.smtpkit.test ESMTP ...`.
pub const POSTFIX_HOSTNAME: &str = "postfix.smtpkit.test";

/// The Cyrus SASL realm users are stored in (`smtpd_sasl_local_domain`).
pub const SASL_REALM: &str = "smtpkit.test";

/// Directories searched for the Cyrus SASL plugins.
const SASL_PLUGIN_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/sasl2",
    "/usr/lib/aarch64-linux-gnu/sasl2",
    "/usr/lib/i386-linux-gnu/sasl2",
    "/usr/lib/arm-linux-gnueabihf/sasl2",
    "/usr/lib64/sasl2",
    "/usr/lib/sasl2",
];

/// Bound for `postfix start` (it runs Postfix's integrity checks, then waits for the master).
const POSTFIX_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound for both ports to accept connections after `postfix start` returned.
const PORTS_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound for `postfix stop` (the script itself gives the master 5 s, then kills its group).
const POSTFIX_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long processes of a stopped instance get to exit on their own before SIGKILL, and how
/// long after SIGKILL we keep checking.
const EXIT_GRACE: Duration = Duration::from_secs(3);
const KILL_WAIT: Duration = Duration::from_secs(3);

/// Bound for small helper commands (saslpasswd2).
const HELPER_TIMEOUT: Duration = Duration::from_secs(15);

/// A running private Postfix instance; see the module documentation. Stopped on Drop.
pub struct PostfixSmtpd {
    /// Port with STARTTLS offered (`smtpd_tls_security_level = may`).
    pub smtp_port: u16,
    /// Port with implicit TLS (`smtpd_tls_wrappermode = yes`).
    pub smtps_port: u16,
    dir: PathBuf,
    config_dir: PathBuf,
    postfix: PathBuf,
    started: bool,
}

/// Uid and primary gid of a user, from `/etc/passwd`.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == name {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// Gid of a group, from `/etc/group`.
fn lookup_group(name: &str) -> Option<u32> {
    let group = fs::read_to_string("/etc/group").ok()?;
    group.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 3 && fields[0] == name {
            fields[2].parse().ok()
        } else {
            None
        }
    })
}

/// Whether some plugin directory holds all of the given Cyrus plugins (`lib<name>.so*`).
fn sasl_plugins_present(names: &[&str]) -> bool {
    SASL_PLUGIN_DIRS.iter().any(|dir| {
        let Ok(entries) = fs::read_dir(dir) else {
            return false;
        };
        let files: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.iter().all(|name| {
            let prefix = format!("lib{name}.so");
            files.iter().any(|f| f.starts_with(&prefix))
        })
    })
}

/// Process ids whose environment holds `MAIL_CONFIG=<config_dir>` exactly: the processes of the
/// Postfix instance configured there (the `postfix` command exports it and the master passes it
/// to every daemon through `import_environment`). Zombies and unreadable processes are skipped;
/// the calling process is never included.
pub fn instance_processes(config_dir: &Path) -> Vec<u32> {
    let needle = format!("MAIL_CONFIG={}", config_dir.display());
    processes_matching(|var| var == needle.as_bytes())
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// `(pid, matching MAIL_CONFIG value)` for every process with an environment entry satisfying
/// `matches` (which sees whole `NAME=value` entries).
fn processes_matching(matches: impl Fn(&[u8]) -> bool) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        if let Some(var) = environ.split(|b| *b == 0).find(|var| matches(var)) {
            found.push((pid, String::from_utf8_lossy(var).into_owned()));
        }
    }
    found
}

/// Sends SIGKILL to `pids` (std has no kill(2) for arbitrary pids, so this runs the shell's
/// `kill` builtin, which exists even where procps is not installed).
fn sigkill(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("/bin/sh")
        .args(["-c", "kill -KILL \"$@\" 2>/dev/null", "sh"])
        .args(pids.iter().map(|p| p.to_string()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits until no process of the instance in `config_dir` is left: `grace` for them to exit on
/// their own, then SIGKILL and up to [`KILL_WAIT`] more. Returns the pids still alive (empty on
/// success).
fn wait_instance_gone(config_dir: &Path, grace: Duration) -> Vec<u32> {
    let deadline = Instant::now() + grace;
    loop {
        let pids = instance_processes(config_dir);
        if pids.is_empty() {
            return pids;
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let pids = instance_processes(config_dir);
        if pids.is_empty() || Instant::now() >= deadline {
            return pids;
        }
        sigkill(&pids);
        thread::sleep(Duration::from_millis(20));
    }
}

/// Kills instances left by test processes that died without dropping their [`PostfixSmtpd`]:
/// processes with `MAIL_CONFIG=<temp dir>/smtpkit-postfix-<pid>-<n>/etc` whose `<pid>` no
/// longer exists. Their directories are removed too.
fn reap_orphaned_instances() {
    let prefix = format!(
        "MAIL_CONFIG={}/smtpkit-postfix-",
        std::env::temp_dir().display()
    );
    let orphans: Vec<(u32, String)> = processes_matching(|var| var.starts_with(prefix.as_bytes()))
        .into_iter()
        .filter(|(_, var)| {
            let rest = &var[prefix.len()..];
            let Some((instance, "etc")) = rest.split_once('/') else {
                return false;
            };
            let owner = instance.split('-').next().unwrap_or("");
            owner.parse::<u32>().is_ok_and(|owner| {
                owner != std::process::id() && !Path::new(&format!("/proc/{owner}")).exists()
            })
        })
        .collect();
    let mut dirs: Vec<PathBuf> = orphans
        .iter()
        .map(|(_, var)| PathBuf::from(&var["MAIL_CONFIG=".len()..]))
        .collect();
    dirs.sort();
    dirs.dedup();
    for config_dir in dirs {
        let left = wait_instance_gone(&config_dir, Duration::ZERO);
        if left.is_empty() {
            if let Some(dir) = config_dir.parent() {
                let _ = fs::remove_dir_all(dir);
            }
        }
    }
}

/// The pipe(8) command: one file per delivery (= per message, all recipients at once).
const DELIVER_SH: &str = r#"#!/bin/sh
# pipe(8) command of the smtpkit test Postfix instance (service "sink" in master.cf).
# $1: messages directory, $2: queue id, $3: envelope sender (empty for <>),
# $4...: the recipients of this delivery. The message is on stdin.
# Writes <dir>/<nanoseconds>-<queue id>.eml via a dot-file and a rename.
# Exit 75 (EX_TEMPFAIL) makes Postfix defer and retry.
dir=$1
qid=$2
sender=$3
shift 3
rcpts=
for r in "$@"; do
    rcpts="${rcpts:+$rcpts, }$r"
done
name=$(date +%s%N)-$qid
tmp=$dir/.$name.tmp
if { printf 'X-Mail-From: %s\nX-Rcpt-To: %s\nX-Postfix-Queue-Id: %s\n' "$sender" "$rcpts" "$qid" && cat; } >"$tmp"; then
    mv "$tmp" "$dir/$name.eml" || exit 75
else
    rm -f "$tmp"
    exit 75
fi
"#;

fn main_cf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "\
# Private Postfix instance of the smtpkit tests (tests/support/postfix_smtpd.rs).
compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop

# Logging to a file through postlogd (service postlog in master.cf), no syslog.
maillog_file = {d}/maillog
maillog_file_prefixes = {d}

# Loopback only, no DNS.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {POSTFIX_HOSTNAME}
mydomain = smtpkit.test
myorigin = $myhostname
mynetworks = 127.0.0.1/32
smtpd_banner = $myhostname ESMTP smtpkit test Postfix

# No local recipients at all: every recipient goes to the sink transport.
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
biff = no
transport_maps = static:sink:smtpkit
default_transport = sink:smtpkit
sink_destination_recipient_limit = 1000
local_header_rewrite_clients =

# STARTTLS offered on the smtp port (the smtps service overrides these in master.cf).
smtpd_tls_security_level = may
smtpd_tls_cert_file = {d}/etc/tls/cert.pem
smtpd_tls_key_file = {d}/etc/tls/key.pem
smtpd_tls_loglevel = 1
smtpd_tls_auth_only = yes

# SASL AUTH via Cyrus: {d}/etc/sasl/smtpd.conf (smtpd_sasl_path = smtpd). Debian's Postfix
# reads the Cyrus config from $config_directory/sasl; cyrus_sasl_config_path says the same.
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {d}/etc/sasl
smtpd_sasl_local_domain = {SASL_REALM}
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous

# Only authenticated clients may send anything anywhere.
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions =
"
    )
}

fn master_cf(dir: &Path, smtp_port: u16, smtps_port: u16) -> String {
    let d = dir.display();
    format!(
        "\
# service  type  private unpriv chroot wakeup maxproc command + args
127.0.0.1:{smtp_port} inet n - n - - smtpd
127.0.0.1:{smtps_port} inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
sink       unix  - n n -     - pipe
  user=nobody null_sender= argv=/bin/sh {d}/deliver.sh {d}/messages ${{queue_id}} ${{sender}} ${{recipient}}
"
    )
}

fn smtpd_conf(dir: &Path) -> String {
    format!(
        "\
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: {}/etc/sasl/sasldb2
mech_list: PLAIN LOGIN
",
        dir.display()
    )
}

enum Outcome {
    Finished(ExitStatus),
    TimedOut,
}

impl PostfixSmtpd {
    /// Starts a private Postfix instance on 127.0.0.1 (see the module documentation): port
    /// `smtp_port` with STARTTLS offered, port `smtps_port` with implicit TLS, AUTH PLAIN/LOGIN
    /// for `user`/`password` only after TLS, relaying only for authenticated clients, and every
    /// accepted message delivered to a file ([`PostfixSmtpd::wait_for_messages`]).
    ///
    /// `cert` (PEM, may hold a chain) and `key` (PEM, any format OpenSSL reads) are copied into
    /// the instance's directory. Waits (bounded) until `postfix start` returned and both ports
    /// accept connections; retries with fresh ports up to 3 times, then panics with the logs.
    ///
    /// Returns a [`Skip`] when a requirement is missing and `SMTPKIT_REAL_SERVERS` is not 1;
    /// panics if it is missing and required.
    pub fn start(
        test: &str,
        cert: &Path,
        key: &Path,
        user: &str,
        password: &str,
    ) -> Result<PostfixSmtpd, Skip> {
        let postfix = require_binary(test, POSTFIX_CANDIDATES, "postfix")?;
        let saslpasswd2 = require_binary(test, SASLPASSWD2_CANDIDATES, "sasl2-bin")?;
        if !sasl_plugins_present(&["plain", "login", "sasldb"]) {
            return Err(report_missing(
                test,
                "Cyrus SASL plugins PLAIN, LOGIN and sasldb",
                &format!(
                    "looked for libplain.so, liblogin.so, libsasldb.so in {SASL_PLUGIN_DIRS:?}"
                ),
                "libsasl2-modules libsasl2-modules-db",
            ));
        }
        if !running_as_root() {
            return Err(report_unusable(
                test,
                "a private Postfix instance must be started as root (Postfix's master needs it)",
            ));
        }
        let (Some(postfix_ids), Some(nobody), Some(_postdrop)) = (
            lookup_user("postfix"),
            lookup_user("nobody"),
            lookup_group("postdrop"),
        ) else {
            return Err(report_missing(
                test,
                "the postfix/nobody users or the postdrop group",
                "looked in /etc/passwd and /etc/group",
                "postfix",
            ));
        };
        assert!(
            !user.is_empty() && !user.contains(|c: char| c.is_whitespace() || c.is_control()),
            "{test}: the SASL user name must be non-empty without whitespace: {user:?}"
        );

        let base = std::env::temp_dir();
        if let Some(closed) = base
            .ancestors()
            .find(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        {
            return Err(report_unusable(
                test,
                &format!(
                    "{} is not searchable by other users (the postfix and nobody users must \
                     reach the instance inside the temp dir {}); point TMPDIR elsewhere",
                    closed.display(),
                    base.display()
                ),
            ));
        }

        reap_orphaned_instances();

        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let smtp_port = free_port();
            let smtps_port = free_port();
            let dir = make_temp_dir("postfix");
            assert!(
                !dir.to_string_lossy().contains(char::is_whitespace),
                "{test}: the temp dir path {} contains whitespace, which Postfix's config \
                 files cannot hold",
                dir.display()
            );
            let mut instance = PostfixSmtpd {
                smtp_port,
                smtps_port,
                config_dir: dir.join("etc"),
                dir,
                postfix: postfix.clone(),
                started: false,
            };
            instance.lay_out(test, cert, key, postfix_ids, nobody);
            instance.make_sasldb(test, &saslpasswd2, user, password);
            match instance.postfix_start() {
                Ok(()) => match instance.wait_ports() {
                    Ok(()) => return Ok(instance),
                    Err(problem) => failures.push(format!(
                        "attempt {attempt} (ports {smtp_port}, {smtps_port}): {problem}\n{}",
                        instance.log_tails()
                    )),
                },
                Err(problem) => failures.push(format!(
                    "attempt {attempt} (ports {smtp_port}, {smtps_port}): {problem}\n{}",
                    instance.log_tails()
                )),
            }
            drop(instance);
        }
        panic!(
            "{test}: Postfix did not start on 127.0.0.1:\n{}",
            failures.join("\n")
        );
    }

    /// Writes configuration, TLS files, directories and the delivery script.
    fn lay_out(
        &self,
        test: &str,
        cert: &Path,
        key: &Path,
        postfix: (u32, u32),
        nobody: (u32, u32),
    ) {
        let d = &self.dir;
        let fail = |what: &str, e: std::io::Error| -> ! {
            panic!(
                "{test}: cannot set up the Postfix instance in {} ({what}): {e}",
                d.display()
            )
        };
        let set_mode = |path: &Path, mode: u32| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| fail(&format!("chmod {}", path.display()), e));
        };
        let chown = |path: &Path, (uid, gid): (u32, u32)| {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| fail(&format!("chown {}", path.display()), e));
        };
        let mkdir = |path: &Path, mode: u32| {
            fs::create_dir_all(path)
                .unwrap_or_else(|e| fail(&format!("mkdir {}", path.display()), e));
            set_mode(path, mode);
        };
        let write = |path: &Path, contents: &[u8], mode: u32| {
            fs::write(path, contents)
                .unwrap_or_else(|e| fail(&format!("write {}", path.display()), e));
            set_mode(path, mode);
        };

        // Postfix daemons run as the postfix user and must be able to traverse every level.
        set_mode(d, 0o755);
        mkdir(&d.join("etc/sasl"), 0o755);
        mkdir(&d.join("etc/tls"), 0o755);
        mkdir(&d.join("queue"), 0o755);
        mkdir(&d.join("data"), 0o700);
        chown(&d.join("data"), postfix);
        mkdir(&d.join("messages"), 0o750);
        chown(&d.join("messages"), nobody);

        let cert_pem =
            fs::read(cert).unwrap_or_else(|e| fail(&format!("read {}", cert.display()), e));
        let key_pem = fs::read(key).unwrap_or_else(|e| fail(&format!("read {}", key.display()), e));
        write(&d.join("etc/tls/cert.pem"), &cert_pem, 0o644);
        write(&d.join("etc/tls/key.pem"), &key_pem, 0o600);

        write(&d.join("etc/main.cf"), main_cf(d).as_bytes(), 0o644);
        write(
            &d.join("etc/master.cf"),
            master_cf(d, self.smtp_port, self.smtps_port).as_bytes(),
            0o644,
        );
        write(
            &d.join("etc/sasl/smtpd.conf"),
            smtpd_conf(d).as_bytes(),
            0o644,
        );
        write(&d.join("deliver.sh"), DELIVER_SH.as_bytes(), 0o755);
        write(&d.join("maillog"), b"", 0o644);

        // Postfix re-reads a config file that changed within the last second, sleeping 300 ms
        // up to 5 times, in every `postfix`/`postconf` process of `postfix start` (seconds of
        // start-up). Backdating the files avoids that.
        let past = std::time::SystemTime::now() - Duration::from_secs(120);
        for file in ["etc/main.cf", "etc/master.cf"] {
            let path = d.join(file);
            File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(past))
                .unwrap_or_else(|e| fail(&format!("set mtime of {}", path.display()), e));
        }
    }

    /// Creates `etc/sasl/sasldb2` holding `user`/`password`, readable by the postfix group.
    fn make_sasldb(&self, test: &str, saslpasswd2: &Path, user: &str, password: &str) {
        let db = self.config_dir.join("sasl/sasldb2");
        let mut cmd = Command::new(saslpasswd2);
        cmd.arg("-f")
            .arg(&db)
            .args(["-c", "-p", "-u", SASL_REALM, user]);
        match self.run_logged(cmd, Some(password.as_bytes()), HELPER_TIMEOUT) {
            Outcome::Finished(status) if status.success() => {}
            Outcome::Finished(status) => panic!(
                "{test}: saslpasswd2 failed ({status}):\n{}",
                tail(&self.commands_log(), 20)
            ),
            Outcome::TimedOut => panic!("{test}: saslpasswd2 did not finish in {HELPER_TIMEOUT:?}"),
        }
        let postfix_gid = lookup_group("postfix")
            .or_else(|| lookup_user("postfix").map(|(_, gid)| gid))
            .unwrap_or_else(|| panic!("{test}: no postfix group"));
        std::os::unix::fs::chown(&db, Some(0), Some(postfix_gid))
            .and_then(|()| fs::set_permissions(&db, fs::Permissions::from_mode(0o640)))
            .unwrap_or_else(|e| panic!("{test}: cannot chown/chmod {}: {e}", db.display()));
    }

    /// `postfix -c D/etc start`, bounded; Ok once it exited with status 0.
    fn postfix_start(&mut self) -> Result<(), String> {
        // From here on Drop must stop whatever may have been started.
        self.started = true;
        match self.run_logged(self.postfix_command("start"), None, POSTFIX_START_TIMEOUT) {
            Outcome::Finished(status) if status.success() => Ok(()),
            Outcome::Finished(status) => Err(format!("`postfix start` exited with {status}")),
            Outcome::TimedOut => Err(format!(
                "`postfix start` did not finish in {POSTFIX_START_TIMEOUT:?}"
            )),
        }
    }

    fn postfix_command(&self, action: &str) -> Command {
        let mut cmd = Command::new(&self.postfix);
        cmd.arg("-c").arg(&self.config_dir).arg(action);
        for var in ["MAIL_CONFIG", "MAIL_DEBUG", "MAIL_VERBOSE", "MAIL_LOGTAG"] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `cmd` with stdout/stderr appended to `D/commands.log` (never a pipe), optional
    /// stdin data, killing it after `timeout`.
    fn run_logged(&self, mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Outcome {
        let log_path = self.dir.join("commands.log");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let _ = writeln!(log, "$ {cmd:?}");
        let log_err = log.try_clone().expect("clone log file handle");
        cmd.stdout(Stdio::from(log.try_clone().expect("clone log file handle")))
            .stderr(Stdio::from(log_err))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Small writes into a fresh pipe do not block; the pipe closes when dropped.
            let _ = pipe.write_all(data);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let _ = writeln!(log, "[exit: {status}]");
                return Outcome::Finished(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let _ = writeln!(log, "[killed after {timeout:?}]");
                return Outcome::TimedOut;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Bounded wait until both ports accept TCP connections (each probe is a connect + close;
    /// smtpd logs it as a `lost connection after CONNECT`).
    fn wait_ports(&self) -> Result<(), String> {
        let deadline = Instant::now() + PORTS_TIMEOUT;
        for port in [self.smtp_port, self.smtps_port] {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "port {port} not accepting connections {PORTS_TIMEOUT:?} after \
                         `postfix start`"
                    ));
                }
                thread::sleep(Duration::from_millis(25));
            }
        }
        Ok(())
    }

    /// `127.0.0.1:<smtp_port>` (STARTTLS).
    pub fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.smtp_port))
    }

    /// `127.0.0.1:<smtps_port>` (implicit TLS).
    pub fn smtps_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.smtps_port))
    }

    /// Waits (bounded by `timeout`, polling every 25 ms) until at least `n` messages were
    /// delivered, i.e. `n` files `D/messages/*.eml` exist (one per accepted message, whatever
    /// its number of recipients); returns the contents of all of them sorted by name (= delivery
    /// order), in the format described in the module documentation. Returns fewer than `n` if
    /// the timeout passed: assert on the length (and look at [`PostfixSmtpd::maillog`]).
    ///
    /// Delivery happens after the `250 2.0.0 Ok: queued as <id>` reply, usually within tens
    /// of milliseconds; allow a few seconds.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<String> {
        wait_for_eml_files(&self.dir.join("messages"), n, timeout)
    }

    /// The Postfix log so far (`D/maillog`): connections, SASL results, queue ids, deliveries.
    pub fn maillog(&self) -> String {
        read_lossy(&self.maillog_path())
    }

    /// Path of the Postfix log.
    pub fn maillog_path(&self) -> PathBuf {
        self.dir.join("maillog")
    }

    /// Polls the maillog until it contains `needle` or `timeout` passes; returns whether it was
    /// seen.
    pub fn wait_for_maillog(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.maillog().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Output of the helper commands (saslpasswd2, postfix start/stop).
    pub fn commands_log(&self) -> String {
        read_lossy(&self.dir.join("commands.log"))
    }

    /// The instance's directory `D`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The instance's config directory `D/etc` (its `MAIL_CONFIG`, see [`instance_processes`]).
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Directory receiving the delivered `.eml` files.
    pub fn messages_dir(&self) -> PathBuf {
        self.dir.join("messages")
    }

    /// Pid of the Postfix master, from `D/queue/pid/master.pid`.
    pub fn master_pid(&self) -> Option<u32> {
        fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn log_tails(&self) -> String {
        format!(
            "--- commands.log ---\n{}\n--- maillog ---\n{}\n--- end ---",
            tail(&self.commands_log(), 25),
            tail(&self.maillog(), 25)
        )
    }
}

impl Drop for PostfixSmtpd {
    fn drop(&mut self) {
        let mut left = Vec::new();
        if self.started {
            // Ignore the outcome: "not running" is fine, leftovers are handled below.
            let _ = self.run_logged(self.postfix_command("stop"), None, POSTFIX_STOP_TIMEOUT);
            left = wait_instance_gone(&self.config_dir, EXIT_GRACE);
        }
        if !left.is_empty() || thread::panicking() {
            let alive = if left.is_empty() {
                String::new()
            } else {
                format!(" (processes still alive after SIGKILL: {left:?})")
            };
            visible_line(&format!(
                "--- postfix instance {}{alive} ---\n{}",
                self.dir.display(),
                self.log_tails()
            ));
        }
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
