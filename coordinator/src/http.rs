//! The HTTP API: routes, content negotiation and JSON errors.
//!
//! Every error a client can see is JSON with a stable `code`, a `message`
//! and, where there is one, the `field` at fault; bad input is always a 4xx.
//!
//! Every public route is registered once, in [`routes`], as an [`Endpoint`]
//! built from its handler and the handler's `#[utoipa::path]` description:
//! the router (path, method, 405 for the others) and the OpenAPI document
//! served at `GET /openapi.json` ([`openapi`]) come from that one
//! registration, so they cannot drift apart.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{AppService, HttpServiceFactory, ServiceResponse};
use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{FromRequest, Handler, HttpRequest, HttpResponse, Responder, ResponseError, web};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use worldloom_cluster::model::ChunkRecord;
use worldloom_cluster::{Error, ErrorKind};
use worldloom_worldgen::{BIOMES, ChunkCoord, params::PARAM_SPECS};

use utoipa::openapi::RefOr;
use utoipa::openapi::path::{HttpMethod, Paths};
use utoipa::openapi::schema::Schema;
use utoipa_actix_web::OpenApiFactory;
use utoipa_actix_web::service_config::ServiceConfig;

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
    routes(&mut ServiceConfig::new(cfg));
}

/// Every route, registered through utoipa-actix-web's service config: each
/// public [`Endpoint`] gives the router its resource and the OpenAPI document
/// its operations. A new public route is added here as an `Endpoint` (with a
/// `#[utoipa::path]` on its handler, or on a doc-only function next to the
/// others when the handler lives elsewhere); tests/it/openapi.rs fails for a
/// served route that is not documented.
fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(Endpoint::new(__path_healthz, healthz))
        .service(Endpoint::new(__path_readyz, readyz))
        .service(Endpoint::new(__path_metrics, metrics))
        .service(Endpoint::new(__path_openapi_json, openapi_json))
        .service(Endpoint::new(__path_biomes, biomes))
        .service(Endpoint::new(__path_params, params))
        .service(Endpoint::new(__path_create_world, create_world).and(__path_list_worlds, list_worlds))
        .service(Endpoint::new(__path_get_world, get_world))
        .service(Endpoint::new(__path_put_world_plugins, put_world_plugins))
        .service(Endpoint::new(__path_put_world_params, put_world_params))
        .service(Endpoint::new(__path_upload_plugin, upload_plugin).and(__path_list_plugins, list_plugins))
        .service(Endpoint::new(__path_get_plugin, get_plugin))
        .service(Endpoint::new(__path_get_plugin_version, get_plugin_version))
        .service(Endpoint::new(__path_get_plugin_source, get_plugin_source))
        .service(Endpoint::new(__path_yank, yank))
        .service(Endpoint::new(__path_unyank, unyank))
        .service(Endpoint::new(__path_get_chunk, get_chunk))
        .service(Endpoint::new(__path_stream, crate::stream::stream))
        .configure(crate::viewer::routes)
        // Not in the public document: the node-to-coordinator heartbeat is
        // cluster plumbing (postcard bodies, the cluster secret, a protocol
        // version header), not an API for clients; documenting it would
        // invite clients and API fuzzers to call a route that only nodes
        // may. It is listed in INTERNAL_ROUTES and keeps its 405.
        .map(|cfg| {
            cfg.service(
                web::resource(worldloom_cluster::protocol::HEARTBEAT_PATH)
                    .default_service(web::to(method_not_allowed))
                    .route(web::post().to(heartbeat)),
            )
        });
}

/// Routes the server serves that are deliberately not in the OpenAPI document, as (method, path).
pub const INTERNAL_ROUTES: &[(&str, &str)] = &[("POST", worldloom_cluster::protocol::HEARTBEAT_PATH)];

/// Every route the coordinator serves, as (method, path, documented): the
/// document's operations and [`INTERNAL_ROUTES`].
pub fn served_routes() -> Vec<(String, String, bool)> {
    let mut all: Vec<(String, String, bool)> = openapi()
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| operations(item).into_iter().map(move |(m, _)| (m.to_owned(), path.clone(), true)))
        .collect();
    all.extend(INTERNAL_ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned(), false)));
    all
}

fn operations(item: &utoipa::openapi::PathItem) -> Vec<(&'static str, &utoipa::openapi::path::Operation)> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_ref().map(|op| (m, op)))
    .collect()
}

/// One path of the API: an actix resource that answers 405 for methods it
/// does not serve, and the OpenAPI operations of the methods it does, taken
/// from each handler's `#[utoipa::path]` (its path and method decide the route).
pub struct Endpoint {
    path: String,
    resource: actix_web::Resource,
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Endpoint {
    /// The resource at `doc`'s path, serving `doc`'s method with `handler`.
    pub fn new<D, F, Args>(doc: D, handler: F) -> Endpoint
    where
        D: OpenApiFactory + utoipa::Path,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let path = D::path();
        let resource = web::resource(path.as_str()).default_service(web::to(method_not_allowed));
        Endpoint { path, resource, paths: Paths::new(), schemas: Vec::new() }.and(doc, handler)
    }

    /// Another method on the same path.
    pub fn and<D, F, Args>(mut self, doc: D, handler: F) -> Endpoint
    where
        D: OpenApiFactory + utoipa::Path,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        assert_eq!(D::path(), self.path, "an Endpoint serves one path");
        for m in D::methods() {
            let method = match m {
                HttpMethod::Get => Method::GET,
                HttpMethod::Post => Method::POST,
                HttpMethod::Put => Method::PUT,
                HttpMethod::Delete => Method::DELETE,
                HttpMethod::Options => Method::OPTIONS,
                HttpMethod::Head => Method::HEAD,
                HttpMethod::Patch => Method::PATCH,
                HttpMethod::Trace => Method::TRACE,
            };
            self.resource = self.resource.route(web::method(method).to(handler.clone()));
        }
        self.paths.merge(doc.paths());
        doc.schemas(&mut self.schemas);
        self
    }
}

impl HttpServiceFactory for Endpoint {
    fn register(self, config: &mut AppService) {
        self.resource.register(config);
    }
}

impl OpenApiFactory for Endpoint {
    fn paths(&self) -> Paths {
        self.paths.clone()
    }

    fn schemas(&self, schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.extend(self.schemas.iter().cloned());
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Worldloom",
        description = "Procedural world generation: worlds, chunks and the plugin workshop.\n\n\
            Every error is JSON (`Error`: a stable `code`, a `message`, the `field` at fault and optional \
            `details`). A known path with a method it does not serve answers 405 `method_not_allowed`; \
            an unknown path 404 `no_route`; a body over the server's limit 413 `too_large`. Writes need \
            `Authorization: Bearer TOKEN` (401 without a valid one, 403 on another account's world or \
            plugin). The WebSocket protocol of `/v1/worlds/{id}/stream` is in docs/api.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document"),
        (name = "reference", description = "The generation parameters and the biome table"),
        (name = "worlds", description = "Worlds, their plugins and parameters"),
        (name = "chunks", description = "Generated chunks, one at a time or streamed"),
        (name = "workshop", description = "Uploaded plugins and their versions"),
    )
)]
struct ApiDoc;

/// The OpenAPI 3.1 document of the public HTTP API, from [`routes`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    use utoipa_actix_web::AppExt as _;
    let (_, mut doc) =
        actix_web::App::new().into_utoipa_app().openapi(ApiDoc::openapi()).configure(routes).split_for_parts();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        utoipa::openapi::security::SecurityScheme::Http(
            utoipa::openapi::security::HttpBuilder::new()
                .scheme(utoipa::openapi::security::HttpAuthScheme::Bearer)
                .description(Some("An API token from `worldloom token create NAME`."))
                .build(),
        ),
    );
    // Any operation may fail inside the server; say so once, here.
    for item in doc.paths.paths.values_mut() {
        for op in
            [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
        {
            op.responses.responses.entry("500".into()).or_insert_with(|| {
                utoipa::openapi::ResponseBuilder::new()
                    .description("Internal error (`internal`)")
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new().schema(Some(error_ref())).build(),
                    )
                    .into()
            });
        }
    }
    doc
}

/// The name of the bearer-token security scheme.
const BEARER: &str = "bearer";

fn error_ref() -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Error"))
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    operation_id = "openapi",
    responses((status = 200, description = "This OpenAPI 3.1 document", body = Object, content_type = "application/json"))
)]
async fn openapi_json() -> HttpResponse {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOC.get_or_init(|| openapi().to_json().expect("the document serializes"));
    HttpResponse::Ok().content_type("application/json").body(text.as_str())
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let e = Error::new(ErrorKind::Malformed, format!("{} is not supported on {}", req.method(), req.path()))
        .with_code("method_not_allowed");
    let mut res = ApiError(e, StatusCode::METHOD_NOT_ALLOWED).error_response();
    // A 405 lists the methods the path does serve (RFC 9110, section 15.5.6).
    if let Some(allow) = req.match_pattern().and_then(|p| allowed_methods(&p))
        && let Ok(value) = header::HeaderValue::from_str(allow)
    {
        res.headers_mut().insert(header::ALLOW, value);
    }
    res
}

/// The methods served on a route pattern, as an `Allow` header value.
fn allowed_methods(pattern: &str) -> Option<&'static str> {
    static ALLOW: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    let by_path = ALLOW.get_or_init(|| {
        let mut methods: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (method, path, _) in served_routes() {
            methods.entry(path).or_default().push(method);
        }
        methods.into_iter().map(|(path, m)| (path, m.join(", "))).collect()
    });
    by_path.get(pattern).map(String::as_str)
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

#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "healthz",
    responses((status = 200, description = "The coordinator is up", body = api::Health)))]
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let c = &state.coordinator;
    HttpResponse::Ok().json(api::Health {
        status: "ok",
        role: "coordinator",
        nodes: c.node_count().await,
        worlds_cached: c.cached_worlds(),
        storage: c.store().describe(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "readyz",
    responses((status = 200, description = "Ready: the registry is open; the live nodes", body = api::Ready)))]
/// Ready once the registry is open (this handler runs only then); the body
/// says which nodes are live.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(api::Ready { status: "ready", nodes: state.coordinator.members().await })
}

#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition (format 0.0.4)", body = String,
        content_type = "text/plain")))]
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

#[utoipa::path(get, path = "/v1/biomes", tag = "reference", operation_id = "list_biomes",
    responses((status = 200, description = "The biome table; ids are stable", body = api::BiomeTable)))]
async fn biomes() -> HttpResponse {
    HttpResponse::Ok().json(api::BiomeTable { biomes: BIOMES })
}

#[utoipa::path(get, path = "/v1/params", tag = "reference", operation_id = "list_params",
    responses((status = 200, description = "Every generation parameter: default, range, unit, meaning",
        body = api::ParamTable)))]
async fn params() -> HttpResponse {
    HttpResponse::Ok().json(api::ParamTable { params: PARAM_SPECS })
}

/// The account making a write request (401 without a valid token).
async fn account(state: &AppState, req: &HttpRequest) -> ApiResult<Account> {
    // More than one Authorization header is ambiguous (which one would a
    // proxy in front of us have checked?): refuse it instead of picking one.
    let mut headers = req.headers().get_all(header::AUTHORIZATION);
    let header = headers.next().map(|v| v.as_bytes());
    let extra = headers.count();
    if extra > 0 {
        return Err(Error::new(
            ErrorKind::Unauthorized,
            format!("the request has {} Authorization headers; send exactly one `Bearer TOKEN`", extra + 1),
        )
        .into());
    }
    Ok(state.coordinator.authenticate(header).await?)
}

#[utoipa::path(post, path = "/v1/worlds", tag = "worlds", operation_id = "create_world",
    request_body(content = CreateWorld, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; defaults filled in", body = WorldView,
            headers(("Location" = String, description = "The world's URL"))),
        (status = 400, description = "The body is not JSON (`malformed_json`)", body = ErrorBody),
        (status = 401, description = "No valid token (`unauthorized`)", body = ErrorBody),
        (status = 409, description = "A concurrent change; retry (`concurrent_change`)", body = ErrorBody),
        (status = 408, description = "The body stopped arriving (`body_timeout`)", body = ErrorBody),
        (status = 413, description = "The body is too large (`too_large`)", body = ErrorBody),
        (status = 422, description = "Invalid values (`invalid_params`, `invalid_field`), or a plugin that is not in the workshop \
            (`unknown_plugin`, `unknown_version`) or is yanked (`plugin_yanked`); `field` names it", body = ErrorBody),
        (status = 503, description = "Storage or the generation nodes are unavailable (`Retry-After`)", body = ErrorBody),
    ))]
async fn create_world(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> ApiResult<HttpResponse> {
    let owner = account(&state, &req).await?;
    let body = read_body(&req, payload, state.coordinator.config.max_body_bytes).await?;
    let (mut draft, plugins) = api::parse_json::<CreateWorld>(&body)?.validate()?;
    draft.plugins = state.coordinator.attach(plugins).await?;
    let world = state.coordinator.create_world(draft, &owner).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/worlds/{}", world.record.id)))
        .json(WorldView::from(&world.record)))
}

#[utoipa::path(get, path = "/v1/worlds", tag = "worlds", operation_id = "list_worlds",
    responses(
        (status = 200, description = "Every world", body = api::WorldList),
        (status = 503, description = "Storage is unavailable", body = ErrorBody),
    ))]
async fn list_worlds(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let worlds = state.coordinator.worlds().await?;
    let views: Vec<WorldView<'_>> = worlds.iter().map(|w| WorldView::from(&w.record)).collect();
    Ok(HttpResponse::Ok().json(api::WorldList { worlds: views }))
}

#[utoipa::path(get, path = "/v1/worlds/{id}", tag = "worlds", operation_id = "get_world", params(("id" = String, Path, description = "World id")),
    responses(
        (status = 200, description = "The world", body = WorldView),
        (status = 404, description = "No such world (`not_found`)", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody),
    ))]
async fn get_world(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let world = state.coordinator.world(&id).await?;
    Ok(HttpResponse::Ok().json(WorldView::from(&world.record)))
}

#[utoipa::path(put, path = "/v1/worlds/{id}/plugins", tag = "worlds", operation_id = "set_world_plugins", params(("id" = String, Path, description = "World id")),
    request_body(content = api::SetPlugins, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The world at its new revision (the same revision when nothing changed)",
            body = WorldView),
        (status = 400, description = "The body is not JSON (`malformed_json`)", body = ErrorBody),
        (status = 401, description = "No valid token (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "The world belongs to another account (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such world (`not_found`)", body = ErrorBody),
        (status = 409, description = "A concurrent change; retry (`concurrent_change`)", body = ErrorBody),
        (status = 408, description = "The body stopped arriving (`body_timeout`)", body = ErrorBody),
        (status = 413, description = "The body is too large (`too_large`)", body = ErrorBody),
        (status = 422, description = "Invalid values; `field` names the one at fault", body = ErrorBody),
        (status = 503, description = "Storage or the generation nodes are unavailable (`Retry-After`)", body = ErrorBody),
    ))]
async fn put_world_plugins(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let who = account(&state, &req).await?;
    let world = state.coordinator.world(&id).await?;
    owned_by(&world, &who)?;
    let body = read_body(&req, payload, state.coordinator.config.max_body_bytes).await?;
    let change: api::SetPlugins = api::parse_json(&body)?;
    api::check_plugin_names(&change.plugins)?;
    let plugins = state.coordinator.attach(change.plugins).await?;
    let world = state.coordinator.update_world(&id, &who, WorldChange::Plugins(plugins)).await?;
    Ok(HttpResponse::Ok().json(WorldView::from(&world.record)))
}

#[utoipa::path(put, path = "/v1/worlds/{id}/params", tag = "worlds", operation_id = "set_world_params", params(("id" = String, Path, description = "World id")),
    request_body(content = api::SetParams, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The world at its new revision (the same revision when nothing changed)",
            body = WorldView),
        (status = 400, description = "The body is not JSON (`malformed_json`)", body = ErrorBody),
        (status = 401, description = "No valid token (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "The world belongs to another account (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such world (`not_found`)", body = ErrorBody),
        (status = 409, description = "A concurrent change; retry (`concurrent_change`)", body = ErrorBody),
        (status = 408, description = "The body stopped arriving (`body_timeout`)", body = ErrorBody),
        (status = 413, description = "The body is too large (`too_large`)", body = ErrorBody),
        (status = 422, description = "Invalid values; `field` names the one at fault", body = ErrorBody),
        (status = 503, description = "Storage or the generation nodes are unavailable (`Retry-After`)", body = ErrorBody),
    ))]
async fn put_world_params(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let who = account(&state, &req).await?;
    let world = state.coordinator.world(&id).await?;
    owned_by(&world, &who)?;
    let body = read_body(&req, payload, state.coordinator.config.max_body_bytes).await?;
    let change: api::SetParams = api::parse_json(&body)?;
    let params = api::resolve_params(change.params)?;
    let world = state.coordinator.update_world(&id, &who, WorldChange::Params(params)).await?;
    Ok(HttpResponse::Ok().json(WorldView::from(&world.record)))
}

/// Refuses (403) a change to another account's world before any work is
/// done for it (loading the plugins it names, say). `update_world` checks
/// again against the stored record, under its compare-and-swap.
fn owned_by(world: &crate::World, who: &Account) -> Result<(), Error> {
    if world.record.owner.as_deref() == Some(who.name.as_str()) {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Forbidden, format!("world {} belongs to another account", world.record.id)))
    }
}

/// How long a request body may pause before the request is refused (408
/// `body_timeout`): a client that announces more than it sends (a
/// Content-Length that lies, a chunked body that stops) does not hold a
/// handler and its buffer forever.
pub const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

fn too_large(limit: usize) -> ApiError {
    Error::new(ErrorKind::TooLarge, format!("the request body is larger than this server's limit of {limit} bytes"))
        .into()
}

/// The next piece of a request body, waiting at most [`BODY_IDLE`] for it.
async fn next_piece<S: futures_util::Stream + Unpin>(body: &mut S) -> ApiResult<Option<S::Item>> {
    tokio::time::timeout(BODY_IDLE, body.next()).await.map_err(|_| {
        let e = Error::new(
            ErrorKind::Malformed,
            format!(
                "the request body stopped arriving (nothing for {} s); send all of it, with a Content-Length \
                 that matches it",
                BODY_IDLE.as_secs()
            ),
        )
        .with_code("body_timeout");
        ApiError(e, StatusCode::REQUEST_TIMEOUT)
    })
}

/// A 413 at once for a body whose Content-Length is over `limit`, before
/// waiting for any of it.
fn refuse_announced_excess(req: &HttpRequest, limit: usize) -> ApiResult<()> {
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) { Err(too_large(limit)) } else { Ok(()) }
}

/// Reads a whole request body, refusing more than `limit` bytes (at once
/// when the Content-Length says so) and a body that stops arriving.
async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> ApiResult<Bytes> {
    refuse_announced_excess(req, limit)?;
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = next_piece(&mut payload).await? {
        let chunk = chunk.map_err(|e| Error::new(ErrorKind::Malformed, format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads a `multipart/form-data` upload: text fields `name`, `version`,
/// `description`, `runtime` and the file (or text) field `source`.
async fn multipart_upload(req: &HttpRequest, payload: web::Payload, limit: usize) -> ApiResult<Upload> {
    let malformed = |m: String| Error::new(ErrorKind::Malformed, m).with_code("malformed_multipart");
    refuse_announced_excess(req, limit)?;
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut total = 0usize;
    while let Some(field) = next_piece(&mut form).await? {
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
        while let Some(chunk) = next_piece(&mut field).await? {
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

#[utoipa::path(post, path = "/v1/plugins", tag = "workshop", operation_id = "upload_plugin",
    request_body(description = "A plugin version: checked in the sandbox, stored only if it loads",
        content((api::schema::PluginUpload = "application/json"),
                (api::schema::PluginUploadForm = "multipart/form-data"))),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = api::schema::PluginVersion,
            headers(("Location" = String, description = "The version's URL"))),
        (status = 400, description = "Not JSON or not a valid multipart body (`malformed_json`, `malformed_multipart`)", body = ErrorBody),
        (status = 401, description = "No valid token (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "The plugin name belongs to another account (`forbidden`)", body = ErrorBody),
        (status = 409, description = "The version exists; versions are immutable (`version_exists`)", body = ErrorBody),
        (status = 408, description = "The body stopped arriving (`body_timeout`)", body = ErrorBody),
        (status = 413, description = "The body, source or description is too large (`too_large`)", body = ErrorBody),
        (status = 422, description = "Invalid fields, or the plugin does not load (`details` has its diagnostics)", body = ErrorBody),
        (status = 503, description = "Storage or the generation nodes are unavailable (`Retry-After`)", body = ErrorBody),
    ))]
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
        api::parse_json(&read_body(&req, payload, limit).await?)?
    };
    let record = state.coordinator.upload_plugin(&who, upload).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/plugins/{}/{}", record.name, record.version)))
        .json(VersionView::from(&record)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Text searched (case-insensitive) in names and latest descriptions; at most 100 characters.
    #[serde(default)]
    #[param(max_length = 100)]
    q: String,
    /// Plugins to skip (default 0).
    #[serde(default)]
    offset: Option<usize>,
    /// Page size, 1 to 100 (default 20).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/plugins", tag = "workshop", operation_id = "list_plugins", params(ListQuery),
    responses(
        (status = 200, description = "One page of matching plugins, by name", body = api::PluginList),
        (status = 400, description = "A malformed query (`invalid_query`)", body = ErrorBody),
        (status = 422, description = "`q` or `limit` out of range; `field` names it", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody),
    ))]
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
    let plugins: Vec<api::PluginSummary<'_>> = page
        .iter()
        .map(|(name, entry)| {
            let latest = entry.latest();
            api::PluginSummary {
                name,
                owner: &entry.owner,
                latest_version: latest.map(|v| v.version.as_str()),
                description: latest.map(|v| v.description.as_str()),
                hooks: latest.map(|v| v.info.hooks.as_slice()),
                versions: entry.versions.len(),
                created_unix_s: entry.created_unix_s,
            }
        })
        .collect();
    let next_offset = (offset + page.len() < total).then_some(offset + page.len());
    Ok(HttpResponse::Ok().json(api::PluginList { plugins, total, offset, limit, next_offset }))
}

#[utoipa::path(get, path = "/v1/plugins/{name}", tag = "workshop", operation_id = "get_plugin", params(("name" = String, Path, description = "Plugin name")),
    responses(
        (status = 200, description = "The plugin's owner and versions, newest first", body = api::PluginDetail),
        (status = 404, description = "No such plugin (`unknown_plugin`)", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody),
    ))]
async fn get_plugin(state: web::Data<AppState>, name: web::Path<String>) -> ApiResult<HttpResponse> {
    let c = &state.coordinator;
    plugin_name(&name)?;
    let entry = c.workshop().get(c.store().as_ref(), &name).await?.ok_or_else(|| workshop::unknown_plugin(&name))?;
    let versions: Vec<VersionView<'_>> = entry.versions.values().rev().map(VersionView::from).collect();
    Ok(HttpResponse::Ok().json(api::PluginDetail {
        name: name.as_str(),
        owner: &entry.owner,
        created_unix_s: entry.created_unix_s,
        latest_version: entry.latest().map(|v| v.version.as_str()),
        versions,
    }))
}

#[utoipa::path(get, path = "/v1/plugins/{name}/{version}", tag = "workshop", operation_id = "get_plugin_version",
    params(("name" = String, Path, description = "Plugin name"), ("version" = String, Path, description = "Semantic version, e.g. 1.2.0")),
    responses(
        (status = 200, description = "One version: hooks, PARAMS, SHA-256, size, owner, yanked",
            body = api::schema::PluginVersion),
        (status = 404, description = "No such plugin or version (`unknown_plugin`, `unknown_version`)", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody),
    ))]
async fn get_plugin_version(state: web::Data<AppState>, path: web::Path<(String, String)>) -> ApiResult<HttpResponse> {
    let (name, version) = path.into_inner();
    plugin_name(&name)?;
    let (entry, parsed) = state.coordinator.find_version(&name, &version).await?;
    Ok(HttpResponse::Ok().json(VersionView::from(&entry.versions[&parsed])))
}

#[utoipa::path(get, path = "/v1/plugins/{name}/{version}/source", tag = "workshop",
    operation_id = "get_plugin_source", params(("name" = String, Path, description = "Plugin name"), ("version" = String, Path, description = "Semantic version, e.g. 1.2.0")),
    responses(
        (status = 200, description = "The Python source", body = String, content_type = "text/x-python",
            headers(("ETag" = String, description = "The source's SHA-256, quoted"))),
        (status = 404, description = "No such plugin or version (`unknown_plugin`, `unknown_version`)", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody),
    ))]
async fn get_plugin_source(state: web::Data<AppState>, path: web::Path<(String, String)>) -> ApiResult<HttpResponse> {
    let (name, version) = path.into_inner();
    plugin_name(&name)?;
    let (entry, parsed) = state.coordinator.find_version(&name, &version).await?;
    let record = &entry.versions[&parsed];
    let source = state.coordinator.plugin_source(record).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/x-python; charset=utf-8")
        .insert_header((header::ETAG, format!("\"{}\"", record.sha256)))
        .body(source))
}

#[utoipa::path(post, path = "/v1/plugins/{name}/{version}/yank", tag = "workshop", operation_id = "yank_plugin",
    params(("name" = String, Path, description = "Plugin name"), ("version" = String, Path, description = "Semantic version, e.g. 1.2.0")), security(("bearer" = [])),
    responses(
        (status = 200, description = "Withdrawn: worlds using it keep working, new attachments are refused",
            body = api::schema::PluginVersion),
        (status = 401, description = "No valid token (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "The plugin belongs to another account (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such plugin or version (`unknown_plugin`, `unknown_version`)", body = ErrorBody),
        (status = 409, description = "A concurrent change; retry (`concurrent_change`)", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody),
    ))]
async fn yank(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    set_yanked(state, req, path, true).await
}

#[utoipa::path(post, path = "/v1/plugins/{name}/{version}/unyank", tag = "workshop",
    operation_id = "unyank_plugin", params(("name" = String, Path, description = "Plugin name"), ("version" = String, Path, description = "Semantic version, e.g. 1.2.0")), security(("bearer" = [])),
    responses(
        (status = 200, description = "Attachable again", body = api::schema::PluginVersion),
        (status = 401, description = "No valid token (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "The plugin belongs to another account (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such plugin or version (`unknown_plugin`, `unknown_version`)", body = ErrorBody),
        (status = 409, description = "A concurrent change; retry (`concurrent_change`)", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody),
    ))]
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
    plugin_name(&name)?;
    let record = state.coordinator.set_yanked(&who, &name, &version, yanked).await?;
    Ok(HttpResponse::Ok().json(VersionView::from(&record)))
}

/// A plugin name from a path. One that is not a valid plugin name names no
/// plugin (404 `unknown_plugin`) and is not looked up in storage, where its
/// key could be too long for a file name (once a 503 on `fs://`).
fn plugin_name(name: &str) -> Result<(), Error> {
    crate::auth::check_name("name", name).map_err(|_| workshop::unknown_plugin(name))
}

/// Parses a chunk coordinate path segment.
pub fn parse_coord(name: &str, raw: &str) -> Result<i32, Error> {
    raw.parse::<i32>().map_err(|_| {
        Error::new(ErrorKind::Malformed, format!("{name} must be an integer chunk coordinate, got {raw:?}"))
            .with_field(name)
            .with_code("invalid_coordinate")
    })
}

/// `GET /v1/worlds/{id}/stream` (the handler is in `stream.rs`).
#[utoipa::path(get, path = "/v1/worlds/{id}/stream", tag = "chunks", operation_id = "stream_chunks",
    description = "A WebSocket (send `Connection: Upgrade`, `Upgrade: websocket`). The client sends \
        `{\"center\":[cx,cz],\"radius\":r}` text frames; the server answers with one binary postcard frame per \
        chunk, nearest first, then a `{\"done\":{...}}` text frame; `{\"revision\":{...}}` and \
        `{\"error\":{...}}` text frames as they happen. Every message type, with examples and limits, is in \
        docs/api.md.",
    params(("id" = String, Path, description = "World id")),
    responses(
        (status = 101, description = "Switching protocols: the WebSocket is open"),
        (status = 400, description = "Not a WebSocket upgrade (`not_websocket`)", body = ErrorBody),
        (status = 404, description = "No such world", body = ErrorBody),
        (status = 503, description = "Storage is unavailable", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn stream() {}

enum Format {
    Json,
    Postcard,
}

fn negotiate(req: &HttpRequest) -> Result<Format, Error> {
    let Some(accept) = req.headers().get(header::ACCEPT) else {
        return Ok(Format::Json);
    };
    let accept = accept.to_str().map_err(|_| {
        Error::new(
            ErrorKind::NotAcceptable,
            format!("the Accept header is not ASCII text; ask for application/json or {POSTCARD}"),
        )
    })?;
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

#[utoipa::path(get, path = "/v1/worlds/{id}/chunks/{cx}/{cz}", tag = "chunks", operation_id = "get_chunk",
    params(
        ("id" = String, Path, description = "World id"),
        ("cx" = i32, Path, minimum = -16777216, maximum = 16777216, description = "Chunk x (columns x / 32)"),
        ("cz" = i32, Path, minimum = -16777216, maximum = 16777216, description = "Chunk z (columns z / 32)"),
    ),
    responses(
        (status = 200, description = "The chunk of the world's current revision, in the media type the `Accept` header picks: `application/json` (also for no Accept, `*/*`, `application/*`) or `application/x-postcard` (the stored envelope)",
            content(
                (api::schema::Chunk = "application/json"),
                ("application/x-postcard"),
            ),
            headers(
                ("ETag" = String, description = "World, revision and coordinate; absent when provisional"),
                ("X-Worldloom-Revision" = u32, description = "The revision the chunk belongs to"),
                ("X-Worldloom-Cache" = String, description = "`hit` (from storage) or `miss` (generated)"),
                ("X-Worldloom-Provisional" = String,
                    description = "`true` when a transient plugin failure makes it not the chunk's truth \
                        (then `Cache-Control: no-store`)"),
            )),
        (status = 400, description = "A coordinate is not an integer (`invalid_coordinate`)", body = ErrorBody),
        (status = 404, description = "No such world", body = ErrorBody),
        (status = 406, description = "The Accept header names neither media type (`not_acceptable`)", body = ErrorBody),
        (status = 422, description = "The coordinate is out of range", body = ErrorBody),
        (status = 503, description = "No generation node could answer; retry (`Retry-After`)", body = ErrorBody),
    ))]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_every_operation_has_an_error_response() {
        let doc = serde_json::to_value(openapi()).unwrap();
        if std::env::var_os("WORLDLOOM_PRINT_OPENAPI").is_some() {
            println!("{}", serde_json::to_string_pretty(&doc).unwrap());
        }
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let errors = op["responses"].as_object().unwrap().keys().filter(|s| s.as_str() >= "400").count();
                assert!(errors > 0, "{method} {path} documents no error");
            }
        }
        let coord = &doc["paths"]["/v1/worlds/{id}/chunks/{cx}/{cz}"]["get"]["parameters"][1]["schema"];
        assert_eq!(coord["maximum"], worldloom_worldgen::chunk::MAX_CHUNK_COORD, "{coord}");
        assert_eq!(coord["minimum"], -worldloom_worldgen::chunk::MAX_CHUNK_COORD, "{coord}");
        assert!(
            served_routes().iter().any(|(m, p, documented)| m == "POST" && p.starts_with("/internal/") && !documented)
        );
    }
}
