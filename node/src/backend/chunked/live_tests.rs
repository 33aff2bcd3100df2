//! Chunking over a real memcached (started by the test, killed on drop): sizes across chunk
//! boundaries, the slab class chunks land in, torn reads under concurrent and dying writers, and
//! the read-modify-write commands on chunked values.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use super::envelope::{ChunkKeys, Envelope};
use super::*;
use crate::backend::memcached::Memcached;
use crate::backend::raw::RawItem;
use crate::backend::testutil::MemcachedProcess;

fn config() -> ChunkConfig {
    ChunkConfig {
        item_size_max: 128 << 20,
        ..ChunkConfig::default()
    }
}

async fn setup(mc: &MemcachedProcess) -> Chunked<Memcached> {
    Chunked::new(mc.client().await, Clock::start(), config())
}

fn req<'a>(mode: Mode, key: &'a [u8], value: &'a [u8]) -> StoreReq<'a> {
    StoreReq {
        mode,
        key,
        flags: 0,
        expiry: Expiry::NEVER,
        value,
        cas: None,
        invalidate: false,
    }
}

async fn get<B: Backend>(b: &B, key: &[u8]) -> Option<Vec<u8>> {
    b.read(key, &ReadOpts::default(), |i| {
        let mut v = Vec::new();
        i.value.copy_to(&mut v);
        v
    })
    .await
    .unwrap()
}

/// A value that says who wrote it: writer, sequence number and length up front, then bytes that
/// depend on all three and on the position, so any two values differ in every chunk.
fn gen(writer: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.push(writer);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(len as u32).to_be_bytes());
    let mut x = (u64::from(writer) << 32 | u64::from(seq)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes()[..(len - v.len()).min(8)]);
    }
    v.truncate(len);
    v
}

/// One text-protocol exchange with memcached (for `me` and `stats`), read until `end`.
fn text(addr: SocketAddr, cmd: &str, end: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(cmd.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).ends_with(end) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "memcached closed");
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(out).unwrap()
}

/// memcached's count of items in a slab class.
fn items_in_class(addr: SocketAddr, class: u32) -> u64 {
    let stats = text(addr, "stats items\r\n", "END\r\n");
    let prefix = format!("STAT items:{class}:number ");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

async fn index_of(ch: &Chunked<Memcached>, key: &[u8]) -> Envelope {
    let item = ch.raw().get(key, None).await.unwrap().unwrap();
    Envelope::decode(&item.value).unwrap()
}

#[tokio::test]
async fn round_trip_from_0_bytes_to_8_mib() {
    let mc = MemcachedProcess::start(&["-m", "256"]);
    let ch = setup(&mc).await;
    let cs = DEFAULT_CHUNK_SIZE;
    let sizes = [
        0,
        1,
        1000,
        cs - 1,
        cs,
        cs + 1,
        2 * cs,
        2 * cs + 1,
        100_000,
        (1 << 20) - 1,
        1 << 20,
        (1 << 20) + 1,
        3 * (1 << 20) + 7,
        8 << 20,
    ];
    for (i, &len) in sizes.iter().enumerate() {
        let v = gen(1, i as u32, len.max(9)).into_iter().take(len).collect::<Vec<_>>();
        let r = StoreReq {
            flags: 0xfeed,
            ..req(Mode::Set, b"k", &v)
        };
        let cas = match ch.store(&r).await.unwrap() {
            StoreOutcome::Stored { cas } => cas,
            o => panic!("{len}: {o:?}"),
        };
        let got = ch
            .read(b"k", &ReadOpts::default(), |i| {
                let mut b = Vec::new();
                i.value.copy_to(&mut b);
                (b, i.flags, i.cas, i.ttl)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!((got.1, got.2, got.3), (0xfeed, cas, -1), "len {len}");
        assert!(got.0 == v, "len {len}: value differs");
    }
    // Only the last value's chunks are left: 8 MiB in 65 chunks of slab class 33 (the last, of
    // 115,712 bytes, is in class 33 too).
    assert_eq!(items_in_class(mc.addr, 33), (8u64 << 20).div_ceil(cs as u64));
    assert_eq!(ch.delete(b"k", None).await, Ok(DeleteOutcome::Deleted));
    assert_eq!(items_in_class(mc.addr, 33), 0);
}

/// Reads whose GETs a burst sent ahead: a plain one whose reply is in is answered at once from
/// it (`read_now`); the others take the same reply through their ordinary GET. Either way each
/// answers what memcached held when its GET was sent, even with a write to its key sent after
/// it, and is counted once.
#[tokio::test]
async fn reads_answered_from_replies_sent_ahead() {
    use crate::backend::links::Group;
    let mc = MemcachedProcess::start(&["-m", "64"]);
    let ch = setup(&mc).await;
    let big = gen(2, 0, 3 * DEFAULT_CHUNK_SIZE + 5);
    for (key, value) in [(&b"small"[..], &b"old"[..]), (b"big", &big), (b"peeked", b"p")] {
        assert!(matches!(
            ch.store(&req(Mode::Set, key, value)).await.unwrap(),
            StoreOutcome::Stored { .. }
        ));
    }
    let before = ch.stats();
    let group = Group::for_burst();
    let keys: [&[u8]; 4] = [b"small", b"big", b"missing", b"peeked"];
    assert!(ch.raw().prefetch_gets(&group, &keys));
    let got = group
        .scope(async {
            // Writes sent after the reads, as in a pipelined burst: each read must answer what
            // its GET found, whether from the reply alone (the small value) or not (the index
            // of the chunked one, which must not be asked for again).
            let overwrites: Vec<_> = [&b"small"[..], b"big"]
                .into_iter()
                .map(|key| {
                    ch.raw().links().send(
                        riven_memcache::binary::Request {
                            key,
                            value: b"new",
                            extras: &riven_memcache::binary::StoreExtras { flags: 0, exptime: 0 }.to_bytes(),
                            ..riven_memcache::binary::Request::new(riven_memcache::binary::Opcode::SET)
                        },
                        &[],
                    )
                })
                .collect();
            // Every reply in before the reads run.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut got = Vec::new();
            for key in keys {
                group.open_stash(1);
                let opts = ReadOpts {
                    // A peek is not answered from the reply alone; it must still use it.
                    peek: key == b"peeked",
                    ..ReadOpts::default()
                };
                let copy = |i: &ItemView<'_>| {
                    let mut v = Vec::new();
                    i.value.copy_to(&mut v);
                    v
                };
                let (at_once, r) = match ch.read_now(key, &opts, copy) {
                    Ok(r) => (true, r),
                    Err(copy) => (false, ch.read(key, &opts, copy).await),
                };
                got.push((at_once, r.unwrap()));
            }
            drop(overwrites);
            got
        })
        .await;
    Group::give_back(group);
    assert_eq!(
        got[0],
        (true, Some(b"old".to_vec())),
        "what was there when the GET went"
    );
    assert!(
        !got[1].0 && got[1].1.as_deref() == Some(&big[..]),
        "the chunked value, whole"
    );
    assert_eq!(got[2], (true, None));
    assert_eq!(got[3], (false, Some(b"p".to_vec())));
    let after = ch.stats();
    assert_eq!(after.cmd_get - before.cmd_get, 4);
    assert_eq!(after.get_hits - before.get_hits, 3);
    assert_eq!(after.get_misses - before.get_misses, 1);
    // (Raw writes, with no envelope: memcached holds them, the chunking layer sees none.)
    for key in [&b"small"[..], b"big"] {
        let raw = ch.raw().get(key, None).await.unwrap().unwrap();
        assert_eq!(&raw.value[..], b"new", "the write landed, after the read's GET");
    }
}

#[tokio::test]
async fn full_chunk_items_fill_one_slab_class_and_the_last_holds_only_its_data() {
    let mc = MemcachedProcess::start(&[]);
    let ch = setup(&mc).await;
    let v = gen(2, 0, 300_000);
    ch.store(&req(Mode::Set, b"some user key", &v)).await.unwrap();
    let env = index_of(&ch, b"some user key").await;
    assert_eq!(env.chunk_count, 3);
    let keys = ChunkKeys::new(b"some user key", env.token);
    let last = 300_000 - 2 * DEFAULT_CHUNK_SIZE;
    let (last_class, last_size) = riven_memcache::meta::memcached_item_size(CHUNK_KEY_LEN, CHUNK_HEADER_LEN + last, 0);
    for n in 0..env.chunk_count {
        let k = keys.key(n);
        let me = text(mc.addr, &format!("me {}\r\n", std::str::from_utf8(&k).unwrap()), "\r\n");
        let want = match n {
            2 => format!(" cls={last_class} size={last_size}"),
            _ => " cls=33 size=129376".to_string(),
        };
        assert!(me.contains(&want), "chunk {n}: {me} (want {want})");
    }
    assert_eq!(get(&ch, b"some user key").await, Some(v));
}

/// A raw store that lets the first `stores` writes through and then never answers another:
/// a writer that dies (its future is dropped) after that many writes.
struct DieAfter {
    inner: Memcached,
    stores: AtomicUsize,
}

impl RawStore for DieAfter {
    async fn get(&self, key: &[u8], touch: Option<u32>) -> Result<Option<RawItem>> {
        self.inner.get(key, touch).await
    }
    async fn store(&self, w: RawWrite<'_>) -> Result<RawStored> {
        let left = self
            .stores
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if left.is_err() {
            return std::future::pending().await;
        }
        self.inner.store(w).await
    }
    async fn delete(&self, key: &[u8], cas: u64) -> Result<RawDeleted> {
        self.inner.delete(key, cas).await
    }
    async fn touch(&self, key: &[u8], exptime: u32) -> Result<bool> {
        self.inner.touch(key, exptime).await
    }
    async fn flush_all(&self, delay: u32) -> Result<()> {
        self.inner.flush_all(delay).await
    }
}

#[tokio::test]
async fn writer_killed_midway_never_shows() {
    let mc = MemcachedProcess::start(&["-m", "256"]);
    let ch = setup(&mc).await;
    let old = gen(1, 0, 3 << 20);
    ch.store(&req(Mode::Set, b"k", &old)).await.unwrap();
    let new = gen(2, 0, 8 << 20);
    let chunks = new.len().div_ceil(DEFAULT_CHUNK_SIZE);
    // Dies before any chunk, after one, mid-value, before the last chunk, before the index.
    for stores in [0, 1, chunks / 2, chunks - 1, chunks] {
        let writer = Chunked::new(
            DieAfter {
                inner: mc.client().await,
                stores: AtomicUsize::new(stores),
            },
            Clock::start(),
            config(),
        );
        let r = req(Mode::Set, b"k", &new);
        let write = writer.store(&r);
        assert!(
            tokio::time::timeout(Duration::from_millis(500), write).await.is_err(),
            "{stores}: finished"
        );
        assert!(
            get(&ch, b"k").await == Some(old.clone()),
            "dead after {stores} writes: not the old value"
        );
    }
    // Dying after the index was written (while cleaning up) leaves the new value.
    let writer = Chunked::new(
        DieAfter {
            inner: mc.client().await,
            stores: AtomicUsize::new(chunks + 1),
        },
        Clock::start(),
        config(),
    );
    assert!(matches!(
        writer.store(&req(Mode::Set, b"k", &new)).await,
        Ok(StoreOutcome::Stored { .. })
    ));
    assert!(get(&ch, b"k").await == Some(new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_torn_reads_under_concurrent_and_dying_writers() {
    const WRITERS: u8 = 4;
    const WRITES: u32 = 24;
    const READERS: usize = 4;
    let mc = MemcachedProcess::start(&["-m", "512"]);
    let ch = Arc::new(setup(&mc).await);
    // Every value any writer may write: sizes from inline to 1.2 MB, changing chunk counts.
    let mut expected = HashMap::new();
    for w in 0..WRITERS {
        for seq in 0..WRITES {
            let len = match seq % 6 {
                0 => 100,
                1 => DEFAULT_CHUNK_SIZE + 1,
                k => 150_000 * k as usize + 7919 * usize::from(w),
            };
            expected.insert((w, seq), gen(w, seq, len));
        }
    }
    let expected = Arc::new(expected);
    let first = gen(9, 0, 500_000);
    ch.store(&req(Mode::Set, b"hot", &first)).await.unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let (hits, misses, torn) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (ch, expected, done, first) = (ch.clone(), expected.clone(), done.clone(), first.clone());
        let (hits, misses, torn) = (hits.clone(), misses.clone(), torn.clone());
        readers.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let Some(v) = get(&*ch, b"hot").await else {
                    misses.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                hits.fetch_add(1, Ordering::Relaxed);
                let whole = v.len() >= 9 && {
                    let seq = u32::from_be_bytes([v[1], v[2], v[3], v[4]]);
                    expected.get(&(v[0], seq)).is_some_and(|e| *e == v)
                };
                if !whole && v != first {
                    torn.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (ch, expected) = (ch.clone(), expected.clone());
        writers.push(tokio::spawn(async move {
            let mut died = 0;
            for seq in 0..WRITES {
                let v = &expected[&(w, seq)];
                let r = req(Mode::Set, b"hot", v);
                let write = ch.store(&r);
                if w == 0 {
                    // Writer 0 is killed at a different point of most of its writes.
                    let after = Duration::from_micros(u64::from(seq % 8) * 4000);
                    if tokio::time::timeout(after, write).await.is_err() {
                        died += 1;
                    }
                } else {
                    assert!(matches!(write.await, Ok(StoreOutcome::Stored { .. })));
                }
            }
            died
        }));
    }
    let mut died = 0;
    for w in writers {
        died += w.await.unwrap();
    }
    // Let readers see the final value a while.
    tokio::time::sleep(Duration::from_millis(100)).await;
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let (hits, misses, torn) = (
        hits.load(Ordering::Relaxed),
        misses.load(Ordering::Relaxed),
        torn.load(Ordering::Relaxed),
    );
    eprintln!(
        "torn-read test: {hits} hits, {misses} misses, {torn} torn, {died} writes killed midway, {:?}",
        ch.chunk_stats()
    );
    assert_eq!(torn, 0);
    assert!(hits > 0);
    assert!(died > 0, "no writer was killed midway");
}

#[tokio::test]
async fn cas_append_incr_touch_on_chunked_values() {
    let mc = MemcachedProcess::start(&["-m", "128"]);
    let ch = setup(&mc).await;
    let big = gen(3, 0, 300_000);
    let StoreOutcome::Stored { cas } = ch.store(&req(Mode::Set, b"k", &big)).await.unwrap() else {
        panic!()
    };

    // cas: a wrong CAS is refused, the right one replaces, the old one is then stale.
    let big2 = gen(3, 1, 250_000);
    let with_cas = |v, c| StoreReq {
        cas: Some(c),
        ..req(Mode::Set, b"k", v)
    };
    assert_eq!(ch.store(&with_cas(&big2, cas + 1)).await, Ok(StoreOutcome::Exists));
    let StoreOutcome::Stored { cas: cas2 } = ch.store(&with_cas(&big2, cas)).await.unwrap() else {
        panic!()
    };
    assert_eq!(ch.store(&with_cas(&big2, cas)).await, Ok(StoreOutcome::Exists));
    assert!(get(&ch, b"k").await == Some(big2.clone()));

    // A touch in between does not change the CAS the client holds.
    assert_eq!(ch.touch(b"k", ch.clock().expiry(1000)).await, Ok(true));
    let ttl = ch
        .read(b"k", &ReadOpts::default(), |i| (i.ttl, i.cas))
        .await
        .unwrap()
        .unwrap();
    assert!((999..=1000).contains(&ttl.0), "{ttl:?}");
    assert_eq!(ttl.1, cas2);

    // append / prepend on a chunked value keep its TTL.
    ch.store(&req(Mode::Append, b"k", b"<tail>")).await.unwrap();
    ch.store(&req(Mode::Prepend, b"k", b"<head>")).await.unwrap();
    let mut expect = b"<head>".to_vec();
    expect.extend_from_slice(&big2);
    expect.extend_from_slice(b"<tail>");
    assert!(get(&ch, b"k").await == Some(expect));
    let ttl = ch.read(b"k", &ReadOpts::default(), |i| i.ttl).await.unwrap().unwrap();
    assert!((998..=1000).contains(&ttl));

    // gat: value and a new TTL for the index and every chunk.
    let opts = ReadOpts {
        touch: Some(ch.clock().expiry(-1)),
        ..ReadOpts::default()
    };
    assert!(ch.read(b"k", &opts, |_| ()).await.unwrap().is_some());
    assert_eq!(get(&ch, b"k").await, None);
    // memcached drops expired items lazily (or by its LRU crawler): allow it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while items_in_class(mc.addr, 24) != 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(items_in_class(mc.addr, 24), 0, "chunks expired with the index");

    // incr/decr; and an append that makes a number chunk-sized, after which it is not one.
    ch.store(&req(Mode::Set, b"n", b"99")).await.unwrap();
    let incr = |delta| ArithReq {
        key: b"n",
        incr: true,
        delta,
        cas: None,
        vivify: None,
        touch: None,
    };
    assert!(matches!(
        ch.arith(&incr(1)).await,
        Ok(ArithOutcome::Done { value: 100, .. })
    ));
    let digits = vec![b'7'; DEFAULT_CHUNK_SIZE];
    ch.store(&req(Mode::Append, b"n", &digits)).await.unwrap();
    assert_eq!(ch.arith(&incr(1)).await, Ok(ArithOutcome::NonNumeric));

    // mg-style vivify on a miss, then md I and the recache win, on a chunked value.
    let opts = ReadOpts {
        vivify: Some(ch.clock().expiry(30)),
        ..ReadOpts::default()
    };
    assert_eq!(
        ch.read(b"v", &opts, |i| (i.win, i.value.len())).await,
        Ok(Some((true, 0)))
    );
    assert_eq!(
        ch.read(b"v", &opts, |i| (i.win, i.win_taken)).await,
        Ok(Some((false, true)))
    );
    ch.store(&req(Mode::Set, b"v", &big)).await.unwrap();
    assert_eq!(ch.invalidate(b"v", None, None).await, Ok(DeleteOutcome::Deleted));
    let seen = ch
        .read(b"v", &ReadOpts::default(), |i| (i.stale, i.win, i.value.len()))
        .await;
    assert_eq!(seen, Ok(Some((true, true, big.len()))));

    // flush_all takes the chunks too.
    ch.flush_all(0).await.unwrap();
    assert_eq!(get(&ch, b"v").await, None);
}

#[tokio::test]
async fn memcached_down_is_an_error_and_recovery_is_automatic() {
    let mut mc = MemcachedProcess::start(&[]);
    let mut cfg = mc.links_config();
    cfg.backoff_max = Duration::from_millis(200);
    let m = Memcached::start(cfg);
    crate::backend::testutil::wait_up(&m).await;
    let ch = Chunked::new(m, Clock::start(), config());
    let v = gen(4, 0, 200_000);
    ch.store(&req(Mode::Set, b"k", &v)).await.unwrap();
    mc.kill();
    let r = ch.read(b"k", &ReadOpts::default(), |_| ()).await;
    assert!(matches!(r, Err(BackendError::Unavailable)), "{r:?}");
    assert!(ch.store(&req(Mode::Set, b"k", &v)).await.is_err());
    mc.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ch.store(&req(Mode::Set, b"k", &v)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(get(&ch, b"k").await == Some(v));
}
