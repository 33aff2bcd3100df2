//! Server side: a request line into a [`Request`], the way memcached's meta parser reads it
//! (tokens, flags, error order), and the framing of an `ms` data block.

use super::b64;
use super::errors;
use super::numbers::{strtol, strtol32, strtoull};
use super::{Command, Flags, KeyBuf, Request, CRLF, MAX_OPAQUE_LEN};
use crate::MAX_KEY_LEN;

/// Tokens from which memcached refuses a meta line as "options flags (are) too long".
const TOO_MANY_TOKENS: usize = 20;

/// What went wrong with a request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not a meta command, or no key: memcached's plain `ERROR`.
    UnknownCommand,
    BadFormat,
    TooManyFlags,
    DuplicateFlag,
    InvalidFlag,
    /// A bad number after N, R, T or C.
    BadToken,
    BadDelta,
    BadInitial,
    /// A bad number after F (memcached calls it a bad command line).
    BadClientFlags,
    ModeLength,
    KeyDecode,
    OpaqueTooLong,
    InvalidMode,
}

/// A request memcached refuses: reply with [`RequestError::message`]; then, for `ms`, discard
/// the next `swallow` bytes (the data block and its `\r\n`) unread, as memcached does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestError {
    pub kind: ErrorKind,
    pub message: &'static str,
    pub swallow: usize,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for RequestError {}

impl RequestError {
    fn new(cmd: Option<Command>, kind: ErrorKind, swallow: usize) -> RequestError {
        use errors::*;
        use ErrorKind::*;
        let flag_error = |specific| {
            // md and ma replace every error of the shared flag parser with one message.
            if matches!(cmd, Some(Command::Delete | Command::Arith)) {
                INVALID_OR_DUPLICATE
            } else {
                specific
            }
        };
        let message = match kind {
            UnknownCommand => ERROR,
            BadFormat => BAD_FORMAT,
            TooManyFlags if cmd == Some(Command::Get) => FLAGS_TOO_LONG_MG,
            TooManyFlags => FLAGS_TOO_LONG,
            DuplicateFlag => flag_error(DUPLICATE_FLAG),
            InvalidFlag => flag_error(INVALID_FLAG),
            BadToken => flag_error(BAD_TOKEN),
            BadDelta => flag_error(BAD_DELTA),
            BadInitial => flag_error(BAD_INITIAL),
            BadClientFlags => flag_error(BAD_FORMAT),
            ModeLength => flag_error(MODE_LENGTH),
            KeyDecode => flag_error(KEY_DECODE),
            OpaqueTooLong => OPAQUE_TOO_LONG,
            InvalidMode if cmd == Some(Command::Arith) => INVALID_MA_MODE,
            InvalidMode => INVALID_MS_MODE,
        };
        RequestError { kind, message, swallow }
    }
}

/// Parses a meta command line (without its `\r\n`). A base64 key is decoded into `key_buf`.
///
/// For `ms`, the data block is not looked at: it follows the line, `datalen` bytes plus `\r\n`
/// (see [`data_block`]).
pub fn parse_request<'a>(line: &'a [u8], key_buf: &'a mut KeyBuf) -> Result<Request<'a>, RequestError> {
    // One pass, each token used as it is found (no array of tokens to fill first). memcached
    // splits the whole line before looking at any flag, so "too many tokens" wins over every
    // error of a flag: an error found on the way checks the rest of the line for it first.
    let mut toks = Tokens::new(line);
    let Some(cmd) = toks.next().and_then(Command::from_name) else {
        return Err(RequestError::new(None, ErrorKind::UnknownCommand, 0));
    };
    let err = |kind, swallow| RequestError::new(Some(cmd), kind, swallow);
    let mut req = Request {
        command: cmd,
        key: &[],
        datalen: 0,
        flags: Flags::default(),
        late_error: None,
    };
    match cmd {
        // memcached answers `mn` whatever follows it.
        Command::Noop => return Ok(req),
        Command::Debug => return parse_debug(req, toks, key_buf),
        _ => {}
    }
    let Some(key) = toks.next() else {
        return Err(err(ErrorKind::UnknownCommand, 0));
    };
    req.key = key;
    if key.len() > MAX_KEY_LEN {
        return Err(err(ErrorKind::BadFormat, 0));
    }
    // Tokens seen so far: the command and the key.
    let mut n = 2;
    // What `kind` is reported as: too many tokens, if the line has them, wins.
    let or_too_many = |kind, mut toks: Tokens<'_>, mut n: usize| {
        while n < TOO_MANY_TOKENS && toks.next().is_some() {
            n += 1;
        }
        if n >= TOO_MANY_TOKENS {
            ErrorKind::TooManyFlags
        } else {
            kind
        }
    };
    if cmd == Command::Set {
        let Some(len) = toks.next() else {
            return Err(err(ErrorKind::BadFormat, 0));
        };
        n += 1;
        // memcached reads the length into a 32-bit int, then refuses negatives.
        match strtol(len).map(|v| v as i32) {
            Some(len) if (0..i32::MAX - 1).contains(&len) => req.datalen = len as usize,
            _ => return Err(err(or_too_many(ErrorKind::BadFormat, toks, n), 0)),
        }
    }
    // From here on memcached knows the data length, so `ms` errors skip the data block.
    let swallow = if cmd == Command::Set { req.datalen + 2 } else { 0 };
    let mut key_buf = Some(key_buf);
    // One bit per flag byte seen (two words: a u128 shift costs several instructions).
    let mut seen = [0u64; 2];
    while let Some(t) = toks.next() {
        n += 1;
        if n >= TOO_MANY_TOKENS {
            return Err(err(ErrorKind::TooManyFlags, 0));
        }
        if let Err(kind) = apply_flag(&mut req, t, &mut seen, &mut key_buf) {
            return Err(match or_too_many(kind, toks, n) {
                ErrorKind::TooManyFlags => err(ErrorKind::TooManyFlags, 0),
                kind => err(kind, swallow),
            });
        }
    }
    let opaque_too_long = req.flags.opaque.is_some_and(|o| o.len() > MAX_OPAQUE_LEN);
    match cmd {
        Command::Set => {
            if req.flags.set_mode().is_none() {
                return Err(err(ErrorKind::InvalidMode, swallow));
            }
            if opaque_too_long {
                return Err(err(ErrorKind::OpaqueTooLong, swallow));
            }
        }
        Command::Delete if opaque_too_long => return Err(err(ErrorKind::OpaqueTooLong, 0)),
        Command::Arith if req.flags.arith_mode().is_none() => return Err(err(ErrorKind::InvalidMode, 0)),
        Command::Get | Command::Arith if opaque_too_long => req.late_error = Some(err(ErrorKind::OpaqueTooLong, 0)),
        _ => {}
    }
    Ok(req)
}

/// One flag token `t` of a request: its argument into `req.flags`, the flag into `seen` (one
/// bit per flag byte). A base64 key is decoded into the key buffer, taken from `key_buf`.
#[inline(always)]
fn apply_flag<'a>(
    req: &mut Request<'a>,
    t: &'a [u8],
    seen: &mut [u64; 2],
    key_buf: &mut Option<&'a mut KeyBuf>,
) -> Result<(), ErrorKind> {
    use ErrorKind::*;
    let c = t[0];
    // Two words: a u128 shift costs several instructions.
    let (word, bit) = (usize::from(c >> 6) & 1, 1u64 << (c & 63));
    // memcached indexes a 127-entry table with the flag byte: 0x7f and above read as seen.
    if c >= 0x7f || seen[word] & bit != 0 {
        return Err(DuplicateFlag);
    }
    seen[word] |= bit;
    let arg = &t[1..];
    let f = &mut req.flags;
    match c {
        b'b' => {
            let buf = key_buf.take().ok_or(DuplicateFlag)?;
            let len = b64::decode(req.key, buf).ok_or(KeyDecode)?;
            req.key = &buf[..len];
            f.base64 = true;
        }
        b'N' => f.vivify = Some(strtol32(arg).ok_or(BadToken)?),
        b'R' => f.recache = Some(strtol32(arg).ok_or(BadToken)?),
        b'T' => f.ttl = Some(strtol32(arg).ok_or(BadToken)?),
        b'C' => f.cas = Some(strtoull(arg).ok_or(BadToken)?),
        b'F' => f.client_flags = Some(strtoull(arg).ok_or(BadClientFlags)? as u32),
        b'D' => f.delta = Some(strtoull(arg).ok_or(BadDelta)?),
        b'J' => f.initial = Some(strtoull(arg).ok_or(BadInitial)?),
        b'M' => {
            if arg.len() != 1 {
                return Err(ModeLength);
            }
            f.mode = Some(arg[0]);
        }
        b'O' => f.opaque = Some(arg),
        b'q' => f.quiet = true,
        b'u' => f.no_bump = true,
        b'v' => f.value = true,
        b'I' => f.invalidate = true,
        // Return flags, and P/L (proxy hints memcached ignores).
        b'c' | b'f' | b'h' | b'k' | b'l' | b's' | b't' | b'P' | b'L' => {}
        _ => return Err(InvalidFlag),
    }
    f.push(c);
    Ok(())
}

/// The space-separated tokens of a line, as memcached's tokenizer splits it (runs of spaces
/// are one separator; no other byte separates).
#[derive(Clone, Copy, Debug)]
pub struct Tokens<'a> {
    line: &'a [u8],
    at: usize,
}

impl<'a> Tokens<'a> {
    pub fn new(line: &'a [u8]) -> Tokens<'a> {
        Tokens { line, at: 0 }
    }

    /// The next token and where it starts in the line.
    #[inline]
    pub fn next_at(&mut self) -> Option<(usize, &'a [u8])> {
        let line = self.line;
        let mut i = self.at;
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        self.at = i;
        (i > start).then(|| (start, &line[start..i]))
    }

    /// What is left of the line after the tokens taken so far.
    pub fn rest(&self) -> &'a [u8] {
        &self.line[self.at..]
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        self.next_at().map(|(_, t)| t)
    }
}

/// `me <key> [b]`: no flag parser; only an exact `b` right after the key means base64.
fn parse_debug<'a>(
    mut req: Request<'a>,
    mut toks: Tokens<'a>,
    key_buf: &'a mut KeyBuf,
) -> Result<Request<'a>, RequestError> {
    let bad = RequestError::new(Some(Command::Debug), ErrorKind::BadFormat, 0);
    let key = toks.next().ok_or(bad)?;
    if key.len() > MAX_KEY_LEN {
        return Err(bad);
    }
    req.key = key;
    if toks.next() == Some(&b"b"[..]) {
        let len = b64::decode(key, key_buf).ok_or(bad)?;
        req.key = &key_buf[..len];
        req.flags.base64 = true;
    }
    Ok(req)
}

/// The data block of an `ms` whose line ended at `buf[..0]`: `buf` starts right after the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataBlock<'a> {
    /// Not all of `datalen + 2` bytes are here yet.
    Incomplete,
    /// The block (without its `\r\n`).
    Ok(&'a [u8]),
    /// The `datalen + 2` bytes do not end in `\r\n`: memcached answers
    /// [`errors::BAD_DATA_CHUNK`] and drops exactly those bytes.
    BadChunk,
}

/// Frames the data block of an `ms`. Either way, a complete block uses `datalen + 2` bytes.
pub fn data_block(buf: &[u8], datalen: usize) -> DataBlock<'_> {
    let Some(end) = datalen.checked_add(2) else {
        return DataBlock::BadChunk;
    };
    match buf.get(..end) {
        None => DataBlock::Incomplete,
        Some(b) if b.ends_with(CRLF) => DataBlock::Ok(&b[..datalen]),
        Some(_) => DataBlock::BadChunk,
    }
}
