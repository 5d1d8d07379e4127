//! The text of each YAML scalar as written in the file.
//!
//! `serde_yaml::Value` types plain scalars as it reads them, so `1.10` becomes the number 1.1
//! and `0x1F` becomes 31; the text is gone. A key that takes text (a password, a user name)
//! must get `1.10`. So the document is read a second time with the shape of the `Value` as a
//! guide: at each scalar the deserializer is asked for a string, which yields the scalar's text
//! before YAML typed it (after YAML's own unquoting and line folding, as for any string).

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_yaml::Value;

/// The scalar texts of a document, in the shape of its `Value`.
#[derive(Debug)]
pub(crate) enum Literal {
    /// A scalar's text.
    Scalar(String),
    /// A list's items, in order.
    List(Vec<Literal>),
    /// A mapping's values, in the order of the `Value::Mapping` entries.
    Map(Vec<Literal>),
    /// A tagged value, whose text is not kept.
    Other,
}

impl Literal {
    /// The texts of `value`, read again from `text`, the document `value` was parsed from.
    /// `None` when the second reading does not match the first (then no text is known).
    pub(crate) fn read(text: &str, value: &Value) -> Option<Literal> {
        if value.is_null() {
            return None;
        }
        Shape(value)
            .deserialize(serde_yaml::Deserializer::from_str(text))
            .ok()
    }

    /// The text of a scalar.
    pub(crate) fn scalar(&self) -> Option<&str> {
        match self {
            Literal::Scalar(text) => Some(text),
            _ => None,
        }
    }

    /// The `i`th item of a list or value of a mapping.
    pub(crate) fn child(&self, i: usize) -> Option<&Literal> {
        match self {
            Literal::List(items) | Literal::Map(items) => items.get(i),
            _ => None,
        }
    }
}

/// Reads one node whose shape is that of the `Value`.
struct Shape<'v>(&'v Value);

impl<'de> DeserializeSeed<'de> for Shape<'_> {
    type Value = Literal;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Literal, D::Error> {
        match self.0 {
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                deserializer.deserialize_str(ScalarText)
            }
            Value::Sequence(items) => deserializer.deserialize_seq(ListShape(items)),
            Value::Mapping(map) => deserializer.deserialize_map(MapShape(map)),
            Value::Tagged(_) => deserializer
                .deserialize_ignored_any(IgnoredAny)
                .map(|_| Literal::Other),
        }
    }
}

struct ScalarText;

impl Visitor<'_> for ScalarText {
    type Value = Literal;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a scalar")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Literal, E> {
        Ok(Literal::Scalar(text.to_owned()))
    }
}

struct ListShape<'v>(&'v [Value]);

impl<'de> Visitor<'de> for ListShape<'_> {
    type Value = Literal;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a list of {} items", self.0.len())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Literal, A::Error> {
        let mut items = Vec::with_capacity(self.0.len());
        for value in self.0 {
            let item = seq
                .next_element_seed(Shape(value))?
                .ok_or_else(|| de::Error::invalid_length(items.len(), &self))?;
            items.push(item);
        }
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(self.0.len() + 1, &self));
        }
        Ok(Literal::List(items))
    }
}

struct MapShape<'v>(&'v serde_yaml::Mapping);

impl<'de> Visitor<'de> for MapShape<'_> {
    type Value = Literal;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a mapping of {} entries", self.0.len())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Literal, A::Error> {
        let mut values = Vec::with_capacity(self.0.len());
        for value in self.0.values() {
            if map.next_key::<IgnoredAny>()?.is_none() {
                return Err(de::Error::invalid_length(values.len(), &self));
            }
            values.push(map.next_value_seed(Shape(value))?);
        }
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(self.0.len() + 1, &self));
        }
        Ok(Literal::Map(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Value, Literal) {
        let value: Value = serde_yaml::from_str(text).expect("valid YAML");
        let literal = Literal::read(text, &value).expect("same shape");
        (value, literal)
    }

    #[test]
    fn scalars_keep_their_text_in_the_shape_of_the_value() {
        let (value, literal) =
            read("a: 1.10\nb: [0x1F, True, ~, 'q']\nc: {d: 1e3}\ne: !t x\nf: |\n  010\n");
        assert_eq!(value["a"], Value::from(1.1));
        assert_eq!(literal.child(0).and_then(Literal::scalar), Some("1.10"));
        let b = literal.child(1).expect("b");
        let texts: Vec<_> = (0..4)
            .map(|i| b.child(i).and_then(Literal::scalar))
            .collect();
        assert_eq!(texts, [Some("0x1F"), Some("True"), Some("~"), Some("q")]);
        let d = literal.child(2).and_then(|c| c.child(0));
        assert_eq!(d.and_then(Literal::scalar), Some("1e3"));
        assert!(matches!(literal.child(3), Some(Literal::Other)));
        assert_eq!(literal.child(4).and_then(Literal::scalar), Some("010\n"));
    }

    #[test]
    fn aliases_read_the_anchored_text() {
        let (_, literal) = read("a: &x 1.10\nb: *x\n");
        assert_eq!(literal.child(1).and_then(Literal::scalar), Some("1.10"));
    }

    #[test]
    fn a_document_of_another_shape_gives_nothing() {
        let value: Value = serde_yaml::from_str("[1, 2]").expect("valid");
        assert!(Literal::read("[1, 2, 3]", &value).is_none());
        assert!(Literal::read("{a: 1}", &value).is_none());
        assert!(Literal::read("", &Value::Null).is_none());
    }
}
