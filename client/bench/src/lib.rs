//! The load and correctness tools behind `riven-bench`.
//!
//! - [`value`]: keys and the values derived from them, so any read can be verified;
//! - [`stream`]: a value's bytes made, compared and digested a word at a time, and the cache of
//!   digests `load` checks large hits against;
//! - [`wire`]: the requests sent and the replies accepted, per protocol, through `riven-memcache`;
//! - [`engine`]: connections, pipelined batches, timeouts, closed or open loop, histograms: what
//!   every tool runs on, given a [`engine::Workload`] that says what to send and how to judge it;
//! - [`schedule`]: open-loop send times, which correct latencies for coordinated omission;
//! - [`model`]: the expected state of each key, against which `blast` and `setops` check replies;
//! - the tools: [`load`] (gets and sets), [`blast`] (every command), [`setget`], [`sizes`],
//!   [`fill`] (sets and evictions), [`setops`] (storage semantics);
//! - [`hist`]: HDR histograms, medians, ratios;
//! - [`cpu`]: the load tool's own CPU use, and when it counts as saturated;
//! - [`idle`]: many idle connections, to measure a server's memory per connection;
//! - [`proc`]: server processes, RSS, the machine;
//! - [`compare`]: the benchmark runner, alternating targets round by round;
//! - [`smart`]: the smart client (`riven-client`) against the raw engine, and its hedged reads
//!   with one zone slowed by a [`delay`] proxy;
//! - [`chart`]: the PNG chart of a comparison.

pub mod blast;
pub mod chart;
pub mod common;
pub mod compare;
pub mod cpu;
pub mod delay;
pub mod engine;
pub mod fill;
pub mod hist;
pub mod idle;
pub mod load;
pub mod model;
pub mod proc;
pub mod schedule;
pub mod setget;
pub mod setops;
pub mod sizes;
pub mod smart;
pub mod stream;
pub mod value;
pub mod wire;

use std::time::Duration;

/// Parses a duration such as `10s`, `500ms`, `2m` or a bare number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
