//! The `oauth2:` block of a provider's config (extension keys) read into
//! [`OAuth2Settings`](crate::oauth::OAuth2Settings).

use std::path::PathBuf;

use super::error::ConfigError;
use super::yaml_node::Node;
use crate::oauth::{OAuth2Input, OAuth2Settings};
use crate::proto::Secret;

const OAUTH2_KEYS: &[&str] = &[
    "provider",
    "tenant",
    "client_id",
    "client_secret",
    "refresh_token",
    "grant",
    "token_url",
    "device_authorization_url",
    "authorization_url",
    "scope",
    "token_cache",
];

/// Reads `node` (the `oauth2` mapping); errors name the key and never quote a secret.
pub(crate) fn parse_oauth2(node: Node<'_, '_>) -> Result<OAuth2Settings, ConfigError> {
    let env = node.env();
    node.check_keys(OAUTH2_KEYS)?;
    let text = |key: &str| -> Result<Option<String>, ConfigError> {
        node.get(key)
            .map(|v| v.node(env).non_empty(key))
            .transpose()
    };
    let provider = node
        .require("provider", "microsoft, google or custom")?
        .node(env)
        .choice(&["microsoft", "google", "custom"])?
        .to_owned();
    let client_id = node
        .require(
            "client_id",
            "the application (client) id from the app registration",
        )?
        .node(env)
        .non_empty("client_id")?;
    let input = OAuth2Input {
        provider,
        tenant: text("tenant")?,
        client_id,
        client_secret: text("client_secret")?.map(Secret::new),
        refresh_token: text("refresh_token")?.map(Secret::new),
        grant: node
            .get("grant")
            .map(|g| {
                g.node(env)
                    .choice(&["refresh_token", "client_credentials"])
                    .map(str::to_owned)
            })
            .transpose()?,
        token_url: text("token_url")?,
        device_authorization_url: text("device_authorization_url")?,
        authorization_url: text("authorization_url")?,
        scope: text("scope")?,
        token_cache: text("token_cache")?.map(PathBuf::from),
    };
    OAuth2Settings::resolve(input)
        .map_err(|e| ConfigError::new(format!("{}.{}", node.path(), e.key), e.message))
}
