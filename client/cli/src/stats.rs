//! `riven stats`: every node's memcached `stats`, side by side.
//!
//! This speaks memcached's text protocol directly instead of going through
//! [`riven_client::Client`]: the client routes keys to one owner per zone and speaks the binary
//! protocol, while an operator wants every node, including one the client's breaker would skip,
//! and the exact names memcached (or a Riven node) reports. Nodes are asked all at once, each
//! within the timeout, so one dead node costs the command one timeout, not one per node.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use riven_client::Topology;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::table::Table;
use crate::Exit;

/// The most a node may send for one `stats` before it is taken for a misbehaving one. memcached
/// sends a few kilobytes; the limit only keeps a stream that never says `END` from filling memory.
const MAX_REPLY: u64 = 1024 * 1024;

/// One node's answer: its stats in the order it sent them, or why it gave none.
#[derive(Debug)]
pub struct NodeStats {
    /// The node's zone.
    pub zone: String,
    /// The node's address.
    pub node: String,
    /// `(name, value)` pairs, or the error (with its causes) that kept the node from answering.
    pub result: Result<Vec<(String, String)>, anyhow::Error>,
}

impl NodeStats {
    /// The column header of the node: `zone/node`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.zone, self.node)
    }
}

/// Asks every node of every zone for its stats, at once, and returns the answers in topology
/// order (zones by name, nodes as listed).
pub async fn collect(topology: &Topology, timeout: Duration) -> Vec<NodeStats> {
    let asks: Vec<_> = topology
        .zones()
        .iter()
        .flat_map(|(zone, nodes)| nodes.iter().map(move |node| (zone.clone(), node.clone())))
        .map(|(zone, node)| {
            let addr = node.clone();
            let task = tokio::spawn(async move { fetch(&addr, timeout).await });
            (zone, node, task)
        })
        .collect();
    let mut answers = Vec::with_capacity(asks.len());
    for (zone, node, task) in asks {
        let result = task
            .await
            .unwrap_or_else(|e| Err(anyhow!("the stats task failed: {e}")));
        answers.push(NodeStats { zone, node, result });
    }
    answers
}

/// One node's stats over memcached's text protocol, all within `timeout` (connecting included).
pub async fn fetch(addr: &str, timeout: Duration) -> anyhow::Result<Vec<(String, String)>> {
    tokio::time::timeout(timeout, exchange(addr))
        .await
        .map_err(|_| anyhow!("no answer within {} ms", timeout.as_millis()))?
}

async fn exchange(addr: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut stream = TcpStream::connect(addr).await.context("connect failed")?;
    stream.write_all(b"stats\r\n").await.context("sending stats failed")?;
    let mut reader = BufReader::new(stream).take(MAX_REPLY);
    let mut stats = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        reader
            .read_until(b'\n', &mut line)
            .await
            .context("reading stats failed")?;
        // A line without its newline is the end of the stream: the limit, or the node hung up.
        if !line.ends_with(b"\n") {
            if reader.limit() == 0 {
                bail!("more than {MAX_REPLY} bytes of stats without END");
            }
            bail!("the connection closed before END");
        }
        match parse_line(&line)? {
            Line::Stat(name, value) => stats.push((name, value)),
            Line::End => return Ok(stats),
        }
    }
}

/// A line of a `stats` reply.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Stat(String, String),
    End,
}

/// Parses `STAT name value\r\n` or `END\r\n`. A value may hold spaces (everything after the
/// name is the value); anything else, such as `ERROR` or `SERVER_ERROR ...`, is an error that
/// quotes the line.
fn parse_line(line: &[u8]) -> anyhow::Result<Line> {
    let text = String::from_utf8_lossy(line);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text == "END" {
        return Ok(Line::End);
    }
    match text.strip_prefix("STAT ").and_then(|rest| rest.split_once(' ')) {
        Some((name, value)) if !name.is_empty() => Ok(Line::Stat(name.to_owned(), value.to_owned())),
        _ => bail!("unexpected reply line {text:?}"),
    }
}

/// Lays the answers out as a table: a row per stat name (those starting with `filter`, if
/// given), a column per node.
///
/// Rows come in the order nodes sent them, the first answering node's first, so the table reads
/// like memcached's own output, and a name only some nodes have (a different version, a Riven
/// node beside a memcached) is still shown, with `-` where a node lacks it. A node that did not
/// answer shows `unreachable: <error>` in the first row and `-` below it, so the error is seen
/// without being repeated down the whole column.
pub fn table(answers: &[NodeStats], filter: Option<&str>) -> Table {
    let wanted = |name: &str| filter.is_none_or(|prefix| name.starts_with(prefix));
    let mut names: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    let columns: Vec<Option<HashMap<&str, &str>>> = answers
        .iter()
        .map(|answer| {
            let stats = answer.result.as_ref().ok()?;
            for (name, _) in stats {
                if wanted(name) && seen.insert(name.as_str()) {
                    names.push(name);
                }
            }
            Some(stats.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect())
        })
        .collect();
    let header = std::iter::once("stat".to_owned()).chain(answers.iter().map(NodeStats::label));
    let mut table = Table::new(header.collect());
    let failed = answers.iter().any(|a| a.result.is_err());
    // With no row at all (every node down, or a filter nothing matches) the errors still need one.
    if names.is_empty() && failed {
        names.push("");
    }
    for (row, name) in names.iter().enumerate() {
        let cells = answers
            .iter()
            .zip(&columns)
            .map(|(answer, column)| match (column, &answer.result) {
                (Some(stats), _) => stats.get(name).map_or("-".to_owned(), |v| (*v).to_owned()),
                (None, Err(e)) if row == 0 => format!("unreachable: {e:#}"),
                (None, _) => "-".to_owned(),
            });
        table.push(std::iter::once((*name).to_owned()).chain(cells).collect());
    }
    table
}

/// `riven stats`: prints the table on `out` and a line per unreachable node on `err`; fails
/// ([`Exit::Failed`]) when some node did not answer, after printing what the others said.
pub async fn run(
    topology: &Topology,
    timeout: Duration,
    filter: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let answers = collect(topology, timeout).await;
    table(&answers, filter)
        .write_to(out)
        .context("writing the stats table")?;
    let mut down = 0;
    for answer in &answers {
        if let Err(e) = &answer.result {
            down += 1;
            writeln!(err, "riven: {}: unreachable: {e:#}", answer.label())?;
        }
    }
    if down == 0 {
        return Ok(Exit::Success);
    }
    writeln!(err, "riven: {down} of {} nodes did not answer", answers.len())?;
    Ok(Exit::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn node(zone: &str, node: &str, result: anyhow::Result<Vec<(String, String)>>) -> NodeStats {
        NodeStats {
            zone: zone.into(),
            node: node.into(),
            result,
        }
    }

    #[test]
    fn parses_stat_and_end_lines() {
        assert_eq!(
            parse_line(b"STAT curr_items 3\r\n").expect("stat"),
            Line::Stat("curr_items".into(), "3".into())
        );
        assert_eq!(
            parse_line(b"STAT version 1.6.18 riven\n").expect("stat"),
            Line::Stat("version".into(), "1.6.18 riven".into())
        );
        assert_eq!(parse_line(b"END\r\n").expect("end"), Line::End);
        let err = parse_line(b"SERVER_ERROR out of memory\r\n").expect_err("not a stat");
        assert!(err.to_string().contains("SERVER_ERROR out of memory"), "{err}");
        assert!(parse_line(b"STAT lonely\r\n").is_err());
    }

    /// A fake node on a loopback port that reads the request and answers `reply`, then hangs up.
    async fn fake_node(reply: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a listener");
        let addr = listener.local_addr().expect("its address").to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("a connection");
            let mut request = [0; 7];
            stream.read_exact(&mut request).await.expect("the request");
            assert_eq!(&request, b"stats\r\n");
            stream.write_all(reply).await.expect("the reply");
        });
        addr
    }

    #[tokio::test]
    async fn fetch_reads_until_end_and_reports_what_is_wrong() {
        let second = Duration::from_secs(1);
        let addr = fake_node(b"STAT pid 7\r\nSTAT version 1.6.18\r\nEND\r\n").await;
        let got = fetch(&addr, second).await.expect("stats");
        assert_eq!(got, stats(&[("pid", "7"), ("version", "1.6.18")]));

        let addr = fake_node(b"ERROR\r\n").await;
        let err = fetch(&addr, second).await.expect_err("not stats");
        assert!(format!("{err:#}").contains("\"ERROR\""), "{err:#}");

        let addr = fake_node(b"STAT pid 7\r\nSTAT upt").await;
        let err = fetch(&addr, second).await.expect_err("cut short");
        assert!(format!("{err:#}").contains("closed before END"), "{err:#}");
    }

    #[test]
    fn rows_follow_the_nodes_and_mark_the_unreachable() {
        let answers = [
            node("a", "h:1", Ok(stats(&[("pid", "1"), ("curr_items", "5")]))),
            node("b", "h:2", Err(anyhow!("connection refused"))),
            node("c", "h:3", Ok(stats(&[("pid", "2"), ("extra", "x")]))),
        ];
        let table = table(&answers, None);
        let rows: Vec<Vec<&str>> = table
            .rows()
            .iter()
            .map(|r| r.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            rows,
            [
                ["pid", "1", "unreachable: connection refused", "2"],
                ["curr_items", "5", "-", "-"],
                ["extra", "-", "-", "x"],
            ]
        );
    }

    #[test]
    fn the_filter_keeps_a_prefix_and_errors_keep_a_row() {
        let answers = [
            node(
                "a",
                "h:1",
                Ok(stats(&[("pid", "1"), ("curr_items", "5"), ("curr_connections", "2")])),
            ),
            node("b", "h:2", Err(anyhow!("down"))),
        ];
        let rows = table(&answers, Some("curr_")).rows().to_vec();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], "curr_items");
        assert_eq!(rows[1][0], "curr_connections");
        let rows = table(&answers, Some("nothing")).rows().to_vec();
        assert_eq!(rows, [vec![String::new(), "-".into(), "unreachable: down".into()]]);
    }
}
