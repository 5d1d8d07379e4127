//! OAuth 2.0 for XOAUTH2 (Gmail, Outlook.com, Microsoft 365): where an access token comes
//! from. The client sees only a [`SecretSource`](crate::client::SecretSource) that gives "the
//! secret for this AUTH"; HTTP stays here.
//!
//! - [`OAuth2Settings`]: a provider's `oauth2:` block with the presets of `microsoft` and
//!   `google` resolved (always compiled, so configurations are checked in every build).
//! - `TokenSource` (feature `oauth2`): the access token, fetched with the refresh-token or
//!   client-credentials grant, refreshed ahead of expiry, shared by a provider's sessions;
//!   rotated refresh tokens kept in a `TokenCache` file (mode 0600).
//! - The first sign-in, behind `smtpkit auth login` (feature `oauth2`): `LoginFlow` picks
//!   `DeviceFlow` (RFC 8628) or `LoopbackFlow` (RFC 8252 with PKCE, RFC 7636); either gives
//!   the refresh token that `TokenCache::for_account` stores where `TokenSource` looks for it.

mod settings;
pub use settings::{
    Grant, IdentityProvider, OAuth2Input, OAuth2Settings, SettingsError, DEFAULT_TOKEN_CACHE,
};

#[cfg(feature = "oauth2")]
mod device_flow;
#[cfg(feature = "oauth2")]
mod login;
#[cfg(feature = "oauth2")]
mod loopback_flow;
#[cfg(feature = "oauth2")]
mod token_cache;
#[cfg(feature = "oauth2")]
mod token_endpoint;
#[cfg(feature = "oauth2")]
mod token_source;
#[cfg(feature = "oauth2")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
pub use device_flow::{DeviceAuthorization, DeviceFlow, DEVICE_CODE_GRANT};
#[cfg(feature = "oauth2")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
pub use login::LoginFlow;
#[cfg(feature = "oauth2")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
pub use loopback_flow::{LoopbackFlow, DEFAULT_BROWSER_TIMEOUT};
#[cfg(feature = "oauth2")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
pub use token_cache::TokenCache;
#[cfg(feature = "oauth2")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
pub use token_endpoint::{TokenEndpoint, TokenResponse};
#[cfg(feature = "oauth2")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
pub use token_source::{TokenFetches, TokenSource, TokenStatus};
