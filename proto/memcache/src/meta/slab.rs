//! memcached's slab arithmetic, for what `me` prints.

use std::sync::OnceLock;

use crate::slab::{item_size, Classes, SlabSettings};

/// memcached's slab class and total item size for an item, so `me` prints what memcached would
/// for the same item with its default settings (`-n 48 -f 1.25`, 1 MB pages, CAS on).
/// The node's store has no slab classes; these are computed, not measured. An item larger than
/// the largest class is in memcached a chain headed by that class.
pub fn memcached_item_size(key_len: usize, value_len: usize, client_flags: u32) -> (u32, u64) {
    static DEFAULTS: OnceLock<Classes> = OnceLock::new();
    let classes = DEFAULTS.get_or_init(|| Classes::new(SlabSettings::default()));
    let size = item_size(key_len, client_flags, value_len);
    let class = classes.class_of(size).unwrap_or(classes.count());
    (class as u32, size as u64)
}
