//! Checking a world's values for a plugin against the plugin's `PARAMS`.

use std::collections::BTreeMap;

use crate::{ParamDecl, Value};

/// A value a world set for a plugin parameter that the plugin does not accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamProblem {
    /// The parameter's name.
    pub name: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

/// Fills in defaults and checks every given value against its declaration:
/// known name, same type as the default (an integer is accepted where a
/// float is declared), within `min`/`max`, finite.
pub fn resolve(
    decls: &BTreeMap<String, ParamDecl>,
    given: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Value>, ParamProblem> {
    let problem = |name: &str, message: String| ParamProblem { name: name.to_owned(), message };
    for name in given.keys() {
        if !decls.contains_key(name) {
            let known: Vec<&str> = decls.keys().map(String::as_str).collect();
            let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            return Err(problem(name, format!("the plugin declares no parameter {name:?} (it declares: {known})")));
        }
    }
    let mut out = BTreeMap::new();
    for (name, decl) in decls {
        let value = match given.get(name) {
            None => decl.default.clone(),
            Some(v) => {
                let v = match (&decl.default, v) {
                    (Value::Float(_), Value::Int(i)) => Value::Float(*i as f64),
                    (d, v) if std::mem::discriminant(d) == std::mem::discriminant(v) => v.clone(),
                    (d, v) => {
                        return Err(problem(name, format!("must be {}, got {}", d.type_name(), v.type_name())));
                    }
                };
                if let Some(x) = v.as_f64() {
                    if !x.is_finite() {
                        return Err(problem(name, format!("must be finite, got {x}")));
                    }
                    if decl.min.is_some_and(|m| x < m) || decl.max.is_some_and(|m| x > m) {
                        let lo = decl.min.map_or("-inf".to_owned(), |m| m.to_string());
                        let hi = decl.max.map_or("inf".to_owned(), |m| m.to_string());
                        return Err(problem(name, format!("must be between {lo} and {hi}, got {x}")));
                    }
                }
                v
            }
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls() -> BTreeMap<String, ParamDecl> {
        BTreeMap::from([
            (
                "depth".into(),
                ParamDecl { default: Value::Float(1.0), min: Some(0.0), max: Some(10.0), doc: String::new() },
            ),
            ("count".into(), ParamDecl { default: Value::Int(3), min: Some(1.0), max: None, doc: String::new() }),
            ("style".into(), ParamDecl { default: Value::Str("a".into()), min: None, max: None, doc: String::new() }),
        ])
    }

    #[test]
    fn defaults_fill_in_and_integers_widen_to_floats() {
        let got = resolve(&decls(), &BTreeMap::from([("depth".into(), Value::Int(4))])).unwrap();
        assert_eq!(got["depth"], Value::Float(4.0));
        assert_eq!(got["count"], Value::Int(3));
        assert_eq!(got["style"], Value::Str("a".into()));
    }

    #[test]
    fn wrong_names_types_and_ranges_name_the_parameter() {
        let bad = |k: &str, v: Value| resolve(&decls(), &BTreeMap::from([(k.to_owned(), v)])).unwrap_err();
        assert!(bad("nope", Value::Int(1)).message.contains("declares: count, depth, style"));
        assert_eq!(bad("depth", Value::Float(11.0)).name, "depth");
        assert!(bad("depth", Value::Float(11.0)).message.contains("between 0 and 10"));
        assert_eq!(bad("count", Value::Float(2.5)).message, "must be an integer, got a number");
        assert!(bad("style", Value::Bool(true)).message.contains("string"));
        assert!(bad("depth", Value::Float(f64::NAN)).message.contains("finite"));
    }
}
