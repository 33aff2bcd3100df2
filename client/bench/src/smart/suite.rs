//! `riven-bench client`'s whole run: starts the nodes it needs, measures throughput at each
//! concurrency and the hedged reads, and renders the Markdown section of BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use riven_client::HedgeConfig;
use serde::Serialize;

use super::hedge::{self, HedgeBenchConfig, HedgeReport, Variant};
use super::{throughput, throughput_markdown, ThroughputConfig, ThroughputReport};
use crate::proc::{Server, ServerSpec};

/// The heading of the section [`SuiteReport::markdown`] renders and [`replace_section`] replaces.
pub const SECTION: &str = "## Smart client (riven-client)";

/// What the suite runs.
#[derive(Clone, Debug)]
pub struct SuiteConfig {
    /// The riven-node binary.
    pub node: PathBuf,
    /// The node's worker threads (-t).
    pub node_threads: usize,
    /// The generator's runtime threads (recorded for the report).
    pub client_threads: usize,
    /// (raw connections, pipeline, client connections) settings of the throughput comparison.
    pub settings: Vec<(usize, usize, usize)>,
    pub rounds: usize,
    pub duration: Duration,
    pub keys: u64,
    pub value_len: usize,
    /// The slow zone's added delay.
    pub delay: Duration,
    /// Reads per second of the hedging measurement.
    pub hedge_rate: f64,
}

/// Everything the suite measured.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteReport {
    pub node_command: String,
    pub node_threads: usize,
    pub client_threads: usize,
    pub rounds: usize,
    pub duration_secs: f64,
    pub throughput: Vec<ThroughputReport>,
    pub hedge: Option<HedgeReport>,
    pub errors: Vec<String>,
}

fn node_spec(cfg: &SuiteConfig) -> ServerSpec {
    let args = [
        "-t",
        &cfg.node_threads.to_string(),
        "-m",
        "256",
        "-l",
        "127.0.0.1",
        "-p",
        "{port}",
    ];
    ServerSpec {
        program: cfg.node.clone(),
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

/// The hedging variants compared, all on the same slowed zone.
pub fn variants(delay: Duration) -> Vec<Variant> {
    let ms = delay.as_millis();
    vec![
        Variant {
            name: "no hedging".into(),
            hedge: None,
        },
        Variant {
            name: format!("hedged after 1 ms (zone slowed by {ms} ms), budget 100 %"),
            hedge: Some(HedgeConfig {
                delay_ms: 1,
                percentile: None,
                max_share: 1.0,
                ..HedgeConfig::default()
            }),
        },
        Variant {
            name: "hedged at the p90 of recent latency (adaptive), budget 100 %".into(),
            hedge: Some(HedgeConfig {
                delay_ms: 1,
                percentile: Some(0.9),
                max_share: 1.0,
                ..HedgeConfig::default()
            }),
        },
        Variant {
            name: "hedged after 1 ms, default budget (5 % + 10)".into(),
            hedge: Some(HedgeConfig {
                delay_ms: 1,
                percentile: None,
                ..HedgeConfig::default()
            }),
        },
    ]
}

/// Runs the suite.
pub async fn run(cfg: &SuiteConfig) -> Result<SuiteReport, String> {
    let spec = node_spec(cfg);
    let ready = Duration::from_secs(10);
    let mut errors = Vec::new();
    let mut reports = Vec::new();
    let node = Server::start("riven-node", &spec, ready)?;
    for &(connections, pipeline, client_connections) in &cfg.settings {
        let t = ThroughputConfig {
            addr: node.addr(),
            connections,
            pipeline,
            client_connections,
            keys: cfg.keys,
            value_len: cfg.value_len,
            get_ratio: 0.9,
            duration: cfg.duration,
            rounds: cfg.rounds,
            node_pid: Some(node.pid()),
        };
        let r = throughput(&t).await;
        errors.extend(r.errors.iter().cloned());
        reports.push(r);
    }
    let node_command = node.command.clone();
    drop(node);

    let slow = Server::start("riven-node (slow zone)", &spec, ready)?;
    let fast = Server::start("riven-node (fast zone)", &spec, ready)?;
    let h = HedgeBenchConfig {
        slow: slow.addr(),
        fast: fast.addr(),
        delay: cfg.delay,
        rate: cfg.hedge_rate,
        duration: cfg.duration,
        rounds: cfg.rounds,
        keys: cfg.keys.min(10_000),
        value_len: cfg.value_len,
        variants: variants(cfg.delay),
    };
    let hedge = match hedge::run(&h).await {
        Ok(r) => {
            errors.extend(r.errors.iter().cloned());
            Some(r)
        }
        Err(e) => {
            errors.push(format!("hedging: {e}"));
            None
        }
    };
    Ok(SuiteReport {
        node_command,
        node_threads: cfg.node_threads,
        client_threads: cfg.client_threads,
        rounds: cfg.rounds,
        duration_secs: cfg.duration.as_secs_f64(),
        throughput: reports,
        hedge,
        errors,
    })
}

impl SuiteReport {
    /// The section of BENCHMARKS.md, from its heading on.
    pub fn markdown(&self) -> String {
        let mut out = format!("{SECTION}\n\n");
        out += &format!(
            "`scripts/bench-client.sh` (`riven-bench client`): {} alternating rounds of {:.0} s per side. \
             One node, `{}`; the load runs in one process on {} runtime thread(s), either as the raw \
             pipelined engine (`riven-bench load`, binary protocol) or as riven-client callers, with \
             as many requests in flight. 90 % gets of 100-byte values, every hit checked. \
             `gen cpu`: the generator's CPU time over the wall clock and its threads (`*`: saturated, \
             the figure measures the tool); `gen µs/op` and `node µs/op`: CPU time per operation.\n\n",
            self.rounds, self.duration_secs, self.node_command, self.client_threads
        );
        out += &throughput_markdown(&self.throughput);
        if let Some(h) = &self.hedge {
            out += &format!(
                "\nHedged reads: two zones of one node each; the local zone's node is behind a proxy \
                 that delays every reply by {:.0} ms. Reads in an open loop at {:.0}/s, latency counted \
                 from each read's scheduled time; medians over the rounds.\n\n",
                h.delay_ms, h.rate
            );
            out += &hedge::markdown(h);
        }
        if !self.errors.is_empty() {
            out += "\nErrors:\n\n";
            for e in &self.errors {
                out += &format!("- {e}\n");
            }
        }
        out
    }
}

/// Replaces the section headed [`SECTION`] in the Markdown file at `path` by `section` (up to
/// the next `## ` heading), or appends it if there is none.
pub fn replace_section(path: &Path, section: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let out = match text.find(SECTION) {
        Some(start) => {
            let after = &text[start + SECTION.len()..];
            let end = after
                .find("\n## ")
                .map_or(text.len(), |i| start + SECTION.len() + i + 1);
            format!("{}{section}\n{}", &text[..start], &text[end..])
        }
        None if text.is_empty() => section.to_string(),
        None => format!("{}\n{section}", text.trim_end_matches('\n').to_string() + "\n"),
    };
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_in_place_or_appended() {
        let dir = std::env::temp_dir().join(format!("riven-bench-section-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("B.md");
        std::fs::write(&path, "# B\n\n## One\n\nx\n").unwrap();
        replace_section(&path, &format!("{SECTION}\n\nfirst\n")).unwrap();
        let appended = std::fs::read_to_string(&path).unwrap();
        assert_eq!(appended, format!("# B\n\n## One\n\nx\n\n{SECTION}\n\nfirst\n"));
        std::fs::write(&path, format!("# B\n\n{SECTION}\n\nold\n\n## Two\n\ny\n")).unwrap();
        replace_section(&path, &format!("{SECTION}\n\nnew\n")).unwrap();
        let replaced = std::fs::read_to_string(&path).unwrap();
        assert_eq!(replaced, format!("# B\n\n{SECTION}\n\nnew\n\n## Two\n\ny\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
