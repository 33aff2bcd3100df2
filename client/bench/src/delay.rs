//! A fault proxy for benchmarks and tests: a TCP proxy in front of a server that delays every
//! byte the server sends back by a fixed time, so the server looks that much further away (a
//! slow zone). Requests pass through at once; replies keep their order, each chunk released
//! `delay` after it arrived.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A running proxy; it stops when dropped (its runtime thread ends with it).
pub struct DelayProxy {
    /// Where clients connect, `127.0.0.1:port`.
    pub addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DelayProxy {
    /// Starts a proxy to `upstream` on a free loopback port, on a thread and runtime of its own,
    /// so its work does not share the caller's runtime.
    pub fn start(upstream: &str, delay: Duration) -> std::io::Result<DelayProxy> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?.to_string();
        let upstream = upstream.to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::Builder::new().name("delay-proxy".into()).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else {
                    return;
                };
                tokio::select! {
                    _ = accept_loop(listener, upstream, delay) => {}
                    _ = stopped => {}
                }
            });
        })?;
        Ok(DelayProxy {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, delay: Duration) {
    while let Ok((client, _)) = listener.accept().await {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(&upstream).await {
                relay(client, server, delay).await;
            }
        });
    }
}

/// Relays one connection until either side closes it.
async fn relay(client: TcpStream, server: TcpStream, delay: Duration) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    // The reader stamps each chunk as it arrives; the writer holds it until its time.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Bytes)>();
    let read_replies = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let write_replies = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if client_write.write_all(&chunk).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(requests, read_replies, write_replies);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_are_delayed_and_requests_are_not() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = server.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut buf = [0u8; 4];
            while s.read_exact(&mut buf).await.is_ok() {
                s.write_all(&buf).await.unwrap();
            }
        });
        let proxy = DelayProxy::start(&upstream, Duration::from_millis(30)).unwrap();
        let mut c = TcpStream::connect(&proxy.addr).await.unwrap();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            c.write_all(b"ping").await.unwrap();
            let mut back = [0u8; 4];
            c.read_exact(&mut back).await.unwrap();
            let took = t.elapsed();
            assert_eq!(&back, b"ping");
            assert!(
                took >= Duration::from_millis(30),
                "echo through the proxy took {took:?}"
            );
            assert!(
                took < Duration::from_millis(500),
                "echo through the proxy took {took:?}"
            );
        }
    }
}
