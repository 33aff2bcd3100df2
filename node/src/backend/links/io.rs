//! A link's connection: connect and reconnect with backoff, the writer and the reader tasks.

use bytes::BufMut;

use super::*;

/// Keeps one link connected: connect, serve until it breaks, back off, again.
pub(super) async fn supervise(link: Arc<Link>, cfg: LinksConfig, stop: CancellationToken) {
    let mut backoff = cfg.backoff_min;
    loop {
        let mut why = LinkError::Lost;
        let connected = tokio::select! {
            c = connect(&cfg.endpoint, Duration::from_secs(1)) => c,
            _ = stop.cancelled() => return,
        };
        match connected {
            Ok(Stream::Tcp(s)) => {
                let _ = s.set_nodelay(true);
                backoff = cfg.backoff_min;
                let (r, w) = s.into_split();
                why = serve_link(&link, r, w, &cfg, &stop).await;
            }
            Ok(Stream::Unix(s)) => {
                backoff = cfg.backoff_min;
                let (r, w) = s.into_split();
                why = serve_link(&link, r, w, &cfg, &stop).await;
            }
            Err(e) => tracing::debug!(error = %e, endpoint = ?cfg.endpoint, "cannot reach memcached"),
        }
        link.fail_all(why);
        if stop.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
}

/// A connection to memcached, by endpoint kind.
pub(crate) enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Connects to memcached at `endpoint`, giving up after `limit`.
pub(crate) async fn connect(endpoint: &Endpoint, limit: Duration) -> std::io::Result<Stream> {
    let fut = async {
        match endpoint {
            Endpoint::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str()).await.map(Stream::Tcp),
            Endpoint::Unix(path) => tokio::net::UnixStream::connect(path).await.map(Stream::Unix),
        }
    };
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Runs a connected link until it fails; returns why, for the requests it leaves unanswered.
pub(super) async fn serve_link<R, W>(link: &Link, r: R, w: W, cfg: &LinksConfig, stop: &CancellationToken) -> LinkError
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    link.state.lock().up = true;
    tracing::info!(endpoint = ?cfg.endpoint, "connected to memcached");
    let failed = tokio::select! {
        e = write_loop(link, w) => e,
        e = read_loop(link, r, cfg.timeout) => e,
        _ = stop.cancelled() => return LinkError::Down,
    };
    let why = failed.err().unwrap_or(LinkError::Lost);
    tracing::warn!(error = %why, "memcached link failed");
    why
}

pub(super) async fn write_loop<W: AsyncWrite + Unpin>(link: &Link, mut w: W) -> Result<(), LinkError> {
    let mut spare = Vec::with_capacity(16 * 1024);
    loop {
        link.wake_writer.notified().await;
        // Let the client tasks that are ready run first: their requests join this write instead
        // of each costing memcached (and us) a syscall of its own.
        tokio::task::yield_now().await;
        {
            let mut st = link.state.lock();
            std::mem::swap(&mut st.wbuf, &mut spare);
        }
        if !spare.is_empty() {
            w.write_all(&spare).await.map_err(|_| LinkError::Lost)?;
            spare.clear();
            if spare.capacity() > 1 << 20 {
                spare.shrink_to(16 * 1024);
            }
        }
    }
}

/// Room a link's reader asks the socket to fill per read: many small replies come in one read.
const READ_BUF: usize = 256 * 1024;

/// A reply at least this long (a large value's chunk, up to 126 KiB) is read into a buffer of its
/// own size. Replies are handed out where they lie, so a buffer lives as long as any reply in it:
/// a large reply that started near the end of a shared buffer would have to be copied out, and
/// strand its room in that buffer for as long as the replies before it live.
const OWN_BUFFER: usize = 32 * 1024;

/// The longest reply taken from memcached: its largest item, and room for the header and key.
const MAX_FRAME: usize = (1 << 30) + 4096;

/// After a large reply, the next read takes only this much: enough for the next reply's header,
/// so a large reply after it starts in a buffer of its own (with at most this much copied).
const PEEK: usize = 4096;

pub(super) async fn read_loop<R: AsyncRead + Unpin>(link: &Link, mut r: R, timeout: Duration) -> Result<(), LinkError> {
    let mut buf = BytesMut::with_capacity(READ_BUF);
    // Group calls that got a reply in this pass, woken once per task when it ends.
    let mut to_wake: Vec<Waker> = Vec::new();
    // The oldest request unanswered at a pass, and when a pass first saw it so. Requests carry
    // no time of their own (a clock read per request showed in profiles); a request that stays
    // the oldest for longer than the timeout is one memcached is not answering. Passes come at
    // least every quarter timeout, so it is caught within 1.5 timeouts of being sent.
    let mut watch: Option<(u32, Instant)> = None;
    loop {
        let parsed = deliver_replies(link, &mut buf, &mut to_wake);
        // Woken even when the stream broke: their replies are in.
        for waker in to_wake.drain(..) {
            waker.wake();
        }
        let head = parsed?;
        // A request unanswered for longer than the timeout means memcached is hung (or too slow
        // to be useful): drop the link so every waiter fails now and it reconnects.
        let oldest = link.state.lock().pending.front().map(|p| p.0);
        watch = match (oldest, watch) {
            (None, _) => None,
            (Some(o), Some((w, since))) if o == w => {
                if since.elapsed() > timeout {
                    return Err(LinkError::Timeout);
                }
                Some((w, since))
            }
            (Some(o), _) => Some((o, Instant::now())),
        };
        // How much the next read may take: the rest of a large reply, exactly, into a buffer
        // that ends with it; a peek after one; otherwise all the room there is.
        let limit = match head {
            Head::Partial(frame_len) if frame_len >= OWN_BUFFER => {
                if buf.capacity() < frame_len {
                    let mut own = BytesMut::with_capacity(frame_len);
                    own.extend_from_slice(&buf);
                    buf = own;
                }
                frame_len - buf.len()
            }
            // (Only ever at an empty buffer: see `deliver_replies`.)
            Head::EndedLarge => {
                buf = BytesMut::with_capacity(PEEK);
                PEEK
            }
            _ => {
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(READ_BUF);
                }
                usize::MAX
            }
        };
        match tokio::time::timeout(timeout / 4, r.read_buf(&mut (&mut buf).limit(limit))).await {
            Ok(Ok(0)) => return Err(LinkError::Lost),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(LinkError::Lost),
            // Silence: fine while nothing is asked; checked above on the next turn otherwise.
            Err(_) => {}
        }
    }
}

/// Where a pass over the read buffer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
    /// At a reply whose header has not all come, or at the end of small replies.
    Open,
    /// Right after a reply of at least [`OWN_BUFFER`] bytes.
    EndedLarge,
    /// In a reply of this many bytes (its header read, the rest not all come).
    Partial(usize),
}

/// Parses every whole reply in `buf` and hands each to its waiter; groups to wake are pushed on
/// `to_wake`.
pub(super) fn deliver_replies(link: &Link, buf: &mut BytesMut, to_wake: &mut Vec<Waker>) -> Result<Head, LinkError> {
    // One lock for the whole pass, not one per reply: the callers that append requests to a
    // link almost always run on the link's own worker thread, so holding it keeps no one
    // waiting. (Lock order, as in `send_in`: link, then group.)
    let mut st = link.state.lock();
    let mut last_len = 0;
    loop {
        let header = match binary::parse_response_header(buf) {
            Ok(h) => h,
            Err(binary::ParseError::Incomplete) if buf.is_empty() && last_len >= OWN_BUFFER => {
                return Ok(Head::EndedLarge)
            }
            Err(binary::ParseError::Incomplete) => return Ok(Head::Open),
            Err(_) => return Err(LinkError::Protocol),
        };
        let frame_len = header.frame_len();
        if buf.len() < frame_len {
            // No memcached item is larger (`-I` is 1024m at most): a header that says so is
            // garbage, not a reason to allocate.
            if frame_len > MAX_FRAME {
                return Err(LinkError::Protocol);
            }
            return Ok(Head::Partial(frame_len));
        }
        last_len = frame_len;
        let frame = buf.split_to(frame_len).freeze();
        let extras_end = HEADER_LEN + header.extras_len as usize;
        let key_end = extras_end + header.key_len as usize;
        if key_end > frame_len {
            return Err(LinkError::Protocol);
        }
        let reply = Reply {
            opcode: header.opcode,
            status: header.status,
            cas: header.cas,
            frame,
            extras_end,
            key_end,
        };
        let waiter = match st.pending.pop_front() {
            Some((opaque, w)) if opaque == header.opaque => w,
            // A reply nobody asked for: the stream is out of step; start over.
            _ => return Err(LinkError::Protocol),
        };
        if let Some(waker) = waiter.deliver(Ok(reply)) {
            // A burst's requests are sent, and so answered, together: comparing with the last
            // waker is enough to wake each connection about once per pass.
            if !to_wake.last().is_some_and(|w| w.will_wake(&waker)) {
                to_wake.push(waker);
            }
        }
    }
}
