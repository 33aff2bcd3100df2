//! A model of what a memcached-compatible server holds for each key a connection owns, and so of
//! what each command must answer. `blast` and `setops` check every reply against it.
//!
//! The model is exact because each key is written by one connection only, and a server handles
//! one connection's requests in order: applying a request to the model when it is composed gives
//! the reply the server must send, even with many requests of a batch in flight. Two facts a
//! client cannot know in advance are learnt from replies instead:
//! - CAS uniques: from `gets` and from stores over binary and meta. A CAS learnt is only used if
//!   no request changed the item after the one that returned it (tracked by a version number).
//! - The length of an incr/decr result: memcached rewrites a shorter number in place, padded with
//!   spaces to the old length, unless the item is busy ([`Part::Number`]); a read shows which.
//!
//! A key the model knows nothing about (left over from another run) is [`Slot::Unknown`]: the
//! workload deletes it first, accepting `DELETED` or `NOT_FOUND`, and from then on knows it.
//!
//! Semantics modelled (memcached 1.6): `add` stores only a missing key, `replace`, `append` and
//! `prepend` only an existing one (keeping its flags); `cas` answers `NOT_FOUND` for a missing key
//! and `EXISTS` for a CAS that is not the item's; `incr` wraps at 2^64, `decr` stops at 0, both
//! keep the flags and refuse a value that is not a decimal number; `touch`/`gat` change only the
//! expiry.

use std::collections::{HashMap, VecDeque};

use super::value::{check_parts, Part};
use super::wire::{Args, MultiHit, Op, Reply};

/// A CAS unique no item has: the tools send it to get `EXISTS` when they know no real one.
/// (CAS uniques count up from 1; a server would need 2^64 - 2 writes to reach it.)
pub const BAD_CAS: u64 = u64::MAX - 1;

/// The most parts a value may be made of before `append`/`prepend` stop adding to it.
pub const MAX_PARTS: usize = 16;

/// What the model knows of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Unknown,
    Absent,
    Present(Item),
}

/// A stored item as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub flags: u32,
    /// The value, in order.
    pub parts: Vec<Part>,
    /// The item's CAS unique, when a reply told it and nothing changed the item since.
    pub cas: Option<u64>,
    /// Bumped by every request that changes the item, so a late reply does not teach the model
    /// something already out of date.
    version: u64,
}

impl Item {
    /// Total length, when it is known exactly.
    pub fn exact_len(&self) -> Option<usize> {
        self.parts.iter().map(Part::exact_len).sum()
    }

    /// The longest the value may be.
    pub fn max_len(&self) -> usize {
        self.parts.iter().map(Part::max_len).sum()
    }
}

/// What `incr`/`decr` would make of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numeric {
    Number(u64),
    NotANumber,
    /// A corner where servers may differ (a leading `-`, digits then spaces then more, a number
    /// past 2^64): the tools do not send incr/decr there.
    Unsure,
}

/// The reply a request must get, decided when it was composed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A hit with this value.
    Value(Want),
    Miss,
    /// A multi-get: per key, the value it must return or `None` for a miss.
    Multi(Vec<Option<Want>>),
    /// Stored; a CAS in the reply is learnt for `key` if it is still at `version`.
    Stored {
        key: u64,
        version: u64,
    },
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    /// The delete that makes an unknown key known: `DELETED` or `NOT_FOUND`.
    Cleared,
    Number(u64),
    NonNumeric,
    /// `incr`/`decr` of a number of 2^63 or more: this number, or the non-numeric error. memcached
    /// 1.6 checks such a value for a `-` with `strchr`, which reads on past the end of the value
    /// into whatever memory follows, and so sometimes refuses a good number. The model forgets the
    /// key either way (it does not know which happened).
    NumberOrRefusal(u64),
}

/// A value a read must return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub key: u64,
    pub version: u64,
    pub flags: u32,
    pub parts: Vec<Part>,
}

/// The model of one connection's keys.
#[derive(Debug, Default)]
pub struct Model {
    slots: HashMap<u64, Slot>,
    versions: u64,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    pub fn slot(&self, key: u64) -> &Slot {
        self.slots.get(&key).unwrap_or(&Slot::Unknown)
    }

    pub fn item(&self, key: u64) -> Option<&Item> {
        match self.slots.get(&key) {
            Some(Slot::Present(i)) => Some(i),
            _ => None,
        }
    }

    pub fn is_known(&self, key: u64) -> bool {
        !matches!(self.slot(key), Slot::Unknown)
    }

    /// What `incr`/`decr` would make of the key's value (`None`: the key is not present).
    pub fn numeric(&self, key: u64) -> Option<Numeric> {
        self.item(key).map(|i| numeric(&i.parts))
    }

    fn bump(&mut self) -> u64 {
        self.versions += 1;
        self.versions
    }

    fn store(&mut self, key: u64, flags: u32, parts: Vec<Part>) -> Expect {
        let version = self.bump();
        self.slots.insert(
            key,
            Slot::Present(Item {
                flags,
                parts,
                cas: None,
                version,
            }),
        );
        Expect::Stored { key, version }
    }

    fn want(key: u64, item: &Item) -> Want {
        Want {
            key,
            version: item.version,
            flags: item.flags,
            parts: item.parts.clone(),
        }
    }

    /// Applies `op` on `key` (about to be sent with `args` and `value`) and returns the reply it
    /// must get. The caller keeps to what the model can predict: a known key (but for `Delete`),
    /// a value for stores, no incr/decr on an [`Numeric::Unsure`] value, no append/prepend to a
    /// value of uncertain length; outside that the model forgets the key and expects nothing.
    pub fn apply(&mut self, key: u64, op: Op, args: &Args, value: Option<Part>) -> Option<Expect> {
        let slot = self.slots.get(&key).cloned().unwrap_or(Slot::Unknown);
        let item = match slot {
            Slot::Unknown if op == Op::Delete => {
                self.slots.insert(key, Slot::Absent);
                return Some(Expect::Cleared);
            }
            Slot::Unknown => return None,
            Slot::Absent => None,
            Slot::Present(i) => Some(i),
        };
        let expect = match (op, item) {
            (Op::Get | Op::Gets, Some(i)) => Expect::Value(Model::want(key, &i)),
            (Op::Gat, Some(i)) => {
                let want = Model::want(key, &i);
                self.touched(key);
                Expect::Value(want)
            }
            (Op::Get | Op::Gets | Op::Gat, None) => Expect::Miss,
            (Op::Touch, Some(_)) => {
                self.touched(key);
                Expect::Touched
            }
            (Op::Touch, None) => Expect::NotFound,
            (Op::Set, _) | (Op::Add, None) | (Op::Replace, Some(_)) => {
                let Some(v) = value else { return self.forget(key) };
                self.store(key, args.flags, vec![v])
            }
            (Op::Add, Some(_)) | (Op::Replace | Op::Append | Op::Prepend, None) => Expect::NotStored,
            (Op::Append | Op::Prepend, Some(i)) => {
                let Some(v) = value else { return self.forget(key) };
                if i.exact_len().is_none() {
                    return self.forget(key);
                }
                let mut parts = i.parts;
                if op == Op::Append {
                    parts.push(v);
                } else {
                    parts.insert(0, v);
                }
                self.store(key, i.flags, parts)
            }
            (Op::Cas, None) => Expect::NotFound,
            (Op::Cas, Some(i)) => {
                if i.cas != Some(args.cas) {
                    Expect::Exists
                } else {
                    let Some(v) = value else { return self.forget(key) };
                    self.store(key, args.flags, vec![v])
                }
            }
            (Op::Incr | Op::Decr, None) => Expect::NotFound,
            (Op::Incr | Op::Decr, Some(i)) => match numeric(&i.parts) {
                Numeric::NotANumber => Expect::NonNumeric,
                Numeric::Unsure => return self.forget(key),
                Numeric::Number(n) => {
                    let new = if op == Op::Incr {
                        n.wrapping_add(args.delta)
                    } else {
                        n.saturating_sub(args.delta)
                    };
                    let digits = Part::number(new).max_len();
                    let old_max = i.max_len();
                    // In place (padded to the old length) if it fits, else a new item of the
                    // digits alone; memcached also makes a new item when the old one is busy.
                    let part = Part::Number {
                        n: new,
                        min_len: digits,
                        max_len: if digits <= old_max { old_max } else { digits },
                    };
                    if n > i64::MAX as u64 {
                        self.forget(key);
                        return Some(Expect::NumberOrRefusal(new));
                    }
                    self.store(key, i.flags, vec![part]);
                    Expect::Number(new)
                }
            },
            (Op::Delete, Some(_)) => {
                self.bump();
                self.slots.insert(key, Slot::Absent);
                Expect::Deleted
            }
            (Op::Delete, None) => Expect::NotFound,
            (Op::MultiGet, _) => return self.forget(key),
        };
        Some(expect)
    }

    /// The reply a multi-get of `keys` must get; `None` if one of them is unknown.
    pub fn apply_multi(&self, keys: &[u64]) -> Option<Expect> {
        let mut wants = Vec::with_capacity(keys.len());
        for &k in keys {
            wants.push(match self.slot(k) {
                Slot::Unknown => return None,
                Slot::Absent => None,
                Slot::Present(i) => Some(Model::want(k, i)),
            });
        }
        Some(Expect::Multi(wants))
    }

    /// `touch` and `gat` change the expiry only, but whether the CAS unique stays is not
    /// something every server agrees on: forget it.
    fn touched(&mut self, key: u64) {
        let v = self.bump();
        if let Some(Slot::Present(i)) = self.slots.get_mut(&key) {
            i.cas = None;
            i.version = v;
        }
    }

    fn forget(&mut self, key: u64) -> Option<Expect> {
        self.slots.remove(&key);
        None
    }

    /// Checks a reply against the oldest expectation still waiting for one (requests are answered
    /// in order), which it removes.
    pub fn check_next(
        &mut self,
        expects: &mut VecDeque<Expect>,
        reply: &Reply<'_>,
        hits: &[MultiHit],
        buf: &[u8],
    ) -> Result<(), String> {
        let expect = expects
            .pop_front()
            .ok_or_else(|| "a reply the model has no request for".to_string())?;
        self.check(&expect, reply, hits, buf)
    }

    /// Checks `reply` against `expect`, and learns what it tells (CAS uniques, padded lengths).
    /// `hits` and `buf` carry a multi-get's hits.
    pub fn check(&mut self, expect: &Expect, reply: &Reply<'_>, hits: &[MultiHit], buf: &[u8]) -> Result<(), String> {
        let ok = match (expect, reply) {
            (Expect::Value(want), Reply::Hit { flags, cas, data }) => {
                self.check_value(want, *flags, *cas, data)?;
                true
            }
            (Expect::Miss, Reply::Miss) => true,
            (Expect::Multi(wants), Reply::Multi) => {
                let mut next_hit = hits.iter().peekable();
                for (pos, want) in wants.iter().enumerate() {
                    let hit = next_hit.next_if(|h| h.pos == pos);
                    match (want, hit) {
                        (Some(w), Some(h)) => {
                            let data = buf.get(h.data.clone()).unwrap_or_default();
                            self.check_value(w, h.flags, h.cas, data)
                                .map_err(|m| format!("key {} of the multi-get: {m}", pos + 1))?;
                        }
                        (None, None) => {}
                        (Some(_), None) => {
                            return Err(format!("key {} of the multi-get: a miss, expected a hit", pos + 1))
                        }
                        (None, Some(h)) => {
                            return Err(format!(
                                "key {} of the multi-get: a value of {} bytes for a key that is not stored",
                                pos + 1,
                                h.data.len()
                            ))
                        }
                    }
                }
                true
            }
            (Expect::Stored { key, version }, Reply::Stored { cas }) => {
                if let (Some(cas), Some(Slot::Present(i))) = (cas, self.slots.get_mut(key)) {
                    if i.version == *version {
                        i.cas = Some(*cas);
                    }
                }
                true
            }
            (Expect::NotStored, Reply::NotStored)
            | (Expect::Exists, Reply::Exists)
            | (Expect::NotFound, Reply::NotFound)
            | (Expect::Deleted, Reply::Deleted)
            | (Expect::Touched, Reply::Touched)
            | (Expect::Cleared, Reply::Deleted | Reply::NotFound)
            | (Expect::NonNumeric, Reply::NonNumeric) => true,
            (Expect::Number(n) | Expect::NumberOrRefusal(n), Reply::Number(m)) => n == m,
            (Expect::NumberOrRefusal(_), Reply::NonNumeric) => true,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{}, expected {}", describe(reply), describe_expect(expect)))
        }
    }

    fn check_value(&mut self, want: &Want, flags: Option<u32>, cas: Option<u64>, data: &[u8]) -> Result<(), String> {
        if let Some(f) = flags {
            if f != want.flags {
                return Err(format!("flags {f}, expected {}", want.flags));
            }
        }
        let len = check_parts(&want.parts, data).map_err(|m| format!("wrong value: {m}"))?;
        if let Some(Slot::Present(i)) = self.slots.get_mut(&want.key) {
            if i.version == want.version {
                if let [Part::Number { min_len, max_len, .. }] = &mut i.parts[..] {
                    (*min_len, *max_len) = (len, len);
                }
                if cas.is_some() {
                    i.cas = cas;
                }
            }
        }
        Ok(())
    }
}

/// What `incr`/`decr` make of a value, following memcached: the value must be a decimal number
/// that fits 64 bits, optionally followed by spaces (the padding of an in-place incr); an empty
/// value is not a number.
pub fn numeric(parts: &[Part]) -> Numeric {
    if let [Part::Number { n, .. }] = parts {
        return Numeric::Number(*n);
    }
    let total: usize = parts.iter().map(Part::max_len).sum();
    if total == 0 {
        return Numeric::NotANumber;
    }
    // The first 22 bytes decide: 20 digits and the byte after them.
    let mut head = Vec::with_capacity(64);
    for p in parts {
        p.write(&mut head);
        if head.len() >= 22 {
            break;
        }
    }
    let digits = head.iter().take_while(|b| b.is_ascii_digit()).count();
    match head.get(digits) {
        _ if digits == 0 && head[0] != b'-' && head[0] != b' ' => Numeric::NotANumber,
        _ if digits == 0 || digits > 20 => Numeric::Unsure,
        Some(b' ') => Numeric::Unsure,
        Some(_) => Numeric::NotANumber,
        None => match std::str::from_utf8(&head[..digits]).ok().and_then(|s| s.parse().ok()) {
            Some(n) => Numeric::Number(n),
            None => Numeric::Unsure,
        },
    }
}

/// A reply in words, for error messages.
pub fn describe(reply: &Reply<'_>) -> String {
    match reply {
        Reply::Hit { data, .. } => format!("a value of {} bytes", data.len()),
        Reply::Miss => "a miss".into(),
        Reply::Multi => "a multi-get reply".into(),
        Reply::Stored { .. } => "STORED".into(),
        Reply::NotStored => "NOT_STORED".into(),
        Reply::Exists => "EXISTS".into(),
        Reply::NotFound => "NOT_FOUND".into(),
        Reply::Deleted => "DELETED".into(),
        Reply::Touched => "TOUCHED".into(),
        Reply::Number(n) => format!("the number {n}"),
        Reply::NonNumeric => "the non-numeric value error".into(),
    }
}

fn describe_expect(e: &Expect) -> String {
    match e {
        Expect::Value(w) => format!("a value of {} bytes", w.parts.iter().map(Part::max_len).sum::<usize>()),
        Expect::Miss => "a miss".into(),
        Expect::Multi(w) => format!("{} hits", w.iter().flatten().count()),
        Expect::Stored { .. } => "STORED".into(),
        Expect::NotStored => "NOT_STORED".into(),
        Expect::Exists => "EXISTS".into(),
        Expect::NotFound => "NOT_FOUND".into(),
        Expect::Deleted => "DELETED".into(),
        Expect::Touched => "TOUCHED".into(),
        Expect::Cleared => "DELETED or NOT_FOUND".into(),
        Expect::Number(n) => format!("the number {n}"),
        Expect::NonNumeric => "the non-numeric value error".into(),
        Expect::NumberOrRefusal(n) => format!("the number {n} (or the non-numeric error)"),
    }
}

#[cfg(test)]
mod tests;
