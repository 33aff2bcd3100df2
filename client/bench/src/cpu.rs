//! The load tool's own CPU use over a measured interval, to tell a figure the server set from one
//! the tool set: a tool that used (nearly) all the cores it may use was the bottleneck, and its
//! throughput says how fast the tool is, not the server.
//!
//! The time is the whole process's (`getrusage(RUSAGE_SELF)`, user + system, every thread): the
//! tools run the load in a process of their own, so that is the load generator. A test that
//! runs a server in the same process counts that server's time too.

use std::time::Instant;

use serde::Serialize;

/// At or above this fraction of its threads' capacity the tool counts as saturated. Below it the
/// tool had cycles to spare, so it waited for the server rather than the other way round; just
/// under 1, because a saturated runtime still sleeps now and then between wake-ups.
pub const SATURATED: f64 = 0.9;

/// What the load generator used of the CPU over a measured interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CpuUse {
    pub user_secs: f64,
    pub sys_secs: f64,
    /// The interval's wall-clock length.
    pub wall_secs: f64,
    /// The threads the generator may use: its runtime's workers, at most the machine's cores.
    pub threads: usize,
    /// (user + system) / (wall x threads).
    pub fraction: f64,
    /// `fraction` is at least [`SATURATED`]: the figure measures the tool.
    pub saturated: bool,
}

impl CpuUse {
    fn new(user_secs: f64, sys_secs: f64, wall_secs: f64, threads: usize) -> CpuUse {
        let threads = threads.max(1);
        let fraction = if wall_secs > 0.0 {
            (user_secs + sys_secs) / (wall_secs * threads as f64)
        } else {
            0.0
        };
        CpuUse {
            user_secs,
            sys_secs,
            wall_secs,
            threads,
            fraction,
            saturated: is_saturated(fraction),
        }
    }

    /// One line for a human summary.
    pub fn human(&self) -> String {
        let threads = if self.threads == 1 { "thread" } else { "threads" };
        let mark = if self.saturated {
            " (saturated: the figure measures the tool)"
        } else {
            ""
        };
        format!(
            "{:.2} s user + {:.2} s sys over {:.2} s: {:.0} % of {} {threads}{mark}",
            self.user_secs,
            self.sys_secs,
            self.wall_secs,
            self.fraction * 100.0,
            self.threads
        )
    }
}

/// Whether a tool that used `fraction` of its capacity was the bottleneck.
pub fn is_saturated(fraction: f64) -> bool {
    fraction >= SATURATED
}

/// The mark of a figure the tool bound, in tables.
pub const MARK: &str = "*";

/// What the `gen cpu` column and its mark mean, for under a table.
pub fn legend() -> String {
    format!(
        "`gen cpu`: the load generator's own CPU time (user + system) over the wall clock of the \
         measured rounds, as a share of the threads it may use (median over the rounds). \
         `{MARK}`: {:.0} % or more, load tool saturated; the figure measures the tool, not the server.",
        SATURATED * 100.0
    )
}

/// A `gen cpu` cell: the share, marked when it is saturated.
pub fn cell(fraction: Option<f64>) -> String {
    match fraction {
        Some(f) if is_saturated(f) => format!("{:.0} % {MARK}", f * 100.0),
        Some(f) => format!("{:.0} %", f * 100.0),
        None => "-".into(),
    }
}

/// The process's CPU time and the wall clock at the start of an interval.
#[derive(Clone, Copy, Debug)]
pub struct CpuClock {
    user: f64,
    sys: f64,
    at: Instant,
}

impl CpuClock {
    pub fn start() -> CpuClock {
        let (user, sys) = process_times();
        CpuClock {
            user,
            sys,
            at: Instant::now(),
        }
    }

    /// The use since [`CpuClock::start`], by a generator of `threads` threads.
    pub fn stop(&self, threads: usize) -> CpuUse {
        let (user, sys) = process_times();
        let wall = self.at.elapsed().as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(threads, |n| n.get());
        CpuUse::new(
            (user - self.user).max(0.0),
            (sys - self.sys).max(0.0),
            wall,
            threads.min(cores),
        )
    }
}

/// The threads of the tokio runtime the caller runs on (1 outside one).
pub fn runtime_threads() -> usize {
    tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers())
}

/// User and system seconds of the whole process so far.
fn process_times() -> (f64, f64) {
    // SAFETY: an all-zero rusage is a valid value, and getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer cannot fail.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_counted() {
        // Other tests run in this process at the same time, so only what this thread adds is
        // certain: spin until the process has used 100 ms more (or give up after 10 s).
        let clock = CpuClock::start();
        let t = Instant::now();
        let mut x = 0u64;
        while process_times().0 + process_times().1 < clock.user + clock.sys + 0.1 && t.elapsed().as_secs() < 10 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let c = clock.stop(1);
        assert!(c.user_secs + c.sys_secs >= 0.1, "{c:?}");
        assert!(c.threads == 1 && c.wall_secs > 0.0, "{c:?}");
        let want = (c.user_secs + c.sys_secs) / c.wall_secs;
        assert!((c.fraction - want).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn the_threshold_and_the_summary() {
        let c = CpuUse::new(1.0, 0.9, 2.0, 1);
        assert!((c.fraction - 0.95).abs() < 1e-9 && c.saturated);
        assert!(c.human().contains("95 % of 1 thread (saturated"), "{}", c.human());
        let c = CpuUse::new(1.0, 0.6, 2.0, 2);
        assert!((c.fraction - 0.4).abs() < 1e-9 && !c.saturated);
        assert!(c.human().ends_with("40 % of 2 threads"), "{}", c.human());
        assert!(is_saturated(SATURATED) && !is_saturated(SATURATED - 0.01));
        assert_eq!(CpuUse::new(0.0, 0.0, 0.0, 0).fraction, 0.0);
        assert_eq!(cell(Some(0.95)), "95 % *");
        assert_eq!(cell(Some(0.42)), "42 %");
        assert_eq!(cell(None), "-");
        assert!(legend().contains("90 % or more, load tool saturated; the figure measures the tool"));
    }
}
