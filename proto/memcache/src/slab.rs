//! memcached's slab arithmetic: how many bytes an item takes, and which slab class it lands in,
//! computed the way memcached lays out its table from its settings (`stats settings`:
//! `growth_factor`, `chunk_size`, `slab_chunk_max`, `item_size_max`). Shared by the node's slab
//! balancer, its chunk sizes and what `me` prints.

/// memcached's item header on 64-bit builds.
const ITEM_HEADER: usize = 48;
/// The CAS every item carries (memcached runs with CAS unless started with `-C`).
const ITEM_CAS: usize = 8;
/// memcached's alignment of chunk sizes.
const CHUNK_ALIGN: usize = 8;
/// memcached's bound on the number of classes.
const MAX_CLASSES: usize = 64;

/// The bytes memcached takes for an item: header, CAS, the key and its NUL, the client flags when
/// they are not 0, the data and its `\r\n`.
pub const fn item_size(key_len: usize, flags: u32, value_len: usize) -> usize {
    let suffix = if flags == 0 { 0 } else { 4 };
    ITEM_HEADER + ITEM_CAS + key_len + 1 + suffix + value_len + 2
}

/// The settings the table is built from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlabSettings {
    pub growth_factor: f64,
    /// `-n`: the smallest data space (memcached's `chunk_size` setting).
    pub min_space: usize,
    pub slab_chunk_max: usize,
    /// The page size: memcached's `item_size_max` (`-I`).
    pub page_size: usize,
    /// memcached's memory limit (`-m`), in bytes; 0 if not known.
    pub max_bytes: u64,
}

impl Default for SlabSettings {
    /// memcached's defaults.
    fn default() -> Self {
        SlabSettings {
            growth_factor: 1.25,
            min_space: 48,
            slab_chunk_max: 512 * 1024,
            page_size: 1 << 20,
            max_bytes: 64 << 20,
        }
    }
}

/// The table: class `i` (memcached's id `i + 1`) holds items up to `sizes[i]` bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Classes {
    sizes: Vec<usize>,
    page_size: usize,
}

impl Classes {
    pub fn new(s: SlabSettings) -> Classes {
        let factor = if s.growth_factor > 1.0 { s.growth_factor } else { 1.25 };
        let mut sizes = Vec::new();
        let mut size = ITEM_HEADER + s.min_space;
        while sizes.len() < MAX_CLASSES - 2 && (size as f64) < s.slab_chunk_max as f64 / factor {
            if !size.is_multiple_of(CHUNK_ALIGN) {
                size += CHUNK_ALIGN - size % CHUNK_ALIGN;
            }
            sizes.push(size);
            // memcached keeps the size in an unsigned int: the product is truncated.
            size = (size as f64 * factor) as usize;
        }
        sizes.push(s.slab_chunk_max);
        Classes {
            sizes,
            page_size: s.page_size.max(1),
        }
    }

    /// memcached's id of the class an item of `bytes` lands in; `None` above the largest class
    /// (memcached chains such items over several chunks).
    pub fn class_of(&self, bytes: usize) -> Option<usize> {
        let i = self.sizes.partition_point(|&s| s < bytes);
        (i < self.sizes.len()).then_some(i + 1)
    }

    /// How many classes there are (ids 1 to this).
    pub fn count(&self) -> usize {
        self.sizes.len()
    }

    /// The chunk size of class `id`.
    pub fn chunk_size(&self, id: usize) -> usize {
        self.sizes.get(id.wrapping_sub(1)).copied().unwrap_or(0)
    }

    /// Chunks per page of class `id`.
    pub fn per_page(&self, id: usize) -> usize {
        self.page_size / self.chunk_size(id).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_is_memcacheds() {
        // `memcached -vv` (1.6, defaults) prints these chunk sizes for classes 1 to 25.
        let expected = [
            96, 120, 152, 192, 240, 304, 384, 480, 600, 752, 944, 1184, 1480, 1856, 2320, 2904, 3632, 4544, 5680, 7104,
            8880, 11104, 13880, 17352, 21696,
        ];
        let c = Classes::new(SlabSettings::default());
        for (i, &size) in expected.iter().enumerate() {
            assert_eq!(c.chunk_size(i + 1), size, "class {}", i + 1);
        }
        assert_eq!(c.chunk_size(c.count()), 512 * 1024);
        assert_eq!(c.per_page(15), 451);
        assert_eq!(c.per_page(1), 10922);
    }

    #[test]
    fn items_land_in_the_smallest_class_that_holds_them() {
        let c = Classes::new(SlabSettings::default());
        // `stats items` reports these as mem_requested for a 1-byte key.
        assert_eq!(item_size(1, 0, 2000), 2060);
        assert_eq!(item_size(1, 5, 10), 74);
        assert_eq!(c.class_of(74), Some(1));
        assert_eq!(c.class_of(96), Some(1));
        assert_eq!(c.class_of(97), Some(2));
        assert_eq!(c.class_of(2060), Some(15));
        assert_eq!(c.class_of(17352), Some(24));
        assert_eq!(c.class_of(512 * 1024), Some(c.count()));
        assert_eq!(c.class_of(512 * 1024 + 1), None);
    }
}
