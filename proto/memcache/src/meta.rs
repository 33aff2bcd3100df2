//! The meta commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`) as memcached 1.6.18 speaks them.
//!
//! Server side: [`parse_request`] turns a command line into a [`Request`] without allocating
//! (flags land in a fixed struct; a base64 key is decoded into a caller's [`KeyBuf`]);
//! [`reply`] writes the replies, return flags in the order the client asked for them.
//! Client side: [`client`] composes requests and parses replies incrementally.
//!
//! The node is diffed byte for byte against memcached 1.6.18, so its observable grammar is kept,
//! quirks included (each was checked against the real server):
//! - tokens are separated by runs of spaces only; a flag is a token's first byte, the rest of the
//!   token is its argument (`k1` is `k`), and a flag may appear once;
//! - numbers are read like C's `strtol`/`strtoull`: leading whitespace and a sign are accepted,
//!   anything after the digits must start with whitespace, and N/R/T and the `ms` data length are
//!   truncated to 32 bits (`T4294967296` is `T0`), F to 32 unsigned bits;
//! - errors are checked in memcached's order (key length, token count, flags left to right, then
//!   per command), and `md`/`ma` report every flag error as "invalid or duplicate flag";
//! - an opaque longer than 31 bytes is reported by `mg` and `ma` only after the command ran
//!   ([`Request::late_error`]), by `md` and `ms` before.

mod b64;
pub mod client;
mod numbers;
pub mod reply;

pub use b64::{decode as decode_base64, encode as encode_base64, encoded_len as base64_len};

use self::numbers::{strtol, strtol32, strtoull};
use crate::MAX_KEY_LEN;

/// Longest opaque (`O`) argument memcached accepts: its token, `O` included, may be 32 bytes.
pub const MAX_OPAQUE_LEN: usize = 31;

/// Most flags a `mg`, `md` or `ma` line may carry (`ms` one fewer, its data length takes a
/// token): memcached refuses a line of 20 or more tokens.
pub const MAX_FLAGS: usize = 17;

/// Tokens from which memcached refuses a meta line as "options flags (are) too long".
const TOO_MANY_TOKENS: usize = 20;

/// Where [`parse_request`] decodes a base64 (`b`) key. 250 base64 characters decode to at most
/// 186 bytes, so this is always large enough.
pub type KeyBuf = [u8; MAX_KEY_LEN];

/// The data block trailer and line terminator.
pub const CRLF: &[u8] = b"\r\n";

/// Error lines, as memcached 1.6.18 writes them (without `\r\n`).
pub mod errors {
    pub const ERROR: &str = "ERROR";
    pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
    pub const FLAGS_TOO_LONG_MG: &str = "CLIENT_ERROR options flags are too long";
    pub const FLAGS_TOO_LONG: &str = "CLIENT_ERROR options flags too long";
    pub const DUPLICATE_FLAG: &str = "CLIENT_ERROR duplicate flag";
    pub const INVALID_FLAG: &str = "CLIENT_ERROR invalid flag";
    pub const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
    pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta value";
    pub const BAD_INITIAL: &str = "CLIENT_ERROR invalid numeric initial value";
    pub const MODE_LENGTH: &str = "CLIENT_ERROR incorrect length for M token";
    pub const KEY_DECODE: &str = "CLIENT_ERROR error decoding key";
    pub const INVALID_OR_DUPLICATE: &str = "CLIENT_ERROR invalid or duplicate flag";
    pub const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";
    pub const INVALID_MS_MODE: &str = "CLIENT_ERROR invalid mode for ms M token";
    pub const INVALID_MA_MODE: &str = "CLIENT_ERROR invalid mode for ma M token";
    pub const BAD_DATA_CHUNK: &str = "CLIENT_ERROR bad data chunk";
    pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";
    pub const OUT_OF_MEMORY_STORING: &str = "SERVER_ERROR out of memory storing object";
    pub const NON_NUMERIC: &str = "CLIENT_ERROR cannot increment or decrement non-numeric value";
    pub const OUT_OF_MEMORY: &str = "SERVER_ERROR out of memory";
}

/// A meta command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// `mg`
    Get,
    /// `ms`
    Set,
    /// `md`
    Delete,
    /// `ma`
    Arith,
    /// `mn`
    Noop,
    /// `me`
    Debug,
}

impl Command {
    pub fn from_name(name: &[u8]) -> Option<Command> {
        Some(match name {
            b"mg" => Command::Get,
            b"ms" => Command::Set,
            b"md" => Command::Delete,
            b"ma" => Command::Arith,
            b"mn" => Command::Noop,
            b"me" => Command::Debug,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Command::Get => "mg",
            Command::Set => "ms",
            Command::Delete => "md",
            Command::Arith => "ma",
            Command::Noop => "mn",
            Command::Debug => "me",
        }
    }
}

/// `ms` modes (`M` flag). memcached takes these upper-case letters only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetMode {
    /// `MS`, the default.
    #[default]
    Set,
    /// `ME`
    Add,
    /// `MR`
    Replace,
    /// `MA`
    Append,
    /// `MP`
    Prepend,
}

impl SetMode {
    pub fn from_byte(b: u8) -> Option<SetMode> {
        Some(match b {
            b'S' => SetMode::Set,
            b'E' => SetMode::Add,
            b'R' => SetMode::Replace,
            b'A' => SetMode::Append,
            b'P' => SetMode::Prepend,
            _ => return None,
        })
    }

    pub fn byte(self) -> u8 {
        match self {
            SetMode::Set => b'S',
            SetMode::Add => b'E',
            SetMode::Replace => b'R',
            SetMode::Append => b'A',
            SetMode::Prepend => b'P',
        }
    }
}

/// `ma` modes (`M` flag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ArithMode {
    /// `MI` or `M+`, the default.
    #[default]
    Incr,
    /// `MD` or `M-`
    Decr,
}

impl ArithMode {
    pub fn from_byte(b: u8) -> Option<ArithMode> {
        match b {
            b'I' | b'+' => Some(ArithMode::Incr),
            b'D' | b'-' => Some(ArithMode::Decr),
            _ => None,
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            ArithMode::Incr => b'I',
            ArithMode::Decr => b'D',
        }
    }
}

/// The flags of a meta request. Flags that only ask for a value back (`c f h k l s t`, and
/// `O`) are known through [`Flags::order`], which also keeps the order memcached answers in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags<'a> {
    /// `b`: the key was sent in base64.
    pub base64: bool,
    /// `q`: leave out the reply when it is the common case (a miss for `mg`, `HD` otherwise).
    pub quiet: bool,
    /// `u`: do not bump the item in the LRU, nor mark it fetched.
    pub no_bump: bool,
    /// `v`: send the value.
    pub value: bool,
    /// `I`: invalidate (`md`: mark stale; `ms` with `C`: an older CAS may still write, as stale).
    pub invalidate: bool,
    /// `O`: opaque echoed back (argument as sent, possibly empty).
    pub opaque: Option<&'a [u8]>,
    /// `N`: vivify on miss with this exptime.
    pub vivify: Option<i32>,
    /// `R`: win the recache when the remaining TTL is below this.
    pub recache: Option<i32>,
    /// `T`: exptime (`ms`), new exptime (`mg`, `ma`, `md I`).
    pub ttl: Option<i32>,
    /// `C`: compare CAS.
    pub cas: Option<u64>,
    /// `F`: client flags (`ms`).
    pub client_flags: Option<u32>,
    /// `M`: the mode byte, as sent. Checked by [`parse_request`] for `ms` and `ma` only, as
    /// memcached does; see [`Flags::set_mode`] and [`Flags::arith_mode`].
    pub mode: Option<u8>,
    /// `D`: delta (`ma`).
    pub delta: Option<u64>,
    /// `J`: initial value on vivify (`ma`).
    pub initial: Option<u64>,
    order: [u8; MAX_FLAGS],
    len: u8,
}

impl<'a> Flags<'a> {
    /// The flag bytes in the order they were sent (each at most once).
    pub fn order(&self) -> &[u8] {
        &self.order[..self.len as usize]
    }

    /// Whether flag `c` was sent.
    pub fn has(&self, c: u8) -> bool {
        self.order().contains(&c)
    }

    /// Whether both flags were sent and `a` came first.
    pub fn before(&self, a: u8, b: u8) -> bool {
        let pos = |c| self.order().iter().position(|&x| x == c);
        matches!((pos(a), pos(b)), (Some(x), Some(y)) if x < y)
    }

    /// The `ms` mode (`Set` when no `M` was sent). None for a mode byte `ms` does not know.
    pub fn set_mode(&self) -> Option<SetMode> {
        self.mode.map_or(Some(SetMode::Set), SetMode::from_byte)
    }

    /// The `ma` mode (`Incr` when no `M` was sent). None for a mode byte `ma` does not know.
    pub fn arith_mode(&self) -> Option<ArithMode> {
        self.mode.map_or(Some(ArithMode::Incr), ArithMode::from_byte)
    }

    fn push(&mut self, c: u8) {
        // The token count limit keeps this in bounds; stay panic-free regardless.
        if let Some(slot) = self.order.get_mut(self.len as usize) {
            *slot = c;
            self.len += 1;
        }
    }
}

/// A parsed meta request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub command: Command,
    /// The key to look up: decoded when `flags.base64`. Empty for `mn`.
    pub key: &'a [u8],
    /// `ms`: the length of the data block that follows the line (without its `\r\n`).
    pub datalen: usize,
    pub flags: Flags<'a>,
    /// An error memcached reports only after running the command (its side effects happen):
    /// `mg` and `ma` check the opaque's length while writing the reply.
    pub late_error: Option<RequestError>,
}

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

/// Reply codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// A value follows.
    Va,
    /// Success without a value.
    Hd,
    /// `mg` miss.
    En,
    Nf,
    Ns,
    Ex,
    Mn,
    Me,
}

impl Code {
    pub fn as_bytes(self) -> &'static [u8; 2] {
        match self {
            Code::Va => b"VA",
            Code::Hd => b"HD",
            Code::En => b"EN",
            Code::Nf => b"NF",
            Code::Ns => b"NS",
            Code::Ex => b"EX",
            Code::Mn => b"MN",
            Code::Me => b"ME",
        }
    }

    pub fn from_bytes(b: &[u8]) -> Option<Code> {
        Some(match b {
            b"VA" => Code::Va,
            b"HD" => Code::Hd,
            b"EN" => Code::En,
            b"NF" => Code::Nf,
            b"NS" => Code::Ns,
            b"EX" => Code::Ex,
            b"MN" => Code::Mn,
            b"ME" => Code::Me,
            _ => return None,
        })
    }
}

/// What a reply's return flags report. A field left `None` is not written even when its flag
/// was asked for: that is how memcached answers a miss (only `O` and `k`) or a `md` (same).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReturnValues<'k> {
    /// `k`: the key (binary; written in base64 followed by a `b` flag when `key_base64`).
    pub key: Option<&'k [u8]>,
    pub key_base64: bool,
    /// `c`
    pub cas: Option<u64>,
    /// `f`
    pub client_flags: Option<u32>,
    /// `h`: fetched before this request.
    pub hit_before: Option<bool>,
    /// `l`: seconds since the last access before this request.
    pub last_access: Option<u64>,
    /// `s`: value length.
    pub size: Option<usize>,
    /// `t`: remaining TTL before this request's `T` (-1 never).
    pub ttl: Option<i64>,
    /// `t` when it comes after `T` on the line: memcached applies flags left to right, so
    /// `mg k t T30` reports the old TTL and `mg k T30 t` the new one. Falls back to `ttl`.
    pub ttl_after_touch: Option<i64>,
}

/// Appends `v` in decimal.
pub(crate) fn push_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// memcached's slab class and total item size for an item, so `me` prints what memcached would
/// for the same item with its default settings (`-n 48 -f 1.25`, 1 MB pages, CAS on).
/// The node's store has no slab classes; these are computed, not measured.
pub fn memcached_item_size(key_len: usize, value_len: usize, client_flags: u32) -> (u32, u64) {
    // Header (48) + CAS (8) + key + NUL + value + "\r\n" + 4 bytes of flags when they are set.
    let size = 48 + 8 + key_len as u64 + 1 + value_len as u64 + 2 + if client_flags != 0 { 4 } else { 0 };
    (slab_class(size), size)
}

/// The slab class memcached 1.6 with default settings puts an item of `size` bytes in: class 1
/// holds 96 bytes, each next one 1.25 times more (truncated, then rounded up to 8) until a size
/// reaches 512 KB / 1.25; the class after that is the last one, 512 KB chunks, which also heads
/// the chains of larger items.
fn slab_class(size: u64) -> u32 {
    const CHUNK_MAX: u32 = 512 * 1024;
    const FACTOR: f64 = 1.25;
    let mut class_size: u32 = 96;
    let mut id = 1;
    while (class_size as f64) < CHUNK_MAX as f64 / FACTOR {
        class_size = class_size.next_multiple_of(8);
        if size <= class_size as u64 {
            return id;
        }
        class_size = (class_size as f64 * FACTOR) as u32;
        id += 1;
    }
    id
}

#[cfg(test)]
mod tests;
