//! A private PostgreSQL cluster for tests: `initdb` and `pg_ctl start` in a temporary
//! directory, listening on 127.0.0.1 on a free port (and a socket in that directory), never the
//! system's service. PostgreSQL refuses to run as root: as root (CI), the cluster is made and
//! run by the user `postgres` (Debian's package creates it) through `runuser`, and the
//! directory is handed to that user.
//!
//! The binaries are looked up in `PATH`, then in `/usr/lib/postgresql/*/bin` (Debian's place,
//! the newest version first). Missing, [`PgCluster::start`] returns a [`Skip`] (the test is
//! reported as ignored), unless `SMTPKIT_REAL_SERVERS=1`, when it panics.
//!
//! On drop the cluster is stopped with `pg_ctl stop -m fast`, and its postmaster killed if it
//! is still there.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::real_servers::{real_servers_required, report_missing, report_unusable, Skip};

/// The cluster's superuser and its password (the URL's).
pub const USER: &str = "smtpkit";
pub const PASSWORD: &str = "pg-test-secret";

/// A running private cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `Some("postgres")` when the commands run as that user.
    run_as: Option<String>,
    pub port: u16,
    next_db: AtomicUsize,
}

fn find_initdb() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("initdb"))
            .find(|p| p.is_file())
    });
    if let Some(p) = in_path {
        return Some(p);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let p = e.path().join("bin/initdb");
            p.is_file().then_some((v, p))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// uid and gid of `user`, from /etc/passwd.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() {
        for e in fs::read_dir(path).expect("read_dir") {
            chown_tree(&e.expect("entry").path(), uid, gid);
        }
    }
}

impl PgCluster {
    /// Makes and starts a cluster, or says why it cannot.
    pub fn start(test: &str) -> Result<PgCluster, Skip> {
        let Some(initdb) = find_initdb() else {
            return Err(report_missing(
                test,
                "initdb (PostgreSQL)",
                "looked in PATH and /usr/lib/postgresql/*/bin",
                "postgresql",
            ));
        };
        // pg_ctl and postgres sit beside the real initdb (PATH may hold a symlink).
        let bin = fs::canonicalize(&initdb)
            .unwrap_or(initdb)
            .parent()
            .expect("initdb's directory")
            .to_path_buf();
        let run_as = if is_root() {
            if ids_of("postgres").is_none() {
                return Err(report_unusable(
                    test,
                    "running as root and there is no user `postgres` to run PostgreSQL as",
                ));
            }
            Some("postgres".to_owned())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("smtpkit-pg-")
            .tempdir()
            .expect("tempdir");
        fs::write(dir.path().join("pw"), PASSWORD).expect("password file");
        if let Some(user) = &run_as {
            let (uid, gid) = ids_of(user).expect("postgres user");
            chown_tree(dir.path(), uid, gid);
        }
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        let mut cluster = PgCluster {
            dir,
            bin,
            run_as,
            port: 0,
            next_db: AtomicUsize::new(0),
        };
        let data = cluster.dir.path().join("data");
        let pw = cluster.dir.path().join("pw");
        let out = cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                USER,
                "--pwfile",
                path_str(&pw),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        if !out.status.success() {
            let why = format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if real_servers_required() {
                panic!("{test}: {why}");
            }
            return Err(report_unusable(test, &why));
        }
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = cluster.dir.path().join("log");
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off \
                 -c max_connections=300 -c shared_buffers=32MB",
                path_str(cluster.dir.path())
            );
            let out = cluster.run(
                "pg_ctl",
                &[
                    "-D",
                    path_str(&data),
                    "-l",
                    path_str(&log),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    &opts,
                    "start",
                ],
            );
            if out.status.success() {
                cluster.port = port;
                return Ok(cluster);
            }
            last = format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("{test}: pg_ctl start failed: {last}");
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()))
    }

    /// The URL of database `name` (which may not exist).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{name}",
            self.port
        )
    }

    /// Creates a fresh, empty database and returns its URL.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection;
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.next_db.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test cluster");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create a test database");
        let _ = conn.close().await;
        self.url(&name)
    }

    fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.port == 0 {
            return;
        }
        let pid = self.pid();
        let data = self.dir.path().join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
                "stop",
            ],
        );
        // Backstop: the postmaster is gone, or is killed now.
        if let Some(pid) = pid {
            if Path::new(&format!("/proc/{pid}")).exists()
                && self.dir.path().join("data/postmaster.pid").exists()
            {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}
