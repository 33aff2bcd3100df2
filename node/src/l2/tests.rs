use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::*;

const NOW: u64 = 1_700_000_000;

fn entry(value: &[u8]) -> L2Entry {
    L2Entry {
        value: Bytes::copy_from_slice(value),
        flags: 0,
        expiry: 0,
        cas: 1,
        version: Version::default(),
    }
}

fn config(dir: &Path, max_bytes: u64, clock: &L2Clock) -> L2Config {
    let mut cfg = L2Config::new(dir, max_bytes);
    cfg.clock = clock.clone();
    cfg.cache_bytes = 4 << 20;
    cfg
}

fn open(dir: &Path, clock: &L2Clock) -> L2Store {
    L2Store::open(config(dir, 8 << 20, clock)).unwrap()
}

/// A value that names its key and writer, then pseudo-random bytes seeded by that name: whole
/// values can be told from mixes, and LZ4 cannot shrink them (the size tests need real bytes).
fn tagged(key: &[u8], writer: usize, n: usize, len: usize) -> Vec<u8> {
    let tag = format!("{}|{writer}|{n}|", String::from_utf8_lossy(key));
    let mut out = tag.clone().into_bytes();
    let mut x = seed(tag.as_bytes());
    while out.len() < len {
        out.push(xorshift(&mut x) as u8);
    }
    out
}

fn check_tagged(key: &[u8], value: &[u8]) {
    let text = String::from_utf8_lossy(value);
    let tag_len = text.match_indices('|').nth(2).expect("tag").0 + 1;
    let tag = &value[..tag_len];
    assert!(
        tag.starts_with(&[key, b"|"].concat()),
        "foreign value {:?}",
        String::from_utf8_lossy(tag)
    );
    let mut x = seed(tag);
    assert!(
        value[tag_len..].iter().all(|b| *b == xorshift(&mut x) as u8),
        "torn value"
    );
}

fn seed(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    }) | 1
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Waits until fjall has no flush queued and no compaction running, several times in a row (a
/// compaction is queued just after a flush ends). Not a timing assertion: it only waits for the
/// background to catch up before measuring.
fn settle(store: &L2Store) {
    let mut quiet = 0;
    for _ in 0..6000 {
        if store.is_idle() {
            quiet += 1;
            if quiet == 10 {
                return;
            }
        } else {
            quiet = 0;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("fjall background work did not settle");
}

#[test]
fn round_trip_of_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let clock = L2Clock::manual(NOW);
    let store = open(dir.path(), &clock);
    let cases = [
        (
            &b"k"[..],
            L2Entry {
                value: Bytes::new(),
                flags: 0,
                expiry: 0,
                cas: 0,
                version: Version { hlc: 0, zone: 0 },
            },
        ),
        (
            b"key:with:colons",
            L2Entry {
                value: Bytes::from_static(b"binary\0\r\n\xffvalue"),
                flags: u32::MAX,
                expiry: NOW + 3600,
                cas: u64::MAX,
                version: Version {
                    hlc: u64::MAX,
                    zone: u16::MAX,
                },
            },
        ),
        (
            &[0xffu8; 250][..],
            L2Entry {
                value: Bytes::from(vec![0xa5u8; 1 << 20]),
                flags: 0x8000_0001,
                expiry: u64::MAX,
                cas: 12345,
                version: Version {
                    hlc: 0x0123_4567_89ab_cdef,
                    zone: 7,
                },
            },
        ),
    ];
    for (key, e) in &cases {
        store.set(key, e).unwrap();
    }
    for (key, e) in &cases {
        assert_eq!(store.get(key).unwrap().as_ref(), Some(e));
    }
    // Overwrite replaces every field.
    let mut newer = cases[1].1.clone();
    newer.value = Bytes::from_static(b"v2");
    newer.flags = 3;
    newer.cas += 0; // unchanged fields stay as given
    newer.version.hlc -= 1;
    store.set(cases[1].0, &newer).unwrap();
    assert_eq!(store.get(cases[1].0).unwrap(), Some(newer));

    assert_eq!(store.get(b"absent").unwrap(), None);
    let s = store.stats().unwrap();
    assert_eq!((s.reads, s.hits, s.misses, s.writes), (5, 4, 1, 4));
    let user: u64 = cases.iter().map(|(k, e)| (k.len() + e.value.len()) as u64).sum::<u64>() + 15 + 2;
    assert_eq!(s.user_bytes_written, user);
}

#[test]
fn invalid_keys_and_settings_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let clock = L2Clock::manual(NOW);
    let store = open(dir.path(), &clock);
    assert!(matches!(store.set(b"", &entry(b"v")), Err(L2Error::Invalid)));
    let long = vec![b'k'; 70_000];
    assert!(matches!(store.set(&long, &entry(b"v")), Err(L2Error::Invalid)));
    assert_eq!(store.get(b"").unwrap(), None);
    assert_eq!(store.get(&long).unwrap(), None);
    assert!(!store.delete(b"").unwrap());
    assert!(!store.touch(b"", 0).unwrap());
    let small = tempfile::tempdir().unwrap();
    assert!(matches!(
        L2Store::open(config(small.path(), MIN_MAX_BYTES - 1, &clock)),
        Err(L2Error::Config(_))
    ));
}

#[test]
fn expired_data_never_returns() {
    let dir = tempfile::tempdir().unwrap();
    let clock = L2Clock::manual(NOW);
    let store = open(dir.path(), &clock);
    let with_expiry = |v: &[u8], expiry| L2Entry { expiry, ..entry(v) };

    store.set(b"forever", &with_expiry(b"f", 0)).unwrap();
    store.set(b"ten", &with_expiry(b"t", NOW + 10)).unwrap();
    store.set(b"five", &with_expiry(b"5", NOW + 5)).unwrap();
    assert!(store.get(b"five").unwrap().is_some());

    clock.advance(4);
    assert!(store.get(b"five").unwrap().is_some(), "one second left");
    clock.advance(1);
    assert_eq!(store.get(b"five").unwrap(), None, "expired when expiry <= now");
    assert_eq!(store.get(b"ten").unwrap().unwrap().expiry, NOW + 10);
    clock.advance(5);
    assert_eq!(store.get(b"ten").unwrap(), None);
    assert_eq!(store.get(b"forever").unwrap().unwrap().value, &b"f"[..]);

    // An expired entry cannot be touched back to life, nor deleted as if live.
    assert!(!store.touch(b"ten", NOW + 100).unwrap());
    assert_eq!(store.get(b"ten").unwrap(), None);
    assert!(!store.delete(b"five").unwrap());

    // touch moves the expiry both ways.
    let now = clock.now();
    assert!(store.touch(b"forever", now + 3).unwrap());
    assert_eq!(store.get(b"forever").unwrap().unwrap().expiry, now + 3);
    clock.advance(3);
    assert_eq!(store.get(b"forever").unwrap(), None);

    // A set that is already expired removes the key and stores nothing.
    store.set(b"gone", &entry(b"old")).unwrap();
    store.set(b"gone", &with_expiry(b"new", clock.now())).unwrap();
    assert_eq!(store.get(b"gone").unwrap(), None);
    // touch with a past expiry expires at once.
    store.set(b"t2", &entry(b"x")).unwrap();
    assert!(store.touch(b"t2", clock.now() - 1).unwrap());
    assert_eq!(store.get(b"t2").unwrap(), None);

    let s = store.stats().unwrap();
    assert!(s.expired >= 3, "{s:?}");

    // Still expired after a restart with the same clock.
    drop(store);
    let store = open(dir.path(), &clock);
    for key in [&b"five"[..], b"ten", b"forever", b"gone", b"t2"] {
        assert_eq!(store.get(key).unwrap(), None);
    }
}

#[test]
fn restart_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let clock = L2Clock::manual(NOW);
    let key = |i: usize| format!("key-{i}").into_bytes();
    // ~3 MiB: several memtables flushed to tables, the rest only in the journal.
    let n = 3000;
    {
        let store = open(dir.path(), &clock);
        for i in 0..n {
            let e = L2Entry {
                flags: i as u32,
                cas: i as u64,
                ..entry(&tagged(&key(i), 0, i, 1000))
            };
            store.set(&key(i), &e).unwrap();
        }
        assert!(store.delete(&key(0)).unwrap());
        assert!(store.touch(&key(1), NOW + 60).unwrap());
    }
    let store = open(dir.path(), &clock);
    assert_eq!(store.get(&key(0)).unwrap(), None);
    assert_eq!(store.get(&key(1)).unwrap().unwrap().expiry, NOW + 60);
    for i in 1..n {
        let e = store.get(&key(i)).unwrap().unwrap_or_else(|| panic!("key {i} lost"));
        assert_eq!((e.flags, e.cas), (i as u32, i as u64));
        check_tagged(&key(i), &e.value);
    }
    // Appends carry on after the recovered sequence: new and old both readable.
    store.set(b"after", &entry(b"restart")).unwrap();
    store.set(&key(5), &entry(b"overwritten")).unwrap();
    drop(store);
    let store = open(dir.path(), &clock);
    assert_eq!(store.get(b"after").unwrap().unwrap().value, &b"restart"[..]);
    assert_eq!(store.get(&key(5)).unwrap().unwrap().value, &b"overwritten"[..]);
    assert!(store.get(&key(n - 1)).unwrap().is_some());
}

#[test]
fn changed_settings_start_empty() {
    let dir = tempfile::tempdir().unwrap();
    let clock = L2Clock::manual(NOW);
    {
        let store = open(dir.path(), &clock);
        store.set(b"k", &entry(b"v")).unwrap();
    }
    let store = L2Store::open(config(dir.path(), 16 << 20, &clock)).unwrap();
    assert_eq!(store.get(b"k").unwrap(), None);
    store.set(b"k", &entry(b"v2")).unwrap();
    drop(store);
    let store = L2Store::open(config(dir.path(), 16 << 20, &clock)).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap().value, &b"v2"[..]);
}

#[test]
fn flush_all_drops_everything_durably() {
    let dir = tempfile::tempdir().unwrap();
    let clock = L2Clock::manual(NOW);
    let key = |i: usize| format!("f{i}").into_bytes();
    {
        let store = open(dir.path(), &clock);
        for i in 0..3000 {
            store.set(&key(i), &entry(&[b'x'; 1000])).unwrap();
        }
        settle(&store);
        assert!(store.stats().unwrap().log_bytes > 0);
        store.flush_all().unwrap();
        for i in 0..3000 {
            assert_eq!(store.get(&key(i)).unwrap(), None);
        }
        let s = store.stats().unwrap();
        assert_eq!((s.flushes, s.log_bytes, s.index_bytes), (1, 0, 0), "{s:?}");
        assert!(!store.delete(&key(1)).unwrap());
        store.set(&key(1), &entry(b"new")).unwrap();
        assert_eq!(store.get(&key(1)).unwrap().unwrap().value, &b"new"[..]);
    }
    let store = open(dir.path(), &clock);
    assert_eq!(store.get(&key(0)).unwrap(), None);
    assert_eq!(store.get(&key(2999)).unwrap(), None);
    assert_eq!(store.get(&key(1)).unwrap().unwrap().value, &b"new"[..]);
}

/// The bound under a write load of twice `max_bytes`, measured on disk (blocks, as `du`).
#[test]
fn size_bound_holds_under_twice_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let clock = L2Clock::manual(NOW);
    let max_bytes: u64 = 8 << 20;
    let store = L2Store::open(config(dir.path(), max_bytes, &clock)).unwrap();
    let key = |i: usize| format!("bound-{i:08}").into_bytes();
    let value_len = 4096;
    let n = (2 * max_bytes as usize) / value_len;

    let mut peak_tables = 0u64;
    let mut peak_dir = DirUsage::default();
    let mut peak_non_journal = 0u64;
    for i in 0..n {
        store.set(&key(i), &entry(&tagged(&key(i), 0, i, value_len))).unwrap();
        if i % 16 == 0 {
            let s = store.stats().unwrap();
            peak_tables = peak_tables.max(s.log_bytes + s.index_bytes);
            let u = dir_usage(dir.path()).unwrap();
            peak_non_journal = peak_non_journal.max(u.allocated - u.journal_allocated);
            if u.allocated > peak_dir.allocated {
                peak_dir = u;
            }
        }
    }
    settle(&store);
    let s = store.stats().unwrap();
    let u = dir_usage(dir.path()).unwrap();
    eprintln!(
        "size bound: max_bytes {max_bytes}, wrote {} B; settled: tables {} (log {} index {}), dir {} \
         (journal {}, apparent {}); peak during load: tables {peak_tables}, dir without journal \
         {peak_non_journal}, dir {} (journal {})",
        s.user_bytes_written,
        s.log_bytes + s.index_bytes,
        s.log_bytes,
        s.index_bytes,
        u.allocated,
        u.journal_allocated,
        u.apparent,
        peak_dir.allocated,
        peak_dir.journal_allocated,
    );
    // Everything but the journal (tables, a table being flushed, files of dropped tables not yet
    // unlinked, fjall's small metadata files), at every point of the load and after it.
    assert!(peak_tables <= max_bytes, "peak tables {peak_tables}");
    assert!(peak_non_journal <= max_bytes, "peak without journal {peak_non_journal}");
    assert!(u.allocated - u.journal_allocated <= max_bytes, "{u:?}");
    // The journal is bounded by fjall's rotation at 64 MB, not by max_bytes (module doc). Here it
    // holds the whole load, which is less than that.
    assert!(u.journal_allocated <= 2 * max_bytes + (1 << 20), "{u:?}");

    // Oldest first: the first writes are gone, the last ones are all there.
    assert_eq!(store.get(&key(0)).unwrap(), None);
    let recent = (max_bytes as usize / 2) / value_len;
    for i in n - recent..n {
        let e = store
            .get(&key(i))
            .unwrap()
            .unwrap_or_else(|| panic!("recent key {i} evicted"));
        check_tagged(&key(i), &e.value);
    }
    assert!(store.stats().unwrap().evicted >= 1);
}

#[test]
fn concurrent_access_from_several_threads() {
    let dir = tempfile::tempdir().unwrap();
    let clock = L2Clock::manual(NOW);
    let store = Arc::new(open(dir.path(), &clock));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                // Own keys: only this thread writes them, so every read must match the model.
                let mut model: HashMap<Vec<u8>, L2Entry> = HashMap::new();
                for n in 0..1500usize {
                    let own = format!("own-{t}-{}", n % 40).into_bytes();
                    let shared = format!("shared-{}", n % 7).into_bytes();
                    match n % 5 {
                        0 | 1 => {
                            let e = L2Entry {
                                cas: n as u64,
                                flags: t as u32,
                                ..entry(&tagged(&own, t, n, 100 + n % 3000))
                            };
                            store.set(&own, &e).unwrap();
                            model.insert(own.clone(), e);
                        }
                        2 => assert_eq!(store.delete(&own).unwrap(), model.remove(&own).is_some()),
                        3 => {
                            let live = model.get_mut(&own);
                            let was_live = live.is_some();
                            if let Some(e) = live {
                                e.expiry = NOW + n as u64;
                            }
                            assert_eq!(store.touch(&own, NOW + n as u64).unwrap(), was_live);
                        }
                        _ => {}
                    }
                    assert_eq!(store.get(&own).unwrap().as_ref(), model.get(&own));
                    // Shared keys: all threads write them; a read is some whole value of that key.
                    if n % 2 == 0 {
                        store
                            .set(&shared, &entry(&tagged(&shared, t, n, 50 + n % 700)))
                            .unwrap();
                    }
                    if let Some(e) = store.get(&shared).unwrap() {
                        check_tagged(&shared, &e.value);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = store.stats().unwrap();
    assert_eq!(s.reads, s.hits + s.misses);
}

#[test]
fn concurrent_flush_never_shows_a_torn_or_foreign_value() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let clock = L2Clock::manual(NOW);
    let store = Arc::new(open(dir.path(), &clock));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("k{}", n % 20).into_bytes();
                    store.set(&key, &entry(&tagged(&key, t, n, 200))).unwrap();
                    if let Some(e) = store.get(&key).unwrap() {
                        check_tagged(&key, &e.value);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for _ in 0..20 {
        store.flush_all().unwrap();
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    store.flush_all().unwrap();
    assert_eq!(store.get(b"k1").unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_wrapper_runs_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let clock = L2Clock::manual(NOW);
    let l2 = AsyncL2::open(config(dir.path(), 8 << 20, &clock)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let l2 = l2.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let key = Bytes::from(format!("a{t}-{i}"));
                    l2.set(key.clone(), entry(&tagged(&key, t, i, 300))).await.unwrap();
                    let got = l2.get(key.clone()).await.unwrap().unwrap();
                    check_tagged(&key, &got.value);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let key = Bytes::from_static(b"a0-0");
    assert!(l2.touch(key.clone(), NOW + 5).await.unwrap());
    assert_eq!(l2.get(key.clone()).await.unwrap().unwrap().expiry, NOW + 5);
    assert!(l2.delete(key.clone()).await.unwrap());
    assert!(!l2.delete(key.clone()).await.unwrap());
    assert_eq!(l2.get(key).await.unwrap(), None);
    assert_eq!(l2.stats().await.unwrap().writes, 400);
    l2.flush_all().await.unwrap();
    assert_eq!(l2.get(Bytes::from_static(b"a1-1")).await.unwrap(), None);
}

/// Bytes this process caused to be written to storage: `write_bytes` (counted when a page is
/// dirtied) less `cancelled_write_bytes` (dirty pages of files deleted or truncated before they
/// reached the disk), from `/proc/self/io`.
fn proc_write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    let field = |name: &str| -> Option<u64> { io.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()) };
    Some(field("write_bytes: ")? - field("cancelled_write_bytes: ")?)
}

/// Measures write amplification (module doc, "Write amplification") and the directory's peaks for a
/// few value sizes. Ignored: it writes ~0.9 GiB and reads the whole process's I/O counter, so run
/// it alone: `cargo test -p riven-node --lib l2::tests::write_amplification -- --ignored --nocapture`
#[test]
#[ignore]
fn write_amplification() {
    for (value_len, total) in [
        (4096, 256usize << 20),
        (65536, 256 << 20),
        (1 << 20, 256 << 20),
        (512, 96 << 20),
    ] {
        measure_write_amplification(64 << 20, value_len, total);
    }
}

fn measure_write_amplification(max_bytes: u64, value_len: usize, total: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = L2Config::new(dir.path(), max_bytes);
    cfg.cache_bytes = 8 << 20;
    let store = L2Store::open(cfg).unwrap();
    let n = total / value_len;
    // Incompressible values: LZ4 must not flatter the figure.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut value = vec![0u8; value_len];
    let before = proc_write_bytes().expect("/proc/self/io");
    let mut peak_journal = 0;
    let mut peak_non_journal = 0;
    let mut peak_dir = 0;
    for i in 0..n {
        for chunk in value.chunks_mut(8) {
            chunk.copy_from_slice(&xorshift(&mut x).to_le_bytes()[..chunk.len()]);
        }
        let key = format!("wa-key-{i:016}").into_bytes();
        store.set(&key, &entry(&value)).unwrap();
        if i % ((1 << 20) / value_len).max(1) == 0 {
            let u = dir_usage(dir.path()).unwrap();
            peak_journal = peak_journal.max(u.journal_allocated);
            peak_non_journal = peak_non_journal.max(u.allocated - u.journal_allocated);
            peak_dir = peak_dir.max(u.allocated);
        }
    }
    settle(&store);
    let after = proc_write_bytes().unwrap();
    let s = store.stats().unwrap();
    let u = dir_usage(dir.path()).unwrap();
    eprintln!(
        "write amplification: max_bytes {max_bytes}, {n} sets of {value_len} B values, {} user bytes, \
         {} bytes written to disk, WA {:.3}; settled: tables {}, dir {} (journal {}); peaks: dir \
         {peak_dir}, journal {peak_journal}, dir without journal {peak_non_journal}",
        s.user_bytes_written,
        after - before,
        (after - before) as f64 / s.user_bytes_written as f64,
        s.log_bytes + s.index_bytes,
        u.allocated,
        u.journal_allocated,
    );
}
