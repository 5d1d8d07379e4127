//! The Mailer: one provider's settings turned into deliveries.

use std::time::Instant;

use super::config::{Config, SmtpSettings};
use super::error::ConfigError;
use crate::client::{ClientOptions, Connection, Transcript};
use crate::delivery::DeliveryReport;
use crate::message::{Mailbox, Notification};
use crate::Result;

/// Sends notifications through one configured provider.
///
/// ```no_run
/// use smtpkit::message::Notification;
/// use smtpkit::provider::{Config, Mailer};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_file("smtpkit.yaml")?;
/// let mailer = Mailer::new(&config, Some("email"))?;
/// let report = mailer
///     .send(&Notification::new("Access Request Approval Required")
///         .to("approver@example.com".parse()?)
///         .text("A new access request requires your approval."))
///     .await?;
/// println!("{} accepted as {:?}", report.message_id, report.queue_id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Mailer {
    provider: String,
    settings: SmtpSettings,
    from: Mailbox,
    options: ClientOptions,
}

impl Mailer {
    /// A mailer for the provider named `provider`, or the only enabled one when `None`.
    /// Builds the TLS configuration now, so a bad `ca_file` is reported here.
    pub fn new(config: &Config, provider: Option<&str>) -> Result<Mailer, ConfigError> {
        let p = config.provider(provider)?;
        let from = p.smtp.check_ready(&format!("providers.{}.config", p.id))?;
        let options = p.smtp.client_options().map_err(|e| {
            let key = if p.smtp.ca_file.is_some() {
                "ca_file"
            } else {
                "tls_skip_verify"
            };
            ConfigError::new(format!("providers.{}.config.{key}", p.id), e.to_string())
        })?;
        Ok(Mailer {
            provider: p.id.clone(),
            settings: p.smtp.clone(),
            from,
            options,
        })
    }

    /// Sends every session's lines to `transcript` (secrets redacted).
    pub fn with_transcript(mut self, transcript: Transcript) -> Mailer {
        self.options.transcript = Some(transcript);
        self
    }

    /// The provider's id (its key under `providers:`).
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The provider's settings.
    pub fn settings(&self) -> &SmtpSettings {
        &self.settings
    }

    /// Client options derived from the settings (for [`Connection::connect`]).
    pub fn client_options(&self) -> &ClientOptions {
        &self.options
    }

    /// Builds the message, connects, sends it, and says QUIT.
    pub async fn send(&self, notification: &Notification) -> Result<DeliveryReport> {
        let message = notification.build(&self.from)?;
        let started = Instant::now();
        let mut conn = Connection::connect(
            &self.settings.host,
            self.settings.port,
            self.options.clone(),
        )
        .await?;
        let tx = conn.send_mail(&message.envelope, &message.bytes).await?;
        let report =
            DeliveryReport::new(&self.provider, &message.message_id, &tx, started.elapsed());
        // The message is accepted; a failing QUIT changes nothing about that.
        let _ = conn.quit().await;
        Ok(report)
    }
}
