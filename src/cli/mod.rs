//! The command line: argument parsing and one module per command.

/// `println!` that does not panic when stdout is closed (`smtpkit … | head -1`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that does not panic when stdout is closed.
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

pub mod bench;
pub mod check;
pub mod delay_proxy;
pub mod demo;
pub mod exit;
pub mod notify;
pub mod output;
pub mod send;
pub mod serve;

use clap::{Parser, Subcommand};

/// smtpkit: an SMTP client written from the wire up, and the `email.smtp` notification provider.
#[derive(Parser, Debug)]
#[command(
    name = "smtpkit",
    version,
    about,
    after_help = "Exit codes (sysexits): 0 sent, 64 usage, 65 bad address or message, 69 rejected permanently (5xx),
75 temporary failure (4xx, connection, timeout), 76 protocol error, 77 auth failed or TLS unavailable,
78 configuration error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Send one message through a configured provider.
    Send(Box<send::SendArgs>),
    /// Check a provider step by step: connect, TLS, EHLO, AUTH, QUIT, with advice on failure.
    Check(check::CheckArgs),
    /// Run the email notification steps of the configured workflows.
    Notify(notify::NotifyArgs),
    /// Run a local SMTP server that stores every message it receives (for testing workflows).
    Serve(serve::ServeArgs),
    /// Show the whole job with no mail account: local server, the spec's config and workflow.
    Demo(demo::DemoArgs),
    /// Measure throughput against a server over reused connections.
    Bench(bench::BenchArgs),
}
