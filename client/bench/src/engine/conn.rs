//! One connection's loop: connect, warm up, then batches composed, written with one write and
//! read back until every reply is parsed, checked and timed, on buffers it keeps and reuses.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::{Batch, EngineConfig, OpStats, Phase, Shared, Workload};
use crate::hist::LatencyHist;
use crate::schedule::Schedule;
use crate::value::{KeyBuf, KeySpace};
use crate::wire::{self, Keys, MultiHit, Op, Reply, WireError};

/// Warm-up batches are at least this deep, whatever the run's pipeline: the warm-up is not
/// measured, only waited for.
const WARMUP_DEPTH: usize = 32;

/// Read at least this much at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The most a connection keeps room for in its read buffer, however large its replies.
const MAX_READ_ROOM: usize = 16 << 20;

/// What one connection did.
pub(super) struct ConnResult<W> {
    pub(super) id: usize,
    pub(super) stats: Vec<OpStats>,
    pub(super) lag: LatencyHist,
    /// When its last batch completed.
    pub(super) end: Instant,
    /// Its workload ran out of work.
    pub(super) finished: bool,
    pub(super) error: Option<String>,
    pub(super) workload: W,
}

/// How a connection waits for the others before measuring.
pub(super) struct Gate {
    pub(super) ready: mpsc::Sender<()>,
    /// The start of the measured phase, once every connection is ready.
    pub(super) go: watch::Receiver<Option<Instant>>,
}

pub(super) async fn connection<W: Workload>(
    id: usize,
    addr: SocketAddr,
    cfg: Arc<EngineConfig>,
    shared: Arc<Shared>,
    gate: Gate,
    workload: W,
) -> ConnResult<W> {
    let mut conn = Conn {
        cfg: &cfg,
        stream: None,
        workload,
        wbuf: Vec::new(),
        rbuf: BytesMut::new(),
        read_room: READ_CHUNK,
        batch: Batch::default(),
        key: [0; riven_memcache::MAX_KEY_LEN],
        keys: Keys::default(),
        value: Vec::new(),
        hits: Vec::new(),
        stats: vec![OpStats::default(); Op::COUNT],
        lag: LatencyHist::new(),
        finished: false,
    };
    let setup = async {
        conn.connect(addr).await?;
        conn.warm_up(&shared).await
    }
    .await;
    if setup.is_err() {
        // The others stop warming up early.
        shared.stop.store(true, Ordering::Relaxed);
    }
    let Gate { ready, mut go } = gate;
    let _ = ready.send(()).await;
    drop(ready);
    let start = match go.wait_for(Option::is_some).await {
        Ok(start) => *start,
        Err(_) => None,
    };
    let result = match (setup, start) {
        (Ok(()), Some(start)) => match cfg.rate {
            Some(rate) => {
                let schedule = Schedule::for_connection(rate, cfg.connections, id);
                conn.measure(start, Some(schedule), &shared).await
            }
            None => conn.measure(start, None, &shared).await,
        },
        (Ok(()), None) => Err("the run was abandoned before it started".to_string()),
        (Err(e), _) => Err(e),
    };
    let end = Instant::now();
    let error = result.err();
    if error.is_some() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    ConnResult {
        id,
        stats: conn.stats,
        lag: conn.lag,
        end,
        finished: conn.finished,
        error,
        workload: conn.workload,
    }
}

/// One connection, its workload and its reusable buffers.
struct Conn<'c, W> {
    cfg: &'c EngineConfig,
    stream: Option<TcpStream>,
    workload: W,
    wbuf: Vec<u8>,
    rbuf: BytesMut,
    /// Free room wanted before a read: twice the largest reply seen (at least [`READ_CHUNK`]),
    /// so a large reply arrives in a few big reads into one buffer instead of being moved to
    /// the buffer's front, or into a larger one, while it arrives.
    read_room: usize,
    batch: Batch,
    key: KeyBuf,
    keys: Keys,
    value: Vec<u8>,
    hits: Vec<MultiHit>,
    stats: Vec<OpStats>,
    /// Open loop: send time less intended time, per request.
    lag: LatencyHist,
    finished: bool,
}

impl<W: Workload> Conn<'_, W> {
    async fn connect(&mut self, addr: SocketAddr) -> Result<(), String> {
        let timeout = self.cfg.timeout;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("connect to {addr}: {e}")),
            Err(_) => return Err(format!("connect to {addr}: timed out after {timeout:?}")),
        };
        // Batches are written whole; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        self.stream = Some(stream);
        let depth = self.cfg.pipeline.max(WARMUP_DEPTH);
        self.wbuf.reserve(depth * (self.cfg.keys.key_len() + 256));
        self.rbuf.reserve(READ_CHUNK);
        Ok(())
    }

    async fn warm_up(&mut self, shared: &Shared) -> Result<(), String> {
        let depth = self.cfg.pipeline.max(WARMUP_DEPTH);
        while !shared.stop.load(Ordering::Relaxed) {
            self.batch.clear();
            while self.batch.len() < depth && !self.batch.barrier && self.workload.next(Phase::Warmup, &mut self.batch)
            {
            }
            if self.batch.is_empty() {
                break;
            }
            self.round_trip(None).await?;
        }
        Ok(())
    }

    /// The measured phase, until the duration is over, the workload is done or another
    /// connection failed.
    async fn measure(&mut self, start: Instant, mut schedule: Option<Schedule>, shared: &Shared) -> Result<(), String> {
        let cfg = self.cfg;
        let deadline_ns = u64::try_from(cfg.duration.as_nanos()).unwrap_or(u64::MAX);
        loop {
            let now_ns = elapsed_ns(start);
            if now_ns >= deadline_ns || shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let room = match &schedule {
                None => cfg.pipeline,
                Some(s) => {
                    let due = s.due(now_ns);
                    if due == 0 {
                        let wake = s.next_ns().min(deadline_ns);
                        tokio::time::sleep_until((start + Duration::from_nanos(wake)).into()).await;
                        continue;
                    }
                    (due as usize).min(cfg.pipeline)
                }
            };
            self.batch.clear();
            while self.batch.len() < room && !self.batch.barrier {
                let before = self.batch.len();
                if !self.workload.next(Phase::Measure, &mut self.batch) {
                    self.finished = true;
                    break;
                }
                if let Some(s) = &mut schedule {
                    for r in &mut self.batch.reqs[before..] {
                        r.intended_ns = s.take();
                    }
                }
            }
            if self.batch.is_empty() {
                return Ok(());
            }
            self.round_trip(Some((start, schedule.is_some()))).await?;
            shared.ops.fetch_add(self.batch.len() as u64, Ordering::Relaxed);
            if self.finished {
                return Ok(());
            }
        }
    }

    /// Sends the batch with one write and reads and checks every reply to it. With `timing`
    /// (the measured phase's start, and whether the run is open-loop) it also counts and times
    /// them: open loop from each request's intended send time, closed loop from the write.
    async fn round_trip(&mut self, timing: Option<(Instant, bool)>) -> Result<(), String> {
        let cfg = self.cfg;
        let proto = cfg.protocol;
        self.wbuf.clear();
        for i in 0..self.batch.reqs.len() {
            load_keys(&cfg.keys, &self.batch, i, &mut self.key, &mut self.keys);
            let r = &self.batch.reqs[i];
            self.value.clear();
            if let Some(p) = &r.value {
                p.write(&mut self.value);
            }
            wire::compose(proto, &mut self.wbuf, r.op, &self.keys, &r.args, &self.value, r.opaque);
        }
        if !self.rbuf.is_empty() {
            return Err(format!(
                "{} bytes arrived that answer no request: {}",
                self.rbuf.len(),
                wire::show(&self.rbuf)
            ));
        }
        // The buffer is empty: taking its room back from the front copies nothing.
        self.rbuf.reserve(self.read_room);
        let Some(stream) = self.stream.as_mut() else {
            return Err("not connected".into());
        };

        let sent = Instant::now();
        if let Some((start, true)) = timing {
            for r in &self.batch.reqs {
                self.lag
                    .record(sent.saturating_duration_since(start + Duration::from_nanos(r.intended_ns)));
            }
        }
        match tokio::time::timeout(cfg.timeout, stream.write_all(&self.wbuf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("write: {e}")),
            Err(_) => return Err(format!("write timed out after {:?}", cfg.timeout)),
        }

        let mut done = 0;
        let mut now = sent;
        loop {
            // Parse and check every whole reply in the buffer.
            while done < self.batch.reqs.len() {
                load_keys(&cfg.keys, &self.batch, done, &mut self.key, &mut self.keys);
                let r = &self.batch.reqs[done];
                let (reply, used) = match wire::parse(proto, r.op, &self.keys, r.opaque, &self.rbuf, &mut self.hits) {
                    Ok(x) => x,
                    Err(WireError::Incomplete) => break,
                    Err(WireError::Unexpected(m)) => return Err(m),
                };
                let keys = &self.batch.keys[r.keys.clone()];
                if let Err(m) = self.workload.check(r, keys, &reply, &self.hits, &self.rbuf) {
                    return Err(format!("{} {}: {m}", r.op, wire::show(self.keys.first())));
                }
                if let Some((start, open)) = timing {
                    let s = &mut self.stats[r.op.index()];
                    s.count += 1;
                    match reply {
                        Reply::Hit { .. } => s.hits += 1,
                        Reply::Miss => s.misses += 1,
                        Reply::Multi => {
                            s.hits += self.hits.len() as u64;
                            s.misses += (keys.len() - self.hits.len().min(keys.len())) as u64;
                        }
                        _ => {}
                    }
                    let from = if open {
                        start + Duration::from_nanos(r.intended_ns)
                    } else {
                        sent
                    };
                    s.hist.record(now.saturating_duration_since(from));
                }
                self.rbuf.advance(used);
                self.read_room = self.read_room.max(used.saturating_mul(2)).min(MAX_READ_ROOM);
                done += 1;
            }
            if done == self.batch.reqs.len() {
                return Ok(());
            }

            // Room for a large read; reclaims the parsed front of the buffer instead of growing.
            if self.rbuf.capacity() - self.rbuf.len() < self.read_room / 4 {
                self.rbuf.reserve(self.read_room);
            }
            match tokio::time::timeout(cfg.timeout, stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(0)) => {
                    return Err(format!(
                        "the server closed the connection with {} of {} replies outstanding",
                        self.batch.reqs.len() - done,
                        self.batch.reqs.len()
                    ))
                }
                Ok(Ok(_)) => now = Instant::now(),
                Ok(Err(e)) => return Err(format!("read: {e}")),
                Err(_) => {
                    return Err(format!(
                        "timed out after {:?} waiting for {} of {} replies",
                        cfg.timeout,
                        self.batch.reqs.len() - done,
                        self.batch.reqs.len()
                    ))
                }
            }
        }
    }
}

/// The keys of request `i` of `batch`, into `keys`.
fn load_keys(space: &KeySpace, batch: &Batch, i: usize, buf: &mut KeyBuf, keys: &mut Keys) {
    keys.clear();
    for &k in batch.keys_of(&batch.reqs[i]) {
        keys.push(space.key(k, buf));
    }
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
