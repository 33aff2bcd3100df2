//! The key commands: `get`, `set`, `delete`, `touch` through [`riven_client::Client`], and
//! `where` from the rings alone.
//!
//! They go through the same client applications link, with its zone order, failover and key
//! checks, so what an operator sees is what an application would see. Only the client's
//! per-call knobs are set here: one connection per node (a command makes one call) and the
//! command line's timeout for connecting and for the reply.

use std::time::Duration;

use anyhow::Context;
use riven_client::{
    Client, ClientConfig, ClientError, ConnConfig, NodeConfig, Rings, Stored, Topology, Ttl, Wait, WritePolicy,
};

use crate::cli::SetArgs;
use crate::{Exit, Streams};

/// A client of `topology` with `timeout` for connects and replies, writing as `write_policy` says.
pub fn client(topology: Topology, timeout: Duration, write_policy: WritePolicy) -> anyhow::Result<Client> {
    let config = ClientConfig {
        node: NodeConfig {
            connections: 1,
            conn: ConnConfig {
                connect_timeout: timeout,
                request_timeout: timeout,
                ..ConnConfig::default()
            },
            ..NodeConfig::default()
        },
        write_policy,
        ..ClientConfig::default()
    };
    Client::new(topology, config).context("cannot configure the client")
}

/// memcached's reading of a lifetime in seconds: 0 is "never expire". [`Ttl::After`] of zero
/// would instead expire the item after a second, which is not what an operator typing 0 means.
pub fn ttl(seconds: u64) -> Ttl {
    match seconds {
        0 => Ttl::Never,
        s => Ttl::After(Duration::from_secs(s)),
    }
}

/// `riven get`: the value on stdout as it is stored (no newline added, so it can be piped into a
/// file byte for byte) and `flags N` on stderr; a miss prints `not found` and exits 1.
pub async fn get(client: &Client, key: &str, io: &mut Streams<'_>) -> anyhow::Result<Exit> {
    match client.get(key.as_bytes()).await.with_context(|| describe("get", key))? {
        Some((value, flags)) => {
            io.out.write_all(&value)?;
            io.out.flush()?;
            writeln!(io.err, "flags {flags}")?;
            Ok(Exit::Success)
        }
        None => {
            writeln!(io.err, "not found")?;
            Ok(Exit::NotFound)
        }
    }
}

/// `riven set`: prints memcached's word for the outcome (`STORED`); with `--all-zones`, also a
/// line per zone naming the node that stored it.
pub async fn set(topology: &Topology, timeout: Duration, args: &SetArgs, io: &mut Streams<'_>) -> anyhow::Result<Exit> {
    let value = if args.value == "-" {
        let mut value = Vec::new();
        io.input
            .read_to_end(&mut value)
            .context("cannot read the value from stdin")?;
        value
    } else {
        args.value.clone().into_bytes()
    };
    // Wait for every zone: an operator writing to all zones wants to know that each has it,
    // and a failed zone is then named in the error.
    let policy = if args.all_zones {
        WritePolicy::AllZones { wait: Wait::All }
    } else {
        WritePolicy::Local
    };
    let client = client(topology.clone(), timeout, policy)?;
    let what = if args.all_zones { "set (all zones)" } else { "set" };
    let stored = client
        .set(args.key.as_bytes(), &value, args.flags, ttl(args.ttl))
        .await
        .with_context(|| describe(what, &args.key))?;
    writeln!(io.out, "{}", stored_word(stored))?;
    if args.all_zones && stored == Stored::Stored {
        // The wait was for every zone, so every zone's owner has stored it.
        for (zone, node) in owners(topology, &args.key) {
            writeln!(io.out, "{zone} {node} stored")?;
        }
    }
    Ok(if stored == Stored::Stored {
        Exit::Success
    } else {
        Exit::NotFound
    })
}

/// `riven delete`: `DELETED`, or `NOT_FOUND` and exit 1.
pub async fn delete(client: &Client, key: &str, io: &mut Streams<'_>) -> anyhow::Result<Exit> {
    let found = client
        .delete(key.as_bytes())
        .await
        .with_context(|| describe("delete", key))?;
    found_or_not(found, "DELETED", io)
}

/// `riven touch`: `TOUCHED`, or `NOT_FOUND` and exit 1.
pub async fn touch(client: &Client, key: &str, seconds: u64, io: &mut Streams<'_>) -> anyhow::Result<Exit> {
    let found = client
        .touch(key.as_bytes(), ttl(seconds))
        .await
        .with_context(|| describe("touch", key))?;
    found_or_not(found, "TOUCHED", io)
}

/// `riven where`: `zone node` for every zone, the local zone marked `(local)`. Nothing is sent:
/// the rings are those the client builds, so this is where the client would go.
pub fn locate(topology: &Topology, key: &str, io: &mut Streams<'_>) -> anyhow::Result<Exit> {
    // The client checks keys before any I/O; `where` does no I/O but should refuse the same keys,
    // or it would place a key no command can use.
    if !riven_client::codec::key_is_valid(key.as_bytes()) {
        return Err(ClientError::BadKey).with_context(|| describe("where", key));
    }
    for (zone, node) in owners(topology, key) {
        let mark = if zone == topology.local_zone() { " (local)" } else { "" };
        writeln!(io.out, "{zone} {node}{mark}")?;
    }
    Ok(Exit::Success)
}

/// The owner of `key` in each zone, by zone name.
fn owners(topology: &Topology, key: &str) -> Vec<(String, String)> {
    let rings = Rings::new(topology);
    rings
        .zones()
        .map(|(zone, ring)| {
            // A validated topology has no empty zone, so every ring has an owner.
            let node = ring.node_for(key.as_bytes()).unwrap_or("-");
            (zone.to_owned(), node.to_owned())
        })
        .collect()
}

fn found_or_not(found: bool, word: &str, io: &mut Streams<'_>) -> anyhow::Result<Exit> {
    if found {
        writeln!(io.out, "{word}")?;
        Ok(Exit::Success)
    } else {
        writeln!(io.out, "NOT_FOUND")?;
        Ok(Exit::NotFound)
    }
}

/// memcached's text-protocol reply for a store outcome.
fn stored_word(stored: Stored) -> &'static str {
    match stored {
        Stored::Stored => "STORED",
        Stored::NotStored => "NOT_STORED",
        Stored::Exists => "EXISTS",
        Stored::NotFound => "NOT_FOUND",
    }
}

/// `get "k"`: the command and the key, quoted so that an empty key or one with spaces is visible.
fn describe(command: &str, key: &str) -> String {
    format!("{command} {key:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_seconds_is_never() {
        assert_eq!(ttl(0), Ttl::Never);
        assert_eq!(ttl(60), Ttl::After(Duration::from_secs(60)));
    }

    #[test]
    fn where_refuses_a_bad_key_and_marks_the_local_zone() {
        let topology = Topology::builder("test", "b")
            .zone("a", ["127.0.0.1:1"])
            .zone("b", ["127.0.0.1:2"])
            .build()
            .expect("valid topology");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Streams {
            out: &mut out,
            err: &mut err,
            input: &mut std::io::empty(),
        };
        let e = locate(&topology, "a b", &mut io).expect_err("a space is not allowed");
        assert!(format!("{e:#}").contains("invalid key"), "{e:#}");
        locate(&topology, "k", &mut io).expect("a good key");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "a 127.0.0.1:1\nb 127.0.0.1:2 (local)\n"
        );
    }
}
