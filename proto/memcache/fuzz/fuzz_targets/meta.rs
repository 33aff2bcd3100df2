//! Fuzzes the meta command codec. Invariants checked on every input:
//! - no parser panics; a request line's key is at most 250 bytes, its flags at most 17, and an
//!   `ms` error swallows nothing or exactly the data block;
//! - a request the client side can express composes to a line that parses back the same;
//! - a reply written by the server helpers parses back on the client side with the same flags;
//! - `parse_response` never uses more than it was given, and every strict prefix of a reply is
//!   `Incomplete`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riven_memcache::meta::client::{self, Flag, ParseError, Response};
use riven_memcache::meta::{parse_request, reply, Code, Command, KeyBuf, Request, ReturnValues, MAX_FLAGS};

fuzz_target!(|data: &[u8]| {
    // The first line is a request line (a server never sees the '\n' in one).
    let line = data.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    check_request(line);
    check_response(data);
});

fn check_request(line: &[u8]) {
    let mut buf: KeyBuf = [0; 250];
    let req = match parse_request(line, &mut buf) {
        Ok(req) => req,
        Err(e) => {
            assert!(!e.message.is_empty());
            return;
        }
    };
    assert!(req.key.len() <= 250);
    assert!(req.flags.order().len() <= MAX_FLAGS);
    if req.command == Command::Set {
        assert!(req.datalen < i32::MAX as usize);
    }
    check_reply(&req);
    check_round_trip(&req);
}

/// The server's reply helpers and the client's parser agree.
fn check_reply(req: &Request<'_>) {
    let v = ReturnValues {
        key: Some(req.key),
        key_base64: req.flags.base64,
        cas: Some(7),
        client_flags: Some(3),
        hit_before: Some(true),
        last_access: Some(1),
        size: Some(0),
        ttl: Some(-1),
        ttl_after_touch: Some(30),
    };
    let mut out = Vec::new();
    reply::status(&mut out, Code::Hd, &req.flags, &v);
    let (resp, used) = client::parse_response(&out).expect("a reply we wrote parses");
    assert_eq!(used, out.len());
    let Response::Status { code: Code::Hd, flags } = resp else {
        panic!("{resp:?}")
    };
    if let Some(o) = req.flags.opaque {
        assert_eq!(flags.opaque(), Some(o));
    }
    if req.flags.has(b'c') {
        assert!(flags.cas().is_some());
    }
}

/// What the client composes from a parsed request parses back to the same request.
fn check_round_trip(req: &Request<'_>) {
    let mut flags: Vec<Flag<'_>> = Vec::new();
    let f = &req.flags;
    for &c in f.order() {
        flags.push(match c {
            b'b' => Flag::Base64,
            b'c' => Flag::ReturnCas,
            b'f' => Flag::ReturnClientFlags,
            b'h' => Flag::ReturnHit,
            b'k' => Flag::ReturnKey,
            b'l' => Flag::ReturnLastAccess,
            b's' => Flag::ReturnSize,
            b't' => Flag::ReturnTtl,
            b'v' => Flag::ReturnValue,
            b'u' => Flag::NoBump,
            b'q' => Flag::Quiet,
            b'I' => Flag::Invalidate,
            b'O' => Flag::Opaque(f.opaque.unwrap_or_default()),
            b'N' => Flag::Vivify(f.vivify.unwrap_or_default()),
            b'R' => Flag::Recache(f.recache.unwrap_or_default()),
            b'T' => Flag::Ttl(f.ttl.unwrap_or_default()),
            b'C' => Flag::CompareCas(f.cas.unwrap_or_default()),
            b'F' => Flag::ClientFlags(f.client_flags.unwrap_or_default()),
            b'D' => Flag::Delta(f.delta.unwrap_or_default()),
            b'J' => Flag::Initial(f.initial.unwrap_or_default()),
            b'M' => match req.command {
                Command::Set => Flag::SetMode(f.set_mode().expect("ms modes are checked")),
                Command::Arith => Flag::ArithMode(f.arith_mode().expect("ma modes are checked")),
                _ => return,
            },
            // P and L carry free text the client does not send.
            _ => return,
        });
    }
    let mut out = Vec::new();
    let value = vec![b'x'; req.datalen.min(64)];
    let composed = match req.command {
        Command::Get => client::compose_get(&mut out, req.key, &flags),
        Command::Set => client::compose_set(&mut out, req.key, &value, &flags),
        Command::Delete => client::compose_delete(&mut out, req.key, &flags),
        Command::Arith => client::compose_arith(&mut out, req.key, &flags),
        Command::Noop | Command::Debug => return,
    };
    if composed.is_err() {
        return;
    }
    let end = out
        .iter()
        .position(|&b| b == b'\r')
        .expect("composed line ends in \\r\\n");
    let mut buf: KeyBuf = [0; 250];
    let again = parse_request(&out[..end], &mut buf).expect("a composed request parses");
    assert_eq!(again.command, req.command);
    assert_eq!(again.key, req.key);
    let (a, b) = (&again.flags, &req.flags);
    assert_eq!(a.order(), b.order());
    assert_eq!(
        (a.base64, a.quiet, a.no_bump, a.value, a.invalidate),
        (b.base64, b.quiet, b.no_bump, b.value, b.invalidate)
    );
    assert_eq!(
        (a.opaque, a.vivify, a.recache, a.ttl),
        (b.opaque, b.vivify, b.recache, b.ttl)
    );
    assert_eq!(
        (a.cas, a.client_flags, a.delta, a.initial),
        (b.cas, b.client_flags, b.delta, b.initial)
    );
}

fn check_response(data: &[u8]) {
    match client::parse_response(data) {
        Ok((_, used)) => {
            assert!(used > 0 && used <= data.len());
            assert_eq!(client::parse_response(&data[..used - 1]), Err(ParseError::Incomplete));
        }
        Err(ParseError::Incomplete) => assert!(!data.contains(&b'\n') || data.starts_with(b"VA ")),
        Err(ParseError::Invalid) => {}
    }
}
