//! The meta commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`) as memcached 1.6.18 speaks them.
//!
//! Server side: [`parse_request`] turns a command line into a [`Request`] without allocating
//! (flags land in a fixed struct; a base64 key is decoded into a caller's [`KeyBuf`]);
//! [`reply`] writes the replies, return flags in the order the client asked for them.
//! Client side: [`client`] composes requests and parses replies incrementally.
//!
//! The node is diffed byte for byte against memcached 1.6.18, so its observable grammar is kept,
//! quirks included (each was checked against the real server):
//! - tokens are separated by runs of spaces only; a flag is a token's first byte, the rest of the
//!   token is its argument (`k1` is `k`), and a flag may appear once;
//! - numbers are read like C's `strtol`/`strtoull`: leading whitespace and a sign are accepted,
//!   anything after the digits must start with whitespace, and N/R/T and the `ms` data length are
//!   truncated to 32 bits (`T4294967296` is `T0`), F to 32 unsigned bits;
//! - errors are checked in memcached's order (key length, token count, flags left to right, then
//!   per command), and `md`/`ma` report every flag error as "invalid or duplicate flag";
//! - an opaque longer than 31 bytes is reported by `mg` and `ma` only after the command ran
//!   ([`Request::late_error`]), by `md` and `ms` before.

mod b64;
pub mod client;
mod codes;
pub mod errors;
mod numbers;
mod parse;
pub mod reply;
mod request;
mod slab;

pub use b64::{decode as decode_base64, encode as encode_base64, encoded_len as base64_len};
pub use codes::{ArithMode, Code, Command, SetMode};
pub use parse::{data_block, parse_request, DataBlock, ErrorKind, RequestError, Tokens};
pub use request::{Flags, Request, ReturnValues};
pub use slab::memcached_item_size;

use crate::MAX_KEY_LEN;

/// Longest opaque (`O`) argument memcached accepts: its token, `O` included, may be 32 bytes.
pub const MAX_OPAQUE_LEN: usize = 31;

/// Most flags a `mg`, `md` or `ma` line may carry (`ms` one fewer, its data length takes a
/// token): memcached refuses a line of 20 or more tokens.
pub const MAX_FLAGS: usize = 17;

/// Where [`parse_request`] decodes a base64 (`b`) key. 250 base64 characters decode to at most
/// 186 bytes, so this is always large enough.
pub type KeyBuf = [u8; MAX_KEY_LEN];

/// The data block trailer and line terminator.
pub const CRLF: &[u8] = b"\r\n";

/// Appends `v` in decimal.
pub(crate) fn push_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

#[cfg(test)]
mod tests;
