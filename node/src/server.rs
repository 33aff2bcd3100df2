//! Listeners, accepting and admitting connections, and draining them at shutdown.
//!
//! [`serve`] takes bound listeners and a cancellation token; `crate::node` runs it for `main` and
//! the tests alike (tests bind port 0).

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::conn::Socket;
use crate::state::{ConnInfo, Peer, ServerState};

/// The sockets a node listens on.
#[derive(Default)]
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    pub unix: Option<UnixListener>,
    /// The batch listener (Rend's port 11212 idea).
    pub batch: Option<TcpListener>,
}

impl Listeners {
    /// Binds the TCP listener (and the unix socket, if configured) of `config`.
    pub async fn bind(config: &Config) -> io::Result<Listeners> {
        let tcp = bind_tcp(&config.server.listen, config.server.port).await?;
        let unix = match &config.server.unix_socket {
            Some(path) => {
                // A socket file left by a previous run would make bind fail.
                let _ = std::fs::remove_file(path);
                Some(UnixListener::bind(path)?)
            }
            None => None,
        };
        let batch = match config.server.batch_port {
            Some(port) => Some(bind_tcp(&config.server.listen, port).await?),
            None => None,
        };
        Ok(Listeners {
            tcp: Some(tcp),
            unix,
            batch,
        })
    }
}

/// memcached's listen backlog: a burst of connects (a client pool starting, a benchmark opening
/// thousands) must not overflow the kernel's accept queue and stall in SYN retries.
const LISTEN_BACKLOG: u32 = 1024;

async fn bind_tcp(host: &str, port: u16) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, format!("cannot resolve {host}"));
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Serves until `shutdown` is cancelled, then stops accepting, lets every connection finish the
/// requests it has read (up to `drain_timeout`) and returns: the first two steps of a node's
/// shutdown (see `crate::node`).
pub async fn serve(state: Arc<ServerState>, listeners: Listeners, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(state.config.server.conn_limit));
    let tracker = TaskTracker::new();
    let mut accept_loops = Vec::new();
    for (tcp, batch) in [(listeners.tcp, false), (listeners.batch, true)] {
        let Some(tcp) = tcp else { continue };
        let local: Arc<str> = format!("tcp:{}", tcp.local_addr().map(|a| a.to_string()).unwrap_or_default()).into();
        accept_loops.push(tokio::spawn(accept_tcp(
            tcp,
            local,
            batch,
            state.clone(),
            limit.clone(),
            tracker.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(unix) = listeners.unix {
        accept_loops.push(tokio::spawn(accept_unix(
            unix,
            state.clone(),
            limit.clone(),
            tracker.clone(),
            shutdown.clone(),
        )));
    }
    shutdown.cancelled().await;
    for l in accept_loops {
        let _ = l.await;
    }
    tracker.close();
    if tokio::time::timeout(state.config.drain_timeout(), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(open = tracker.len(), "connections still open after the drain timeout");
    }
    if let Some(path) = &state.config.server.unix_socket {
        let _ = std::fs::remove_file(path);
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept_tcp(
    listener: TcpListener,
    local: Arc<str>,
    batch: bool,
    state: Arc<ServerState>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let info = ConnInfo {
                    peer: Peer::Tcp(peer),
                    local: local.clone(),
                    last_cmd: AtomicU32::new(state.engine.clock().now()),
                };
                admit(stream, info, batch, &state, &limit, &tracker, &shutdown);
            }
            Err(e) => accept_error(e).await,
        }
    }
}

async fn accept_unix(
    listener: UnixListener,
    state: Arc<ServerState>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let local: Arc<str> = format!(
        "unix:{}",
        state.config.server.unix_socket.as_deref().unwrap_or_default()
    )
    .into();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let info = ConnInfo {
                    peer: Peer::Unix,
                    local: local.clone(),
                    last_cmd: AtomicU32::new(state.engine.clock().now()),
                };
                admit(stream, info, false, &state, &limit, &tracker, &shutdown);
            }
            Err(e) => accept_error(e).await,
        }
    }
}

/// Out of file descriptors and similar: back off instead of spinning.
async fn accept_error(e: io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A socket that can move to another runtime: out of this one's reactor, into the worker's.
trait Movable: Socket + Sized + 'static {
    type Std: Send + 'static;
    fn into_std(self) -> io::Result<Self::Std>;
    fn from_std(s: Self::Std) -> io::Result<Self>;
}

impl Movable for TcpStream {
    type Std = std::net::TcpStream;
    fn into_std(self) -> io::Result<Self::Std> {
        TcpStream::into_std(self)
    }
    fn from_std(s: Self::Std) -> io::Result<Self> {
        TcpStream::from_std(s)
    }
}

impl Movable for UnixStream {
    type Std = std::os::unix::net::UnixStream;
    fn into_std(self) -> io::Result<Self::Std> {
        UnixStream::into_std(self)
    }
    fn from_std(s: Self::Std) -> io::Result<Self> {
        UnixStream::from_std(s)
    }
}

fn admit<S: Movable>(
    mut stream: S,
    info: ConnInfo,
    batch: bool,
    state: &Arc<ServerState>,
    limit: &Arc<Semaphore>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let stats = &state.stats;
    let Ok(permit) = limit.clone().try_acquire_owned() else {
        // memcached's answer at its connection limit: tell the client, then hang up.
        stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
        tracker.spawn(async move {
            let _ = stream.write_all(b"ERROR Too many open connections\r\n").await;
        });
        return;
    };
    stats.total_connections.fetch_add(1, Ordering::Relaxed);
    stats.curr_connections.fetch_add(1, Ordering::Relaxed);
    let state = state.clone();
    let shutdown = shutdown.clone();
    if state.workers.is_empty() {
        tracker.spawn(serve_conn(Ok(stream), info, batch, state, shutdown, permit));
        return;
    }
    // The connection lives on a worker from here on (the socket was registered with the
    // accepting runtime's reactor, so it moves over as a plain socket).
    let worker = state.next_worker().clone();
    let moved = stream.into_std();
    worker.spawn(tracker.track_future(async move {
        let stream = moved.and_then(S::from_std);
        serve_conn(stream, info, batch, state, shutdown, permit).await
    }));
}

/// Serves one admitted connection to its end, then gives back its place.
async fn serve_conn<S: Socket>(
    stream: io::Result<S>,
    info: ConnInfo,
    batch: bool,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let info = Arc::new(info);
    let id = state.conns.add(info.clone());
    let engine = if batch { &state.batch_engine } else { &state.engine };
    let served = match stream {
        Ok(stream) => crate::conn::serve(stream, &state, engine, &info, &shutdown).await,
        Err(e) => Err(e),
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection ended");
    }
    state.conns.remove(id);
    state.stats.curr_connections.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
}
