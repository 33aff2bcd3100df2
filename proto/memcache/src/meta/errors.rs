//! Error lines, as memcached 1.6.18 writes them (without `\r\n`).

pub const ERROR: &str = "ERROR";
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
pub const FLAGS_TOO_LONG_MG: &str = "CLIENT_ERROR options flags are too long";
pub const FLAGS_TOO_LONG: &str = "CLIENT_ERROR options flags too long";
pub const DUPLICATE_FLAG: &str = "CLIENT_ERROR duplicate flag";
pub const INVALID_FLAG: &str = "CLIENT_ERROR invalid flag";
pub const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta value";
pub const BAD_INITIAL: &str = "CLIENT_ERROR invalid numeric initial value";
pub const MODE_LENGTH: &str = "CLIENT_ERROR incorrect length for M token";
pub const KEY_DECODE: &str = "CLIENT_ERROR error decoding key";
pub const INVALID_OR_DUPLICATE: &str = "CLIENT_ERROR invalid or duplicate flag";
pub const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";
pub const INVALID_MS_MODE: &str = "CLIENT_ERROR invalid mode for ms M token";
pub const INVALID_MA_MODE: &str = "CLIENT_ERROR invalid mode for ma M token";
pub const BAD_DATA_CHUNK: &str = "CLIENT_ERROR bad data chunk";
pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";
pub const OUT_OF_MEMORY_STORING: &str = "SERVER_ERROR out of memory storing object";
pub const NON_NUMERIC: &str = "CLIENT_ERROR cannot increment or decrement non-numeric value";
pub const OUT_OF_MEMORY: &str = "SERVER_ERROR out of memory";
