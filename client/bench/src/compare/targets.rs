//! The servers a comparison can run: memcached and the node's modes, each a [`Target`] with the
//! command line that starts it.

use serde::Serialize;

use crate::proc::{self, ServerSpec};

/// A server to benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub server: ServerSpec,
    /// The index of an earlier target this one runs on top of (riven-node over memcached): its
    /// port replaces `{dep_port}` in the arguments, and its memory counts in the idle test.
    pub depends_on: Option<usize>,
    /// A mode that may not exist yet: if the server does not start, the target is skipped with
    /// the reason, instead of failing the comparison.
    pub optional: bool,
}

/// Settings shared by the servers, given to each in its own flags.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ServerSettings {
    pub threads: usize,
    /// The largest item in MiB (`-I`), for values of 1 MiB and more; 0 leaves each server's
    /// default (1 MiB).
    pub item_size_max_mb: usize,
    pub memory_mb: usize,
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: 4,
            item_size_max_mb: 0,
            memory_mb: 1024,
            max_connections: 20_000,
        }
    }
}

/// memcached on TCP only (`-U 0`), on 127.0.0.1; with `-u root` when run as root, which
/// memcached otherwise refuses.
///
/// With `-R 1000`, the setting the README gives for a memcached behind a node. `-R` bounds the
/// requests memcached answers from one connection before it yields to the others (default 20).
/// A node's link carries the requests of all its clients, so at the default memcached flushes
/// and goes back to epoll every 20 requests of it (BENCHMARKS.md, "Design measurements"). The
/// direct clients here send at most 16 requests per batch, so the setting does not change the
/// memcached-direct baseline.
pub fn memcached(program: impl Into<std::path::PathBuf>, s: ServerSettings) -> Target {
    let mut args = Vec::new();
    if proc::is_root() {
        args.extend(["-u".to_string(), "root".to_string()]);
    }
    args.extend(common_args(s));
    args.extend(["-U".to_string(), "0".to_string(), "-R".to_string(), "1000".to_string()]);
    Target {
        name: "memcached".into(),
        server: ServerSpec {
            program: program.into(),
            args,
        },
        depends_on: None,
        optional: false,
    }
}

/// riven-node on its embedded memory store.
pub fn riven_node(program: impl Into<std::path::PathBuf>, s: ServerSettings) -> Target {
    Target {
        name: "riven-node".into(),
        server: ServerSpec {
            program: program.into(),
            args: common_args(s),
        },
        depends_on: None,
        optional: false,
    }
}

/// riven-node with target `memcached` (an index into the targets) as its L1
/// (`--l1-memcached`). Optional: a node that does not know the flag yet is skipped.
pub fn riven_node_over_memcached(
    program: impl Into<std::path::PathBuf>,
    s: ServerSettings,
    memcached: usize,
) -> Target {
    let mut args = common_args(s);
    args.extend(["--l1-memcached".to_string(), "127.0.0.1:{dep_port}".to_string()]);
    Target {
        name: "riven-node/memcached".into(),
        server: ServerSpec {
            program: program.into(),
            args,
        },
        depends_on: Some(memcached),
        optional: true,
    }
}

/// riven-node in l1-l2 mode: its memory store over an on-disk L2 in a fresh temporary directory
/// bounded to 1 GiB.
pub fn riven_node_l1_l2(program: impl Into<std::path::PathBuf>, s: ServerSettings) -> Target {
    let mut args = common_args(s);
    args.extend([
        "--l2-path".to_string(),
        "{tempdir}".to_string(),
        "--l2-max-bytes".to_string(),
        "1g".to_string(),
    ]);
    Target {
        name: "riven-node/l1-l2".into(),
        server: ServerSpec {
            program: program.into(),
            args,
        },
        depends_on: None,
        optional: true,
    }
}

fn common_args(s: ServerSettings) -> Vec<String> {
    let item_size: Vec<String> = match s.item_size_max_mb {
        0 => Vec::new(),
        mb => vec!["-I".into(), format!("{mb}m")],
    };
    let base: Vec<String> = [
        "-t".to_string(),
        s.threads.to_string(),
        "-m".into(),
        s.memory_mb.to_string(),
        "-c".into(),
        s.max_connections.to_string(),
        "-l".into(),
        "127.0.0.1".into(),
        "-p".into(),
        "{port}".into(),
    ]
    .into();
    base.into_iter().chain(item_size).collect()
}
