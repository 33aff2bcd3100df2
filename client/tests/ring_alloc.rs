//! A lookup on the ring allocates nothing: it runs on every request.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use riven_client::{Ring, DEFAULT_VNODES};

// Counts this thread's allocations, so other test threads cannot disturb the count.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: the caller upholds `alloc`'s contract, which is `System`'s too.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn lookups_do_not_allocate() {
    let nodes: Vec<String> = (1..=10).map(|i| format!("10.0.0.{i}:11211")).collect();
    let ring = Ring::new(&nodes, DEFAULT_VNODES);
    let keys: Vec<String> = (0..1_000).map(|i| format!("key:{i}")).collect();
    let before = ALLOCATIONS.with(Cell::get);
    let mut total = 0;
    for key in &keys {
        total += ring.node_for(key.as_bytes()).map_or(0, str::len);
        total += ring.index_for(key.as_bytes()).unwrap_or(0);
    }
    let after = ALLOCATIONS.with(Cell::get);
    assert!(total > 0);
    assert_eq!(after - before, 0, "lookups allocated");
}
