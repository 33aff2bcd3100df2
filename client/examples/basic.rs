//! A first use of the client: one zone of memcached nodes, a set, a get and a delete.
//!
//! ```text
//! cargo run -p riven-client --example basic                       # 127.0.0.1:11211
//! cargo run -p riven-client --example basic -- 10.0.0.1:11211 10.0.0.2:11211
//! ```
//!
//! Every address given is a node of the one zone "local". Exits non-zero on any error.

use std::process::ExitCode;

use riven_client::{Client, ClientConfig, Topology, Ttl};

/// The node used when no address is given: a memcached on its default port.
const DEFAULT_NODE: &str = "127.0.0.1:11211";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut nodes: Vec<String> = std::env::args().skip(1).collect();
    if nodes.is_empty() {
        nodes.push(DEFAULT_NODE.to_string());
    }
    let topology = Topology::builder("example", "local").zone("local", nodes).build()?;
    // The defaults: reads and writes in the local zone, no hedging.
    let client = Client::new(topology, ClientConfig::default())?;

    let key = b"riven:example";
    let stored = client.set(key, b"hello, riven", 0, Ttl::Never).await?;
    println!("set: {stored:?}");

    match client.get(key).await? {
        Some((value, flags)) => println!("get: {:?} (flags {flags})", String::from_utf8_lossy(&value)),
        None => return Err("get: the value just set is missing".into()),
    }

    let deleted = client.delete(key).await?;
    println!("delete: {}", if deleted { "deleted" } else { "not found" });
    let after = client.get(key).await?;
    println!("get after delete: {}", if after.is_none() { "miss" } else { "hit" });
    Ok(())
}
