//! The client's routing state: every zone's ring and node handles, and the order reads try
//! zones in. It is built from a [`Topology`] and swapped whole by [`Client::set_topology`], so
//! an operation that took a snapshot at its start routes by that one topology to its end.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Client, ConfigError};
use crate::node::{Node, NodeConfig};
use crate::ring::{Ring, Rings};
use crate::telemetry::Labels;
use crate::topology::Topology;

/// One zone: its name, its ring and a handle per node, in the order of the ring's nodes.
#[derive(Debug)]
pub(super) struct Zone {
    pub(super) name: String,
    pub(super) ring: Ring,
    pub(super) nodes: Vec<Arc<Node>>,
    /// Each node's metric attributes, in the order of `nodes`.
    pub(super) labels: Vec<Labels>,
}

impl Zone {
    /// The zone's node of index `index`.
    pub(super) fn owner(&self, index: usize) -> Option<Owner<'_>> {
        Some(Owner {
            zone: &self.name,
            node: self.nodes.get(index)?,
            labels: self.labels.get(index)?,
        })
    }
}

/// A zone's name and the node in it that owns a key, with its metric attributes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Owner<'s> {
    pub(super) zone: &'s str,
    pub(super) node: &'s Arc<Node>,
    pub(super) labels: &'s Labels,
}

/// One topology's routing: what every operation reads once, at its start.
#[derive(Debug)]
pub(super) struct State {
    /// Every zone, in the topology's (name) order.
    pub(super) zones: Vec<Zone>,
    /// Indexes into `zones`: the order reads try zones in.
    pub(super) order: Vec<usize>,
}

impl State {
    /// The routing of `topology`. A node whose address `old` already has is that same handle
    /// (its connections and breaker kept, as the node did not change); others are new.
    pub(super) fn build(
        topology: &Topology,
        zone_order: Option<&[String]>,
        node: &NodeConfig,
        old: Option<&State>,
    ) -> Result<State, ConfigError> {
        let known: HashMap<&str, &Arc<Node>> = old
            .into_iter()
            .flat_map(|s| s.zones.iter())
            .flat_map(|z| z.nodes.iter())
            .map(|n| (n.addr(), n))
            .collect();
        let rings = Rings::new(topology);
        let zones: Vec<Zone> = rings
            .zones()
            .map(|(name, ring)| Zone {
                name: name.to_string(),
                ring: ring.clone(),
                nodes: ring
                    .nodes()
                    .iter()
                    .map(|addr| match known.get(addr.as_str()) {
                        Some(&n) => n.clone(),
                        None => Arc::new(Node::new(addr.as_str(), node.clone())),
                    })
                    .collect(),
                labels: ring.nodes().iter().map(|addr| Labels::new(name, addr)).collect(),
            })
            .collect();
        let index = |name: &str| zones.iter().position(|z| z.name == name);
        let order = match zone_order {
            Some(names) => {
                if names.is_empty() {
                    return Err(ConfigError::EmptyZoneOrder);
                }
                let mut order = Vec::with_capacity(names.len());
                for name in names {
                    let i = index(name).ok_or_else(|| ConfigError::UnknownZone(name.clone()))?;
                    if order.contains(&i) {
                        return Err(ConfigError::DuplicateZone(name.clone()));
                    }
                    order.push(i);
                }
                order
            }
            None => {
                let local = index(topology.local_zone()).unwrap_or(0);
                std::iter::once(local)
                    .chain((0..zones.len()).filter(|&i| i != local))
                    .collect()
            }
        };
        Ok(State { zones, order })
    }

    /// Every zone, the order's first and then those left out of it, which `AllZones` writes
    /// still reach.
    pub(super) fn all_zones(&self) -> impl Iterator<Item = usize> + '_ {
        let rest = (0..self.zones.len()).filter(move |i| !self.order.contains(i));
        self.order.iter().copied().chain(rest)
    }

    /// The owner of `key` in each zone of the read order, looked up one zone at a time as the
    /// iterator is advanced; a zone without nodes is skipped.
    pub(super) fn owners<'s>(&'s self, key: &'s [u8]) -> Owners<'s> {
        Owners {
            state: self,
            key,
            next: 0,
        }
    }

    /// The node that owns `key` in the zone of index `zone`.
    pub(super) fn owner(&self, zone: usize, key: &[u8]) -> Option<Owner<'_>> {
        let z = &self.zones[zone];
        z.owner(z.ring.index_for(key)?)
    }

    /// Every node of every zone, with its metric attributes.
    pub(super) fn nodes(&self) -> impl Iterator<Item = (&Arc<Node>, &Labels)> {
        self.zones.iter().flat_map(|z| z.nodes.iter().zip(&z.labels))
    }
}

/// [`State::owners`]. A named type rather than a `filter_map` closure, so a read future
/// holding it across an await stays `Send` for any lifetime (closures there trip the
/// compiler's higher-ranked lifetime inference).
pub(super) struct Owners<'s> {
    state: &'s State,
    key: &'s [u8],
    /// The next position in `state.order`.
    next: usize,
}

impl<'s> Iterator for Owners<'s> {
    type Item = Owner<'s>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(&zone) = self.state.order.get(self.next) {
            self.next += 1;
            if let Some(owner) = self.state.owner(zone, self.key) {
                return Some(owner);
            }
        }
        None
    }
}

impl Client {
    /// The routing state now. Each operation takes it once and keeps it to its end; the lock
    /// is held only to clone the `Arc`, so a swap never waits for an operation.
    pub(super) fn state(&self) -> Arc<State> {
        // A poisoned lock still holds a whole `Arc` (a swap is one assignment), so use it.
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the cluster's topology at run time, validated as [`Client::new`] validates
    /// it: if the configured [`zone_order`](crate::ClientConfig::zone_order) names a zone
    /// `topology` lacks, this fails and the old topology stays.
    ///
    /// Operations already under way finish on the topology they started with; those that
    /// start after this returns use the new one. A node whose address is in both keeps its
    /// handle (connections and breaker); a new address gets a new handle, and the handle of an
    /// address no longer present is dropped, closing its connections, once the last operation
    /// using it ends.
    ///
    /// This is the hook for discovery: a task that polls the nodes' admin API (or any other
    /// source of the cluster's membership) builds a [`Topology`] from what it learns and calls
    /// this whenever it changes. Nothing in the client polls by itself.
    pub fn set_topology(&self, topology: Topology) -> Result<(), ConfigError> {
        // One swap at a time, so two concurrent swaps cannot both start from the same old
        // state and lose each other's reused handles. The rings are built outside the state's
        // lock, which readers then wait on only for the assignment.
        let _swap = self.swap.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.state();
        let next = Arc::new(State::build(
            &topology,
            self.zone_order.as_deref(),
            &self.node,
            Some(&old),
        )?);
        self.metrics.set_nodes(next.nodes());
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }
}
