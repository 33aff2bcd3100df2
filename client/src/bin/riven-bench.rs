//! `riven-bench`: load and benchmark tools for memcached-compatible servers. This file only parses
//! flags and calls `riven_client::bench`.
//!
//! Output: a human summary on stdout, or with `--json` one JSON line on stdout and the summary on
//! stderr. Exit status 0 when everything checked out, 1 on any mismatch, protocol error,
//! unexpected reply, timeout or failure to start, 2 on bad flags.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use riven_client::bench::compare::{self, CompareConfig, ServerSettings};
use riven_client::bench::load::{self, LoadConfig};
use riven_client::bench::value::{KeySpace, ValueSpec};
use riven_client::bench::wire::Protocol;
use riven_client::bench::{idle, parse_duration, proc};

#[derive(Parser)]
#[command(
    name = "riven-bench",
    version,
    about = "Load and benchmark tools for memcached-compatible servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop load: random gets and sets over pipelined connections, every hit verified.
    Load(LoadArgs),
    /// Open many idle connections and hold them (to measure a server's memory per connection).
    Idle(IdleArgs),
    /// Benchmark memcached against riven-node, alternating rounds, and print a table of ratios.
    Compare(CompareArgs),
}

#[derive(Args)]
struct LoadArgs {
    /// Server address.
    #[arg(short, long, default_value = "127.0.0.1:11211")]
    addr: String,
    /// text, meta or binary.
    #[arg(short = 'P', long, default_value = "text")]
    protocol: Protocol,
    #[arg(short, long, default_value_t = 50)]
    connections: usize,
    /// Requests sent per batch on each connection, with one write.
    #[arg(short = 'd', long, default_value_t = 1)]
    pipeline: usize,
    /// Number of distinct keys.
    #[arg(short, long, default_value_t = 100_000)]
    keys: u64,
    /// Key length in bytes (0: just long enough for the key space).
    #[arg(long, default_value_t = 0)]
    key_len: usize,
    #[arg(long, default_value = "rb:")]
    key_prefix: String,
    /// Value size in bytes, or a range MIN..MAX drawn per key (k and m suffixes allowed).
    #[arg(short, long, default_value = "100")]
    value_size: ValueSpec,
    /// Fraction of requests that are gets.
    #[arg(short, long, default_value_t = 0.9)]
    get_ratio: f64,
    /// Length of the measured phase (e.g. 10s, 500ms).
    #[arg(short = 't', long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Bound on every connect, write and read.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Do not pre-fill the key space before measuring.
    #[arg(long)]
    no_warmup: bool,
    /// Count a get miss as an error.
    #[arg(long)]
    fail_on_miss: bool,
    /// Threads of the load generator (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of the key and operation choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the throughput every second.
    #[arg(long)]
    progress: bool,
    /// One JSON line on stdout (the summary goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct IdleArgs {
    #[arg(short, long, default_value = "127.0.0.1:11211")]
    addr: String,
    #[arg(short, long, default_value_t = 10_000)]
    connections: usize,
    /// Server pid, to report its RSS before and after.
    #[arg(long)]
    pid: Option<u32>,
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
    /// Rounds per target and setting (targets alternate within each round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Length of one round.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    round_duration: Duration,
    #[arg(long, value_delimiter = ',', default_value = "text,meta,binary")]
    protocols: Vec<Protocol>,
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pipelines: Vec<usize>,
    /// Value sizes in bytes (k and m suffixes allowed), one setting each.
    #[arg(long, value_delimiter = ',', default_value = "100", value_parser = riven_client::bench::value::parse_size)]
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
    /// Server connection limit (-c).
    #[arg(long, default_value_t = 20_000)]
    max_connections: usize,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// One short round of everything, with 500 idle connections: checks the runner works.
    #[arg(long)]
    smoke: bool,
    /// One JSON line on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also write the table as Markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ok = match cli.command {
        Cmd::Load(a) => load_cmd(a),
        Cmd::Idle(a) => idle_cmd(a),
        Cmd::Compare(a) => compare_cmd(a),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

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

fn load_cmd(a: LoadArgs) -> bool {
    let keys = match KeySpace::new(&a.key_prefix, a.key_len, a.keys) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("riven-bench load: {e}");
            return false;
        }
    };
    let mut cfg = LoadConfig::new(a.addr, a.protocol);
    cfg.connections = a.connections;
    cfg.pipeline = a.pipeline;
    cfg.keys = keys;
    cfg.values = a.value_size;
    cfg.get_ratio = a.get_ratio;
    cfg.duration = a.duration;
    cfg.timeout = a.timeout;
    cfg.warmup = !a.no_warmup;
    cfg.fail_on_miss = a.fail_on_miss;
    cfg.seed = a.seed;
    cfg.progress = a.progress;
    if cfg.connections > 1000 {
        let _ = proc::raise_nofile_limit();
    }
    let rt = match load::runtime(a.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("riven-bench load: tokio runtime: {e}");
            return false;
        }
    };
    let report = rt.block_on(load::run(&cfg));
    emit(&report.human(), a.json.then(|| to_json(&report)));
    report.ok
}

fn idle_cmd(a: IdleArgs) -> bool {
    if let Err(e) = proc::raise_nofile_limit() {
        eprintln!("riven-bench idle: cannot raise the open-file limit: {e}");
    }
    match idle::measure(&a.addr, a.connections, a.pid, a.timeout) {
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
    let settings = ServerSettings {
        threads: a.server_threads,
        memory_mb: a.memory_mb,
        max_connections: a.max_connections,
    };
    let targets = vec![
        compare::memcached(memcached, settings),
        compare::riven_node(&a.node, settings),
    ];
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
    if a.smoke {
        cfg.rounds = 1;
        cfg.round_duration = Duration::from_secs(1);
        cfg.idle_connections = cfg.idle_connections.min(500);
    }

    let report = match compare::run(&cfg, &mut |line| eprintln!("{line}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("riven-bench compare: {e}");
            return false;
        }
    };
    let md = compare::render_markdown(&report);
    if let Some(path) = &a.markdown {
        if let Err(e) = std::fs::write(path, &md) {
            eprintln!("riven-bench compare: cannot write {}: {e}", path.display());
            return false;
        }
    }
    emit(&md, a.json.then(|| to_json(&report)));
    report.ok
}
