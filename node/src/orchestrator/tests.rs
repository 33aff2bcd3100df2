//! Every branch of the policy against scripted tiers: each fake replays the replies it is
//! given, in order, and records what it was asked, so a test states both what the tiers
//! answer and exactly which calls the policy must make (and in which order).

use std::collections::VecDeque;

use parking_lot::Mutex;

use super::*;
use crate::protocol::block_on;

enum L1Reply {
    Read(Result<Option<(&'static [u8], u32, u64)>>),
    Store(Result<StoreOutcome>),
    Delete(Result<DeleteOutcome>),
    Touch(Result<bool>),
    Arith(Result<ArithOutcome>),
}

enum L2Reply {
    Get(Option<L2Entry>),
    Set(bool),
    Delete(bool),
    Touch(bool),
}

#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, s: String) {
        self.0.lock().push(s);
    }
}

struct ScriptedL1 {
    replies: Mutex<VecDeque<L1Reply>>,
    log: Arc<Log>,
    /// The expiry of the last store request.
    last_expiry: Mutex<Option<Expiry>>,
}

impl ScriptedL1 {
    fn next(&self, what: String) -> L1Reply {
        self.log.push(format!("l1 {what}"));
        self.replies
            .lock()
            .pop_front()
            .unwrap_or_else(|| panic!("unexpected l1 call: {what}"))
    }
}

fn key(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

impl Backend for ScriptedL1 {
    async fn read<R, F>(&self, k: &[u8], opts: &ReadOpts, f: F) -> Result<Option<R>>
    where
        R: Send,
        F: FnOnce(&ItemView<'_>) -> R + Send,
    {
        let what = format!("read {}{}", key(k), if opts.touch.is_some() { " touch" } else { "" });
        let L1Reply::Read(r) = self.next(what) else {
            panic!("l1 read got another reply")
        };
        Ok(r?.map(|(v, flags, cas)| {
            f(&ItemView {
                flags,
                cas,
                ttl: -1,
                fetched_before: false,
                idle_secs: 0,
                stale: false,
                win: false,
                win_taken: false,
                version: Version::NONE,
                value: Value::slice(v),
            })
        }))
    }
    async fn store(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        *self.last_expiry.lock() = Some(req.expiry);
        let what = format!("store {:?} {} {}", req.mode, key(req.key), key(req.value));
        let L1Reply::Store(r) = self.next(what) else {
            panic!("l1 store got another reply")
        };
        r
    }
    async fn delete(&self, k: &[u8], _cas: Option<u64>) -> Result<DeleteOutcome> {
        let L1Reply::Delete(r) = self.next(format!("delete {}", key(k))) else {
            panic!()
        };
        r
    }
    async fn invalidate(&self, k: &[u8], _c: Option<u64>, _e: Option<Expiry>) -> Result<DeleteOutcome> {
        let L1Reply::Delete(r) = self.next(format!("invalidate {}", key(k))) else {
            panic!()
        };
        r
    }
    async fn touch(&self, k: &[u8], _e: Expiry) -> Result<bool> {
        let L1Reply::Touch(r) = self.next(format!("touch {}", key(k))) else {
            panic!()
        };
        r
    }
    async fn arith(&self, req: &ArithReq<'_>) -> Result<ArithOutcome> {
        let L1Reply::Arith(r) = self.next(format!("arith {}", key(req.key))) else {
            panic!()
        };
        r
    }
    async fn flush_all(&self, _delay: i64) -> Result<()> {
        self.log.push("l1 flush".into());
        Ok(())
    }
}

struct ScriptedL2 {
    replies: Mutex<VecDeque<L2Reply>>,
    log: Arc<Log>,
}

fn fail() -> L2Error {
    L2Error::Config("scripted failure".into())
}

impl ScriptedL2 {
    fn next(&self, what: String) -> L2Reply {
        self.log.push(format!("l2 {what}"));
        self.replies
            .lock()
            .pop_front()
            .unwrap_or_else(|| panic!("unexpected l2 call: {what}"))
    }
}

impl ColdTier for ScriptedL2 {
    async fn get(&self, k: &[u8]) -> std::result::Result<Option<L2Entry>, L2Error> {
        let L2Reply::Get(e) = self.next(format!("get {}", key(k))) else {
            panic!()
        };
        Ok(e)
    }
    async fn set(&self, k: &[u8], e: L2Entry) -> std::result::Result<(), L2Error> {
        let what = format!("set {} {}", key(k), key(&e.value));
        let L2Reply::Set(ok) = self.next(what) else { panic!() };
        ok.then_some(()).ok_or_else(fail)
    }
    async fn delete(&self, k: &[u8]) -> std::result::Result<bool, L2Error> {
        let L2Reply::Delete(found) = self.next(format!("delete {}", key(k))) else {
            panic!()
        };
        Ok(found)
    }
    async fn touch(&self, k: &[u8], _e: u64) -> std::result::Result<bool, L2Error> {
        let L2Reply::Touch(found) = self.next(format!("touch {}", key(k))) else {
            panic!()
        };
        Ok(found)
    }
    async fn flush_all(&self) -> std::result::Result<(), L2Error> {
        self.log.push("l2 flush".into());
        Ok(())
    }
}

type Fake = Orchestrator<ScriptedL1, ScriptedL2>;

fn fake(l1: Vec<L1Reply>, l2: Vec<L2Reply>) -> (Fake, Arc<Log>) {
    let log = Arc::new(Log::default());
    let o = Orchestrator::new(
        ScriptedL1 {
            replies: Mutex::new(l1.into()),
            log: log.clone(),
            last_expiry: Mutex::new(None),
        },
        Some(ScriptedL2 {
            replies: Mutex::new(l2.into()),
            log: log.clone(),
        }),
        Clock::manual(),
        Arc::new(Hlc::new(0)),
    );
    (o, log)
}

fn calls(log: &Log) -> Vec<String> {
    log.0.lock().clone()
}

/// An L2 entry with `ttl` seconds left (0: never expires). Manual clocks all start at the
/// same time, so this matches the orchestrator's clock.
fn entry(v: &str, ttl: u64) -> L2Entry {
    let now = Clock::manual().unix_now() as u64;
    L2Entry {
        value: Bytes::copy_from_slice(v.as_bytes()),
        flags: 7,
        expiry: if ttl == 0 { 0 } else { now + ttl },
        cas: 0,
        version: Version::default(),
    }
}

fn read(o: &Fake, k: &str, opts: ReadOpts) -> Result<Option<String>> {
    block_on(o.read(k.as_bytes(), &opts, |i| {
        let mut v = Vec::new();
        i.value.copy_to(&mut v);
        String::from_utf8(v).unwrap()
    }))
}

fn set_req<'a>(mode: Mode, k: &'a str, v: &'a str) -> StoreReq<'a> {
    StoreReq {
        mode,
        key: k.as_bytes(),
        flags: 0,
        expiry: Expiry::NEVER,
        value: v.as_bytes(),
        cas: None,
        invalidate: false,
    }
}

#[test]
fn l1_hit_never_asks_l2() {
    let (o, log) = fake(vec![L1Reply::Read(Ok(Some((b"v", 0, 1))))], vec![]);
    assert_eq!(read(&o, "k", ReadOpts::default()), Ok(Some("v".into())));
    assert_eq!(calls(&log), ["l1 read k"]);
}

#[test]
fn l2_hit_backfills_l1_with_add_and_the_remaining_ttl() {
    let (o, log) = fake(
        vec![
            L1Reply::Read(Ok(None)),
            L1Reply::Store(Ok(StoreOutcome::Stored { cas: 9 })),
            L1Reply::Read(Ok(Some((b"v", 7, 9)))),
        ],
        vec![L2Reply::Get(Some(entry("v", 100)))],
    );
    assert_eq!(read(&o, "k", ReadOpts::default()), Ok(Some("v".into())));
    // Add, so a newer write that reached L1 meanwhile wins; then served through L1.
    assert_eq!(calls(&log), ["l1 read k", "l2 get k", "l1 store Add k v", "l1 read k"]);
    // The value keeps the 100 s it had left, not a fresh TTL.
    let expiry = o.tiers().l1.last_expiry.lock().unwrap();
    assert_eq!(o.tiers().clock.ttl(expiry), 100);
    assert_eq!(o.tiers().stats.backfills.get(), 1);
}

#[test]
fn gat_of_an_l2_hit_backfills_the_value_as_it_was_and_touches_it_through_l1() {
    let (o, log) = fake(
        vec![
            L1Reply::Read(Ok(None)),
            L1Reply::Store(Ok(StoreOutcome::Stored { cas: 9 })),
            L1Reply::Read(Ok(Some((b"v", 7, 9)))),
        ],
        vec![L2Reply::Get(Some(entry("v", 100))), L2Reply::Touch(true)],
    );
    let gat = ReadOpts {
        touch: Some(o.tiers().clock.expiry(30)),
        ..ReadOpts::default()
    };
    assert_eq!(read(&o, "k", gat), Ok(Some("v".into())));
    // L2 is touched; L1 gets the 100 s L2 had, and the read that follows applies the touch
    // (so `mg t T30` can show the TTL before the touch, as memcached does).
    assert_eq!(
        calls(&log),
        [
            "l1 read k touch",
            "l2 get k",
            "l2 touch k",
            "l1 store Add k v",
            "l1 read k touch"
        ]
    );
    let expiry = o.tiers().l1.last_expiry.lock().unwrap();
    assert_eq!(o.tiers().clock.ttl(expiry), 100);
}

#[test]
fn miss_everywhere_is_a_miss() {
    let (o, log) = fake(vec![L1Reply::Read(Ok(None))], vec![L2Reply::Get(None)]);
    assert_eq!(read(&o, "k", ReadOpts::default()), Ok(None));
    assert_eq!(calls(&log), ["l1 read k", "l2 get k"]);
}

#[test]
fn l1_down_reads_from_l2_without_backfill() {
    let e = entry("disk", 0);
    let (o, log) = fake(
        vec![L1Reply::Read(Err(BackendError::Unavailable))],
        vec![L2Reply::Get(Some(e))],
    );
    assert_eq!(read(&o, "k", ReadOpts::default()), Ok(Some("disk".into())));
    assert_eq!(calls(&log), ["l1 read k", "l2 get k"]);
}

#[test]
fn set_writes_l2_then_l1() {
    let (o, log) = fake(
        vec![L1Reply::Store(Ok(StoreOutcome::Stored { cas: 3 }))],
        vec![L2Reply::Set(true)],
    );
    let out = block_on(o.store(&set_req(Mode::Set, "k", "v")));
    assert_eq!(out, Ok(StoreOutcome::Stored { cas: 3 }));
    assert_eq!(calls(&log), ["l2 set k v", "l1 store Set k v"]);
}

#[test]
fn failed_l1_write_drops_the_l1_copy() {
    let (o, log) = fake(
        vec![
            L1Reply::Store(Err(BackendError::Timeout)),
            L1Reply::Delete(Ok(DeleteOutcome::Deleted)),
        ],
        vec![L2Reply::Set(true)],
    );
    let out = block_on(o.store(&set_req(Mode::Set, "k", "v")));
    assert_eq!(out, Ok(StoreOutcome::Stored { cas: 0 }));
    assert_eq!(calls(&log), ["l2 set k v", "l1 store Set k v", "l1 delete k"]);
}

#[test]
fn failed_l2_write_leaves_l1_alone_and_reports() {
    let (o, log) = fake(vec![], vec![L2Reply::Set(false)]);
    assert!(block_on(o.store(&set_req(Mode::Set, "k", "v"))).is_err());
    assert_eq!(calls(&log), ["l2 set k v"]);
}

#[test]
fn batch_set_only_replaces_in_l1() {
    let (o, log) = fake(
        vec![L1Reply::Store(Ok(StoreOutcome::NotStored))],
        vec![L2Reply::Set(true)],
    );
    let batch = o.batch_view();
    let out = block_on(batch.store(&set_req(Mode::Set, "k", "v")));
    assert_eq!(out, Ok(StoreOutcome::Stored { cas: 0 }));
    assert_eq!(calls(&log), ["l2 set k v", "l1 store Replace k v"]);
}

#[test]
fn batch_read_does_not_backfill() {
    let e = entry("v", 0);
    let (o, log) = fake(vec![L1Reply::Read(Ok(None))], vec![L2Reply::Get(Some(e))]);
    assert_eq!(read(&o.batch_view(), "k", ReadOpts::default()), Ok(Some("v".into())));
    assert_eq!(calls(&log), ["l1 read k", "l2 get k"]);
}

#[test]
fn add_is_decided_on_the_value_only_l2_had() {
    let e = entry("old", 0);
    let (o, log) = fake(
        vec![
            L1Reply::Read(Ok(None)),
            L1Reply::Store(Ok(StoreOutcome::Stored { cas: 1 })),
            L1Reply::Store(Ok(StoreOutcome::NotStored)),
        ],
        vec![L2Reply::Get(Some(e))],
    );
    let out = block_on(o.store(&set_req(Mode::Add, "k", "new")));
    assert_eq!(out, Ok(StoreOutcome::NotStored));
    assert_eq!(
        calls(&log),
        ["l1 read k", "l2 get k", "l1 store Add k old", "l1 store Add k new"]
    );
}

#[test]
fn append_writes_the_whole_new_value_back_to_l2() {
    let (o, log) = fake(
        vec![
            L1Reply::Read(Ok(Some((b"ab", 0, 1)))),
            L1Reply::Store(Ok(StoreOutcome::Stored { cas: 2 })),
            L1Reply::Read(Ok(Some((b"abc", 0, 2)))),
        ],
        vec![L2Reply::Set(true)],
    );
    let out = block_on(o.store(&set_req(Mode::Append, "k", "c")));
    assert_eq!(out, Ok(StoreOutcome::Stored { cas: 2 }));
    assert_eq!(
        calls(&log),
        ["l1 read k", "l1 store Append k c", "l1 read k", "l2 set k abc"]
    );
}

#[test]
fn failed_write_back_drops_the_older_l2_copy() {
    let (o, log) = fake(
        vec![
            L1Reply::Read(Ok(Some((b"1", 0, 1)))),
            L1Reply::Arith(Ok(ArithOutcome::Done {
                value: 2,
                cas: 2,
                ttl: -1,
                created: false,
            })),
            L1Reply::Read(Ok(Some((b"2", 0, 2)))),
        ],
        vec![L2Reply::Set(false), L2Reply::Delete(true)],
    );
    let req = ArithReq {
        key: b"k",
        incr: true,
        delta: 1,
        cas: None,
        vivify: None,
        touch: None,
    };
    assert!(matches!(
        block_on(o.arith(&req)),
        Ok(ArithOutcome::Done { value: 2, .. })
    ));
    assert_eq!(
        calls(&log),
        ["l1 read k", "l1 arith k", "l1 read k", "l2 set k 2", "l2 delete k"]
    );
}

#[test]
fn delete_goes_to_l2_then_l1() {
    let (o, log) = fake(
        vec![L1Reply::Delete(Ok(DeleteOutcome::NotFound))],
        vec![L2Reply::Delete(true)],
    );
    assert_eq!(block_on(o.delete(b"k", None)), Ok(DeleteOutcome::Deleted));
    assert_eq!(calls(&log), ["l2 delete k", "l1 delete k"]);
}

#[test]
fn touch_and_gat_reach_both_tiers() {
    let (o, log) = fake(vec![L1Reply::Touch(Ok(false))], vec![L2Reply::Touch(true)]);
    assert_eq!(block_on(o.touch(b"k", Expiry(100))), Ok(true));
    assert_eq!(calls(&log), ["l2 touch k", "l1 touch k"]);

    let (o, log) = fake(vec![L1Reply::Read(Ok(Some((b"v", 0, 1))))], vec![L2Reply::Touch(true)]);
    let gat = ReadOpts {
        touch: Some(Expiry(100)),
        ..ReadOpts::default()
    };
    assert_eq!(read(&o, "k", gat), Ok(Some("v".into())));
    assert_eq!(calls(&log), ["l1 read k touch", "l2 touch k"]);
}
