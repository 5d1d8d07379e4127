//! `${VAR}` and `${VAR:-default}` in configuration values, from the environment.

/// Expands `${VAR}` and `${VAR:-default}` (the default also applies when VAR is empty, as in
/// the shell); `$$` is a literal `$`. `lookup` reads a variable. Errors name the variable.
pub(crate) fn expand(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(inner_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = inner_start.find('}') else {
            return Err(format!("unclosed `${{` in {value:?}"));
        };
        let inner = &inner_start[..close];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let name_ok = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !name_ok {
            return Err(format!("`${{{inner}}}` is not a valid variable reference (use ${{NAME}} or ${{NAME:-default}})"));
        }
        match (
            lookup(name).filter(|v| !v.is_empty() || default.is_none()),
            default,
        ) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (set it, or write ${{{name}:-default}})"
                ))
            }
        }
        rest = &inner_start[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SMTP_PASSWORD" => Some("pw".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion() {
        assert_eq!(expand("${SMTP_PASSWORD}", &env).as_deref(), Ok("pw"));
        assert_eq!(
            expand("a-${SMTP_PASSWORD}-b", &env).as_deref(),
            Ok("a-pw-b")
        );
        assert_eq!(expand("${MISSING:-587}", &env).as_deref(), Ok("587"));
        assert_eq!(expand("${EMPTY:-x}", &env).as_deref(), Ok("x"));
        assert_eq!(expand("${EMPTY}", &env).as_deref(), Ok(""));
        assert_eq!(
            expand("cost $5 and $$HOME", &env).as_deref(),
            Ok("cost $5 and $HOME")
        );
        assert_eq!(expand("no vars", &env).as_deref(), Ok("no vars"));
    }

    #[test]
    fn errors_name_the_variable() {
        let err = expand("${SMTP_USER}", &env).expect_err("missing");
        assert!(err.contains("SMTP_USER"), "{err}");
        assert!(expand("${unclosed", &env).is_err());
        assert!(expand("${1BAD}", &env).is_err());
        assert!(expand("${}", &env).is_err());
    }
}
