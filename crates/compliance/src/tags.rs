//! Tags on systems: `key=value` pairs such as `env=prod` or `pci=in-scope`.

use patchaudit_domain::{ErrorCode, FieldError};
use std::collections::BTreeMap;
use std::fmt;

/// One `key=value` tag.
///
/// A key is 1–64 characters of ASCII letters, digits and `_ . : / -`, so it
/// is safe in URLs, filters and NATS subjects. A value is 0–255 characters
/// with no control characters and no `,` (commas separate tags in filters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    key: String,
    value: String,
}

impl Tag {
    /// Parses `key=value`; `field` names the input in the error.
    pub fn parse(s: &str, field: &str) -> Result<Tag, FieldError> {
        let Some((key, value)) = s.split_once('=') else {
            return Err(FieldError::new(
                field,
                ErrorCode::Format,
                format!("tag {s:?} must have the form key=value, like env=prod"),
            ));
        };
        Tag::new(key, value, field)
    }

    /// Builds a tag from its parts, checking both.
    pub fn new(key: &str, value: &str, field: &str) -> Result<Tag, FieldError> {
        if key.is_empty() || key.len() > 64 {
            return Err(FieldError::new(
                field,
                if key.is_empty() {
                    ErrorCode::Empty
                } else {
                    ErrorCode::TooLong
                },
                format!("tag key {key:?} must be 1 to 64 characters"),
            ));
        }
        if let Some(c) = key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')))
        {
            return Err(FieldError::new(
                field,
                ErrorCode::Format,
                format!(
                    "tag key {key:?} contains {c:?}; keys use ASCII letters, digits and _ . : / -"
                ),
            ));
        }
        if value.chars().count() > 255 {
            return Err(FieldError::new(
                field,
                ErrorCode::TooLong,
                format!("the value of tag {key:?} is longer than 255 characters"),
            ));
        }
        if let Some(c) = value.chars().find(|c| c.is_control() || *c == ',') {
            return Err(FieldError::new(
                field,
                if c == ',' {
                    ErrorCode::Format
                } else {
                    ErrorCode::ControlCharacter
                },
                format!("the value of tag {key:?} must not contain {c:?}"),
            ));
        }
        Ok(Tag {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// The tags of one system: at most one value per key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(BTreeMap<String, String>);

impl Tags {
    /// At most this many tags per system, to keep scopes cheap to match.
    pub const MAX: usize = 64;

    /// Builds a tag set from `key=value` strings; a key given twice is an
    /// error rather than a silent overwrite.
    pub fn parse<'a>(
        items: impl IntoIterator<Item = &'a str>,
        field: &str,
    ) -> Result<Tags, FieldError> {
        let mut map = BTreeMap::new();
        for (i, s) in items.into_iter().enumerate() {
            let tag = Tag::parse(s, &format!("{field}[{i}]"))?;
            if map.insert(tag.key.clone(), tag.value).is_some() {
                return Err(FieldError::new(
                    format!("{field}[{i}]"),
                    ErrorCode::DuplicateField,
                    format!("tag key {:?} is given twice", tag.key),
                ));
            }
            if map.len() > Tags::MAX {
                return Err(FieldError::new(
                    field,
                    ErrorCode::TooLong,
                    format!("a system has at most {} tags", Tags::MAX),
                ));
            }
        }
        Ok(Tags(map))
    }

    /// Whether the system carries `tag`.
    pub fn has(&self, tag: &Tag) -> bool {
        self.0.get(&tag.key).is_some_and(|v| *v == tag.value)
    }

    /// Whether the system carries every tag of `scope`.
    pub fn has_all(&self, scope: &[Tag]) -> bool {
        scope.iter().all(|t| self.has(t))
    }

    /// The tags in key order.
    pub fn iter(&self) -> impl Iterator<Item = Tag> + '_ {
        self.0.iter().map(|(k, v)| Tag {
            key: k.clone(),
            value: v.clone(),
        })
    }

    /// The tags as `key=value` strings, in key order.
    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(|t| t.to_string()).collect()
    }

    /// Whether there is no tag.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_strings().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_value() {
        let t = Tag::parse("env=prod", "tag").unwrap();
        assert_eq!((t.key(), t.value()), ("env", "prod"));
        assert_eq!(t.to_string(), "env=prod");
        // An empty value is allowed: `pci=` marks a key without a value.
        assert_eq!(Tag::parse("pci=", "tag").unwrap().value(), "");
        // Only the first `=` splits.
        assert_eq!(Tag::parse("a=b=c", "tag").unwrap().value(), "b=c");
    }

    #[test]
    fn rejects_bad_tags_naming_the_field() {
        let e = Tag::parse("envprod", "tags[2]").unwrap_err();
        assert_eq!((e.field.as_str(), e.code), ("tags[2]", ErrorCode::Format));
        assert_eq!(Tag::parse("=x", "t").unwrap_err().code, ErrorCode::Empty);
        assert_eq!(
            Tag::parse(&format!("{}=x", "k".repeat(65)), "t")
                .unwrap_err()
                .code,
            ErrorCode::TooLong
        );
        assert_eq!(
            Tag::parse("a b=x", "t").unwrap_err().code,
            ErrorCode::Format
        );
        assert_eq!(
            Tag::parse("a=x\ny", "t").unwrap_err().code,
            ErrorCode::ControlCharacter
        );
        assert_eq!(
            Tag::parse("a=x,y", "t").unwrap_err().code,
            ErrorCode::Format
        );
        assert_eq!(
            Tag::parse(&format!("a={}", "v".repeat(256)), "t")
                .unwrap_err()
                .code,
            ErrorCode::TooLong
        );
    }

    #[test]
    fn tag_sets_refuse_a_key_twice_and_match_scopes() {
        let e = Tags::parse(["env=prod", "env=dev"], "tags").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.code),
            ("tags[1]", ErrorCode::DuplicateField)
        );
        let tags = Tags::parse(["env=prod", "pci=in-scope"], "tags").unwrap();
        assert!(tags.has(&Tag::parse("env=prod", "t").unwrap()));
        assert!(!tags.has(&Tag::parse("env=dev", "t").unwrap()));
        assert!(tags.has_all(&[
            Tag::parse("env=prod", "t").unwrap(),
            Tag::parse("pci=in-scope", "t").unwrap()
        ]));
        assert!(!tags.has_all(&[
            Tag::parse("env=prod", "t").unwrap(),
            Tag::parse("owner=x", "t").unwrap()
        ]));
        assert!(tags.has_all(&[]));
        assert_eq!(tags.to_string(), "env=prod,pci=in-scope");
        let many: Vec<String> = (0..65).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            Tags::parse(many.iter().map(|s| s.as_str()), "tags")
                .unwrap_err()
                .code,
            ErrorCode::TooLong
        );
    }
}
