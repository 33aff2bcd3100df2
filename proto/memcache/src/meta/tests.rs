//! Server-side tests. Every expected error line and quirk here was observed on memcached 1.6.18.

use super::*;

fn parse(line: &str) -> Result<Request<'static>, RequestError> {
    // Leaked so the request can outlive the call; fine in tests.
    let buf: &'static mut KeyBuf = Box::leak(Box::new([0; MAX_KEY_LEN]));
    let line: &'static [u8] = Box::leak(line.as_bytes().to_vec().into_boxed_slice());
    parse_request(line, buf)
}

fn error(line: &str) -> (&'static str, usize) {
    let e = parse(line).expect_err(line);
    (e.message, e.swallow)
}

#[test]
fn error_lines_match_memcached() {
    let k251 = format!("mg {} v", "k".repeat(251));
    let b252 = format!("mg {} b", "QUJD".repeat(63));
    let cases: &[(&str, &str)] = &[
        ("mg", "ERROR"),
        ("md", "ERROR"),
        ("ma", "ERROR"),
        ("ms", "ERROR"),
        ("mx foo", "ERROR"),
        ("me", "CLIENT_ERROR bad command line format"),
        ("ms foo", "CLIENT_ERROR bad command line format"),
        ("ms foo abc", "CLIENT_ERROR bad command line format"),
        ("ms foo -1", "CLIENT_ERROR bad command line format"),
        ("ms foo 3x", "CLIENT_ERROR bad command line format"),
        ("ms foo 99999999999999999999", "CLIENT_ERROR bad command line format"),
        (&k251, "CLIENT_ERROR bad command line format"),
        (&b252, "CLIENT_ERROR bad command line format"),
        ("mg foo x", "CLIENT_ERROR invalid flag"),
        ("mg foo E5", "CLIENT_ERROR invalid flag"),
        ("mg foo S3", "CLIENT_ERROR invalid flag"),
        ("mg foo \x01", "CLIENT_ERROR invalid flag"),
        ("mg foo \x7f", "CLIENT_ERROR duplicate flag"),
        ("mg foo v v", "CLIENT_ERROR duplicate flag"),
        ("mg foo P L Pxx", "CLIENT_ERROR duplicate flag"),
        ("mg foo N", "CLIENT_ERROR bad token in command line format"),
        ("mg foo Nabc", "CLIENT_ERROR bad token in command line format"),
        ("mg foo T", "CLIENT_ERROR bad token in command line format"),
        ("mg foo R", "CLIENT_ERROR bad token in command line format"),
        ("mg foo C", "CLIENT_ERROR bad token in command line format"),
        ("mg foo D", "CLIENT_ERROR invalid numeric delta value"),
        ("mg foo J", "CLIENT_ERROR invalid numeric initial value"),
        ("mg foo F", "CLIENT_ERROR bad command line format"),
        ("mg foo M", "CLIENT_ERROR incorrect length for M token"),
        ("mg foo b", "CLIENT_ERROR error decoding key"),
        ("mg Zm9v= b", "CLIENT_ERROR error decoding key"),
        ("md foo x", "CLIENT_ERROR invalid or duplicate flag"),
        ("md foo C", "CLIENT_ERROR invalid or duplicate flag"),
        ("md foo b", "CLIENT_ERROR invalid or duplicate flag"),
        ("ma foo Dabc", "CLIENT_ERROR invalid or duplicate flag"),
        ("ma foo D-1", "CLIENT_ERROR invalid or duplicate flag"),
        ("ma foo MDD", "CLIENT_ERROR invalid or duplicate flag"),
        (
            "ma foo v D18446744073709551616",
            "CLIENT_ERROR invalid or duplicate flag",
        ),
        ("ma foo MX", "CLIENT_ERROR invalid mode for ma M token"),
        ("ma foo Md", "CLIENT_ERROR invalid mode for ma M token"),
        (
            "md foo O12345678901234567890123456789012",
            "CLIENT_ERROR opaque token too long",
        ),
        ("me !!! b", "CLIENT_ERROR bad command line format"),
    ];
    for &(line, want) in cases {
        assert_eq!(error(line), (want, 0), "{line:?}");
    }
}

#[test]
fn ms_errors_after_the_length_swallow_the_block() {
    assert_eq!(error("ms foo 3 x"), ("CLIENT_ERROR invalid flag", 5));
    assert_eq!(error("ms foo 3 v v"), ("CLIENT_ERROR duplicate flag", 5));
    assert_eq!(
        error("ms foo 3 T"),
        ("CLIENT_ERROR bad token in command line format", 5)
    );
    assert_eq!(error("ms foo 3 F-1"), ("CLIENT_ERROR bad command line format", 5));
    assert_eq!(error("ms foo 3 b"), ("CLIENT_ERROR error decoding key", 5));
    assert_eq!(error("ms foo 3 MX"), ("CLIENT_ERROR invalid mode for ms M token", 5));
    assert_eq!(error("ms foo 3 Ma"), ("CLIENT_ERROR invalid mode for ms M token", 5));
    assert_eq!(
        error("ms foo 3 O12345678901234567890123456789012"),
        ("CLIENT_ERROR opaque token too long", 5)
    );
    // The mode is checked before the opaque's length.
    assert_eq!(
        error("ms foo 3 O12345678901234567890123456789012 MX"),
        ("CLIENT_ERROR invalid mode for ms M token", 5)
    );
    // Before the length is known nothing is swallowed.
    assert_eq!(error("ms foo abc x"), ("CLIENT_ERROR bad command line format", 0));
    assert_eq!(
        error(&format!("ms {} 3", "k".repeat(251))),
        ("CLIENT_ERROR bad command line format", 0)
    );
}

#[test]
fn too_many_flags() {
    let line = |cmd: &str, n: usize| format!("{cmd} foo {}", vec!["v"; n].join(" "));
    assert_eq!(error(&line("mg", 17)).0, "CLIENT_ERROR duplicate flag");
    assert_eq!(error(&line("mg", 18)).0, "CLIENT_ERROR options flags are too long");
    assert_eq!(error(&line("mg", 40)).0, "CLIENT_ERROR options flags are too long");
    assert_eq!(error(&line("md", 17)).0, "CLIENT_ERROR invalid or duplicate flag");
    assert_eq!(error(&line("md", 18)).0, "CLIENT_ERROR options flags too long");
    assert_eq!(error(&line("ma", 18)).0, "CLIENT_ERROR options flags too long");
    let ms = |n: usize| format!("ms foo 1 {}", vec!["v"; n].join(" "));
    assert_eq!(error(&ms(16)).0, "CLIENT_ERROR duplicate flag");
    assert_eq!(error(&ms(17)), ("CLIENT_ERROR options flags too long", 0));
    // Too many tokens wins over a bad length, and over a bad flag anywhere before the last.
    let bad_len = format!("ms foo abc {}", vec!["v"; 17].join(" "));
    assert_eq!(error(&bad_len), ("CLIENT_ERROR options flags too long", 0));
    assert_eq!(
        error(&format!("mg foo Z {}", vec!["v"; 17].join(" "))).0,
        "CLIENT_ERROR options flags are too long"
    );
    assert_eq!(
        error(&format!("mg foo Z {}", vec!["v"; 16].join(" "))).0,
        "CLIENT_ERROR invalid flag"
    );
    // The key is checked first.
    assert_eq!(
        error(&format!("mg {} {}", "k".repeat(251), vec!["v"; 20].join(" "))).0,
        BAD_FORMAT
    );
    // me and mn do not count.
    assert!(parse(&line("me", 30)).is_ok());
    assert!(parse(&line("mn", 30)).is_ok());
}

use errors::BAD_FORMAT;

#[test]
fn tokens_split_on_runs_of_spaces_only() {
    let line = b"  mg\tx  key   v ";
    let mut toks = Tokens::new(line);
    assert_eq!(toks.next_at(), Some((2, &b"mg\tx"[..])));
    assert_eq!(toks.rest(), b"  key   v ");
    assert_eq!(toks.next_at(), Some((8, &b"key"[..])));
    assert_eq!(toks.collect::<Vec<_>>(), vec![&b"v"[..]]);
    assert_eq!(Tokens::new(b"   ").next(), None);
    assert_eq!(Tokens::new(b"").next(), None);
}

#[test]
fn flags_and_their_order() {
    let r = parse("mg  foo   v t T30 k O99 q u c s f h l N10 R5 P/x Lpath").unwrap();
    assert_eq!(r.command, Command::Get);
    assert_eq!(r.key, b"foo");
    let f = r.flags;
    assert!(f.value && f.quiet && f.no_bump && !f.base64 && !f.invalidate);
    assert_eq!((f.ttl, f.vivify, f.recache), (Some(30), Some(10), Some(5)));
    assert_eq!(f.opaque, Some(&b"99"[..]));
    assert_eq!(f.order(), b"vtTkOqucsfhlNRPL");
    assert!(f.before(b't', b'T') && !f.before(b'T', b't') && !f.before(b'W', b't'));
    assert!(r.late_error.is_none());

    let r = parse("ms foo 5 F7 T-1 C99 I MA q b1 k1").unwrap_err();
    assert_eq!(r.message, "CLIENT_ERROR error decoding key");
    let r = parse("ms Zm9v 5 F7 T-1 C99 I MA q b1 k1").unwrap();
    assert_eq!((r.command, r.key, r.datalen), (Command::Set, &b"foo"[..], 5));
    let f = r.flags;
    assert_eq!((f.client_flags, f.ttl, f.cas), (Some(7), Some(-1), Some(99)));
    assert!(f.invalidate && f.quiet && f.base64);
    assert_eq!(f.set_mode(), Some(SetMode::Append));

    let r = parse("ma n MD D5 J10 N0 v").unwrap();
    assert_eq!(r.flags.arith_mode(), Some(ArithMode::Decr));
    assert_eq!(
        (r.flags.delta, r.flags.initial, r.flags.vivify),
        (Some(5), Some(10), Some(0))
    );
    assert_eq!(parse("ma n M-").unwrap().flags.arith_mode(), Some(ArithMode::Decr));
    assert_eq!(parse("ma n M+").unwrap().flags.arith_mode(), Some(ArithMode::Incr));
    assert_eq!(parse("ma n").unwrap().flags.arith_mode(), Some(ArithMode::Incr));

    // mg and md take any mode byte and flags meant for other commands.
    assert!(parse("mg foo M1 D1 J1 F1 C1 I").is_ok());
    assert!(parse("md foo MZ q I T30 C5 k O1").is_ok());
    assert_eq!(parse("mn whatever x y").unwrap().command, Command::Noop);
}

#[test]
fn opaque_limits() {
    let o31 = format!("mg foo O{}", "o".repeat(31));
    assert_eq!(parse(&o31).unwrap().late_error, None);
    let o32 = format!("mg foo O{}", "o".repeat(32));
    let r = parse(&o32).unwrap();
    assert_eq!(
        r.late_error.map(|e| e.message),
        Some("CLIENT_ERROR opaque token too long")
    );
    let r = parse(&o32.replacen("mg", "ma", 1)).unwrap();
    assert!(r.late_error.is_some());
    assert_eq!(parse("mg foo O").unwrap().flags.opaque, Some(&b""[..]));
}

#[test]
fn numbers_read_like_c() {
    let ttl = |t: &str| parse(&format!("mg foo T{t}")).ok().map(|r| r.flags.ttl.unwrap());
    assert_eq!(ttl("5"), Some(5));
    assert_eq!(ttl("+5"), Some(5));
    assert_eq!(ttl("-0"), Some(0));
    assert_eq!(ttl("\t5"), Some(5));
    assert_eq!(ttl("5\tjunk"), Some(5));
    assert_eq!(ttl("4294967296"), Some(0));
    assert_eq!(ttl("4294967295"), Some(-1));
    assert_eq!(ttl("99999999999"), Some(1215752191));
    assert_eq!(ttl("9223372036854775808"), None);
    assert_eq!(ttl("5x"), None);
    assert_eq!(ttl("-"), None);
    assert_eq!(ttl(""), None);

    let cas = |t: &str| parse(&format!("mg foo C{t}")).ok().map(|r| r.flags.cas.unwrap());
    assert_eq!(cas("18446744073709551615"), Some(u64::MAX));
    assert_eq!(cas("18446744073709551616"), None);
    assert_eq!(cas("-0"), Some(0));
    assert_eq!(cas("-1"), None);
    assert_eq!(cas("-9223372036854775809"), Some(9223372036854775807));

    let flags = |t: &str| {
        parse(&format!("mg foo F{t}"))
            .ok()
            .map(|r| r.flags.client_flags.unwrap())
    };
    assert_eq!(flags("4294967295"), Some(u32::MAX));
    assert_eq!(flags("4294967297"), Some(1));
    assert_eq!(flags("-1"), None);

    let len = |t: &str| parse(&format!("ms foo {t}")).ok().map(|r| r.datalen);
    assert_eq!(len("+3"), Some(3));
    assert_eq!(len("\t3"), Some(3));
    assert_eq!(len("4294967299"), Some(3));
    assert_eq!(len("2147483647"), None);
    assert_eq!(len("2147483645"), Some(2147483645));
}

#[test]
fn base64_keys() {
    let r = parse("mg Zh== b k").unwrap();
    assert_eq!(r.key, b"f");
    assert!(r.flags.base64);
    let r = parse("me Zm9v b").unwrap();
    assert_eq!((r.command, r.key, r.flags.base64), (Command::Debug, &b"foo"[..], true));
    // Only an exact "b" right after the key counts for me.
    let r = parse("me Zm9v x b").unwrap();
    assert_eq!((r.key, r.flags.base64), (&b"Zm9v"[..], false));
    let r = parse("me foo b1").unwrap();
    assert_eq!((r.key, r.flags.base64), (&b"foo"[..], false));
    // The encoded key may be 250 bytes.
    let key = format!("mg {} b", "QUJD".repeat(62));
    assert_eq!(parse(&key).unwrap().key.len(), 186);
}

#[test]
fn data_blocks() {
    assert_eq!(data_block(b"bar\r\nmn\r\n", 3), DataBlock::Ok(b"bar"));
    assert_eq!(data_block(b"bar\r", 3), DataBlock::Incomplete);
    assert_eq!(data_block(b"barx\r\n", 3), DataBlock::BadChunk);
    assert_eq!(data_block(b"\r\n", 0), DataBlock::Ok(b""));
    assert_eq!(data_block(b"", usize::MAX), DataBlock::BadChunk);
}

fn written(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    f(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn replies_follow_request_order() {
    let r = parse("mg foo s v t c f k O1 h l").unwrap();
    let v = ReturnValues {
        key: Some(b"foo"),
        cas: Some(7),
        client_flags: Some(3),
        hit_before: Some(true),
        last_access: Some(12),
        size: Some(3),
        ttl: Some(-1),
        ..ReturnValues::default()
    };
    let s = written(|out| {
        reply::value_header(out, 3);
        reply::flags(out, &r.flags, &v);
        reply::recache(out, true, true, false);
        reply::end(out);
    });
    assert_eq!(s, "VA 3 s3 t-1 c7 f3 kfoo O1 h1 l12 Z X\r\n");

    // A miss reports only O and k, in request order.
    let r = parse("mg Zm9v b O1 k v c").unwrap();
    let miss = ReturnValues {
        key: Some(r.key),
        key_base64: true,
        ..ReturnValues::default()
    };
    assert_eq!(
        written(|out| reply::status(out, Code::En, &r.flags, &miss)),
        "EN O1 kZm9v b\r\n"
    );

    // t reports the TTL before or after T depending on where it is on the line.
    let v = ReturnValues {
        ttl: Some(100),
        ttl_after_touch: Some(30),
        ..ReturnValues::default()
    };
    let t_first = parse("mg foo t T30").unwrap();
    let t_last = parse("mg foo T30 t").unwrap();
    assert_eq!(
        written(|out| reply::status(out, Code::Hd, &t_first.flags, &v)),
        "HD t100\r\n"
    );
    assert_eq!(
        written(|out| reply::status(out, Code::Hd, &t_last.flags, &v)),
        "HD t30\r\n"
    );
    assert_eq!(written(|out| reply::recache(out, false, false, true)), " W");
    assert_eq!(written(reply::noop), "MN\r\n");
    assert_eq!(
        written(|out| reply::error(out, errors::BAD_DATA_CHUNK)),
        "CLIENT_ERROR bad data chunk\r\n"
    );
}

#[test]
fn debug_line() {
    let d = reply::DebugInfo {
        ttl: 100,
        last_access: 2,
        cas: 9,
        fetched: false,
        class: 1,
        size: 67,
    };
    assert_eq!(
        written(|out| reply::debug(out, b"foo", false, &d)),
        "ME foo exp=-100 la=2 cas=9 fetch=no cls=1 size=67\r\n"
    );
    let d = reply::DebugInfo {
        ttl: -1,
        fetched: true,
        ..d
    };
    assert_eq!(
        written(|out| reply::debug(out, b"foo", true, &d)),
        "ME Zm9v exp=-1 la=2 cas=9 fetch=yes cls=1 size=67\r\n"
    );
}

/// Sizes and classes `me` printed on memcached 1.6.18 with default settings.
#[test]
fn memcached_sizes() {
    assert_eq!(memcached_item_size(3, 1, 0), (1, 63));
    assert_eq!(memcached_item_size(3, 1, 5), (1, 67));
    assert_eq!(memcached_item_size(3, 100, 0), (4, 162));
    assert_eq!(memcached_item_size(3, 1000, 0), (12, 1062));
    assert_eq!(memcached_item_size(3, 100000, 0), (32, 100062));
    assert_eq!(memcached_item_size(250, 1, 0), (7, 310));
    let (last, _) = memcached_item_size(3, 512 * 1024, 0);
    assert_eq!(memcached_item_size(3, 1 << 20, 0).0, last);
}

#[test]
fn never_panics_on_odd_lines() {
    let lines: &[&[u8]] = &[
        b"",
        b" ",
        b"mg \xff\xfe",
        b"ms k 0 \x80",
        b"ma k M",
        b"mg k b b",
        b"mg k O\xff",
        b"me \xff b",
    ];
    for line in lines {
        let mut buf = [0u8; MAX_KEY_LEN];
        let _ = parse_request(line, &mut buf);
    }
}
