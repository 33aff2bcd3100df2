//! What the client reports about itself: OpenTelemetry metrics and `tracing` spans.
//!
//! **Metrics** come with the `otel` feature and only once a meter is installed with
//! [`Client::with_meter`](crate::Client::with_meter). Without the feature the types here are
//! empty and every recording call compiles to nothing; with it but no meter, each is one branch
//! on a `None`. So an application that exports no metrics pays nothing for them, not even the
//! clock reads that time each request.
//!
//! | instrument | kind | attributes | what |
//! |---|---|---|---|
//! | `riven.client.requests` | counter | zone, node | calls sent to a node |
//! | `riven.client.errors` | counter | zone, node | calls that failed: timeout, lost connection, open breaker, full queue |
//! | `riven.client.request.duration` | histogram (s) | zone, node | time from a call's start to its answer or failure |
//! | `riven.client.hits` / `riven.client.misses` | counter | zone | keys a zone answered with a value / with a miss |
//! | `riven.client.failovers` | counter | zone | keys asked of this zone because an earlier zone failed (or missed, with `fallback_on_miss`) |
//! | `riven.client.hedges` | counter | zone | hedged reads sent to this zone |
//! | `riven.client.breaker.state` | gauge | zone, node | 0 closed, 1 half-open, 2 open |
//!
//! The attributes of every node are built once, when a topology is installed, so recording
//! never allocates. **Spans**: every public operation runs in a `tracing` span at debug level
//! (`riven.get`, `riven.set`, ...); failovers and hedges are debug events inside it. With no
//! subscriber a disabled span costs a check of a cached flag.

#[cfg(feature = "otel")]
use std::sync::{Arc, Mutex, Weak};
#[cfg(feature = "otel")]
use std::time::Instant;

#[cfg(feature = "otel")]
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};
#[cfg(feature = "otel")]
use opentelemetry::KeyValue;

use crate::error::NodeError;
use crate::node::Node;
#[cfg(feature = "otel")]
use crate::BreakerState;

/// One node's metric attributes, built when its topology is installed.
#[derive(Clone, Debug)]
pub(crate) struct Labels {
    #[cfg(feature = "otel")]
    node: [KeyValue; 2],
    #[cfg(feature = "otel")]
    zone: [KeyValue; 1],
}

impl Labels {
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn new(zone: &str, node: &str) -> Labels {
        Labels {
            #[cfg(feature = "otel")]
            node: [
                KeyValue::new("zone", Arc::<str>::from(zone)),
                KeyValue::new("node", Arc::<str>::from(node)),
            ],
            #[cfg(feature = "otel")]
            zone: [KeyValue::new("zone", Arc::<str>::from(zone))],
        }
    }
}

/// When a call started, if anyone is measuring it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Started {
    #[cfg(feature = "otel")]
    at: Option<Instant>,
}

/// The client's metrics: nothing until a meter is installed.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    #[cfg(feature = "otel")]
    instruments: Option<Instruments>,
}

/// The nodes the breaker gauge reports, with their labels.
#[cfg(feature = "otel")]
type Registry = Arc<Mutex<Vec<(Weak<Node>, Labels)>>>;

#[cfg(feature = "otel")]
#[derive(Debug)]
struct Instruments {
    requests: Counter<u64>,
    errors: Counter<u64>,
    duration: Histogram<f64>,
    hits: Counter<u64>,
    misses: Counter<u64>,
    failovers: Counter<u64>,
    hedges: Counter<u64>,
    /// Kept so the gauge's callback stays registered for the client's life.
    _breaker: ObservableGauge<u64>,
    /// The nodes the breaker gauge reports, replaced with each topology. Weak, so a node
    /// dropped from the topology closes its connections when its last call ends.
    nodes: Registry,
}

impl Metrics {
    /// Metrics recorded through `meter`, reporting the breakers of `nodes`.
    #[cfg(feature = "otel")]
    pub(crate) fn new<'a>(meter: &Meter, nodes: impl Iterator<Item = (&'a Arc<Node>, &'a Labels)>) -> Metrics {
        let registry = Registry::default();
        let for_gauge = registry.clone();
        let breaker = meter
            .u64_observable_gauge("riven.client.breaker.state")
            .with_description("Each node's circuit breaker: 0 closed, 1 half-open, 2 open")
            .with_callback(move |observer| {
                let nodes = for_gauge.lock().unwrap_or_else(|e| e.into_inner());
                for (node, labels) in nodes.iter() {
                    if let Some(node) = node.upgrade() {
                        let state = match node.breaker_state() {
                            BreakerState::Closed => 0,
                            BreakerState::HalfOpen => 1,
                            BreakerState::Open => 2,
                        };
                        observer.observe(state, &labels.node);
                    }
                }
            })
            .build();
        let counter = |name: &'static str, description: &'static str| {
            meter.u64_counter(name).with_description(description).build()
        };
        let instruments = Instruments {
            requests: counter("riven.client.requests", "Calls sent to a node"),
            errors: counter("riven.client.errors", "Calls to a node that failed"),
            duration: meter
                .f64_histogram("riven.client.request.duration")
                .with_description("Time from a call's start to its answer or failure")
                .with_unit("s")
                .with_boundaries(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .build(),
            hits: counter("riven.client.hits", "Keys a zone answered with a value"),
            misses: counter("riven.client.misses", "Keys a zone answered with a miss"),
            failovers: counter(
                "riven.client.failovers",
                "Keys asked of a zone because an earlier zone did not answer",
            ),
            hedges: counter("riven.client.hedges", "Hedged reads sent to a zone"),
            _breaker: breaker,
            nodes: registry,
        };
        let metrics = Metrics {
            instruments: Some(instruments),
        };
        metrics.set_nodes(nodes);
        metrics
    }

    /// Replaces the nodes the breaker gauge reports (a new topology).
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn set_nodes<'a>(&self, nodes: impl Iterator<Item = (&'a std::sync::Arc<Node>, &'a Labels)>) {
        #[cfg(feature = "otel")]
        if let Some(i) = &self.instruments {
            let list = nodes.map(|(n, l)| (Arc::downgrade(n), l.clone())).collect();
            *i.nodes.lock().unwrap_or_else(|e| e.into_inner()) = list;
        }
    }

    /// The start of a call: the clock is read only if calls are being timed.
    #[inline]
    pub(crate) fn start(&self) -> Started {
        Started {
            #[cfg(feature = "otel")]
            at: self.instruments.as_ref().map(|_| Instant::now()),
        }
    }

    /// A call to the node of `labels` ended with `result`.
    #[inline]
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn call<T>(&self, labels: &Labels, started: Started, result: &Result<T, NodeError>) {
        #[cfg(feature = "otel")]
        if let (Some(i), Some(at)) = (&self.instruments, started.at) {
            i.requests.add(1, &labels.node);
            if result.is_err() {
                i.errors.add(1, &labels.node);
            }
            i.duration.record(at.elapsed().as_secs_f64(), &labels.node);
        }
    }

    /// A zone answered a key with a value (`hit`) or a miss.
    #[inline]
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn answer(&self, labels: &Labels, hit: bool) {
        #[cfg(feature = "otel")]
        if let Some(i) = &self.instruments {
            let counter = if hit { &i.hits } else { &i.misses };
            counter.add(1, &labels.zone);
        }
    }

    /// `keys` keys were asked of the zone of `labels` after an earlier zone did not answer.
    #[inline]
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn failover(&self, labels: &Labels, keys: usize) {
        #[cfg(feature = "otel")]
        if let Some(i) = &self.instruments {
            i.failovers.add(keys as u64, &labels.zone);
        }
    }

    /// A hedged read was sent to the zone of `labels`.
    #[inline]
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn hedge(&self, labels: &Labels) {
        #[cfg(feature = "otel")]
        if let Some(i) = &self.instruments {
            i.hedges.add(1, &labels.zone);
        }
    }
}
