//! The chunking layer's branches, on the scripted fake raw store.

use super::envelope::{ChunkKeys, Envelope, CHUNK_HEADER_LEN, ENV_LEN, STALE, TOKEN_SENT};
use super::*;
use crate::backend::raw::RawItem;
use crate::backend::testutil::{FakeItem, FakeRaw, Op, Scripted, ScriptedReply};

/// A tiny chunk size, so chunking shows with short values.
const CS: usize = 10;

fn setup() -> Chunked<FakeRaw> {
    let clock = Clock::manual();
    let raw = FakeRaw::new(clock.unix_now());
    let cfg = ChunkConfig {
        chunk_size: CS,
        item_size_max: 1 << 20,
        window: 4,
    };
    Chunked::new(raw, clock, cfg)
}

fn advance(ch: &Chunked<FakeRaw>, secs: u32) {
    ch.clock().advance(secs);
    ch.raw().set_now(ch.clock().unix_now());
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

async fn set(ch: &Chunked<FakeRaw>, key: &[u8], value: &[u8]) -> StoreOutcome {
    ch.store(&req(Mode::Set, key, value)).await.unwrap()
}

fn stored_cas(o: StoreOutcome) -> u64 {
    match o {
        StoreOutcome::Stored { cas } => cas,
        other => panic!("not stored: {other:?}"),
    }
}

/// What a read saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    value: Vec<u8>,
    flags: u32,
    cas: u64,
    ttl: i64,
    stale: bool,
    win: bool,
    win_taken: bool,
}

async fn read(ch: &Chunked<FakeRaw>, key: &[u8], opts: ReadOpts) -> Option<Got> {
    ch.read(key, &opts, |i| {
        let mut value = Vec::new();
        i.value.copy_to(&mut value);
        Got {
            value,
            flags: i.flags,
            cas: i.cas,
            ttl: i.ttl,
            stale: i.stale,
            win: i.win,
            win_taken: i.win_taken,
        }
    })
    .await
    .unwrap()
}

async fn get(ch: &Chunked<FakeRaw>, key: &[u8]) -> Option<Vec<u8>> {
    read(ch, key, ReadOpts::default()).await.map(|g| g.value)
}

fn envelope_of(ch: &Chunked<FakeRaw>, key: &[u8]) -> Envelope {
    let items = ch.raw().items();
    Envelope::decode(&items[key].value).expect("an envelope")
}

/// Keys of chunk items in the fake.
fn chunk_keys(ch: &Chunked<FakeRaw>) -> Vec<Vec<u8>> {
    let mut keys: Vec<_> = ch.raw().items().into_keys().filter(|k| k[0] == b'~').collect();
    keys.sort();
    keys
}

fn value(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
}

#[tokio::test]
async fn round_trip_across_chunk_boundaries() {
    let ch = setup();
    for len in [0, 1, CS - 1, CS, CS + 1, 2 * CS - 1, 2 * CS, 2 * CS + 1, 7 * CS + 3] {
        let v = value(len, len as u8);
        let r = StoreReq {
            flags: 7,
            ..req(Mode::Set, b"k", &v)
        };
        let cas = stored_cas(ch.store(&r).await.unwrap());
        let got = read(&ch, b"k", ReadOpts::default()).await.unwrap();
        assert_eq!(
            (got.value.len(), got.flags, got.cas, got.ttl),
            (len, 7, cas, -1),
            "len {len}"
        );
        assert_eq!(got.value, v, "len {len}");
        let env = envelope_of(&ch, b"k");
        assert_eq!(env.chunk_count as usize, if len > CS { len.div_ceil(CS) } else { 0 });
        // Every chunk item but the last has the full size, the last only its data; the previous
        // value's chunks are gone.
        let chunks = chunk_keys(&ch);
        assert_eq!(chunks.len(), env.chunk_count as usize, "len {len}");
        let mut sizes: Vec<usize> = chunks.iter().map(|k| ch.raw().items()[k].value.len()).collect();
        sizes.sort_unstable();
        if let Some((&shortest, full)) = sizes.split_first() {
            assert!(full.iter().all(|&s| s == CHUNK_HEADER_LEN + CS), "len {len}: {sizes:?}");
            assert_eq!(
                shortest,
                CHUNK_HEADER_LEN + (len - (chunks.len() - 1) * CS),
                "len {len}"
            );
        }
    }
    assert_eq!(ch.chunk_stats().chunked_writes, 5);
}

#[tokio::test]
async fn inline_value_is_one_item_and_one_request() {
    let ch = setup();
    set(&ch, b"k", b"hello").await;
    ch.raw().clear_log();
    assert_eq!(get(&ch, b"k").await.as_deref(), Some(&b"hello"[..]));
    assert_eq!(ch.raw().log(), vec![(Op::Get, b"k".to_vec())]);
    let items = ch.raw().items();
    assert_eq!(items.len(), 1);
    assert_eq!(items[&b"k"[..]].value.len(), ENV_LEN + 5);
}

#[tokio::test]
async fn writes_chunks_first_index_last() {
    let ch = setup();
    set(&ch, b"k", &value(25, 0)).await;
    let log = ch.raw().log();
    let stores: Vec<_> = log.iter().filter(|(op, _)| matches!(op, Op::Store(_))).collect();
    assert_eq!(stores.len(), 4);
    assert!(stores[..3].iter().all(|(_, k)| k[0] == b'~'));
    assert_eq!(stores[3].1, b"k");
}

/// Earlier builds padded the last chunk to the full chunk size with zeros: such values still read,
/// and only their data comes back.
#[tokio::test]
async fn a_last_chunk_padded_by_an_earlier_build_still_reads() {
    let ch = setup();
    let v = value(2 * CS + 5, 3);
    set(&ch, b"k", &v).await;
    let last = chunk_keys(&ch)
        .into_iter()
        .find(|k| ch.raw().items()[k].value.len() < CHUNK_HEADER_LEN + CS)
        .expect("a short last chunk");
    ch.raw().with_items(|items| {
        items.get_mut(&last).unwrap().value.resize(CHUNK_HEADER_LEN + CS, 0);
    });
    assert_eq!(get(&ch, b"k").await, Some(v));
}

#[tokio::test]
async fn chunk_keys_stay_short_for_long_user_keys() {
    let ch = setup();
    let key = [b'x'; 250];
    set(&ch, &key, &value(35, 1)).await;
    for k in chunk_keys(&ch) {
        assert_eq!(k.len(), CHUNK_KEY_LEN);
    }
    assert_eq!(get(&ch, &key).await, Some(value(35, 1)));
}

#[tokio::test]
async fn too_large_is_refused_before_any_write() {
    let ch = setup();
    let big = vec![0u8; 1 << 20];
    assert_eq!(ch.store(&req(Mode::Set, b"k", &big)).await, Ok(StoreOutcome::TooLarge));
    assert!(ch.raw().log().is_empty());
}

#[tokio::test]
async fn overwrite_deletes_old_chunks() {
    let ch = setup();
    set(&ch, b"k", &value(35, 1)).await;
    let old = chunk_keys(&ch);
    set(&ch, b"k", b"small").await;
    assert!(chunk_keys(&ch).is_empty());
    let deleted: Vec<_> = ch
        .raw()
        .log()
        .into_iter()
        .filter(|(op, _)| *op == Op::Delete)
        .map(|(_, k)| k)
        .collect();
    assert_eq!(deleted.len(), old.len());
    assert_eq!(ch.chunk_stats().chunks_deleted, 4);
}

#[tokio::test]
async fn overwrite_keeps_chunks_of_a_newer_value_seen_by_its_lookup() {
    // A plain set reads the old index alongside its own write; here that read returns a value
    // written *after* ours (higher memcached CAS): its chunks are live and must stay.
    let ch = setup();
    set(&ch, b"other", &value(25, 3)).await;
    let newer_env = envelope_of(&ch, b"other");
    let newer_chunks = chunk_keys(&ch);
    let newer = RawItem {
        flags: 0,
        cas: u64::MAX,
        value: newer_env.encode().to_vec().into(),
    };
    // "k" was chunked, so the small set below reads the old index.
    set(&ch, b"k", &value(35, 4)).await;
    let reply = Scripted::Reply(ScriptedReply::Get(Some(newer)));
    ch.raw().script(Op::Get, b"k", reply);
    ch.raw().clear_log();
    set(&ch, b"k", b"v").await;
    assert!(ch.raw().log().contains(&(Op::Get, b"k".to_vec())));
    let left = chunk_keys(&ch);
    assert!(newer_chunks.iter().all(|k| left.contains(k)));
    assert!(!ch.raw().log().iter().any(|(op, _)| *op == Op::Delete));
}

#[tokio::test]
async fn failed_chunk_write_cleans_up_and_keeps_the_old_value() {
    let ch = setup();
    set(&ch, b"k", b"old").await;
    // The third chunk is refused (memcached out of memory).
    let v = value(45, 2);
    let env_token_probe = |ch: &Chunked<FakeRaw>| chunk_keys(ch).len();
    ch.raw()
        .script(Op::Store(RawMode::Set), b"~", Scripted::Before(Box::new(|_| {})));
    ch.raw()
        .script(Op::Store(RawMode::Set), b"~", Scripted::Before(Box::new(|_| {})));
    ch.raw().script(
        Op::Store(RawMode::Set),
        b"~",
        Scripted::Reply(ScriptedReply::Stored(RawStored::OutOfMemory)),
    );
    assert_eq!(ch.store(&req(Mode::Set, b"k", &v)).await, Ok(StoreOutcome::OutOfMemory));
    assert_eq!(env_token_probe(&ch), 0);
    assert_eq!(get(&ch, b"k").await.as_deref(), Some(&b"old"[..]));

    // A transport failure on a chunk: an error, and no chunk left behind.
    ch.raw().script(
        Op::Store(RawMode::Set),
        b"~",
        Scripted::Reply(ScriptedReply::Err(BackendError::Unavailable)),
    );
    assert_eq!(
        ch.store(&req(Mode::Set, b"k", &v)).await,
        Err(BackendError::Unavailable)
    );
    assert!(chunk_keys(&ch).is_empty());
    assert_eq!(get(&ch, b"k").await.as_deref(), Some(&b"old"[..]));
}

#[tokio::test]
async fn writer_dying_midway_leaves_the_old_value() {
    let ch = setup();
    let old = value(33, 9);
    set(&ch, b"k", &old).await;
    // The fourth chunk write never completes: the writer is dropped while waiting.
    for _ in 0..3 {
        ch.raw()
            .script(Op::Store(RawMode::Set), b"~", Scripted::Before(Box::new(|_| {})));
    }
    ch.raw().script(Op::Store(RawMode::Set), b"~", Scripted::Hang);
    let new = value(60, 1);
    let r = req(Mode::Set, b"k", &new);
    let write = ch.store(&r);
    assert!(tokio::time::timeout(std::time::Duration::from_millis(20), write)
        .await
        .is_err());
    assert_eq!(get(&ch, b"k").await, Some(old.clone()));
    // Orphans: the dead writer's chunks, unreachable, with the value's TTL (here none).
    assert!(chunk_keys(&ch).len() > 4);
    // The next overwrite and delete work as usual.
    set(&ch, b"k", &new).await;
    assert_eq!(get(&ch, b"k").await, Some(new));
}

#[tokio::test]
async fn orphans_expire_with_the_value() {
    let ch = setup();
    ch.raw().script(Op::Store(RawMode::Set), b"k", Scripted::Hang);
    let v = value(30, 4);
    let r = StoreReq {
        expiry: ch.clock().expiry(100),
        ..req(Mode::Set, b"k", &v)
    };
    assert!(tokio::time::timeout(std::time::Duration::from_millis(20), ch.store(&r))
        .await
        .is_err());
    assert_eq!(chunk_keys(&ch).len(), 3);
    advance(&ch, 100);
    assert!(chunk_keys(&ch).is_empty());
}

#[tokio::test]
async fn a_chunk_with_another_token_is_never_served() {
    let ch = setup();
    set(&ch, b"k", &value(25, 5)).await;
    let env = envelope_of(&ch, b"k");
    let keys = ChunkKeys::new(b"k", env.token);
    // Chunk 1 is replaced by chunk 1 of some other value (same size, other token).
    ch.raw().with_items(|items| {
        let item = items.get_mut(&keys.key(1)[..]).unwrap();
        item.value[0] ^= 0xff;
    });
    assert_eq!(get(&ch, b"k").await, None);
    // The lost value's index and chunks are removed.
    assert!(ch.raw().items().is_empty());
    assert_eq!(ch.chunk_stats().broken_reads, 1);
}

#[tokio::test]
async fn a_missing_chunk_is_a_miss_and_frees_add() {
    let ch = setup();
    set(&ch, b"k", &value(25, 5)).await;
    let env = envelope_of(&ch, b"k");
    let keys = ChunkKeys::new(b"k", env.token);
    ch.raw().with_items(|items| items.remove(&keys.key(2)[..]));
    // add probes the chunks (TOUCH) and replaces the lost value.
    let o = ch.store(&req(Mode::Add, b"k", b"fresh")).await.unwrap();
    assert!(matches!(o, StoreOutcome::Stored { .. }));
    assert_eq!(get(&ch, b"k").await.as_deref(), Some(&b"fresh"[..]));
    assert!(chunk_keys(&ch).is_empty());

    set(&ch, b"j", &value(25, 5)).await;
    let env = envelope_of(&ch, b"j");
    ch.raw()
        .with_items(|items| items.remove(&ChunkKeys::new(b"j", env.token).key(0)[..]));
    assert_eq!(get(&ch, b"j").await, None);
    assert!(!ch.raw().items().contains_key(&b"j"[..]));
}

#[tokio::test]
async fn reader_racing_an_overwrite_reads_the_new_value() {
    let ch = setup();
    let (a, b) = (value(35, 1), value(45, 2));
    set(&ch, b"k", &b).await;
    let after = ch.raw().items();
    set(&ch, b"k", &a).await;
    // While the reader fetches A's chunks, a writer replaces A by B (and deletes A's chunks).
    ch.raw()
        .script(Op::Get, b"~", Scripted::Before(Box::new(move |items| *items = after)));
    assert_eq!(get(&ch, b"k").await, Some(b));
}

#[tokio::test]
async fn reader_gives_up_with_a_miss_when_values_keep_changing() {
    let ch = setup();
    set(&ch, b"k", &value(25, 1)).await;
    let env = envelope_of(&ch, b"k");
    let chunk0 = ChunkKeys::new(b"k", env.token).key(0).to_vec();
    for _ in 0..MAX_ATTEMPTS {
        // Every chunk read finds the chunk gone, and the index moved on (CAS changed).
        let chunk0 = chunk0.clone();
        ch.raw().script(
            Op::Get,
            b"~",
            Scripted::Before(Box::new(move |items| {
                items.remove(&chunk0);
                items.get_mut(&b"k"[..]).unwrap().cas += 1000;
            })),
        );
    }
    assert_eq!(get(&ch, b"k").await, None);
}

#[tokio::test]
async fn add_and_replace() {
    let ch = setup();
    assert_eq!(
        ch.store(&req(Mode::Replace, b"k", &value(25, 1))).await,
        Ok(StoreOutcome::NotStored)
    );
    assert!(ch.raw().items().is_empty(), "refused replace leaves no chunks");
    assert!(matches!(
        ch.store(&req(Mode::Add, b"k", &value(25, 1))).await,
        Ok(StoreOutcome::Stored { .. })
    ));
    assert_eq!(
        ch.store(&req(Mode::Add, b"k", &value(35, 2))).await,
        Ok(StoreOutcome::NotStored)
    );
    assert_eq!(chunk_keys(&ch).len(), 3, "refused add deleted its chunks");
    assert!(matches!(
        ch.store(&req(Mode::Replace, b"k", b"x")).await,
        Ok(StoreOutcome::Stored { .. })
    ));
    assert_eq!(get(&ch, b"k").await.as_deref(), Some(&b"x"[..]));
    assert!(chunk_keys(&ch).is_empty());
}

#[tokio::test]
async fn add_replaces_what_does_not_count() {
    let ch = setup();
    // A foreign item (no envelope) reads as a miss; add replaces it.
    ch.raw().with_items(|items| {
        items.insert(
            b"k".to_vec(),
            FakeItem {
                flags: 0,
                exptime: 0,
                cas: 1,
                value: b"raw".to_vec(),
            },
        )
    });
    assert_eq!(get(&ch, b"k").await, None);
    assert!(matches!(
        ch.store(&req(Mode::Add, b"k", b"mine")).await,
        Ok(StoreOutcome::Stored { .. })
    ));
    assert_eq!(get(&ch, b"k").await.as_deref(), Some(&b"mine"[..]));

    // An index expired by its envelope that memcached still holds (clocks a second apart).
    let r = StoreReq {
        expiry: ch.clock().expiry(10),
        ..req(Mode::Set, b"e", b"old")
    };
    ch.store(&r).await.unwrap();
    ch.raw()
        .with_items(|items| items.get_mut(&b"e"[..]).unwrap().exptime = 0);
    ch.clock().advance(10);
    assert_eq!(get(&ch, b"e").await, None);
    assert!(matches!(
        ch.store(&req(Mode::Add, b"e", b"new")).await,
        Ok(StoreOutcome::Stored { .. })
    ));
    assert_eq!(get(&ch, b"e").await.as_deref(), Some(&b"new"[..]));
}

#[tokio::test]
async fn cas_on_chunked_values() {
    let ch = setup();
    let cas = stored_cas(set(&ch, b"k", &value(25, 1)).await);
    let with_cas = |v: &'static [u8], c| StoreReq {
        cas: Some(c),
        ..req(Mode::Set, b"k", v)
    };
    assert_eq!(ch.store(&with_cas(&[7; 31], cas + 1)).await, Ok(StoreOutcome::Exists));
    assert_eq!(chunk_keys(&ch).len(), 3, "a refused cas leaves only the current chunks");
    let cas2 = stored_cas(ch.store(&with_cas(&[7; 31], cas)).await.unwrap());
    assert!(cas2 > cas);
    assert_eq!(get(&ch, b"k").await, Some(vec![7; 31]));
    assert_eq!(chunk_keys(&ch).len(), 4);
    assert_eq!(ch.store(&with_cas(b"x", cas)).await, Ok(StoreOutcome::Exists));
    let r = StoreReq {
        cas: Some(1),
        ..req(Mode::Set, b"nope", b"x")
    };
    assert_eq!(ch.store(&r).await, Ok(StoreOutcome::NotFound));
    let s = ch.stats();
    assert_eq!((s.cas_hits, s.cas_badval, s.cas_misses), (1, 2, 1));
}

#[tokio::test]
async fn cas_survives_a_concurrent_touch() {
    // memcached's touch keeps the CAS: a client's gets + cas works across another's touch,
    // even though the layer rewrote the index (and memcached's CAS of it changed).
    let ch = setup();
    let cas = stored_cas(set(&ch, b"k", &value(25, 1)).await);
    assert_eq!(ch.touch(b"k", ch.clock().expiry(100)).await, Ok(true));
    assert_eq!(read(&ch, b"k", ReadOpts::default()).await.unwrap().cas, cas);
    let r = StoreReq {
        cas: Some(cas),
        ..req(Mode::Set, b"k", b"new")
    };
    assert!(matches!(ch.store(&r).await, Ok(StoreOutcome::Stored { .. })));
}

#[tokio::test]
async fn cas_retries_when_the_index_changes_under_it() {
    let ch = setup();
    let cas = stored_cas(set(&ch, b"k", b"v1").await);
    // The CAS write on the index loses once (a touch got in between): read again, same client
    // CAS, write again.
    ch.raw().script(
        Op::Store(RawMode::Set),
        b"k",
        Scripted::Reply(ScriptedReply::Stored(RawStored::Exists)),
    );
    let r = StoreReq {
        cas: Some(cas),
        ..req(Mode::Set, b"k", b"v2")
    };
    assert!(matches!(ch.store(&r).await, Ok(StoreOutcome::Stored { .. })));
    assert_eq!(get(&ch, b"k").await.as_deref(), Some(&b"v2"[..]));
    assert_eq!(ch.chunk_stats().races, 1);
}

#[tokio::test]
async fn ms_invalidate_with_an_old_cas_stores_stale() {
    let ch = setup();
    let v25_1 = value(25, 1);
    let r = StoreReq {
        expiry: ch.clock().expiry(100),
        ..req(Mode::Set, b"k", &v25_1)
    };
    let cas = stored_cas(ch.store(&r).await.unwrap());
    let v35_2 = value(35, 2);
    let r = StoreReq {
        cas: Some(cas - 1),
        invalidate: true,
        expiry: ch.clock().expiry(5000),
        ..req(Mode::Set, b"k", &v35_2)
    };
    assert!(matches!(ch.store(&r).await, Ok(StoreOutcome::Stored { .. })));
    let got = read(&ch, b"k", ReadOpts::default()).await.unwrap();
    assert_eq!(got.value, value(35, 2));
    assert!(got.stale && got.win);
    assert_eq!(got.ttl, 100, "keeps the old TTL");
    // Its chunks got the old TTL too.
    advance(&ch, 100);
    assert!(ch.raw().items().is_empty());
}

#[tokio::test]
async fn touch_and_gat_update_index_and_chunks() {
    let ch = setup();
    set(&ch, b"k", &value(25, 1)).await;
    assert_eq!(ch.touch(b"k", ch.clock().expiry(100)).await, Ok(true));
    assert_eq!(ch.touch(b"nope", ch.clock().expiry(100)).await, Ok(false));
    let got = read(&ch, b"k", ReadOpts::default()).await.unwrap();
    assert_eq!(got.ttl, 100);
    let deadline = ch.clock().unix_now() + 100;
    assert!(ch.raw().items().values().all(|i| i.exptime == deadline));

    // gat: the value and the TTL it had (as memcached's `mg t T`), and the new TTL on
    // everything.
    let opts = ReadOpts {
        touch: Some(ch.clock().expiry(50)),
        ..ReadOpts::default()
    };
    let got = read(&ch, b"k", opts).await.unwrap();
    assert_eq!((got.value, got.ttl), (value(25, 1), 100));
    assert_eq!(read(&ch, b"k", ReadOpts::default()).await.unwrap().ttl, 50);
    let deadline = ch.clock().unix_now() + 50;
    assert!(ch.raw().items().values().all(|i| i.exptime == deadline));
    advance(&ch, 50);
    assert_eq!(get(&ch, b"k").await, None);
    assert!(ch.raw().items().is_empty());
}

#[tokio::test]
async fn touch_of_a_lost_value_is_a_miss() {
    let ch = setup();
    set(&ch, b"k", &value(25, 1)).await;
    let env = envelope_of(&ch, b"k");
    ch.raw()
        .with_items(|items| items.remove(&ChunkKeys::new(b"k", env.token).key(1)[..]));
    assert_eq!(ch.touch(b"k", ch.clock().expiry(10)).await, Ok(false));
    assert!(ch.raw().items().is_empty());
}

#[tokio::test]
async fn gat_retries_when_the_index_changes_under_it() {
    let ch = setup();
    set(&ch, b"k", b"v").await;
    ch.raw().script(
        Op::Store(RawMode::Set),
        b"k",
        Scripted::Reply(ScriptedReply::Stored(RawStored::Exists)),
    );
    let opts = ReadOpts {
        touch: Some(ch.clock().expiry(30)),
        ..ReadOpts::default()
    };
    // The TTL before the touch (none), and the touch made on the second try.
    assert_eq!(read(&ch, b"k", opts).await.unwrap().ttl, -1);
    assert_eq!(ch.chunk_stats().races, 1);
    assert_eq!(read(&ch, b"k", ReadOpts::default()).await.unwrap().ttl, 30);
}

/// A script step that, just before the call, writes `value` under `key` as another client would,
/// with memcached CAS `cas`.
fn written_by_another(key: &'static str, cas: u64, value: Vec<u8>) -> Scripted {
    Scripted::Before(Box::new(move |items| {
        items.insert(
            key.as_bytes().to_vec(),
            FakeItem {
                flags: 0,
                exptime: 0,
                cas,
                value,
            },
        );
    }))
}

#[tokio::test]
async fn vivify_and_win() {
    let ch = setup();
    let opts = ReadOpts {
        vivify: Some(ch.clock().expiry(30)),
        ..ReadOpts::default()
    };
    let first = read(&ch, b"k", opts).await.unwrap();
    assert!(first.win && !first.win_taken && first.value.is_empty());
    assert_eq!(first.ttl, 30);
    let second = read(&ch, b"k", opts).await.unwrap();
    assert!(!second.win && second.win_taken);
    // The winner stores the real value: the token goes with the stub.
    set(&ch, b"k", &value(25, 3)).await;
    let third = read(&ch, b"k", opts).await.unwrap();
    assert!(!third.win && !third.win_taken);
    assert_eq!(third.value, value(25, 3));
}

#[tokio::test]
async fn vivify_loses_to_a_concurrent_creator() {
    let ch = setup();
    // Between our miss and our add, another client stores the key.
    let other = ch.raw().take_cas();
    let env = Envelope {
        bits: 0,
        flags: 3,
        expiry: 0,
        total_len: 2,
        chunk_size: CS as u32,
        chunk_count: 0,
        version: crate::model::Version { hlc: 1, zone: 0 },
        token: 1,
        cas: 77,
    };
    let mut v = env.encode().to_vec();
    v.extend_from_slice(b"hi");
    ch.raw()
        .script(Op::Store(RawMode::Add), b"k", written_by_another("k", other, v));
    let opts = ReadOpts {
        vivify: Some(ch.clock().expiry(30)),
        ..ReadOpts::default()
    };
    let got = read(&ch, b"k", opts).await.unwrap();
    assert_eq!((got.value, got.cas, got.win), (b"hi".to_vec(), 77, false));
}

#[tokio::test]
async fn recache_below_wins_once() {
    let ch = setup();
    let v25_1 = value(25, 1);
    let r = StoreReq {
        expiry: ch.clock().expiry(20),
        ..req(Mode::Set, b"k", &v25_1)
    };
    let cas = stored_cas(ch.store(&r).await.unwrap());
    let opts = ReadOpts {
        recache_below: Some(30),
        ..ReadOpts::default()
    };
    let first = read(&ch, b"k", opts).await.unwrap();
    assert!(first.win && !first.stale);
    assert_eq!(first.cas, cas, "winning does not change the CAS");
    let second = read(&ch, b"k", opts).await.unwrap();
    assert!(!second.win && second.win_taken);
    let opts = ReadOpts {
        recache_below: Some(10),
        ..ReadOpts::default()
    };
    let set2 = set(&ch, b"j", b"v").await;
    assert!(matches!(set2, StoreOutcome::Stored { .. }));
    assert!(
        !read(&ch, b"j", opts).await.unwrap().win,
        "never-expiring items cannot win"
    );
}

#[tokio::test]
async fn md_invalidate() {
    let ch = setup();
    let cas = stored_cas(set(&ch, b"k", &value(25, 1)).await);
    assert_eq!(
        ch.invalidate(b"k", Some(cas + 1), None).await,
        Ok(DeleteOutcome::Exists)
    );
    assert_eq!(ch.invalidate(b"nope", None, None).await, Ok(DeleteOutcome::NotFound));
    assert_eq!(
        ch.invalidate(b"k", Some(cas), Some(ch.clock().expiry(30))).await,
        Ok(DeleteOutcome::Deleted)
    );
    let first = read(&ch, b"k", ReadOpts::default()).await.unwrap();
    assert!(first.stale && first.win);
    assert!(first.cas > cas, "md I gives a new CAS");
    assert_eq!((first.value, first.ttl), (value(25, 1), 30));
    let second = read(&ch, b"k", ReadOpts::default()).await.unwrap();
    assert!(second.stale && !second.win && second.win_taken);
    // Invalidating again hands the token out again.
    ch.invalidate(b"k", None, None).await.unwrap();
    assert!(read(&ch, b"k", ReadOpts::default()).await.unwrap().win);
    let env = envelope_of(&ch, b"k");
    assert_eq!(env.bits & (STALE | TOKEN_SENT), STALE | TOKEN_SENT);
}

/// A win (or touch) whose record finds a newer value in place answers what it read: the read
/// came before that write. Reading again would answer with the newer value, which over
/// memcached may be a write pipelined behind this read in the same burst.
#[tokio::test]
async fn a_win_overtaken_by_a_new_value_answers_what_it_read() {
    let ch = setup();
    set(&ch, b"k", &value(25, 1)).await;
    ch.invalidate(b"k", None, None).await.unwrap();
    // Just before the win is recorded, another write replaces the value.
    let newer = ch.raw().take_cas();
    let mut env = envelope_of(&ch, b"k");
    env.bits = 0;
    env.token ^= 1;
    env.total_len = 3;
    env.chunk_count = 0;
    let mut v = env.encode().to_vec();
    v.extend_from_slice(b"new");
    ch.raw()
        .script(Op::Store(RawMode::Set), b"k", written_by_another("k", newer, v));
    let got = read(&ch, b"k", ReadOpts::default()).await.unwrap();
    assert_eq!(got.value, value(25, 1));
    assert!(got.stale && got.win);
    assert_eq!(ch.chunk_stats().races, 1);
    assert_eq!(get(&ch, b"k").await.unwrap(), b"new", "the newer value stays");
}

#[tokio::test]
async fn append_and_prepend() {
    let ch = setup();
    assert_eq!(
        ch.store(&req(Mode::Append, b"k", b"x")).await,
        Ok(StoreOutcome::NotStored)
    );
    let r = StoreReq {
        flags: 5,
        expiry: ch.clock().expiry(100),
        ..req(Mode::Set, b"k", b"middle")
    };
    ch.store(&r).await.unwrap();
    // Inline grows into chunks, and chunks into more chunks; flags and expiry are kept.
    let r = StoreReq {
        flags: 9,
        expiry: Expiry::NEVER,
        ..req(Mode::Append, b"k", b"-end-of-it")
    };
    let c1 = stored_cas(ch.store(&r).await.unwrap());
    ch.store(&req(Mode::Prepend, b"k", b"start-")).await.unwrap();
    let got = read(&ch, b"k", ReadOpts::default()).await.unwrap();
    assert_eq!(got.value, b"start-middle-end-of-it");
    assert_eq!((got.flags, got.ttl), (5, 100));
    assert!(got.cas > c1);
    assert_eq!(chunk_keys(&ch).len(), 3, "the previous value's chunks are gone");
    // CAS checked on append.
    let r = StoreReq {
        cas: Some(c1),
        ..req(Mode::Append, b"k", b"!")
    };
    assert_eq!(ch.store(&r).await, Ok(StoreOutcome::Exists));
    let r = StoreReq {
        cas: Some(got.cas),
        ..req(Mode::Append, b"k", b"!")
    };
    assert!(matches!(ch.store(&r).await, Ok(StoreOutcome::Stored { .. })));
    // The combined value must fit.
    let big = vec![0u8; (1 << 20) - 70];
    assert_eq!(
        ch.store(&req(Mode::Append, b"k", &big)).await,
        Ok(StoreOutcome::TooLarge)
    );
}

#[tokio::test]
async fn append_retries_when_the_value_changes_under_it() {
    let ch = setup();
    set(&ch, b"k", &value(15, 0)).await;
    ch.raw().script(
        Op::Store(RawMode::Set),
        b"k",
        Scripted::Reply(ScriptedReply::Stored(RawStored::Exists)),
    );
    ch.store(&req(Mode::Append, b"k", b"++")).await.unwrap();
    let mut expected = value(15, 0);
    expected.extend_from_slice(b"++");
    assert_eq!(get(&ch, b"k").await, Some(expected));
    assert_eq!(chunk_keys(&ch).len(), 2, "the losing attempt's chunks are deleted");
}

fn arith<'a>(key: &'a [u8], incr: bool, delta: u64) -> ArithReq<'a> {
    ArithReq {
        key,
        incr,
        delta,
        cas: None,
        vivify: None,
        touch: None,
    }
}

async fn arith_value(ch: &Chunked<FakeRaw>, r: ArithReq<'_>) -> ArithOutcome {
    ch.arith(&r).await.unwrap()
}

#[tokio::test]
async fn incr_decr() {
    let ch = setup();
    assert_eq!(arith_value(&ch, arith(b"n", true, 1)).await, ArithOutcome::NotFound);
    let r = StoreReq {
        flags: 4,
        ..req(Mode::Set, b"n", b"100")
    };
    ch.store(&r).await.unwrap();
    // A shorter result keeps the length, padded with spaces (memcached's in-place rule).
    let ArithOutcome::Done { value, ttl, .. } = arith_value(&ch, arith(b"n", false, 95)).await else {
        panic!()
    };
    assert_eq!((value, ttl), (5, -1));
    assert_eq!(get(&ch, b"n").await.as_deref(), Some(&b"5  "[..]));
    let ArithOutcome::Done { value, .. } = arith_value(&ch, arith(b"n", true, 1000)).await else {
        panic!()
    };
    assert_eq!(value, 1005);
    assert_eq!(get(&ch, b"n").await.as_deref(), Some(&b"1005"[..]));
    assert_eq!(read(&ch, b"n", ReadOpts::default()).await.unwrap().flags, 4);
    // decr stops at 0, incr wraps.
    let ArithOutcome::Done { value, .. } = arith_value(&ch, arith(b"n", false, 5000)).await else {
        panic!()
    };
    assert_eq!(value, 0);
    set(&ch, b"n", b"18446744073709551615").await;
    let ArithOutcome::Done { value, .. } = arith_value(&ch, arith(b"n", true, 2)).await else {
        panic!()
    };
    assert_eq!(value, 1);
    // Non-numeric, and chunked (never a number).
    set(&ch, b"t", b"12a").await;
    assert_eq!(arith_value(&ch, arith(b"t", true, 1)).await, ArithOutcome::NonNumeric);
    set(&ch, b"big", &[b'1'; 25]).await;
    assert_eq!(arith_value(&ch, arith(b"big", true, 1)).await, ArithOutcome::NonNumeric);
    let s = ch.stats();
    assert_eq!((s.incr_hits, s.incr_misses, s.decr_hits), (2, 1, 2));
}

#[tokio::test]
async fn incr_with_cas_vivify_and_touch() {
    let ch = setup();
    let r = ArithReq {
        vivify: Some((10, ch.clock().expiry(60))),
        ..arith(b"n", true, 5)
    };
    let ArithOutcome::Done {
        value,
        cas,
        ttl,
        created,
    } = arith_value(&ch, r).await
    else {
        panic!()
    };
    assert_eq!((value, ttl, created), (10, 60, true), "created with the initial value");
    let r = ArithReq {
        cas: Some(cas + 1),
        ..arith(b"n", true, 1)
    };
    assert_eq!(arith_value(&ch, r).await, ArithOutcome::Exists);
    let r = ArithReq {
        cas: Some(cas),
        touch: Some(ch.clock().expiry(5)),
        ..arith(b"n", true, 1)
    };
    let ArithOutcome::Done {
        value,
        cas: c2,
        ttl,
        created,
    } = arith_value(&ch, r).await
    else {
        panic!()
    };
    assert_eq!((value, ttl, created), (11, 5, false));
    assert!(c2 > cas);
    // Losing the CAS race on the index: read again and apply the delta to the new value.
    ch.raw().script(
        Op::Store(RawMode::Set),
        b"n",
        Scripted::Reply(ScriptedReply::Stored(RawStored::Exists)),
    );
    let ArithOutcome::Done { value, .. } = arith_value(&ch, arith(b"n", true, 1)).await else {
        panic!()
    };
    assert_eq!(value, 12);
}

#[tokio::test]
async fn delete_index_first() {
    let ch = setup();
    let cas = stored_cas(set(&ch, b"k", &value(25, 1)).await);
    assert_eq!(ch.delete(b"k", Some(cas + 1)).await, Ok(DeleteOutcome::Exists));
    ch.raw().clear_log();
    assert_eq!(ch.delete(b"k", Some(cas)).await, Ok(DeleteOutcome::Deleted));
    let deletes: Vec<_> = ch
        .raw()
        .log()
        .into_iter()
        .filter(|(op, _)| *op == Op::Delete)
        .map(|(_, k)| k)
        .collect();
    assert_eq!(deletes.len(), 4);
    assert_eq!(deletes[0], b"k");
    assert!(ch.raw().items().is_empty());
    assert_eq!(ch.delete(b"k", None).await, Ok(DeleteOutcome::NotFound));
    let s = ch.stats();
    assert_eq!((s.delete_hits, s.delete_misses), (1, 1));
}

#[tokio::test]
async fn flush_passes_the_delay() {
    let ch = setup();
    set(&ch, b"k", &value(25, 1)).await;
    ch.flush_all(10).await.unwrap();
    ch.flush_all(-1).await.unwrap();
    ch.flush_all(0).await.unwrap();
    assert_eq!(ch.raw().flushes(), vec![10, 0, 0]);
    assert_eq!(get(&ch, b"k").await, None);
}

#[tokio::test]
async fn transport_errors_pass_through() {
    let ch = setup();
    ch.raw().script(
        Op::Get,
        b"k",
        Scripted::Reply(ScriptedReply::Err(BackendError::Timeout)),
    );
    assert_eq!(
        ch.read(b"k", &ReadOpts::default(), |_| ()).await,
        Err(BackendError::Timeout)
    );
    set(&ch, b"k", &value(25, 1)).await;
    ch.raw().script(
        Op::Get,
        b"~",
        Scripted::Reply(ScriptedReply::Err(BackendError::Unavailable)),
    );
    assert_eq!(
        ch.read(b"k", &ReadOpts::default(), |_| ()).await,
        Err(BackendError::Unavailable)
    );
    // The value is intact once memcached answers again.
    assert_eq!(get(&ch, b"k").await, Some(value(25, 1)));
}

#[tokio::test]
async fn expiry_in_the_envelope_and_in_memcached() {
    let ch = setup();
    let v25_1 = value(25, 1);
    let r = StoreReq {
        expiry: ch.clock().expiry(10),
        ..req(Mode::Set, b"k", &v25_1)
    };
    ch.store(&r).await.unwrap();
    let deadline = ch.clock().unix_now() + 10;
    assert_eq!(envelope_of(&ch, b"k").expiry as i64, deadline);
    assert!(ch.raw().items().values().all(|i| i.exptime == deadline));
    assert_eq!(read(&ch, b"k", ReadOpts::default()).await.unwrap().ttl, 10);
    advance(&ch, 4);
    assert_eq!(read(&ch, b"k", ReadOpts::default()).await.unwrap().ttl, 6);
    // Already expired: memcached gets an exptime in the past.
    let r = StoreReq {
        expiry: ch.clock().expiry(-1),
        ..req(Mode::Set, b"k", b"gone")
    };
    ch.store(&r).await.unwrap();
    assert_eq!(get(&ch, b"k").await, None);
}

#[test]
fn numbers() {
    assert_eq!(parse_number(b"42"), Some(42));
    assert_eq!(parse_number(b" 42  "), Some(42));
    assert_eq!(parse_number(b"5  "), Some(5));
    assert_eq!(parse_number(b""), None);
    assert_eq!(parse_number(b"4 2"), None);
    assert_eq!(parse_number(b"-1"), None);
    assert_eq!(parse_number(b"18446744073709551616"), None);
    assert_eq!(parse_number(&[b'1'; 65]), None);
}

#[test]
fn default_chunk_item_fills_slab_class_33() {
    assert_eq!(CHUNK_ITEM_OVERHEAD, 112);
    assert_eq!(DEFAULT_CHUNK_SIZE, 129_264);
    let (class, size) =
        riven_memcache::meta::memcached_item_size(CHUNK_KEY_LEN, CHUNK_HEADER_LEN + DEFAULT_CHUNK_SIZE, 0);
    assert_eq!((class, size), (33, 129_376));
    assert_eq!(ChunkConfig::chunk_size_for_item(129_376), DEFAULT_CHUNK_SIZE);
}

#[tokio::test]
async fn delete_retries_when_the_index_changes_under_it() {
    let ch = setup();
    set(&ch, b"k", &value(25, 1)).await;
    ch.raw().script(
        Op::Delete,
        b"k",
        Scripted::Reply(ScriptedReply::Deleted(RawDeleted::Exists)),
    );
    assert_eq!(ch.delete(b"k", None).await, Ok(DeleteOutcome::Deleted));
    assert!(ch.raw().items().is_empty());
    assert_eq!(ch.chunk_stats().races, 1);
}

#[tokio::test]
async fn touch_finding_a_chunk_gone_drops_the_value() {
    let ch = setup();
    set(&ch, b"k", &value(25, 1)).await;
    ch.raw()
        .script(Op::Touch, b"~", Scripted::Reply(ScriptedReply::Touched(false)));
    assert_eq!(ch.touch(b"k", ch.clock().expiry(10)).await, Ok(false));
    assert!(ch.raw().items().is_empty());
}

#[tokio::test]
async fn small_sets_read_the_old_index_only_where_chunks_may_be() {
    let ch = setup();
    set(&ch, b"k", b"a").await;
    ch.raw().clear_log();
    set(&ch, b"k", b"b").await;
    assert_eq!(
        ch.raw().log(),
        vec![(Op::Store(RawMode::Set), b"k".to_vec())],
        "one request"
    );
    // Once chunked, the next small set looks and cleans up; after that it need not.
    set(&ch, b"k", &value(25, 1)).await;
    ch.raw().clear_log();
    set(&ch, b"k", b"c").await;
    assert!(ch.raw().log().contains(&(Op::Get, b"k".to_vec())));
    assert!(chunk_keys(&ch).is_empty());
    ch.raw().clear_log();
    set(&ch, b"k", b"d").await;
    assert_eq!(ch.raw().log().len(), 1);
}

#[tokio::test]
async fn hints_from_before_a_restart_are_lost_and_chunks_left_to_the_lru() {
    let clock = Clock::manual();
    let raw = std::sync::Arc::new(FakeRaw::new(clock.unix_now()));
    let cfg = ChunkConfig {
        chunk_size: CS,
        ..ChunkConfig::default()
    };
    let before = Chunked::new(raw.clone(), Clock::manual(), cfg.clone());
    before.store(&req(Mode::Set, b"k", &value(25, 1))).await.unwrap();
    let after = Chunked::new(raw.clone(), clock, cfg);
    after.store(&req(Mode::Set, b"k", b"small")).await.unwrap();
    // The value is right; the old chunks are unreachable garbage for memcached's LRU.
    assert_eq!(
        after.read(b"k", &ReadOpts::default(), |i| i.value.len()).await,
        Ok(Some(5))
    );
    assert_eq!(raw.items().len(), 4);
    // A chunked write always reads the old index, so a large value cleans up after any writer.
    after.store(&req(Mode::Set, b"j", &value(25, 1))).await.unwrap();
    before.store(&req(Mode::Set, b"j", &value(35, 2))).await.unwrap();
    assert_eq!(raw.items().keys().filter(|k| k[0] == b'~').count(), 3 + 4);
}

#[tokio::test]
async fn a_stale_layout_hint_reads_the_index_value() {
    let ch = setup();
    let v = value(5 * CS + 7, 9);
    set(&ch, b"k", &v).await;
    let env = envelope_of(&ch, b"k");
    // As if another writer had replaced the value: the node's note names other chunks.
    let stale = Layout {
        token: env.token ^ 1,
        ..Layout::of(&env)
    };
    ch.hints.note(key_hash(b"k"), Some(stale));
    assert_eq!(get(&ch, b"k").await, Some(v.clone()));
    // The chunks read under the stale layout are not counted as a broken read.
    assert_eq!((ch.chunk_stats().chunked_reads, ch.chunk_stats().broken_reads), (1, 0));

    // A note of chunks for a key that now holds a small value.
    set(&ch, b"s", b"small").await;
    ch.hints.note(key_hash(b"s"), Some(Layout::of(&env)));
    assert_eq!(get(&ch, b"s").await.as_deref(), Some(&b"small"[..]));

    // The node's own note: the chunks come with the index, and read whole.
    ch.hints.note(key_hash(b"k"), Some(Layout::of(&env)));
    assert_eq!(get(&ch, b"k").await, Some(v));
    assert_eq!((ch.chunk_stats().chunked_reads, ch.chunk_stats().broken_reads), (2, 0));
}
