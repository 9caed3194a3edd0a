//! The JSON field helpers every dialect decodes with. They say what is wrong in a typed
//! [`FieldError`]; each dialect words it as its document does.

use serde_json::{Map, Value};

/// What is wrong with a field of a client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldError {
    /// It is not there.
    Missing(&'static str),
    /// It is there, but not `expected` ("a string", "a non-negative integer", ...).
    Wrong {
        name: &'static str,
        expected: &'static str,
    },
    /// A list longer than `max`.
    TooMany { name: &'static str, max: usize },
}

const STRING: &str = "a string";
const INTEGER: &str = "a non-negative integer";
const BOOLEAN: &str = "a boolean";
const OBJECT: &str = "an object";
const STRINGS: &str = "an array of strings";

/// A client frame's JSON object; the parse error as serde_json says it, or `None` for JSON that
/// is not an object.
pub fn object(text: &str) -> Result<Map<String, Value>, Option<serde_json::Error>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(None),
        Err(e) => Err(Some(e)),
    }
}

/// The string field `name`, which must be there.
pub fn string<'a>(data: &'a Value, name: &'static str) -> Result<&'a str, FieldError> {
    match data.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(FieldError::Wrong {
            name,
            expected: STRING,
        }),
        None => Err(FieldError::Missing(name)),
    }
}

/// The string field `name`, absent or null as `None`.
pub fn opt_string<'a>(data: &'a Value, name: &'static str) -> Result<Option<&'a str>, FieldError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(FieldError::Wrong {
            name,
            expected: STRING,
        }),
    }
}

/// The non-negative integer field `name`, which must be there.
pub fn u64_field(data: &Value, name: &'static str) -> Result<u64, FieldError> {
    opt_u64(data, name)?.ok_or(FieldError::Missing(name))
}

/// The non-negative integer field `name`, absent or null as `None`.
pub fn opt_u64(data: &Value, name: &'static str) -> Result<Option<u64>, FieldError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or(FieldError::Wrong {
            name,
            expected: INTEGER,
        }),
        Some(_) => Err(FieldError::Wrong {
            name,
            expected: INTEGER,
        }),
    }
}

/// The boolean field `name`, `default` when absent.
pub fn bool_or(data: &Value, name: &'static str, default: bool) -> Result<bool, FieldError> {
    match data.get(name) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(FieldError::Wrong {
            name,
            expected: BOOLEAN,
        }),
    }
}

/// The object field `name`, absent or null as `None`.
pub fn opt_object<'a>(
    data: &'a Value,
    name: &'static str,
) -> Result<Option<&'a Value>, FieldError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(object @ Value::Object(_)) => Ok(Some(object)),
        Some(_) => Err(FieldError::Wrong {
            name,
            expected: OBJECT,
        }),
    }
}

/// The array-of-strings field `name`, at most `max` long.
pub fn strings(data: &Value, name: &'static str, max: usize) -> Result<Vec<String>, FieldError> {
    let wrong = FieldError::Wrong {
        name,
        expected: STRINGS,
    };
    let Some(Value::Array(items)) = data.get(name) else {
        return Err(wrong);
    };
    if items.len() > max {
        return Err(FieldError::TooMany { name, max });
    }
    items
        .iter()
        .map(|item| item.as_str().map(str::to_owned).ok_or(wrong.clone()))
        .collect()
}

/// The array-of-ids field `name` (non-negative integers), at most `max` long; absent or null as
/// empty.
pub fn ids(data: &Value, name: &'static str, max: usize) -> Result<Vec<u64>, FieldError> {
    let wrong = FieldError::Wrong {
        name,
        expected: "an array of non-negative integers",
    };
    let items = match data.get(name) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(wrong),
    };
    if items.len() > max {
        return Err(FieldError::TooMany { name, max });
    }
    items
        .iter()
        .map(|item| item.as_u64().ok_or(wrong.clone()))
        .collect()
}

/// The field `name` as a string: a string as it is, a number in its decimal form (ids that
/// clients send either way), absent or null as `None`.
pub fn opt_id(data: &Value, name: &'static str) -> Result<Option<String>, FieldError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(FieldError::Wrong {
            name,
            expected: STRING,
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_say_what_is_wrong() {
        let data = json!({"s": "x", "n": 3, "neg": -1, "b": true, "list": ["a", 1], "o": {}});
        assert_eq!(string(&data, "s"), Ok("x"));
        assert_eq!(string(&data, "nope"), Err(FieldError::Missing("nope")));
        assert_eq!(
            string(&data, "n"),
            Err(FieldError::Wrong {
                name: "n",
                expected: STRING
            })
        );
        assert_eq!(opt_u64(&data, "n"), Ok(Some(3)));
        assert!(opt_u64(&data, "neg").is_err());
        assert_eq!(bool_or(&data, "b", false), Ok(true));
        assert_eq!(bool_or(&data, "nope", true), Ok(true));
        assert!(strings(&data, "list", 10).is_err());
        assert_eq!(
            strings(&json!({"l": ["a", "b"]}), "l", 1),
            Err(FieldError::TooMany { name: "l", max: 1 })
        );
        assert!(opt_object(&data, "o").expect("object").is_some());
        assert_eq!(opt_id(&data, "n"), Ok(Some("3".to_owned())));
    }
}
