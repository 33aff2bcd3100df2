//! A raw key-value client for an external memcached, over the links's binary-protocol links.
//!
//! It only translates: one memcached request per call, replies mapped onto [`RawStored`] and
//! friends, link failures onto [`BackendError`] (so the node answers `SERVER_ERROR` while
//! memcached is down). Envelopes, chunks and memcached's item semantics for the node's clients
//! live in [`super::chunked`], on top of this.

use std::ops::ControlFlow;
use std::sync::Arc;

use riven_memcache::binary::{self, Opcode, Request, Status, StoreExtras};
use riven_memcache::slab::item_size;

use super::links::{Group, LinkError, Links, LinksConfig, Reply};
use super::raw::{run_windowed, RawDeleted, RawItem, RawItemRef, RawMode, RawStore, RawStored, RawWrite};
use super::slabs::Slabs;
use crate::model::{BackendError, Result};

/// A memcached reached through a [`Links`].
pub struct Memcached {
    links: Links,
    /// Keeps memcached's pages where the writes go (see [`super::slabs`]); none in tests that
    /// leave memcached to itself.
    slabs: Option<Arc<Slabs>>,
}

impl Drop for Memcached {
    fn drop(&mut self) {
        if let Some(s) = &self.slabs {
            s.close();
        }
    }
}

/// Times a write memcached refused for want of memory is tried again after the balancer moved
/// pages to its class.
const OOM_RETRIES: usize = 3;

fn link_error(e: LinkError) -> BackendError {
    match e {
        LinkError::Down | LinkError::Lost => BackendError::Unavailable,
        LinkError::Timeout | LinkError::Overloaded => BackendError::Timeout,
        LinkError::Protocol => BackendError::failed_by("bad reply from memcached", e),
    }
}

/// The cause of an [`unexpected`] failure.
#[derive(Debug, thiserror::Error)]
#[error("memcached answered with status {0:?}")]
struct UnexpectedStatus(Status);

/// A status memcached should not send to this request.
fn unexpected(status: Status) -> BackendError {
    tracing::debug!(?status, "unexpected memcached status");
    BackendError::failed_by("unexpected reply from memcached", UnexpectedStatus(status))
}

impl Memcached {
    pub fn new(links: Links) -> Memcached {
        Memcached { links, slabs: None }
    }

    /// The same client, its writes seen by `slabs`.
    pub fn with_slabs(mut self, slabs: Arc<Slabs>) -> Memcached {
        self.slabs = Some(slabs);
        self
    }

    pub fn slabs(&self) -> Option<&Arc<Slabs>> {
        self.slabs.as_ref()
    }

    /// Stops the links and the balancer (see [`Links::close`]).
    pub fn close(&self) {
        self.links.close();
        if let Some(s) = &self.slabs {
            s.close();
        }
    }

    /// Starts the links (on the current tokio runtime) and a client over them.
    pub fn start(cfg: LinksConfig) -> Memcached {
        Memcached::new(Links::start(cfg))
    }

    /// Starts links on each of `workers` (see [`Links::start_on`]).
    pub fn start_on(cfg: LinksConfig, workers: &[tokio::runtime::Handle]) -> Memcached {
        Memcached::new(Links::start_on(cfg, workers))
    }

    pub fn links(&self) -> &Links {
        &self.links
    }

    async fn call(&self, req: Request<'_>, tail: &[&[u8]]) -> Result<Reply> {
        self.links.call_parts(req, tail).await.map_err(link_error)
    }

    /// Gets many keys at once: up to `window` requests are in flight together, so the links sends
    /// them in a few writes and memcached answers them back to back. Results are in key order.
    pub async fn get_many<K: AsRef<[u8]> + Sync>(&self, keys: &[K], window: usize) -> Result<Vec<Option<RawItem>>> {
        let mut out = vec![None; keys.len()];
        let mut failed = None;
        run_windowed(
            keys.len(),
            window,
            |i| self.get(keys[i].as_ref(), None),
            |i, r| match r {
                Ok(item) => {
                    out[i] = item;
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            },
        )
        .await;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// The item of a reply to a GET or GAT; `None` for a miss.
fn item_of(reply: Reply) -> Result<Option<RawItem>> {
    let Some(RawItemRef { flags, cas, .. }) = item_in(&reply)? else {
        return Ok(None);
    };
    Ok(Some(RawItem {
        flags,
        cas,
        value: reply.into_value(),
    }))
}

/// [`item_of`], where the reply lies.
fn item_in(reply: &Reply) -> Result<Option<RawItemRef<'_>>> {
    match reply.status {
        Status::SUCCESS => {
            let flags =
                binary::parse_u32_extras(reply.extras()).ok_or(BackendError::failed("bad reply from memcached"))?;
            Ok(Some(RawItemRef {
                flags,
                cas: reply.cas,
                value: reply.value(),
                buf: reply.frame(),
            }))
        }
        Status::KEY_ENOENT => Ok(None),
        s => Err(unexpected(s)),
    }
}

/// A plain GET of `key`.
fn plain_get(key: &[u8]) -> Request<'_> {
    Request {
        key,
        ..Request::new(Opcode::GET)
    }
}

impl Memcached {
    /// Sends a plain GET of each of `keys` now, for the next `get` of that key in `group` (this
    /// task's) to find (see [`Links::prefetch`]). False if they were not sent.
    pub fn prefetch_gets(&self, group: &Arc<Group>, keys: &[&[u8]]) -> bool {
        self.links.prefetch(group, keys, plain_get)
    }
}

impl RawStore for Memcached {
    async fn get(&self, key: &[u8], touch: Option<u32>) -> Result<Option<RawItem>> {
        let reply = match touch {
            // A plain GET of this key may already be on its way (see `Links::prefetch`).
            None => match self.links.stashed(key) {
                Some(wait) => wait.await.map_err(link_error)?,
                None => self.call(plain_get(key), &[]).await?,
            },
            Some(exptime) => {
                let extras = binary::u32_extras(exptime);
                let req = Request {
                    key,
                    extras: &extras,
                    ..Request::new(Opcode::GAT)
                };
                self.call(req, &[]).await?
            }
        };
        item_of(reply)
    }

    fn use_ready<T>(&self, key: &[u8], use_: impl FnOnce(Result<Option<RawItemRef<'_>>>) -> Option<T>) -> Option<T> {
        self.links.use_ready_stashed(key, |reply| {
            use_(match reply {
                Ok(reply) => item_in(reply),
                Err(e) => Err(link_error(e.clone())),
            })
        })
    }

    fn burst_mark(&self, mark: (u64, u64)) {
        self.links.burst_mark(mark)
    }

    fn burst_marked(&self, mark: (u64, u64)) -> bool {
        self.links.burst_marked(mark)
    }

    async fn store(&self, w: RawWrite<'_>) -> Result<RawStored> {
        let opcode = match w.mode {
            RawMode::Set => Opcode::SET,
            RawMode::Add => Opcode::ADD,
            RawMode::Replace => Opcode::REPLACE,
        };
        let extras = StoreExtras {
            flags: w.flags,
            exptime: w.exptime,
        }
        .to_bytes();
        let req = Request {
            key: w.key,
            extras: &extras,
            cas: w.cas,
            value: w.value[0],
            ..Request::new(opcode)
        };
        let tail: &[&[u8]] = match (w.value[1].is_empty(), w.value[2].is_empty()) {
            (true, true) => &[],
            (false, true) => &w.value[1..2],
            _ => &w.value[1..],
        };
        let size = item_size(w.key.len(), w.flags, w.value_len());
        if let Some(wait) = self.slabs.as_ref().and_then(|s| s.admit(size)) {
            wait.await;
        }
        let mut reply = self.call(req, tail).await?;
        if let Some(slabs) = &self.slabs {
            for _ in 0..OOM_RETRIES {
                if reply.status != Status::ENOMEM || !slabs.out_of_memory(size).await {
                    break;
                }
                reply = self.call(req, tail).await?;
            }
        }
        // memcached's binary protocol folds "not stored" into the key statuses: an ADD of an
        // existing key answers KEY_EEXISTS, a REPLACE (or a CAS write) of a missing one KEY_ENOENT.
        Ok(match reply.status {
            Status::SUCCESS => RawStored::Stored { cas: reply.cas },
            Status::KEY_EEXISTS if w.mode == RawMode::Add => RawStored::NotStored,
            Status::KEY_EEXISTS => RawStored::Exists,
            Status::KEY_ENOENT if w.cas != 0 => RawStored::NotFound,
            Status::KEY_ENOENT | Status::NOT_STORED => RawStored::NotStored,
            Status::E2BIG => RawStored::TooLarge,
            Status::ENOMEM => RawStored::OutOfMemory,
            s => return Err(unexpected(s)),
        })
    }

    async fn delete(&self, key: &[u8], cas: u64) -> Result<RawDeleted> {
        let req = Request {
            key,
            cas,
            ..Request::new(Opcode::DELETE)
        };
        let reply = self.call(req, &[]).await?;
        Ok(match reply.status {
            Status::SUCCESS => RawDeleted::Deleted,
            Status::KEY_ENOENT => RawDeleted::NotFound,
            Status::KEY_EEXISTS => RawDeleted::Exists,
            s => return Err(unexpected(s)),
        })
    }

    async fn touch(&self, key: &[u8], exptime: u32) -> Result<bool> {
        let extras = binary::u32_extras(exptime);
        let req = Request {
            key,
            extras: &extras,
            ..Request::new(Opcode::TOUCH)
        };
        let reply = self.call(req, &[]).await?;
        match reply.status {
            Status::SUCCESS => Ok(true),
            Status::KEY_ENOENT => Ok(false),
            s => Err(unexpected(s)),
        }
    }

    async fn flush_all(&self, delay: u32) -> Result<()> {
        let extras = binary::u32_extras(delay);
        let req = Request {
            extras: if delay == 0 { &[] } else { &extras },
            ..Request::new(Opcode::FLUSH)
        };
        let reply = self.call(req, &[]).await?;
        match reply.status {
            Status::SUCCESS => Ok(()),
            s => Err(unexpected(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::testutil::MemcachedProcess;

    fn write<'a>(mode: RawMode, key: &'a [u8], value: [&'a [u8]; 3], cas: u64) -> RawWrite<'a> {
        RawWrite {
            mode,
            key,
            flags: 0,
            exptime: 0,
            cas,
            value,
        }
    }

    #[tokio::test]
    async fn commands_against_memcached() {
        let mc = MemcachedProcess::start(&[]);
        let m = mc.client().await;

        assert_eq!(m.get(b"k", None).await, Ok(None));
        // A value written from three pieces reads back whole.
        let w = RawWrite {
            flags: 7,
            ..write(RawMode::Set, b"k", [b"he", b"llo", b" world"], 0)
        };
        let RawStored::Stored { cas } = m.store(w).await.unwrap() else {
            panic!()
        };
        let item = m.get(b"k", None).await.unwrap().unwrap();
        assert_eq!((item.flags, item.cas, &item.value[..]), (7, cas, &b"hello world"[..]));

        // Modes and CAS, with memcached's binary statuses mapped.
        assert_eq!(
            m.store(write(RawMode::Add, b"k", [b"x", b"", b""], 0)).await,
            Ok(RawStored::NotStored)
        );
        assert_eq!(
            m.store(write(RawMode::Replace, b"nope", [b"x", b"", b""], 0)).await,
            Ok(RawStored::NotStored)
        );
        assert_eq!(
            m.store(write(RawMode::Set, b"k", [b"x", b"", b""], cas + 1000)).await,
            Ok(RawStored::Exists)
        );
        assert_eq!(
            m.store(write(RawMode::Set, b"nope", [b"x", b"", b""], 5)).await,
            Ok(RawStored::NotFound)
        );
        let Ok(RawStored::Stored { cas: cas2 }) = m.store(write(RawMode::Replace, b"k", [b"", b"y", b""], cas)).await
        else {
            panic!()
        };
        assert_ne!(cas2, cas);
        assert_eq!(m.get(b"k", None).await.unwrap().unwrap().value, &b"y"[..]);
        assert!(matches!(
            m.store(write(RawMode::Add, b"a", [b"1", b"", b""], 0)).await,
            Ok(RawStored::Stored { .. })
        ));

        // Too large for -I 1m.
        let big = vec![0u8; 2 << 20];
        assert_eq!(
            m.store(write(RawMode::Set, b"big", [&big, b"", b""], 0)).await,
            Ok(RawStored::TooLarge)
        );

        // Delete with and without CAS.
        assert_eq!(m.delete(b"k", cas2 + 1000).await, Ok(RawDeleted::Exists));
        assert_eq!(m.delete(b"k", cas2).await, Ok(RawDeleted::Deleted));
        assert_eq!(m.delete(b"k", 0).await, Ok(RawDeleted::NotFound));

        // Touch and GAT; an exptime in the past expires the item.
        assert_eq!(m.touch(b"a", 0).await, Ok(true));
        assert_eq!(m.touch(b"k", 0).await, Ok(false));
        let item = m.get(b"a", Some(0)).await.unwrap().unwrap();
        assert_eq!(&item.value[..], b"1");
        assert_eq!(
            m.get(b"a", Some(super::super::raw::unix_exptime(5)))
                .await
                .unwrap()
                .map(|i| i.value),
            Some(b"1"[..].into())
        );
        assert_eq!(m.get(b"a", None).await, Ok(None));

        // get_many: in key order, misses as None.
        for k in [&b"m1"[..], b"m3"] {
            m.store(write(RawMode::Set, k, [k, b"", b""], 0)).await.unwrap();
        }
        let got = m.get_many(&[&b"m1"[..], b"m2", b"m3"], 2).await.unwrap();
        let values: Vec<_> = got.iter().map(|i| i.as_ref().map(|i| i.value.clone())).collect();
        assert_eq!(values, vec![Some(b"m1"[..].into()), None, Some(b"m3"[..].into())]);

        m.flush_all(0).await.unwrap();
        assert_eq!(m.get(b"m1", None).await, Ok(None));
    }

    #[tokio::test]
    async fn down_is_unavailable() {
        let port = crate::backend::testutil::free_port();
        let mut cfg = LinksConfig::new(super::super::links::Endpoint::Tcp(format!("127.0.0.1:{port}")));
        cfg.connections = 1;
        let m = Memcached::start(cfg);
        assert_eq!(m.get(b"k", None).await, Err(BackendError::Unavailable));
    }
}
