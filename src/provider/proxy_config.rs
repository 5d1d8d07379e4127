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
