//! The README's "Library example: the provider": load the spec's YAML, send one notification
//! through the only enabled provider, print the report.
//!
//! ```sh
//! smtpkit serve --tls self-signed --auth demo:secret &   # a local capture server, port 2525
//! # smtpkit.yaml: host 127.0.0.1, port 2525, user demo, pass secret,
//! #               ca_file: smtpkit-mail/smtpkit-local-ca.pem (see the README)
//! cargo run --example provider
//! ```
//!
//! `SMTPKIT_EXAMPLE_CONFIG` names another configuration file (default `smtpkit.yaml`).

use smtpkit::message::Notification;
use smtpkit::provider::{Config, Mailer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("SMTPKIT_EXAMPLE_CONFIG").unwrap_or_else(|_| "smtpkit.yaml".into());
    let config = Config::from_file(&path)?;
    let mailer = Mailer::new(&config, None)?; // the only enabled provider
    let report = mailer
        .send(
            &Notification::new("Access Request Approval Required")
                .to("approver@example.com".parse()?)
                .text("A new access request requires your approval.")
                .html("<h2>Access Request</h2><p>A new access request requires your approval.</p>"),
        )
        .await?;
    println!(
        "{} queued as {:?} in {:?}",
        report.message_id, report.queue_id, report.duration
    );
    mailer.close().await;
    Ok(())
}
