//! What a run measured, as the tools print it (human summary) and write it (JSON).

use serde::Serialize;

use super::EngineConfig;
use crate::cpu::CpuUse;
use crate::hist::LatencySummary;
use crate::wire::{Op, Protocol};

/// A command's share of a run.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    pub op: Op,
    pub count: u64,
    /// Keys found and not found (reads only; a multi-get counts each key).
    pub hits: u64,
    pub misses: u64,
    pub latency: LatencySummary,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub ok: bool,
    pub tool: String,
    pub addr: String,
    pub protocol: Protocol,
    pub connections: usize,
    pub pipeline: usize,
    pub keys: u64,
    pub key_len: usize,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Open loop: requests per second asked for.
    pub target_rate: Option<f64>,
    pub warmup_secs: f64,
    /// Length of the measured phase.
    pub secs: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub hits: u64,
    pub misses: u64,
    pub latency: LatencySummary,
    /// Open loop: how late requests were sent after their intended time. Latencies include this;
    /// when the server keeps up it is the timer's granularity (tokio's is 1 ms), a floor under
    /// the latencies an open-loop run can show.
    pub send_lag: Option<LatencySummary>,
    /// Per command, in [`Op::ALL`] order, commands not sent left out.
    pub commands: Vec<OpReport>,
    /// Every connection's workload ran out of work before the duration was over.
    pub finished: bool,
    /// What went wrong, one line per distinct failure (empty when `ok`).
    pub errors: Vec<String>,
    /// The tool's own CPU use over the measured phase.
    pub cpu: CpuUse,
    /// Per process of [`EngineConfig::server_pids`], in that order: the CPU time (user + system)
    /// it used over the measured phase, in clock ticks (see [`crate::proc::cpu_ticks`]); `None`
    /// when it could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_ticks: Vec<Option<u64>>,
}

impl RunReport {
    /// The report of a run that could not start, for the reasons in `errors` (to be added).
    pub fn failed(tool: &str, cfg: &EngineConfig, errors: Vec<String>) -> RunReport {
        RunReport {
            ok: false,
            errors,
            ..empty_report(tool, cfg)
        }
    }

    pub fn command(&self, op: Op) -> Option<&OpReport> {
        self.commands.iter().find(|c| c.op == op)
    }

    /// The human summary: a header, throughput, a latency table per command, errors.
    pub fn human(&self, what: &str) -> String {
        let mode = match self.target_rate {
            Some(r) => format!("open loop at {r:.0}/s"),
            None => "closed loop".into(),
        };
        let mut s = format!(
            "riven-bench {} {} on {}: {} connections, pipeline {}, {mode}, {} keys of {} B{what}\n",
            self.tool, self.protocol, self.addr, self.connections, self.pipeline, self.keys, self.key_len
        );
        let reads = self.hits + self.misses;
        let hit_pct = if reads > 0 {
            format!(
                "; hits {:.2} % of {reads} keys read",
                100.0 * self.hits as f64 / reads as f64
            )
        } else {
            String::new()
        };
        s += &format!(
            "  throughput {:>12.0} ops/s over {:.2} s (warm-up {:.2} s)\n  requests   {:>12}{hit_pct}\n",
            self.ops_per_sec, self.secs, self.warmup_secs, self.ops
        );
        if self.ops > 0 {
            s += "  latency µs       count        p50        p90        p99      p99.9        max\n";
            let mut line = |name: &str, count: u64, l: &LatencySummary| {
                s += &format!(
                    "    {name:<8} {count:>10} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}\n",
                    l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
                );
            };
            line("all", self.ops, &self.latency);
            if let Some(lag) = &self.send_lag {
                line("send lag", lag.count, lag);
            }
            if self.commands.len() > 1 {
                for c in &self.commands {
                    line(c.op.name(), c.count, &c.latency);
                }
            }
        }
        s += &format!("  tool cpu   {}\n", self.cpu.human());
        if self.ok {
            s += "  errors     none (every reply checked)\n";
        } else {
            s += &format!("  errors     {}\n", self.errors.len());
            for e in &self.errors {
                s += &format!("    {e}\n");
            }
        }
        s
    }
}

/// One line per distinct failure: when the server breaks, all connections tend to fail the same
/// way, and fifty copies of one message hide the one that differs.
pub fn summarize_failures(mut failures: Vec<(usize, String)>) -> Vec<String> {
    failures.sort();
    let mut lines: Vec<(usize, String, usize)> = Vec::new();
    for (id, msg) in failures {
        match lines.iter_mut().find(|(_, m, _)| *m == msg) {
            Some(l) => l.2 += 1,
            None => lines.push((id, msg, 0)),
        }
    }
    lines
        .into_iter()
        .map(|(id, msg, more)| match more {
            0 => format!("connection {id}: {msg}"),
            n => format!("connection {id}: {msg} (and {n} more connections alike)"),
        })
        .collect()
}

pub(super) fn empty_report(tool: &str, cfg: &EngineConfig) -> RunReport {
    RunReport {
        ok: true,
        tool: tool.to_string(),
        addr: cfg.addr.clone(),
        protocol: cfg.protocol,
        connections: cfg.connections,
        pipeline: cfg.pipeline,
        keys: cfg.keys.count(),
        key_len: cfg.keys.key_len(),
        mode: if cfg.rate.is_some() { "open" } else { "closed" },
        target_rate: cfg.rate,
        warmup_secs: 0.0,
        secs: 0.0,
        ops: 0,
        ops_per_sec: 0.0,
        hits: 0,
        misses: 0,
        latency: LatencySummary::default(),
        send_lag: None,
        commands: Vec::new(),
        finished: false,
        errors: Vec::new(),
        cpu: CpuUse::default(),
        server_ticks: Vec::new(),
    }
}
