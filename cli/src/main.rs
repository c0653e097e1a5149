//! The `worldloom` command: the server and the operator and plugin-author tools.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use worldloom_cli::plugin_cmd;
use worldloom_cluster::config::Config;

#[derive(Parser)]
#[command(name = "worldloom", version, about = "Procedural world generation server with sandboxed Python plugins")]
struct Cli {
    /// Configuration file (TOML); WORLDLOOM_* environment variables override it.
    #[arg(long, global = true, env = "WORLDLOOM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write, check, run or publish a Python plugin (check and run use the sandbox, exactly as the server does).
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Manage accounts: each is an API token, shown once; only its hash is stored.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        /// Storage URI (the server's `data`) [default: from the configuration].
        #[arg(long, global = true)]
        data: Option<String>,
    },
    /// Check a configuration (the --config file and WORLDLOOM_* variables).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Verify the plugin runtime and compile it into the cache (once per machine).
    Runtime {
        #[command(subcommand)]
        command: RuntimeCommand,
    },
    /// Run a coordinator: the public HTTP/WebSocket API; generation nodes join it.
    Coordinator {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Storage URI shared with the nodes: s3://BUCKET/PREFIX (fs://PATH when all run on one machine).
        #[arg(long)]
        data: Option<String>,
    },
    /// Run a generation node for one or more coordinators.
    Node {
        /// Coordinator base URLs, comma-separated (http://HOST:PORT[,...]); an entry
        /// dns+http://NAME:PORT means every address NAME resolves to, looked up again
        /// every heartbeat (on Kubernetes: the coordinators' headless Service).
        #[arg(long, value_delimiter = ',', required = true)]
        coordinator: Vec<String>,
        /// Address to listen on for coordinators' requests [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Storage URI, the same as the coordinators'.
        #[arg(long)]
        data: Option<String>,
        /// Stable node id (regions return to it after a restart) [default: $POD_NAME or the host name].
        #[arg(long)]
        id: Option<String>,
        /// URL coordinators reach this node at [default: http:// + the bound address].
        #[arg(long)]
        advertise: Option<String>,
        /// Generation worker threads [default: one per core].
        #[arg(long)]
        workers: Option<usize>,
        /// Announce this cluster protocol version instead of this build's
        /// (only to test that coordinators refuse other versions).
        #[arg(long, hide = true)]
        speak_protocol: Option<u32>,
    },
    /// Run the embedded server: a coordinator and one in-process node.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Storage URI: fs://PATH, memory:// or s3://BUCKET/PREFIX [default: fs://./data].
        #[arg(long)]
        data: Option<String>,
        /// Generation worker threads [default: one per core].
        #[arg(long)]
        workers: Option<usize>,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Write NAME.py, a commented starter plugin that passes `plugin check`. Never overwrites a file.
    New {
        /// The plugin's name: 1 to 64 of a-z, 0-9, '-' and '_', starting with a letter.
        name: String,
        /// Directory to write NAME.py in (created if missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Load a plugin and report its hooks and PARAMS, or what is wrong with it. Exit 0 or 1.
    Check {
        file: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run one hook on core chunks; one JSON object per call on stdout. Exit 0, or 1 if a call failed.
    Run {
        file: PathBuf,
        /// terrain, biome or features.
        #[arg(long)]
        hook: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// First chunk, as CX,CZ.
        #[arg(long, value_parser = plugin_cmd::parse_chunk, allow_hyphen_values = true, default_value = "0,0")]
        chunk: (i32, i32),
        /// The world's values for the plugin's PARAMS, as a JSON object.
        #[arg(long)]
        params: Option<String>,
        /// Calls on consecutive chunks (cx, cx+1, ...) through the same warm sandbox.
        #[arg(long, default_value_t = 1)]
        calls: u32,
    },
    /// Upload a plugin version to a workshop (POST /v1/plugins) and print its answer. Exit 0, 1 (refused) or 2.
    Push {
        file: PathBuf,
        /// The plugin's name in the workshop.
        #[arg(long)]
        name: String,
        /// The version, semver (e.g. 1.0.0); each name@version can be uploaded once.
        #[arg(long)]
        version: String,
        /// What the plugin does (searched by the workshop listing).
        #[arg(long, default_value = "")]
        description: String,
        /// The server's base URL.
        #[arg(long, env = "WORLDLOOM_SERVER", default_value = plugin_cmd::DEFAULT_SERVER)]
        server: String,
        /// API token of the uploading account (`worldloom token create`).
        #[arg(long, env = "WORLDLOOM_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an account and print its token (the only time it is shown).
    Create { name: String },
    /// Revoke an account's token.
    Revoke { name: String },
    /// List account names.
    List,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration; print what it resolves to (secrets hidden). Exit 0 or 1.
    Check,
}

#[derive(Subcommand)]
enum RuntimeCommand {
    /// Verify the runtime artifacts and compile them into the cache if needed.
    Prepare,
}

/// Loads the engine in this process (only `runtime prepare` does: servers
/// and the plugin commands run plugins in sandbox worker processes).
fn engine(config: &Config) -> anyhow::Result<Arc<worldloom_sandbox::Engine>> {
    let mut cfg = worldloom_sandbox::SandboxConfig::new(&config.runtime_dir, &config.cache_dir);
    cfg.limits = config.limits;
    cfg.biome_count = worldloom_worldgen::BIOMES.len() as u16;
    let started = std::time::Instant::now();
    let engine = worldloom_sandbox::Engine::load(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "python runtime ready");
    Ok(engine)
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Config::load(path, &Config::process_env()).map_err(|e| anyhow::anyhow!("configuration: {e}"))
}

fn main() -> std::process::ExitCode {
    // `worldloom sandbox-worker CONFIG`: the sandbox zygote the node starts
    // (never by hand). Dispatched before anything reads the configuration
    // or the environment: a sandbox process knows only what it is given.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("sandbox-worker") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_writer(std::io::stderr)
            .init();
        let Some(config) = args.get(2) else {
            eprintln!("worldloom sandbox-worker is started by the node's sandbox supervisor, not by hand");
            return std::process::ExitCode::from(plugin_cmd::EXIT_USAGE);
        };
        std::process::exit(worldloom_sandbox::worker::zygote_main(config));
    }
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve { .. } | Command::Coordinator { .. } | Command::Node { .. });
    if !serving {
        // A command-line tool piped into `head` should stop quietly, like any
        // Unix tool; the server keeps Rust's default (EPIPE as an error) for sockets.
        // SAFETY: restores a signal's default disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let default_filter = if serving { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<plugin_cmd::Usage>().is_some() => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(plugin_cmd::EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve { listen, data, workers } => {
            let mut config = load_config(cli.config.as_deref())?;
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(d) = data {
                config.data = d;
            }
            if let Some(w) = workers {
                config.workers = w;
            }
            let runtime = worldloom_cli::sandbox_runtime(&config)?;
            // Load the engine in the background so the first plugin does not wait for it.
            let supervisor = runtime.supervisor().clone();
            supervisor.prestart();
            let server = worldloom_cli::start(config.clone(), runtime).context("starting the server")?;
            // Tests and scripts read this line to find the port.
            println!("worldloom listening on http://{}", server.addr);
            tracing::info!(addr = %server.addr, data = %config.data, "serving");
            server.wait_for_signals()?;
            // Drained: no sandbox outlives us, not even one still loading the engine.
            supervisor.stop_now();
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Coordinator { listen, data } => {
            let mut config = load_config(cli.config.as_deref())?;
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(d) = data {
                config.data = d;
            }
            let server = worldloom_cli::start_role(config.clone(), worldloom_cli::Role::Coordinator)
                .context("starting the coordinator")?;
            println!("worldloom coordinator listening on http://{}", server.addr);
            tracing::info!(addr = %server.addr, data = %config.data, "coordinating");
            server.wait_for_signals()?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Node { coordinator, listen, data, id, advertise, workers, speak_protocol } => {
            let mut config = load_config(cli.config.as_deref())?;
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(d) = data {
                config.data = d;
            }
            if let Some(w) = workers {
                config.workers = w;
            }
            let id = id
                .or_else(|| std::env::var("POD_NAME").ok())
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
                .filter(|s| !s.is_empty())
                .context("no node id: pass --id NAME")?;
            let runtime = worldloom_cli::sandbox_runtime(&config)?;
            let supervisor = runtime.supervisor().clone();
            // Load the engine before taking work: the node reports ready once it has.
            supervisor.prestart();
            let (stopping, stopped) = (supervisor.clone(), supervisor.clone());
            let role = worldloom_cli::NodeRole {
                runtime,
                coordinators: coordinator,
                id: id.clone(),
                advertise,
                protocol: speak_protocol.unwrap_or(worldloom_cluster::protocol::PROTOCOL_VERSION),
                ready: std::sync::Arc::new(move || supervisor.ready()),
                on_refused: Box::new(move |message| {
                    eprintln!("error: {message}");
                    // Not a sandbox left loading the engine for a minute after we are gone.
                    stopping.stop_now();
                    std::process::exit(2);
                }),
            };
            let server = worldloom_cli::start_role(config.clone(), worldloom_cli::Role::Node(role))
                .context("starting the node")?;
            println!("worldloom node {id} listening on http://{}", server.addr);
            tracing::info!(addr = %server.addr, data = %config.data, "generating");
            server.wait_for_signals()?;
            stopped.stop_now();
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Plugin { command: PluginCommand::New { name, dir } } => plugin_cmd::new_plugin(&name, &dir),
        Command::Plugin { command: PluginCommand::Push { file, name, version, description, server, token } } => {
            plugin_cmd::push(plugin_cmd::PushArgs {
                file: &file,
                name: &name,
                version: &version,
                description: &description,
                server: &server,
                token: token.as_deref(),
            })
        }
        Command::Plugin { command } => {
            let config = load_config(cli.config.as_deref())?;
            let supervisor = worldloom_cli::supervisor(&config, 1)?;
            let mut worker = supervisor.worker();
            match command {
                PluginCommand::Check { file, json } => plugin_cmd::check(&mut worker, &config.limits, &file, json),
                PluginCommand::Run { file, hook, seed, chunk, params, calls } => plugin_cmd::run(
                    &mut worker,
                    &config.limits,
                    plugin_cmd::RunArgs { file: &file, hook: &hook, seed, chunk, params: params.as_deref(), calls },
                ),
                PluginCommand::New { .. } | PluginCommand::Push { .. } => unreachable!("handled above"),
            }
        }
        Command::Token { command, data } => {
            let mut config = load_config(cli.config.as_deref())?;
            if let Some(d) = data {
                config.data = d;
            }
            if config.data.starts_with("memory://") {
                return Err(plugin_cmd::Usage(
                    "memory:// storage lives inside one server process; an account created from here would \
                     vanish at once. Use the server's fs:// or s3:// storage"
                        .into(),
                )
                .into());
            }
            let store =
                worldloom_cluster::storage::open(&config.data, &config.s3).map_err(|e| anyhow::anyhow!("{e}"))?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                use worldloom_coordinator::auth;
                match command {
                    TokenCommand::Create { name } => {
                        let token = auth::create_account(store.as_ref(), &name).await?;
                        eprintln!("created account {name:?} in {}; this token is shown only once:", store.describe());
                        println!("{token}");
                    }
                    TokenCommand::Revoke { name } => {
                        auth::revoke_account(store.as_ref(), &name).await?;
                        eprintln!("revoked the token of {name:?}");
                    }
                    TokenCommand::List => {
                        for name in auth::list_accounts(store.as_ref()).await? {
                            println!("{name}");
                        }
                    }
                }
                anyhow::Ok(())
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Config { command: ConfigCommand::Check } => {
            let config = load_config(cli.config.as_deref())?;
            println!("{config:#?}");
            eprintln!("configuration is valid");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Runtime { command: RuntimeCommand::Prepare } => {
            let config = load_config(cli.config.as_deref())?;
            engine(&config)?;
            println!("python runtime verified and compiled in {}", config.cache_dir.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
