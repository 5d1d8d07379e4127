//! Configuration errors: where in the file, and what is wrong.

use std::fmt;

/// A configuration problem, naming the path of the offending key
/// (`providers.email.config.port`) and, for a typo, the nearest valid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: Option<String>,
    path: String,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn in_file(mut self, file: impl Into<String>) -> ConfigError {
        self.file = Some(file.into());
        self
    }

    /// The dotted path of the key, empty for the whole document.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Keys whose values are secrets: no configuration error may show their text.
const SECRET_KEYS: &[&str] = &["pass", "client_secret", "refresh_token"];

/// Whether `key` holds a secret (`pass`), whose value errors name but never show.
pub(crate) fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// The valid key closest to `unknown`, when it is close enough to be a typo.
pub(crate) fn nearest<'a>(unknown: &str, valid: &[&'a str]) -> Option<&'a str> {
    let unknown = unknown.to_ascii_lowercase();
    valid
        .iter()
        .map(|v| (strsim::damerau_levenshtein(&unknown, v), *v))
        .filter(|(distance, v)| *distance <= (v.len() / 3).max(1) + usize::from(v.len() > 6))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_for_typos_only() {
        let keys = ["host", "port", "user", "pass", "from", "tls_skip_verify"];
        assert_eq!(nearest("hots", &keys), Some("host"));
        assert_eq!(nearest("prot", &keys), Some("port"));
        assert_eq!(nearest("password", &keys), None);
        assert_eq!(nearest("tls_skip_verfy", &keys), Some("tls_skip_verify"));
        assert_eq!(nearest("zzzzzz", &keys), None);
    }
}
