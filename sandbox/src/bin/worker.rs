//! The sandbox zygote/worker process on its own (the `worldloom` binary runs
//! the same code as `worldloom sandbox-worker`): the supervisor starts it
//! with its configuration as the last argument and the control socket at
//! descriptor 3. Not meant to be run by hand.

fn main() {
    tracing_subscriber_init();
    let args: Vec<String> = std::env::args().collect();
    let Some(config) = args.last().filter(|_| args.len() >= 2) else {
        eprintln!("worldloom-sandbox-worker is started by the node's supervisor, not by hand");
        std::process::exit(2);
    };
    std::process::exit(worldloom_sandbox::worker::zygote_main(config));
}

fn tracing_subscriber_init() {}
