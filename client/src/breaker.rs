//! A circuit breaker for one node.
//!
//! Closed, it lets every call through and counts consecutive failures; at the threshold it
//! opens. Open, it refuses calls at once, so callers fail over to another zone instead of
//! waiting on a node that is down. Once its backoff has passed it lets one call through as a
//! probe (half-open): success closes it, failure opens it again with twice the backoff, up to a
//! cap.
//!
//! The breaker is a plain state machine with no clock and no lock of its own: every method is
//! given the current [`Instant`], so tests drive it through time without sleeping, and the
//! [`Node`](crate::Node) that owns it decides how it is shared.

use std::time::{Duration, Instant};

use crate::conn::backoff_delay;

/// When a breaker opens and how long it stays open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker. Default 5; 0 is taken as 1.
    pub failure_threshold: u32,
    /// How long the breaker stays open the first time, before its first probe. Default 50 ms.
    pub min_backoff: Duration,
    /// The longest it stays open between probes; each failed probe doubles the wait up to
    /// this. Default 5 s.
    pub max_backoff: Duration,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 5,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the backoff has passed.
    Open,
    /// One probe call is in flight; others are refused until it reports.
    HalfOpen,
}

/// What [`Breaker::admit`] let through; hand it back to [`Breaker::record`] (or
/// [`Breaker::abandon`]) when the call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "report the call's outcome with Breaker::record"]
pub enum Ticket {
    /// An ordinary call through a closed breaker.
    Normal,
    /// The one call let through a half-open breaker; its outcome decides the breaker's.
    Probe,
}

/// The call was refused: the breaker is open, or half-open with its probe in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected;

/// A circuit breaker (see the module docs).
#[derive(Clone, Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    /// `opens` counts the times it opened without closing in between, which sets the backoff.
    Open {
        until: Instant,
        opens: u32,
    },
    HalfOpen {
        opens: u32,
    },
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            state: State::Closed { failures: 0 },
        }
    }

    /// Where the breaker stands (an open breaker whose backoff has passed still reads `Open`
    /// until a call is admitted as its probe).
    pub fn state(&self) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether the breaker is closed with no failure counted: then [`Breaker::admit`] lets
    /// any call through as [`Ticket::Normal`] and recording a success changes nothing, which
    /// lets its owner skip both (and the clock) while this holds.
    pub fn is_clean(&self) -> bool {
        self.state == State::Closed { failures: 0 }
    }

    /// Whether a call may go through now, and in what role.
    pub fn admit(&mut self, now: Instant) -> Result<Ticket, Rejected> {
        match self.state {
            State::Closed { .. } => Ok(Ticket::Normal),
            State::Open { until, opens } if now >= until => {
                self.state = State::HalfOpen { opens };
                Ok(Ticket::Probe)
            }
            State::Open { .. } | State::HalfOpen { .. } => Err(Rejected),
        }
    }

    /// Reports how an admitted call ended. Reports of ordinary calls that were admitted before
    /// the breaker opened are ignored once it has: only the probe speaks for the node then.
    pub fn record(&mut self, ticket: Ticket, success: bool, now: Instant) {
        match (ticket, self.state) {
            (Ticket::Normal, State::Closed { failures }) => {
                let failures = if success { 0 } else { failures.saturating_add(1) };
                self.state = if failures >= self.config.failure_threshold.max(1) {
                    self.open(now, 1)
                } else {
                    State::Closed { failures }
                };
            }
            (Ticket::Probe, State::HalfOpen { opens }) => {
                self.state = if success {
                    State::Closed { failures: 0 }
                } else {
                    self.open(now, opens.saturating_add(1))
                };
            }
            _ => {}
        }
    }

    /// Reports that an admitted call ended without an outcome (its caller gave up on it). A
    /// probe's abandonment says nothing about the node, so the next call becomes the probe.
    pub fn abandon(&mut self, ticket: Ticket, now: Instant) {
        if let (Ticket::Probe, State::HalfOpen { opens }) = (ticket, self.state) {
            self.state = State::Open { until: now, opens };
        }
    }

    fn open(&self, now: Instant, opens: u32) -> State {
        let backoff = backoff_delay(self.config.min_backoff, self.config.max_backoff, opens);
        State::Open {
            until: now + backoff,
            opens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: threshold,
            min_backoff: 50 * MS,
            max_backoff: 200 * MS,
        })
    }

    fn fail(b: &mut Breaker, now: Instant) {
        let ticket = b.admit(now).expect("admitted");
        b.record(ticket, false, now);
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = breaker(3);
        fail(&mut b, t0);
        fail(&mut b, t0);
        // A success in between resets the count.
        let ticket = b.admit(t0).expect("admitted");
        b.record(ticket, true, t0);
        fail(&mut b, t0);
        fail(&mut b, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&mut b, t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(t0 + 49 * MS), Err(Rejected));
    }

    #[test]
    fn probes_after_backoff_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = breaker(1);
        fail(&mut b, t0);
        let t1 = t0 + 50 * MS;
        assert_eq!(b.admit(t1), Ok(Ticket::Probe));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // Only one probe at a time.
        assert_eq!(b.admit(t1), Err(Rejected));
        b.record(Ticket::Probe, true, t1);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(t1), Ok(Ticket::Normal));
    }

    #[test]
    fn failed_probes_double_the_backoff_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = breaker(1);
        fail(&mut b, t0);
        let mut now = t0;
        for backoff in [50, 100, 200, 200] {
            assert_eq!(b.admit(now + (backoff - 1) * MS), Err(Rejected), "backoff {backoff}");
            now += backoff * MS;
            assert_eq!(b.admit(now), Ok(Ticket::Probe), "backoff {backoff}");
            b.record(Ticket::Probe, false, now);
            assert_eq!(b.state(), BreakerState::Open);
        }
        // Closing resets the backoff: the next opening waits the minimum again.
        now += 200 * MS;
        assert_eq!(b.admit(now), Ok(Ticket::Probe));
        b.record(Ticket::Probe, true, now);
        fail(&mut b, now);
        assert_eq!(b.admit(now + 49 * MS), Err(Rejected));
        assert_eq!(b.admit(now + 50 * MS), Ok(Ticket::Probe));
    }

    #[test]
    fn stale_reports_and_abandoned_probes() {
        let t0 = Instant::now();
        let mut b = breaker(1);
        let early = b.admit(t0).expect("admitted");
        fail(&mut b, t0);
        // A call admitted before the breaker opened cannot close it.
        b.record(early, true, t0);
        assert_eq!(b.state(), BreakerState::Open);

        let t1 = t0 + 50 * MS;
        let probe = b.admit(t1).expect("probe");
        b.abandon(probe, t1);
        assert_eq!(b.state(), BreakerState::Open);
        // The next call probes at once, with no added backoff.
        assert_eq!(b.admit(t1), Ok(Ticket::Probe));
    }

    #[test]
    fn a_zero_threshold_opens_on_the_first_failure() {
        let mut b = breaker(0);
        fail(&mut b, Instant::now());
        assert_eq!(b.state(), BreakerState::Open);
    }
}
