//! Validation of report.json against `bench/schema/report-v1.json`.
//!
//! A small validator for exactly the JSON Schema subset that file uses (type, properties,
//! required, items, minItems, maxItems, enum, const, minimum, oneOf, local `$ref`), rather than
//! a general JSON Schema crate: the subset is small, and the schema file stays usable by any
//! standard validator. A keyword outside the subset is reported as an error, so the schema
//! cannot silently grow past what is checked here.

use serde_json::Value;

/// The schema, embedded so the binary can validate without its source tree.
pub const REPORT_V1: &str = include_str!("../../schema/report-v1.json");

const KNOWN: &[&str] = &[
    "$schema",
    "$id",
    "$defs",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "minimum",
    "oneOf",
    "$ref",
];

/// The parsed report schema.
pub fn report_v1() -> Value {
    serde_json::from_str(REPORT_V1).expect("the embedded schema is valid JSON (tested)")
}

/// Validate `doc` against `schema`; each error is `<JSON pointer>: <what is wrong>`.
pub fn validate(schema: &Value, doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, schema, doc, "", &mut errors);
    errors
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        _ => false,
    }
}

fn check(root: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        errors.push(format!("{at}: schema is not an object"));
        return;
    };
    for k in s.keys() {
        if !KNOWN.contains(&k.as_str()) {
            errors.push(format!("{at}: schema keyword {k:?} is not supported"));
        }
    }
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        match r
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs")?.get(name))
        {
            Some(target) => check(root, target, v, at, errors),
            None => errors.push(format!("{at}: unresolvable $ref {r:?}")),
        }
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.iter().any(|t| type_matches(t, v)) {
            errors.push(format!(
                "{at}: expected {}, found {}",
                types.join(" or "),
                kind(v)
            ));
            return;
        }
    }
    // `filter` rather than a let chain: the workspace's rust-version (1.85) predates them.
    if let Some(c) = s.get("const").filter(|c| *c != v) {
        errors.push(format!("{at}: expected {c}, found {v}"));
    }
    if let Some(options) = s
        .get("enum")
        .and_then(Value::as_array)
        .filter(|o| !o.contains(v))
    {
        let list: Vec<String> = options.iter().map(Value::to_string).collect();
        errors.push(format!("{at}: {v} is not one of {}", list.join(", ")));
    }
    if let Some((min, x)) = s
        .get("minimum")
        .and_then(Value::as_f64)
        .zip(v.as_f64())
        .filter(|(min, x)| x < min)
    {
        errors.push(format!("{at}: {x} is less than the minimum {min}"));
    }
    if let Some(Value::Array(options)) = s.get("oneOf") {
        let matching = options
            .iter()
            .filter(|o| {
                let mut e = Vec::new();
                check(root, o, v, at, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!(
                "{at}: matches {matching} of the {} alternatives (exactly one required)",
                options.len()
            ));
        }
    }
    if let Value::Object(obj) = v {
        if let Some(Value::Array(req)) = s.get("required") {
            for k in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(k) {
                    errors.push(format!("{at}: missing required field {k:?}"));
                }
            }
        }
        if let Some(Value::Object(props)) = s.get("properties") {
            for (k, sub) in props {
                if let Some(child) = obj.get(k) {
                    check(root, sub, child, &format!("{at}/{k}"), errors);
                }
            }
        }
    }
    if let Value::Array(items) = v {
        let n = items.len() as u64;
        if let Some(min) = s.get("minItems").and_then(Value::as_u64).filter(|&m| n < m) {
            errors.push(format!("{at}: {n} items, at least {min} required"));
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64).filter(|&m| n > m) {
            errors.push(format!("{at}: {n} items, at most {max} allowed"));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(root, item_schema, item, &format!("{at}/{i}"), errors);
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embedded_schema_parses_and_uses_only_the_supported_subset() {
        let s = report_v1();
        // Validating the schema's own $defs against an empty schema walks every keyword.
        let mut errors = Vec::new();
        fn walk(v: &Value, at: &str, errors: &mut Vec<String>) {
            if let Value::Object(o) = v {
                for (k, sub) in o {
                    if !KNOWN.contains(&k.as_str())
                        && !at.ends_with("/properties")
                        && !at.ends_with("/$defs")
                    {
                        errors.push(format!("{at}/{k}"));
                    }
                    walk(sub, &format!("{at}/{k}"), errors);
                }
            } else if let Value::Array(a) = v {
                for (i, sub) in a.iter().enumerate() {
                    walk(sub, &format!("{at}/{i}"), errors);
                }
            }
        }
        walk(&s, "", &mut errors);
        // Values inside const/enum/required/type arrays are data, not keywords.
        errors.retain(|e| {
            !["/const", "/enum", "/required", "/type"]
                .iter()
                .any(|k| e.contains(k))
        });
        assert!(errors.is_empty(), "unsupported keywords: {errors:?}");
    }

    #[test]
    fn keywords_behave() {
        let schema = json!({
            "type": "object",
            "required": ["a", "b"],
            "properties": {
                "a": { "type": ["integer", "null"], "minimum": 1 },
                "b": { "type": "array", "items": { "enum": ["x", "y"] }, "maxItems": 2 },
                "c": { "oneOf": [{ "$ref": "#/$defs/s" }, { "type": "null" }] }
            },
            "$defs": { "s": { "type": "string" } }
        });
        assert!(validate(&schema, &json!({"a": 1, "b": ["x"], "c": "s"})).is_empty());
        assert!(validate(&schema, &json!({"a": null, "b": [], "c": null})).is_empty());
        let errs = validate(&schema, &json!({"a": 0, "b": ["z", "x", "y"], "c": 5}));
        let text = errs.join("\n");
        assert!(text.contains("/a: 0 is less than the minimum 1"), "{text}");
        assert!(text.contains("/b/0: \"z\" is not one of"), "{text}");
        assert!(text.contains("/b: 3 items, at most 2"), "{text}");
        assert!(text.contains("/c: matches 0 of the 2"), "{text}");
        let errs = validate(&schema, &json!({"a": 1.5}));
        let text = errs.join("\n");
        assert!(text.contains("missing required field \"b\""), "{text}");
        assert!(
            text.contains("/a: expected integer or null, found number"),
            "{text}"
        );
    }
}
