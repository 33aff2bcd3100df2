//! The balancer's own text-protocol connection to memcached: `stats settings`, `stats slabs`,
//! `stats items` and `slabs reassign` (which memcached's binary protocol does not have).

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::backend::links::{connect, Endpoint, Stream};
use riven_memcache::slab::SlabSettings;

trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

/// One class as `stats slabs` and `stats items` show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    pub chunk_size: u64,
    pub chunks_per_page: u64,
    pub total_pages: u64,
    pub used_chunks: u64,
    /// Free chunks, those of the last page not yet handed out included.
    pub free_chunks: u64,
    pub evicted: u64,
    pub outofmemory: u64,
    /// Seconds since the last access of the class's LRU tail.
    pub age_secs: u64,
}

/// The numeric per-class stats of a `stats` reply: `(class id, field, value)` of every
/// `<prefix><id>:<field>` (`stats slabs`: no prefix; `stats items`: `items:`).
fn per_class<'a>(
    stats: &'a HashMap<String, String>,
    prefix: &'a str,
) -> impl Iterator<Item = (usize, &'a str, u64)> + 'a {
    stats.iter().filter_map(move |(k, v)| {
        let (id, field) = k.strip_prefix(prefix)?.split_once(':')?;
        Some((id.parse().ok()?, field, v.parse().ok()?))
    })
}

/// What `slabs reassign` answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reassign {
    Ok,
    /// A move is in progress: try again shortly.
    Busy,
    /// Anything else (the source has no page to spare, the move is unsafe...): the reply.
    Refused(String),
}

pub struct Admin {
    conn: BufReader<Box<dyn Duplex>>,
    line: String,
    timeout: Duration,
}

impl Admin {
    pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> io::Result<Admin> {
        let conn: Box<dyn Duplex> = match connect(endpoint, timeout).await? {
            Stream::Tcp(s) => {
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Stream::Unix(s) => Box::new(s),
        };
        Ok(Admin {
            conn: BufReader::new(conn),
            line: String::new(),
            timeout,
        })
    }

    async fn send(&mut self, command: &str) -> io::Result<()> {
        let w = self.conn.get_mut();
        w.write_all(command.as_bytes()).await?;
        w.write_all(b"\r\n").await
    }

    async fn read_line(&mut self) -> io::Result<&str> {
        self.line.clear();
        let n = tokio::time::timeout(self.timeout, self.conn.read_line(&mut self.line))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "memcached did not answer"))??;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "memcached closed the connection",
            ));
        }
        Ok(self.line.trim_end())
    }

    /// `stats <group>` as name → value.
    pub async fn stats(&mut self, group: &str) -> io::Result<HashMap<String, String>> {
        self.send(&format!("stats {group}")).await?;
        let mut out = HashMap::new();
        loop {
            let line = self.read_line().await?;
            if line == "END" {
                return Ok(out);
            }
            let Some(rest) = line.strip_prefix("STAT ") else {
                return Err(io::Error::other(format!("unexpected reply to stats: {line:?}")));
            };
            if let Some((k, v)) = rest.split_once(' ') {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }

    /// The slab table's settings, and whether memcached moves pages on request.
    pub async fn settings(&mut self) -> io::Result<(SlabSettings, bool)> {
        let s = self.stats("settings").await?;
        let d = SlabSettings::default();
        let num = |k: &str, d: usize| s.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let settings = SlabSettings {
            growth_factor: s
                .get("growth_factor")
                .and_then(|v| v.parse().ok())
                .unwrap_or(d.growth_factor),
            min_space: num("chunk_size", d.min_space),
            slab_chunk_max: num("slab_chunk_max", d.slab_chunk_max),
            page_size: num("item_size_max", d.page_size),
            max_bytes: num("maxbytes", 0) as u64,
        };
        Ok((settings, s.get("slab_reassign").is_some_and(|v| v == "yes")))
    }

    /// Every class with pages, by memcached's id, and the bytes of all their pages.
    pub async fn classes(&mut self) -> io::Result<(HashMap<usize, ClassStats>, u64)> {
        let slabs = self.stats("slabs").await?;
        let malloced = slabs.get("total_malloced").and_then(|v| v.parse().ok()).unwrap_or(0);
        let items = self.stats("items").await?;
        let mut out: HashMap<usize, ClassStats> = HashMap::new();
        for (id, field, v) in per_class(&slabs, "") {
            let c = out.entry(id).or_default();
            match field {
                "chunk_size" => c.chunk_size = v,
                "chunks_per_page" => c.chunks_per_page = v,
                "total_pages" => c.total_pages = v,
                "used_chunks" => c.used_chunks = v,
                "free_chunks" | "free_chunks_end" => c.free_chunks += v,
                _ => {}
            }
        }
        for (id, field, v) in per_class(&items, "items:") {
            let c = out.entry(id).or_default();
            match field {
                "evicted" => c.evicted = v,
                "outofmemory" => c.outofmemory = v,
                "age" => c.age_secs = v,
                _ => {}
            }
        }
        Ok((out, malloced))
    }

    /// `slabs reassign <from> <to>`: moves one page.
    pub async fn reassign(&mut self, from: usize, to: usize) -> io::Result<Reassign> {
        self.send(&format!("slabs reassign {from} {to}")).await?;
        let line = self.read_line().await?;
        Ok(match line {
            "OK" => Reassign::Ok,
            l if l.starts_with("BUSY") => Reassign::Busy,
            l => Reassign::Refused(l.to_string()),
        })
    }
}
