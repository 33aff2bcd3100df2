//! A request as the server holds it once parsed: its command, key and [`Flags`]; and the
//! [`ReturnValues`] its reply reports for the return flags the request asked for.

use super::{ArithMode, Command, RequestError, SetMode, MAX_FLAGS};

/// The flags of a meta request. Flags that only ask for a value back (`c f h k l s t`, and
/// `O`) are known through [`Flags::order`], which also keeps the order memcached answers in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags<'a> {
    /// `b`: the key was sent in base64.
    pub base64: bool,
    /// `q`: leave out the reply when it is the common case (a miss for `mg`, `HD` otherwise).
    pub quiet: bool,
    /// `u`: do not bump the item in the LRU, nor mark it fetched.
    pub no_bump: bool,
    /// `v`: send the value.
    pub value: bool,
    /// `I`: invalidate (`md`: mark stale; `ms` with `C`: an older CAS may still write, as stale).
    pub invalidate: bool,
    /// `O`: opaque echoed back (argument as sent, possibly empty).
    pub opaque: Option<&'a [u8]>,
    /// `N`: vivify on miss with this exptime.
    pub vivify: Option<i32>,
    /// `R`: win the recache when the remaining TTL is below this.
    pub recache: Option<i32>,
    /// `T`: exptime (`ms`), new exptime (`mg`, `ma`, `md I`).
    pub ttl: Option<i32>,
    /// `C`: compare CAS.
    pub cas: Option<u64>,
    /// `F`: client flags (`ms`).
    pub client_flags: Option<u32>,
    /// `M`: the mode byte, as sent. Checked by [`parse_request`](super::parse_request) for `ms` and `ma` only, as
    /// memcached does; see [`Flags::set_mode`] and [`Flags::arith_mode`].
    pub mode: Option<u8>,
    /// `D`: delta (`ma`).
    pub delta: Option<u64>,
    /// `J`: initial value on vivify (`ma`).
    pub initial: Option<u64>,
    order: [u8; MAX_FLAGS],
    len: u8,
}

impl<'a> Flags<'a> {
    /// The flag bytes in the order they were sent (each at most once).
    pub fn order(&self) -> &[u8] {
        &self.order[..self.len as usize]
    }

    /// Whether flag `c` was sent.
    pub fn has(&self, c: u8) -> bool {
        self.order().contains(&c)
    }

    /// Whether both flags were sent and `a` came first.
    pub fn before(&self, a: u8, b: u8) -> bool {
        let pos = |c| self.order().iter().position(|&x| x == c);
        matches!((pos(a), pos(b)), (Some(x), Some(y)) if x < y)
    }

    /// The `ms` mode (`Set` when no `M` was sent). None for a mode byte `ms` does not know.
    pub fn set_mode(&self) -> Option<SetMode> {
        self.mode.map_or(Some(SetMode::Set), SetMode::from_byte)
    }

    /// The `ma` mode (`Incr` when no `M` was sent). None for a mode byte `ma` does not know.
    pub fn arith_mode(&self) -> Option<ArithMode> {
        self.mode.map_or(Some(ArithMode::Incr), ArithMode::from_byte)
    }

    pub(super) fn push(&mut self, c: u8) {
        // The token count limit keeps this in bounds; stay panic-free regardless.
        if let Some(slot) = self.order.get_mut(self.len as usize) {
            *slot = c;
            self.len += 1;
        }
    }
}

/// A parsed meta request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub command: Command,
    /// The key to look up: decoded when `flags.base64`. Empty for `mn`.
    pub key: &'a [u8],
    /// `ms`: the length of the data block that follows the line (without its `\r\n`).
    pub datalen: usize,
    pub flags: Flags<'a>,
    /// An error memcached reports only after running the command (its side effects happen):
    /// `mg` and `ma` check the opaque's length while writing the reply.
    pub late_error: Option<RequestError>,
}

/// What a reply's return flags report. A field left `None` is not written even when its flag
/// was asked for: that is how memcached answers a miss (only `O` and `k`) or a `md` (same).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReturnValues<'k> {
    /// `k`: the key (binary; written in base64 followed by a `b` flag when `key_base64`).
    pub key: Option<&'k [u8]>,
    pub key_base64: bool,
    /// `c`
    pub cas: Option<u64>,
    /// `f`
    pub client_flags: Option<u32>,
    /// `h`: fetched before this request.
    pub hit_before: Option<bool>,
    /// `l`: seconds since the last access before this request.
    pub last_access: Option<u64>,
    /// `s`: value length.
    pub size: Option<usize>,
    /// `t`: remaining TTL before this request's `T` (-1 never).
    pub ttl: Option<i64>,
    /// `t` when it comes after `T` on the line: memcached applies flags left to right, so
    /// `mg k t T30` reports the old TTL and `mg k T30 t` the new one. Falls back to `ttl`.
    pub ttl_after_touch: Option<i64>,
}
