//! The `proxy` extension key: a proxy URL, or `env` for the one the environment names.

use super::error::{nearest, ConfigError};
use super::yaml_node::Node;
use crate::client::Proxy;

/// What `proxy: env` says in errors about the environment's value.
const FROM_ENV: &str = "`proxy: env` reads ALL_PROXY, all_proxy, HTTPS_PROXY, https_proxy";

/// Reads `proxy`: `socks5://…`, `socks5h://…`, `http://…`, or `env` for the proxy the
/// environment names for `smtp_host` (`ALL_PROXY`, else `HTTPS_PROXY`, unless `NO_PROXY`
/// lists the host), read through the same lookup as `${VAR}`. `None`: connect directly.
/// Errors never show the password.
pub(crate) fn parse_proxy(
    node: Node<'_, '_>,
    smtp_host: &str,
) -> Result<Option<Proxy>, ConfigError> {
    let text = node.non_empty("proxy")?;
    let text = text.trim();
    if text == "env" {
        let env = node.env();
        return Proxy::from_env_with(smtp_host, &|name| env(name))
            .map_err(|e| node.error(format!("{e} ({FROM_ENV})")));
    }
    if !text.contains("://") && nearest(text, &["env"]).is_some() {
        return Err(node.error(format!("unknown value {text:?}: did you mean `env`?")));
    }
    Proxy::parse(text)
        .map(Some)
        .map_err(|e| node.error(format!("{e}")))
}

#[cfg(test)]
mod tests {
    use crate::provider::{Config, ConfigError};

    fn config_with(proxy_line: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let text = format!(
            "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: smtp.example.com\n      port: 587\n      user: u\n      pass: p\n      from: a@example.com\n{proxy_line}"
        );
        let lookup = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        Config::from_yaml_str_with_env(&text, &lookup)
    }

    fn proxy_of(proxy_line: &str, vars: &[(&str, &str)]) -> Option<String> {
        let config = config_with(proxy_line, vars).unwrap_or_else(|e| panic!("{e}"));
        let smtp = &config.provider(None).expect("provider").smtp;
        let options = smtp.client_options().expect("options");
        assert_eq!(options.proxy, smtp.proxy);
        smtp.proxy.as_ref().map(ToString::to_string)
    }

    fn error_of(proxy_line: &str, vars: &[(&str, &str)]) -> String {
        let err = config_with(proxy_line, vars).expect_err(proxy_line);
        assert_eq!(err.path(), "providers.email.config.proxy", "{err}");
        let shown = err.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        shown
    }

    #[test]
    fn a_url_or_the_environment_only_when_asked() {
        let env = [("ALL_PROXY", "socks5h://a:b@envproxy:1080")];
        assert_eq!(proxy_of("", &env), None, "never implicitly");
        assert_eq!(
            proxy_of("      proxy: http://alice:hunter2@proxy:3128\n", &env).as_deref(),
            Some("http://alice@proxy:3128")
        );
        assert_eq!(
            proxy_of(
                "      proxy: ${PROXY_URL}\n",
                &[("PROXY_URL", "http://p:8080")]
            )
            .as_deref(),
            Some("http://p:8080")
        );
        assert_eq!(
            proxy_of("      proxy: env\n", &env).as_deref(),
            Some("socks5h://a@envproxy:1080")
        );
        assert_eq!(
            proxy_of("      proxy: env\n", &[("https_proxy", "proxy:3128")]).as_deref(),
            Some("http://proxy:3128")
        );
        assert_eq!(proxy_of("      proxy: env\n", &[]), None);
        let excluded = [
            ("HTTPS_PROXY", "http://p:3128"),
            ("NO_PROXY", "localhost,.example.com"),
        ];
        assert_eq!(proxy_of("      proxy: env\n", &excluded), None);
    }

    #[test]
    fn errors_name_the_key_and_what_is_wrong_never_the_password() {
        for (line, wanted) in [
            (
                "      proxy: https://u:hunter2@p:3128\n",
                "https:// proxies",
            ),
            (
                "      proxy: ftp://u:hunter2@p:21\n",
                "unknown proxy scheme `ftp`",
            ),
            ("      proxy: http://u:hunter2@p\n", "no port"),
            ("      proxy: u:hunter2@p:3128\n", "not a proxy URL"),
            ("      proxy: envv\n", "did you mean `env`?"),
            ("      proxy: \"\"\n", "proxy is empty"),
            ("      proxy: [a]\n", "expected text"),
        ] {
            let shown = error_of(line, &[]);
            assert!(shown.contains(wanted), "{line}: {shown}");
        }
        let shown = error_of(
            "      proxy: env\n",
            &[("HTTPS_PROXY", "https://u:hunter2@p:3128")],
        );
        assert!(
            shown.contains("HTTPS_PROXY: https:// proxies") && shown.contains("`proxy: env` reads"),
            "{shown}"
        );
        let err = config_with("      prxy: env\n", &[]).expect_err("typo");
        assert!(err.to_string().contains("did you mean `proxy`?"), "{err}");
    }
}
