//! `smtpkit outbox`: operations on the outbox database itself (`migrate`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;
use smtpkit::outbox::Outbox;
use smtpkit::provider::{redact_url, Config};

use super::output::{self, Failure};
use super::{exit, outbox_access};

/// Operate on the outbox database.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  smtpkit outbox migrate --config smtpkit.yaml
  smtpkit outbox migrate --config smtpkit.yaml --outbox postgres://smtpkit@db/mail --json")]
pub struct OutboxArgs {
    #[command(subcommand)]
    pub action: OutboxAction,
}

#[derive(Subcommand, Debug)]
pub enum OutboxAction {
    /// Apply the schema migrations this build has and print the schema's version. Idempotent,
    /// and safe while workers run (they migrate on start under the same lock).
    Migrate(MigrateArgs),
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// Configuration file(s) (for `outbox:`; default outbox next to the first file).
    #[arg(long, required = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// The outbox database, overriding `outbox.url`.
    #[arg(long, value_name = "URL")]
    pub outbox: Option<String>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: OutboxArgs) -> u8 {
    match args.action {
        OutboxAction::Migrate(args) => migrate(args).await,
    }
}

async fn migrate(args: MigrateArgs) -> u8 {
    let config = match Config::from_files(&args.config) {
        Ok(c) => c,
        Err(e) => return Failure::config_error(&e).report(args.json),
    };
    let mut settings = config.outbox_settings();
    if let Some(url) = args.outbox {
        settings.url = url;
    }
    let migrated = match Outbox::migrate(&settings).await {
        Ok(m) => m,
        Err(e) => return outbox_access::failure(&e).report(args.json),
    };
    let url = redact_url(&settings.url);
    if args.json {
        output::print_json(&json!({
            "ok": true,
            "exit_code": exit::OK,
            "url": url,
            "applied": migrated.applied,
            "version": migrated.version,
            "latest": migrated.latest,
        }));
    } else {
        if migrated.applied.is_empty() {
            eprintln!("{url}: the schema was up to date");
        } else {
            let list: Vec<String> = migrated.applied.iter().map(i64::to_string).collect();
            eprintln!("{url}: applied migration(s) {}", list.join(", "));
        }
        out!("schema version {}", migrated.version);
    }
    exit::OK
}
