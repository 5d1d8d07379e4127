//! The `email.smtp` provider: the spec's YAML configuration, its workflows, and the [`Mailer`]
//! that sends notifications with it.

mod config;
mod duration;
mod env_expand;
mod error;
mod mailer;
mod oauth2_config;
mod outbox_config;
mod outbox_settings;
mod proxy_config;
mod workflow;
mod yaml_document;
mod yaml_literal;
mod yaml_node;

pub use config::{
    AuthSetting, Config, ProviderConfig, ProviderKind, SkippedProvider, SmtpSettings,
};
pub use duration::parse_duration;
pub use error::ConfigError;
pub use mailer::{Mailer, RouteTable, SecretSources};
pub use outbox_settings::{redact_url, OutboxSettings};
pub use workflow::{EmailStep, Workflow, WorkflowStep};
