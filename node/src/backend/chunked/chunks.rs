//! Index and chunk items in memcached: finding, writing, fetching, touching and deleting them.

use super::*;

/// The index item found under a key.
pub(super) struct Index {
    /// memcached's CAS of the index item.
    pub(super) mcas: u64,
    pub(super) env: Envelope,
    /// The whole item value (envelope, then the inline value).
    pub(super) item: Bytes,
}

impl Index {
    pub(super) fn inline(&self) -> &[u8] {
        &self.item[ENV_LEN..]
    }
}

pub(super) enum Found {
    Live(Index),
    /// No value. `mcas` is that of an item memcached still holds under the key but that does not
    /// count (expired by its envelope, or not an envelope at all): a write may replace it.
    Absent {
        mcas: Option<u64>,
    },
}

/// How publishing a value in place of another went.
pub(super) enum Swap {
    Done,
    /// The index changed since it was read: start over.
    Lost,
    Refused(StoreOutcome),
}

/// A whole value: borrowed from the index item, or its chunks' data where the replies brought
/// them (not gathered: a reply sends them as they are, see `crate::out`).
pub(super) enum ValueBuf<'a> {
    Inline(&'a [u8]),
    /// A large inline value, shared with the reply that brought it.
    InlineShared(Bytes),
    Chunks(Vec<Bytes>),
}

impl<'a> ValueBuf<'a> {
    /// An inline value, `data`, lying in `buf`: borrowed if small, shared if large enough for a
    /// reply to send it from where it lies (`crate::out`).
    pub(super) fn inline_in(buf: &Bytes, data: &'a [u8]) -> ValueBuf<'a> {
        if data.len() >= SHARE_MIN {
            ValueBuf::InlineShared(buf.slice_ref(data))
        } else {
            ValueBuf::Inline(data)
        }
    }

    pub(super) fn value(&self) -> Value<'_> {
        match self {
            ValueBuf::Inline(s) => Value::slice(s),
            ValueBuf::InlineShared(b) => Value::shared(std::slice::from_ref(b)),
            ValueBuf::Chunks(c) => Value::shared(c),
        }
    }

    /// The value in one piece, for commands that compute on it (append, incr).
    pub(super) fn contiguous(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            ValueBuf::Inline(s) => std::borrow::Cow::Borrowed(s),
            ValueBuf::InlineShared(b) => std::borrow::Cow::Borrowed(b),
            ValueBuf::Chunks(c) => std::borrow::Cow::Owned(c.concat()),
        }
    }
}

impl<R: RawStore> Chunked<R> {
    pub(super) async fn lookup(&self, key: &[u8]) -> Result<Found> {
        Ok(self.found(self.raw.get(key, None).await?))
    }

    /// What memcached's item under a user's key (`None`: none) holds for the user.
    pub(super) fn found(&self, item: Option<RawItem>) -> Found {
        let Some(item) = item else {
            return Found::Absent { mcas: None };
        };
        match self.live_envelope(&item.value) {
            Some(env) => Found::Live(Index {
                mcas: item.cas,
                env,
                item: item.value,
            }),
            None => Found::Absent { mcas: Some(item.cas) },
        }
    }

    /// The envelope of an index item's `value`, if it holds a value for the user: an envelope,
    /// not expired, for a value within the item size limit.
    pub(super) fn live_envelope(&self, value: &[u8]) -> Option<Envelope> {
        Envelope::decode(value).filter(|env| !self.expired(env) && env.total_len as usize <= self.cfg.item_size_max)
    }

    /// Writes the chunks of a new value. `Some` is a refusal to report (memcached out of memory,
    /// say); the chunks already written are deleted before returning.
    pub(super) async fn write_chunks(&self, key: &[u8], env: &Envelope, value: &[u8]) -> Result<Option<StoreOutcome>> {
        if env.chunk_count == 0 {
            return Ok(None);
        }
        // Boxed, like every chunk loop: the futures of the common case (a small value, one
        // request) stay small, instead of carrying the state of loops they never run.
        Box::pin(self.write_chunks_boxed(key, env, value)).await
    }

    pub(super) async fn write_chunks_boxed(
        &self,
        key: &[u8],
        env: &Envelope,
        value: &[u8],
    ) -> Result<Option<StoreOutcome>> {
        let n = env.chunk_count as usize;
        bump(&self.c.chunked_writes);
        let keys = ChunkKeys::new(key, env.token);
        let cs = env.chunk_size as usize;
        let exptime = unix_exptime(i64::from(env.expiry));
        let mut written = vec![false; n];
        let mut failure: Option<Result<Option<StoreOutcome>>> = None;
        // A chunk write in flight holds its data in the link's write buffer: bound that by bytes,
        // so many large sets at once do not queue whole values there.
        let window = self.cfg.window.min((WRITE_WINDOW_BYTES / cs.max(1)).max(1));
        run_windowed(
            n,
            window,
            |i| {
                let k = keys.key(i as u32);
                let header = chunk_header(env.token, i as u32);
                let data = &value[i * cs..value.len().min((i + 1) * cs)];
                async move {
                    let w = RawWrite {
                        mode: RawMode::Set,
                        key: &k,
                        flags: 0,
                        exptime,
                        cas: 0,
                        value: [&header, data, &[]],
                    };
                    self.raw.store(w).await
                }
            },
            |i, r| match r {
                Ok(RawStored::Stored { .. }) => {
                    written[i] = true;
                    ControlFlow::Continue(())
                }
                Ok(other) => {
                    failure = Some(Ok(Some(refused(other))));
                    ControlFlow::Break(())
                }
                Err(e) => {
                    failure = Some(Err(e));
                    ControlFlow::Break(())
                }
            },
        )
        .await;
        match failure {
            None => Ok(None),
            Some(f) => {
                self.delete_chunks_where(key, env, |i| written[i]).await;
                f
            }
        }
    }

    /// Deletes the chunks `pick` selects, ignoring failures: a chunk left behind is unreachable
    /// and expires with its value.
    pub(super) async fn delete_chunks_where(&self, key: &[u8], env: &Envelope, pick: impl Fn(usize) -> bool) {
        let keys = ChunkKeys::new(key, env.token);
        let picked: Vec<u32> = (0..env.chunk_count).filter(|&i| pick(i as usize)).collect();
        run_windowed(
            picked.len(),
            self.cfg.window,
            |j| {
                let k = keys.key(picked[j]);
                async move { self.raw.delete(&k, 0).await }
            },
            |_, r| {
                if r == Ok(RawDeleted::Deleted) {
                    bump(&self.c.chunks_deleted);
                }
                ControlFlow::Continue(())
            },
        )
        .await;
    }

    pub(super) async fn delete_chunks(&self, key: &[u8], env: &Envelope) {
        if env.chunk_count > 0 {
            Box::pin(self.delete_chunks_where(key, env, |_| true)).await;
        }
    }

    /// A value's chunks read under the layout this node noted for the key, at the same time as
    /// its index (see `Hints`): if the index `found` is that layout's, `Some` of what the chunks
    /// gave (`None` if one was missing or not the value's).
    pub(super) async fn lookup_with_chunks(
        &self,
        key: &[u8],
        layout: Layout,
        touch: Option<u32>,
    ) -> Result<(Found, Option<Option<Vec<Bytes>>>)> {
        let env = Envelope {
            bits: 0,
            flags: 0,
            expiry: 0,
            total_len: layout.total_len,
            chunk_size: layout.chunk_size,
            chunk_count: layout.total_len.div_ceil(layout.chunk_size.max(1)),
            version: Version::NONE,
            token: layout.token,
            cas: 0,
        };
        let (found, chunks) = tokio::join!(self.lookup(key), Box::pin(self.read_chunks(key, &env, touch)));
        let found = found?;
        // Counted only when they were the index's: chunks of an older layout are no broken read.
        let value = match &found {
            Found::Live(idx) if layout.is(&idx.env) => Some(self.count_chunks_read(chunks?)),
            _ => None,
        };
        Ok((found, value))
    }

    /// Reads every chunk of a value (GAT with `touch`) and checks each against the envelope.
    /// `None` when one is missing or is not that chunk of that value.
    pub(super) async fn fetch_chunks(
        &self,
        key: &[u8],
        env: &Envelope,
        touch: Option<u32>,
    ) -> Result<Option<Vec<Bytes>>> {
        Ok(self.count_chunks_read(self.read_chunks(key, env, touch).await?))
    }

    /// Counts a chunked read that got `value` (`None`: a chunk was missing or not the value's).
    fn count_chunks_read(&self, value: Option<Vec<Bytes>>) -> Option<Vec<Bytes>> {
        bump(if value.is_some() {
            &self.c.chunked_reads
        } else {
            &self.c.broken_reads
        });
        value
    }

    /// [`Chunked::fetch_chunks`], uncounted.
    async fn read_chunks(&self, key: &[u8], env: &Envelope, touch: Option<u32>) -> Result<Option<Vec<Bytes>>> {
        let keys = ChunkKeys::new(key, env.token);
        let mut out = vec![Bytes::new(); env.chunk_count as usize];
        let mut failure = None;
        let mut broken = false;
        run_windowed(
            env.chunk_count as usize,
            self.cfg.window,
            |i| {
                let k = keys.key(i as u32);
                async move { self.raw.get(&k, touch).await }
            },
            |i, r| match r {
                Ok(Some(item)) => match check_chunk(&item.value, env, i as u32) {
                    Some(data) => {
                        out[i] = item.value.slice_ref(data);
                        ControlFlow::Continue(())
                    }
                    None => {
                        broken = true;
                        ControlFlow::Break(())
                    }
                },
                Ok(None) => {
                    broken = true;
                    ControlFlow::Break(())
                }
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            },
        )
        .await;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok((!broken).then_some(out))
    }

    /// Sets every chunk's exptime; false if one is missing (the value is lost).
    pub(super) async fn touch_chunks(&self, key: &[u8], env: &Envelope, expiry: u32) -> Result<bool> {
        let keys = ChunkKeys::new(key, env.token);
        let exptime = unix_exptime(i64::from(expiry));
        let mut failure = None;
        let mut all = true;
        run_windowed(
            env.chunk_count as usize,
            self.cfg.window,
            |i| {
                let k = keys.key(i as u32);
                async move { self.raw.touch(&k, exptime).await }
            },
            |_, r| match r {
                Ok(true) => ControlFlow::Continue(()),
                Ok(false) => {
                    all = false;
                    ControlFlow::Break(())
                }
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            },
        )
        .await;
        match failure {
            Some(e) => Err(e),
            None => Ok(all),
        }
    }

    /// A value whose chunks are gone: delete its index (by memcached's CAS, so a newer value is
    /// never removed) and what is left of its chunks.
    pub(super) async fn drop_lost(&self, key: &[u8], idx: &Index) -> Result<()> {
        if self.raw.delete(key, idx.mcas).await? == RawDeleted::Deleted {
            self.delete_chunks(key, &idx.env).await;
        }
        Ok(())
    }

    /// The whole value of an index: inline, or read from its chunks (`None` if they are lost).
    pub(super) async fn value_of<'a>(
        &self,
        key: &[u8],
        idx: &'a Index,
        touch: Option<u32>,
    ) -> Result<Option<ValueBuf<'a>>> {
        self.value_of_or(key, idx, touch, None).await
    }

    /// [`Chunked::value_of`], unless the chunks were already read (`early`, see
    /// [`Chunked::lookup_with_chunks`]).
    pub(super) async fn value_of_or<'a>(
        &self,
        key: &[u8],
        idx: &'a Index,
        touch: Option<u32>,
        early: Option<Option<Vec<Bytes>>>,
    ) -> Result<Option<ValueBuf<'a>>> {
        if !idx.env.is_chunked() {
            return Ok(Some(ValueBuf::inline_in(&idx.item, idx.inline())));
        }
        if let Some(v) = early {
            return Ok(v.map(ValueBuf::Chunks));
        }
        Ok(Box::pin(self.fetch_chunks(key, &idx.env, touch))
            .await?
            .map(ValueBuf::Chunks))
    }

    /// Writes an index with memcached's CAS of the one read (`Set` with CAS `mcas`), or with
    /// `Add` when there was none.
    pub(super) async fn put_index(
        &self,
        key: &[u8],
        env: &Envelope,
        inline: &[u8],
        mcas: Option<u64>,
    ) -> Result<RawStored> {
        let e = env.encode();
        let mode = if mcas.is_some() { RawMode::Set } else { RawMode::Add };
        self.raw
            .store(index_write(mode, key, &e, inline, mcas.unwrap_or(0), env.expiry))
            .await
    }

    /// Publishes `value` under `env` in place of the value `old` read: chunks first, then the
    /// index with memcached's CAS of `old`'s. On success `old`'s chunks are deleted; when the
    /// index changed meanwhile (or memcached refused) the new chunks are.
    pub(super) async fn swap_value(&self, key: &[u8], old: &Index, env: &Envelope, value: &[u8]) -> Result<Swap> {
        if let Some(no) = self.write_chunks(key, env, value).await? {
            return Ok(Swap::Refused(no));
        }
        let inline: &[u8] = if env.is_chunked() { &[] } else { value };
        match self.put_index(key, env, inline, Some(old.mcas)).await? {
            RawStored::Stored { .. } => {
                self.note_written(key, env);
                if old.env.is_chunked() {
                    self.delete_chunks(key, &old.env).await;
                }
                Ok(Swap::Done)
            }
            RawStored::Exists | RawStored::NotFound => {
                bump(&self.c.races);
                self.delete_chunks(key, env).await;
                Ok(Swap::Lost)
            }
            other => {
                self.delete_chunks(key, env).await;
                Ok(Swap::Refused(refused(other)))
            }
        }
    }

    /// Remembers whether the value just written under `key` is chunked (see [`Hints`]).
    pub(super) fn note_written(&self, key: &[u8], env: &Envelope) {
        self.hints
            .note(key_hash(key), env.is_chunked().then(|| Layout::of(env)));
    }

    /// `env` reshaped for a new value of `len` bytes: a new token, version and CAS.
    pub(super) fn renew(&self, env: &Envelope, len: usize) -> Envelope {
        Envelope {
            bits: env.bits,
            ..self.new_envelope(env.flags, env.expiry, len)
        }
    }
}
