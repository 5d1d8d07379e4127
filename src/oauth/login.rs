//! The first sign-in (`smtpkit auth login`): which flow a provider's settings call for, and
//! how the identity provider's refusals read during a sign-in.

use super::settings::{IdentityProvider, OAuth2Settings, SettingsError};
use super::token_endpoint::{refused, OAuthError};
use crate::error::{Error, ErrorKind, Stage};

/// How the user signs in to obtain the first refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginFlow {
    /// The device authorization grant (RFC 8628, [`super::DeviceFlow`]): a code typed on a
    /// verification page, in any browser on any device.
    Device,
    /// The authorization code grant through a browser on this machine, back to a loopback
    /// redirect, with PKCE (RFC 8252 §7.3, RFC 7636, [`super::LoopbackFlow`]).
    Browser,
}

impl LoginFlow {
    /// `device` or `browser`, as the `--flow` option spells them.
    pub fn name(self) -> &'static str {
        match self {
            LoginFlow::Device => "device",
            LoginFlow::Browser => "browser",
        }
    }

    /// The flow for `settings`, or `requested` when given and possible.
    ///
    /// Microsoft: the device flow (its preset has the endpoint). Google: the browser flow
    /// (Google's device flow does not grant the Gmail scope). `custom`: the device flow when
    /// `device_authorization_url` is set, else the browser flow when `authorization_url`
    /// is. The error names the missing key.
    ///
    /// ```
    /// use smtpkit::oauth::{LoginFlow, OAuth2Input, OAuth2Settings};
    ///
    /// let settings = OAuth2Settings::resolve(OAuth2Input {
    ///     provider: "microsoft".into(),
    ///     client_id: "00000000-0000-0000-0000-000000000000".into(),
    ///     ..OAuth2Input::default()
    /// })
    /// .expect("valid");
    /// assert_eq!(LoginFlow::choose(&settings, None), Ok(LoginFlow::Device));
    /// assert_eq!(
    ///     LoginFlow::choose(&settings, Some(LoginFlow::Browser)),
    ///     Ok(LoginFlow::Browser)
    /// );
    /// ```
    pub fn choose(
        settings: &OAuth2Settings,
        requested: Option<LoginFlow>,
    ) -> Result<LoginFlow, SettingsError> {
        let device = settings.device_authorization_url.is_some();
        let browser = settings.authorization_url.is_some();
        let missing = |key: &'static str, what: &str| SettingsError {
            key,
            message: format!("{what}: set `{key}` in the `oauth2` block"),
        };
        match requested {
            Some(LoginFlow::Device) if device => Ok(LoginFlow::Device),
            Some(LoginFlow::Device) => Err(missing(
                "device_authorization_url",
                "--flow device needs the device authorization endpoint",
            )),
            Some(LoginFlow::Browser) if browser => Ok(LoginFlow::Browser),
            Some(LoginFlow::Browser) => Err(missing(
                "authorization_url",
                "--flow browser needs the authorization endpoint",
            )),
            None => match &settings.provider {
                IdentityProvider::Google if browser => Ok(LoginFlow::Browser),
                _ if device => Ok(LoginFlow::Device),
                _ if browser => Ok(LoginFlow::Browser),
                _ => Err(SettingsError {
                    key: "device_authorization_url",
                    message: "`smtpkit auth login` needs `device_authorization_url` (device flow, \
                              RFC 8628) or `authorization_url` (browser flow with PKCE) in the \
                              `oauth2` block"
                        .into(),
                }),
            },
        }
    }
}

/// A refusal from the token endpoint during a sign-in. `invalid_grant` here is about the
/// device or authorization code, not a refresh token.
pub(crate) fn login_refused(err: &OAuthError) -> Error {
    if err.code != "invalid_grant" {
        return refused(err);
    }
    let mut message =
        String::from("the identity provider did not accept the sign-in's code (invalid_grant");
    if let Some(d) = &err.description {
        message.push_str(": ");
        message.push_str(d);
    }
    message.push_str("); run `smtpkit auth login` again");
    Error::new(ErrorKind::Auth, Stage::Token, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::OAuth2Input;

    fn settings(provider: &str, device: Option<&str>, browser: Option<&str>) -> OAuth2Settings {
        OAuth2Settings::resolve(OAuth2Input {
            provider: provider.into(),
            client_id: "id".into(),
            token_url: (provider == "custom").then(|| "https://id.example.com/token".into()),
            device_authorization_url: device.map(str::to_owned),
            authorization_url: browser.map(str::to_owned),
            ..OAuth2Input::default()
        })
        .expect("valid")
    }

    #[test]
    fn presets_and_custom_endpoints_choose_the_flow() {
        assert_eq!(
            LoginFlow::choose(&settings("microsoft", None, None), None),
            Ok(LoginFlow::Device)
        );
        assert_eq!(
            LoginFlow::choose(&settings("google", None, None), None),
            Ok(LoginFlow::Browser)
        );
        let both = settings(
            "custom",
            Some("https://id.example.com/device"),
            Some("https://id.example.com/authorize"),
        );
        assert_eq!(LoginFlow::choose(&both, None), Ok(LoginFlow::Device));
        assert_eq!(
            LoginFlow::choose(&both, Some(LoginFlow::Browser)),
            Ok(LoginFlow::Browser)
        );
        let browser_only = settings("custom", None, Some("https://id.example.com/authorize"));
        assert_eq!(
            LoginFlow::choose(&browser_only, None),
            Ok(LoginFlow::Browser)
        );
        let e = LoginFlow::choose(&browser_only, Some(LoginFlow::Device)).expect_err("no device");
        assert_eq!(e.key, "device_authorization_url");
        let e = LoginFlow::choose(&settings("google", None, None), Some(LoginFlow::Device))
            .expect_err("google has no device preset");
        assert_eq!(e.key, "device_authorization_url");
    }

    #[test]
    fn custom_without_endpoints_names_both_keys() {
        let e = LoginFlow::choose(&settings("custom", None, None), None).expect_err("none");
        assert!(
            e.message.contains("device_authorization_url")
                && e.message.contains("authorization_url"),
            "{e:?}"
        );
    }

    #[test]
    fn invalid_grant_during_login_is_about_the_code() {
        let e = login_refused(&OAuthError {
            code: "invalid_grant".into(),
            description: Some("code expired".into()),
        });
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(!e.to_string().contains("refresh token"), "{e}");
        assert!(e.to_string().contains("invalid_grant: code expired"), "{e}");
    }
}
