//! The HTTP API: routes, content negotiation and JSON errors.
//!
//! Every error a client can see is JSON with a stable `code`, a `message`
//! and, where there is one, the `field` at fault; bad input is always a 4xx.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use worldloom_cluster::model::ChunkRecord;
use worldloom_cluster::{Error, ErrorKind};
use worldloom_worldgen::{BIOMES, ChunkCoord, params::PARAM_SPECS};

use crate::api::{self, CreateWorld, ErrorBody, WorldView};
use crate::auth::Account;
use crate::workshop::{self, MAX_PAGE, Upload, VersionView};
use crate::{Coordinator, WorldChange};

/// Media type of the versioned postcard encoding.
pub const POSTCARD: &str = "application/x-postcard";

/// An [`Error`] as an HTTP response, with the status its kind implies.
#[derive(Debug)]
pub struct ApiError(pub Error, pub StatusCode);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = status_of(e.kind);
        ApiError(e, status)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The HTTP status of an error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Malformed => StatusCode::BAD_REQUEST,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.1
    }

    fn error_response(&self) -> HttpResponse {
        if self.0.kind == ErrorKind::Internal {
            tracing::error!(error = %self.0, "internal error");
        }
        let mut res = HttpResponse::build(self.status_code());
        if self.0.kind == ErrorKind::Unavailable {
            res.insert_header((header::RETRY_AFTER, "1"));
        }
        res.json(ErrorBody::from(&self.0))
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Shared state of every handler.
pub struct AppState {
    pub coordinator: Arc<Coordinator>,
    /// This process's metrics (a node's too, in the embedded server).
    pub metrics: Arc<worldloom_cluster::metrics::Metrics>,
}

/// Mounts the API on an actix-web app. A known path with the wrong method is a 405.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/readyz").route(web::get().to(readyz)))
        .service(resource("/metrics").route(web::get().to(metrics)))
        .service(resource(worldloom_cluster::protocol::HEARTBEAT_PATH).route(web::post().to(heartbeat)))
        .service(resource("/v1/biomes").route(web::get().to(biomes)))
        .service(resource("/v1/params").route(web::get().to(params)))
        .service(resource("/v1/worlds").route(web::post().to(create_world)).route(web::get().to(list_worlds)))
        .service(resource("/v1/worlds/{id}").route(web::get().to(get_world)))
        .service(resource("/v1/worlds/{id}/plugins").route(web::put().to(put_world_plugins)))
        .service(resource("/v1/worlds/{id}/params").route(web::put().to(put_world_params)))
        .service(resource("/v1/plugins").route(web::post().to(upload_plugin)).route(web::get().to(list_plugins)))
        .service(resource("/v1/plugins/{name}").route(web::get().to(get_plugin)))
        .service(resource("/v1/plugins/{name}/{version}").route(web::get().to(get_plugin_version)))
        .service(resource("/v1/plugins/{name}/{version}/source").route(web::get().to(get_plugin_source)))
        .service(resource("/v1/plugins/{name}/{version}/yank").route(web::post().to(yank)))
        .service(resource("/v1/plugins/{name}/{version}/unyank").route(web::post().to(unyank)))
        .service(resource("/v1/worlds/{id}/chunks/{cx}/{cz}").route(web::get().to(get_chunk)))
        .service(resource("/v1/worlds/{id}/stream").route(web::get().to(crate::stream::stream)));
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let e = Error::new(ErrorKind::Malformed, format!("{} is not supported on {}", req.method(), req.path()))
        .with_code("method_not_allowed");
    ApiError(e, StatusCode::METHOD_NOT_ALLOWED).error_response()
}

/// Rewrites any error response that is not already JSON (unknown route, wrong
/// method, oversized body, ...) into the API's JSON error shape.
pub fn json_errors<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_json = res
            .response()
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("no_route", "no such endpoint; see the README for the API".to_owned()),
            StatusCode::METHOD_NOT_ALLOWED => {
                ("method_not_allowed", "this endpoint does not accept that method".into())
            }
            StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is too large".into()),
            s if s.is_client_error() => ("bad_request", format!("bad request: {}", s.canonical_reason().unwrap_or(""))),
            s => ("internal", format!("server error: {}", s.canonical_reason().unwrap_or(""))),
        };
        let replacement = HttpResponse::build(status).json(json!({ "code": code, "message": message }));
        Ok(ErrorHandlerResponse::Response(res.into_response(replacement).map_into_right_body()))
    })
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let c = &state.coordinator;
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "role": "coordinator",
        "nodes": c.node_count().await,
        "worlds_cached": c.cached_worlds(),
        "storage": c.store().describe(),
    }))
}

/// Ready once the registry is open (this handler runs only then); the body
/// says which nodes are live.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ready", "nodes": state.coordinator.members().await }))
}

/// `GET /metrics`: the Prometheus text exposition.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type(worldloom_cluster::metrics::CONTENT_TYPE).body(state.metrics.render())
}

/// `POST /internal/v1/heartbeat`: a node registers or stays live.
async fn heartbeat(state: web::Data<AppState>, req: HttpRequest, body: Bytes) -> HttpResponse {
    use worldloom_cluster::protocol::{HelloReply, NodeHello, PROTOCOL_HEADER, PROTOCOL_VERSION};
    let c = &state.coordinator;
    let refuse = |status: StatusCode, code: &str, message: String| {
        HttpResponse::build(status).json(json!({ "code": code, "message": message }))
    };
    let Some(secret) = c.config.cluster.secret.as_deref() else {
        return refuse(StatusCode::NOT_FOUND, "no_cluster", "this server takes no remote nodes".into());
    };
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !worldloom_cluster::protocol::presents_secret(authorization, secret) {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "the cluster secret is missing or wrong".into());
    }
    let theirs =
        worldloom_cluster::protocol::parse_protocol(req.headers().get(PROTOCOL_HEADER).and_then(|v| v.to_str().ok()));
    match theirs {
        Some(PROTOCOL_VERSION) => {}
        Some(v) => {
            tracing::warn!(node_protocol = v, "refused a node of another protocol version");
            return refuse(StatusCode::CONFLICT, "protocol_mismatch", crate::remote::refusal(v));
        }
        None => return refuse(StatusCode::BAD_REQUEST, "protocol_missing", format!("no {PROTOCOL_HEADER} header")),
    }
    let hello = match worldloom_cluster::wire::decode::<NodeHello>(&body) {
        Ok(h) => h,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "malformed_frame", e.message),
    };
    if !(hello.url.starts_with("http://") || hello.url.starts_with("https://")) {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
            format!("node url {:?} is not http(s)", hello.url),
        );
    }
    c.actor().do_send(crate::actor::Heartbeat { id: hello.id, url: hello.url, ready: hello.ready });
    let reply = HelloReply {
        protocol: PROTOCOL_VERSION,
        heartbeat_ms: c.config.cluster.heartbeat_ms,
        node_timeout_ms: c.config.cluster.node_timeout_ms,
    };
    HttpResponse::Ok().content_type(POSTCARD).body(worldloom_cluster::wire::encode(&reply))
}

async fn biomes() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "biomes": BIOMES }))
}

async fn params() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "params": PARAM_SPECS }))
}

/// The account making a write request (401 without a valid token).
async fn account(state: &AppState, req: &HttpRequest) -> ApiResult<Account> {
    let header = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    Ok(state.coordinator.authenticate(header).await?)
}

async fn create_world(state: web::Data<AppState>, req: HttpRequest, body: Bytes) -> ApiResult<HttpResponse> {
    let owner = account(&state, &req).await?;
    let (mut draft, plugins) = api::parse_json::<CreateWorld>(&body)?.validate()?;
    draft.plugins = state.coordinator.attach(plugins).await?;
    let world = state.coordinator.create_world(draft, &owner).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/worlds/{}", world.record.id)))
        .json(WorldView::from(&world.record)))
}

async fn list_worlds(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let worlds = state.coordinator.worlds().await?;
    let views: Vec<WorldView<'_>> = worlds.iter().map(|w| WorldView::from(&w.record)).collect();
    Ok(HttpResponse::Ok().json(json!({ "worlds": views })))
}

async fn get_world(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let world = state.coordinator.world(&id).await?;
    Ok(HttpResponse::Ok().json(WorldView::from(&world.record)))
}

async fn put_world_plugins(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    let who = account(&state, &req).await?;
    state.coordinator.world(&id).await?;
    let change: api::SetPlugins = api::parse_json(&body)?;
    let plugins = state.coordinator.attach(change.plugins).await?;
    let world = state.coordinator.update_world(&id, &who, WorldChange::Plugins(plugins)).await?;
    Ok(HttpResponse::Ok().json(WorldView::from(&world.record)))
}

async fn put_world_params(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Bytes,
) -> ApiResult<HttpResponse> {
    let who = account(&state, &req).await?;
    state.coordinator.world(&id).await?;
    let change: api::SetParams = api::parse_json(&body)?;
    let params = api::resolve_params(change.params)?;
    let world = state.coordinator.update_world(&id, &who, WorldChange::Params(params)).await?;
    Ok(HttpResponse::Ok().json(WorldView::from(&world.record)))
}

/// Reads a whole request body, refusing more than `limit` bytes.
async fn read_body(mut payload: web::Payload, limit: usize) -> ApiResult<Bytes> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Error::new(ErrorKind::Malformed, format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(
                Error::new(ErrorKind::TooLarge, format!("the request body is larger than {limit} bytes")).into()
            );
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads a `multipart/form-data` upload: text fields `name`, `version`,
/// `description`, `runtime` and the file (or text) field `source`.
async fn multipart_upload(req: &HttpRequest, payload: web::Payload, limit: usize) -> ApiResult<Upload> {
    let malformed = |m: String| Error::new(ErrorKind::Malformed, m).with_code("malformed_multipart");
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut total = 0usize;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| malformed(format!("not a valid multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        if !["name", "version", "description", "runtime", "source"].contains(&name.as_str()) {
            return Err(Error::invalid(
                name.clone(),
                format!("unknown form field {name:?}; expected name, version, description, runtime, source"),
            )
            .into());
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| malformed(format!("reading form field {name}: {e}")))?;
            total += chunk.len();
            if total > limit {
                return Err(Error::new(ErrorKind::TooLarge, format!("the upload is larger than {limit} bytes")).into());
            }
            value.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(value)
            .map_err(|_| Error::invalid(name.clone(), format!("form field {name} is not UTF-8 text")))?;
        if fields.insert(name.clone(), text).is_some() {
            return Err(Error::invalid(name.clone(), format!("form field {name} is given twice")).into());
        }
    }
    let mut take = |f: &str| fields.remove(f);
    let missing = |f: &str| Error::invalid(f, format!("the form has no {f} field"));
    Ok(Upload {
        name: take("name").ok_or_else(|| missing("name"))?,
        version: take("version").ok_or_else(|| missing("version"))?,
        description: take("description").unwrap_or_default(),
        runtime: take("runtime"),
        source: take("source").ok_or_else(|| missing("source"))?,
    })
}

async fn upload_plugin(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> ApiResult<HttpResponse> {
    let who = account(&state, &req).await?;
    let limit = state.coordinator.config.max_body_bytes;
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let upload: Upload = if is_multipart {
        multipart_upload(&req, payload, limit).await?
    } else {
        api::parse_json(&read_body(payload, limit).await?)?
    };
    let record = state.coordinator.upload_plugin(&who, upload).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/plugins/{}/{}", record.name, record.version)))
        .json(VersionView::from(&record)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_plugins(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let query = web::Query::<ListQuery>::from_query(req.query_string()).map_err(|e| {
        Error::new(ErrorKind::Malformed, format!("bad query: {e}; use ?q=TEXT&offset=N&limit=N"))
            .with_code("invalid_query")
    })?;
    if query.q.chars().count() > 100 {
        return Err(Error::invalid("q", "q is longer than 100 characters").into());
    }
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::invalid("limit", format!("limit must be from 1 to {MAX_PAGE}")).into());
    }
    let offset = query.offset.unwrap_or(0);
    let c = &state.coordinator;
    let (total, page) = c.workshop().search(c.store().as_ref(), &query.q, offset, limit).await?;
    let items: Vec<serde_json::Value> = page
        .iter()
        .map(|(name, entry)| {
            let latest = entry.latest();
            json!({
                "name": name,
                "owner": entry.owner,
                "latest_version": latest.map(|v| &v.version),
                "description": latest.map(|v| &v.description),
                "hooks": latest.map(|v| &v.info.hooks),
                "versions": entry.versions.len(),
                "created_unix_s": entry.created_unix_s,
            })
        })
        .collect();
    let next = (offset + page.len() < total).then_some(offset + page.len());
    Ok(HttpResponse::Ok()
        .json(json!({ "plugins": items, "total": total, "offset": offset, "limit": limit, "next_offset": next })))
}

async fn get_plugin(state: web::Data<AppState>, name: web::Path<String>) -> ApiResult<HttpResponse> {
    let c = &state.coordinator;
    let entry = c.workshop().get(c.store().as_ref(), &name).await?.ok_or_else(|| workshop::unknown_plugin(&name))?;
    let versions: Vec<VersionView<'_>> = entry.versions.values().rev().map(VersionView::from).collect();
    Ok(HttpResponse::Ok().json(json!({
        "name": name.as_str(),
        "owner": entry.owner,
        "created_unix_s": entry.created_unix_s,
        "latest_version": entry.latest().map(|v| &v.version),
        "versions": versions,
    })))
}

async fn get_plugin_version(state: web::Data<AppState>, path: web::Path<(String, String)>) -> ApiResult<HttpResponse> {
    let (name, version) = path.into_inner();
    let (entry, parsed) = state.coordinator.find_version(&name, &version).await?;
    Ok(HttpResponse::Ok().json(VersionView::from(&entry.versions[&parsed])))
}

async fn get_plugin_source(state: web::Data<AppState>, path: web::Path<(String, String)>) -> ApiResult<HttpResponse> {
    let (name, version) = path.into_inner();
    let (entry, parsed) = state.coordinator.find_version(&name, &version).await?;
    let record = &entry.versions[&parsed];
    let source = state.coordinator.plugin_source(record).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/x-python; charset=utf-8")
        .insert_header((header::ETAG, format!("\"{}\"", record.sha256)))
        .body(source))
}

async fn yank(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    set_yanked(state, req, path, true).await
}

async fn unyank(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    set_yanked(state, req, path, false).await
}

async fn set_yanked(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    yanked: bool,
) -> ApiResult<HttpResponse> {
    let who = account(&state, &req).await?;
    let (name, version) = path.into_inner();
    let record = state.coordinator.set_yanked(&who, &name, &version, yanked).await?;
    Ok(HttpResponse::Ok().json(VersionView::from(&record)))
}

/// Parses a chunk coordinate path segment.
pub fn parse_coord(name: &str, raw: &str) -> Result<i32, Error> {
    raw.parse::<i32>().map_err(|_| {
        Error::new(ErrorKind::Malformed, format!("{name} must be an integer chunk coordinate, got {raw:?}"))
            .with_field(name)
            .with_code("invalid_coordinate")
    })
}

enum Format {
    Json,
    Postcard,
}

fn negotiate(req: &HttpRequest) -> Result<Format, Error> {
    let Some(accept) = req.headers().get(header::ACCEPT) else {
        return Ok(Format::Json);
    };
    let accept = accept.to_str().unwrap_or("");
    let ranges: Vec<&str> =
        accept.split(',').map(|r| r.split(';').next().unwrap_or("").trim()).filter(|r| !r.is_empty()).collect();
    if ranges.is_empty() {
        return Ok(Format::Json);
    }
    if let Some(first) = ranges.iter().find(|r| matches!(**r, POSTCARD | "application/json" | "application/*" | "*/*"))
    {
        return Ok(if *first == POSTCARD { Format::Postcard } else { Format::Json });
    }
    Err(Error::new(
        ErrorKind::NotAcceptable,
        format!("cannot produce {accept:?}; chunks are available as application/json or {POSTCARD}"),
    ))
}

async fn get_chunk(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, cx, cz) = path.into_inner();
    let world = state.coordinator.world(&id).await?;
    let coord = ChunkCoord::new(parse_coord("cx", &cx)?, parse_coord("cz", &cz)?);
    let format = negotiate(&req)?;
    let reply = state.coordinator.chunk(&world, coord).await?;
    let revision = world.record.revision;
    let etag = format!("\"{}-r{revision}-{}-{}\"", world.record.id, coord.cx, coord.cz);
    let mut res = HttpResponse::Ok();
    res.insert_header(("X-Worldloom-Revision", revision.to_string()))
        .insert_header(("X-Worldloom-Cache", if reply.generated { "miss" } else { "hit" }));
    if reply.stored {
        res.insert_header((header::ETAG, etag));
    } else {
        // Not this chunk's truth (a plugin failure that depends on more than
        // the inputs): generated again next time; nothing may cache it.
        res.insert_header(("X-Worldloom-Provisional", "true")).insert_header((header::CACHE_CONTROL, "no-store"));
    }
    Ok(match format {
        Format::Postcard => res.content_type(POSTCARD).body(reply.envelope.clone()),
        Format::Json => {
            let record = worldloom_cluster::wire::decode::<ChunkRecord>(&reply.envelope)?;
            res.json(record.json())
        }
    })
}
