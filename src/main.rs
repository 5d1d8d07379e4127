//! The `smtpkit` command line.

mod cli;

use clap::Parser;
use cli::{Cli, Command};

/// Warnings (such as `tls_skip_verify` in use) go to stderr; `RUST_LOG=info` or `debug`
/// shows more (rate-limit waits, retries, every wire line).
fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // rustls warns, once per connection, about a client sending an IP address as SNI (msmtp
    // and other GnuTLS clients do against 127.0.0.1): noise for `serve`, not a failed session.
    // Shown when RUST_LOG names rustls.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("rustls")) {
        if let Ok(quiet) = "rustls::msgs::handshake=error".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

fn main() -> std::process::ExitCode {
    init_logging();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return std::process::ExitCode::from(cli::parse_error(&e)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("✗ cannot start the async runtime: {e}");
            return std::process::ExitCode::from(70);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Send(args) => cli::send::run(*args).await,
            Command::Check(args) => cli::check::run(args).await,
            Command::Notify(args) => cli::notify::run(args).await,
            Command::Serve(args) => cli::serve::run(args).await,
            Command::Demo(args) => cli::demo::run(args).await,
            Command::Bench(args) => cli::bench::run(args).await,
            Command::Auth(args) => cli::auth::run(args).await,
            Command::Worker(args) => cli::worker::run(args).await,
            Command::Queue(args) => cli::queue::run(args).await,
            Command::Outbox(args) => cli::outbox_cmd::run(args).await,
        }
    });
    std::process::ExitCode::from(code)
}
