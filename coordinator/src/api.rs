//! Request and response bodies of the HTTP API, and their validation.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
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
                // JSON has one number type: `22066.0` is the integer 22066
                // (as JSON Schema's `integer` says), `22066.5` is not.
                if v.fract() == 0.0 && (0.0..18446744073709551616.0).contains(&v) {
                    return Ok(Seed(v as u64));
                }
                Err(E::custom(format!("seed must be a whole number from 0 to 18446744073709551615, got {v}")))
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

impl utoipa::PartialSchema for Seed {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(u64::MAX)))
            .item(ObjectBuilder::new().schema_type(Type::String).max_length(Some(256)))
            .description(Some(
                "An integer from 0 to 2^64-1, or any text of at most 256 characters (hashed: the same text always \
                 gives the same seed). Without one the server picks a random seed.",
            ))
            .into()
    }
}
impl ToSchema for Seed {}

/// `POST /v1/worlds`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorld {
    /// 1 to 100 characters, not all spaces, no control characters (trimmed).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    #[serde(default)]
    pub seed: Option<Seed>,
    /// Any subset of the generation parameters (see `GET /v1/params`); unset ones take their defaults.
    #[serde(default)]
    #[schema(value_type = schema::ParamsPatch)]
    pub params: ParamsPatch,
    /// Workshop plugin versions to attach, in pipeline order.
    #[serde(default)]
    #[schema(value_type = Vec<schema::PluginRequest>)]
    pub plugins: Vec<crate::attach::PluginRequest>,
}

/// `PUT /v1/worlds/{id}/plugins`: the world's new plugin list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPlugins {
    #[schema(value_type = Vec<schema::PluginRequest>)]
    pub plugins: Vec<crate::attach::PluginRequest>,
}

/// `PUT /v1/worlds/{id}/params`: the world's new parameters (unset ones take their defaults).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetParams {
    #[schema(value_type = schema::ParamsPatch)]
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
    // Bidirectional controls (U+202A-U+202E, U+2066-U+2069, marks) make a
    // label display as something other than what it is.
    if let Some(c) = trimmed
        .chars()
        .find(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'))
    {
        return Err(Error::invalid(
            field,
            format!("{field} must not contain bidirectional control characters (found U+{:04X})", u32::from(c)),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Checks that each requested plugin name is a plugin name at all (422
/// `invalid_name`, naming `plugins[i].name`) before the workshop is asked
/// for it: an empty name would otherwise address the workshop's directory.
pub fn check_plugin_names(plugins: &[crate::attach::PluginRequest]) -> Result<()> {
    for (i, p) in plugins.iter().enumerate() {
        crate::auth::check_name(&format!("plugins[{i}].name"), &p.name)?;
    }
    Ok(())
}

impl CreateWorld {
    /// Validates everything but the plugins, which need the sandbox (see `Coordinator::attach`).
    pub fn validate(self) -> Result<(WorldDraft, Vec<crate::attach::PluginRequest>)> {
        let name = check_name(&self.name)?;
        let params = resolve_params(self.params)?;
        check_plugin_names(&self.plugins)?;
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
#[derive(Debug, Serialize, ToSchema)]
pub struct WorldLinks {
    /// The chunk URL template, e.g. `/v1/worlds/w1f0c/chunks/{cx}/{cz}`.
    pub chunk: String,
    /// The WebSocket stream (see docs/api.md).
    pub stream: String,
}

/// A world in responses.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = World)]
pub struct WorldView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub seed: u64,
    /// Every generation parameter, defaults filled in.
    #[schema(value_type = schema::Params)]
    pub params: &'a Params,
    /// The attached plugin versions, pinned by SHA-256, in pipeline order.
    #[schema(value_type = Vec<schema::AttachedPlugin>)]
    pub plugins: &'a [AttachedPlugin],
    /// Starts at 0; every change of plugins or parameters adds one.
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    /// Stable machine-readable code, e.g. `invalid_params`, `not_found`, `unknown_plugin`, `no_route`, `method_not_allowed`.
    pub code: &'a str,
    /// What went wrong and what is accepted, for a person.
    pub message: &'a str,
    /// The request field at fault, as a path (`params.octaves`, `plugins[0].params.depth`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// Structured detail, e.g. a plugin's diagnostics.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<&'a serde_json::Value>,
}

impl<'a> From<&'a Error> for ErrorBody<'a> {
    fn from(e: &'a Error) -> Self {
        ErrorBody { code: e.code(), message: &e.message, field: e.field.as_deref(), details: e.details.as_ref() }
    }
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// `coordinator`.
    pub role: &'static str,
    /// Live generation nodes.
    pub nodes: usize,
    /// Worlds in this coordinator's cache.
    pub worlds_cached: usize,
    /// The storage backend, e.g. `fs:///var/lib/worldloom`.
    pub storage: String,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: &'static str,
    #[schema(value_type = Vec<schema::Member>)]
    pub nodes: Vec<crate::actor::MemberView>,
}

/// `GET /v1/biomes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BiomeTable {
    /// Every biome, indexed by id.
    #[schema(value_type = Vec<schema::Biome>)]
    pub biomes: &'static [worldloom_worldgen::Biome],
}

/// `GET /v1/params`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParamTable {
    /// Every generation parameter, in documentation order.
    #[schema(value_type = Vec<schema::ParamSpec>)]
    pub params: &'static [worldloom_worldgen::params::ParamSpec],
}

/// `GET /v1/worlds`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorldList<'a> {
    pub worlds: Vec<WorldView<'a>>,
}

/// One plugin in a workshop listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginSummary<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    /// The newest version that is not yanked (or the newest at all).
    pub latest_version: Option<&'a str>,
    pub description: Option<&'a str>,
    #[schema(value_type = Option<Vec<schema::Hook>>)]
    pub hooks: Option<&'a [worldloom_plugin_abi::HookName]>,
    /// How many versions the plugin has.
    pub versions: usize,
    pub created_unix_s: u64,
}

/// `GET /v1/plugins`: one page of the workshop.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList<'a> {
    pub plugins: Vec<PluginSummary<'a>>,
    /// Matching plugins in all pages.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// The `offset` of the next page, `null` on the last.
    pub next_offset: Option<usize>,
}

/// `GET /v1/plugins/{name}`: a plugin and its versions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginDetail<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub created_unix_s: u64,
    pub latest_version: Option<&'a str>,
    #[schema(value_type = Vec<schema::PluginVersion>)]
    pub versions: Vec<crate::workshop::VersionView<'a>>,
}

/// OpenAPI schemas of types that live in other crates (the generation core,
/// the cluster model, the plugin ABI) or are built by hand in handlers. Kept
/// here so those crates need no OpenAPI dependency; the unit tests below
/// check them against the real types' JSON, and the end-to-end tests
/// (tests/it/openapi.rs) check real responses against them.
#[allow(dead_code)]
pub mod schema {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type};
    use utoipa::openapi::{RefOr, schema::SchemaType};
    use utoipa::{PartialSchema, ToSchema};
    use worldloom_plugin_abi::{ErrorKind as PluginErrorKind, HookName, RuntimeKind};
    use worldloom_worldgen::params::PARAM_SPECS;

    fn string_enum(values: impl IntoIterator<Item = &'static str>, doc: &str) -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values)).description(Some(doc)).into()
    }

    fn params_object(doc: &str, patch: bool) -> RefOr<Schema> {
        let mut o = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(doc))
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)));
        for spec in PARAM_SPECS {
            let ty = if spec.integer { Type::Integer } else { Type::Number };
            let unit = if spec.unit.is_empty() { String::new() } else { format!(" ({})", spec.unit) };
            // In a patch, `null` is the same as leaving the parameter out.
            let types = if patch { SchemaType::from_iter([ty, Type::Null]) } else { SchemaType::new(ty) };
            let p = ObjectBuilder::new()
                .schema_type(types)
                .minimum(Some(spec.min))
                .maximum(Some(spec.max))
                .default(Some(serde_json::json!(spec.default)))
                .description(Some(format!("{}{unit}", spec.doc)));
            o = o.property(spec.name, p);
            if !patch {
                o = o.required(spec.name);
            }
        }
        o.into()
    }

    /// Generation parameters with every default filled in (built from `PARAM_SPECS`).
    pub struct Params;
    impl PartialSchema for Params {
        fn schema() -> RefOr<Schema> {
            params_object("Every generation parameter of a world, defaults filled in.", false)
        }
    }
    impl ToSchema for Params {}

    /// Generation parameters as a client sends them: any subset; unknown names are refused.
    pub struct ParamsPatch;
    impl PartialSchema for ParamsPatch {
        fn schema() -> RefOr<Schema> {
            params_object(
                "Any subset of the generation parameters; unset ones (left out or `null`) take their defaults.",
                true,
            )
        }
    }
    impl ToSchema for ParamsPatch {}

    /// A plugin parameter value or feature property: a boolean, integer, number or string.
    pub struct PluginValue;
    impl PartialSchema for PluginValue {
        fn schema() -> RefOr<Schema> {
            // anyOf, not oneOf: 9.0 is both an integer and a number to JSON Schema.
            AnyOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::Boolean))
                .item(ObjectBuilder::new().schema_type(Type::Integer))
                .item(ObjectBuilder::new().schema_type(Type::Number))
                .item(ObjectBuilder::new().schema_type(Type::String))
                .description(Some("A boolean, integer, number or string."))
                .into()
        }
    }
    impl ToSchema for PluginValue {
        fn name() -> Cow<'static, str> {
            Cow::Borrowed("Value")
        }
    }

    /// A plugin hook name.
    pub struct Hook;
    impl PartialSchema for Hook {
        fn schema() -> RefOr<Schema> {
            string_enum(HookName::ALL.iter().map(|h| h.as_str()), "A plugin hook, in pipeline order.")
        }
    }
    impl ToSchema for Hook {}

    /// Why a plugin call failed.
    pub struct FailureKind;
    impl PartialSchema for FailureKind {
        fn schema() -> RefOr<Schema> {
            string_enum(PluginErrorKind::ALL.iter().map(|k| k.as_str()), "Why a plugin hook call failed.")
        }
    }
    impl ToSchema for FailureKind {}

    /// A plugin runtime.
    pub struct Runtime;
    impl PartialSchema for Runtime {
        fn schema() -> RefOr<Schema> {
            string_enum(RuntimeKind::ALL.iter().map(|r| r.as_str()), "The runtime a plugin runs in.")
        }
    }
    impl ToSchema for Runtime {}

    /// A 32x32 grid of numbers, indexed `[x][z]`.
    pub struct Grid;
    impl PartialSchema for Grid {
        fn schema() -> RefOr<Schema> {
            let n = worldloom_worldgen::CHUNK_SIZE;
            let row = ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::Number))
                .min_items(Some(n))
                .max_items(Some(n));
            ArrayBuilder::new()
                .items(row)
                .min_items(Some(n))
                .max_items(Some(n))
                .description(Some("32 rows (x) of 32 values (z): `layer[x][z]`."))
                .into()
        }
    }
    impl ToSchema for Grid {}

    /// One entry of a world's `plugins` in a request.
    #[derive(ToSchema)]
    #[schema(as = PluginRequest)]
    #[serde(deny_unknown_fields)]
    pub struct PluginRequest {
        /// A workshop plugin name.
        #[schema(pattern = r"^[a-z][a-z0-9_-]{0,63}$")]
        pub name: String,
        /// One of its versions (not yanked).
        #[schema(
            max_length = 64,
            pattern = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
        )]
        pub version: String,
        /// The world's values for the plugin's `PARAMS`; unset ones take their defaults.
        #[serde(default)]
        pub params: BTreeMap<String, PluginValue>,
    }

    /// A plugin attached to a world, pinned to one version and the SHA-256 of its source.
    #[derive(ToSchema)]
    #[schema(as = AttachedPlugin)]
    pub struct AttachedPlugin {
        pub name: String,
        pub version: String,
        /// Lowercase hex SHA-256 of the source.
        pub sha256: String,
        pub runtime: Runtime,
        /// The world's values for the plugin's PARAMS, defaults filled in.
        pub params: BTreeMap<String, PluginValue>,
    }

    /// A live node.
    #[derive(ToSchema)]
    #[schema(as = Member)]
    pub struct Member {
        pub id: String,
        /// `null` for the in-process node.
        pub url: Option<String>,
        pub ready: bool,
        pub last_seen_ms: u64,
    }

    /// One row of the biome table.
    #[derive(ToSchema)]
    #[schema(as = Biome)]
    pub struct Biome {
        /// Stable id, as in the chunk's `biome` layer.
        pub id: u16,
        pub name: String,
        /// Map colour as `#rrggbb`.
        #[schema(pattern = "^#[0-9a-f]{6}$")]
        pub color: String,
        pub doc: String,
    }

    /// One documented generation parameter.
    #[derive(ToSchema)]
    #[schema(as = ParamSpec)]
    pub struct ParamSpec {
        pub name: String,
        pub default: f64,
        pub min: f64,
        pub max: f64,
        /// Whether only whole numbers are accepted.
        pub integer: bool,
        pub unit: String,
        pub doc: String,
    }

    /// The layers of a chunk, each `[x][z]`.
    #[derive(ToSchema)]
    #[schema(as = Layers)]
    pub struct Layers {
        /// Terrain height in metres.
        pub height: Grid,
        /// Mean temperature in °C.
        pub temperature: Grid,
        /// Moisture from 0 (arid) to 1 (saturated).
        pub moisture: Grid,
        /// Biome ids (see `GET /v1/biomes`).
        pub biome: Grid,
    }

    /// An object placed on a column.
    #[derive(ToSchema)]
    #[schema(as = Feature)]
    pub struct Feature {
        /// Column within the chunk, 0..31.
        #[schema(maximum = 31)]
        pub x: u8,
        /// Column within the chunk, 0..31.
        #[schema(maximum = 31)]
        pub z: u8,
        /// What it is, e.g. `tree`.
        pub kind: String,
        pub properties: BTreeMap<String, PluginValue>,
    }

    /// A plugin hook that failed on this chunk; the chunk is served without its effect.
    #[derive(ToSchema)]
    #[schema(as = PluginFailure)]
    pub struct PluginFailure {
        pub plugin: String,
        pub version: String,
        pub hook: Hook,
        pub kind: FailureKind,
        pub message: String,
        /// Not a function of the inputs: the chunk is served but not stored.
        pub transient: bool,
    }

    /// A chunk in JSON (`Accept: application/json`).
    #[derive(ToSchema)]
    #[schema(as = Chunk)]
    pub struct Chunk {
        pub world: String,
        pub revision: u32,
        pub cx: i32,
        pub cz: i32,
        /// Columns per side (32).
        pub size: usize,
        pub layers: Layers,
        pub features: Vec<Feature>,
        pub plugin_failures: Vec<PluginFailure>,
    }

    /// One declared plugin parameter (from the plugin's `PARAMS`).
    #[derive(ToSchema)]
    #[schema(as = ParamDecl)]
    pub struct ParamDecl {
        pub default: PluginValue,
        pub min: Option<f64>,
        pub max: Option<f64>,
        pub doc: String,
    }

    /// One immutable plugin version in the workshop.
    #[derive(ToSchema)]
    #[schema(as = PluginVersion)]
    pub struct PluginVersion {
        pub name: String,
        pub version: String,
        pub description: String,
        pub runtime: Runtime,
        /// Lowercase hex SHA-256 of the source.
        pub sha256: String,
        pub size_bytes: u64,
        /// The hooks the plugin defines.
        pub hooks: Vec<Hook>,
        /// The plugin's `PARAMS`.
        pub params: BTreeMap<String, ParamDecl>,
        pub abi_version: u32,
        pub owner: String,
        pub created_unix_s: u64,
        /// Withdrawn: worlds using it keep working, new attachments are refused.
        pub yanked: bool,
        pub source_url: String,
    }

    /// `POST /v1/plugins` as JSON.
    #[derive(ToSchema)]
    #[schema(as = PluginUpload)]
    #[serde(deny_unknown_fields)]
    pub struct PluginUpload {
        /// The plugin name (1 to 64 of a-z, 0-9, `-`, `_`, starting with a letter); the first uploader owns it.
        #[schema(pattern = r"^[a-z][a-z0-9_-]{0,63}$")]
        pub name: String,
        /// A semantic version like `1.2.0`, new for this plugin.
        #[schema(
            max_length = 64,
            pattern = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
        )]
        pub version: String,
        /// At most 1000 characters; no control characters but newline and tab.
        #[serde(default)]
        #[schema(max_length = 1000, pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$")]
        pub description: String,
        /// `python` (the default).
        #[serde(default)]
        pub runtime: Option<Runtime>,
        /// The Python source.
        pub source: String,
    }

    /// `POST /v1/plugins` as `multipart/form-data`: the same fields as form fields, `source` a file or text.
    #[derive(ToSchema)]
    #[schema(as = PluginUploadForm)]
    #[serde(deny_unknown_fields)]
    pub struct PluginUploadForm {
        /// As in the JSON upload.
        #[schema(pattern = r"^[a-z][a-z0-9_-]{0,63}$")]
        pub name: String,
        /// As in the JSON upload.
        #[schema(
            max_length = 64,
            pattern = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
        )]
        pub version: String,
        /// As in the JSON upload.
        #[serde(default)]
        #[schema(max_length = 1000, pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$")]
        pub description: String,
        /// `python` (the default).
        #[serde(default)]
        pub runtime: Runtime,
        /// The Python source, as a file or a text field.
        #[schema(content_media_type = "text/x-python")]
        pub source: String,
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

    /// The property names a schema documents.
    fn documented<T: utoipa::PartialSchema>() -> std::collections::BTreeSet<String> {
        let v = serde_json::to_value(T::schema()).unwrap();
        v["properties"].as_object().expect("an object schema").keys().cloned().collect()
    }

    fn fields(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    }

    #[test]
    fn hand_written_schemas_name_exactly_the_fields_of_the_real_types() {
        let params = serde_json::to_value(Params::default()).unwrap();
        assert_eq!(documented::<schema::Params>(), fields(&params));
        assert_eq!(documented::<schema::ParamsPatch>(), fields(&serde_json::to_value(ParamsPatch::default()).unwrap()));
        let biome = serde_json::to_value(worldloom_worldgen::BIOMES[0]).unwrap();
        assert_eq!(documented::<schema::Biome>(), fields(&biome));
        let spec = serde_json::to_value(worldloom_worldgen::params::PARAM_SPECS[0]).unwrap();
        assert_eq!(documented::<schema::ParamSpec>(), fields(&spec));
        let member = crate::actor::MemberView { id: "n".into(), url: None, ready: true, last_seen_ms: 0 };
        assert_eq!(documented::<schema::Member>(), fields(&serde_json::to_value(member).unwrap()));
        let plugin = AttachedPlugin {
            name: "p".into(),
            version: "1.0.0".into(),
            sha256: "0".repeat(64),
            runtime: worldloom_plugin_abi::RuntimeKind::Python,
            params: Default::default(),
        };
        assert_eq!(documented::<schema::AttachedPlugin>(), fields(&serde_json::to_value(plugin).unwrap()));
        let coord = worldloom_worldgen::ChunkCoord::new(0, 0);
        let mut chunk = worldloom_worldgen::generate_chunk(42, &Params::default(), coord);
        chunk.features.push(worldloom_worldgen::Feature {
            x: 1,
            z: 2,
            kind: "well".into(),
            properties: Default::default(),
        });
        let record = worldloom_cluster::model::ChunkRecord {
            world: worldloom_cluster::ids::WorldId::parse("w0123456789abcdef").expect("a world id"),
            revision: 0,
            chunk,
            plugin_failures: vec![worldloom_cluster::model::PluginFailure {
                plugin: "p".into(),
                version: "1.0.0".into(),
                hook: worldloom_plugin_abi::HookName::Terrain,
                kind: worldloom_plugin_abi::ErrorKind::Exception,
                message: "boom".into(),
                transient: false,
            }],
        };
        let json = serde_json::to_value(record.json()).unwrap();
        assert_eq!(documented::<schema::Chunk>(), fields(&json));
        assert_eq!(documented::<schema::Layers>(), fields(&json["layers"]));
        assert_eq!(documented::<schema::Feature>(), fields(&json["features"][0]));
        assert_eq!(documented::<schema::PluginFailure>(), fields(&json["plugin_failures"][0]));
    }

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(check_name("  Terra ").unwrap(), "Terra");
        assert!(check_name("").is_err());
        assert!(check_name("a\u{0}b").is_err());
        assert!(check_name(&"x".repeat(101)).is_err());
    }
}
