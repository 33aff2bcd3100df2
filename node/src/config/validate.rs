//! The bounds a configuration must keep: memcached's on its flags, plus the node's own. An
//! error names the key as the file spells it, the value and what is allowed.

use std::fmt;

use super::{Config, Size};

/// The largest `-I` memcached allows.
pub const ITEM_SIZE_LIMIT: usize = 128 << 20;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A value outside what is allowed.
    Invalid {
        /// The key as the file spells it (`l2.max_bytes`); the flag, if any, follows in brackets.
        key: &'static str,
        value: String,
        allowed: String,
    },
    /// A layer could not be read: a missing or malformed file, an unknown key, a value of the
    /// wrong type.
    Load(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Invalid { key, value, allowed } => {
                write!(f, "invalid {key} = {value}: {allowed}")
            }
            ConfigError::Load(e) => write!(f, "configuration: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(key: &'static str, value: impl fmt::Display, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

/// `value` within `lo..=hi`, else an error naming `key` and the range.
fn within<T: PartialOrd + fmt::Display + Copy>(key: &'static str, value: T, lo: T, hi: T) -> Result<(), ConfigError> {
    if value < lo || value > hi {
        return Err(invalid(key, value, format!("must be from {lo} to {hi}")));
    }
    Ok(())
}

/// Checks every bound; the first one broken is the error.
pub fn validate(c: &Config) -> Result<(), ConfigError> {
    within("server.threads (-t)", c.server.threads, 1, 1024)?;
    within("server.conn_limit (-c)", c.server.conn_limit, 1, 1 << 20)?;
    within(
        "limits.max_item_size (-I)",
        c.limits.max_item_size,
        Size(1 << 10),
        Size(ITEM_SIZE_LIMIT as u64),
    )?;
    let min_line = riven_memcache::text::MAX_COMMAND_LINE;
    within("limits.max_line", c.limits.max_line, min_line, 1 << 30)?;
    within("l1.memory.limit_mb (-m)", c.l1.memory.limit_mb, 1, 1 << 22)?;
    let chunk = c.l1.memory.chunk_size;
    if !(64..=1 << 20).contains(&chunk) || !chunk.is_multiple_of(8) {
        return Err(invalid(
            "l1.memory.chunk_size",
            chunk,
            "must be a multiple of 8, from 64 to 1048576",
        ));
    }
    let mc = &c.l1.memcached;
    match &mc.endpoint {
        // The node's arena holds every item, so an item may take at most half of it.
        None if c.item_size_max() > c.memory_bytes() / 2 => {
            return Err(invalid(
                "limits.max_item_size (-I)",
                c.limits.max_item_size,
                format!(
                    "cannot be more than half of l1.memory.limit_mb (-m {})",
                    c.l1.memory.limit_mb
                ),
            ));
        }
        None => {}
        Some(endpoint) => {
            if endpoint.trim().is_empty() {
                return Err(invalid(
                    "l1.memcached.endpoint (--l1-memcached)",
                    "\"\"",
                    "must be host:port or unix:/path",
                ));
            }
            within("l1.memcached.connections (--l1-connections)", mc.connections, 1, 64)?;
            within("l1.memcached.timeout_ms (--l1-timeout-ms)", mc.timeout_ms, 1, 600_000)?;
            within(
                "l1.memcached.max_buffered (--l1-max-buffered)",
                mc.max_buffered,
                Size(64 << 10),
                Size(1 << 40),
            )?;
            within("l1.memcached.rebalance_wait_ms", mc.rebalance_wait_ms, 0, 10_000)?;
            if mc.chunk_size != 0 {
                within(
                    "l1.memcached.chunk_size (--l1-chunk-size)",
                    mc.chunk_size,
                    64,
                    (1 << 20) - (1 << 10),
                )?;
            }
        }
    }
    let min_l2 = Size(crate::l2::MIN_MAX_BYTES);
    if c.l2.path.is_some() && c.l2.max_bytes < min_l2 {
        return Err(invalid(
            "l2.max_bytes (--l2-max-bytes)",
            c.l2.max_bytes,
            format!("must be at least {min_l2}"),
        ));
    }
    Ok(())
}
