//! Cheap scans for a pipeline planner: which complete requests at the start of a buffer can be
//! answered together, each in one round trip to a tier, and where their keys are. A server
//! that answers pipelined requests one at a time pays a round trip to its tier for each; one
//! that knows a stretch (a *run*) of plain reads and small sets can send them together.
//!
//! A write the planner takes is one the full parsers beside it accept, with the same length, so
//! it can be started ahead and uses exactly those bytes. A read is one whole request line (or
//! binary frame), which the front end then answers alone, with memcached's error if a flag the
//! planner did not look at is malformed. The tests and the `plan` fuzz target hold the scans to
//! that.

/// Whether an item fits the server's size limit: (key, client flags, value length), as
/// [`crate::text::parse_request`] takes it.
pub type SizeOk<'a> = dyn Fn(&[u8], u32, usize) -> bool + 'a;

/// How a connection's bytes are framed, decided by its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Classic and meta text commands.
    Text,
    /// The binary protocol.
    Binary,
}

/// The length the full parsers give the complete, well-formed request at the start of `buf`:
/// what every request of a run must measure (see the tests and the `plan` fuzz target).
pub fn parsed_len(p: Proto, buf: &[u8], size_ok: &SizeOk<'_>) -> Option<usize> {
    match p {
        Proto::Binary => crate::binary::parse_request(buf).ok().map(|(_, used)| used),
        Proto::Text => {
            let limits = crate::text::Limits { max_get_line: 0 };
            match crate::text::parse_request(buf, &limits, size_ok).ok()? {
                (crate::text::Request::Meta { .. }, _) => {
                    let (line_end, next) = crate::find_line(buf)?;
                    let mut key_buf: crate::meta::KeyBuf = [0; crate::MAX_KEY_LEN];
                    let req = crate::meta::parse_request(&buf[..line_end], &mut key_buf).ok()?;
                    if req.late_error.is_some() {
                        return None;
                    }
                    if req.command != crate::meta::Command::Set {
                        return Some(next);
                    }
                    match crate::meta::data_block(&buf[next..], req.datalen) {
                        crate::meta::DataBlock::Ok(_) => Some(next + req.datalen + 2),
                        _ => None,
                    }
                }
                (_, used) => Some(used),
            }
        }
    }
}

/// Where the line of `req` ends, if `req` is exactly one `mg` line with its terminator (what the
/// planner took for a read).
pub fn meta_get_line(p: Proto, req: &[u8]) -> Option<usize> {
    if p != Proto::Text || !req.starts_with(b"mg ") {
        return None;
    }
    let line = req.strip_suffix(b"\n")?;
    Some(line.strip_suffix(b"\r").unwrap_or(line).len())
}

/// Calls `f` with each key a read request (of a run) will GET, in order; how many `f` accepted.
pub fn for_each_read_key(p: Proto, req: &[u8], mut f: impl FnMut(&[u8]) -> bool) -> u8 {
    let mut n = 0u8;
    let mut take = |key: &[u8]| {
        if crate::key_is_valid(key) && f(key) {
            n += 1;
        }
    };
    match p {
        Proto::Text => {
            let Some((line_end, _)) = crate::find_line(req) else {
                return 0;
            };
            let line = &req[..line_end];
            if line.starts_with(b"mg ") {
                let mut tokens = line.split(|&b| b == b' ').filter(|t| !t.is_empty()).skip(1);
                let key = tokens.next().unwrap_or_default();
                if tokens.any(|t| t == b"b") {
                    // A base64 key: GET what it decodes to.
                    let mut key_buf: crate::meta::KeyBuf = [0; crate::MAX_KEY_LEN];
                    if let Ok(r) = crate::meta::parse_request(line, &mut key_buf) {
                        take(r.key);
                    }
                } else {
                    take(key);
                }
            } else {
                // get/gets: the keys after the command, at most a run's worth.
                for key in line.split(|&b| b == b' ').filter(|k| !k.is_empty()).skip(1).take(32) {
                    take(key);
                }
            }
        }
        Proto::Binary => {
            if let Ok(h) = crate::binary::parse_request_header(req) {
                let start = crate::binary::HEADER_LEN + usize::from(h.extras_len);
                if let Some(key) = req.get(start..start + usize::from(h.key_len)) {
                    take(key);
                }
            }
        }
    }
    n
}

/// Request `i` of a run in `buf`, whose requests end at `ends`.
pub fn nth_request<'b>(buf: &'b [u8], ends: &[usize], i: usize) -> &'b [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &buf[start..ends[i]]
}

/// The most requests one run takes.
pub const MAX_RUN: usize = 64;

/// Pipelined requests to run together (see `Burst::concurrent_run`).
pub struct Run {
    /// Where each request ends, from the start of the run.
    pub ends: [usize; MAX_RUN],
    pub kinds: [Kind; MAX_RUN],
    /// Where a read's key is in its request, when the planner saw it (saves the prefetch
    /// tokenising the line again).
    pub keys: [KeyAt; MAX_RUN],
    pub n: usize,
    /// Bytes the run takes.
    pub at: usize,
}

impl Run {
    /// The run at the start of `buf`, if it has two requests or more.
    pub fn plan(p: Proto, buf: &[u8], write_max: Option<usize>, size_ok: &SizeOk<'_>) -> Option<Run> {
        let mut run = Run {
            ends: [0; MAX_RUN],
            kinds: [Kind::Read; MAX_RUN],
            keys: [KeyAt::NONE; MAX_RUN],
            n: 0,
            at: 0,
        };
        // A multi-key get reads its keys one after another, so its later keys would be read
        // after the writes that follow it in the run: no write may follow one.
        let mut multi_read = false;
        while run.n < MAX_RUN {
            match one_round_request(p, &buf[run.at..], write_max, size_ok) {
                Some((_, Kind::Write, _)) if multi_read => break,
                Some((len, kind, key)) => {
                    multi_read |= kind == Kind::MultiRead;
                    run.at += len;
                    run.ends[run.n] = run.at;
                    run.kinds[run.n] = kind;
                    run.keys[run.n] = key;
                    run.n += 1;
                }
                None => break,
            }
        }
        (run.n >= 2).then_some(run)
    }
}

/// Where a key is in its request: (start, length), length 0 for not known.
#[derive(Clone, Copy)]
pub struct KeyAt(u16, u8);

impl KeyAt {
    pub const NONE: KeyAt = KeyAt(0, 0);

    pub fn new(start: usize, len: usize) -> KeyAt {
        match (u16::try_from(start), u8::try_from(len)) {
            (Ok(s), Ok(l)) => KeyAt(s, l),
            _ => KeyAt::NONE,
        }
    }

    /// The key in `req`, if known.
    pub fn of<'r>(&self, req: &'r [u8]) -> Option<&'r [u8]> {
        let start = usize::from(self.0);
        (self.1 > 0).then(|| &req[start..start + usize::from(self.1)])
    }
}

/// What a request of a run does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads one key.
    Read,
    /// Reads several keys, one after another.
    MultiRead,
    Write,
}

/// The length of the complete request at the start of `buf` if it may join a run: reads, and
/// sets of at most `write_max` bytes (`None`: no writes) whose only visible request to the tier
/// is made on their first poll, well formed, so they are answered and use exactly the bytes
/// measured here.
fn one_round_request(
    p: Proto,
    buf: &[u8],
    write_max: Option<usize>,
    size_ok: &SizeOk<'_>,
) -> Option<(usize, Kind, KeyAt)> {
    use crate::binary::{parse_request_header, Opcode};
    use crate::meta::Tokens;
    match p {
        Proto::Text => {
            let (line_end, next) = crate::find_line(buf)?;
            let line = &buf[..line_end];
            if let Some(keys) = line.strip_prefix(b"get ").or_else(|| line.strip_prefix(b"gets ")) {
                let mut toks = Tokens::new(keys);
                let first = toks.next_at();
                // A `get` without a key is an error the front end answers alone.
                return match (first?, toks.next()) {
                    ((at, key), None) => Some((next, Kind::Read, KeyAt::new(line.len() - keys.len() + at, key.len()))),
                    _ => Some((next, Kind::MultiRead, KeyAt::NONE)),
                };
            }
            if line.starts_with(b"set ") {
                return text_set_len(buf, write_max?, size_ok).map(|len| (len, Kind::Write, KeyAt::NONE));
            }
            if line.starts_with(b"ms ") {
                let write_max = write_max?;
                return plain_ms_len(buf, line_end, next, write_max, size_ok)
                    .or_else(|| meta_set_len(buf, line_end, next, write_max, size_ok))
                    .map(|len| (len, Kind::Write, KeyAt::NONE));
            }
            let rest = line.strip_prefix(b"mg ")?;
            let mut toks = Tokens::new(rest);
            let (at, k) = toks.next_at()?;
            let mut key = KeyAt::new(3 + at, k.len());
            // Most lines hold none of these bytes past the key: one look at the bytes, and the
            // flags are split only when one is there.
            if toks.rest().iter().any(|&c| matches!(c, b'T' | b'N' | b'R' | b'b')) {
                for flag in toks {
                    match flag[0] {
                        // T touches, N creates, R may hand out the recache token: those change
                        // the item.
                        b'T' | b'N' | b'R' => return None,
                        // A base64 key: the prefetch finds what it decodes to.
                        b'b' => key = KeyAt::NONE,
                        _ => {}
                    }
                }
            }
            Some((next, Kind::Read, key))
        }
        Proto::Binary => {
            let h = parse_request_header(buf).ok()?;
            if buf.len() < h.frame_len() || h.data_type != 0 {
                return None;
            }
            let get = matches!(h.opcode, Opcode::GET | Opcode::GETQ | Opcode::GETK | Opcode::GETKQ);
            if get {
                let plain = h.extras_len == 0 && h.body_len == u32::from(h.key_len);
                let key = KeyAt::new(crate::binary::HEADER_LEN, usize::from(h.key_len));
                return plain.then_some((h.frame_len(), Kind::Read, key));
            }
            let set = matches!(h.opcode, Opcode::SET | Opcode::SETQ);
            let head = usize::from(h.extras_len) + usize::from(h.key_len);
            let value_len = (h.body_len as usize).checked_sub(head)?;
            let ok = set
                && h.cas == 0
                && h.extras_len == 8
                && (1..=crate::MAX_KEY_LEN).contains(&usize::from(h.key_len))
                && value_len <= write_max?
                // The flags are not read here: any nonzero flags cost the item the same 4 bytes.
                && buf
                    .get(crate::binary::HEADER_LEN + 8..crate::binary::HEADER_LEN + head)
                    .is_some_and(|key| size_ok(key, u32::MAX, value_len));
            ok.then_some((h.frame_len(), Kind::Write, KeyAt::NONE))
        }
    }
}

/// A whole, well-formed text `set` of a small value: its length.
fn text_set_len(buf: &[u8], write_max: usize, size_ok: &SizeOk<'_>) -> Option<usize> {
    let limits = crate::text::Limits { max_get_line: 0 };
    match crate::text::parse_request(buf, &limits, size_ok) {
        Ok((crate::text::Request::Store { cmd, data, .. }, used))
            if cmd == crate::text::StoreCmd::Set && data.len() <= write_max =>
        {
            Some(used)
        }
        _ => None,
    }
}

/// Like [`meta_set_len`], by a light scan instead of a parse, for the `ms` lines clients send
/// most (`F`, `T`, `O` and return flags only): the front end then parses the request once, not
/// twice. It accepts a subset of what `meta_set_len` accepts, checking each flag's argument as
/// the parser would (a test holds it to that); anything else is left to `meta_set_len`.
pub fn plain_ms_len(buf: &[u8], line_end: usize, next: usize, write_max: usize, size_ok: &SizeOk<'_>) -> Option<usize> {
    use crate::meta::MAX_OPAQUE_LEN;
    let digits = |t: &[u8]| !t.is_empty() && t.len() <= 18 && t.iter().all(u8::is_ascii_digit);
    let mut toks = buf[..line_end].split(|&b| b == b' ').filter(|t| !t.is_empty());
    if toks.next()? != b"ms" {
        return None;
    }
    let key = toks.next()?;
    let len = toks.next()?;
    if key.len() > crate::MAX_KEY_LEN || len.len() > 9 || !digits(len) {
        return None;
    }
    let datalen = len.iter().fold(0usize, |v, &c| v * 10 + usize::from(c - b'0'));
    // The parser refuses 20 tokens or more, and a flag sent twice.
    let (mut count, mut seen, mut client_flags) = (3, 0u128, 0u32);
    for t in toks {
        count += 1;
        let (c, arg) = (t[0], &t[1..]);
        if count >= 20 || c >= 0x80 || seen & (1 << c) != 0 {
            return None;
        }
        seen |= 1 << c;
        match c {
            b'F' if digits(arg) => {
                client_flags = u32::from(arg.iter().any(|&d| d != b'0'));
            }
            b'T' if digits(arg.strip_prefix(b"-").unwrap_or(arg)) => {}
            b'O' if arg.len() <= MAX_OPAQUE_LEN => {}
            b'q' | b'c' | b'k' | b's' | b't' | b'f' | b'h' | b'l' => {}
            _ => return None,
        }
    }
    // Any nonzero client flags cost the item 4 bytes, whatever the value.
    if datalen > write_max || !size_ok(key, client_flags, datalen) {
        return None;
    }
    (buf.get(next + datalen..next + datalen + 2)? == b"\r\n").then_some(next + datalen + 2)
}

/// A whole, well-formed meta `ms` in set mode, without CAS, of a small value: its length.
pub fn meta_set_len(buf: &[u8], line_end: usize, next: usize, write_max: usize, size_ok: &SizeOk<'_>) -> Option<usize> {
    use crate::meta::{self, Command, DataBlock, SetMode};
    let mut key_buf: meta::KeyBuf = [0; crate::MAX_KEY_LEN];
    let req = meta::parse_request(&buf[..line_end], &mut key_buf).ok()?;
    let f = &req.flags;
    let plain = req.command == Command::Set
        && f.set_mode() == Some(SetMode::Set)
        && f.cas.is_none()
        && !f.invalidate
        && req.late_error.is_none()
        && req.datalen <= write_max
        && size_ok(req.key, f.client_flags.unwrap_or(0), req.datalen);
    if !plain {
        return None;
    }
    match meta::data_block(&buf[next..], req.datalen) {
        DataBlock::Ok(_) => Some(next + req.datalen + 2),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
