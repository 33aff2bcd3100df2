//! Store tests: memcached semantics, memory bounds, eviction and concurrency.

use std::sync::Arc;

use super::*;

fn store_with(memory: usize, chunk: usize) -> Store {
    Store::with_clock(
        StoreConfig {
            memory_bytes: memory,
            chunk_size: chunk,
            item_size_max: memory / 2,
            shards: 8,
        },
        Clock::manual(),
    )
}

fn set(s: &Store, key: &[u8], value: &[u8]) -> StoreOutcome {
    s.store(&StoreReq {
        mode: Mode::Set,
        key,
        flags: 0,
        expiry: Expiry::NEVER,
        value,
        cas: None,
        invalidate: false,
    })
}

fn get(s: &Store, key: &[u8]) -> Option<Vec<u8>> {
    s.read(key, &ReadOpts::default(), |i| {
        let mut v = Vec::new();
        i.value.copy_to(&mut v);
        v
    })
}

fn pattern(key: &[u8], len: usize) -> Vec<u8> {
    let seed = key.iter().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(*b));
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

#[test]
fn values_of_every_size_round_trip() {
    let s = store_with(8 << 20, 64);
    for len in (0..300).chain([1000, 4096, 65_536, 1 << 20]) {
        let key = format!("k{len}");
        let v = pattern(key.as_bytes(), len);
        assert!(matches!(set(&s, key.as_bytes(), &v), StoreOutcome::Stored { .. }));
        assert_eq!(get(&s, key.as_bytes()).as_deref(), Some(&v[..]), "len {len}");
    }
}

#[test]
fn memory_is_bounded_and_lru_evicts_the_coldest() {
    let s = store_with(1 << 20, 128);
    let hot = b"hot".as_slice();
    set(&s, hot, b"keep me");
    for i in 0..20_000 {
        let key = format!("key{i}");
        assert!(matches!(
            set(&s, key.as_bytes(), &pattern(key.as_bytes(), 100)),
            StoreOutcome::Stored { .. }
        ));
        // Reading the hot key keeps it at the head of its LRU.
        assert_eq!(get(&s, hot).as_deref(), Some(&b"keep me"[..]));
        let st = s.stats();
        assert!(st.used_chunks <= st.total_chunks);
    }
    let st = s.stats();
    assert!(st.evictions > 10_000, "{st:?}");
    assert!(st.curr_items < 20_000);
    // The newest keys are still there, and every value read is intact.
    for i in 19_990..20_000 {
        let key = format!("key{i}");
        assert_eq!(get(&s, key.as_bytes()), Some(pattern(key.as_bytes(), 100)));
    }
}

#[test]
fn freed_memory_serves_any_size() {
    // Fill with small values, then with large ones, then small again: with fixed-size chunks
    // nothing stays stuck in a size class.
    let s = store_with(1 << 20, 128);
    for round in 0..3 {
        for (i, len) in [(0, 50usize), (1, 60_000), (2, 50)].iter().copied() {
            for n in 0..200 {
                let key = format!("r{round}s{i}n{n}");
                let v = pattern(key.as_bytes(), len);
                assert!(
                    matches!(set(&s, key.as_bytes(), &v), StoreOutcome::Stored { .. }),
                    "{key}"
                );
                assert_eq!(get(&s, key.as_bytes()), Some(v));
            }
        }
    }
}

#[test]
fn too_large_is_refused() {
    let s = store_with(1 << 20, 128);
    // memcached's overhead rule: key + value + 59 bytes must fit in item_size_max.
    let max = (1 << 19) - 59 - 1;
    assert!(matches!(set(&s, b"k", &vec![0; max]), StoreOutcome::Stored { .. }));
    assert_eq!(set(&s, b"k", &vec![0; max + 1]), StoreOutcome::TooLarge);
    // Appending past the limit is refused too, and the old value stays.
    let append = s.store(&StoreReq {
        mode: Mode::Append,
        key: b"k",
        flags: 0,
        expiry: Expiry::NEVER,
        value: b"x",
        cas: None,
        invalidate: false,
    });
    assert_eq!(append, StoreOutcome::TooLarge);
    assert_eq!(get(&s, b"k").map(|v| v.len()), Some(max));
}

#[test]
fn ttl_rules_lazy_expiry_and_reclaim() {
    let s = store_with(1 << 20, 128);
    let clock = s.clock();
    let put = |key: &[u8], exptime: i64| {
        s.store(&StoreReq {
            mode: Mode::Set,
            key,
            flags: 0,
            expiry: clock.expiry(exptime),
            value: b"v",
            cas: None,
            invalidate: false,
        })
    };
    put(b"never", 0);
    put(b"soon", 2);
    put(b"gone", -1);
    put(b"abs", clock.unix_now() + 5);
    assert!(get(&s, b"gone").is_none());
    assert!(get(&s, b"soon").is_some());
    clock.advance(2);
    assert!(get(&s, b"soon").is_none());
    assert!(get(&s, b"abs").is_some());
    clock.advance(3);
    // Nobody reads "abs": the background reclaim frees it.
    let reclaimed: usize = (0..8).map(|i| s.reclaim(i, 1000)).sum();
    assert_eq!(reclaimed, 1);
    assert_eq!(s.stats().curr_items, 1);
    assert!(get(&s, b"never").is_some());
}

#[test]
fn cas_is_unique_per_version_and_checked() {
    let s = store_with(1 << 20, 128);
    let StoreOutcome::Stored { cas: c1 } = set(&s, b"k", b"1") else {
        panic!()
    };
    let StoreOutcome::Stored { cas: c2 } = set(&s, b"k", b"2") else {
        panic!()
    };
    assert_ne!(c1, c2);
    let cas = |c| {
        s.store(&StoreReq {
            mode: Mode::Set,
            key: b"k",
            flags: 0,
            expiry: Expiry::NEVER,
            value: b"3",
            cas: Some(c),
            invalidate: false,
        })
    };
    assert_eq!(cas(c1), StoreOutcome::Exists);
    assert!(matches!(cas(c2), StoreOutcome::Stored { .. }));
    assert_eq!(s.delete(b"k", Some(c2)), DeleteOutcome::Exists);
    assert_eq!(s.delete(b"k", None), DeleteOutcome::Deleted);
    assert_eq!(cas(c2), StoreOutcome::NotFound);
}

#[test]
fn flush_now_and_later() {
    let s = store_with(1 << 20, 128);
    set(&s, b"a", b"1");
    s.flush_all(0);
    assert!(get(&s, b"a").is_none());
    set(&s, b"b", b"1");
    assert!(get(&s, b"b").is_some());
    s.flush_all(3);
    set(&s, b"c", b"1");
    s.clock().advance(1);
    assert!(get(&s, b"b").is_some());
    s.clock().advance(2);
    assert!(get(&s, b"b").is_none());
    assert!(get(&s, b"c").is_none());
    set(&s, b"d", b"1");
    assert!(get(&s, b"d").is_some());
}

#[test]
fn arithmetic() {
    let s = store_with(1 << 20, 64);
    let arith = |incr, delta| {
        s.arith(&ArithReq {
            key: b"n",
            incr,
            delta,
            cas: None,
            vivify: None,
            touch: None,
        })
    };
    assert_eq!(arith(true, 1), ArithOutcome::NotFound);
    set(&s, b"n", b"10");
    assert!(matches!(arith(false, 1), ArithOutcome::Done { value: 9, .. }));
    // Shrinking in place pads with spaces, as memcached does.
    assert_eq!(get(&s, b"n").as_deref(), Some(&b"9 "[..]));
    assert!(matches!(arith(false, 100), ArithOutcome::Done { value: 0, .. }));
    assert!(matches!(
        arith(true, u64::MAX),
        ArithOutcome::Done { value: u64::MAX, .. }
    ));
    assert_eq!(get(&s, b"n"), Some(u64::MAX.to_string().into_bytes()));
    assert!(matches!(arith(true, 2), ArithOutcome::Done { value: 1, .. }));
    set(&s, b"n", b"x1");
    assert_eq!(arith(true, 1), ArithOutcome::NonNumeric);
    let viv = s.arith(&ArithReq {
        key: b"new",
        incr: true,
        delta: 5,
        cas: None,
        vivify: Some((42, Expiry::NEVER)),
        touch: None,
    });
    assert!(matches!(viv, ArithOutcome::Done { value: 42, .. }));
}

#[test]
fn append_prepend_across_chunks() {
    let s = store_with(1 << 20, 64);
    let a = pattern(b"a", 500);
    let b = pattern(b"b", 300);
    set(&s, b"k", &a);
    let app = |mode, v: &[u8]| {
        s.store(&StoreReq {
            mode,
            key: b"k",
            flags: 9,
            expiry: Expiry::NEVER,
            value: v,
            cas: None,
            invalidate: false,
        })
    };
    assert!(matches!(app(Mode::Append, &b), StoreOutcome::Stored { .. }));
    assert!(matches!(app(Mode::Prepend, b"<<"), StoreOutcome::Stored { .. }));
    let mut want = b"<<".to_vec();
    want.extend(&a);
    want.extend(&b);
    assert_eq!(get(&s, b"k"), Some(want));
    // Flags stay those of the original item.
    assert_eq!(s.read(b"k", &ReadOpts::default(), |i| i.flags), Some(0));
}

#[test]
fn vivify_win_and_stale() {
    let s = store_with(1 << 20, 128);
    let opts = ReadOpts {
        vivify: Some(Expiry::NEVER),
        ..ReadOpts::default()
    };
    let first = s.read(b"k", &opts, |i| (i.win, i.win_taken, i.value.len())).unwrap();
    assert_eq!(first, (true, false, 0));
    let second = s.read(b"k", &opts, |i| (i.win, i.win_taken)).unwrap();
    assert_eq!(second, (false, true));
    set(&s, b"k", b"v");
    assert_eq!(s.invalidate(b"k", None, None), DeleteOutcome::Deleted);
    let stale = s.read(b"k", &ReadOpts::default(), |i| (i.stale, i.win)).unwrap();
    assert_eq!(stale, (true, true));
    let again = s
        .read(b"k", &ReadOpts::default(), |i| (i.stale, i.win, i.win_taken))
        .unwrap();
    assert_eq!(again, (true, false, true));
}

#[test]
fn concurrent_writers_and_readers_never_see_a_mix() {
    // Every value is one repeated byte; a read that mixes two writes would show two bytes.
    let s = Arc::new(store_with(4 << 20, 64));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    let key = format!("k{}", i % 50);
                    if i % 3 == 0 {
                        let len = 10 + (i as usize * 37) % 3000;
                        set(&s, key.as_bytes(), &vec![t.wrapping_add(i as u8); len]);
                    } else if i % 7 == 0 {
                        s.delete(key.as_bytes(), None);
                    } else if let Some(v) = get(&s, key.as_bytes()) {
                        assert!(v.iter().all(|&b| b == v[0]), "torn value for {key}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = s.stats();
    assert!(st.used_chunks <= st.total_chunks);
}
