//! The load loop must not allocate per request: on a 2-core machine shared with the server under
//! test, allocator work in the tool is throughput taken from the server. Two runs that differ
//! only in length must differ by (almost) no allocations, however many more requests the longer
//! one made.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use riven_bench::compare;
use riven_bench::load::{self, LoadConfig};
use riven_bench::proc::{self, Server};
use riven_bench::value::KeySpace;
use riven_bench::wire::Protocol;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn no_allocation_per_request() {
    let bin = std::env::var("MEMCACHED").unwrap_or_else(|_| "memcached".into());
    let program = proc::which(&bin).expect("memcached must be installed (apt-get install memcached)");
    let target = compare::memcached(
        program,
        compare::ServerSettings {
            threads: 2,
            item_size_max_mb: 0,
            memory_mb: 64,
            max_connections: 1024,
        },
    );
    let server = Server::start(&target.name, &target.server, Duration::from_secs(10)).unwrap();
    let rt = load::runtime(1).unwrap();
    for protocol in Protocol::ALL {
        for pipeline in [1, 16] {
            let run = |millis: u64| {
                let mut cfg = LoadConfig::new(server.addr(), protocol);
                cfg.connections = 4;
                cfg.pipeline = pipeline;
                cfg.keys = KeySpace::new("rb:", 0, 1000).unwrap();
                cfg.duration = Duration::from_millis(millis);
                let before = ALLOCS.load(Ordering::Relaxed);
                let r = rt.block_on(load::run(&cfg));
                assert!(r.ok, "{}", r.human());
                (ALLOCS.load(Ordering::Relaxed) - before, r.ops)
            };
            let (short_allocs, short_ops) = run(100);
            let (long_allocs, long_ops) = run(600);
            let extra_ops = long_ops.saturating_sub(short_ops);
            let extra_allocs = long_allocs.saturating_sub(short_allocs);
            eprintln!("{protocol} pipeline {pipeline}: {extra_allocs} more allocations for {extra_ops} more requests");
            assert!(
                extra_ops > 1000,
                "{protocol} pipeline {pipeline}: only {extra_ops} more requests"
            );
            // Histograms grow when a new maximum latency needs a wider range, and the runtime
            // grows a queue now and then: a handful of times, against thousands of requests. An
            // allocation per request (or per batch) would be at least one per 16 requests.
            assert!(
                extra_allocs * 20 < extra_ops,
                "{protocol} pipeline {pipeline}: {extra_allocs} more allocations for {extra_ops} more requests"
            );
        }
    }
}
