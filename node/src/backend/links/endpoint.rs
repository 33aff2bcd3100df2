//! Where memcached is, how the links to it are set up, and what a reply and a failure are.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use riven_memcache::binary::{Opcode, Status, HEADER_LEN};

/// Where memcached listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(String),
    Unix(PathBuf),
}

impl Endpoint {
    /// `unix:/path` or `host:port`.
    pub fn parse(s: &str) -> Endpoint {
        match s.strip_prefix("unix:") {
            Some(path) => Endpoint::Unix(path.into()),
            None => Endpoint::Tcp(s.to_string()),
        }
    }

    /// Whether memcached runs on this host: a unix socket, `localhost` or a loopback address.
    pub fn is_local(&self) -> bool {
        match self {
            Endpoint::Unix(_) => true,
            Endpoint::Tcp(addr) => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                host.eq_ignore_ascii_case("localhost")
                    || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct LinksConfig {
    pub endpoint: Endpoint,
    /// Connections to open.
    pub connections: usize,
    /// How long a request may wait for its reply.
    pub timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Bytes a link may hold unsent. Past this memcached is not keeping up: calls fail at once
    /// (`SERVER_ERROR`) instead of queueing without bound.
    pub max_buffered: usize,
}

impl LinksConfig {
    pub fn new(endpoint: Endpoint) -> LinksConfig {
        LinksConfig {
            endpoint,
            connections: 2,
            timeout: Duration::from_millis(500),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(2),
            max_buffered: 64 << 20,
        }
    }
}

/// Why a request to memcached failed. All of them leave the node running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("memcached unavailable")]
    Down,
    #[error("memcached timed out")]
    Timeout,
    #[error("connection to memcached lost")]
    Lost,
    #[error("bad reply from memcached")]
    Protocol,
    #[error("memcached is not keeping up")]
    Overloaded,
}

/// One reply: its frame as read (no copies), the header's fields decoded.
///
/// The parts are found by offset rather than kept as three `Bytes`: each of those is a
/// reference count to bump and drop again on every reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub opcode: Opcode,
    pub status: Status,
    pub cas: u64,
    pub(super) frame: Bytes,
    pub(super) extras_end: usize,
    pub(super) key_end: usize,
}

impl Reply {
    pub fn extras(&self) -> &[u8] {
        &self.frame[HEADER_LEN..self.extras_end]
    }

    pub fn key(&self) -> &[u8] {
        &self.frame[self.extras_end..self.key_end]
    }

    pub fn value(&self) -> &[u8] {
        &self.frame[self.key_end..]
    }

    /// The whole frame as read: [`Reply::value`] and the others lie in it.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The value, sharing the frame's buffer.
    pub fn into_value(self) -> Bytes {
        let mut frame = self.frame;
        bytes::Buf::advance(&mut frame, self.key_end);
        frame
    }
}
