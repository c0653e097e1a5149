//! The `worldloom` command: the server and the operator and plugin-author tools.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use worldloom_cluster::config::Config;

#[derive(Parser)]
#[command(
    name = "worldloom",
    version,
    about = "Procedural world generation server with sandboxed Python plugins"
)]
struct Cli {
    /// Configuration file (TOML); WORLDLOOM_* environment variables override it.
    #[arg(long, global = true, env = "WORLDLOOM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Config::load(path, &Config::process_env()).map_err(|e| anyhow::anyhow!("configuration: {e}"))
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve {
            listen,
            data,
            workers,
        } => {
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
            let runtime = Arc::new(worldloom_node::NoRuntime);
            let server =
                worldloom_cli::start(config.clone(), runtime).context("starting the server")?;
            // Tests and scripts read this line to find the port.
            println!("worldloom listening on http://{}", server.addr);
            tracing::info!(addr = %server.addr, data = %config.data, "serving");
            server.wait()?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
