//! Reads: at once from a reply already in, or through the index and its chunks.

use super::*;

impl<R: RawStore> Chunked<R> {
    /// Counts a read that ended with `r`, for `stats`.
    pub(super) fn count_read<T>(&self, opts: &ReadOpts, r: &Result<Option<T>>) {
        bump(&self.c.cmd_get);
        if opts.touch.is_some() {
            bump(&self.c.cmd_touch);
        }
        if let Ok(hit) = r {
            bump(if hit.is_some() {
                &self.c.get_hits
            } else {
                &self.c.get_misses
            });
            if opts.touch.is_some() {
                bump(if hit.is_some() {
                    &self.c.touch_hits
                } else {
                    &self.c.touch_misses
                });
            }
        }
    }

    /// A plain read (no touch, recache check, vivify or peek) whose GET was sent ahead and has
    /// been answered (see `RawStore::use_ready`), answered here, in the reply, when that is all
    /// it takes: a miss, or a live value held inline that is not stale, so nothing is to be
    /// recorded. This is what `read_impl` does for such a read, in one call instead of a chain
    /// of futures: over memcached at pipeline depth 16 most reads are these. Otherwise `f` back,
    /// and the reply stays for `read_impl`'s GET (so a write later in the same burst cannot
    /// slip in front of the read).
    pub(super) fn read_ready<T, F>(
        &self,
        key: &[u8],
        opts: &ReadOpts,
        f: F,
    ) -> std::result::Result<Result<Option<T>>, F>
    where
        F: FnOnce(&ItemView<'_>) -> T,
    {
        let plain = opts.touch.is_none() && opts.vivify.is_none() && opts.recache_below.is_none() && !opts.peek;
        if !plain {
            return Err(f);
        }
        let mut f = Some(f);
        let done = self.raw.use_ready(key, |item| match item {
            Err(e) => Some(Err(e)),
            Ok(None) => Some(Ok(None)),
            Ok(Some(item)) => match self.live_envelope(item.value) {
                // Anything else but a miss needs more than this reply: `read_impl`.
                Some(env) if env.is_chunked() || env.bits & STALE != 0 => None,
                Some(env) => {
                    let f = f.take()?;
                    let value = ValueBuf::inline_in(item.buf, &item.value[ENV_LEN..]);
                    Some(Ok(Some(f(&self.view(&env, value.value(), false)))))
                }
                None => Some(Ok(None)),
            },
        });
        match (done, f) {
            (Some(r), _) => Ok(r),
            (None, Some(f)) => Err(f),
            // `f` is only taken on the way to `Some`.
            (None, None) => Ok(Err(BackendError::failed("read lost its reply"))),
        }
    }

    /// A read.
    pub(super) async fn read_impl<T, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> Result<Option<T>>
    where
        F: FnOnce(&ItemView<'_>) -> T,
    {
        let touch = opts.touch.map(|e| self.unix_expiry(e));
        let chunk_touch = touch.map(|t| unix_exptime(i64::from(t)));
        for attempt in 0..MAX_ATTEMPTS {
            // A value this node wrote in chunks: its chunks are asked for with its index.
            let hinted = (attempt == 0).then(|| self.hints.layout(key)).flatten();
            let (found, mut early) = match hinted {
                Some(layout) => Box::pin(self.lookup_with_chunks(key, layout, chunk_touch)).await?,
                None => (self.lookup(key).await?, None),
            };
            let idx = match found {
                Found::Live(idx) => idx,
                Found::Absent { mcas } => {
                    let Some(vivify) = opts.vivify else {
                        return Ok(None);
                    };
                    // mg N: an empty stub whose creator wins the right to recache it.
                    let mut env = self.new_envelope(0, self.unix_expiry(vivify), 0);
                    env.bits = TOKEN_SENT;
                    match self.put_index(key, &env, &[], mcas).await? {
                        RawStored::Stored { .. } => return Ok(Some(f(&self.view(&env, Value::slice(&[]), true)))),
                        RawStored::TooLarge | RawStored::OutOfMemory => return Ok(None),
                        // Created by someone else meanwhile: read theirs.
                        _ => {
                            bump(&self.c.races);
                            continue;
                        }
                    }
                }
            };
            // The touch, and the recache rules on the expiry before or after it (the request's
            // flag order), as the embedded store.
            let mut env = idx.env;
            if let Some(t) = touch {
                env.expiry = t;
            }
            // A win handed out by a request before this one in its pipelined burst: this one's
            // GET was sent before that win was recorded (see `RawStore::burst_mark`), so it read
            // the very item the winner read (same memcached CAS), without the record.
            // Only a stale value or a recache check can win: other reads hash nothing here.
            let may_win = env.bits & STALE != 0 || opts.recache_below.is_some();
            let mark = may_win.then(|| (key_hash(key), idx.mcas));
            let won_before = mark.is_some_and(|m| env.bits & TOKEN_SENT == 0 && self.raw.burst_marked(m));
            let mut win = false;
            // A peek (`me`) hands out no token.
            if env.bits & TOKEN_SENT == 0 && !won_before && !opts.peek {
                if let Some(below) = opts.recache_below {
                    let expiry = if opts.recache_before_touch {
                        idx.env.expiry
                    } else {
                        env.expiry
                    };
                    if expiry != 0 && self.ttl(expiry) < i64::from(below) {
                        win = true;
                    }
                }
                if env.bits & STALE != 0 {
                    win = true;
                }
            }
            if win {
                env.bits |= TOKEN_SENT;
                // A win needs `may_win`: the mark is there.
                if let Some(m) = mark {
                    self.raw.burst_mark(m);
                }
            }
            // With a touch, chunks are read with GAT so they live as long as the index will.
            let Some(value) = self.value_of_or(key, &idx, chunk_touch, early.take()).await? else {
                self.drop_lost(key, &idx).await?;
                continue;
            };
            if env != idx.env {
                // Record the touch or the win.
                match self.put_index(key, &env, idx.inline(), Some(idx.mcas)).await? {
                    RawStored::Stored { .. } => {}
                    RawStored::Exists | RawStored::NotFound => {
                        bump(&self.c.races);
                        // The same value changed meanwhile (another reader's touch or win):
                        // read again, so one reader only ever wins. A new value (or none) means
                        // this read came before that write: answer what it read. Retrying would
                        // answer with a value written after this request; over memcached that
                        // can be a write pipelined behind this read, sent ahead of it (`conn`).
                        let same =
                            matches!(self.lookup(key).await?, Found::Live(now) if now.env.token == idx.env.token);
                        if same {
                            continue;
                        }
                    }
                    _ => return Err(BackendError::failed("memcached refused an index update")),
                }
            }
            let mut shown = env;
            if won_before {
                shown.bits |= TOKEN_SENT;
            }
            let mut view = self.view(&shown, value.value(), win);
            view.ttl = self.ttl(idx.env.expiry);
            return Ok(Some(f(&view)));
        }
        // Writers keep replacing the value under this reader: a miss is a valid answer.
        Ok(None)
    }
}
