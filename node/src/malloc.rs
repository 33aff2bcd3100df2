//! How the node asks glibc's allocator to treat freed memory.
//!
//! A node over memcached allocates and frees buffers of a large value's size all the time: a
//! link's buffer per large reply, a connection's read buffer that grew for a large set. glibc by
//! default serves allocations of 128 KiB and up with their own `mmap` (raising that bound as
//! they are freed) and gives the top of its heap back to the kernel once 128 KiB of it is free,
//! so the next such buffer is fresh memory again and the kernel zero-fills it page by page while
//! `recv` writes into it: page faults showed in the node's profile with large values
//! (BENCHMARKS.md, "Design measurements"). The node keeps freed memory instead, up to a bound,
//! for the next buffer. An operator's own `GLIBC_TUNABLES` malloc settings win.

/// The most free memory at the top of a heap kept rather than returned to the kernel.
const TRIM_THRESHOLD: usize = 32 << 20;

/// Allocations from this size on get their own `mmap`: the buffers of the largest values (up to
/// 128 MiB), whose cost the page faults add little to, not the common large ones.
const MMAP_THRESHOLD: usize = 4 << 20;

/// Sets glibc's trim and `mmap` thresholds (see the module doc), unless the operator set
/// malloc tunables of their own in `GLIBC_TUNABLES`. Returns whether it did. Elsewhere than
/// glibc on Linux it does nothing.
pub fn keep_freed_memory() -> bool {
    let own = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
    if own {
        return false;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    // SAFETY: mallopt only changes the allocator's parameters; it is called before the node's
    // threads start, and glibc serialises it with allocations anyway.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}
