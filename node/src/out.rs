//! A connection's pending replies: bytes written into a buffer, and large values spliced in as
//! the buffers they were read into, sent with vectored writes.
//!
//! A chunked value read from memcached arrives as several reply frames in the links' read
//! buffers. Copying it into the reply buffer would cost a copy of the whole value per read (and
//! would hold it twice in memory); instead each chunk's bytes are kept as a shared [`Bytes`] at
//! its place in the reply, and the socket gets them straight from there.

use std::io::{self, IoSlice};
use std::ops::{Deref, DerefMut};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::model::Value;

/// Pieces of a value shorter than this are copied: a copy is cheaper than an iovec entry and a
/// reference count.
pub const SHARE_MIN: usize = 4096;

/// Most slices handed to one `writev`.
const MAX_SLICES: usize = 64;

/// Replies waiting to be written. It derefs to its buffer, so front ends append bytes as to any
/// `Vec<u8>`; lengths and positions taken from it (`len()`, `truncate`) are the buffer's.
#[derive(Default)]
pub struct Out {
    buf: Vec<u8>,
    /// Shared pieces, each sent right after `buf[..offset]`, in order.
    shared: Vec<(usize, Bytes)>,
    /// Bytes of the shared pieces.
    shared_len: usize,
}

impl Deref for Out {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl DerefMut for Out {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl Out {
    /// Replies in `buf`, which keeps its capacity.
    pub fn with_buf(buf: Vec<u8>) -> Out {
        Out { buf, ..Out::default() }
    }

    /// Gives the buffer back (empty), for reuse.
    pub fn take_buf(&mut self) -> Vec<u8> {
        self.clear();
        std::mem::take(&mut self.buf)
    }

    /// Appends `value`: its large shared pieces by reference, the rest copied.
    pub fn put_value(&mut self, value: &Value<'_>) {
        match value.shared_pieces() {
            Some(pieces) => {
                for p in pieces {
                    self.put_shared(p);
                }
            }
            None => value.copy_to(&mut self.buf),
        }
    }

    /// Appends `piece` by reference if it is large, else copies it.
    pub fn put_shared(&mut self, piece: &Bytes) {
        if piece.len() < SHARE_MIN {
            self.buf.extend_from_slice(piece);
        } else {
            self.shared_len += piece.len();
            self.shared.push((self.buf.len(), piece.clone()));
        }
    }

    /// Moves `other`'s replies to the end of these, its buffer copied, its shared pieces by
    /// reference; `other` is left empty.
    pub fn append(&mut self, other: &mut Out) {
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        self.shared.extend(other.shared.drain(..).map(|(at, p)| (base + at, p)));
        self.shared_len += other.shared_len;
        other.clear();
    }

    /// Every byte to write: the buffer's and the shared pieces'.
    pub fn total_len(&self) -> usize {
        self.buf.len() + self.shared_len
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.shared.is_empty()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.shared.clear();
        self.shared_len = 0;
    }

    /// Drops what was appended after the buffer held `len` bytes (a reply given up on). A shared
    /// piece at exactly `len` was appended before: every reply starts with bytes of its own.
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
        while self.shared.last().is_some_and(|&(at, _)| at > len) {
            let (_, p) = self.shared.pop().expect("checked");
            self.shared_len -= p.len();
        }
    }

    /// Every byte, in one buffer (the shared pieces copied in).
    pub fn take_buf_flat(&mut self) -> Vec<u8> {
        self.flatten();
        std::mem::take(&mut self.buf)
    }

    /// Copies the shared pieces into the buffer, for code that reads the replies back.
    pub fn flatten(&mut self) {
        if self.shared.is_empty() {
            return;
        }
        let mut flat = Vec::with_capacity(self.total_len());
        let mut from = 0;
        for (at, p) in self.shared.drain(..) {
            flat.extend_from_slice(&self.buf[from..at]);
            flat.extend_from_slice(&p);
            from = at;
        }
        flat.extend_from_slice(&self.buf[from..]);
        self.buf = flat;
        self.shared_len = 0;
    }

    /// Writes everything, then clears.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        if self.shared.is_empty() {
            w.write_all(&self.buf).await?;
            self.clear();
            return Ok(());
        }
        // The pieces in order: buffer stretches between the shared pieces.
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * self.shared.len() + 1);
        let mut from = 0;
        for (at, p) in &self.shared {
            if *at > from {
                parts.push(&self.buf[from..*at]);
            }
            parts.push(p);
            from = *at;
        }
        if from < self.buf.len() {
            parts.push(&self.buf[from..]);
        }
        let (mut i, mut skip) = (0, 0);
        while i < parts.len() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut n = 0;
            for (k, part) in parts[i..].iter().take(MAX_SLICES).enumerate() {
                slices[k] = IoSlice::new(if k == 0 { &part[skip..] } else { part });
                n += 1;
            }
            let mut wrote = w.write_vectored(&slices[..n]).await?;
            if wrote == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            // Step over what went out.
            while wrote > 0 {
                let left = parts[i].len() - skip;
                if wrote >= left {
                    wrote -= left;
                    i += 1;
                    skip = 0;
                } else {
                    skip += wrote;
                    wrote = 0;
                }
            }
        }
        drop(parts);
        self.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(b: u8) -> Bytes {
        Bytes::from(vec![b; SHARE_MIN + 3])
    }

    fn flat(out: &mut Out) -> Vec<u8> {
        out.flatten();
        out.buf.clone()
    }

    #[test]
    fn shared_pieces_keep_their_place() {
        let mut out = Out::default();
        out.extend_from_slice(b"head ");
        out.put_shared(&big(1));
        out.put_shared(&Bytes::from_static(b"tiny"));
        out.extend_from_slice(b" mid ");
        out.put_shared(&big(2));
        let mut expected = b"head ".to_vec();
        expected.extend(vec![1; SHARE_MIN + 3]);
        expected.extend_from_slice(b"tiny mid ");
        expected.extend(vec![2; SHARE_MIN + 3]);
        assert_eq!(out.total_len(), expected.len());
        assert_eq!(flat(&mut out), expected);
    }

    #[test]
    fn truncate_drops_what_came_after() {
        let mut out = Out::default();
        out.extend_from_slice(b"a");
        out.put_shared(&big(1));
        // A reply ending in a shared piece, then one given up on.
        let start = out.len();
        out.extend_from_slice(b"VALUE");
        out.put_shared(&big(2));
        out.truncate(start);
        let mut expected = b"a".to_vec();
        expected.extend(vec![1; SHARE_MIN + 3]);
        assert_eq!(out.total_len(), expected.len());
        assert_eq!(flat(&mut out), expected);
    }

    #[tokio::test]
    async fn vectored_writes_survive_short_writes() {
        // A pipe with a small buffer: writes are short and interleave with the reader.
        let (mut a, mut b) = tokio::io::duplex(1000);
        let mut out = Out::default();
        let mut expected = Vec::new();
        for i in 0..100u8 {
            out.extend_from_slice(&[i; 7]);
            expected.extend_from_slice(&[i; 7]);
            let p = Bytes::from(vec![i; SHARE_MIN + usize::from(i)]);
            out.put_shared(&p);
            expected.extend_from_slice(&p);
        }
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got).await.unwrap();
            got
        });
        out.write_to(&mut a).await.unwrap();
        assert!(out.is_empty());
        drop(a);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
