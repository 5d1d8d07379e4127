//! What a provider's `oauth2:` block says, with the presets of Microsoft and Google resolved
//! into endpoints and scopes. No I/O: compiled without the `oauth2` feature too, so a
//! configuration is checked the same way whatever the build.

use std::path::PathBuf;

use crate::proto::Secret;

/// Who issues the tokens: a preset of endpoints and scopes, or `custom`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityProvider {
    /// Microsoft identity platform (Outlook.com, Microsoft 365), v2.0 endpoints of `tenant`
    /// (a tenant id or name, `common`, `organizations` or `consumers`).
    Microsoft {
        /// The tenant in the endpoint URLs.
        tenant: String,
    },
    /// Google (Gmail, Google Workspace).
    Google,
    /// Endpoints given in full (`token_url`, and for `smtpkit auth login` the
    /// `device_authorization_url` or `authorization_url`).
    Custom,
}

impl IdentityProvider {
    /// `microsoft`, `google` or `custom`.
    pub fn name(&self) -> &'static str {
        match self {
            IdentityProvider::Microsoft { .. } => "microsoft",
            IdentityProvider::Google => "google",
            IdentityProvider::Custom => "custom",
        }
    }

    fn token_url(&self) -> Option<String> {
        match self {
            IdentityProvider::Microsoft { tenant } => Some(format!(
                "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
            )),
            IdentityProvider::Google => Some("https://oauth2.googleapis.com/token".into()),
            IdentityProvider::Custom => None,
        }
    }

    fn device_authorization_url(&self) -> Option<String> {
        match self {
            IdentityProvider::Microsoft { tenant } => Some(format!(
                "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode"
            )),
            _ => None,
        }
    }

    fn authorization_url(&self) -> Option<String> {
        match self {
            IdentityProvider::Microsoft { tenant } => Some(format!(
                "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"
            )),
            IdentityProvider::Google => Some("https://accounts.google.com/o/oauth2/v2/auth".into()),
            IdentityProvider::Custom => None,
        }
    }

    /// The scope a preset asks for with `grant`.
    fn default_scope(&self, grant: Grant) -> Option<&'static str> {
        match (self, grant) {
            // Delegated: the mailbox's own SMTP.Send permission, and a refresh token.
            (IdentityProvider::Microsoft { .. }, Grant::RefreshToken) => {
                Some("https://outlook.office.com/SMTP.Send offline_access")
            }
            // App-only (SMTP.SendAsApp): the resource's `.default` scope.
            (IdentityProvider::Microsoft { .. }, Grant::ClientCredentials) => {
                Some("https://outlook.office365.com/.default")
            }
            (IdentityProvider::Google, _) => Some("https://mail.google.com/"),
            (IdentityProvider::Custom, _) => None,
        }
    }
}

/// How the access tokens are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Grant {
    /// RFC 6749 §6: a refresh token (from `smtpkit auth login`, the config, or the token
    /// cache) is exchanged for access tokens. The default.
    RefreshToken,
    /// RFC 6749 §4.4: the application's own credentials (Microsoft 365 app-only sending,
    /// `SMTP.SendAsApp`); no refresh token, no user sign-in.
    ClientCredentials,
}

impl Grant {
    /// `refresh_token` or `client_credentials`, as in the configuration and the token request.
    pub fn name(self) -> &'static str {
        match self {
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
        }
    }
}

/// A provider's `oauth2:` block, presets resolved.
///
/// `Debug` shows neither the client secret nor the refresh token.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth2Settings {
    /// `provider` (and `tenant`).
    pub provider: IdentityProvider,
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`; `None` for a public client.
    pub client_secret: Option<Secret>,
    /// `refresh_token`, when the configuration carries one (the token cache may hold a newer
    /// one).
    pub refresh_token: Option<Secret>,
    /// `grant`.
    pub grant: Grant,
    /// `token_url`, or the preset's.
    pub token_url: String,
    /// `device_authorization_url` (RFC 8628), or the preset's: for `smtpkit auth login`.
    pub device_authorization_url: Option<String>,
    /// `authorization_url` (RFC 6749 §3.1), or the preset's: for `smtpkit auth login`.
    pub authorization_url: Option<String>,
    /// `scope`, or the preset's for the grant (space-separated).
    pub scope: Option<String>,
    /// `token_cache`: the file that keeps rotated refresh tokens (mode 0600).
    pub token_cache: PathBuf,
}

impl std::fmt::Debug for OAuth2Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Settings")
            .field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("grant", &self.grant)
            .field("token_url", &self.token_url)
            .field("scope", &self.scope)
            .field("token_cache", &self.token_cache)
            .finish_non_exhaustive()
    }
}

/// The token cache's file name when `token_cache` is not given: next to the configuration
/// file that names the provider.
pub const DEFAULT_TOKEN_CACHE: &str = "smtpkit-tokens.json";

/// What the configuration gave, before presets are applied.
#[derive(Debug, Clone, Default)]
pub struct OAuth2Input {
    /// `provider`: `microsoft`, `google` or `custom`.
    pub provider: String,
    /// `tenant`.
    pub tenant: Option<String>,
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: Option<Secret>,
    /// `refresh_token`.
    pub refresh_token: Option<Secret>,
    /// `grant`.
    pub grant: Option<String>,
    /// `token_url`.
    pub token_url: Option<String>,
    /// `device_authorization_url`.
    pub device_authorization_url: Option<String>,
    /// `authorization_url`.
    pub authorization_url: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `token_cache`.
    pub token_cache: Option<PathBuf>,
}

/// A mistake in an `oauth2:` block: the key it is about and what is wrong (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// The key under `oauth2:`.
    pub key: &'static str,
    /// What is wrong, and the fix.
    pub message: String,
}

fn error(key: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        key,
        message: message.into(),
    }
}

impl OAuth2Settings {
    /// Applies the preset of `input.provider` and checks the combination: a tenant only for
    /// Microsoft (and a real one for app-only sending), a client secret for
    /// `client_credentials`, endpoints for `custom`, every endpoint `https` unless on a
    /// loopback address.
    pub fn resolve(input: OAuth2Input) -> Result<OAuth2Settings, SettingsError> {
        let provider = match input.provider.as_str() {
            "microsoft" => IdentityProvider::Microsoft {
                tenant: input.tenant.clone().unwrap_or_else(|| "common".into()),
            },
            "google" => IdentityProvider::Google,
            "custom" => IdentityProvider::Custom,
            other => {
                return Err(error(
                    "provider",
                    format!("unknown provider `{other}`: use microsoft, google or custom"),
                ))
            }
        };
        if input.tenant.is_some() && !matches!(provider, IdentityProvider::Microsoft { .. }) {
            return Err(error("tenant", "only for `provider: microsoft`"));
        }
        if let IdentityProvider::Microsoft { tenant } = &provider {
            if tenant.is_empty() || tenant.contains(['/', '?', '#', ' ']) {
                return Err(error(
                    "tenant",
                    "a tenant id or name (contoso.onmicrosoft.com), `common`, `organizations` or `consumers`",
                ));
            }
        }
        if input.client_id.trim().is_empty() {
            return Err(error(
                "client_id",
                "the application (client) id registered with the identity provider",
            ));
        }
        let grant = match input.grant.as_deref() {
            None | Some("refresh_token") => Grant::RefreshToken,
            Some("client_credentials") => Grant::ClientCredentials,
            Some(other) => {
                return Err(error(
                    "grant",
                    format!("unknown grant `{other}`: use refresh_token or client_credentials"),
                ))
            }
        };
        if grant == Grant::ClientCredentials {
            if input.client_secret.is_none() {
                return Err(error(
                    "client_secret",
                    "required with `grant: client_credentials` (the application's secret)",
                ));
            }
            if input.refresh_token.is_some() {
                return Err(error(
                    "refresh_token",
                    "not used with `grant: client_credentials`: remove it, or remove `grant`",
                ));
            }
            match &provider {
                IdentityProvider::Microsoft { tenant }
                    if matches!(tenant.as_str(), "common" | "organizations" | "consumers") =>
                {
                    return Err(error(
                        "tenant",
                        format!(
                            "app-only sending needs your organization's tenant (id or name), not `{tenant}`"
                        ),
                    ))
                }
                IdentityProvider::Google => {
                    return Err(error(
                        "grant",
                        "Google has no client_credentials grant for Gmail: use a refresh token (`smtpkit auth login`)",
                    ))
                }
                _ => {}
            }
        }
        let token_url = match input.token_url.or_else(|| provider.token_url()) {
            Some(url) => url,
            None => {
                return Err(error(
                    "token_url",
                    "required with `provider: custom`: the token endpoint's https URL",
                ))
            }
        };
        check_endpoint("token_url", &token_url)?;
        let device_authorization_url = input
            .device_authorization_url
            .or_else(|| provider.device_authorization_url());
        if let Some(url) = &device_authorization_url {
            check_endpoint("device_authorization_url", url)?;
        }
        let authorization_url = input
            .authorization_url
            .or_else(|| provider.authorization_url());
        if let Some(url) = &authorization_url {
            check_endpoint("authorization_url", url)?;
        }
        let scope = input
            .scope
            .or_else(|| provider.default_scope(grant).map(str::to_owned));
        Ok(OAuth2Settings {
            provider,
            client_id: input.client_id,
            client_secret: input.client_secret,
            refresh_token: input.refresh_token,
            grant,
            token_url,
            device_authorization_url,
            authorization_url,
            scope,
            token_cache: input
                .token_cache
                .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_CACHE)),
        })
    }
}

/// Tokens and secrets travel to these URLs: `https` only, except to a loopback address
/// (tests, an identity server on the same machine).
fn check_endpoint(key: &'static str, url: &str) -> Result<(), SettingsError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(error(key, format!("{url:?} is not a URL (https://…)")));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() {
        return Err(error(key, format!("{url:?} has no host")));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_loopback(host_port) => Ok(()),
        "http" => Err(error(
            key,
            format!("{url:?} must use https (plain http only to a loopback address)"),
        )),
        other => Err(error(
            key,
            format!("{url:?}: the scheme must be https, not {other}"),
        )),
    }
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
pub(crate) fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host_port
            .rsplit_once(':')
            .map_or(host_port, |(host, _)| host)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(provider: &str) -> OAuth2Input {
        OAuth2Input {
            provider: provider.into(),
            client_id: "id".into(),
            ..OAuth2Input::default()
        }
    }

    #[test]
    fn presets_fill_endpoints_and_scopes() {
        let mut ms = input("microsoft");
        ms.tenant = Some("contoso.onmicrosoft.com".into());
        let s = OAuth2Settings::resolve(ms.clone()).expect("microsoft");
        assert_eq!(
            s.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            s.scope.as_deref(),
            Some("https://outlook.office.com/SMTP.Send offline_access")
        );
        ms.grant = Some("client_credentials".into());
        ms.client_secret = Some(Secret::new("s"));
        let s = OAuth2Settings::resolve(ms).expect("app-only");
        assert_eq!(
            s.scope.as_deref(),
            Some("https://outlook.office365.com/.default")
        );
        let g = OAuth2Settings::resolve(input("google")).expect("google");
        assert_eq!(g.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(g.scope.as_deref(), Some("https://mail.google.com/"));
        assert!(g.device_authorization_url.is_none());
    }

    #[test]
    fn wrong_combinations_name_the_key() {
        let e = OAuth2Settings::resolve(input("custom")).expect_err("custom needs a URL");
        assert_eq!(e.key, "token_url");
        let mut cc = input("microsoft");
        cc.grant = Some("client_credentials".into());
        cc.client_secret = Some(Secret::new("s"));
        assert_eq!(
            OAuth2Settings::resolve(cc).expect_err("common").key,
            "tenant"
        );
        let mut g = input("google");
        g.tenant = Some("x".into());
        assert_eq!(
            OAuth2Settings::resolve(g).expect_err("tenant").key,
            "tenant"
        );
        let mut nosecret = input("microsoft");
        nosecret.tenant = Some("t".into());
        nosecret.grant = Some("client_credentials".into());
        assert_eq!(
            OAuth2Settings::resolve(nosecret).expect_err("secret").key,
            "client_secret"
        );
    }

    #[test]
    fn endpoints_are_https_except_on_loopback() {
        for ok in [
            "https://id.example.com/token",
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
            "http://[::1]:9/token",
        ] {
            assert!(check_endpoint("token_url", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://id.example.com/token",
            "ftp://127.0.0.1/token",
            "id.example.com/token",
            "http://127.0.0.1.example.com/token",
            "https:///token",
        ] {
            assert!(check_endpoint("token_url", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_secrets() {
        let mut i = input("google");
        i.client_secret = Some(Secret::new("client-secret-value"));
        i.refresh_token = Some(Secret::new("refresh-token-value"));
        let shown = format!("{:?}", OAuth2Settings::resolve(i).expect("google"));
        assert!(!shown.contains("client-secret-value") && !shown.contains("refresh-token-value"));
    }
}
