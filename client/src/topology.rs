//! The shape of a cluster: its name, the zone this process runs in, and each zone's nodes.
//!
//! A [`Topology`] is built in code with [`Topology::builder`] or read from configuration,
//! either on its own with [`Topology::from_toml_str`] or as a section of a larger config
//! through its [`Deserialize`] impl. Every path validates, so a `Topology` that exists is one
//! the rings can be built from:
//!
//! ```toml
//! cluster = "main"
//! local_zone = "us-east-1a"
//! vnodes = 256              # optional; every process of a cluster must use the same count
//!
//! [zones]
//! us-east-1a = ["10.0.1.1:11211", "10.0.1.2:11211"]
//! us-east-1b = ["cache-b1.internal:11211"]
//! ```
//!
//! Addresses stay strings (`host:port`) so a DNS name is resolved when connecting, not frozen
//! when the topology is read.

use std::collections::BTreeMap;
use std::collections::HashSet;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ring::DEFAULT_VNODES;

/// Why a topology was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The cluster name is empty; it names the replication topic, so it must be set.
    #[error("the cluster name is empty")]
    EmptyClusterName,
    /// The virtual-node count is zero, which would leave every ring empty.
    #[error("vnodes is zero; every node needs at least one point on the ring")]
    ZeroVnodes,
    /// No zone is listed.
    #[error("the topology lists no zones")]
    NoZones,
    /// A zone's name is empty.
    #[error("a zone has an empty name")]
    EmptyZoneName,
    /// The same zone was added twice while building in code.
    #[error("zone `{zone}` is listed twice")]
    DuplicateZone {
        /// The repeated zone.
        zone: String,
    },
    /// The local zone is not one of the listed zones.
    #[error("local zone `{local_zone}` is not one of the zones ({})", .zones.join(", "))]
    UnknownLocalZone {
        /// The local zone as given.
        local_zone: String,
        /// The zones that are listed.
        zones: Vec<String>,
    },
    /// A zone lists no nodes.
    #[error("zone `{zone}` has no nodes")]
    EmptyZone {
        /// The zone without nodes.
        zone: String,
    },
    /// A zone lists the same address twice.
    #[error("zone `{zone}` lists node `{address}` twice")]
    DuplicateNode {
        /// The zone.
        zone: String,
        /// The repeated address.
        address: String,
    },
    /// A node address is not of the form `host:port`.
    #[error("node `{address}` in zone `{zone}` is not a host:port address")]
    InvalidAddress {
        /// The zone.
        zone: String,
        /// The address as given.
        address: String,
    },
    /// The configuration text could not be read into a topology.
    #[error("cannot read the topology: {0}")]
    Config(#[from] config::ConfigError),
}

/// A validated cluster topology.
///
/// Zones are kept sorted by name, so every process that reads the same configuration sees
/// them, and builds its rings, in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    cluster: String,
    local_zone: String,
    vnodes: usize,
    zones: BTreeMap<String, Vec<String>>,
}

// What configuration holds before validation; `Topology`'s `Deserialize` goes through it so
// that no unvalidated `Topology` can be deserialized.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyConfig {
    cluster: String,
    local_zone: String,
    #[serde(default = "default_vnodes")]
    vnodes: usize,
    zones: BTreeMap<String, Vec<String>>,
}

fn default_vnodes() -> usize {
    DEFAULT_VNODES
}

impl<'de> Deserialize<'de> for Topology {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = TopologyConfig::deserialize(deserializer)?;
        validate(raw.cluster, raw.local_zone, raw.zones, raw.vnodes).map_err(serde::de::Error::custom)
    }
}

impl Topology {
    /// Starts building a topology for `cluster`, running in `local_zone`.
    pub fn builder(cluster: impl Into<String>, local_zone: impl Into<String>) -> TopologyBuilder {
        TopologyBuilder {
            cluster: cluster.into(),
            local_zone: local_zone.into(),
            vnodes: DEFAULT_VNODES,
            zones: Vec::new(),
        }
    }

    /// Reads and validates a topology from TOML text (see the [module docs](crate::topology) for the
    /// layout).
    pub fn from_toml_str(toml: &str) -> Result<Topology, TopologyError> {
        let raw: TopologyConfig = config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        validate(raw.cluster, raw.local_zone, raw.zones, raw.vnodes)
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The zone this process runs in; always one of [`zones`](Topology::zones).
    pub fn local_zone(&self) -> &str {
        &self.local_zone
    }

    /// Virtual nodes per real node on every zone's ring.
    pub fn vnodes(&self) -> usize {
        self.vnodes
    }

    /// Every zone's node addresses, by zone name.
    pub fn zones(&self) -> &BTreeMap<String, Vec<String>> {
        &self.zones
    }

    /// The node addresses of `zone`, or `None` if there is no such zone.
    pub fn nodes(&self, zone: &str) -> Option<&[String]> {
        self.zones.get(zone).map(Vec::as_slice)
    }
}

/// Builds a [`Topology`] in code; [`build`](TopologyBuilder::build) validates it.
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    cluster: String,
    local_zone: String,
    vnodes: usize,
    zones: Vec<(String, Vec<String>)>,
}

impl TopologyBuilder {
    /// Adds `zone` with its node addresses (`host:port`).
    pub fn zone<I, S>(mut self, zone: impl Into<String>, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.zones
            .push((zone.into(), nodes.into_iter().map(Into::into).collect()));
        self
    }

    /// Sets the virtual-node count per real node (the default is [`DEFAULT_VNODES`]).
    pub fn vnodes(mut self, vnodes: usize) -> Self {
        self.vnodes = vnodes;
        self
    }

    /// Validates and returns the topology.
    pub fn build(self) -> Result<Topology, TopologyError> {
        let mut zones = BTreeMap::new();
        for (zone, nodes) in self.zones {
            // Merging or replacing a repeated zone would hide a mistake in the caller's list.
            if zones.contains_key(&zone) {
                return Err(TopologyError::DuplicateZone { zone });
            }
            zones.insert(zone, nodes);
        }
        validate(self.cluster, self.local_zone, zones, self.vnodes)
    }
}

fn validate(
    cluster: String,
    local_zone: String,
    zones: BTreeMap<String, Vec<String>>,
    vnodes: usize,
) -> Result<Topology, TopologyError> {
    if cluster.trim().is_empty() {
        return Err(TopologyError::EmptyClusterName);
    }
    if vnodes == 0 {
        return Err(TopologyError::ZeroVnodes);
    }
    if zones.is_empty() {
        return Err(TopologyError::NoZones);
    }
    if zones.keys().any(|zone| zone.trim().is_empty()) {
        return Err(TopologyError::EmptyZoneName);
    }
    if !zones.contains_key(&local_zone) {
        return Err(TopologyError::UnknownLocalZone {
            local_zone,
            zones: zones.into_keys().collect(),
        });
    }
    for (zone, nodes) in &zones {
        if nodes.is_empty() {
            return Err(TopologyError::EmptyZone { zone: zone.clone() });
        }
        let mut seen = HashSet::with_capacity(nodes.len());
        for address in nodes {
            if !is_host_port(address) {
                return Err(TopologyError::InvalidAddress {
                    zone: zone.clone(),
                    address: address.clone(),
                });
            }
            // A repeat is most likely a mistyped neighbour: the ring would count it once and
            // the zone would quietly run a node short.
            if !seen.insert(address.as_str()) {
                return Err(TopologyError::DuplicateNode {
                    zone: zone.clone(),
                    address: address.clone(),
                });
            }
        }
    }
    Ok(Topology {
        cluster,
        local_zone,
        vnodes,
        zones,
    })
}

// Only the form is checked: the host may be a DNS name that resolves later, or a bracketed
// IPv6 address, whose colons are why the port is taken after the last one.
fn is_host_port(address: &str) -> bool {
    if address.chars().any(char::is_whitespace) {
        return false;
    }
    match address.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0),
        None => false,
    }
}
