//! OpenTelemetry metrics (feature `otel`) against real memcached processes, read back through
//! the OpenTelemetry SDK's in-memory exporter: requests, errors and latency by node, hits and
//! misses, failovers and hedges by zone, and the breaker gauge.
#![cfg(feature = "otel")]

use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use riven_client::{BreakerConfig, Client, ClientConfig, HedgeConfig, Topology, Ttl};

#[allow(dead_code)]
mod common;

use common::Memcached;

/// One exported figure: the instrument's name, its attributes (sorted) and its value.
type Row = (String, Vec<(String, String)>, u64);

/// A meter provider whose metrics can be read back with [`Exported::read`].
struct Exported {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Exported {
    fn new() -> Exported {
        let exporter = InMemoryMetricExporter::default();
        let reader = PeriodicReader::builder(exporter.clone()).build();
        let provider = SdkMeterProvider::builder().with_reader(reader).build();
        Exported { provider, exporter }
    }

    /// The latest cumulative figures, as (instrument, attributes, value) rows; a histogram's
    /// value is its count.
    fn read(&self) -> Vec<Row> {
        self.provider.force_flush().expect("flush");
        let exports: Vec<ResourceMetrics> = self.exporter.get_finished_metrics().expect("metrics");
        let last = exports.last().expect("one export at least");
        let mut rows = Vec::new();
        for scope in last.scope_metrics() {
            for metric in scope.metrics() {
                let name = metric.name().to_string();
                let attrs = |kvs: &mut dyn Iterator<Item = &KeyValue>| {
                    let mut v: Vec<(String, String)> = kvs
                        .map(|kv| {
                            let value = match &kv.value {
                                Value::String(s) => s.as_str().to_string(),
                                other => other.to_string(),
                            };
                            (kv.key.as_str().to_string(), value)
                        })
                        .collect();
                    v.sort();
                    v
                };
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        for p in sum.data_points() {
                            rows.push((name.clone(), attrs(&mut p.attributes()), p.value()));
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                        for p in gauge.data_points() {
                            rows.push((name.clone(), attrs(&mut p.attributes()), p.value()));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            rows.push((name.clone(), attrs(&mut p.attributes()), p.count()));
                        }
                    }
                    _ => {}
                }
            }
        }
        rows
    }
}

/// The value of `name` for exactly these attributes (0 if there is no such row).
fn value(rows: &[Row], name: &str, attrs: &[(&str, &str)]) -> u64 {
    let mut want: Vec<(String, String)> = attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    want.sort();
    rows.iter()
        .filter(|(n, a, _)| n == name && *a == want)
        .map(|(_, _, v)| *v)
        .sum()
}

fn two_zones(a: &Memcached, b: &Memcached) -> Topology {
    Topology::builder("test", "a")
        .zone("a", [a.addr()])
        .zone("b", [b.addr()])
        .build()
        .expect("topology")
}

#[tokio::test]
async fn requests_hits_misses_and_latency_by_zone_and_node() {
    let (a, b) = (Memcached::start(), Memcached::start());
    let metrics = Exported::new();
    let meter = metrics.provider.meter("riven-client");
    let client = Client::new(two_zones(&a, &b), common::client_config(Duration::from_secs(2)))
        .expect("client")
        .with_meter(&meter);
    for i in 0..10 {
        client
            .set(format!("k{i}").as_bytes(), b"v", 0, Ttl::Never)
            .await
            .expect("set");
    }
    for i in 0..15 {
        client.get(format!("k{i}").as_bytes()).await.expect("get");
    }
    let rows = metrics.read();
    let (a_addr, b_addr, zone_a) = (a.addr(), b.addr(), [("zone", "a")]);
    let node_a = [("zone", "a"), ("node", a_addr.as_str())];
    assert_eq!(value(&rows, "riven.client.requests", &node_a), 25, "{rows:?}");
    assert_eq!(value(&rows, "riven.client.errors", &node_a), 0, "{rows:?}");
    assert_eq!(value(&rows, "riven.client.request.duration", &node_a), 25, "{rows:?}");
    assert_eq!(value(&rows, "riven.client.hits", &zone_a), 10, "{rows:?}");
    assert_eq!(value(&rows, "riven.client.misses", &zone_a), 5, "{rows:?}");
    // Zone b was never asked; the breakers are closed.
    let node_b = [("zone", "b"), ("node", b_addr.as_str())];
    assert_eq!(value(&rows, "riven.client.requests", &node_b), 0, "{rows:?}");
    assert_eq!(value(&rows, "riven.client.breaker.state", &node_a), 0, "{rows:?}");
    assert!(
        rows.iter()
            .any(|(n, attrs, _)| n == "riven.client.breaker.state"
                && attrs.contains(&("node".to_string(), a_addr.clone()))),
        "the breaker gauge reports node a: {rows:?}"
    );
}

#[tokio::test]
async fn a_dead_zone_shows_as_errors_failovers_and_an_open_breaker() {
    let (mut a, b) = (Memcached::start(), Memcached::start());
    let a_addr = a.addr();
    let metrics = Exported::new();
    let meter = metrics.provider.meter("riven-client");
    let mut config = common::client_config(Duration::from_secs(2));
    config.node.breaker = BreakerConfig {
        failure_threshold: 2,
        min_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
    };
    config.write_policy = riven_client::WritePolicy::AllZones {
        wait: riven_client::Wait::All,
    };
    let client = Client::new(two_zones(&a, &b), config.clone())
        .expect("client")
        .with_meter(&meter);
    client
        .set(b"key", b"v", 0, Ttl::Never)
        .await
        .expect("set in both zones");
    a.kill();
    for _ in 0..5 {
        let got = client.get(b"key").await.expect("zone b answers");
        assert!(got.is_some());
    }
    let rows = metrics.read();
    let node_a = [("zone", "a"), ("node", a_addr.as_str())];
    assert_eq!(value(&rows, "riven.client.failovers", &[("zone", "b")]), 5, "{rows:?}");
    assert_eq!(value(&rows, "riven.client.hits", &[("zone", "b")]), 5, "{rows:?}");
    // Two refused connects open the breaker; the reads after it are refused by the breaker,
    // and every one counts as an error.
    assert_eq!(value(&rows, "riven.client.errors", &node_a), 5, "{rows:?}");
    assert_eq!(value(&rows, "riven.client.breaker.state", &node_a), 2, "{rows:?}");
}

#[tokio::test]
async fn hedges_are_counted_by_the_zone_they_go_to() {
    let (a, b) = (Memcached::start(), Memcached::start());
    let metrics = Exported::new();
    let meter = metrics.provider.meter("riven-client");
    let config = ClientConfig {
        hedge: Some(HedgeConfig {
            delay_ms: 5,
            percentile: None,
            max_share: 1.0,
            burst: 100,
        }),
        write_policy: riven_client::WritePolicy::AllZones {
            wait: riven_client::Wait::All,
        },
        ..common::client_config(Duration::from_millis(500))
    };
    let client = Client::new(two_zones(&a, &b), config)
        .expect("client")
        .with_meter(&meter);
    client.set(b"key", b"v", 0, Ttl::Never).await.expect("set");
    a.pause();
    for _ in 0..3 {
        assert!(client.get(b"key").await.expect("the hedge answers").is_some());
    }
    a.resume();
    let rows = metrics.read();
    assert_eq!(value(&rows, "riven.client.hedges", &[("zone", "b")]), 3, "{rows:?}");
    assert_eq!(value(&rows, "riven.client.hits", &[("zone", "b")]), 3, "{rows:?}");
}
