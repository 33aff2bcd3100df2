//! Reading the layers: defaults, a TOML file, `RIVEN_` environment variables, then flags.

use clap::Parser;

use super::{validate, Config, ConfigError};

/// Command-line flags, memcached's where memcached has the setting. Every flag is optional so
/// that a flag left out does not hide the file or environment value underneath it; each one
/// names the key it sets.
#[derive(Parser, Debug, Default)]
#[command(name = "riven-node", version, about = "A memcached-compatible cache node")]
pub struct Args {
    /// TCP port to listen on [server.port].
    #[arg(short = 'p', long = "port")]
    pub port: Option<u16>,
    /// Interface to listen on [server.listen].
    #[arg(short = 'l', long = "listen")]
    pub listen: Option<String>,
    /// Unix socket path to listen on, as well as TCP [server.unix_socket].
    #[arg(short = 's', long = "unix-socket")]
    pub unix_socket: Option<String>,
    /// Item memory in megabytes [l1.memory.limit_mb].
    #[arg(short = 'm', long = "memory-limit")]
    pub memory_limit_mb: Option<u64>,
    /// Maximum simultaneous connections [server.conn_limit].
    #[arg(short = 'c', long = "conn-limit")]
    pub conn_limit: Option<u64>,
    /// Largest item: bytes, or with a k/m suffix (1m default, 128m at most) [limits.max_item_size].
    #[arg(short = 'I', long = "max-item-size")]
    pub max_item_size: Option<String>,
    /// Worker threads [server.threads].
    #[arg(short = 't', long = "threads")]
    pub threads: Option<u64>,
    /// Verbose logging (-v, -vv) [log.verbose].
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Size of one memory chunk in bytes (multiple of 8, at least 64) [l1.memory.chunk_size].
    #[arg(long = "chunk-size")]
    pub chunk_size: Option<u64>,
    /// Longest multi-get line accepted without a newline, in bytes [limits.max_line].
    #[arg(long = "max-line")]
    pub max_line: Option<u64>,
    /// Seconds shutdown waits for open connections to finish [server.drain_timeout_secs].
    #[arg(long = "drain-timeout")]
    pub drain_timeout_secs: Option<u64>,
    /// Directory of the on-disk L2 (enables l1-l2 mode) [l2.path].
    #[arg(long = "l2-path")]
    pub l2_path: Option<String>,
    /// Bound on the L2's size: bytes, or with a k/m/g suffix [l2.max_bytes].
    #[arg(long = "l2-max-bytes")]
    pub l2_max_bytes: Option<String>,
    /// Port of the batch listener for bulk loads [server.batch_port].
    #[arg(long = "batch-port")]
    pub batch_port: Option<u16>,
    /// Use an external memcached as L1: `host:port` or `unix:/path` [l1.memcached.endpoint].
    #[arg(long = "l1-memcached")]
    pub l1_memcached: Option<String>,
    /// Connections to the L1 memcached per worker thread [l1.memcached.connections].
    #[arg(long = "l1-connections")]
    pub l1_connections: Option<u64>,
    /// Milliseconds a request to the L1 memcached may take [l1.memcached.timeout_ms].
    #[arg(long = "l1-timeout-ms")]
    pub l1_timeout_ms: Option<u64>,
    /// Data bytes per chunk in the L1 memcached (default: one slab class) [l1.memcached.chunk_size].
    #[arg(long = "l1-chunk-size")]
    pub l1_chunk_size: Option<u64>,
    /// Bytes each link to the L1 memcached may hold unsent (k/m/g suffixes); past it requests
    /// fail with SERVER_ERROR instead of queueing [l1.memcached.max_buffered].
    #[arg(long = "l1-max-buffered")]
    pub l1_max_buffered: Option<String>,
    /// Config file (TOML), with the sections and keys of the README.
    #[arg(long = "config")]
    pub config: Option<String>,
}

impl Args {
    /// The keys the given flags set, as the last layer.
    fn overrides(&self) -> Vec<(&'static str, ::config::Value)> {
        let mut o: Vec<(&'static str, ::config::Value)> = Vec::new();
        let mut int = |key, v: Option<u64>| {
            if let Some(v) = v {
                o.push((key, ::config::Value::from(v)));
            }
        };
        int("server.port", self.port.map(u64::from));
        int("server.batch_port", self.batch_port.map(u64::from));
        int("server.conn_limit", self.conn_limit);
        int("server.threads", self.threads);
        int("server.drain_timeout_secs", self.drain_timeout_secs);
        int("l1.memory.limit_mb", self.memory_limit_mb);
        int("l1.memory.chunk_size", self.chunk_size);
        int("limits.max_line", self.max_line);
        int("l1.memcached.connections", self.l1_connections);
        int("l1.memcached.timeout_ms", self.l1_timeout_ms);
        int("l1.memcached.chunk_size", self.l1_chunk_size);
        if self.verbose > 0 {
            o.push(("log.verbose", ::config::Value::from(u64::from(self.verbose))));
        }
        let text = [
            ("server.listen", &self.listen),
            ("server.unix_socket", &self.unix_socket),
            ("limits.max_item_size", &self.max_item_size),
            ("l2.path", &self.l2_path),
            ("l2.max_bytes", &self.l2_max_bytes),
            ("l1.memcached.endpoint", &self.l1_memcached),
            ("l1.memcached.max_buffered", &self.l1_max_buffered),
        ];
        for (key, v) in text {
            if let Some(v) = v {
                o.push((key, ::config::Value::from(v.as_str())));
            }
        }
        o
    }
}

/// The configuration from the defaults, the `--config` file, the process's `RIVEN_`
/// environment and the flags, validated.
pub fn load(args: &Args) -> Result<Config, ConfigError> {
    load_from(args, std::env::vars())
}

/// [`load`] with the environment given (tests pass their own, so they do not race on the
/// process's).
pub fn load_from(args: &Args, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    let env: ::config::Map<String, String> = env.into_iter().collect();
    let mut builder = ::config::Config::builder();
    if let Some(path) = &args.config {
        builder = builder.add_source(::config::File::new(path, ::config::FileFormat::Toml));
    }
    builder = builder.add_source(
        ::config::Environment::with_prefix("RIVEN")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(env)),
    );
    for (key, value) in args.overrides() {
        builder = builder
            .set_override(key, value)
            .map_err(|e| ConfigError::Load(e.to_string()))?;
    }
    let config: Config = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Load(e.to_string()))?;
    validate(&config)?;
    Ok(config)
}
