//! How the zone-aware [`Client`](crate::Client) behaves: its configuration, the write policies
//! and item lifetimes ([`Ttl`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use riven_memcache::absolute_exptime;
use serde::Deserialize;

use crate::breaker::BreakerConfig;
use crate::conn::ConnConfig;
use crate::node::NodeConfig;

/// memcached reads an exptime up to this many seconds (30 days) as relative to now, and a larger
/// one as a unix time ([`riven_memcache::REALTIME_MAXDELTA`]).
pub const MAX_RELATIVE_EXPTIME: u64 = riven_memcache::REALTIME_MAXDELTA as u64;

/// How long an item lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ttl {
    /// Until memcached evicts it.
    #[default]
    Never,
    /// For this long from now.
    After(Duration),
    /// Until this moment.
    At(SystemTime),
}

impl Ttl {
    /// The memcached exptime for this lifetime, as of the current system time.
    pub fn exptime(&self) -> u32 {
        self.exptime_at(SystemTime::now())
    }

    /// The memcached exptime for this lifetime, as of `now`.
    ///
    /// 0 is "never" to memcached, so no lifetime other than [`Ttl::Never`] ever maps to it: a
    /// duration under a second is rounded up to 1 s, and a moment already past becomes a unix
    /// time in the past, which memcached expires at once. A duration up to 30 days is sent as
    /// relative seconds; a longer one as the unix time `now` plus the duration, because
    /// memcached would read so many seconds as a date in 1970.
    pub fn exptime_at(&self, now: SystemTime) -> u32 {
        match *self {
            Ttl::Never => 0,
            Ttl::After(d) => {
                // Round up: sub-second parts must not shorten the lifetime, nor make it 0.
                let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                let secs = secs.max(1);
                if secs <= MAX_RELATIVE_EXPTIME {
                    secs as u32
                } else {
                    absolute_exptime(unix_secs(now).saturating_add(secs))
                }
            }
            Ttl::At(t) => absolute_exptime(unix_secs(t)),
        }
    }
}

/// Seconds since the epoch; a time before it counts as the epoch.
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Which zones a write goes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WritePolicy {
    /// The first zone of the client's zone order only; other zones learn of the write through
    /// replication, if at all.
    #[default]
    Local,
    /// Every zone's owner of the key at once, each from its own tokio task, so the zones not
    /// waited for still get the write. A write that fails the wait is not undone in the zones
    /// where it landed. `cas` is the exception: a CAS is one zone's, so it goes to the first
    /// zone only.
    AllZones {
        /// How many zones must store the write before the call returns.
        wait: Wait,
    },
}

/// How many zones an [`WritePolicy::AllZones`] write waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// One zone.
    One,
    /// A majority of the topology's zones (2 of 3, 3 of 4).
    Quorum,
    /// Every zone.
    All,
}

impl Wait {
    /// The answers needed out of `zones` zones.
    pub fn needed(&self, zones: usize) -> usize {
        match self {
            Wait::One => 1.min(zones),
            Wait::Quorum => zones / 2 + 1,
            Wait::All => zones,
        }
    }
}

/// Hedged reads: when the first zone of the order has not answered a
/// [`get`](crate::Client::get) or [`gets`](crate::Client::gets) within the hedge delay, the same
/// read is also sent to the next zone, and the first answer that is not an error wins.
///
/// The delay is fixed (`delay_ms`), or adaptive: with `percentile` set, it is that percentile
/// of the first zone's recent read latency, so a hedge goes out only for the reads slower than
/// (say) 95 % of their recent peers, whatever the zone's normal latency is.
///
/// A hedge turns one slow node into an extra read elsewhere, so it is budgeted: at most
/// `max_share` of all reads (plus `burst`) are hedged, so a zone that is slow for everyone
/// cannot double the load on the next one. Every field has a default
/// ([`HedgeConfig::default`]), also when it is left out of a configuration file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HedgeConfig {
    /// How long the first zone has before the next one is asked too, in milliseconds. A fixed
    /// delay: set it near the first zone's 95th–99th percentile latency. With `percentile` set,
    /// the delay used until enough reads (256) have been timed. Default 10.
    pub delay_ms: u64,
    /// An adaptive delay: the given percentile (0.0 to 1.0, for example 0.95) of the first
    /// zone's recent read latency, recomputed every 256 reads with older reads counting half
    /// as much at each step. Default `None` (the fixed `delay_ms`).
    pub percentile: Option<f64>,
    /// The largest share of reads that may be hedged, 0.0 to 1.0. 0.0 (or less) sends no hedge
    /// at all, whatever `burst` says. Default 0.05.
    pub max_share: f64,
    /// Hedges allowed above `max_share` of the reads so far, so that a young client (whose
    /// share of a few reads rounds down to nothing) can hedge too. Default 10.
    pub burst: u64,
}

impl Default for HedgeConfig {
    fn default() -> HedgeConfig {
        HedgeConfig {
            delay_ms: 10,
            percentile: None,
            max_share: 0.05,
            burst: 10,
        }
    }
}

impl HedgeConfig {
    /// The hedge delay.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }

    /// How many hedges the budget allows after `reads` reads.
    pub fn allowed(&self, reads: u64) -> u64 {
        if self.max_share.is_nan() || self.max_share <= 0.0 {
            return 0;
        }
        // A float-to-int `as` saturates, so a huge share cannot wrap.
        ((self.max_share * reads as f64) as u64).saturating_add(self.burst)
    }
}

/// How a [`Client`](crate::Client) behaves. Every field has a default, both from
/// [`ClientConfig::default`] and when it is left out of a configuration file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// How each node handle behaves.
    #[serde(deserialize_with = "node_config")]
    pub node: NodeConfig,
    /// The zones reads try, in order, and whose first zone takes [`WritePolicy::Local`] writes.
    /// Zones left out are not read from. Default: the topology's local zone, then the others
    /// in topology (name) order.
    pub zone_order: Option<Vec<String>>,
    /// Whether a miss in one zone is asked again of the next. Off by default: with replication
    /// a miss is usually a true miss, and asking every zone would triple the cost of misses.
    pub fallback_on_miss: bool,
    /// Which zones writes go to. Default [`WritePolicy::Local`].
    pub write_policy: WritePolicy,
    /// Hedged reads ([`HedgeConfig`]). Default off (`None`): a hedge is an extra read, which
    /// only a caller who knows its latency needs should pay for.
    pub hedge: Option<HedgeConfig>,
}

/// [`NodeConfig`] as configuration files spell it: durations in milliseconds, every field
/// optional. It lives here so the node's own types need no serde.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawNodeConfig {
    connections: Option<usize>,
    connect_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    max_in_flight: Option<usize>,
    reconnect_min_backoff_ms: Option<u64>,
    reconnect_max_backoff_ms: Option<u64>,
    max_reply: Option<usize>,
    breaker_failure_threshold: Option<u32>,
    breaker_min_backoff_ms: Option<u64>,
    breaker_max_backoff_ms: Option<u64>,
}

fn node_config<'de, D: serde::Deserializer<'de>>(de: D) -> Result<NodeConfig, D::Error> {
    let raw = RawNodeConfig::deserialize(de)?;
    let (conn, breaker) = (ConnConfig::default(), BreakerConfig::default());
    let ms = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
    Ok(NodeConfig {
        connections: raw.connections.unwrap_or(NodeConfig::default().connections),
        conn: ConnConfig {
            connect_timeout: ms(raw.connect_timeout_ms, conn.connect_timeout),
            request_timeout: ms(raw.request_timeout_ms, conn.request_timeout),
            max_in_flight: raw.max_in_flight.unwrap_or(conn.max_in_flight),
            reconnect_min_backoff: ms(raw.reconnect_min_backoff_ms, conn.reconnect_min_backoff),
            reconnect_max_backoff: ms(raw.reconnect_max_backoff_ms, conn.reconnect_max_backoff),
            max_reply: raw.max_reply.unwrap_or(conn.max_reply),
        },
        breaker: BreakerConfig {
            failure_threshold: raw.breaker_failure_threshold.unwrap_or(breaker.failure_threshold),
            min_backoff: ms(raw.breaker_min_backoff_ms, breaker.min_backoff),
            max_backoff: ms(raw.breaker_max_backoff_ms, breaker.max_backoff),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 60 * 60;

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn relative_up_to_thirty_days_then_absolute() {
        let now = at(1_700_000_000);
        assert_eq!(Ttl::Never.exptime_at(now), 0);
        assert_eq!(Ttl::After(Duration::from_secs(60)).exptime_at(now), 60);
        let limit = Duration::from_secs(30 * DAY);
        assert_eq!(Ttl::After(limit).exptime_at(now), 2_592_000);
        assert_eq!(
            Ttl::After(limit + Duration::from_secs(1)).exptime_at(now),
            1_700_000_000 + 2_592_001
        );
        // 30 days and half a second rounds up past the line, so it must go absolute.
        assert_eq!(
            Ttl::After(limit + Duration::from_millis(500)).exptime_at(now),
            1_700_000_000 + 2_592_001
        );
    }

    #[test]
    fn short_durations_never_become_never() {
        let now = at(1_700_000_000);
        assert_eq!(Ttl::After(Duration::ZERO).exptime_at(now), 1);
        assert_eq!(Ttl::After(Duration::from_millis(1)).exptime_at(now), 1);
        assert_eq!(Ttl::After(Duration::from_millis(1500)).exptime_at(now), 2);
    }

    #[test]
    fn moments_are_unix_times_memcached_reads_as_such() {
        let now = at(1_700_000_000);
        assert_eq!(Ttl::At(at(1_700_000_100)).exptime_at(now), 1_700_000_100);
        // Long past, or before the epoch: still absolute, so memcached expires it at once.
        assert_eq!(Ttl::At(at(5)).exptime_at(now), 2_592_001);
        assert_eq!(Ttl::At(UNIX_EPOCH - Duration::from_secs(9)).exptime_at(now), 2_592_001);
        assert_eq!(Ttl::At(at(1 << 40)).exptime_at(now), u32::MAX);
    }

    #[test]
    fn wait_counts() {
        assert_eq!([1, 2, 3].map(|n| Wait::Quorum.needed(n)), [1, 2, 2]);
        assert_eq!(Wait::Quorum.needed(4), 3);
        assert_eq!((Wait::One.needed(3), Wait::All.needed(3)), (1, 3));
    }

    #[test]
    fn config_defaults_and_overrides() {
        let c: ClientConfig = serde_json::from_str("{}").expect("empty config");
        assert_eq!(c, ClientConfig::default());
        let c: ClientConfig = serde_json::from_str(
            r#"{"node": {"request_timeout_ms": 50, "connections": 1},
                "zone_order": ["b", "a"], "fallback_on_miss": true,
                "write_policy": {"all_zones": {"wait": "quorum"}}}"#,
        )
        .expect("full config");
        assert_eq!(c.node.conn.request_timeout, Duration::from_millis(50));
        assert_eq!(c.node.connections, 1);
        assert_eq!(c.node.breaker, BreakerConfig::default());
        assert_eq!(c.zone_order, Some(vec!["b".to_string(), "a".to_string()]));
        assert!(c.fallback_on_miss);
        assert_eq!(c.write_policy, WritePolicy::AllZones { wait: Wait::Quorum });
        let local: ClientConfig = serde_json::from_str(r#"{"write_policy": "local"}"#).expect("local");
        assert_eq!(local.write_policy, WritePolicy::Local);
        assert_eq!(local.hedge, None);
        let hedge: ClientConfig = serde_json::from_str(r#"{"hedge": {"delay_ms": 20}}"#).expect("hedge");
        let expect = HedgeConfig {
            delay_ms: 20,
            ..HedgeConfig::default()
        };
        assert_eq!(hedge.hedge, Some(expect));
        assert!(serde_json::from_str::<ClientConfig>(r#"{"hedge": {"delay": 1}}"#).is_err());
        let adaptive: ClientConfig =
            serde_json::from_str(r#"{"hedge": {"percentile": 0.95}}"#).expect("adaptive hedge");
        assert_eq!(adaptive.hedge.and_then(|h| h.percentile), Some(0.95));
    }

    #[test]
    fn hedge_budget() {
        let h = |max_share, burst| HedgeConfig {
            delay_ms: 1,
            percentile: None,
            max_share,
            burst,
        };
        assert_eq!(h(0.05, 2).allowed(0), 2);
        assert_eq!(h(0.05, 2).allowed(100), 7);
        assert_eq!(h(0.0, 10).allowed(1000), 0, "a share of 0 sends no hedge");
        assert_eq!(h(f64::NAN, 10).allowed(1000), 0);
        assert_eq!(h(1e300, 10).allowed(1000), u64::MAX);
    }
}
