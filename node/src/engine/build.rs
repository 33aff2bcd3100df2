//! The one place the storage stack is assembled from the config, in every mode: the L1 (the
//! embedded store or chunking over an external memcached), the optional L2, the orchestrator,
//! and the hooks on top.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use super::{Engine, Hook, L1};
use crate::backend::chunked::{ChunkConfig, Chunked};
use crate::backend::links::{Endpoint, LinksConfig};
use crate::backend::memcached::Memcached;
use crate::backend::slabs::{Slabs, SlabsConfig};
use crate::config::Config;
use crate::l2::{AsyncL2, L2Config};
use crate::model::{Clock, Hlc};
use crate::orchestrator::Orchestrator;
use crate::store::Store;

/// What [`build`] assembles: the engine clients use and the batch listener's view of the same
/// tiers.
pub struct Stack {
    pub engine: Engine,
    pub batch: Engine,
}

/// Builds the stack the config describes, with `hooks` on top. Opens the L2 when configured and
/// starts the links to an external memcached, on `workers` (see `crate::workers`) or, with none,
/// on the calling runtime.
pub async fn build(config: &Config, workers: &[Handle], hooks: Vec<Arc<dyn Hook>>) -> io::Result<Stack> {
    let clock = Clock::start();
    // Zone ids come with the cluster configuration; until then every node stamps zone 0.
    let versions = Arc::new(Hlc::new(0));
    let l2 = match &config.l2.path {
        Some(path) => Some(
            AsyncL2::open(L2Config::new(path, config.l2.max_bytes.0))
                .await
                .map_err(|e| io::Error::other(format!("cannot open the L2 at {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let l1 = match &config.l1.memcached.endpoint {
        Some(endpoint) => L1::Memcached(memcached_l1(config, endpoint, workers, &clock, &versions).await),
        None => L1::Memory(Store::with_clock(config.store_config(), clock.clone())),
    };
    let one_tier = matches!(l1, L1::Memory(_)) && l2.is_none();
    let mut tiers = Orchestrator::new(l1, l2, clock, versions);
    if one_tier {
        tiers = tiers.without_l1_counts();
    }
    let engine = Engine::new(tiers, hooks);
    let batch = engine.batch_view();
    Ok(Stack { engine, batch })
}

/// Chunking over the memcached at `endpoint`, its links started.
async fn memcached_l1(
    config: &Config,
    endpoint: &str,
    workers: &[Handle],
    clock: &Clock,
    versions: &Arc<Hlc>,
) -> Chunked<Memcached> {
    let endpoint_at = Endpoint::parse(endpoint);
    let mut links = LinksConfig::new(endpoint_at.clone());
    links.connections = config.l1.memcached.connections;
    links.max_buffered = config.l1.memcached.max_buffered.0 as usize;
    links.timeout = config.l1.memcached.timeout();
    let mut chunks = ChunkConfig {
        item_size_max: config.item_size_max(),
        ..ChunkConfig::default()
    };
    if config.l1.memcached.chunk_size > 0 {
        chunks.chunk_size = config.l1.memcached.chunk_size;
    }
    let mut memcached = if workers.is_empty() {
        Memcached::start(links)
    } else {
        Memcached::start_on(links, workers)
    };
    if config.l1.memcached.rebalance {
        let cfg = SlabsConfig {
            endpoint: endpoint_at,
            max_wait: Duration::from_millis(config.l1.memcached.rebalance_wait_ms),
            timeout: config.l1.memcached.timeout(),
        };
        let runtime = workers.first().cloned().unwrap_or_else(Handle::current);
        memcached = memcached.with_slabs(Slabs::start(cfg, &runtime));
    }
    // Clients accepted before the first link is up would get SERVER_ERROR: give memcached a
    // moment. The node starts anyway when it is down, and connects once it is up.
    if !memcached.links().wait_up(Duration::from_secs(1)).await {
        tracing::warn!(endpoint = %endpoint, "memcached is not reachable yet; serving SERVER_ERROR until it is");
    }
    Chunked::new(memcached, clock.clone(), chunks).with_versions(versions.clone())
}
