//! A YAML value with its path, so every error can say where it is.

use serde_yaml::Value;

use super::duration::parse_duration;
use super::env_expand::expand;
use super::error::{nearest, ConfigError};
use super::yaml_literal::Literal;

/// Reads environment variables for `${VAR}` expansion.
pub(crate) type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

#[derive(Clone, Copy)]
pub(crate) struct Node<'a, 'e> {
    value: &'a Value,
    /// The scalar texts as written, in the shape of `value`, when known.
    literal: Option<&'a Literal>,
    path: &'a str,
    env: Env<'e>,
}

/// A child node whose path string it owns.
pub(crate) struct Child<'a> {
    value: &'a Value,
    literal: Option<&'a Literal>,
    path: String,
}

impl<'a> Child<'a> {
    pub(crate) fn node<'s, 'e>(&'s self, env: Env<'e>) -> Node<'s, 'e>
    where
        'a: 's,
    {
        Node {
            value: self.value,
            literal: self.literal,
            path: &self.path,
            env,
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl<'a, 'e> Node<'a, 'e> {
    /// The document's root; `literal` holds its scalar texts as written (see [`Literal::read`]).
    pub(crate) fn root(
        value: &'a Value,
        literal: Option<&'a Literal>,
        env: Env<'e>,
    ) -> Node<'a, 'e> {
        Node {
            value,
            literal,
            path: "",
            env,
        }
    }

    pub(crate) fn path(&self) -> &str {
        self.path
    }

    pub(crate) fn env(&self) -> Env<'e> {
        self.env
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.path, message)
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        self.value.is_null()
    }

    /// The keys of a mapping, in file order; errors if this is not a mapping or a key is not a string.
    pub(crate) fn keys(&self) -> Result<Vec<&'a str>, ConfigError> {
        let Value::Mapping(map) = self.value else {
            return Err(self.error(format!(
                "expected a mapping of keys, found {}",
                kind(self.value)
            )));
        };
        map.keys()
            .map(|k| {
                k.as_str()
                    .ok_or_else(|| self.error(format!("keys must be strings, found {}", kind(k))))
            })
            .collect()
    }

    /// Fails on the first key not in `allowed`, suggesting the nearest valid one.
    pub(crate) fn check_keys(&self, allowed: &[&str]) -> Result<(), ConfigError> {
        for key in self.keys()? {
            if !allowed.contains(&key) {
                let path = self.child_path(key);
                let message = match nearest(key, allowed) {
                    Some(suggestion) => {
                        format!("unknown key `{key}`; did you mean `{suggestion}`?")
                    }
                    None => format!(
                        "unknown key `{key}`; valid keys here: {}",
                        allowed.join(", ")
                    ),
                };
                return Err(ConfigError::new(path, message));
            }
        }
        Ok(())
    }

    /// The child at `key`, null or not. As `Value::get`, looks through a tag (`!t {a: 1}`);
    /// the texts of a tagged value are not kept, so its numbers cannot be read as text.
    fn entry(&self, key: &str) -> Option<Child<'a>> {
        let mut value = self.value;
        while let Value::Tagged(tagged) = value {
            value = &tagged.value;
        }
        let Value::Mapping(map) = value else {
            return None;
        };
        let (i, (_, value)) = map
            .iter()
            .enumerate()
            .find(|(_, (k, _))| k.as_str() == Some(key))?;
        Some(Child {
            value,
            literal: self.literal.and_then(|l| l.child(i)),
            path: self.child_path(key),
        })
    }

    /// The child at `key`, if present and not null.
    pub(crate) fn get(&self, key: &str) -> Option<Child<'a>> {
        self.entry(key).filter(|c| !c.value.is_null())
    }

    /// The child at `key`, or an error naming it as required.
    pub(crate) fn require(&self, key: &str, what: &str) -> Result<Child<'a>, ConfigError> {
        match self.entry(key) {
            Some(child) if !child.value.is_null() => Ok(child),
            Some(child) => {
                let written = child.literal.and_then(Literal::scalar).unwrap_or("");
                let message = if written.trim().is_empty() {
                    format!("has no value ({what})")
                } else {
                    // Only `~`, `null`, `Null` or `NULL`, so it can be shown.
                    format!(
                        "has no value ({what}): YAML reads `{written}` as nothing; \
                         quote it (\"{written}\") if it is the text you mean"
                    )
                };
                Err(ConfigError::new(child.path, message))
            }
            None => Err(ConfigError::new(
                self.child_path(key),
                format!("missing required key ({what})"),
            )),
        }
    }

    /// Items of a list, each with its `[i]` path.
    pub(crate) fn items(&self) -> Result<Vec<Child<'a>>, ConfigError> {
        let Value::Sequence(items) = self.value else {
            return Err(self.error(format!("expected a list, found {}", kind(self.value))));
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, value)| Child {
                value,
                literal: self.literal.and_then(|l| l.child(i)),
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    /// A scalar as text with `${VAR}` expanded. A number or boolean is taken as the text it
    /// was written as (`1.10` stays `1.10`, `0x1F` stays `0x1F`, `True` stays `True`).
    ///
    /// Errors never quote the value, so this also serves for secrets such as `pass`.
    pub(crate) fn string(&self) -> Result<String, ConfigError> {
        let raw = match self.value {
            Value::String(s) => s.as_str(),
            Value::Number(_) | Value::Bool(_) => self.as_written()?,
            other => return Err(self.error(format!("expected text, found {}", kind(other)))),
        };
        expand(raw, self.env).map_err(|e| self.error(e.to_string()))
    }

    /// The text a plain scalar was written as. Fails, rather than guess, when it is not known.
    fn as_written(&self) -> Result<&'a str, ConfigError> {
        self.literal.and_then(Literal::scalar).ok_or_else(|| {
            self.error(format!(
                "this is read as {} and its text as written is not known; put the value in quotes",
                kind(self.value)
            ))
        })
    }

    /// A non-empty string.
    pub(crate) fn non_empty(&self, what: &str) -> Result<String, ConfigError> {
        let s = self.string()?;
        if s.trim().is_empty() {
            return Err(self.error(format!("{what} is empty")));
        }
        Ok(s)
    }

    /// A whole number in `range`, given as a YAML number (`587`, `0x24B`) or as text (after
    /// `${VAR}` expansion).
    pub(crate) fn number(&self, range: std::ops::RangeInclusive<u64>) -> Result<u64, ConfigError> {
        let not_whole = |text: &str| {
            self.error(format!(
                "expected a whole number from {} to {}, found {text:?}",
                range.start(),
                range.end()
            ))
        };
        let n = match self.value {
            Value::Number(n) => n.as_u64().ok_or_else(|| match self.as_written() {
                Ok(text) => not_whole(text),
                Err(_) => not_whole(&n.to_string()),
            })?,
            Value::String(_) => {
                let text = self.string()?;
                text.trim().parse().map_err(|_| not_whole(&text))?
            }
            other => return Err(self.error(format!("expected a number, found {}", kind(other)))),
        };
        if !range.contains(&n) {
            return Err(self.error(format!(
                "{n} is out of range: expected {} to {}",
                range.start(),
                range.end()
            )));
        }
        Ok(n)
    }

    /// `true`/`false`, also as text (after `${VAR}` expansion).
    pub(crate) fn boolean(&self) -> Result<bool, ConfigError> {
        if let Value::Bool(b) = self.value {
            return Ok(*b);
        }
        match self.string()?.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(true),
            "false" | "no" | "off" => Ok(false),
            other => Err(self.error(format!("expected true or false, found {other:?}"))),
        }
    }

    /// A duration such as `30s`.
    pub(crate) fn duration(&self) -> Result<std::time::Duration, ConfigError> {
        parse_duration(&self.string()?).map_err(|e| self.error(e))
    }

    /// One text or a list of texts.
    pub(crate) fn strings(&self) -> Result<Vec<String>, ConfigError> {
        match self.value {
            Value::Sequence(_) => self
                .items()?
                .iter()
                .map(|c| c.node(self.env).string())
                .collect(),
            _ => Ok(vec![self.string()?]),
        }
    }

    /// One of `choices` (case-insensitive), suggesting the nearest on a typo.
    pub(crate) fn choice<'c>(&self, choices: &[&'c str]) -> Result<&'c str, ConfigError> {
        let text = self.string()?.trim().to_ascii_lowercase();
        if let Some(found) = choices.iter().find(|c| **c == text) {
            return Ok(found);
        }
        Err(self.error(match nearest(&text, choices) {
            Some(s) => format!("unknown value {text:?}; did you mean `{s}`?"),
            None => format!(
                "unknown value {text:?}; expected one of: {}",
                choices.join(", ")
            ),
        }))
    }
}
