//! `smtpkit worker` processes on a PostgreSQL outbox.

mod support;

fn main() -> std::process::ExitCode {
    support::real_servers::run_tests(Vec::new())
}
