//! `tests/support/oauth_world.py` (a local identity server and an XOAUTH2 SMTP server, see
//! its docstring) started by a test: ports, state directory, and its control and statistics
//! endpoints over a plain HTTP/1.1 request. Killed on drop.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::real_servers::{python_with_aiosmtpd, Skip};

/// A running oauth_world.py.
pub struct OAuthWorld {
    child: Child,
    pub http: u16,
    pub smtp: Option<u16>,
    /// Where the SMTP side writes accepted messages (`NNNNNN.eml`).
    pub state_dir: PathBuf,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl OAuthWorld {
    /// Starts the script with `args` (after `--host 127.0.0.1 --state-dir …`) and waits for
    /// its `READY` line.
    pub fn start(test: &str, args: &[&str]) -> Result<OAuthWorld, Skip> {
        let python = python_with_aiosmtpd(test)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oauth_world.py");
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        let log = dir.path().join("oauth_world.log");
        let mut child = Command::new(python)
            .arg(&script)
            .args(["--host", "127.0.0.1", "--state-dir"])
            .arg(&state_dir)
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start oauth_world.py");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(json) = line.trim().strip_prefix("READY ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{test}: oauth_world.py did not start: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let ready: serde_json::Value = serde_json::from_str(json).expect("READY json");
        Ok(OAuthWorld {
            child,
            http: ready["http"].as_u64().expect("http port") as u16,
            smtp: ready["smtp"].as_u64().map(|p| p as u16),
            state_dir,
            _dir: dir,
            log,
        })
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// The script's log (stderr): one line per request, never a token.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /stats`.
    pub fn stats(&self) -> serde_json::Value {
        self.request("GET", "/stats", None)
    }

    /// `POST /control` with `body`.
    pub fn control(&self, body: serde_json::Value) -> serde_json::Value {
        self.request("POST", "/control", Some(body))
    }

    /// The accepted messages, in arrival order.
    pub fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.state_dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("read eml"))
            .collect()
    }

    /// Waits up to `timeout` for `n` messages.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<String> {
        let end = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > end {
                return m;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.http)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read answer");
        let (_, json) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{method} {path}: {e}: {answer}"))
    }
}

impl Drop for OAuthWorld {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
