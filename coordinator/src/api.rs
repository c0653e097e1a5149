//! Request and response bodies of the HTTP API, and their validation.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use worldloom_cluster::model::{AttachedPlugin, WorldRecord};
use worldloom_cluster::{Error, ErrorKind, Result};
use worldloom_worldgen::{Params, ParamsPatch};

/// Longest world name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Parses a JSON body, naming the field at fault in any error.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    if body.is_empty() {
        return Err(Error::new(ErrorKind::Malformed, "the request body is empty; send a JSON object")
            .with_code("malformed_json"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." { None } else { Some(path.clone()) };
            let message = match &field {
                Some(f) => format!("{f}: {inner}"),
                None => inner.to_string(),
            };
            let err = Error::new(ErrorKind::Invalid, message).with_code("invalid_field");
            match field {
                Some(f) => err.with_field(f),
                None => err,
            }
        } else {
            Error::new(ErrorKind::Malformed, format!("the body is not valid JSON: {inner}")).with_code("malformed_json")
        }
    })
}

/// A world seed as a client may send it: an integer in `0..2^64`, or any text
/// (hashed to an integer, so `"my world"` is a valid seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seed(pub u64);

impl Seed {
    fn from_text(s: &str) -> Seed {
        match s.trim().parse::<u64>() {
            Ok(n) => Seed(n),
            Err(_) => Seed(worldloom_worldgen::hash::mix64(worldloom_worldgen::hash::stream(s))),
        }
    }
}

impl<'de> Deserialize<'de> for Seed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer from 0 to 18446744073709551615, or a string")
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Seed, E> {
                Ok(Seed(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Seed, E> {
                u64::try_from(v)
                    .map(Seed)
                    .map_err(|_| E::custom(format!("seed must be from 0 to 18446744073709551615, got {v}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Seed, E> {
                Err(E::custom(format!("seed must be a whole number, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Seed, E> {
                if v.chars().count() > 256 {
                    return Err(E::custom("a text seed is at most 256 characters"));
                }
                Ok(Seed::from_text(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `POST /v1/worlds`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWorld {
    pub name: String,
    #[serde(default)]
    pub seed: Option<Seed>,
    #[serde(default)]
    pub params: ParamsPatch,
    #[serde(default)]
    pub plugins: Vec<crate::attach::PluginRequest>,
}

/// `PUT /v1/worlds/{id}/plugins`: the world's new plugin list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPlugins {
    pub plugins: Vec<crate::attach::PluginRequest>,
}

/// `PUT /v1/worlds/{id}/params`: the world's new parameters (unset ones take their defaults).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetParams {
    pub params: ParamsPatch,
}

/// Resolves generation parameters, naming the field on error.
pub fn resolve_params(patch: ParamsPatch) -> Result<Params> {
    patch
        .resolve()
        .map_err(|e| Error::invalid(format!("params.{}", e.field), e.to_string()).with_code("invalid_params"))
}

/// A validated world, ready to be stored.
#[derive(Debug)]
pub struct WorldDraft {
    pub name: String,
    pub seed: u64,
    pub params: Params,
    pub plugins: Vec<AttachedPlugin>,
}

/// Checks a world name: 1 to [`MAX_NAME_CHARS`] characters, no control characters.
pub fn check_name(name: &str) -> Result<String> {
    check_label("name", name)
}

/// Checks a display label: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
pub fn check_label(field: &str, name: &str) -> Result<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(field, format!("{field} must not be empty")));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(field, format!("{field} is longer than {MAX_NAME_CHARS} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Error::invalid(field, format!("{field} must not contain control characters")));
    }
    Ok(trimmed.to_owned())
}

impl CreateWorld {
    /// Validates everything but the plugins, which need the sandbox (see `Coordinator::attach`).
    pub fn validate(self) -> Result<(WorldDraft, Vec<crate::attach::PluginRequest>)> {
        let name = check_name(&self.name)?;
        let params = resolve_params(self.params)?;
        let seed = match self.seed {
            Some(s) => s.0,
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| Error::internal(format!("no OS randomness for a seed: {e}")))?;
                u64::from_le_bytes(b)
            }
        };
        Ok((WorldDraft { name, seed, params, plugins: Vec::new() }, self.plugins))
    }
}

/// Where a client finds a world's data.
#[derive(Debug, Serialize)]
pub struct WorldLinks {
    pub chunk: String,
    pub stream: String,
}

/// A world in responses.
#[derive(Debug, Serialize)]
pub struct WorldView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub seed: u64,
    pub params: &'a Params,
    pub plugins: &'a [AttachedPlugin],
    pub revision: u32,
    pub owner: Option<&'a str>,
    pub created_unix_s: u64,
    pub updated_unix_s: u64,
    pub links: WorldLinks,
}

impl<'a> From<&'a WorldRecord> for WorldView<'a> {
    fn from(w: &'a WorldRecord) -> Self {
        WorldView {
            id: w.id.as_str(),
            name: &w.name,
            seed: w.seed,
            params: &w.params,
            plugins: &w.plugins,
            revision: w.revision,
            owner: w.owner.as_deref(),
            created_unix_s: w.created_unix_s,
            updated_unix_s: w.updated_unix_s,
            links: WorldLinks {
                chunk: format!("/v1/worlds/{}/chunks/{{cx}}/{{cz}}", w.id),
                stream: format!("/v1/worlds/{}/stream", w.id),
            },
        }
    }
}

/// The JSON error body: a stable `code`, a human `message`, the `field` at fault.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// Structured detail, e.g. a plugin's diagnostics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<&'a serde_json::Value>,
}

impl<'a> From<&'a Error> for ErrorBody<'a> {
    fn from(e: &'a Error) -> Self {
        ErrorBody { code: e.code(), message: &e.message, field: e.field.as_deref(), details: e.details.as_ref() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_field_and_tell_syntax_from_data() {
        let e = parse_json::<CreateWorld>(br#"{"name":"a","params":{"octaves":"x"}}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert_eq!(e.field.as_deref(), Some("params.octaves"));
        let e = parse_json::<CreateWorld>(br#"{"name":"a","params":{"octave":3}}"#).unwrap_err();
        assert!(e.message.contains("unknown field `octave`"), "{e}");
        let e = parse_json::<CreateWorld>(br#"{"name": "a""#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert_eq!(e.code(), "malformed_json");
        let e = parse_json::<CreateWorld>(b"").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
    }

    #[test]
    fn seeds_accept_integers_and_text_but_not_negatives_or_fractions() {
        let w = |body: &str| parse_json::<CreateWorld>(body.as_bytes());
        assert_eq!(w(r#"{"name":"a","seed":18446744073709551615}"#).unwrap().seed, Some(Seed(u64::MAX)));
        assert_eq!(w(r#"{"name":"a","seed":"42"}"#).unwrap().seed, Some(Seed(42)));
        let text = w(r#"{"name":"a","seed":"my world"}"#).unwrap().seed.unwrap();
        assert_eq!(text, w(r#"{"name":"a","seed":"my world"}"#).unwrap().seed.unwrap());
        assert_eq!(w(r#"{"name":"a","seed":-1}"#).unwrap_err().field.as_deref(), Some("seed"));
        assert_eq!(w(r#"{"name":"a","seed":1.5}"#).unwrap_err().field.as_deref(), Some("seed"));
    }

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(check_name("  Terra ").unwrap(), "Terra");
        assert!(check_name("").is_err());
        assert!(check_name("a\u{0}b").is_err());
        assert!(check_name(&"x".repeat(101)).is_err());
    }
}
