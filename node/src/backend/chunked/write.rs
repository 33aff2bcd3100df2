//! Mutations with memcached's semantics: storage modes, CAS, append, delete, invalidate,
//! touch and arithmetic, each retried when it loses a race on the index.

use super::*;

impl<R: RawStore> Chunked<R> {
    /// set / add / replace, with or without CAS.
    pub(super) async fn put(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        let key = req.key;
        let env = self.new_envelope(req.flags, self.unix_expiry(req.expiry), req.value.len());
        let inline: &[u8] = if env.is_chunked() { &[] } else { req.value };
        match (req.mode, req.cas) {
            (Mode::Add, _) => self.add(req, &env, inline).await,
            (_, None) => {
                // The old index is read alongside the writes (and requested first) only to find
                // the chunks this write makes garbage: for a small value, only if the key may
                // hold a chunked one.
                let look = env.is_chunked() || self.hints.may_be_chunked(key_hash(key));
                let mode = if req.mode == Mode::Replace {
                    RawMode::Replace
                } else {
                    RawMode::Set
                };
                let e = env.encode();
                let write = async {
                    if let Some(no) = self.write_chunks(key, &env, req.value).await? {
                        return Ok(Err(no));
                    }
                    Ok(Ok(self
                        .raw
                        .store(index_write(mode, key, &e, inline, 0, env.expiry))
                        .await?))
                };
                let lookup = async {
                    match look {
                        true => Some(self.lookup(key).await),
                        false => None,
                    }
                };
                let (old, written) = tokio::join!(lookup, write);
                match written? {
                    Err(no) => Ok(no),
                    Ok(RawStored::Stored { cas: mcas }) => {
                        self.note_written(key, &env);
                        if let Some(Ok(Found::Live(old))) = old {
                            // Lower CAS: written before ours, so it is not the current value.
                            if old.env.is_chunked() && old.mcas < mcas && old.env.token != env.token {
                                self.delete_chunks(key, &old.env).await;
                            }
                        }
                        Ok(StoreOutcome::Stored { cas: env.cas })
                    }
                    Ok(other) => {
                        self.delete_chunks(key, &env).await;
                        Ok(refused(other))
                    }
                }
            }
            (_, Some(cas)) => {
                let (mut found, written) = tokio::join!(self.lookup(key), self.write_chunks(key, &env, req.value));
                if let Some(no) = written? {
                    return Ok(no);
                }
                // The exptime the chunks have now (an `ms I` result takes the old value's).
                let mut chunk_expiry = env.expiry;
                for _ in 0..MAX_ATTEMPTS {
                    let old = match found? {
                        Found::Live(old) => old,
                        Found::Absent { .. } => {
                            bump(&self.c.cas_misses);
                            self.delete_chunks(key, &env).await;
                            return Ok(StoreOutcome::NotFound);
                        }
                    };
                    let mut this = env;
                    if cas != old.env.cas {
                        if !(req.invalidate && cas < old.env.cas) {
                            bump(&self.c.cas_badval);
                            self.delete_chunks(key, &env).await;
                            return Ok(StoreOutcome::Exists);
                        }
                        // ms I: an older CAS still writes, but the result is stale and keeps the
                        // old TTL, so readers know to recache it.
                        this.expiry = old.env.expiry;
                        this.bits = STALE | (old.env.bits & TOKEN_SENT);
                    }
                    if this.is_chunked() && this.expiry != chunk_expiry {
                        if !self.touch_chunks(key, &this, this.expiry).await? {
                            self.delete_chunks(key, &env).await;
                            return Ok(StoreOutcome::NotStored);
                        }
                        chunk_expiry = this.expiry;
                    }
                    match self.put_index(key, &this, inline, Some(old.mcas)).await? {
                        RawStored::Stored { .. } => {
                            bump(&self.c.cas_hits);
                            self.note_written(key, &this);
                            if old.env.is_chunked() {
                                self.delete_chunks(key, &old.env).await;
                            }
                            return Ok(StoreOutcome::Stored { cas: this.cas });
                        }
                        // The index changed since we read it (maybe only a touch): check again.
                        RawStored::Exists | RawStored::NotFound => {
                            bump(&self.c.races);
                            found = self.lookup(key).await;
                        }
                        other => {
                            self.delete_chunks(key, &env).await;
                            return Ok(refused(other));
                        }
                    }
                }
                self.delete_chunks(key, &env).await;
                Err(BackendError::failed("too much contention on the key"))
            }
        }
    }

    /// add: memcached's ADD on the index decides. An index that does not count (expired by its
    /// envelope, foreign, or a chunked value whose chunks are gone) is replaced by CAS.
    pub(super) async fn add(&self, req: &StoreReq<'_>, env: &Envelope, inline: &[u8]) -> Result<StoreOutcome> {
        let key = req.key;
        if let Some(no) = self.write_chunks(key, env, req.value).await? {
            return Ok(no);
        }
        let mut mcas = None;
        // A chunked value found lost, whose index this add replaces.
        let mut lost = None;
        for _ in 0..MAX_ATTEMPTS {
            match self.put_index(key, env, inline, mcas).await? {
                RawStored::Stored { .. } => {
                    self.note_written(key, env);
                    if let Some(lost) = lost {
                        self.delete_chunks(key, &lost).await;
                    }
                    return Ok(StoreOutcome::Stored { cas: env.cas });
                }
                RawStored::NotStored | RawStored::Exists | RawStored::NotFound => {}
                other => {
                    self.delete_chunks(key, env).await;
                    return Ok(refused(other));
                }
            }
            mcas = match self.lookup(key).await? {
                Found::Absent { mcas } => mcas,
                // TOUCH with the exptime they have: asks whether the chunks are all there
                // without moving their data.
                Found::Live(old)
                    if old.env.is_chunked() && !self.touch_chunks(key, &old.env, old.env.expiry).await? =>
                {
                    lost = Some(old.env);
                    Some(old.mcas)
                }
                Found::Live(_) => {
                    self.delete_chunks(key, env).await;
                    return Ok(StoreOutcome::NotStored);
                }
            };
            bump(&self.c.races);
        }
        self.delete_chunks(key, env).await;
        Err(BackendError::failed("too much contention on the key"))
    }

    /// append / prepend: read the whole value, write the combined one under a new token, and
    /// publish it with memcached's CAS of the index read; start over if it changed meanwhile.
    /// memcached keeps the existing item's flags and expiry.
    pub(super) async fn concat(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        let key = req.key;
        for _ in 0..MAX_ATTEMPTS {
            let Found::Live(old) = self.lookup(key).await? else {
                return Ok(StoreOutcome::NotStored);
            };
            if req.cas.is_some_and(|c| c != old.env.cas) {
                bump(&self.c.cas_badval);
                return Ok(StoreOutcome::Exists);
            }
            let Some(old_value) = self.value_of(key, &old, None).await? else {
                self.drop_lost(key, &old).await?;
                continue;
            };
            let old_value = old_value.contiguous();
            let old_value = &old_value[..];
            let total = old_value.len() + req.value.len();
            if !item_size_ok(self.cfg.item_size_max, key.len(), old.env.flags, total) {
                return Ok(StoreOutcome::TooLarge);
            }
            let mut value = Vec::with_capacity(total);
            let (first, second) = match req.mode {
                Mode::Prepend => (req.value, old_value),
                _ => (old_value, req.value),
            };
            value.extend_from_slice(first);
            value.extend_from_slice(second);
            // A new item in memcached: the stale/win bits go.
            let env = self.new_envelope(old.env.flags, old.env.expiry, total);
            match self.swap_value(key, &old, &env, &value).await? {
                Swap::Done => return Ok(StoreOutcome::Stored { cas: env.cas }),
                Swap::Lost => {}
                Swap::Refused(no) => return Ok(no),
            }
        }
        Err(BackendError::failed("too much contention on the key"))
    }

    pub(super) async fn delete_impl(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        for _ in 0..MAX_ATTEMPTS {
            let idx = match self.lookup(key).await? {
                Found::Live(idx) => idx,
                Found::Absent { mcas } => {
                    // Nothing to report, but clear what does not count so it cannot block an add.
                    if let Some(m) = mcas {
                        let _ = self.raw.delete(key, m).await;
                    }
                    return Ok(DeleteOutcome::NotFound);
                }
            };
            if cas.is_some_and(|c| c != idx.env.cas) {
                return Ok(DeleteOutcome::Exists);
            }
            // The index first: from then on no reader finds the chunks.
            match self.raw.delete(key, idx.mcas).await? {
                RawDeleted::Deleted => {
                    self.hints.note(key_hash(key), None);
                    self.delete_chunks(key, &idx.env).await;
                    return Ok(DeleteOutcome::Deleted);
                }
                _ => bump(&self.c.races),
            }
        }
        Err(BackendError::failed("too much contention on the key"))
    }

    /// md I: mark stale with a new CAS (and optionally a new expiry), clearing the recache token.
    pub(super) async fn invalidate_impl(
        &self,
        key: &[u8],
        cas: Option<u64>,
        expiry: Option<Expiry>,
    ) -> Result<DeleteOutcome> {
        let expiry = expiry.map(|e| self.unix_expiry(e));
        for _ in 0..MAX_ATTEMPTS {
            let Found::Live(idx) = self.lookup(key).await? else {
                return Ok(DeleteOutcome::NotFound);
            };
            if cas.is_some_and(|c| c != idx.env.cas) {
                return Ok(DeleteOutcome::Exists);
            }
            let mut env = idx.env;
            env.bits = (env.bits | STALE) & !TOKEN_SENT;
            env.cas = self.tick();
            if let Some(e) = expiry {
                env.expiry = e;
                if env.is_chunked() && e != idx.env.expiry && !self.touch_chunks(key, &env, e).await? {
                    self.drop_lost(key, &idx).await?;
                    continue;
                }
            }
            match self.put_index(key, &env, idx.inline(), Some(idx.mcas)).await? {
                RawStored::Stored { .. } => return Ok(DeleteOutcome::Deleted),
                RawStored::Exists | RawStored::NotFound => bump(&self.c.races),
                _ => return Err(BackendError::failed("memcached refused an index update")),
            }
        }
        Err(BackendError::failed("too much contention on the key"))
    }

    /// touch: the chunks first (so they never expire before the index), then the index.
    pub(super) async fn touch_impl(&self, key: &[u8], expiry: Expiry) -> Result<bool> {
        let expiry = self.unix_expiry(expiry);
        for _ in 0..MAX_ATTEMPTS {
            let Found::Live(idx) = self.lookup(key).await? else {
                return Ok(false);
            };
            if idx.env.is_chunked() && !self.touch_chunks(key, &idx.env, expiry).await? {
                self.drop_lost(key, &idx).await?;
                continue;
            }
            if idx.env.expiry == expiry {
                return Ok(true);
            }
            let env = Envelope { expiry, ..idx.env };
            match self.put_index(key, &env, idx.inline(), Some(idx.mcas)).await? {
                RawStored::Stored { .. } => return Ok(true),
                RawStored::Exists | RawStored::NotFound => bump(&self.c.races),
                _ => return Err(BackendError::failed("memcached refused an index update")),
            }
        }
        Err(BackendError::failed("too much contention on the key"))
    }

    /// incr/decr on an inline value: incr wraps at 2^64, decr stops at 0; a result shorter than
    /// the value is padded with spaces to the same length, as memcached does in place.
    pub(super) async fn arith_impl(&self, req: &ArithReq<'_>) -> Result<ArithOutcome> {
        let key = req.key;
        let mut digits = itoa::Buffer::new();
        for _ in 0..MAX_ATTEMPTS {
            let idx = match self.lookup(key).await? {
                Found::Live(idx) => idx,
                Found::Absent { mcas } => {
                    let Some((initial, expiry)) = req.vivify else {
                        return Ok(ArithOutcome::NotFound);
                    };
                    let text = digits.format(initial).as_bytes();
                    let env = self.new_envelope(0, self.unix_expiry(expiry), text.len());
                    match self.put_index(key, &env, text, mcas).await? {
                        RawStored::Stored { .. } => {
                            return Ok(ArithOutcome::Done {
                                value: initial,
                                cas: env.cas,
                                ttl: self.ttl(env.expiry),
                                created: true,
                            })
                        }
                        RawStored::TooLarge | RawStored::OutOfMemory => return Ok(ArithOutcome::OutOfMemory),
                        // Created meanwhile: apply the delta to that one.
                        _ => {
                            bump(&self.c.races);
                            continue;
                        }
                    }
                }
            };
            if req.cas.is_some_and(|c| c != idx.env.cas) {
                return Ok(ArithOutcome::Exists);
            }
            // memcached reads at most a 64-byte number; anything longer is not one, and is not
            // worth fetching.
            if idx.env.total_len > 64 {
                return Ok(ArithOutcome::NonNumeric);
            }
            let Some(old_value) = self.value_of(key, &idx, None).await? else {
                self.drop_lost(key, &idx).await?;
                continue;
            };
            let old_value = old_value.contiguous();
            let Some(current) = parse_number(&old_value) else {
                return Ok(ArithOutcome::NonNumeric);
            };
            let old_len = old_value.len();
            let value = if req.incr {
                current.wrapping_add(req.delta)
            } else {
                current.saturating_sub(req.delta)
            };
            let text = digits.format(value).as_bytes();
            let mut padded = [b' '; 64];
            let (new_value, bits): (&[u8], u8) = if text.len() <= old_len {
                padded[..text.len()].copy_from_slice(text);
                (&padded[..old_len], idx.env.bits)
            } else {
                // A longer number is a new item in memcached: the stale/win bits go.
                (text, 0)
            };
            let mut env = self.renew(&idx.env, new_value.len());
            env.bits = bits;
            if let Some(t) = req.touch {
                env.expiry = self.unix_expiry(t);
            }
            match self.swap_value(key, &idx, &env, new_value).await? {
                Swap::Done => {
                    return Ok(ArithOutcome::Done {
                        value,
                        cas: env.cas,
                        ttl: self.ttl(env.expiry),
                        created: false,
                    })
                }
                Swap::Lost => {}
                Swap::Refused(StoreOutcome::NotStored) => return Ok(ArithOutcome::NotStored),
                Swap::Refused(_) => return Ok(ArithOutcome::OutOfMemory),
            }
        }
        Err(BackendError::failed("too much contention on the key"))
    }
}
