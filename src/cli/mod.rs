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

pub mod auth;
pub mod bench;
mod bench_mailer;
pub mod check;
pub mod delay_proxy;
pub mod demo;
pub mod exit;
pub mod metrics;
pub mod notify;
pub mod outbox_access;
pub mod outbox_cmd;
pub mod output;
pub mod progress;
pub mod queue;
pub mod send;
pub mod serve;
mod shutdown;
pub use shutdown::shutdown_signal;
pub mod worker;

use clap::{Parser, Subcommand};

/// Shows a command-line parsing error as clap does (`--help` and `--version` on stdout, exit
/// 0; a usage error on stderr, exit 64). With `--json` among the arguments, a usage error also
/// prints its one JSON object on stdout, as every other failure does.
pub fn parse_error(e: &clap::Error) -> u8 {
    let _ = e.print();
    if !e.use_stderr() {
        return exit::OK;
    }
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if json {
        output::print_json(&usage_failure(e).json());
    }
    exit::USAGE
}

/// clap's message, in one line, with its usage line as the hint.
fn usage_failure(e: &clap::Error) -> output::Failure {
    // Display of the rendered error is plain text, without terminal colours.
    let rendered = e.render().to_string();
    let mut paragraphs = rendered.split("\n\n").map(|p| {
        p.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
    });
    // "error: the following required arguments were not provided:" and one line per argument.
    let first = paragraphs.next().unwrap_or_default();
    let mut message = first.first().copied().unwrap_or_default().to_owned();
    if first.len() > 1 {
        message = format!("{message} {}", first[1..].join(", "));
    }
    let message = message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_owned();
    let rest: Vec<String> = paragraphs
        .filter(|p| !p.is_empty())
        .map(|p| p.join(" "))
        .collect();
    let failure = output::Failure::new("usage", "arguments", message, exit::USAGE);
    if rest.is_empty() {
        failure
    } else {
        failure.with_hint(rest.join(" "))
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "smtpkit",
    version,
    about,
    after_help = "Exit codes (sysexits): 0 sent, 64 usage, 65 bad address or message, 68 host name does not
resolve, 69 rejected permanently (5xx), 75 temporary failure (4xx, connection, timeout), 76 protocol
error, 77 auth failed or required, or TLS unavailable, 78 configuration error.

Output: results on stdout; progress, attempt lines, the transcript and diagnostics (errors, hints,
configuration errors) on stderr. --json prints exactly one JSON object on stdout, on success and
on failure, with `ok` and `exit_code`."
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
    /// Sign in to an OAuth 2.0 identity provider for XOAUTH2 (`smtpkit auth login`).
    Auth(auth::AuthArgs),
    /// Deliver the outbox's queued messages (`send --queue`, `notify --queue`).
    Worker(worker::WorkerArgs),
    /// Look at and manage the outbox: list, show, retry, delete, stats.
    Queue(queue::QueueArgs),
    /// Operate on the outbox database: migrate its schema.
    Outbox(outbox_cmd::OutboxArgs),
}

#[cfg(test)]
mod tests {
    /// clap checks a command's definition only when it is parsed; this checks every
    /// subcommand's at once (a global argument marked required, clashing names…).
    #[test]
    fn every_command_line_definition_is_valid() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
