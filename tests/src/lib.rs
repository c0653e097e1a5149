//! Test support: start real Worldloom servers (in process or as separate
//! processes) on ephemeral loopback ports, and talk to them over HTTP and
//! WebSocket like a client would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use worldloom_cluster::config::Config;
use worldloom_cluster::model::ChunkRecord;
use worldloom_cluster::wire;

/// A server running inside the test process.
pub struct InProcess {
    pub base: String,
    /// The token of the account `tester`, created at start.
    pub token: String,
    server: Option<worldloom_cli::RunningServer>,
}

impl InProcess {
    /// Creates another account on this server and returns its token.
    pub fn create_account(&self, name: &str) -> String {
        let store = self.server.as_ref().expect("running").store.clone();
        let name = name.to_owned();
        block_on(async move { worldloom_coordinator::auth::create_account(store.as_ref(), &name).await })
            .expect("creating an account")
    }

    /// The server's storage, as its handlers see it.
    pub fn store(&self) -> Arc<dyn worldloom_cluster::storage::ObjectStore> {
        self.server.as_ref().expect("running").store.clone()
    }

    pub fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().expect("server stops cleanly");
        }
    }
}

/// The workspace's `.worldloom` directory (runtime, compiled cache, test virtualenv).
pub fn worldloom_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").join(".worldloom")
}

/// The sandbox supervisor shared by every in-process server of this test
/// binary: one zygote (the compiled interpreter is loaded once), each
/// server's generation threads with worker processes of their own. Its
/// zygote is the real `worldloom` binary (`worldloom sandbox-worker`).
pub fn supervisor() -> worldloom_sandbox::Supervisor {
    static SUPERVISOR: std::sync::OnceLock<worldloom_sandbox::Supervisor> = std::sync::OnceLock::new();
    SUPERVISOR
        .get_or_init(|| {
            let config = sandbox_config(&Config::default());
            worldloom_cli::supervisor(&config, 2).expect("a supervisor")
        })
        .clone()
}

/// `config` with the test runtime, cache and worker binary.
pub fn sandbox_config(config: &Config) -> Config {
    let dir = worldloom_dir();
    let mut c = config.clone();
    c.runtime_dir = dir.join("runtime/python");
    c.cache_dir = dir.join("cache");
    c.sandbox.worker_exe = Some(binary());
    c
}

/// Starts an embedded server on `127.0.0.1:0` with the given storage URI and the real plugin sandbox.
pub fn start(data: &str) -> InProcess {
    start_with(data, |_| {})
}

/// Like [`start`], with a chance to adjust the configuration.
pub fn start_with(data: &str, adjust: impl FnOnce(&mut Config)) -> InProcess {
    let mut config =
        Config { data: data.into(), listen: SocketAddr::from(([127, 0, 0, 1], 0)), workers: 2, ..Config::default() };
    adjust(&mut config);
    let runtime = worldloom_node::plugins::SandboxRuntime::new(supervisor(), config.worker_count());
    let server = worldloom_cli::start(config, Arc::new(runtime)).expect("server starts");
    let store = server.store.clone();
    let token = block_on(async move { worldloom_coordinator::auth::create_account(store.as_ref(), "tester").await })
        .expect("creating the test account");
    InProcess { base: format!("http://{}", server.addr), token, server: Some(server) }
}

/// Runs a future to completion on a fresh thread (usable inside or outside a runtime).
pub fn block_on<T: Send + 'static>(fut: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(fut)
    })
    .join()
    .expect("the future did not panic")
}

/// Creates an account directly in a storage (as `worldloom token create` does) and returns its token.
pub fn account_token(data: &str, s3: &worldloom_cluster::storage::S3Settings, name: &str) -> String {
    let store = worldloom_cluster::storage::open(data, s3).expect("opening storage");
    let name = name.to_owned();
    block_on(async move { worldloom_coordinator::auth::create_account(store.as_ref(), &name).await })
        .expect("creating an account")
}

/// A `worldloom serve` child process, killed when dropped.
pub struct Process {
    pub base: String,
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Stops the process the hard way (SIGKILL) and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the process wrote to standard error (when spawned capturing it),
    /// read to its end.
    pub fn stderr_text(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut text);
        }
        text
    }

    /// The process id (for reading its memory in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to `within`) for the process to exit by itself; its status.
    pub fn exits_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// The `worldloom` binary built next to this test binary.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let bin = dir.join("worldloom");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p worldloom-cli` (scripts/test does)",
        bin.display()
    );
    bin
}

/// Spawns `worldloom serve` on an ephemeral port with the given storage and extra arguments.
pub fn spawn(data: &str, extra: &[&str]) -> Process {
    spawn_with_env(data, extra, &[])
}

/// Like [`spawn`], with extra environment variables.
pub fn spawn_with_env(data: &str, extra: &[&str], env: &[(String, String)]) -> Process {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data", data];
    args.extend_from_slice(extra);
    spawn_role(&args, env, "worldloom listening on ")
}

/// Spawns `worldloom ARGS` with the test runtime and `env`, and waits for the
/// line starting with `ready` that names its address.
pub fn spawn_role(args: &[&str], env: &[(String, String)], ready: &str) -> Process {
    spawn_role_with(args, env, ready, false)
}

/// Like [`spawn_role`]; with `capture`, the process's standard error is kept
/// for [`Process::stderr_text`] instead of shown.
pub fn spawn_role_with(args: &[&str], env: &[(String, String)], ready: &str, capture: bool) -> Process {
    spawn_process(args, env, ready, capture, false)
}

/// Like [`spawn_role_with`] (standard error kept) for a process that may be
/// refused and exit before it says it is ready (it races its first contact
/// with the coordinator): then the process's `base` is empty.
pub fn spawn_role_may_exit(args: &[&str], env: &[(String, String)], ready: &str) -> Process {
    spawn_process(args, env, ready, true, true)
}

fn spawn_process(args: &[&str], env: &[(String, String)], ready: &str, capture: bool, may_exit: bool) -> Process {
    let mut command = Command::new(binary());
    // The test's own knobs (`WORLDLOOM_SOAK_SECS`, ...) share the prefix of
    // the server's settings, which refuses unknown ones: a server gets only
    // the settings a test gives it.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WORLDLOOM_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .args(args)
        .env("RUST_LOG", "warn")
        .env("WORLDLOOM_RUNTIME_DIR", worldloom_dir().join("runtime/python"))
        .env("WORLDLOOM_CACHE_DIR", worldloom_dir().join("cache"))
        .envs(env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(if capture { Stdio::piped() } else { Stdio::inherit() })
        .spawn()
        .expect("spawning worldloom");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("reading the listen line");
    if may_exit && line.is_empty() {
        return Process { base: String::new(), child };
    }
    let base = line
        .trim()
        .strip_prefix(ready)
        .and_then(|rest| rest.split_whitespace().last())
        .unwrap_or_else(|| panic!("unexpected first line from worldloom {args:?}: {line:?}"))
        .to_owned();
    Process { base, child }
}

/// The cluster secret of the test clusters.
pub const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789";

/// The environment of a test cluster process: the cluster secret, fast
/// heartbeats (a dead node is removed after 1.5 s), and `extra`.
pub fn cluster_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("WORLDLOOM_CLUSTER__SECRET".to_owned(), CLUSTER_SECRET.to_owned()),
        ("WORLDLOOM_CLUSTER__HEARTBEAT_MS".to_owned(), "200".to_owned()),
        ("WORLDLOOM_CLUSTER__NODE_TIMEOUT_MS".to_owned(), "1500".to_owned()),
    ];
    env.extend_from_slice(extra);
    env
}

/// Spawns `worldloom coordinator` on an ephemeral port.
pub fn spawn_coordinator(data: &str, env: &[(String, String)]) -> Process {
    spawn_role(&["coordinator", "--listen", "127.0.0.1:0", "--data", data], env, "worldloom coordinator listening on ")
}

/// Spawns `worldloom node --id ID` for the given coordinators, with one
/// generation worker, on an ephemeral port.
pub fn spawn_node(id: &str, coordinators: &[&str], data: &str, env: &[(String, String)]) -> Process {
    let list = coordinators.join(",");
    spawn_role(
        &["node", "--id", id, "--coordinator", &list, "--listen", "127.0.0.1:0", "--data", data, "--workers", "1"],
        env,
        &format!("worldloom node {id} listening on "),
    )
}

/// Waits (up to 60 s) until the coordinator at `base` has exactly the live
/// nodes `ids`, all of them ready.
pub async fn wait_for_nodes(base: &str, ids: &[&str]) {
    let mut want: Vec<&str> = ids.to_vec();
    want.sort_unstable();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body: serde_json::Value =
            client().get(format!("{base}/readyz")).send().await.expect("GET /readyz").json().await.expect("JSON");
        let nodes = body["nodes"].as_array().cloned().unwrap_or_default();
        let mut live: Vec<&str> = nodes.iter().filter_map(|n| n["id"].as_str()).collect();
        live.sort_unstable();
        if live == want && nodes.iter().all(|n| n["ready"] == true) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "nodes {want:?} never became live on {base}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of an unlabelled sample in a Prometheus text exposition.
pub async fn metric(base: &str, name: &str) -> f64 {
    let text = client().get(format!("{base}/metrics")).send().await.expect("GET /metrics").text().await.expect("text");
    sample(&text, name).unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

/// The value of the sample named exactly `name` (labels included) in `text`.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A unique scratch directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("worldloom-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn uri(&self) -> String {
        format!("fs://{}", self.0.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider (OpenDAL brings rustls without one).
    worldloom_cluster::install_tls_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client")
}

/// Creates a world as the account of `token` and returns its JSON.
pub async fn create_world(base: &str, token: &str, body: serde_json::Value) -> serde_json::Value {
    let res = client()
        .post(format!("{base}/v1/worlds"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("POST /v1/worlds");
    let status = res.status();
    let json: serde_json::Value = res.json().await.expect("JSON body");
    assert_eq!(status, 201, "creating a world: {json}");
    json
}

/// Runs `worldloom token ARGS --data DATA` (an operator command, as against
/// a running server's storage) and returns what it printed, trimmed.
pub fn token_command(args: &[&str], data: &str) -> String {
    let out = Command::new(binary())
        .arg("token")
        .args(args)
        .args(["--data", data])
        .output()
        .expect("running worldloom token");
    assert!(out.status.success(), "worldloom token {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Uploads a plugin version to the workshop as the account of `token`; returns its metadata.
pub async fn upload_plugin(base: &str, token: &str, name: &str, version: &str, source: &str) -> serde_json::Value {
    let body = serde_json::json!({"name": name, "version": version, "description": format!("{name} for tests"), "source": source});
    let res = client()
        .post(format!("{base}/v1/plugins"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("POST /v1/plugins");
    let status = res.status();
    let json: serde_json::Value = res.json().await.expect("JSON body");
    assert_eq!(status, 201, "uploading {name}@{version}: {json}");
    json
}

/// Fetches a chunk in the postcard encoding and decodes it.
pub async fn chunk_postcard(base: &str, world: &str, cx: i32, cz: i32) -> (Vec<u8>, ChunkRecord) {
    let res = client()
        .get(format!("{base}/v1/worlds/{world}/chunks/{cx}/{cz}"))
        .header("accept", "application/x-postcard")
        .send()
        .await
        .expect("GET chunk");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-postcard");
    let bytes = res.bytes().await.expect("body").to_vec();
    let record = wire::decode::<ChunkRecord>(&bytes).expect("a valid chunk envelope");
    (bytes, record)
}

/// A WebSocket client of `/v1/worlds/{id}/stream`.
pub struct Stream {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What the server sent on a stream.
#[derive(Debug)]
pub enum Frame {
    Chunk(Box<ChunkRecord>),
    Json(serde_json::Value),
}

/// A frame with a chunk left as the envelope bytes the server sent.
#[derive(Debug)]
pub enum RawFrame {
    Chunk(Vec<u8>),
    Json(serde_json::Value),
}

impl Stream {
    pub async fn connect(base: &str, world: &str) -> Stream {
        let url = format!("{}/v1/worlds/{world}/stream", base.replacen("http://", "ws://", 1));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connect");
        Stream { ws }
    }

    /// Like [`Stream::connect`], with the socket's receive buffer set to
    /// `bytes` before connecting (a small one makes a client that stops
    /// reading push back on the server after a few frames).
    pub async fn connect_with_recv_buffer(base: &str, world: &str, bytes: u32) -> Stream {
        let addr: SocketAddr = base.trim_start_matches("http://").parse().expect("a loopback address");
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(bytes).expect("setting SO_RCVBUF");
        let tcp = socket.connect(addr).await.expect("TCP connect");
        let url = format!("ws://{addr}/v1/worlds/{world}/stream");
        let (ws, _) = tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .expect("WebSocket handshake");
        Stream { ws }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn subscribe(&mut self, cx: i32, cz: i32, radius: u32) {
        self.send_text(&format!(r#"{{"center":[{cx},{cz}],"radius":{radius}}}"#)).await;
    }

    /// The next data frame (within 60 s).
    pub async fn next(&mut self) -> Frame {
        match self.next_raw().await {
            RawFrame::Chunk(b) => Frame::Chunk(Box::new(wire::decode(&b).expect("chunk envelope"))),
            RawFrame::Json(j) => Frame::Json(j),
        }
    }

    /// The next data frame (within 60 s), chunks undecoded.
    pub async fn next_raw(&mut self) -> RawFrame {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .expect("a frame within 60 s")
                .expect("the stream is open")
                .expect("a valid frame");
            match msg {
                Message::Binary(b) => return RawFrame::Chunk(b.to_vec()),
                Message::Text(t) => return RawFrame::Json(serde_json::from_str(&t).expect("JSON text frame")),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Whether the server closes the stream (a close frame or the end of the
    /// connection) within 60 s; data frames before it are an error.
    pub async fn closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(other))) => panic!("expected the stream to close, got {other:?}"),
            }
        }
    }

    /// Counts chunk frames, without decoding them, up to the `done` frame
    /// (what a benchmark's client does).
    pub async fn count_until_done(&mut self) -> usize {
        let mut n = 0;
        loop {
            match self.next_raw().await {
                RawFrame::Chunk(_) => n += 1,
                RawFrame::Json(j) if j.get("done").is_some() => return n,
                RawFrame::Json(j) => panic!("unexpected frame {j}"),
            }
        }
    }

    /// Chunks until the `done` frame; returns them and the done frame.
    pub async fn until_done(&mut self) -> (Vec<ChunkRecord>, serde_json::Value) {
        let mut chunks = Vec::new();
        loop {
            match self.next().await {
                Frame::Chunk(c) => chunks.push(*c),
                Frame::Json(j) if j.get("done").is_some() => return (chunks, j["done"].clone()),
                Frame::Json(j) => panic!("unexpected JSON frame while streaming: {j}"),
            }
        }
    }
}

/// A real S3-compatible server (moto) on an ephemeral loopback port, stopped when dropped.
pub struct S3Server {
    pub endpoint: String,
    child: Child,
}

impl S3Server {
    /// Starts moto with the given buckets created. Needs the test virtualenv `scripts/test` installs.
    pub fn start(buckets: &[&str]) -> S3Server {
        S3Server::start_on(0, buckets)
    }

    /// Starts moto on `port` (0: any free one) with the given buckets created.
    pub fn start_on(port: u16, buckets: &[&str]) -> S3Server {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        let python = root.join(".worldloom/venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: scripts/test installs moto (the test S3 server) there",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root.join("tests/s3/moto_server.py"))
            .args(["--port", &port.to_string()])
            .args(buckets)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reading moto's endpoint");
        let endpoint = line
            .trim()
            .strip_prefix("endpoint ")
            .unwrap_or_else(|| panic!("moto on port {port} said {line:?} (is the port taken?)"))
            .to_owned();
        S3Server { endpoint, child }
    }

    /// The port this server listens on.
    pub fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the endpoint")
    }

    /// Stops the server the hard way (SIGKILL): an outage. Its data (held in
    /// moto's memory) is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Settings that reach this server.
    pub fn settings(&self) -> worldloom_cluster::storage::S3Settings {
        worldloom_cluster::storage::S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
        }
    }

    /// The environment that points a `worldloom` process at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("WORLDLOOM_S3__ENDPOINT".into(), self.endpoint.clone()),
            ("WORLDLOOM_S3__REGION".into(), "us-east-1".into()),
            ("WORLDLOOM_S3__ACCESS_KEY_ID".into(), "test".into()),
            ("WORLDLOOM_S3__SECRET_ACCESS_KEY".into(), "test".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to 60 s) until the chunk (cx, cz) of revision `revision` of
/// `world` is in the storage at `data`: nodes write chunks behind their
/// answers, so a test that kills a server right after a chunk was served,
/// or reads storage directly, waits for the write first.
pub async fn wait_stored(
    data: &str,
    s3: &worldloom_cluster::storage::S3Settings,
    world: &str,
    revision: u32,
    cx: i32,
    cz: i32,
) -> Vec<u8> {
    let store = worldloom_cluster::storage::open(data, s3).expect("opening storage");
    let id = worldloom_cluster::ids::WorldId::parse(world).expect("a world id");
    let key = worldloom_cluster::storage::Key::chunk(&id, revision, worldloom_worldgen::ChunkCoord::new(cx, cz));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(bytes) = store.get(&key).await.expect("reading storage") {
            return bytes.to_vec();
        }
        assert!(std::time::Instant::now() < deadline, "{key} was never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The resident set of process `pid` (`VmRSS` in `/proc/PID/status`), KiB;
/// `None` once it has exited.
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// The proportional set size (`Pss` of `/proc/PID/smaps_rollup`) summed over
/// `pid` and every descendant (a server's sandbox zygote and workers), KiB:
/// pages shared between them are counted once in total.
pub fn tree_pss_kib(pid: u32) -> u64 {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            // The parent id is the 2nd field after the `(comm)` of /proc/PID/stat.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|f| f.parse().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree.iter().filter_map(|p| proc_field(&format!("/proc/{p}/smaps_rollup"), "Pss:")).sum()
}

fn proc_field(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// One sample of a process's memory: seconds since sampling started, its
/// RSS and its process tree's PSS, KiB.
#[derive(Clone, Copy, Debug)]
pub struct MemSample {
    pub secs: f64,
    pub rss_kib: u64,
    pub tree_pss_kib: u64,
}

/// Samples a process's memory on a thread of its own every `every` until stopped.
pub struct MemSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<MemSample>>,
}

impl MemSampler {
    pub fn start(pid: u32, every: Duration) -> MemSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            let mut samples = Vec::new();
            // Until the process is gone or the sampler is stopped.
            while let Some(rss_kib) = rss_kib(pid) {
                samples.push(MemSample { secs: t0.elapsed().as_secs_f64(), rss_kib, tree_pss_kib: tree_pss_kib(pid) });
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(every);
            }
            samples
        });
        MemSampler { stop, thread }
    }

    /// Stops sampling (after one last sample) and returns every sample.
    pub fn stop(self) -> Vec<MemSample> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the sampler did not panic")
    }
}

/// The `q` quantile (0..=1) of `sorted` (nearest rank); 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ---- Fault injection (tests/it/faults.rs) ----

impl Process {
    /// Sends the process a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid; it has not been waited for, so the pid is still ours.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
    }
}

/// How a stream ended: the frames before the end, and the close frame's
/// code and reason (`None`: the connection ended without a close frame).
#[derive(Debug)]
pub struct StreamEnd {
    pub frames: Vec<RawFrame>,
    pub close: Option<(u16, String)>,
}

impl Stream {
    /// Reads every frame until the server closes the stream (within 60 s).
    pub async fn until_close(&mut self) -> StreamEnd {
        let mut frames = Vec::new();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .expect("the stream ends within 60 s");
            match msg {
                Some(Ok(Message::Binary(b))) => frames.push(RawFrame::Chunk(b.to_vec())),
                Some(Ok(Message::Text(t))) => {
                    frames.push(RawFrame::Json(serde_json::from_str(&t).expect("JSON text frame")))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    let close = frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    return StreamEnd { frames, close: Some(close.unwrap_or((1005, String::new()))) };
                }
                Some(Ok(Message::Frame(_))) => {}
                None | Some(Err(_)) => return StreamEnd { frames, close: None },
            }
        }
    }
}

/// How many stored objects of each kind [`check_stored_objects`] read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredCounts {
    pub worlds: usize,
    pub chunks: usize,
    pub accounts: usize,
    pub tokens: usize,
    pub plugin_names: usize,
    pub plugin_versions: usize,
    pub plugin_sources: usize,
}

/// Reads every object of a Worldloom storage and panics, naming the key, if
/// one does not decode as what its prefix says it is (a torn or partial
/// object): worlds, chunks (whose world, revision and coordinate must match
/// their key), accounts, tokens, plugin names and versions, and plugin
/// sources (content-addressed: the bytes must hash to their key, and the
/// version records that name a source must find it).
pub async fn check_stored_objects(store: &dyn worldloom_cluster::storage::ObjectStore) -> StoredCounts {
    use worldloom_cluster::model::{AccountRecord, PluginNameRecord, PluginVersionRecord, TokenRecord, WorldRecord};
    use worldloom_cluster::storage::Key;
    async fn each(store: &dyn worldloom_cluster::storage::ObjectStore, prefix: &str) -> Vec<(Key, bytes::Bytes)> {
        let mut out = Vec::new();
        for key in store.list(&Key::dir(prefix)).await.unwrap_or_else(|e| panic!("listing {prefix}: {e}")) {
            // Listed then gone (a live server deleting) is not a torn object.
            if let Some(b) = store.get(&key).await.unwrap_or_else(|e| panic!("reading {key}: {e}")) {
                out.push((key, b));
            }
        }
        out
    }
    fn decoded<T: wire::Versioned>(key: &Key, bytes: &[u8]) -> T {
        wire::decode::<T>(bytes).unwrap_or_else(|e| panic!("{key} does not decode ({} bytes): {e}", bytes.len()))
    }
    let mut n = StoredCounts::default();
    for (key, b) in each(store, "worlds/").await {
        let w: WorldRecord = decoded(&key, &b);
        assert_eq!(key.as_str(), format!("worlds/{}", w.id), "a world record under another world's key");
        n.worlds += 1;
    }
    for (key, b) in each(store, "chunks/").await {
        let c: ChunkRecord = decoded(&key, &b);
        let want = Key::chunk(&c.world, c.revision, c.chunk.coord);
        assert_eq!(key, want, "a chunk record under another chunk's key");
        n.chunks += 1;
    }
    for (key, b) in each(store, "accounts/").await {
        let _: AccountRecord = decoded(&key, &b);
        n.accounts += 1;
    }
    for (key, b) in each(store, "tokens/").await {
        let _: TokenRecord = decoded(&key, &b);
        n.tokens += 1;
    }
    for (key, b) in each(store, "plugins/names/").await {
        let _: PluginNameRecord = decoded(&key, &b);
        n.plugin_names += 1;
    }
    let mut sources = std::collections::HashSet::new();
    for (key, b) in each(store, "plugins/sources/").await {
        let sha = worldloom_cluster::storage::source_sha256(&b);
        assert_eq!(key.as_str(), format!("plugins/sources/{sha}"), "a plugin source whose bytes are not its hash");
        sources.insert(sha);
        n.plugin_sources += 1;
    }
    for (key, b) in each(store, "plugins/versions/").await {
        let v: PluginVersionRecord = decoded(&key, &b);
        assert!(sources.contains(&v.sha256), "{key} names a source {} that is not stored", v.sha256);
        n.plugin_versions += 1;
    }
    n
}

/// A tmpfs mounted on a fresh directory, unmounted (and the directory
/// removed) when dropped. Mounting needs CAP_SYS_ADMIN (root in a
/// container, as in CI and on the development machine).
pub struct Tmpfs {
    pub dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "4m"); the error says why it could not.
    pub fn mount(tag: &str, size: &str) -> Result<Tmpfs, String> {
        let dir = TempDir::new(tag);
        let options = format!("size={size},mode=0755");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options.as_str(), "tmpfs"])
            .arg(&dir.0)
            .output()
            .map_err(|e| format!("running mount(8): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs -o size={size} tmpfs {} failed ({}): {}",
                dir.0.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily, so a file still open somewhere does not keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.dir.0).status();
    }
}
