//! Sizes in bytes, written as memcached's flags write them: `1048576`, `512k`, `64m`, `1g`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A number of bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    /// Parses `1048576`, `512k`, `1m`, `2g` (suffixes are powers of 1024, either case).
    pub fn parse(s: &str) -> Result<Size, String> {
        let t = s.trim();
        let (num, shift) = match t.chars().last() {
            Some('k' | 'K') => (&t[..t.len() - 1], 10),
            Some('m' | 'M') => (&t[..t.len() - 1], 20),
            Some('g' | 'G') => (&t[..t.len() - 1], 30),
            _ => (t, 0),
        };
        num.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1 << shift))
            .map(Size)
            .ok_or_else(|| format!("not a size: {s:?} (a number of bytes, or with a k, m or g suffix)"))
    }
}

/// The shortest exact form: `64m` rather than `67108864`.
impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(30, "g"), (20, "m"), (10, "k")] {
            if self.0 != 0 && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a number of bytes, or a string such as \"64m\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("not a size: {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                Size::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_as_flags_write_them() {
        assert_eq!(Size::parse("1m"), Ok(Size(1 << 20)));
        assert_eq!(Size::parse("512k"), Ok(Size(512 << 10)));
        assert_eq!(Size::parse("2G"), Ok(Size(2 << 30)));
        assert_eq!(Size::parse("2048"), Ok(Size(2048)));
        assert!(Size::parse("x").is_err());
        assert!(Size::parse("-1").is_err());
        assert!(Size::parse("99999999999g").is_err());
        assert_eq!(Size(64 << 20).to_string(), "64m");
        assert_eq!(Size(1536).to_string(), "1536");
        assert_eq!(Size(0).to_string(), "0");
    }
}
