//! The `smtpkit` command line.

use clap::Parser;

/// smtpkit: an async SMTP client written from the wire up.
///
/// The library (protocol core and client) is usable now; the commands of the CLI contract
/// (send, check, notify, serve, demo, bench) are being built on it.
#[derive(Parser, Debug)]
#[command(name = "smtpkit", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!(
        "smtpkit {}: no command yet; see `smtpkit --help`",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(64);
}
