//! memcached's slab arithmetic, for what `me` prints.

/// memcached's slab class and total item size for an item, so `me` prints what memcached would
/// for the same item with its default settings (`-n 48 -f 1.25`, 1 MB pages, CAS on).
/// The node's store has no slab classes; these are computed, not measured.
pub fn memcached_item_size(key_len: usize, value_len: usize, client_flags: u32) -> (u32, u64) {
    // Header (48) + CAS (8) + key + NUL + value + "\r\n" + 4 bytes of flags when they are set.
    let size = 48 + 8 + key_len as u64 + 1 + value_len as u64 + 2 + if client_flags != 0 { 4 } else { 0 };
    (slab_class(size), size)
}

/// The slab class memcached 1.6 with default settings puts an item of `size` bytes in: class 1
/// holds 96 bytes, each next one 1.25 times more (truncated, then rounded up to 8) until a size
/// reaches 512 KB / 1.25; the class after that is the last one, 512 KB chunks, which also heads
/// the chains of larger items.
fn slab_class(size: u64) -> u32 {
    const CHUNK_MAX: u32 = 512 * 1024;
    const FACTOR: f64 = 1.25;
    let mut class_size: u32 = 96;
    let mut id = 1;
    while (class_size as f64) < CHUNK_MAX as f64 / FACTOR {
        class_size = class_size.next_multiple_of(8);
        if size <= class_size as u64 {
            return id;
        }
        class_size = (class_size as f64 * FACTOR) as u32;
        id += 1;
    }
    id
}
