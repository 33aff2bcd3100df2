//! Base64 for binary keys (the `b` flag), decoding exactly as memcached 1.6 does.
//!
//! memcached's decoder is lenient in ways a strict decoder is not, and the node must accept and
//! reject the same keys: bytes outside the alphabet are skipped; the number of alphabet symbols
//! (`=` included) must be a non-zero multiple of four; `=` decodes as zero bits and counts as
//! padding; decoding stops after the first group of four that holds padding (so `Zm8=Zm8=` is
//! `fo`); one pad drops one byte, two drop two, more is an error; leftover bits are not checked
//! (`Zh==` is `f`, the same as `Zg==`). Keys are always sent back re-encoded from the decoded
//! bytes, so a lenient spelling comes back canonical.

/// The 6-bit value of an alphabet symbol (`=` counts as 0), or None for any other byte.
#[inline]
fn symbol(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Decodes `src` into `dst` with memcached's rules (see the module documentation). Returns the
/// decoded length, or None where memcached reports "error decoding key" (or `dst` is too small).
pub fn decode(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    let symbols = src.iter().filter(|&&c| symbol(c).is_some()).count();
    if symbols == 0 || symbols % 4 != 0 {
        return None;
    }
    let mut quad = [0u8; 4];
    let mut n = 0;
    let mut pad = 0;
    let mut len = 0;
    for &c in src {
        let Some(v) = symbol(c) else { continue };
        if c == b'=' {
            pad += 1;
        }
        quad[n] = v;
        n += 1;
        if n < 4 {
            continue;
        }
        let bytes = [
            quad[0] << 2 | quad[1] >> 4,
            quad[1] << 4 | quad[2] >> 2,
            quad[2] << 6 | quad[3],
        ];
        let keep = match pad {
            0 => 3,
            1 => 2,
            2 => 1,
            _ => return None,
        };
        dst.get_mut(len..len + keep)?.copy_from_slice(&bytes[..keep]);
        len += keep;
        if pad > 0 {
            break;
        }
        n = 0;
    }
    Some(len)
}

/// Appends the standard base64 encoding of `src` (with `=` padding) to `out`.
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    use base64::Engine as _;
    let start = out.len();
    out.resize(start + encoded_len(src.len()), 0);
    // The slice has exactly the padded length, so this cannot fail; stay panic-free regardless.
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(src, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

/// Length of the padded encoding of `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Option<Vec<u8>> {
        let mut buf = [0u8; 256];
        decode(s.as_bytes(), &mut buf).map(|n| buf[..n].to_vec())
    }

    fn enc(b: &[u8]) -> String {
        let mut out = Vec::new();
        encode(b, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn canonical_round_trips() {
        for s in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            &[0, 255, 128, 7],
        ] {
            let e = enc(s);
            assert_eq!(e.len(), encoded_len(s.len()));
            if !s.is_empty() {
                assert_eq!(dec(&e).unwrap(), s, "{e}");
            }
        }
        assert_eq!(enc(b"foo"), "Zm9v");
        assert_eq!(enc(b"fo"), "Zm8=");
        assert_eq!(enc(b"f"), "Zg==");
        assert_eq!(enc(b"   "), "ICAg");
        assert_eq!(enc(&[0xfb, 0xff]), "+/8=");
    }

    /// Cases checked against memcached 1.6.18 (`mg <key> b k` and the key it sends back).
    #[test]
    fn memcached_leniency() {
        assert_eq!(dec("Zh==").unwrap(), b"f");
        assert_eq!(dec("Zm9=").unwrap(), b"fo");
        assert_eq!(dec("Zm8=Zm8=").unwrap(), b"fo");
        assert_eq!(dec("Zg=a").unwrap(), b"f\0");
        assert_eq!(dec("Z+9v").unwrap(), [0x67, 0xef, 0x6f]);
        // Rejected by memcached.
        assert_eq!(dec("Zm9vYg"), None);
        assert_eq!(dec("Zm9"), None);
        assert_eq!(dec("Zm9v="), None);
        assert_eq!(dec("===="), None);
        assert_eq!(dec("Z-9v"), None);
        assert_eq!(dec("Z_9v"), None);
        assert_eq!(dec("!!!!"), None);
        assert_eq!(dec(""), None);
        // Bytes outside the alphabet are skipped, not rejected.
        assert_eq!(dec("Zm!9v").unwrap(), b"foo");
    }

    #[test]
    fn small_output_buffer_is_an_error() {
        let mut buf = [0u8; 2];
        assert_eq!(decode(b"Zm9v", &mut buf), None);
        assert_eq!(decode(b"Zm8=", &mut buf), Some(2));
    }
}
