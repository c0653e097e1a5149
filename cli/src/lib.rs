//! The composition root: wires storage, the node and coordinator actors and
//! the HTTP server into one running Worldloom, for `worldloom serve` and for
//! tests that need a real server on an ephemeral port.

pub mod plugin_cmd;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use actix::Actor;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use worldloom_cluster::config::Config;
use worldloom_cluster::metrics::{InFlight, Metrics};
use worldloom_cluster::placement::NodeId;
use worldloom_cluster::protocol::NodeHello;
use worldloom_cluster::storage;
use worldloom_coordinator::Coordinator;
use worldloom_coordinator::actor::{CoordinatorActor, Join, NodeLink};
use worldloom_coordinator::http::{self, AppState};
use worldloom_node::plugins::SandboxRuntime;
use worldloom_node::server::NodeState;
use worldloom_node::{Node, PluginRuntime};
use worldloom_sandbox::{Supervisor, SupervisorConfig};

/// A server running on its own thread.
pub struct RunningServer {
    /// The address it actually bound (the port is real even when 0 was asked for).
    pub addr: SocketAddr,
    /// The server's storage (for operator tasks and tests, e.g. creating accounts).
    pub store: Arc<dyn storage::ObjectStore>,
    handle: actix_web::dev::ServerHandle,
    /// The coordinator of this process (not on a node): its streams are
    /// closed at a clean stop.
    coordinator: Option<Arc<Coordinator>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RunningServer {
    /// Stops accepting, finishes in-flight requests, closes open streams
    /// (a close frame), writes what the node still holds, and waits for the
    /// thread.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        // Stop from a fresh thread: this may be called inside another runtime (tests, drop during unwinding).
        let stopper = self.stopper();
        std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(stopper.stop(true));
            }
        })
        .join()
        .map_err(|_| anyhow::anyhow!("stopping the server panicked"))?;
        thread.join().map_err(|_| anyhow::anyhow!("the server thread panicked"))?
    }

    fn stopper(&self) -> Stopper {
        Stopper { handle: self.handle.clone(), coordinator: self.coordinator.clone() }
    }

    /// Blocks until the server exits.
    pub fn wait(mut self) -> anyhow::Result<()> {
        let thread = self.thread.take().expect("a running server has a thread");
        thread.join().map_err(|_| anyhow::anyhow!("the server thread panicked"))?
    }

    /// Blocks until the server exits, stopping it cleanly on SIGTERM or
    /// SIGINT (what `worldloom serve|coordinator|node` do): no new
    /// connections, requests in flight finish (at most [`SHUTDOWN_TIMEOUT_S`]
    /// seconds), every stream gets a close frame, the node's write-behind is
    /// flushed (at most [`FLUSH_TIMEOUT`]), and this returns `Ok` (exit 0).
    /// A second signal stops at once, dropping what is still in flight.
    pub fn wait_for_signals(self) -> anyhow::Result<()> {
        let stopper = self.stopper();
        // Install the handlers before returning to the caller's wait, so a
        // signal that arrives from now on is never the default (kill) action.
        let (installed_tx, installed_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("worldloom-signals".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = installed_tx.send(Err(anyhow::anyhow!("a runtime for signal handling: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    use actix_web::rt::signal::unix::{SignalKind, signal};
                    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                        (Ok(t), Ok(i)) => (t, i),
                        (Err(e), _) | (_, Err(e)) => {
                            let _ = installed_tx.send(Err(anyhow::anyhow!("installing signal handlers: {e}")));
                            return;
                        }
                    };
                    let _ = installed_tx.send(Ok(()));
                    let which = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    tracing::info!(signal = which, "stopping cleanly: finishing requests and closing streams");
                    let graceful = stopper.stop(true);
                    tokio::pin!(graceful);
                    tokio::select! {
                        () = &mut graceful => {}
                        _ = term.recv() => stopper.handle.stop(false).await,
                        _ = int.recv() => stopper.handle.stop(false).await,
                    }
                });
            })
            .context("spawning the signal thread")?;
        installed_rx.recv().context("the signal thread exited")??;
        self.wait()
    }
}

/// How long a clean stop waits for requests in flight (then they are dropped).
pub const SHUTDOWN_TIMEOUT_S: u64 = 5;

/// How long a clean stop waits for the node's write-behind to reach storage.
/// Chunks are derived data (regenerated if missing), so a storage outage at
/// stop time delays the exit by this much and loses nothing else.
pub const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// What stops a running server cleanly.
struct Stopper {
    handle: actix_web::dev::ServerHandle,
    coordinator: Option<Arc<Coordinator>>,
}

impl Stopper {
    async fn stop(&self, graceful: bool) {
        if let Some(c) = &self.coordinator {
            c.shut_down();
        }
        self.handle.stop(graceful).await;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The sandbox supervisor a configuration asks for, serving `workers`
/// generation threads (the warm-sandbox memory is shared out between them).
/// Its zygote starts on first use.
pub fn supervisor(config: &Config, workers: usize) -> anyhow::Result<Supervisor> {
    let exe = match &config.sandbox.worker_exe {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("finding this executable to start sandbox workers from")?,
    };
    let mut cfg = SupervisorConfig::new(exe, &config.runtime_dir, &config.cache_dir);
    cfg.worker_args = vec!["sandbox-worker".into()];
    cfg.biome_count = worldloom_worldgen::BIOMES.len() as u16;
    cfg.warm_bytes_per_worker = config.sandbox.warm_memory_bytes / workers.max(1) as u64;
    cfg.warm_max = config.sandbox.warm_per_worker;
    cfg.grace = std::time::Duration::from_millis(config.sandbox.grace_ms);
    // The engine's machine code (shared with the zygote), the warm sandboxes,
    // a call's memory, and room for the allocator.
    cfg.worker_rss_limit = (1 << 30) + cfg.warm_bytes_per_worker + 2 * config.limits.memory_bytes;
    Ok(Supervisor::new(cfg))
}

/// The plugin runtime for a node of `config`: sandbox worker processes.
pub fn sandbox_runtime(config: &Config) -> anyhow::Result<Arc<SandboxRuntime>> {
    let workers = config.worker_count();
    Ok(Arc::new(SandboxRuntime::new(supervisor(config, workers)?, workers)))
}

/// What runs in one server process.
pub enum Role {
    /// `worldloom serve`: a coordinator and one in-process node.
    Embedded(Arc<dyn PluginRuntime>),
    /// `worldloom coordinator`: the public API; nodes join by heartbeat.
    Coordinator,
    /// `worldloom node`: generation for the coordinators at these URLs.
    Node(NodeRole),
}

/// How a node process joins its cluster.
pub struct NodeRole {
    pub runtime: Arc<dyn PluginRuntime>,
    /// Coordinator base URLs (`http://HOST:PORT`).
    pub coordinators: Vec<String>,
    /// Stable identity (on Kubernetes, the StatefulSet pod name).
    pub id: String,
    /// Where coordinators reach this node; default `http://` + the bound address.
    pub advertise: Option<String>,
    /// The sandbox is ready (its engine loaded).
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The cluster protocol version the node announces: `PROTOCOL_VERSION`
    /// except when testing how coordinators refuse another version.
    pub protocol: u32,
    /// Called once if a coordinator refuses this node for good (another
    /// protocol version, a wrong secret); the binary exits with the message.
    pub on_refused: Box<dyn FnOnce(String) + Send>,
}

fn cluster_secret(config: &Config) -> anyhow::Result<String> {
    match &config.cluster.secret {
        Some(s) if s.len() >= 16 => Ok(s.clone()),
        Some(_) => anyhow::bail!("cluster.secret must be at least 16 characters"),
        None => anyhow::bail!(
            "the cluster roles need a shared secret: set cluster.secret in the configuration or \
             WORLDLOOM_CLUSTER__SECRET in the environment (the same on every coordinator and node)"
        ),
    }
}

/// The storage a cluster role may use: shared by every process.
fn check_cluster_storage(config: &Config) -> anyhow::Result<()> {
    if config.data.starts_with("memory://") {
        anyhow::bail!(
            "memory:// storage lives inside one process, so coordinators and nodes could not share it; \
             use s3://BUCKET/PREFIX (or fs://PATH when every process runs on this one machine)"
        );
    }
    Ok(())
}

/// Starts the embedded server: a coordinator and one in-process node.
pub fn start(config: Config, runtime: Arc<dyn PluginRuntime>) -> anyhow::Result<RunningServer> {
    start_role(config, Role::Embedded(runtime))
}

/// Starts a server of any role on its own thread.
pub fn start_role(config: Config, role: Role) -> anyhow::Result<RunningServer> {
    let secret = match &role {
        Role::Embedded(_) => config.cluster.secret.clone().unwrap_or_default(),
        Role::Coordinator | Role::Node(_) => {
            check_cluster_storage(&config)?;
            cluster_secret(&config)?
        }
    };
    let store = storage::open(&config.data, &config.s3).map_err(|e| anyhow::anyhow!("{e}"))?;
    let server_store = store.clone();
    let metrics = Metrics::new(!matches!(role, Role::Coordinator), !matches!(role, Role::Node(_)));
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("worldloom-server".into())
        .spawn(move || -> anyhow::Result<()> {
            let system = actix_web::rt::System::new();
            // The node of this process, whose pending writes are finished at a clean stop.
            let mut local: Option<Arc<Node>> = None;
            let mut public: Option<Arc<Coordinator>> = None;
            let server = system.block_on(async {
                let config = Arc::new(config);
                let store = server_store;
                worldloom_cluster::install_tls_provider();
                let client = reqwest::Client::builder()
                    .pool_idle_timeout(std::time::Duration::from_secs(90))
                    .build()
                    .context("building the HTTP client")?;
                let limit = config.max_body_bytes;
                let server = match role {
                    Role::Embedded(_) | Role::Coordinator => {
                        let timeout = std::time::Duration::from_millis(config.cluster.node_timeout_ms);
                        let cm = metrics.coordinator();
                        let actor = CoordinatorActor::new(timeout, client, secret, cm.live_nodes.clone());
                        let router = actor.router();
                        let actor = actor.start();
                        if let Role::Embedded(runtime) = role {
                            let node = Node::start_with(
                                store.clone(),
                                runtime,
                                config.worker_count(),
                                &config.node,
                                metrics.node(),
                            );
                            local = Some(node.clone());
                            actor
                                .send(Join { id: NodeId("local".into()), link: NodeLink::Local(node) })
                                .await
                                .context("registering the local node")?;
                        }
                        let coordinator = Coordinator::open(store, actor, router, config.clone(), cm.clone())
                            .await
                            .map_err(|e| anyhow::anyhow!("opening the world registry: {e}"))?;
                        public = Some(coordinator.clone());
                        let state = web::Data::new(AppState { coordinator, metrics: metrics.clone() });
                        let server = HttpServer::new(move || {
                            let inflight = cm.inflight.clone();
                            App::new()
                                .app_data(state.clone())
                                .app_data(web::PayloadConfig::new(limit))
                                .wrap(http::json_errors())
                                .wrap_fn(move |req, srv| {
                                    use actix_web::dev::Service as _;
                                    let counted = InFlight::new(&inflight);
                                    let fut = srv.call(req);
                                    async move {
                                        let res = fut.await;
                                        drop(counted);
                                        res
                                    }
                                })
                                .configure(http::configure)
                        })
                        // Streams are closed at a clean stop (`Stopper`); requests in
                        // flight get a few seconds, not the default 30.
                        .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
                        // SIGTERM/SIGINT are handled by `wait_for_signals`, which closes streams first.
                        .disable_signals()
                        .bind(config.listen)
                        .with_context(|| format!("binding {}", config.listen))?;
                        let addr = server.addrs().first().copied().context("the server bound no address")?;
                        (server.run(), addr)
                    }
                    Role::Node(n) => {
                        let node =
                            Node::start_with(store, n.runtime, config.worker_count(), &config.node, metrics.node());
                        local = Some(node.clone());
                        let state = web::Data::new(NodeState {
                            node: node.clone(),
                            id: n.id.clone(),
                            secret: secret.clone(),
                            ready: n.ready.clone(),
                            metrics: metrics.clone(),
                        });
                        let server = HttpServer::new(move || {
                            App::new().app_data(state.clone()).configure(worldloom_node::server::configure)
                        })
                        .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
                        .disable_signals()
                        .bind(config.listen)
                        .with_context(|| format!("binding {}", config.listen))?;
                        let addr = server.addrs().first().copied().context("the server bound no address")?;
                        let url = n.advertise.clone().unwrap_or_else(|| format!("http://{addr}"));
                        let (id, ready, workers) = (n.id.clone(), n.ready.clone(), node.workers() as u32);
                        let protocol = n.protocol;
                        let hello = move || NodeHello {
                            protocol,
                            id: NodeId(id.clone()),
                            url: url.clone(),
                            ready: ready(),
                            workers,
                        };
                        let interval = std::time::Duration::from_millis(config.cluster.heartbeat_ms);
                        let (coordinators, on_refused) = (n.coordinators, n.on_refused);
                        actix_web::rt::spawn(async move {
                            let why =
                                worldloom_node::server::heartbeats(client, coordinators, secret, hello, interval).await;
                            let message = match why {
                                worldloom_node::server::Refused::Protocol(m)
                                | worldloom_node::server::Refused::Secret(m) => m,
                            };
                            tracing::error!(%message, "a coordinator refused this node");
                            on_refused(message);
                        });
                        (server.run(), addr)
                    }
                };
                anyhow::Ok(server)
            });
            let (server, addr) = match server {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            let _ = ready_tx.send(Ok((server.handle(), addr, public)));
            let served = system.block_on(server).context("the HTTP server failed");
            if let Some(node) = local {
                // Write behind: what was answered as stored reaches storage
                // before the process ends, unless storage is unreachable.
                // (The timer is made inside the system's runtime: `timeout` needs one.)
                if system.block_on(async { tokio::time::timeout(FLUSH_TIMEOUT, node.flush()).await }).is_err() {
                    tracing::warn!(
                        timeout_s = FLUSH_TIMEOUT.as_secs(),
                        "stopping with chunk writes unfinished (storage did not answer); they are regenerated on demand"
                    );
                }
            }
            served
        })
        .context("spawning the server thread")?;
    let (handle, addr, coordinator) = ready_rx.recv().context("the server thread exited during start-up")??;
    Ok(RunningServer { addr, store, handle, coordinator, thread: Some(thread) })
}
