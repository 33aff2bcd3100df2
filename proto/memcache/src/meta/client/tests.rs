use super::*;
use crate::meta::{parse_request, KeyBuf};

fn get(key: &[u8], flags: &[Flag<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    compose_get(&mut out, key, flags).unwrap();
    out
}

#[test]
fn composes_requests() {
    assert_eq!(get(b"foo", &[]), b"mg foo\r\n");
    assert_eq!(
        get(
            b"foo",
            &[Flag::ReturnValue, Flag::Opaque(b"17"), Flag::Ttl(-1), Flag::Recache(30)]
        ),
        b"mg foo v O17 T-1 R30\r\n"
    );
    assert_eq!(get(b"foo", &[Flag::Base64, Flag::ReturnKey]), b"mg Zm9v b k\r\n");
    let mut out = Vec::new();
    compose_set(
        &mut out,
        b"k",
        b"a\r\nb",
        &[
            Flag::ClientFlags(5),
            Flag::SetMode(SetMode::Append),
            Flag::CompareCas(9),
        ],
    )
    .unwrap();
    assert_eq!(out, b"ms k 4 F5 MA C9\r\na\r\nb\r\n");
    out.clear();
    compose_arith(
        &mut out,
        b"n",
        &[
            Flag::ArithMode(ArithMode::Decr),
            Flag::Delta(3),
            Flag::Initial(7),
            Flag::Vivify(0),
        ],
    )
    .unwrap();
    assert_eq!(out, b"ma n MD D3 J7 N0\r\n");
    out.clear();
    compose_delete(&mut out, b"n", &[Flag::Invalidate, Flag::Quiet]).unwrap();
    compose_noop(&mut out);
    compose_debug(&mut out, b"foo", true).unwrap();
    compose_debug(&mut out, b"foo", false).unwrap();
    assert_eq!(out, b"md n I q\r\nmn\r\nme Zm9v b\r\nme foo\r\n");
}

#[test]
fn refuses_what_memcached_would() {
    let mut out = Vec::new();
    assert_eq!(compose_get(&mut out, b"a b", &[]), Err(ComposeError::InvalidKey));
    assert_eq!(compose_get(&mut out, b"a\r\nmn", &[]), Err(ComposeError::InvalidKey));
    assert_eq!(compose_get(&mut out, &[b'k'; 251], &[]), Err(ComposeError::InvalidKey));
    assert_eq!(
        compose_get(&mut out, b"", &[Flag::Base64]),
        Err(ComposeError::InvalidKey)
    );
    assert_eq!(
        compose_get(&mut out, &[0; 188], &[Flag::Base64]),
        Err(ComposeError::InvalidKey)
    );
    assert_eq!(
        compose_get(&mut out, b"k", &[Flag::Opaque(&[b'o'; 32])]),
        Err(ComposeError::InvalidOpaque)
    );
    assert_eq!(
        compose_get(&mut out, b"k", &[Flag::Opaque(b"a b")]),
        Err(ComposeError::InvalidOpaque)
    );
    assert_eq!(
        compose_get(&mut out, b"k", &[Flag::Ttl(1), Flag::Ttl(2)]),
        Err(ComposeError::DuplicateFlag)
    );
    assert_eq!(
        compose_set(
            &mut out,
            b"k",
            b"",
            &[Flag::SetMode(SetMode::Add), Flag::ArithMode(ArithMode::Decr)]
        ),
        Err(ComposeError::DuplicateFlag)
    );
    assert_eq!(
        compose_get(&mut out, b"k", &[Flag::Quiet; 18]),
        Err(ComposeError::TooManyFlags)
    );
    assert!(out.is_empty());
    // The largest binary key still fits memcached's key limit once encoded.
    compose_get(&mut out, &[0xff; MAX_BINARY_KEY_LEN], &[Flag::Base64]).unwrap();
}

/// Whatever the client composes, the server side parses back to the same request.
#[test]
fn composed_requests_parse_back() {
    let flags = [
        Flag::Base64,
        Flag::ReturnCas,
        Flag::ReturnTtl,
        Flag::Opaque(b"xyz"),
        Flag::Vivify(30),
        Flag::Recache(-5),
        Flag::Ttl(i32::MIN),
        Flag::CompareCas(u64::MAX),
        Flag::ClientFlags(u32::MAX),
        Flag::Delta(0),
        Flag::Initial(12),
        Flag::SetMode(SetMode::Prepend),
    ];
    let key = [0u8, 1, 2, 255, b' ', b'\n'];
    let mut out = Vec::new();
    compose_set(&mut out, &key, b"value", &flags).unwrap();
    let line_end = out.iter().position(|&b| b == b'\r').unwrap();
    let mut buf: KeyBuf = [0; 250];
    let req = parse_request(&out[..line_end], &mut buf).unwrap();
    assert_eq!(req.key, key);
    assert_eq!(req.datalen, 5);
    let f = req.flags;
    assert!(f.base64);
    assert_eq!(f.opaque, Some(&b"xyz"[..]));
    assert_eq!((f.vivify, f.recache, f.ttl), (Some(30), Some(-5), Some(i32::MIN)));
    assert_eq!(
        (f.cas, f.client_flags, f.delta, f.initial),
        (Some(u64::MAX), Some(u32::MAX), Some(0), Some(12))
    );
    assert_eq!(f.set_mode(), Some(SetMode::Prepend));
    assert_eq!(f.order(), b"bctONRTCFDJM");
}

#[test]
fn parses_replies() {
    let buf = b"VA 3 c5 t-1 kZm9v b O1 W\r\nbar\r\nHD\r\nEN\r\nNF kfoo\r\nMN\r\nrest";
    let (r, n) = parse_response(buf).unwrap();
    let Response::Value { flags, data } = r else {
        panic!("{r:?}")
    };
    assert_eq!(data, b"bar");
    assert_eq!(
        (flags.cas(), flags.ttl(), flags.key(), flags.opaque()),
        (Some(5), Some(-1), Some(&b"Zm9v"[..]), Some(&b"1"[..]))
    );
    assert!(flags.key_is_base64() && flags.won() && !flags.stale() && !flags.win_taken());
    assert_eq!(flags.iter().count(), 6);
    let mut at = n;
    let mut codes = Vec::new();
    loop {
        match parse_response(&buf[at..]) {
            Ok((Response::Status { code, flags }, n)) => {
                codes.push(code);
                if code == Code::Nf {
                    assert_eq!(flags.key(), Some(&b"foo"[..]));
                }
                at += n;
            }
            Ok((Response::Noop, n)) => {
                at += n;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(codes, [Code::Hd, Code::En, Code::Nf]);
    assert_eq!(&buf[at..], b"rest");
    assert_eq!(parse_response(b"rest"), Err(ParseError::Incomplete));
}

#[test]
fn parses_errors_and_debug() {
    let (r, n) = parse_response(b"CLIENT_ERROR bad data chunk\r\n").unwrap();
    assert_eq!(n, 29);
    assert_eq!(
        r,
        Response::Error {
            kind: ErrorKind::Client,
            message: b"bad data chunk"
        }
    );
    let (r, _) = parse_response(b"ERROR\r\n").unwrap();
    assert_eq!(
        r,
        Response::Error {
            kind: ErrorKind::Error,
            message: b""
        }
    );
    let (r, _) = parse_response(b"SERVER_ERROR out of memory\r\n").unwrap();
    assert!(matches!(
        r,
        Response::Error {
            kind: ErrorKind::Server,
            ..
        }
    ));
    let (r, _) = parse_response(b"ME foo exp=-1 la=3 cas=7 fetch=no cls=1 size=63\r\n").unwrap();
    let Response::Debug { key, fields } = r else { panic!() };
    assert_eq!(key, b"foo");
    assert_eq!(fields.get("la"), Some(&b"3"[..]));
    assert_eq!(fields.get("fetch"), Some(&b"no"[..]));
    assert_eq!(fields.iter().count(), 6);
}

#[test]
fn incomplete_until_the_whole_value() {
    let full = b"VA 5 s5\r\nhello\r\n";
    for i in 0..full.len() {
        assert_eq!(parse_response(&full[..i]), Err(ParseError::Incomplete), "prefix {i}");
    }
    assert_eq!(parse_response(full).unwrap().1, full.len());
    // A value containing "\r\n" is framed by its length, not by lines.
    let (r, n) = parse_response(b"VA 4\r\n\r\n\r\n\r\n").unwrap();
    assert_eq!(
        (r, n),
        (
            Response::Value {
                flags: ReturnFlags(b""),
                data: b"\r\n\r\n"
            },
            12
        )
    );
}

#[test]
fn rejects_garbage() {
    for bad in [
        &b"VA\r\n"[..],
        b"VA x\r\n",
        b"VA 3\r\nabcde\r\n",
        b"VA 99999999999999999999\r\n",
        b"HDX\r\n",
        b"STORED\r\n",
        b"ME\r\n",
        b"\r\n",
    ] {
        assert_eq!(
            parse_response(bad),
            Err(ParseError::Invalid),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}
