//! `riven-node`: parse the configuration, set up logging, serve until SIGTERM/SIGINT.

use clap::Parser;
use riven_node::config::{load, Args};
use riven_node::server::{run, Listeners, ServerState};
use tokio_util::sync::CancellationToken;

fn main() {
    let args = Args::parse();
    let (settings, verbose) = match load(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("riven-node: {e}");
            std::process::exit(64);
        }
    };
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()))
        .init();
    tracing::info!(?settings, "starting riven-node");

    let workers = riven_node::server::worker_threads(&settings);
    if workers < settings.threads {
        tracing::info!(
            requested = settings.threads,
            workers,
            "one worker thread per CPU core at most (half the cores over a memcached on this host)"
        );
    }
    let (runtime, workers) = match riven_node::server::runtime_for(&settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("riven-node: cannot start worker threads: {e}");
            std::process::exit(71);
        }
    };
    let code = runtime.block_on(async move {
        let listeners = match Listeners::bind(&settings).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, port = settings.port, "cannot listen");
                return 71;
            }
        };
        let state = match ServerState::build(settings, workers.as_ref().map_or(&[][..], |w| w.handles())).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return 71;
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        run(state, listeners, shutdown).await;
        tracing::info!("stopped");
        0
    });
    std::process::exit(code);
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
