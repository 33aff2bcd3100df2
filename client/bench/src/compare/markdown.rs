//! The comparison as Markdown: what `BENCHMARKS.md` holds.

use super::*;
use crate::cpu;

/// The report as Markdown (what `BENCHMARKS.md` holds): a header with the date, machine and
/// exact commands, the throughput and latency table, the idle-connection table, skipped targets
/// and errors, and the chart when one was written (`chart`: its path relative to the Markdown
/// file). Columns are padded so it also reads well in a terminal.
/// The load generator's threads, as the load line gives them.
fn threads(r: &CompareReport) -> String {
    let large = r.settings.iter().any(|s| s.value_size >= crate::compare::LARGE_VALUE);
    if large && r.large_client_threads != r.client_threads {
        format!(
            "{} ({} for values of 64 KiB or more)",
            r.client_threads, r.large_client_threads
        )
    } else {
        r.client_threads.to_string()
    }
}

/// Writes the comparison `md` (which has no `## ` heading of its own) to the Markdown file at
/// `path`, in place of what an earlier comparison wrote: the file's text before its first `## `
/// heading. Every `## ` section (the hand-kept design measurements, the smart client's section
/// written by `riven-bench client`) is kept as it was.
pub fn write_keeping_sections(path: &std::path::Path, md: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let kept = if old.starts_with("## ") {
        Some(0)
    } else {
        old.find("\n## ").map(|i| i + 1)
    };
    let out = match kept {
        Some(start) => format!("{}\n\n{}", md.trim_end_matches('\n'), &old[start..]),
        None => md.to_string(),
    };
    std::fs::write(path, out)
}

pub fn render_markdown(r: &CompareReport, chart: Option<&str>) -> String {
    let base = r.servers.first().map(|s| s.name.as_str()).unwrap_or("baseline");
    let mut out = String::new();
    out += "# Benchmarks\n\n";
    out += "Written by `riven-bench compare` (run by `scripts/bench.sh`); every figure below comes from the run described here.\n\n";
    out += &format!("- date: {}\n", r.machine.date);
    out += &format!(
        "- machine: {} cores ({}), {} memory\n- kernel: {}\n- /proc/version: {}\n",
        r.machine.cores, r.machine.cpu, r.machine.memory, r.machine.uname, r.machine.kernel
    );
    out += &format!("- command: `{}`\n", r.command);
    for s in &r.servers {
        out += &format!("- {}: `{}`\n", s.name, s.command);
    }
    out += &format!(
        "- load: {} connections, {:.0} % gets, up to {} keys, rounds: {} x {:.1} s per target and setting (targets alternating), load generator threads: {}, every hit verified\n\n",
        r.connections,
        r.get_ratio * 100.0,
        r.keys,
        r.rounds,
        r.round_secs,
        threads(r)
    );

    let mut rows = vec![[
        "protocol",
        "pipeline",
        "value",
        "target",
        "ops/s (median)",
        "gen cpu",
        "server µs/op",
        "dep µs/op",
        "spread",
        &format!("ops vs {base}"),
        "same round (median)",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        &format!("p99 vs {base}"),
    ]
    .map(String::from)];
    for s in &r.settings {
        for t in &s.targets {
            let value = crate::chart::human_size(s.value_size);
            let row = match &t.error {
                Some(_) => [
                    s.protocol.to_string(),
                    s.pipeline.to_string(),
                    value,
                    t.name.clone(),
                    "error".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ],
                None => [
                    s.protocol.to_string(),
                    s.pipeline.to_string(),
                    value,
                    t.name.clone(),
                    // The figure itself carries the mark, so a ratio quoted from the table is not
                    // mistaken for the server's.
                    match t.saturated {
                        true => format!("{} {}", fmt_opt(t.ops_per_sec, 0), cpu::MARK),
                        false => fmt_opt(t.ops_per_sec, 0),
                    },
                    cpu::cell(t.gen_cpu),
                    us_per_op_cell(t.server_us_per_op),
                    us_per_op_cell(t.dep_us_per_op),
                    t.spread
                        .map(|x| format!("{:.1} %", x * 100.0))
                        .unwrap_or_else(|| "-".into()),
                    fmt_opt(t.ops_ratio, 2),
                    fmt_opt(t.round_ratio, 2),
                    fmt_opt(t.p50_us, 1),
                    fmt_opt(t.p99_us, 1),
                    fmt_opt(t.p999_us, 1),
                    fmt_opt(t.p99_ratio, 2),
                ],
            };
            rows.push(row);
        }
    }
    out += &table(
        &rows,
        &[
            false, true, true, false, true, true, true, true, true, true, true, true, true, true, true,
        ],
    );
    out += &format!("\n{}\n\n{SERVER_CPU_LEGEND}\n", cpu::legend());
    if let Some(c) = chart {
        out += &format!("\n![throughput ratios and latency percentiles]({c})\n");
    }

    if !r.idle.is_empty() {
        out += "\nIdle connections (RSS from /proc/<pid>/status; for a node over memcached, both processes):\n\n";
        let mut rows = vec![[
            "target",
            "connections",
            "still open",
            "RSS before KiB",
            "RSS after KiB",
            "bytes per connection",
        ]
        .map(String::from)];
        for i in &r.idle {
            rows.push(match &i.report {
                Some(x) => [
                    i.name.clone(),
                    x.connections.to_string(),
                    x.still_open.to_string(),
                    x.rss_before_kib.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                    x.rss_after_kib.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                    fmt_opt(x.bytes_per_conn, 0),
                ],
                None => [
                    i.name.clone(),
                    "error".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ],
            });
        }
        out += &table(&rows, &[false, true, true, true, true, true]);
    }
    if !r.skipped.is_empty() {
        out += "\nSkipped targets:\n\n";
        for k in &r.skipped {
            out += &format!("- {}: {}\n", k.name, k.reason);
        }
    }
    if !r.errors.is_empty() {
        out += "\nErrors:\n\n";
        for e in &r.errors {
            out += &format!("- {e}\n");
        }
    }
    out
}

/// What the `server µs/op` and `dep µs/op` columns mean, for under the table.
const SERVER_CPU_LEGEND: &str = "`server µs/op`: the target's server process's CPU time (user + system, from the \
process's clock ticks in /proc/<pid>/stat, 10 ms each on Linux) over the measured phase, per operation the round \
completed (median over the rounds); for a node over memcached, the node's own. `dep µs/op`: the same for the \
memcached under a node (empty for other targets).";

/// A `server µs/op` or `dep µs/op` cell: empty without the figure (a target without a
/// dependency, or without a process to read).
fn us_per_op_cell(us: Option<f64>) -> String {
    us.map(|x| format!("{x:.2}")).unwrap_or_default()
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}")).unwrap_or_else(|| "-".into())
}

/// A Markdown table with padded columns; `right[i]` right-aligns column `i`.
fn table<const N: usize>(rows: &[[String; N]], right: &[bool; N]) -> String {
    let mut width = [3usize; N];
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        out.push('|');
        for i in 0..N {
            let pad = width[i] - row[i].chars().count();
            let cell = if right[i] {
                format!("{}{}", " ".repeat(pad), row[i])
            } else {
                format!("{}{}", row[i], " ".repeat(pad))
            };
            out += &format!(" {cell} |");
        }
        out.push('\n');
        if n == 0 {
            out.push('|');
            for i in 0..N {
                let dashes = "-".repeat(width[i] - 1);
                out += &if right[i] {
                    format!(" {dashes}: |")
                } else {
                    format!(" {dashes}- |")
                };
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::report::collect_errors;
    use super::super::tests::setting;
    use super::*;
    use crate::proc::Machine;

    #[test]
    fn a_new_comparison_keeps_the_files_sections() {
        let dir = std::env::temp_dir().join(format!("riven-bench-keep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("B.md");
        write_keeping_sections(&path, "# Benchmarks\n\nfirst\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# Benchmarks\n\nfirst\n");
        let kept = "## Design measurements\n\nd\n\n## Smart client (riven-client)\n\nc\n";
        std::fs::write(&path, format!("# Benchmarks\n\nold\ntable\n\n{kept}")).unwrap();
        write_keeping_sections(&path, "# Benchmarks\n\nnew\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("# Benchmarks\n\nnew\n\n{kept}")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn markdown_table() {
        let mut s = setting();
        // The second target's load generator was saturated; it runs on a memcached, whose CPU
        // time is the second figure.
        for r in &mut s.targets[1].runs {
            r.gen_cpu = 0.97;
            r.server_us_per_op = Some(4.25);
            r.dep_us_per_op = Some(1.5);
        }
        for r in &mut s.targets[0].runs {
            r.server_us_per_op = Some(2.0);
        }
        s.finish();
        let mut report = CompareReport {
            ok: true,
            machine: Machine::describe(),
            command: "riven-bench compare".into(),
            servers: vec![
                ServerInfo {
                    name: "memcached".into(),
                    command: "memcached -p 1".into(),
                },
                ServerInfo {
                    name: "riven-node".into(),
                    command: "riven-node -p 2".into(),
                },
            ],
            connections: 50,
            keys: 1000,
            get_ratio: 0.9,
            rounds: 3,
            round_secs: 3.0,
            client_threads: 1,
            large_client_threads: 2,
            settings: vec![s],
            idle: vec![IdleResult {
                name: "memcached".into(),
                report: None,
                error: Some("refused".into()),
            }],
            skipped: vec![Skipped {
                name: "riven-node/memcached".into(),
                reason: "unexpected argument '--l1-memcached'".into(),
            }],
            errors: Vec::new(),
        };
        collect_errors(&mut report);
        assert!(!report.ok);
        let md = render_markdown(&report, Some("BENCHMARKS.png"));
        let lines: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert!(lines[0].contains("ops vs memcached"), "{md}");
        assert!(lines[1].starts_with("| ---"), "{md}");
        assert!(lines[2].contains("memcached") && lines[2].contains("1.00"), "{md}");
        assert!(
            lines[3].contains("riven-node") && lines[3].contains("0.90") && lines[3].contains("1.10"),
            "{md}"
        );
        // Every row of a table has the same width.
        assert!(
            lines[..4].iter().all(|l| l.chars().count() == lines[0].chars().count()),
            "{md}"
        );
        assert!(md.contains("idle: memcached: refused"), "{md}");
        assert!(md.contains("- command: `riven-bench compare`"));
        assert!(md.starts_with("# Benchmarks"), "{md}");
        assert!(md.contains("- date: ") && md.contains("- kernel: Linux"), "{md}");
        assert!(
            md.contains("![throughput ratios and latency percentiles](BENCHMARKS.png)"),
            "{md}"
        );
        assert!(md.contains("- riven-node/memcached: unexpected argument"), "{md}");
        assert!(lines[0].contains("p99.9 µs") && lines[0].contains("gen cpu"), "{md}");
        assert!(lines[2].contains("50 %") && !lines[2].contains('*'), "{md}");
        assert!(lines[3].contains("99 *") && lines[3].contains("97 % *"), "{md}");
        assert!(md.contains("load tool saturated; the figure measures the tool"), "{md}");
        // The server's CPU per operation, then its dependency's, right after `gen cpu`.
        let cells = |l: &str| l.split('|').map(str::trim).map(String::from).collect::<Vec<_>>();
        let header = cells(lines[0]);
        let at = header.iter().position(|c| c == "server µs/op").expect("the column");
        assert_eq!(
            (header[at - 1].as_str(), header[at + 1].as_str()),
            ("gen cpu", "dep µs/op")
        );
        assert_eq!(
            (cells(lines[2])[at].as_str(), cells(lines[2])[at + 1].as_str()),
            ("2.00", "")
        );
        assert_eq!(
            (cells(lines[3])[at].as_str(), cells(lines[3])[at + 1].as_str()),
            ("4.25", "1.50")
        );
        assert!(
            md.lines()
                .any(|l| l.starts_with("`server µs/op`: ") && l.contains("clock ticks") && l.contains("`dep µs/op`")),
            "{md}"
        );
    }

    #[test]
    fn server_cpu_cells() {
        assert_eq!(us_per_op_cell(Some(4.256)), "4.26");
        assert_eq!(us_per_op_cell(Some(0.0)), "0.00");
        assert_eq!(us_per_op_cell(Some(123.4)), "123.40");
        // No dependency, or no process read: an empty cell.
        assert_eq!(us_per_op_cell(None), "");
    }
}
