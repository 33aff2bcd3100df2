//! The operations a node connection sends, and the replies it returns.
//!
//! An [`Op`] borrows its key and value from the caller: it is encoded straight into the
//! connection's write buffer when the call is made, so sending it copies the bytes once and
//! allocates nothing of its own.

use bytes::Bytes;
use riven_memcache::binary::{self, ArithExtras, ComposeError, Opcode, Request, Status, StoreExtras};

/// One memcached operation, sent with its loud binary opcode (every request gets a reply, so
/// replies match requests one for one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// GET. Also serves as `gets`: the reply's [`Resp::cas`] is the item's CAS.
    Get {
        /// The key.
        key: &'a [u8],
    },
    /// GAT: get the item and set its expiry.
    Gat {
        /// The key.
        key: &'a [u8],
        /// The new memcached exptime.
        exptime: u32,
    },
    /// TOUCH: set the item's expiry without reading it.
    Touch {
        /// The key.
        key: &'a [u8],
        /// The new memcached exptime.
        exptime: u32,
    },
    /// SET: store unconditionally (or only if the CAS matches, when it is not 0).
    Set(Store<'a>),
    /// ADD: store only if the key is absent (memcached answers `KEY_EEXISTS` otherwise, over
    /// the binary protocol).
    Add(Store<'a>),
    /// REPLACE: store only if the key is present (memcached answers `KEY_ENOENT` otherwise).
    Replace(Store<'a>),
    /// APPEND the value to an existing item's (`NOT_STORED` if there is none).
    Append(Concat<'a>),
    /// PREPEND the value to an existing item's (`NOT_STORED` if there is none).
    Prepend(Concat<'a>),
    /// DELETE, only if the CAS matches when it is not 0.
    Delete {
        /// The key.
        key: &'a [u8],
        /// The CAS the item must have, or 0 for any.
        cas: u64,
    },
    /// INCREMENT a decimal counter.
    Incr(Arith<'a>),
    /// DECREMENT a decimal counter (memcached stops at 0).
    Decr(Arith<'a>),
}

/// The arguments of SET, ADD and REPLACE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Store<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
    /// Opaque client flags stored with the value.
    pub flags: u32,
    /// memcached exptime: 0 never, up to 30 days relative seconds, beyond that a unix time.
    pub exptime: u32,
    /// The CAS the item must have, or 0 for no check.
    pub cas: u64,
}

impl<'a> Store<'a> {
    /// A store of `value` under `key` with no flags, no expiry and no CAS check.
    pub fn new(key: &'a [u8], value: &'a [u8]) -> Store<'a> {
        Store {
            key,
            value,
            flags: 0,
            exptime: 0,
            cas: 0,
        }
    }

    /// With these client flags.
    pub fn flags(self, flags: u32) -> Store<'a> {
        Store { flags, ..self }
    }

    /// With this memcached exptime.
    pub fn exptime(self, exptime: u32) -> Store<'a> {
        Store { exptime, ..self }
    }

    /// Only if the item's CAS is `cas` (`KEY_EEXISTS` otherwise, `KEY_ENOENT` if absent).
    pub fn cas(self, cas: u64) -> Store<'a> {
        Store { cas, ..self }
    }
}

/// The arguments of APPEND and PREPEND.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concat<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The bytes to add.
    pub value: &'a [u8],
    /// The CAS the item must have, or 0 for no check.
    pub cas: u64,
}

impl<'a> Concat<'a> {
    /// Adds `value` to the item under `key`, with no CAS check.
    pub fn new(key: &'a [u8], value: &'a [u8]) -> Concat<'a> {
        Concat { key, value, cas: 0 }
    }
}

/// The arguments of INCREMENT and DECREMENT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arith<'a> {
    /// The key.
    pub key: &'a [u8],
    /// How much to add or subtract.
    pub delta: u64,
    /// The value to create a missing counter with.
    pub initial: u64,
    /// The exptime of a created counter; [`ArithExtras::NO_CREATE`] answers a miss with
    /// `KEY_ENOENT` instead of creating.
    pub exptime: u32,
}

impl<'a> Arith<'a> {
    /// Changes the counter under `key` by `delta`; a missing counter is not created, as with
    /// the text protocol's `incr`/`decr`.
    pub fn new(key: &'a [u8], delta: u64) -> Arith<'a> {
        Arith {
            key,
            delta,
            initial: 0,
            exptime: ArithExtras::NO_CREATE,
        }
    }

    /// Creates a missing counter with `initial` and this exptime.
    pub fn or_create(self, initial: u64, exptime: u32) -> Arith<'a> {
        Arith {
            initial,
            exptime,
            ..self
        }
    }
}

impl Op<'_> {
    /// The binary opcode this operation is sent with.
    pub fn opcode(&self) -> Opcode {
        match self {
            Op::Get { .. } => Opcode::GET,
            Op::Gat { .. } => Opcode::GAT,
            Op::Touch { .. } => Opcode::TOUCH,
            Op::Set(_) => Opcode::SET,
            Op::Add(_) => Opcode::ADD,
            Op::Replace(_) => Opcode::REPLACE,
            Op::Append(_) => Opcode::APPEND,
            Op::Prepend(_) => Opcode::PREPEND,
            Op::Delete { .. } => Opcode::DELETE,
            Op::Incr(_) => Opcode::INCREMENT,
            Op::Decr(_) => Opcode::DECREMENT,
        }
    }

    /// Appends the request frame to `out`; nothing is appended on error.
    pub(crate) fn encode(&self, opaque: u32, out: &mut Vec<u8>) -> Result<(), ComposeError> {
        // Extras live on the stack: the longest (INCREMENT/DECREMENT) is 20 bytes.
        let mut extras = [0u8; ArithExtras::LEN];
        let mut req = Request::new(self.opcode());
        req.opaque = opaque;
        let extras_len = match *self {
            Op::Get { key } => {
                req.key = key;
                0
            }
            Op::Gat { key, exptime } | Op::Touch { key, exptime } => {
                req.key = key;
                extras[..4].copy_from_slice(&binary::u32_extras(exptime));
                4
            }
            Op::Set(s) | Op::Add(s) | Op::Replace(s) => {
                req.key = s.key;
                req.value = s.value;
                req.cas = s.cas;
                let e = StoreExtras {
                    flags: s.flags,
                    exptime: s.exptime,
                };
                extras[..StoreExtras::LEN].copy_from_slice(&e.to_bytes());
                StoreExtras::LEN
            }
            Op::Append(c) | Op::Prepend(c) => {
                req.key = c.key;
                req.value = c.value;
                req.cas = c.cas;
                0
            }
            Op::Delete { key, cas } => {
                req.key = key;
                req.cas = cas;
                0
            }
            Op::Incr(a) | Op::Decr(a) => {
                req.key = a.key;
                let e = ArithExtras {
                    delta: a.delta,
                    initial: a.initial,
                    exptime: a.exptime,
                };
                extras.copy_from_slice(&e.to_bytes());
                ArithExtras::LEN
            }
        };
        req.extras = &extras[..extras_len];
        binary::compose_request(out, &req)
    }
}

/// A node's reply to one [`Op`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resp {
    /// The reply's status: `SUCCESS`, or memcached's answer such as `KEY_ENOENT` (a miss),
    /// `KEY_EEXISTS` (CAS mismatch, or ADD of a present key) or `NOT_STORED`.
    pub status: Status,
    /// The item's CAS after the operation (0 on most errors).
    pub cas: u64,
    /// The item's client flags (replies to GET, GAT and TOUCH; 0 otherwise).
    pub flags: u32,
    /// The item's value on a hit; the counter as 8 big-endian bytes after INCREMENT or
    /// DECREMENT; memcached's error message after an error status. It shares the connection's
    /// read buffer rather than being copied out of it, so a small value kept for long keeps
    /// that buffer's block alive: copy it (`Bytes::copy_from_slice`) to keep it.
    pub value: Bytes,
}

impl Resp {
    /// Whether the status is `SUCCESS`.
    pub fn is_success(&self) -> bool {
        self.status == Status::SUCCESS
    }

    /// The counter after a successful INCREMENT or DECREMENT.
    pub fn counter(&self) -> Option<u64> {
        if self.is_success() {
            binary::parse_u64_value(&self.value)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(op: Op<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        op.encode(7, &mut out).expect("encodes");
        out
    }

    #[test]
    fn encodes_each_op_with_its_extras() {
        let bytes = frame(Op::Set(Store::new(b"k", b"v").flags(3).exptime(9).cas(5)));
        let (r, used) = binary::parse_request(&bytes).expect("parses");
        assert_eq!(used, bytes.len());
        assert_eq!(r.opcode, Opcode::SET);
        assert_eq!((r.opaque, r.cas, r.key, r.value), (7, 5, &b"k"[..], &b"v"[..]));
        let extras = StoreExtras::parse(r.extras).expect("store extras");
        assert_eq!((extras.flags, extras.exptime), (3, 9));

        let bytes = frame(Op::Incr(Arith::new(b"n", 2)));
        let (r, _) = binary::parse_request(&bytes).expect("parses");
        let e = ArithExtras::parse(r.extras).expect("arith extras");
        assert_eq!((e.delta, e.initial, e.exptime), (2, 0, ArithExtras::NO_CREATE));

        let bytes = frame(Op::Gat { key: b"g", exptime: 60 });
        let (r, _) = binary::parse_request(&bytes).expect("parses");
        assert_eq!((r.opcode, binary::parse_u32_extras(r.extras)), (Opcode::GAT, Some(60)));

        let bytes = frame(Op::Get { key: b"g" });
        let (r, _) = binary::parse_request(&bytes).expect("parses");
        assert!(r.extras.is_empty() && r.value.is_empty());
    }

    #[test]
    fn a_key_too_long_writes_nothing() {
        let key = vec![b'k'; 70_000];
        let mut out = vec![1, 2, 3];
        assert_eq!(Op::Get { key: &key }.encode(1, &mut out), Err(ComposeError::KeyTooLong));
        assert_eq!(out, [1, 2, 3]);
    }
}
