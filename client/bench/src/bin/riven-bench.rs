//! `riven-bench`: load, correctness and benchmark tools for memcached-compatible servers. This
//! file only parses flags and calls `riven_bench`.
//!
//! Output: a human summary on stdout, or with `--json` one JSON line on stdout and the summary on
//! stderr. Exit status 0 when everything checked out, 1 on any mismatch, protocol error,
//! unexpected reply, timeout or failure to start, 2 on bad flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use riven_bench::common::Common;
use riven_bench::compare::{self, CompareConfig, ServerSettings};
use riven_bench::load::{self, LoadConfig};
use riven_bench::sizes::SizesOpts;
use riven_bench::value::{parse_size, KeySpace, ValueSpec};
use riven_bench::wire::Protocol;
use riven_bench::{blast, chart, engine, fill, idle, parse_duration, proc, setget, setops, sizes};

#[derive(Parser)]
#[command(
    name = "riven-bench",
    version,
    about = "Load, correctness and benchmark tools for memcached-compatible servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Random gets and sets of values derived from their keys, every hit verified.
    Load(LoadArgs),
    /// A random mix of every command, checked against a model of each key; latency per command.
    Blast(ToolArgs),
    /// Set keys then read them straight back, value sizes drawn from a range (default 5 B..20 KiB).
    Setget(ToolArgs),
    /// Every value size from 0 to a maximum, hitting each chunk boundary: set, read back, compare.
    Sizes(SizesArgs),
    /// Sets only: the set rate, and evictions under the server's memory bound (from `stats`).
    Fill(FillArgs),
    /// Every storage command in every key state, each reply checked against memcached's semantics.
    Setops(ToolArgs),
    /// Open many idle connections and hold them (to measure a server's memory per connection).
    Idle(IdleArgs),
    /// Benchmark memcached against riven-node in each mode, alternating rounds; table, BENCHMARKS.md, chart.
    Compare(CompareArgs),
    /// The smart client (riven-client) against the raw engine on one node, and its hedged reads
    /// with one zone slowed; table, and BENCHMARKS.md's section.
    Client(ClientArgs),
}

#[derive(Args)]
struct ClientArgs {
    /// The riven-node binary.
    #[arg(long, default_value = "target/release/riven-node")]
    node: PathBuf,
    /// The node's worker threads (-t).
    #[arg(long, default_value_t = 1)]
    node_threads: usize,
    /// Threads of the load generator (both the raw engine and the client).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Throughput settings, CONNECTIONSxPIPELINE[/CLIENT_CONNECTIONS]: the raw engine's
    /// connections and depth; the client runs as many callers as requests in flight, on
    /// CLIENT_CONNECTIONS connections (default --client-connections).
    #[arg(long, value_delimiter = ',', default_value = "50x1,4x16,4x16/4")]
    settings: Vec<String>,
    /// The client's connections to the node, where a setting does not say.
    #[arg(long, default_value_t = 2)]
    client_connections: usize,
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Each round's measured phase, per side.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// The slow zone's added delay.
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    delay: Duration,
    /// Reads per second of the hedging measurement (open loop).
    #[arg(long, default_value_t = 2000.0)]
    hedge_rate: f64,
    /// 1 round of 1 s.
    #[arg(long)]
    quick: bool,
    /// One JSON line on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Replace (or add) the section "Smart client (riven-client)" of this Markdown file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

/// Options every tool takes. Those left unset take the tool's own default (see each tool's help).
#[derive(Args)]
struct CommonArgs {
    /// Server address.
    #[arg(short, long, default_value = "127.0.0.1:11211")]
    addr: String,
    /// text, meta or binary.
    #[arg(short = 'P', long, default_value = "text")]
    protocol: Protocol,
    #[arg(short, long, default_value_t = 50)]
    connections: usize,
    /// Requests sent per batch on each connection, with one write (in open loop: at most this
    /// many that have fallen due).
    #[arg(short = 'd', long, default_value_t = 1)]
    pipeline: usize,
    /// Keys per multi-get (load: 1, i.e. plain gets, unless given; the others: 10).
    #[arg(long)]
    mget: Option<usize>,
    /// Number of distinct keys.
    #[arg(short, long)]
    keys: Option<u64>,
    /// Key length in bytes (0: just long enough for the key space).
    #[arg(long, default_value_t = 0)]
    key_len: usize,
    /// Key prefix (each tool has its own by default, so tools do not read each other's keys).
    #[arg(long)]
    key_prefix: Option<String>,
    /// Value size in bytes, or a range MIN..MAX (k and m suffixes allowed).
    #[arg(short, long)]
    value_size: Option<ValueSpec>,
    /// Fraction of requests that read.
    #[arg(short, long)]
    get_ratio: Option<f64>,
    /// Length of the measured phase (e.g. 10s, 500ms); a bound for the tools that end by
    /// themselves (sizes, setops).
    #[arg(short = 't', long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Bound on every connect, write and read.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Open loop at this many requests per second (all connections together), each latency
    /// measured from the request's intended send time; without it, closed loop.
    #[arg(short, long)]
    rate: Option<f64>,
    /// Threads of the load generator (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of the key, command and value choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print a line per second to stderr (on by default for runs of 10 s or more).
    #[arg(long)]
    progress: bool,
    /// No progress lines.
    #[arg(long, conflicts_with = "progress")]
    quiet: bool,
    /// One JSON line on stdout (the summary goes to stderr).
    #[arg(long)]
    json: bool,
}

/// A tool's defaults for the options it leaves to the user.
struct Defaults {
    keys: u64,
    prefix: &'static str,
    values: &'static str,
    get_ratio: f64,
    duration: Duration,
    mget: usize,
}

impl CommonArgs {
    fn common(&self, tool: &str, d: &Defaults) -> Result<Common, String> {
        let prefix = self.key_prefix.as_deref().unwrap_or(d.prefix);
        let keys =
            KeySpace::new(prefix, self.key_len, self.keys.unwrap_or(d.keys)).map_err(|e| format!("{tool}: {e}"))?;
        let mut c = Common::new(self.addr.clone(), self.protocol, keys);
        c.engine.connections = self.connections;
        c.engine.pipeline = self.pipeline;
        c.engine.duration = self.duration.unwrap_or(d.duration);
        c.engine.timeout = self.timeout;
        c.engine.rate = self.rate;
        c.engine.progress = self.progress || (!self.quiet && c.engine.duration >= Duration::from_secs(10));
        c.values = match self.value_size {
            Some(v) => v,
            None => d.values.parse().map_err(|e| format!("{tool}: {e}"))?,
        };
        c.get_ratio = self.get_ratio.unwrap_or(d.get_ratio);
        c.mget = self.mget.unwrap_or(d.mget);
        c.seed = self.seed;
        if c.engine.connections > 1000 {
            let _ = proc::raise_nofile_limit();
        }
        Ok(c)
    }
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Do not pre-fill the key space before measuring.
    #[arg(long)]
    no_warmup: bool,
    /// Count a get miss as an error.
    #[arg(long)]
    fail_on_miss: bool,
}

#[derive(Args)]
struct ToolArgs {
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct SizesArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The largest value (k and m suffixes allowed).
    #[arg(long, default_value = "128k", value_parser = parse_size)]
    max: usize,
    /// The server's chunk size: sizes on and beside every multiple are checked.
    #[arg(long, default_value = "256", value_parser = parse_size)]
    chunk_size: usize,
    /// Bytes the server keeps before the value in the first chunk (item header and key), which
    /// moves the value sizes at which chunks fill up.
    #[arg(long, default_value_t = 0)]
    chunk_offset: usize,
    /// Every size up to this one is checked.
    #[arg(long, default_value = "512", value_parser = parse_size)]
    dense: usize,
}

#[derive(Args)]
struct FillArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// How often to read `stats`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    stats_interval: Duration,
}

#[derive(Args)]
struct IdleArgs {
    #[arg(short, long, default_value = "127.0.0.1:11211")]
    addr: String,
    #[arg(short, long, default_value_t = 10_000)]
    connections: usize,
    /// Server pid, to report its RSS before and after; give it twice for a server and the one it
    /// runs on (their RSS is summed).
    #[arg(long)]
    pid: Vec<u32>,
    /// How long to hold the connections after reporting.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    hold: Duration,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CompareArgs {
    /// The memcached program.
    #[arg(long, default_value = "memcached")]
    memcached: String,
    /// The riven-node program (build it with `cargo build --release -p riven-node`).
    #[arg(long, default_value = "target/release/riven-node")]
    node: PathBuf,
    /// Node modes to run beside memcached: embedded (its memory store), memcached (over the
    /// same memcached as L1, `--l1-memcached`), l1-l2 (memory store over an on-disk L2).
    #[arg(long, value_delimiter = ',', default_value = "embedded,memcached,l1-l2")]
    modes: Vec<String>,
    /// Rounds per target and setting (targets alternate within each round). Nine: on a noisy
    /// 2-core machine a single round's ratio at pipeline depth 16 ranged from 0.57 to 0.93, and
    /// the median of five moved by several hundredths from run to run.
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Length of one round.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    round_duration: Duration,
    #[arg(long, value_delimiter = ',', default_value = "text,meta,binary")]
    protocols: Vec<Protocol>,
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pipelines: Vec<usize>,
    /// Value sizes in bytes (k and m suffixes allowed), one setting each.
    #[arg(long, value_delimiter = ',', default_value = "100,100k", value_parser = parse_size)]
    value_sizes: Vec<usize>,
    #[arg(long, default_value_t = 50)]
    connections: usize,
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    #[arg(long, default_value_t = 0.9)]
    get_ratio: f64,
    /// Idle connections opened against each server (0 skips the idle test).
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// Server threads (-t).
    #[arg(long, default_value_t = 4)]
    server_threads: usize,
    /// Server memory in MiB (-m).
    #[arg(long, default_value_t = 1024)]
    memory_mb: usize,
    /// The servers' largest item in MiB (-I); 0: their default (1 MiB), or 2 when a value size
    /// is 1 MiB or more (memcached stores key, header and value in the item).
    #[arg(long, default_value_t = 0)]
    item_size_max_mb: usize,
    /// Server connection limit (-c).
    #[arg(long, default_value_t = 20_000)]
    max_connections: usize,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Threads of the load generator for values of 64 KiB or more, where one thread is the
    /// bottleneck against memcached direct.
    #[arg(long, default_value_t = 2)]
    large_client_threads: usize,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// A short run of the whole matrix: 1 round of 1 s per setting, 1,000 idle connections.
    #[arg(long)]
    quick: bool,
    /// Shorter still, to check the runner works: 1 round of 1 s, 500 idle connections.
    #[arg(long, conflicts_with = "quick")]
    smoke: bool,
    /// One JSON line on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also write the report as Markdown to this file (BENCHMARKS.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Also draw the chart of throughput ratios and latency percentiles to this PNG file.
    #[arg(long)]
    chart: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ok = match cli.command {
        Cmd::Load(a) => load_cmd(a),
        Cmd::Blast(a) => tool_cmd("blast", a.common, &BLAST),
        Cmd::Setget(a) => tool_cmd("setget", a.common, &SETGET),
        Cmd::Setops(a) => tool_cmd("setops", a.common, &SETOPS),
        Cmd::Sizes(a) => sizes_cmd(a),
        Cmd::Fill(a) => fill_cmd(a),
        Cmd::Idle(a) => idle_cmd(a),
        Cmd::Compare(a) => compare_cmd(a),
        Cmd::Client(a) => client_cmd(a),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

const LOAD: Defaults = Defaults {
    keys: 100_000,
    prefix: "rb:",
    values: "100",
    get_ratio: 0.9,
    duration: Duration::from_secs(10),
    mget: 1,
};
const BLAST: Defaults = Defaults {
    keys: 10_000,
    prefix: "bl:",
    values: "1..1000",
    get_ratio: 0.4,
    duration: Duration::from_secs(10),
    mget: 10,
};
const SETGET: Defaults = Defaults {
    keys: 100_000,
    prefix: "sg:",
    values: "5..20k",
    get_ratio: 0.5,
    duration: Duration::from_secs(10),
    mget: 10,
};
const SETOPS: Defaults = Defaults {
    keys: 1000,
    prefix: "so:",
    values: "1..2000",
    get_ratio: 0.5,
    duration: Duration::from_secs(60),
    mget: 10,
};
const SIZES: Defaults = Defaults {
    keys: 1,
    prefix: "sz:",
    values: "0",
    get_ratio: 0.5,
    duration: Duration::from_secs(120),
    mget: 10,
};
const FILL: Defaults = Defaults {
    keys: 1_000_000,
    prefix: "fl:",
    values: "100",
    get_ratio: 0.0,
    duration: Duration::from_secs(30),
    mget: 10,
};

/// Prints the human text, or the JSON line with the text on stderr.
fn emit(human: &str, json: Option<String>) {
    match json {
        Some(j) => {
            eprint!("{human}");
            println!("{j}");
        }
        None => print!("{human}"),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize: {e}\"}}"))
}

/// Builds the runtime, or says why not.
fn runtime(tool: &str, threads: usize) -> Option<tokio::runtime::Runtime> {
    match engine::runtime(threads) {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("riven-bench {tool}: tokio runtime: {e}");
            None
        }
    }
}

fn load_cmd(a: LoadArgs) -> bool {
    let c = match a.common.common("load", &LOAD) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("riven-bench {e}");
            return false;
        }
    };
    let mut cfg = LoadConfig::new(c.engine.addr.clone(), c.engine.protocol);
    cfg.connections = c.engine.connections;
    cfg.pipeline = c.engine.pipeline;
    cfg.keys = c.engine.keys.clone();
    cfg.values = c.values;
    cfg.get_ratio = c.get_ratio;
    cfg.mget = c.mget;
    cfg.rate = c.engine.rate;
    cfg.duration = c.engine.duration;
    cfg.timeout = c.engine.timeout;
    cfg.warmup = !a.no_warmup;
    cfg.fail_on_miss = a.fail_on_miss;
    cfg.seed = c.seed;
    cfg.progress = c.engine.progress;
    let Some(rt) = runtime("load", a.common.threads) else {
        return false;
    };
    let report = rt.block_on(load::run(&cfg));
    emit(&report.human(), a.common.json.then(|| to_json(&report)));
    report.ok
}

fn tool_cmd(tool: &str, a: CommonArgs, defaults: &Defaults) -> bool {
    let c = match a.common(tool, defaults) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("riven-bench {e}");
            return false;
        }
    };
    let Some(rt) = runtime(tool, a.threads) else {
        return false;
    };
    let json = a.json;
    match tool {
        "blast" => {
            let r = rt.block_on(blast::run(&c));
            emit(&r.human(), json.then(|| to_json(&r)));
            r.ok()
        }
        "setget" => {
            let r = rt.block_on(setget::run(&c));
            emit(&r.human(), json.then(|| to_json(&r)));
            r.ok()
        }
        _ => {
            let r = rt.block_on(setops::run(&c));
            emit(&r.human(), json.then(|| to_json(&r)));
            r.ok()
        }
    }
}

fn sizes_cmd(a: SizesArgs) -> bool {
    let c = match a.common.common("sizes", &SIZES) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("riven-bench {e}");
            return false;
        }
    };
    let opts = SizesOpts {
        max: a.max,
        chunk: a.chunk_size,
        offset: a.chunk_offset,
        dense: a.dense,
    };
    let Some(rt) = runtime("sizes", a.common.threads) else {
        return false;
    };
    let r = rt.block_on(sizes::run(&c, &opts));
    emit(&r.human(), a.common.json.then(|| to_json(&r)));
    r.ok()
}

fn fill_cmd(a: FillArgs) -> bool {
    let c = match a.common.common("fill", &FILL) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("riven-bench {e}");
            return false;
        }
    };
    let Some(rt) = runtime("fill", a.common.threads) else {
        return false;
    };
    let r = rt.block_on(fill::run(&c, a.stats_interval));
    emit(&r.human(), a.common.json.then(|| to_json(&r)));
    r.ok()
}

fn idle_cmd(a: IdleArgs) -> bool {
    if let Err(e) = proc::raise_nofile_limit() {
        eprintln!("riven-bench idle: cannot raise the open-file limit: {e}");
    }
    match idle::measure(&a.addr, a.connections, &a.pid, a.timeout) {
        Ok((report, conns)) => {
            emit(&report.human(), a.json.then(|| to_json(&report)));
            if !a.hold.is_zero() {
                std::thread::sleep(a.hold);
            }
            let open = conns.still_open();
            if open < conns.len() {
                eprintln!(
                    "riven-bench idle: the server closed {} of {} connections",
                    conns.len() - open,
                    conns.len()
                );
                return false;
            }
            report.still_open == report.connections
        }
        Err(e) => {
            eprintln!("riven-bench idle: {e}");
            false
        }
    }
}

/// How the Markdown file refers to the chart: by file name when they share a directory.
fn chart_link(markdown: Option<&Path>, chart: &Path) -> String {
    let dir = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    match (markdown, chart.file_name()) {
        (Some(md), Some(name)) if dir(md) == dir(chart) => name.to_string_lossy().into_owned(),
        _ => chart.display().to_string(),
    }
}

fn compare_cmd(a: CompareArgs) -> bool {
    let Some(memcached) = proc::which(&a.memcached) else {
        eprintln!(
            "riven-bench compare: {} not found (install it: apt-get install memcached)",
            a.memcached
        );
        return false;
    };
    if !a.node.exists() {
        eprintln!(
            "riven-bench compare: {} not found (build it: cargo build --release -p riven-node)",
            a.node.display()
        );
        return false;
    }
    let largest = a.value_sizes.iter().copied().max().unwrap_or(0);
    let settings = ServerSettings {
        threads: a.server_threads,
        item_size_max_mb: match a.item_size_max_mb {
            0 if largest >= 1 << 20 => 2,
            mb => mb,
        },
        memory_mb: a.memory_mb,
        max_connections: a.max_connections,
    };
    let mut targets = vec![compare::memcached(memcached, settings)];
    for mode in &a.modes {
        targets.push(match mode.as_str() {
            "embedded" => compare::riven_node(&a.node, settings),
            "memcached" => compare::riven_node_over_memcached(&a.node, settings, 0),
            "l1-l2" => compare::riven_node_l1_l2(&a.node, settings),
            other => {
                eprintln!("riven-bench compare: unknown mode {other:?} (embedded, memcached or l1-l2)");
                return false;
            }
        });
    }
    let command = proc::shell_join(&std::env::args().collect::<Vec<_>>());
    let mut cfg = CompareConfig::new(targets, command);
    cfg.protocols = a.protocols;
    cfg.pipelines = a.pipelines;
    cfg.value_sizes = a.value_sizes;
    cfg.connections = a.connections;
    cfg.keys = a.keys;
    cfg.get_ratio = a.get_ratio;
    cfg.rounds = a.rounds;
    cfg.round_duration = a.round_duration;
    cfg.timeout = a.timeout;
    cfg.idle_connections = a.idle_connections;
    cfg.client_threads = a.client_threads;
    cfg.large_client_threads = a.large_client_threads;
    if a.quick || a.smoke {
        cfg.rounds = 1;
        cfg.round_duration = Duration::from_secs(1);
        cfg.idle_connections = cfg.idle_connections.min(if a.quick { 1000 } else { 500 });
    }

    let report = match compare::run(&cfg, &mut |line| eprintln!("{line}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("riven-bench compare: {e}");
            return false;
        }
    };
    let mut ok = report.ok;
    let mut link = None;
    if let Some(path) = &a.chart {
        match chart::render(&report, path) {
            Ok(()) => link = Some(chart_link(a.markdown.as_deref(), path)),
            Err(e) => {
                eprintln!("riven-bench compare: {e}");
                ok = false;
            }
        }
    }
    let md = compare::render_markdown(&report, link.as_deref());
    if let Some(path) = &a.markdown {
        if let Err(e) = compare::write_keeping_sections(path, &md) {
            eprintln!("riven-bench compare: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    emit(&md, a.json.then(|| to_json(&report)));
    ok
}

fn client_cmd(a: ClientArgs) -> bool {
    use riven_bench::smart::suite::{self, SuiteConfig};
    if !a.node.exists() {
        eprintln!(
            "riven-bench client: {} not found (build it: cargo build --release -p riven-node)",
            a.node.display()
        );
        return false;
    }
    let mut settings = Vec::new();
    for s in &a.settings {
        let (raw, own) = match s.split_once('/') {
            Some((raw, own)) => (raw, own.parse::<usize>().ok()),
            None => (s.as_str(), Some(a.client_connections)),
        };
        let parsed = raw
            .split_once('x')
            .and_then(|(c, p)| Some((c.parse::<usize>().ok()?, p.parse::<usize>().ok()?, own?)))
            .filter(|&(c, p, own)| c > 0 && p > 0 && own > 0);
        match parsed {
            Some(setting) => settings.push(setting),
            None => {
                eprintln!(
                    "riven-bench client: bad setting {s:?} (expected CONNECTIONSxPIPELINE[/CLIENT_CONNECTIONS], \
                     e.g. 50x1 or 4x16/4)"
                );
                return false;
            }
        }
    }
    let cfg = SuiteConfig {
        node: a.node,
        node_threads: a.node_threads,
        client_threads: a.client_threads,
        settings,
        rounds: if a.quick { 1 } else { a.rounds },
        duration: if a.quick { Duration::from_secs(1) } else { a.duration },
        keys: a.keys,
        value_len: 100,
        delay: a.delay,
        hedge_rate: a.hedge_rate,
    };
    let Some(rt) = runtime("client", a.client_threads) else {
        return false;
    };
    let report = match rt.block_on(suite::run(&cfg)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("riven-bench client: {e}");
            return false;
        }
    };
    let md = report.markdown();
    let mut ok = report.errors.is_empty();
    if let Some(path) = &a.markdown {
        if let Err(e) = suite::replace_section(path, &md) {
            eprintln!("riven-bench client: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    emit(&md, a.json.then(|| to_json(&report)));
    ok
}
