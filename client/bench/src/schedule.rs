//! Open-loop request schedules, and how they correct for coordinated omission.
//!
//! A closed-loop client sends its next request only once the previous reply is in. When the
//! server stalls for a second, the client stalls with it and records one slow request, while an
//! application sending at a fixed rate would have had a second's worth of requests queue up
//! behind the stall: the slow period is under-sampled exactly when it matters ("coordinated
//! omission"). An open-loop run gives request `i` of a connection an *intended* send time,
//! `offset + i / rate`, sends it as soon as possible once that time has come, and measures its
//! latency from the intended time, so time spent waiting to be sent behind a stall counts. This is
//! the correction of wrk2 and of HdrHistogram's expected-interval recording, done per request.

/// The intended send times of one connection's requests, in nanoseconds from the start of the
/// measured phase.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Requests per second.
    rate: f64,
    offset_ns: u64,
    /// Index of the next request to send.
    next: u64,
}

impl Schedule {
    /// `rate` requests per second (positive and finite), the first at `offset_ns`.
    pub fn new(rate: f64, offset_ns: u64) -> Schedule {
        Schedule {
            rate,
            offset_ns,
            next: 0,
        }
    }

    /// The schedule of connection `id` of `connections` sharing `total_rate`: each sends at
    /// `total_rate / connections`, offset so their requests interleave evenly instead of all
    /// falling due at the same instants.
    pub fn for_connection(total_rate: f64, connections: usize, id: usize) -> Schedule {
        let offset = (id as f64 * 1e9 / total_rate) as u64;
        Schedule::new(total_rate / connections.max(1) as f64, offset)
    }

    /// When request `i` should be sent.
    pub fn intended_ns(&self, i: u64) -> u64 {
        self.offset_ns + (i as f64 * 1e9 / self.rate) as u64
    }

    /// When the next request should be sent.
    pub fn next_ns(&self) -> u64 {
        self.intended_ns(self.next)
    }

    /// How many requests are due at `now_ns` (intended at or before it) and not yet taken.
    pub fn due(&self, now_ns: u64) -> u64 {
        if now_ns < self.next_ns() {
            return 0;
        }
        // First index intended after `now_ns`: estimated, then corrected for rounding so it agrees
        // with `intended_ns` exactly.
        let mut end = ((now_ns - self.offset_ns) as f64 * self.rate / 1e9) as u64 + 1;
        end = end.max(self.next + 1);
        while end > self.next + 1 && self.intended_ns(end - 1) > now_ns {
            end -= 1;
        }
        while self.intended_ns(end) <= now_ns {
            end += 1;
        }
        end - self.next
    }

    /// Takes the next request, returning its intended send time.
    pub fn take(&mut self) -> u64 {
        let t = self.next_ns();
        self.next += 1;
        t
    }

    /// Requests taken so far.
    pub fn taken(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_and_due_counts() {
        // 1000 requests per second: one every millisecond, the first at 0.5 ms.
        let mut s = Schedule::new(1000.0, 500_000);
        assert_eq!(s.intended_ns(0), 500_000);
        assert_eq!(s.intended_ns(3), 3_500_000);
        assert_eq!(s.due(0), 0);
        assert_eq!(s.due(499_999), 0);
        assert_eq!(s.due(500_000), 1);
        assert_eq!(s.due(3_499_999), 3);
        assert_eq!(s.due(3_500_000), 4);
        assert_eq!(s.take(), 500_000);
        assert_eq!(s.take(), 1_500_000);
        assert_eq!(s.due(3_500_000), 2);
        assert_eq!(s.next_ns(), 2_500_000);
        assert_eq!(s.taken(), 2);

        // Rates that do not divide a second evenly still agree with `intended_ns` everywhere.
        let s = Schedule::new(3.0, 0);
        for now in (0..3_000_000_000u64).step_by(7_777_777) {
            let due = s.due(now);
            assert!(due == 0 || s.intended_ns(due - 1) <= now, "{now}");
            assert!(s.intended_ns(due) > now, "{now}");
        }
    }

    #[test]
    fn connections_interleave() {
        // 4 connections sharing 4000/s: each sends every ms, a quarter ms apart.
        let starts: Vec<u64> = (0..4)
            .map(|id| Schedule::for_connection(4000.0, 4, id).intended_ns(0))
            .collect();
        assert_eq!(starts, vec![0, 250_000, 500_000, 750_000]);
        assert_eq!(Schedule::for_connection(4000.0, 4, 1).intended_ns(1), 1_250_000);
    }

    /// One connection at pipeline depth 1 against a server that answers in 10 µs but stalls for
    /// 100 ms at t = 50 ms. Returns the latencies (ns) a closed loop and an open loop record.
    fn simulate(rate: f64, requests: u64) -> (Vec<u64>, Vec<u64>) {
        let serve = |sent: u64| {
            let (stall_from, stall_to) = (50_000_000, 150_000_000);
            let start = if (stall_from..stall_to).contains(&sent) {
                stall_to
            } else {
                sent
            };
            start + 10_000
        };
        // Closed loop, over the same span of time: each request is sent when the previous reply
        // arrives.
        let span = (requests as f64 * 1e9 / rate) as u64;
        let mut closed = Vec::new();
        let mut t = 0;
        while t < span {
            let reply = serve(t);
            closed.push(reply - t);
            t = reply;
        }
        // Open loop: each request is sent at its intended time, or when the connection is free.
        let mut open = Vec::new();
        let mut s = Schedule::new(rate, 0);
        let mut free_at = 0;
        for _ in 0..requests {
            let intended = s.take();
            let sent = intended.max(free_at);
            let reply = serve(sent);
            open.push(reply - intended);
            free_at = reply;
        }
        (closed, open)
    }

    #[test]
    fn open_loop_corrects_for_coordinated_omission() {
        let (closed, open) = simulate(1000.0, 300);
        let slow = |v: &[u64]| v.iter().filter(|&&l| l > 1_000_000).count();
        // The closed loop sees the stall once.
        assert_eq!(slow(&closed), 1);
        // The open loop sees every request intended during the stall waiting for it: about 100
        // of them (one per ms), the first waiting ~100 ms, the last ~1 ms.
        assert!((95..=101).contains(&slow(&open)), "{}", slow(&open));
        assert!(*open.iter().max().unwrap() >= 99_000_000);
        // After the stall the backlog drains and latencies are back to the service time.
        assert!(open[200..].iter().all(|&l| l == 10_000), "{:?}", &open[200..210]);
        // The median hides the stall in both; the 90th percentile shows it only when corrected.
        let p90 = |v: &[u64]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v[v.len() * 9 / 10]
        };
        assert_eq!(p90(&closed), 10_000);
        assert!(p90(&open) > 10_000_000, "{}", p90(&open));
    }
}
