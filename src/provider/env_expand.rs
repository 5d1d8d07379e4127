//! `${VAR}` and `${VAR:-default}` in configuration values, from the environment.
//!
//! - `${VAR}` is the value of VAR; an unset VAR is an error.
//! - `${VAR:-default}` is the value of VAR, or `default` when VAR is unset or empty (as in the
//!   shell). The default may itself hold `${…}`, nested up to [`MAX_DEPTH`] deep; it is only
//!   read for variables when it is used. Inside a default, `{`…`}` pairs are kept whole, so
//!   `${X:-{a}}` defaults to `{a}`.
//! - Before a `{`, `$$` stands for one `$`: `$${` is a literal `${`, and `$$${VAR}` is a `$`
//!   followed by the value of VAR. Every other `$` is kept as it is: `pa$$word` stays
//!   `pa$$word`, and a value without `${` is never changed.
//! - The value of a variable is used as it is, never expanded again.
//!
//! Errors name the variable, never the text around it, which may be a password.

use std::fmt;

/// How deep `${A:-${B:-…}}` defaults may nest.
pub(crate) const MAX_DEPTH: usize = 8;

/// What is wrong with a value's `${…}`. Shows variable names only, never the value's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// `${NAME}` with NAME unset and no default.
    Unset(String),
    /// A `${` without its `}`.
    Unclosed,
    /// `${` not followed by a variable name and then `}` or `:-`.
    NotAReference,
    /// Defaults nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unset(name) => write!(
                f,
                "environment variable {name} is not set (set it, or write ${{{name}:-default}})"
            ),
            ExpandError::Unclosed => {
                f.write_str("a `${` has no closing `}` (write `$${` for a literal `${`)")
            }
            ExpandError::NotAReference => f.write_str(
                "`${` must be followed by a variable name (letters, digits, `_`; not starting \
                 with a digit) and then `}` or `:-default}` (write `$${` for a literal `${`)",
            ),
            ExpandError::TooDeep => write!(
                f,
                "`${{VAR:-default}}` defaults are nested more than {MAX_DEPTH} deep"
            ),
        }
    }
}

/// Expands `value` as described in the module documentation; `lookup` reads a variable.
pub(crate) fn expand(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    if !value.contains("${") {
        return Ok(value.to_owned());
    }
    let mut expander = Expander {
        text: value,
        pos: 0,
        lookup,
    };
    let mut out = String::with_capacity(value.len());
    expander.text_until(&mut out, true, 0, false)?;
    Ok(out)
}

struct Expander<'t, 'l> {
    text: &'t str,
    pos: usize,
    lookup: &'l dyn Fn(&str) -> Option<String>,
}

impl Expander<'_, '_> {
    /// Copies text to `out`, expanding references, up to the end or, `in_default`, up to the
    /// `}` that closes the default (consumed). With `eval` false, only checks the syntax.
    fn text_until(
        &mut self,
        out: &mut String,
        eval: bool,
        depth: usize,
        in_default: bool,
    ) -> Result<(), ExpandError> {
        let special: &[char] = if in_default { &['$', '{', '}'] } else { &['$'] };
        // `{` opened inside a default, whose `}` is text rather than the default's end.
        let mut open_braces = 0usize;
        loop {
            let rest = &self.text[self.pos..];
            let Some(at) = rest.find(special) else {
                if in_default {
                    return Err(ExpandError::Unclosed);
                }
                out.push_str(rest);
                self.pos = self.text.len();
                return Ok(());
            };
            out.push_str(&rest[..at]);
            let rest = &rest[at..];
            if rest.starts_with('{') {
                out.push('{');
                open_braces += 1;
                self.pos += at + 1;
            } else if rest.starts_with('}') {
                self.pos += at + 1;
                if open_braces == 0 {
                    return Ok(());
                }
                out.push('}');
                open_braces -= 1;
            } else {
                let run = rest.len() - rest.trim_start_matches('$').len();
                self.pos += at + run;
                if !rest[run..].starts_with('{') {
                    out.push_str(&rest[..run]);
                    continue;
                }
                // `$$` before `{` is one `$`; an odd `$` left over starts a reference.
                out.push_str(&rest[..run / 2]);
                self.pos += 1;
                if run % 2 == 1 {
                    self.reference(out, eval, depth)?;
                } else {
                    out.push('{');
                    open_braces += 1;
                }
            }
        }
    }

    /// Reads `NAME}` or `NAME:-default}` after a `${`.
    fn reference(&mut self, out: &mut String, eval: bool, depth: usize) -> Result<(), ExpandError> {
        let rest = &self.text[self.pos..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        let after = &rest[name_len..];
        if after.is_empty() {
            return Err(ExpandError::Unclosed);
        }
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(ExpandError::NotAReference);
        }
        let value = if eval { (self.lookup)(name) } else { None };
        if after.starts_with('}') {
            self.pos += name_len + 1;
            if eval {
                out.push_str(&value.ok_or_else(|| ExpandError::Unset(name.to_owned()))?);
            }
            return Ok(());
        }
        if !after.starts_with(":-") {
            return Err(ExpandError::NotAReference);
        }
        if depth >= MAX_DEPTH {
            return Err(ExpandError::TooDeep);
        }
        self.pos += name_len + 2;
        let value = value.filter(|v| !v.is_empty());
        let mut default = String::new();
        self.text_until(&mut default, eval && value.is_none(), depth + 1, true)?;
        if eval {
            out.push_str(value.as_deref().unwrap_or(&default));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SMTP_PASSWORD" => Some("pw".into()),
            "EMPTY" => Some(String::new()),
            "TRICKY" => Some("${SMTP_PASSWORD}$${".into()),
            _ => None,
        }
    }

    fn ok(value: &str) -> String {
        expand(value, &env).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    #[test]
    fn expansion() {
        assert_eq!(ok("${SMTP_PASSWORD}"), "pw");
        assert_eq!(ok("a-${SMTP_PASSWORD}-b"), "a-pw-b");
        assert_eq!(ok("${MISSING:-587}"), "587");
        assert_eq!(ok("${EMPTY:-x}"), "x");
        assert_eq!(ok("${EMPTY}"), "");
        assert_eq!(ok("${MISSING:-}"), "");
        assert_eq!(ok("no vars"), "no vars");
        assert_eq!(
            ok("${TRICKY}"),
            "${SMTP_PASSWORD}$${",
            "values are not re-read"
        );
    }

    #[test]
    fn dollars_are_kept_unless_before_a_brace() {
        assert_eq!(ok("cost $5 and $$HOME"), "cost $5 and $$HOME");
        assert_eq!(ok("pa$$word"), "pa$$word");
        assert_eq!(ok("$$$"), "$$$");
        assert_eq!(ok("}{$}"), "}{$}");
        assert_eq!(ok("$${X}"), "${X}");
        assert_eq!(ok("$$${SMTP_PASSWORD}"), "$pw");
        assert_eq!(ok("$$$${X}"), "$${X}");
        assert_eq!(ok("$$$$${SMTP_PASSWORD}"), "$$pw");
        assert_eq!(ok("a$$b${SMTP_PASSWORD}"), "a$$bpw");
    }

    #[test]
    fn nested_defaults() {
        assert_eq!(ok("${A:-${SMTP_PASSWORD}}"), "pw");
        assert_eq!(ok("${A:-${B:-deep}}"), "deep");
        assert_eq!(ok("${SMTP_PASSWORD:-${UNSET}}"), "pw");
        assert_eq!(ok("${A:-x${SMTP_PASSWORD}y}z"), "xpwyz");
        assert_eq!(ok("${A:-{a}}"), "{a}");
        assert_eq!(ok("${A:-$${B}}"), "${B}");
        assert_eq!(ok("${SMTP_PASSWORD:-$${B}}"), "pw");
        assert_eq!(ok("${A:-a}}"), "a}");
        let deepest = format!("{}x{}", "${A:-".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert_eq!(ok(&deepest), "x");
        let deeper = format!(
            "{}x{}",
            "${A:-".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(expand(&deeper, &env), Err(ExpandError::TooDeep));
    }

    /// Writes `text` so that it expands to itself: each `$` of a run before `{` doubled.
    fn escaped(text: &str) -> String {
        let mut out = String::new();
        let mut run = 0;
        for c in text.chars() {
            if c == '$' {
                run += 1;
                continue;
            }
            let dollars = if c == '{' { 2 * run } else { run };
            out.extend(std::iter::repeat_n('$', dollars));
            out.push(c);
            run = 0;
        }
        out.extend(std::iter::repeat_n('$', run));
        out
    }

    proptest::proptest! {
        #[test]
        fn any_text_can_be_written_literally(text in "[$a{}:-]{0,24}") {
            proptest::prop_assert_eq!(expand(&escaped(&text), &env), Ok(text));
        }

        #[test]
        fn text_without_a_reference_is_untouched(text in "[$a{}]{0,24}") {
            proptest::prop_assume!(!text.contains("${"));
            proptest::prop_assert_eq!(expand(&text, &env), Ok(text));
        }

        #[test]
        fn any_value_expands_or_errors_without_panicking(text in "[$A{}:-]{0,32}") {
            let _ = expand(&text, &env);
        }
    }

    #[test]
    fn errors_name_the_variable_only() {
        assert_eq!(
            expand("${SMTP_USER}", &env),
            Err(ExpandError::Unset("SMTP_USER".into()))
        );
        assert_eq!(
            expand("${A:-${SMTP_USER}}", &env),
            Err(ExpandError::Unset("SMTP_USER".into()))
        );
        assert_eq!(
            expand("${SMTP_PASSWORD:-${bad name}}", &env),
            Err(ExpandError::NotAReference),
            "an unused default is still checked"
        );
        for unclosed in [
            "${unclosed",
            "${A:-x",
            "${A:-{x}",
            "${A:-${SMTP_PASSWORD}",
            "x${",
        ] {
            assert_eq!(
                expand(unclosed, &env),
                Err(ExpandError::Unclosed),
                "{unclosed}"
            );
        }
        for bad in ["${1BAD}", "${}", "${A B}", "${A-x}", "${A:?x}", "${A:x}"] {
            assert_eq!(expand(bad, &env), Err(ExpandError::NotAReference), "{bad}");
        }
        let shown = ExpandError::Unset("X".into()).to_string();
        assert!(
            shown.starts_with("environment variable X is not set"),
            "{shown}"
        );
    }
}
