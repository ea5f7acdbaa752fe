//! JSON numbers as clients write them: `30.0` is the whole number 30.

/// JSON numbers written with a fraction of zero (`30.0`) as the whole numbers they are, at any
/// depth: JSON Schema counts `30.0` as an integer, serde's integer types do not.
pub fn whole_numbers(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(whole_numbers).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, whole_numbers(v))).collect())
        }
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_floats_become_integers_at_any_depth() {
        let v = serde_json::json!({"a": 30.0, "b": [1.5, 2.0], "c": {"d": -4.0}});
        assert_eq!(
            whole_numbers(v),
            serde_json::json!({"a": 30, "b": [1.5, 2], "c": {"d": -4}})
        );
    }
}
