//! The command line as clap parses it.
//!
//! Only the shape of the arguments lives here; what each command does is in
//! [`commands`](crate::commands) and [`stats`](crate::stats). Keeping the two apart lets tests
//! build a [`Cli`] by hand and lets `--help` be read without following any I/O code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Operate a Riven cluster: read, write and locate keys, and look at every node's stats.
///
/// Exit status: 0 on success; 1 when the key is not there (`get` miss, `delete` or `touch` of a
/// missing key, a store that was not done); 2 on an error, including a `stats` run where some
/// node did not answer.
#[derive(Debug, Clone, Parser)]
#[command(name = "riven", version, about, long_about)]
pub struct Cli {
    /// The cluster's topology, a TOML file (the format of `riven_client::topology`).
    #[arg(long, short = 't', env = "RIVEN_TOPOLOGY", value_name = "FILE")]
    pub topology: PathBuf,

    /// Act as if this process ran in zone Z instead of the topology's `local_zone`: reads ask Z
    /// first and local writes go to Z.
    #[arg(long, short = 'z', value_name = "Z")]
    pub zone: Option<String>,

    /// How long a node has to accept a connection and to answer one request, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the value under KEY (raw bytes, on stdout) and its flags (`flags N`, on stderr).
    Get {
        /// The key.
        key: String,
    },
    /// Store VALUE under KEY.
    Set(SetArgs),
    /// Delete KEY: prints `DELETED` or `NOT_FOUND`.
    Delete {
        /// The key.
        key: String,
    },
    /// Give KEY a new lifetime: prints `TOUCHED` or `NOT_FOUND`.
    Touch {
        /// The key.
        key: String,
        /// The new lifetime in seconds; 0 means never expire, as in memcached.
        seconds: u64,
    },
    /// Print the node that owns KEY in each zone (from the ring alone; nothing is sent).
    Where {
        /// The key.
        key: String,
    },
    /// Print memcached's `stats` of every node of every zone, one column per node.
    Stats {
        /// Only the stats whose names start with PREFIX.
        #[arg(long, value_name = "PREFIX")]
        filter: Option<String>,
    },
}

/// The arguments of `riven set`.
#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// The key.
    pub key: String,
    /// The value; `-` reads it from stdin (all of it, byte for byte).
    pub value: String,
    /// The item's client flags.
    #[arg(long, default_value_t = 0)]
    pub flags: u32,
    /// The item's lifetime in seconds; 0 (the default) means never expire, as in memcached.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub ttl: u64,
    /// Write to the key's owner in every zone and wait for all of them, instead of the local
    /// zone only; prints the zones that stored it.
    #[arg(long)]
    pub all_zones: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_set_with_options() {
        let cli = Cli::try_parse_from([
            "riven",
            "--topology",
            "t.toml",
            "--zone",
            "b",
            "set",
            "k",
            "-",
            "--flags",
            "7",
            "--ttl",
            "60",
            "--all-zones",
        ])
        .expect("valid command line");
        assert_eq!(cli.zone.as_deref(), Some("b"));
        assert_eq!(cli.timeout_ms, 1000);
        let Command::Set(set) = cli.command else {
            panic!("not a set: {:?}", cli.command);
        };
        assert_eq!((set.key.as_str(), set.value.as_str()), ("k", "-"));
        assert_eq!((set.flags, set.ttl, set.all_zones), (7, 60, true));
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        let err = Cli::try_parse_from(["riven", "-t", "x", "--timeout-ms", "0", "where", "k"])
            .expect_err("0 ms cannot be a timeout");
        assert!(err.to_string().contains("timeout-ms"), "{err}");
    }
}
