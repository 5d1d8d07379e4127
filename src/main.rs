//! The `smtpkit` command line.

mod cli;

use clap::Parser;
use cli::{exit, Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return std::process::ExitCode::from(code);
        }
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
        }
    });
    std::process::ExitCode::from(code)
}
