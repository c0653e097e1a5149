//! The web viewer served at `/` and the overview endpoint it draws
//! continents from.
//!
//! The viewer is three static files (`coordinator/web/`: no framework, no
//! build step, nothing loaded from anywhere but this server) embedded in the
//! binary. It talks to the public API only: `GET /v1/worlds`, `/v1/params`,
//! `/v1/biomes`, `/v1/plugins...`, the WebSocket stream, and
//! `GET /v1/worlds/{id}/overview` when zoomed out.
//!
//! `GET /v1/worlds/{id}/overview?x=&z=&step=&size=`: the core's height and
//! biome at `size` x `size` columns every `step` columns from world column
//! (`x`, `z`), sampled by a node on its generation threads (the coordinator
//! never generates) and routed like the chunk holding (`x`, `z`). Plugins are
//! not applied (`"source": "core"`, header `X-Worldloom-Source: core`). As
//! JSON (the default), or with `Accept: application/octet-stream` as
//! [`OVERVIEW_BINARY`]'s layout.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;
use worldloom_cluster::protocol::{NodeRequest, NodeResponse};
use worldloom_cluster::{Error, ErrorKind, Result};
use worldloom_worldgen::overview::{MAX_OVERVIEW_COLUMN, MAX_OVERVIEW_SIZE, MAX_OVERVIEW_STEP};
use worldloom_worldgen::{CHUNK_SIZE, ChunkCoord, Overview, OverviewArea};

use crate::actor::RouteBy;
use crate::api::ErrorBody;
use crate::http::{ApiError, AppState, Endpoint};
use crate::{Coordinator, World};

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

/// The viewer's pages may load only from this server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Media type of the binary overview.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The binary overview layout (all little-endian), documented here and in
/// the README: a 32-byte header, then the samples.
///
/// | offset | type | field |
/// |---|---|---|
/// | 0 | 4 bytes | magic `WLOV` |
/// | 4 | u32 | format version, 1 |
/// | 8 | i32 | x (world column of the first sample) |
/// | 12 | i32 | z |
/// | 16 | u32 | step (columns between samples) |
/// | 20 | u32 | size (samples per side) |
/// | 24 | u32 | world revision it was asked at |
/// | 28 | u32 | flags: bit 0 set if plugins were applied (never, for now: the core only) |
/// | 32 | f32 x size² | height in metres, sample (i, j) at `i * size + j`, column (x + i·step, z + j·step) |
/// | 32 + 4·size² | u8 x size² | biome id, same order |
pub const OVERVIEW_BINARY: &str = "WLOV v1";

/// Registers the viewer's static files and the overview endpoint (one line in `http::routes`).
pub fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(Endpoint::new(__path_overview, overview)).map(|cfg| {
        let page = |body: &'static str, ct: &'static str| {
            move || async move {
                HttpResponse::Ok()
                    .content_type(ct)
                    .insert_header((header::CACHE_CONTROL, "no-cache"))
                    .insert_header(("Content-Security-Policy", CSP))
                    .insert_header(("X-Content-Type-Options", "nosniff"))
                    .body(body)
            }
        };
        cfg.route("/", web::get().to(page(INDEX_HTML, "text/html; charset=utf-8")))
            .route("/viewer/app.js", web::get().to(page(APP_JS, "text/javascript; charset=utf-8")))
            .route("/viewer/style.css", web::get().to(page(STYLE_CSS, "text/css; charset=utf-8")))
    });
}

/// Query of `GET /v1/worlds/{id}/overview`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct OverviewQuery {
    /// World column x of the first sample (default 0); the whole tile must lie within ±536870912 columns.
    #[param(schema_with = column_schema)]
    x: Option<i64>,
    /// World column z of the first sample (default 0); the whole tile must lie within ±536870912 columns.
    #[param(schema_with = column_schema)]
    z: Option<i64>,
    /// Columns between samples: a power of two from 1 to 64 (default 16).
    #[param(schema_with = step_schema)]
    step: Option<u32>,
    /// Samples along each side, 1 to 256 (default 128).
    #[param(schema_with = size_schema)]
    size: Option<u32>,
}

// The query's bounds, from the constants `OverviewArea::validate` checks, so
// the document states them exactly (the API fuzzer in tests/it/openapi.rs
// generates from them). That the whole tile (`x + step·(size-1)`) lies in
// range is a rule across fields, which a schema cannot state; it is a 400.

fn column_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
        .minimum(Some(-MAX_OVERVIEW_COLUMN))
        .maximum(Some(MAX_OVERVIEW_COLUMN))
        .build()
}

fn step_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let steps = (0..=MAX_OVERVIEW_STEP.ilog2()).map(|i| serde_json::json!(1u32 << i));
    ObjectBuilder::new().schema_type(Type::Integer).enum_values(Some(steps)).default(Some(16.into())).build()
}

fn size_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_OVERVIEW_SIZE))
        .default(Some(128.into()))
        .build()
}

/// The JSON form of an overview tile.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OverviewJson<'a> {
    /// Always `core`: sampled from the generation core, plugins not applied.
    pub source: &'static str,
    pub plugins_applied: bool,
    pub world: &'a str,
    /// The world revision it was asked at (the core depends only on its seed and parameters).
    pub revision: u32,
    pub x: i64,
    pub z: i64,
    pub step: u32,
    pub size: u32,
    /// Height in metres, `[i][j]` for column (x + i·step, z + j·step).
    pub height: Vec<&'a [f32]>,
    /// Biome ids, same order.
    pub biome: Vec<&'a [u16]>,
}

fn bad_query(field: &str, message: String) -> Error {
    Error::new(ErrorKind::Malformed, message).with_field(field).with_code("invalid_query")
}

/// Parses and validates the query (400 naming the field).
fn parse_area(query: &str) -> Result<OverviewArea> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| bad_query("query", format!("bad query: {e}; use ?x=&z=&step=&size=")))?;
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs.into_inner() {
        if !["x", "z", "step", "size"].contains(&k.as_str()) {
            return Err(bad_query(&k, format!("unknown query parameter {k:?}; use x, z, step and size")));
        }
        if given.insert(k.clone(), v).is_some() {
            return Err(bad_query(&k, format!("{k} is given twice")));
        }
    }
    fn num<T: std::str::FromStr>(given: &BTreeMap<String, String>, f: &str, default: T, what: &str) -> Result<T> {
        match given.get(f) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|_| bad_query(f, format!("{f} must be {what}, got {raw:?}"))),
        }
    }
    let area = OverviewArea {
        x: num(&given, "x", 0i64, "an integer world column")?,
        z: num(&given, "z", 0i64, "an integer world column")?,
        step: num(&given, "step", 16u32, &format!("a power of two from 1 to {MAX_OVERVIEW_STEP}"))?,
        size: num(&given, "size", 128u32, &format!("an integer from 1 to {MAX_OVERVIEW_SIZE}"))?,
    };
    area.validate().map_err(|e| bad_query(e.field, e.message))?;
    Ok(area)
}

/// The binary form ([`OVERVIEW_BINARY`]).
pub fn encode_binary(tile: &Overview, revision: u32) -> Vec<u8> {
    let a = tile.area;
    let n = a.len();
    let mut out = Vec::with_capacity(32 + 5 * n);
    out.extend_from_slice(b"WLOV");
    out.extend_from_slice(&1u32.to_le_bytes());
    // Validated areas lie within ±2^29 columns: they fit an i32.
    out.extend_from_slice(&(a.x as i32).to_le_bytes());
    out.extend_from_slice(&(a.z as i32).to_le_bytes());
    out.extend_from_slice(&a.step.to_le_bytes());
    out.extend_from_slice(&a.size.to_le_bytes());
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for h in &tile.height {
        out.extend_from_slice(&h.to_le_bytes());
    }
    out.extend(tile.biome.iter().map(|b| u8::try_from(*b).unwrap_or(u8::MAX)));
    out
}

impl Coordinator {
    /// A core-only overview tile of `world`, from the node owning the region
    /// of the tile's first column.
    pub async fn overview(&self, world: &World, area: OverviewArea) -> Result<std::sync::Arc<Overview>> {
        let size = CHUNK_SIZE as i64;
        let coord = ChunkCoord::new(area.x.div_euclid(size) as i32, area.z.div_euclid(size) as i32);
        let by = RouteBy::Region(world.record.id.clone(), coord.region());
        let request = NodeRequest::Overview { spec: world.spec.clone(), area };
        match self.ask_node(by, request, Duration::from_secs(60)).await? {
            NodeResponse::Overview(tile) if tile.area == area => Ok(tile),
            _ => Err(Error::internal("a node answered an overview request with something else")),
        }
    }
}

#[utoipa::path(get, path = "/v1/worlds/{id}/overview", tag = "chunks", operation_id = "get_overview",
    description = "A coarse, core-only overview: the height and biome of `size` x `size` columns every `step` \
        columns from world column (`x`, `z`), sampled by a generation node from the core alone (plugins are \
        not applied; `source` is `core`), bit for bit the core chunk's values at those columns. JSON by \
        default; with `Accept: application/octet-stream` a binary tile: a 32-byte little-endian header \
        (`WLOV`, u32 version 1, i32 x, i32 z, u32 step, u32 size, u32 revision, u32 flags), then size² f32 \
        heights and size² u8 biome ids, sample (i, j) at i·size + j.",
    params(("id" = String, Path, description = "World id"), OverviewQuery,
        ("Accept" = Option<String>, Header, description = "`application/json` (the default) or `application/octet-stream`")),
    responses(
        (status = 200, description = "The overview tile",
            content((OverviewJson = "application/json"), ("application/octet-stream")),
            headers(
                ("X-Worldloom-Source" = String, description = "Always `core`: plugins are not applied"),
                ("X-Worldloom-Revision" = u32, description = "The world revision it was asked at"),
                ("ETag" = String, description = "World, revision and area"),
            )),
        (status = 400, description = "A query parameter is malformed or out of range; `field` names it (`invalid_query`)", body = ErrorBody),
        (status = 404, description = "No such world", body = ErrorBody),
        (status = 406, description = "The Accept header names neither media type (`not_acceptable`)", body = ErrorBody),
        (status = 503, description = "No generation node could answer; retry (`Retry-After`)", body = ErrorBody),
    ))]
async fn overview(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> std::result::Result<HttpResponse, ApiError> {
    let world = state.coordinator.world(&id).await?;
    let area = parse_area(req.query_string())?;
    let binary = negotiate(&req)?;
    let tile = state.coordinator.overview(&world, area).await?;
    let revision = world.record.revision;
    let mut res = HttpResponse::Ok();
    res.insert_header(("X-Worldloom-Source", "core"))
        .insert_header(("X-Worldloom-Revision", revision.to_string()))
        .insert_header((
            header::ETAG,
            format!("\"{}-r{revision}-ov-{}-{}-{}-{}\"", world.record.id, area.x, area.z, area.step, area.size),
        ));
    if binary {
        return Ok(res.content_type(OCTET_STREAM).body(encode_binary(&tile, revision)));
    }
    let size = area.size as usize;
    Ok(res.json(OverviewJson {
        source: "core",
        plugins_applied: false,
        world: world.record.id.as_str(),
        revision,
        x: area.x,
        z: area.z,
        step: area.step,
        size: area.size,
        height: tile.height.chunks(size).collect(),
        biome: tile.biome.chunks(size).collect(),
    }))
}

/// Whether the client asked for the binary form (JSON otherwise; 406 for neither).
fn negotiate(req: &HttpRequest) -> Result<bool> {
    let Some(accept) = req.headers().get(header::ACCEPT) else { return Ok(false) };
    let accept = accept.to_str().unwrap_or("");
    let ranges: Vec<&str> =
        accept.split(',').map(|r| r.split(';').next().unwrap_or("").trim()).filter(|r| !r.is_empty()).collect();
    if ranges.is_empty() {
        return Ok(false);
    }
    match ranges.iter().find(|r| matches!(**r, OCTET_STREAM | "application/json" | "application/*" | "*/*")) {
        Some(r) => Ok(*r == OCTET_STREAM),
        None => Err(Error::new(
            ErrorKind::NotAcceptable,
            format!("cannot produce {accept:?}; overviews are available as application/json or {OCTET_STREAM}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overview_queries_are_checked_by_field() {
        assert_eq!(parse_area("").unwrap(), OverviewArea { x: 0, z: 0, step: 16, size: 128 });
        assert_eq!(
            parse_area("x=-64&z=32&step=1&size=256").unwrap(),
            OverviewArea { x: -64, z: 32, step: 1, size: 256 }
        );
        for (q, field) in [
            ("x=abc", "x"),
            ("z=1.5", "z"),
            ("step=3", "step"),
            ("step=128", "step"),
            ("size=0", "size"),
            ("size=300", "size"),
            ("x=9999999999999", "x"),
            ("zoom=2", "zoom"),
            ("x=1&x=2", "x"),
        ] {
            let e = parse_area(q).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Malformed, "{q}");
            assert_eq!(e.field.as_deref(), Some(field), "{q}: {e}");
        }
    }

    #[test]
    fn the_binary_layout_is_as_documented() {
        let area = OverviewArea { x: -32, z: 64, step: 2, size: 3 };
        let tile = worldloom_worldgen::overview::overview(5, &Default::default(), area);
        let b = encode_binary(&tile, 7);
        assert_eq!(b.len(), 32 + 9 * 5);
        assert_eq!(&b[..4], b"WLOV");
        let u = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        assert_eq!((u(4), u(8) as i32, u(12) as i32, u(16), u(20), u(24), u(28)), (1, -32, 64, 2, 3, 7, 0));
        assert_eq!(f32::from_le_bytes(b[32 + 4 * 4..32 + 4 * 5].try_into().unwrap()), tile.height[4]);
        assert_eq!(u16::from(b[32 + 36 + 8]), tile.biome[8]);
    }

    #[test]
    fn the_pages_load_nothing_from_elsewhere() {
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"));
        }
        assert!(INDEX_HTML.contains("/viewer/app.js") && INDEX_HTML.contains("/viewer/style.css"));
    }
}
