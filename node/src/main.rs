//! `riven-node`: parse the configuration, set up logging, start the node, shut it down in order
//! on SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use riven_node::config::{load, Args};
use riven_node::node::Node;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // First, before any thread or buffer exists.
    let tuned = riven_node::malloc::keep_freed_memory();
    let args = Args::parse();
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("riven-node: {e}");
            return ExitCode::from(64);
        }
    };
    let level = match config.log.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()))
        .init();
    // Secrets show redacted (`config::Secret`).
    tracing::info!(?config, "starting riven-node with this effective configuration");
    if !tuned {
        tracing::debug!("glibc malloc thresholds left as they are (GLIBC_TUNABLES, or not glibc)");
    }
    let workers = riven_node::node::worker_threads(&config);
    if workers < config.server.threads {
        tracing::info!(
            requested = config.server.threads,
            workers,
            "one worker thread per CPU core at most (half the cores over a memcached on this host)"
        );
    }
    let node = match Node::start(config) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(71);
        }
    };
    let signals = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot wait for signals");
            node.stop();
            return ExitCode::from(71);
        }
    };
    let token = node.shutdown_token();
    signals.block_on(async move {
        wait_for_signal(token).await;
        node.shutdown().await;
    });
    tracing::info!("exiting");
    ExitCode::SUCCESS
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
