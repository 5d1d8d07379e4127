//! Real proxies for the proxy tests, started on 127.0.0.1 on a free port like the real SMTP
//! servers of `real_servers` (a log file in a private temporary directory, killed and reaped
//! on drop, "not installed" reported as a skip unless `SMTPKIT_REAL_SERVERS=1`):
//!
//! * [`Microsocks`]: `/usr/bin/microsocks` (Debian package `microsocks`), a SOCKS5 server,
//!   with or without a user name and password (RFC 1929).
//! * [`Tinyproxy`]: `/usr/bin/tinyproxy` (package `tinyproxy`), an HTTP proxy with CONNECT,
//!   run in the foreground (`-d`) on a configuration file written in its temporary
//!   directory: `BasicAuth` for a login, `ConnectPort` lines for the ports CONNECT may reach
//!   (any other is answered `403 Access violation`).

use std::fs;
use std::process::Command;

use super::real_servers::{require_binary, spawn_server, ServerProcess, Skip};

/// A running microsocks on 127.0.0.1:`port`.
pub struct Microsocks {
    pub port: u16,
    process: ServerProcess,
}

impl Microsocks {
    /// `microsocks -i 127.0.0.1 -p PORT [-u USER -P PASSWORD]`.
    pub fn start(test: &str, login: Option<(&str, &str)>) -> Result<Microsocks, Skip> {
        let binary = require_binary(test, &["/usr/bin/microsocks", "microsocks"], "microsocks")?;
        let (port, process) = spawn_server(test, "microsocks", |port, _dir| {
            let mut cmd = Command::new(&binary);
            cmd.args(["-i", "127.0.0.1", "-p"]).arg(port.to_string());
            if let Some((user, password)) = login {
                cmd.args(["-u", user, "-P", password]);
            }
            cmd
        });
        Ok(Microsocks { port, process })
    }

    /// What microsocks wrote so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A running tinyproxy on 127.0.0.1:`port`.
pub struct Tinyproxy {
    pub port: u16,
    process: ServerProcess,
}

impl Tinyproxy {
    /// `tinyproxy -d -c DIR/tinyproxy.conf`, listening on 127.0.0.1 only, CONNECT allowed to
    /// `connect_ports` only, with `BasicAuth USER PASSWORD` when `login` is given (tinyproxy
    /// reads both as words: letters, digits, `-` and `_` are safe).
    pub fn start(
        test: &str,
        login: Option<(&str, &str)>,
        connect_ports: &[u16],
    ) -> Result<Tinyproxy, Skip> {
        let binary = require_binary(test, &["/usr/bin/tinyproxy", "tinyproxy"], "tinyproxy")?;
        let (port, process) = spawn_server(test, "tinyproxy", |port, dir| {
            let mut conf = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nLogLevel Info\n"
            );
            for p in connect_ports {
                conf.push_str(&format!("ConnectPort {p}\n"));
            }
            if let Some((user, password)) = login {
                conf.push_str(&format!("BasicAuth {user} {password}\n"));
            }
            let path = dir.join("tinyproxy.conf");
            fs::write(&path, conf).expect("write tinyproxy.conf");
            let mut cmd = Command::new(&binary);
            cmd.arg("-d").arg("-c").arg(path);
            cmd
        });
        Ok(Tinyproxy { port, process })
    }

    /// What tinyproxy logged so far (a line per request).
    pub fn log(&self) -> String {
        self.process.log()
    }
}
