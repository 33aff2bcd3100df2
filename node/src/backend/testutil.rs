//! Test support for the backends: a real memcached on a free loopback port (the same few lines as
//! `node/tests/common/mod.rs`, which unit tests cannot reach), killed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::links::{Endpoint, LinksConfig};
use super::memcached::Memcached;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `memcached -l 127.0.0.1 -p <port> -U 0` plus extra arguments, killed on drop.
pub struct MemcachedProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    extra: Vec<String>,
}

impl MemcachedProcess {
    pub fn start(extra: &[&str]) -> MemcachedProcess {
        let mut p = MemcachedProcess {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        p.restart();
        p
    }

    /// Starts memcached again on the same port (after [`MemcachedProcess::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let bin = std::env::var("MEMCACHED").unwrap_or_else(|_| "memcached".into());
        let mut cmd = Command::new(bin);
        cmd.args(["-l", "127.0.0.1", "-p", &self.addr.port().to_string(), "-U", "0"])
            .args(&self.extra);
        // memcached refuses to run as root unless told which user to be.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached must be installed (apt-get install memcached)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "memcached did not start on {}", self.addr);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills memcached (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn links_config(&self) -> LinksConfig {
        let mut cfg = LinksConfig::new(Endpoint::Tcp(self.addr.to_string()));
        // Generous: the tests move megabytes on a 2-core machine that also runs memcached.
        cfg.timeout = Duration::from_secs(5);
        cfg
    }

    /// A client whose links are connected.
    pub async fn client(&self) -> Memcached {
        let m = Memcached::start(self.links_config());
        wait_up(&m).await;
        m
    }
}

impl Drop for MemcachedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until one of the client's links is up.
pub async fn wait_up(m: &Memcached) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.links().is_up() {
        assert!(Instant::now() < deadline, "links did not connect");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Which raw operation a call was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Gat,
    Store(super::raw::RawMode),
    Delete,
    Touch,
    Flush,
}

/// What a scripted call does instead of (or before) the fake's own behaviour.
pub enum Scripted {
    /// Answer this instead.
    Reply(ScriptedReply),
    /// Change the fake's items first (another client acting in between), then behave normally.
    Before(Box<dyn FnOnce(&mut FakeItems) + Send>),
    /// Never answer (a writer that dies while waiting: the test drops the future).
    Hang,
}

pub enum ScriptedReply {
    Get(Option<super::raw::RawItem>),
    Stored(super::raw::RawStored),
    Deleted(super::raw::RawDeleted),
    Touched(bool),
    Err(crate::model::BackendError),
}

/// The fake's items: key -> (flags, absolute unix exptime or 0, cas, value).
pub type FakeItems = std::collections::HashMap<Vec<u8>, FakeItem>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeItem {
    pub flags: u32,
    pub exptime: i64,
    pub cas: u64,
    pub value: Vec<u8>,
}

struct FakeState {
    items: FakeItems,
    next_cas: u64,
    now: i64,
    log: Vec<(Op, Vec<u8>)>,
    /// (op, key prefix, action): the first entry matching a call is used once.
    script: Vec<(Op, Vec<u8>, Scripted)>,
    flushes: Vec<u32>,
}

/// A raw store in memory with memcached's item rules, that records every call and replays
/// scripted answers: the chunking layer's branches are tested on it without a memcached.
pub struct FakeRaw {
    state: parking_lot::Mutex<FakeState>,
}

impl FakeRaw {
    /// A fake whose clock reads `now` (unix seconds).
    pub fn new(now: i64) -> FakeRaw {
        FakeRaw {
            state: parking_lot::Mutex::new(FakeState {
                items: FakeItems::new(),
                next_cas: 1,
                now,
                log: Vec::new(),
                script: Vec::new(),
                flushes: Vec::new(),
            }),
        }
    }

    pub fn set_now(&self, now: i64) {
        self.state.lock().now = now;
    }

    /// The next call of `op` on a key starting with `key_prefix` does `action`.
    pub fn script(&self, op: Op, key_prefix: &[u8], action: Scripted) {
        self.state.lock().script.push((op, key_prefix.to_vec(), action));
    }

    /// Every call so far, in order.
    pub fn log(&self) -> Vec<(Op, Vec<u8>)> {
        self.state.lock().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().log.clear();
    }

    pub fn flushes(&self) -> Vec<u32> {
        self.state.lock().flushes.clone()
    }

    /// The live items (expired ones left out).
    pub fn items(&self) -> FakeItems {
        let st = self.state.lock();
        let now = st.now;
        st.items
            .iter()
            .filter(|(_, i)| !expired(i, now))
            .map(|(k, i)| (k.clone(), i.clone()))
            .collect()
    }

    /// Changes the items directly.
    pub fn with_items<T>(&self, f: impl FnOnce(&mut FakeItems) -> T) -> T {
        f(&mut self.state.lock().items)
    }

    /// The next CAS the fake hands out (for building items by hand).
    pub fn take_cas(&self) -> u64 {
        let mut st = self.state.lock();
        st.next_cas += 1;
        st.next_cas - 1
    }

    /// Logs the call and takes its scripted action, if any.
    fn begin(&self, op: Op, key: &[u8]) -> Option<Scripted> {
        let mut st = self.state.lock();
        st.log.push((op, key.to_vec()));
        let i = st.script.iter().position(|(o, p, _)| *o == op && key.starts_with(p))?;
        let (_, _, action) = st.script.remove(i);
        match action {
            Scripted::Before(hook) => {
                hook(&mut st.items);
                None
            }
            other => Some(other),
        }
    }
}

fn expired(i: &FakeItem, now: i64) -> bool {
    i.exptime != 0 && i.exptime <= now
}

/// memcached's exptime rule: up to 30 days relative, above absolute.
fn absolute(exptime: u32, now: i64) -> i64 {
    match exptime {
        0 => 0,
        e if e <= 60 * 60 * 24 * 30 => now + i64::from(e),
        e => i64::from(e),
    }
}

async fn hang<T>() -> T {
    std::future::pending().await
}

impl super::raw::RawStore for FakeRaw {
    async fn get(&self, key: &[u8], touch: Option<u32>) -> crate::model::Result<Option<super::raw::RawItem>> {
        let op = if touch.is_some() { Op::Gat } else { Op::Get };
        match self.begin(op, key) {
            Some(Scripted::Reply(ScriptedReply::Get(r))) => return Ok(r),
            Some(Scripted::Reply(ScriptedReply::Err(e))) => return Err(e),
            Some(Scripted::Hang) => return hang().await,
            _ => {}
        }
        let mut st = self.state.lock();
        let now = st.now;
        let Some(item) = st.items.get_mut(key).filter(|i| !expired(i, now)) else {
            return Ok(None);
        };
        if let Some(t) = touch {
            item.exptime = absolute(t, now);
        }
        Ok(Some(super::raw::RawItem {
            flags: item.flags,
            cas: item.cas,
            value: item.value.clone().into(),
        }))
    }

    async fn store(&self, w: super::raw::RawWrite<'_>) -> crate::model::Result<super::raw::RawStored> {
        use super::raw::{RawMode, RawStored};
        match self.begin(Op::Store(w.mode), w.key) {
            Some(Scripted::Reply(ScriptedReply::Stored(r))) => return Ok(r),
            Some(Scripted::Reply(ScriptedReply::Err(e))) => return Err(e),
            Some(Scripted::Hang) => return hang().await,
            _ => {}
        }
        let mut st = self.state.lock();
        let now = st.now;
        let current = st.items.get(w.key).filter(|i| !expired(i, now)).map(|i| i.cas);
        let outcome = match (w.mode, current, w.cas) {
            (RawMode::Add, Some(_), _) => Some(RawStored::NotStored),
            (_, None, c) if c != 0 => Some(RawStored::NotFound),
            (RawMode::Replace, None, _) => Some(RawStored::NotStored),
            (_, Some(cur), c) if c != 0 && c != cur => Some(RawStored::Exists),
            _ => None,
        };
        if let Some(o) = outcome {
            return Ok(o);
        }
        let cas = st.next_cas;
        st.next_cas += 1;
        let value = w.value.concat();
        st.items.insert(
            w.key.to_vec(),
            FakeItem {
                flags: w.flags,
                exptime: absolute(w.exptime, now),
                cas,
                value,
            },
        );
        Ok(RawStored::Stored { cas })
    }

    async fn delete(&self, key: &[u8], cas: u64) -> crate::model::Result<super::raw::RawDeleted> {
        use super::raw::RawDeleted;
        match self.begin(Op::Delete, key) {
            Some(Scripted::Reply(ScriptedReply::Deleted(r))) => return Ok(r),
            Some(Scripted::Reply(ScriptedReply::Err(e))) => return Err(e),
            Some(Scripted::Hang) => return hang().await,
            _ => {}
        }
        let mut st = self.state.lock();
        let now = st.now;
        match st.items.get(key).filter(|i| !expired(i, now)) {
            None => Ok(RawDeleted::NotFound),
            Some(i) if cas != 0 && i.cas != cas => Ok(RawDeleted::Exists),
            Some(_) => {
                st.items.remove(key);
                Ok(RawDeleted::Deleted)
            }
        }
    }

    async fn touch(&self, key: &[u8], exptime: u32) -> crate::model::Result<bool> {
        match self.begin(Op::Touch, key) {
            Some(Scripted::Reply(ScriptedReply::Touched(r))) => return Ok(r),
            Some(Scripted::Reply(ScriptedReply::Err(e))) => return Err(e),
            Some(Scripted::Hang) => return hang().await,
            _ => {}
        }
        let mut st = self.state.lock();
        let now = st.now;
        match st.items.get_mut(key).filter(|i| !expired(i, now)) {
            None => Ok(false),
            Some(i) => {
                i.exptime = absolute(exptime, now);
                Ok(true)
            }
        }
    }

    async fn flush_all(&self, delay: u32) -> crate::model::Result<()> {
        match self.begin(Op::Flush, b"") {
            Some(Scripted::Reply(ScriptedReply::Err(e))) => return Err(e),
            Some(Scripted::Hang) => return hang().await,
            _ => {}
        }
        let mut st = self.state.lock();
        st.flushes.push(delay);
        if delay == 0 {
            st.items.clear();
        }
        Ok(())
    }
}
