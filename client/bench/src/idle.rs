//! `riven-bench idle`: opens many connections that send nothing, to measure what an idle
//! connection costs a server.
//!
//! Plain blocking sockets, opened one after another: a connect on loopback takes tens of
//! microseconds, and opening them one at a time never overflows the server's accept backlog
//! (which would stall connects for a SYN retry and blur the measurement).

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::proc;

/// Connections held open.
pub struct IdleConns {
    conns: Vec<TcpStream>,
    pub opened_in: Duration,
}

impl IdleConns {
    /// Opens `n` connections to `addr`, each connect bounded by `timeout`. Fails on the first
    /// that cannot be opened, saying how many were.
    pub fn open(addr: &str, n: usize, timeout: Duration) -> Result<IdleConns, String> {
        let target: SocketAddr = addr
            .to_socket_addrs()
            .map_err(|e| format!("{addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr}: no address"))?;
        let start = Instant::now();
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            match TcpStream::connect_timeout(&target, timeout) {
                Ok(s) => conns.push(s),
                Err(e) => {
                    let hint = if e.raw_os_error() == Some(libc::EMFILE) {
                        " (out of file descriptors: raise `ulimit -n`)"
                    } else {
                        ""
                    };
                    return Err(format!("connection {} of {n} to {target}: {e}{hint}", i + 1));
                }
            }
        }
        Ok(IdleConns {
            conns,
            opened_in: start.elapsed(),
        })
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// How many connections the server has not closed: a closed one reads as end of file, an
    /// open idle one has nothing to read.
    pub fn still_open(&self) -> usize {
        self.conns
            .iter()
            .filter(|s| {
                if s.set_nonblocking(true).is_err() {
                    return false;
                }
                let mut byte = [0u8; 1];
                let open = matches!(s.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
                let _ = s.set_nonblocking(false);
                open
            })
            .count()
    }
}

/// An idle-connection measurement of one server process.
#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    pub addr: String,
    pub connections: usize,
    pub opened_secs: f64,
    /// Still open after the server's RSS settled.
    pub still_open: usize,
    /// The processes whose RSS is summed (a node over memcached counts both).
    pub pids: Vec<u32>,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// RSS growth divided by the connections opened.
    pub bytes_per_conn: Option<f64>,
}

impl IdleReport {
    pub fn human(&self) -> String {
        let mut s = format!(
            "riven-bench idle on {}: {} connections opened in {:.2} s, {} still open\n",
            self.addr, self.connections, self.opened_secs, self.still_open
        );
        if let (false, Some(b), Some(a)) = (self.pids.is_empty(), self.rss_before_kib, self.rss_after_kib) {
            let pids: Vec<String> = self.pids.iter().map(u32::to_string).collect();
            s += &format!("  server pid {}: RSS {b} KiB before, {a} KiB after", pids.join(" + "));
            if let Some(per) = self.bytes_per_conn {
                s += &format!(", {per:.0} bytes per connection");
            }
            s.push('\n');
        }
        s
    }
}

/// Opens `n` idle connections to `addr`, waits for the summed RSS of `pids` (when given) to
/// settle, and reports; the connections are returned so the caller decides how long to hold
/// them.
pub fn measure(addr: &str, n: usize, pids: &[u32], timeout: Duration) -> Result<(IdleReport, IdleConns), String> {
    let total = |f: &dyn Fn(u32) -> Option<u64>| -> Option<u64> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|&p| f(p)).sum()
    };
    let before = total(&proc::rss_kib);
    let conns = IdleConns::open(addr, n, timeout)?;
    // The server accepts and sets up connections after the client's connect returns.
    let after = total(&|p| proc::settled_rss_kib(p, Duration::from_secs(5)));
    let still_open = conns.still_open();
    let bytes_per_conn = match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some((a as f64 - b as f64) * 1024.0 / n as f64),
        _ => None,
    };
    let report = IdleReport {
        addr: addr.to_string(),
        connections: conns.len(),
        opened_secs: conns.opened_in.as_secs_f64(),
        still_open,
        pids: pids.to_vec(),
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_conn,
    };
    Ok((report, conns))
}
