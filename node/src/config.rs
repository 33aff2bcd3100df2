//! Configuration, layered: built-in defaults, then a config file (`--config`), then `RIVEN_`
//! environment variables (e.g. `RIVEN_PORT=11311`, `RIVEN_MEMORY_LIMIT_MB=1024`), then command-line
//! flags, which follow memcached's (`-p -l -s -m -c -I -t -v`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::store::StoreConfig;

/// Command-line flags. Every flag is optional so that a flag left out does not hide the file or
/// environment value underneath it.
#[derive(Parser, Debug, Default)]
#[command(name = "riven-node", version, about = "A memcached-compatible cache node")]
pub struct Args {
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port")]
    pub port: Option<u16>,
    /// Interface to listen on.
    #[arg(short = 'l', long = "listen")]
    pub listen: Option<String>,
    /// Unix socket path to listen on, as well as TCP.
    #[arg(short = 's', long = "unix-socket")]
    pub unix_socket: Option<String>,
    /// Item memory in megabytes.
    #[arg(short = 'm', long = "memory-limit")]
    pub memory_limit_mb: Option<usize>,
    /// Maximum simultaneous connections.
    #[arg(short = 'c', long = "conn-limit")]
    pub conn_limit: Option<usize>,
    /// Largest item: a number of bytes, or with a k/m suffix (1m default, 128m at most).
    #[arg(short = 'I', long = "max-item-size")]
    pub max_item_size: Option<String>,
    /// Worker threads.
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Verbose logging (-v, -vv).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Size of one memory chunk in bytes (multiple of 8, at least 64).
    #[arg(long = "chunk-size")]
    pub chunk_size: Option<usize>,
    /// Longest multi-get line accepted without a newline, in bytes.
    #[arg(long = "max-line")]
    pub max_line: Option<usize>,
    /// Seconds shutdown waits for open connections to finish.
    #[arg(long = "drain-timeout")]
    pub drain_timeout_secs: Option<u64>,
    /// Directory of the on-disk L2 (enables l1-l2 mode).
    #[arg(long = "l2-path")]
    pub l2_path: Option<String>,
    /// Bound on the L2's size: bytes, or with a k/m/g suffix.
    #[arg(long = "l2-max-bytes")]
    pub l2_max_bytes: Option<String>,
    /// Port of the batch listener for bulk loads (writes L2, only replaces in L1).
    #[arg(long = "batch-port")]
    pub batch_port: Option<u16>,
    /// Use an external memcached as L1: `host:port` or `unix:/path`.
    #[arg(long = "l1-memcached")]
    pub l1_memcached: Option<String>,
    /// Connections to the L1 memcached per worker thread, shared by its client connections.
    #[arg(long = "l1-connections")]
    pub l1_connections: Option<usize>,
    /// Milliseconds a request to the L1 memcached may take.
    #[arg(long = "l1-timeout-ms")]
    pub l1_timeout_ms: Option<u64>,
    /// Data bytes per chunk in the L1 memcached (default: one slab class, 17240).
    #[arg(long = "l1-chunk-size")]
    pub l1_chunk_size: Option<usize>,
    /// Bytes each link to the L1 memcached may hold unsent (k/m/g suffixes); past it requests
    /// fail with SERVER_ERROR instead of queueing.
    #[arg(long = "l1-max-buffered")]
    pub l1_max_buffered: Option<String>,
    /// Config file (TOML) with the same settings as the flags, by their long names with `_`.
    #[arg(long = "config")]
    pub config: Option<String>,
}

/// The file / environment layer. Field names are the long flag names with `_`.
#[derive(Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields)]
struct Layer {
    port: Option<u16>,
    listen: Option<String>,
    unix_socket: Option<String>,
    memory_limit_mb: Option<usize>,
    conn_limit: Option<usize>,
    max_item_size: Option<String>,
    threads: Option<usize>,
    chunk_size: Option<usize>,
    max_line: Option<usize>,
    drain_timeout_secs: Option<u64>,
    verbose: Option<u8>,
    l2_path: Option<String>,
    l2_max_bytes: Option<String>,
    batch_port: Option<u16>,
    l1_memcached: Option<String>,
    l1_connections: Option<usize>,
    l1_timeout_ms: Option<u64>,
    l1_chunk_size: Option<usize>,
    l1_max_buffered: Option<String>,
}

/// Limits and settings a running node enforces and reports in `stats settings`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub port: u16,
    pub listen: String,
    pub unix_socket: Option<String>,
    pub max_connections: usize,
    pub threads: usize,
    /// memcached's `-I`: the largest item (value, key and memcached's item overhead).
    pub item_size_max: usize,
    pub memory_bytes: usize,
    pub chunk_size: usize,
    /// Longest multi-get line accepted without a newline (other lines: 2048 bytes, as memcached).
    pub max_line: usize,
    /// How long shutdown waits for connections to finish their requests.
    pub drain_timeout: Duration,
    /// Directory of the on-disk L2; with it the node runs in `l1-l2` mode, without it `l1-only`.
    pub l2_path: Option<PathBuf>,
    /// Bound on the L2's table files.
    pub l2_max_bytes: u64,
    /// Port of the batch listener (bulk loads: write L2, only replace in L1), if any.
    pub batch_port: Option<u16>,
    /// An external memcached as L1 (`unix:/path` or `host:port`) instead of the embedded store.
    pub l1_memcached: Option<String>,
    /// Connections to that memcached per worker thread, shared by that worker's clients. A
    /// batch takes the first with room before the next (see `Pool::pick`), so a light load is
    /// batched onto one link (one memcached thread woken per batch) and a heavy one spreads over
    /// all of them.
    pub l1_connections: usize,
    /// Bytes each L1 link may hold unsent before requests fail.
    pub l1_max_buffered: usize,
    /// How long a request to that memcached may take.
    pub l1_timeout: Duration,
    /// Data bytes per chunk in that memcached (0: the default, one slab class).
    pub l1_chunk_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 11211,
            listen: "127.0.0.1".into(),
            unix_socket: None,
            max_connections: 1024,
            threads: 4,
            item_size_max: 1 << 20,
            memory_bytes: 64 << 20,
            chunk_size: 256,
            max_line: 1 << 20,
            drain_timeout: Duration::from_secs(5),
            l2_path: None,
            l2_max_bytes: 1 << 30,
            batch_port: None,
            l1_memcached: None,
            l1_connections: 2,
            l1_max_buffered: 64 << 20,
            l1_timeout: Duration::from_millis(500),
            l1_chunk_size: 0,
        }
    }
}

impl Settings {
    /// `l1-l2` with an L2 directory, else `l1-only`.
    pub fn mode(&self) -> &'static str {
        if self.l2_path.is_some() {
            "l1-l2"
        } else {
            "l1-only"
        }
    }

    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            memory_bytes: self.memory_bytes,
            chunk_size: self.chunk_size,
            item_size_max: self.item_size_max,
            shards: 64,
        }
    }
}

/// The largest `-I` memcached allows.
pub const ITEM_SIZE_LIMIT: usize = 128 << 20;

/// Parses sizes like `1048576`, `512k`, `1m`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1usize << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("not a size: {s:?}"))
}

/// Builds the settings from the layers, then validates them.
pub fn load(args: &Args) -> Result<(Settings, u8), String> {
    let mut builder = config::Config::builder();
    if let Some(path) = &args.config {
        builder = builder.add_source(config::File::with_name(path));
    }
    builder = builder.add_source(config::Environment::with_prefix("RIVEN").try_parsing(true));
    let layer: Layer = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| format!("configuration: {e}"))?;

    let mut s = Settings::default();
    let pick = |flag: Option<usize>, file: Option<usize>, default: usize| flag.or(file).unwrap_or(default);
    s.port = args.port.or(layer.port).unwrap_or(s.port);
    s.listen = args.listen.clone().or(layer.listen).unwrap_or(s.listen);
    s.unix_socket = args.unix_socket.clone().or(layer.unix_socket);
    s.memory_bytes = pick(args.memory_limit_mb, layer.memory_limit_mb, s.memory_bytes >> 20) << 20;
    s.max_connections = pick(args.conn_limit, layer.conn_limit, s.max_connections);
    if let Some(size) = args.max_item_size.clone().or(layer.max_item_size) {
        s.item_size_max = parse_size(&size)?;
    }
    s.threads = pick(args.threads, layer.threads, s.threads);
    s.chunk_size = pick(args.chunk_size, layer.chunk_size, s.chunk_size);
    s.max_line = pick(args.max_line, layer.max_line, s.max_line);
    if let Some(d) = args.drain_timeout_secs.or(layer.drain_timeout_secs) {
        s.drain_timeout = Duration::from_secs(d);
    }
    if let Some(p) = args.l2_path.clone().or(layer.l2_path) {
        s.l2_path = Some(p.into());
    }
    if let Some(b) = args.l2_max_bytes.clone().or(layer.l2_max_bytes) {
        s.l2_max_bytes = parse_size(&b)? as u64;
    }
    s.batch_port = args.batch_port.or(layer.batch_port);
    s.l1_memcached = args.l1_memcached.clone().or(layer.l1_memcached);
    s.l1_connections = pick(args.l1_connections, layer.l1_connections, s.l1_connections);
    if let Some(ms) = args.l1_timeout_ms.or(layer.l1_timeout_ms) {
        s.l1_timeout = Duration::from_millis(ms);
    }
    s.l1_chunk_size = pick(args.l1_chunk_size, layer.l1_chunk_size, s.l1_chunk_size);
    if let Some(b) = args.l1_max_buffered.clone().or(layer.l1_max_buffered) {
        s.l1_max_buffered = parse_size(&b)?;
    }
    let verbose = if args.verbose > 0 {
        args.verbose
    } else {
        layer.verbose.unwrap_or(0)
    };
    validate(&s)?;
    Ok((s, verbose))
}

/// The same bounds memcached puts on its flags, plus the arena's.
pub fn validate(s: &Settings) -> Result<(), String> {
    if s.item_size_max < 1024 {
        return Err("item size (-I) must be at least 1024 bytes".into());
    }
    if s.item_size_max > ITEM_SIZE_LIMIT {
        return Err(format!("item size (-I) cannot be above {}m", ITEM_SIZE_LIMIT >> 20));
    }
    // Over memcached the node's -m does not hold items, so it does not bound -I.
    if s.l1_memcached.is_none() && s.item_size_max > s.memory_bytes / 2 {
        return Err("item size (-I) cannot be more than half of the memory limit (-m)".into());
    }
    if s.chunk_size < 64 || !s.chunk_size.is_multiple_of(8) {
        return Err("chunk size must be a multiple of 8, at least 64".into());
    }
    if s.l1_memcached.is_some() && s.l1_connections == 0 {
        return Err("l1 connections must be at least 1".into());
    }
    if s.threads == 0 || s.max_connections == 0 {
        return Err("threads (-t) and connections (-c) must be at least 1".into());
    }
    if s.max_line < riven_memcache::text::MAX_COMMAND_LINE {
        return Err(format!(
            "max line must be at least {}",
            riven_memcache::text::MAX_COMMAND_LINE
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn flags_override_defaults_and_are_validated() {
        let args = Args::parse_from(["riven-node", "-p", "12345", "-m", "128", "-I", "2m", "-t", "2"]);
        let (s, _) = load(&args).unwrap();
        assert_eq!(s.port, 12345);
        assert_eq!(s.memory_bytes, 128 << 20);
        assert_eq!(s.item_size_max, 2 << 20);
        assert_eq!(s.threads, 2);
        let args = Args::parse_from(["riven-node", "--l1-memcached", "unix:/tmp/m", "--l1-max-buffered", "8m"]);
        let (s, _) = load(&args).unwrap();
        assert_eq!(s.l1_max_buffered, 8 << 20);
        let too_big = Args::parse_from(["riven-node", "-I", "129m", "-m", "1024"]);
        assert!(load(&too_big).is_err());
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("riven.toml");
        std::fs::write(&path, "port = 22222\nconn_limit = 77\n").unwrap();
        let file = path.to_str().unwrap();
        let (s, _) = load(&Args::parse_from(["riven-node", "--config", file])).unwrap();
        assert_eq!((s.port, s.max_connections), (22222, 77));
        let (s, _) = load(&Args::parse_from(["riven-node", "--config", file, "-p", "1"])).unwrap();
        assert_eq!((s.port, s.max_connections), (1, 77));
    }
}
