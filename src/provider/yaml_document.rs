//! YAML text into a `serde_yaml::Value`, as `serde_yaml::from_str` does, with two differences
//! for configuration files:
//!
//! - an integer too wide for 64 bits (`pass: 12345678901234567890123`) is read as a number
//!   instead of failing the whole file; keys that take text use its text as written anyway
//!   (see `yaml_literal`), and numeric keys reject it as out of range;
//! - an error inside the value of a secret key (`pass`) never quotes that value: YAML's own
//!   messages can (`invalid value: string "…", expected an integer` for `!!int …`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess};
use serde::de::{VariantAccess, Visitor};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};

use super::error::is_secret_key;

/// Parses one YAML document.
pub(crate) fn parse(text: &str) -> Result<Value, serde_yaml::Error> {
    Node { secret: None }.deserialize(serde_yaml::Deserializer::from_str(text))
}

/// One node; `secret` names the secret key it is the value of, if any.
struct Node<'k> {
    secret: Option<&'k str>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        let value = deserializer.deserialize_any(ValueVisitor);
        match self.secret {
            Some(key) => value.map_err(|_| {
                de::Error::custom(format_args!(
                    "the value of `{key}` cannot be read (not shown, as it is a secret; \
                     write it as a quoted string)"
                ))
            }),
            None => value,
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Number(u.into()))
    }

    // Wider than 64 bits: kept as the nearest float, which no numeric key accepts.
    fn visit_i128<E: de::Error>(self, i: i128) -> Result<Value, E> {
        Ok(Value::Number((i as f64).into()))
    }

    fn visit_u128<E: de::Error>(self, u: u128) -> Result<Value, E> {
        Ok(Value::Number((u as f64).into()))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Number(f.into()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Node { secret: None }.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Node { secret: None })? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some(key) = map.next_key_seed(Node { secret: None })? {
            if mapping.contains_key(&key) {
                return Err(de::Error::custom(match key.as_str() {
                    Some(key) => format!("duplicate key `{key}`"),
                    None => "duplicate key".to_owned(),
                }));
            }
            let secret = key.as_str().filter(|k| is_secret_key(k));
            let value = map.next_value_seed(Node { secret })?;
            mapping.insert(key, value);
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, contents) = data.variant::<String>()?;
        if tag.is_empty() {
            return Err(de::Error::custom("empty YAML tag is not allowed"));
        }
        let value = contents.newtype_variant_seed(Node { secret: None })?;
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_yaml_reads() {
        let text =
            "a: 1\nb: [1.5, -2, true, ~, text]\nc: {d: !t x, e: !!str 0x1F}\nf: &x 3\ng: *x\n";
        let expected: Value = serde_yaml::from_str(text).expect("valid");
        assert_eq!(parse(text).expect("valid"), expected);
    }

    #[test]
    fn wide_integers_are_numbers() {
        let value = parse("a: 12345678901234567890123\nb: -12345678901234567890123\n");
        let value = value.expect("wide integers");
        assert!(value["a"].is_f64() && value["b"].is_f64(), "{value:?}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = parse("a: 1\na: 2\n").expect_err("duplicate");
        assert!(e.to_string().starts_with("duplicate key `a`"), "{e}");
    }

    #[test]
    fn errors_in_a_secret_do_not_quote_it() {
        for text in [
            "pass: !!int s3cr3t\n",
            "x:\n  pass: !!bool s3cr3t\n",
            "pass: [!!float s3cr3t]\n",
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(!e.contains("s3cr3t") && e.contains("`pass`"), "{e}");
        }
        let e = parse("user: !!int n0ts3cret\n").expect_err("not a secret");
        assert!(e.to_string().contains("n0ts3cret"), "{e}");
    }
}
