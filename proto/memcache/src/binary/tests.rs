use super::*;

fn sample_request() -> (Vec<u8>, Request<'static>) {
    let req = Request {
        opcode: Opcode::SET,
        data_type: 0,
        vbucket: 7,
        opaque: 0xdead_beef,
        cas: 0x0102_0304_0506_0708,
        extras: &[0, 0, 0, 5, 0, 0, 0, 60],
        key: b"key",
        value: b"hello",
    };
    let mut out = Vec::new();
    compose_request(&mut out, &req).unwrap();
    (out, req)
}

#[test]
fn request_wire_format() {
    let (bytes, _) = sample_request();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x80, 0x01, 0x00, 0x03, 0x08, 0x00, 0x00, 0x07,
        0x00, 0x00, 0x00, 0x10,
        0xde, 0xad, 0xbe, 0xef,
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        0, 0, 0, 5, 0, 0, 0, 60,
        b'k', b'e', b'y', b'h', b'e', b'l', b'l', b'o',
    ];
    assert_eq!(bytes, expected);
}

#[test]
fn request_round_trip() {
    let (bytes, req) = sample_request();
    let mut buf = bytes.clone();
    buf.extend_from_slice(b"\x80trailing");
    let (parsed, used) = parse_request(&buf).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(parsed, req);
    let h = parse_request_header(&buf).unwrap();
    assert_eq!(h.opcode, Opcode::SET);
    assert_eq!(h.head_len(), 24 + 8 + 3);
    assert_eq!(h.frame_len(), bytes.len());
    assert_eq!(h.value_len(), Some(5));
    assert_eq!(h.vbucket, 7);
    assert_eq!(
        StoreExtras::parse(parsed.extras),
        Some(StoreExtras { flags: 5, exptime: 60 })
    );
}

#[test]
fn response_round_trip() {
    let flags = u32_extras(0xdead_beef);
    let res = Response {
        opcode: Opcode::GETK,
        data_type: 0,
        status: Status::SUCCESS,
        opaque: 9,
        cas: 42,
        extras: &flags,
        key: b"k",
        value: b"value",
    };
    let mut out = Vec::new();
    compose_response(&mut out, &res).unwrap();
    assert_eq!(out[0], MAGIC_RESPONSE);
    let (parsed, used) = parse_response(&out).unwrap();
    assert_eq!((parsed, used), (res, out.len()));
    assert_eq!(parse_u32_extras(parsed.extras), Some(0xdead_beef));
    let h = parse_response_header(&out).unwrap();
    assert_eq!(
        (h.status, h.value_len(), h.frame_len()),
        (Status::SUCCESS, Some(5), out.len())
    );
}

#[test]
fn response_with_tail() {
    let mut whole = Vec::new();
    let res = Response {
        value: b"abcdef",
        ..Response::new(Opcode::GET, 1, Status::SUCCESS)
    };
    compose_response(&mut whole, &res).unwrap();
    let mut pieces = Vec::new();
    let head = Response { value: b"ab", ..res };
    compose_response_with_tail(&mut pieces, &head, 4).unwrap();
    pieces.extend_from_slice(b"cd");
    pieces.extend_from_slice(b"ef");
    assert_eq!(whole, pieces);
}

#[test]
fn incomplete_at_every_split() {
    let (bytes, req) = sample_request();
    for cut in 0..bytes.len() {
        assert_eq!(parse_request(&bytes[..cut]), Err(ParseError::Incomplete), "cut {cut}");
        let want = if cut < HEADER_LEN {
            Err(ParseError::Incomplete)
        } else {
            Ok(())
        };
        assert_eq!(parse_request_header(&bytes[..cut]).map(|_| ()), want, "cut {cut}");
    }
    assert_eq!(parse_request(&bytes), Ok((req, bytes.len())));

    let mut res = Vec::new();
    compose_response(
        &mut res,
        &Response {
            key: b"k",
            ..Response::new(Opcode::GETK, 0, Status::KEY_ENOENT)
        },
    )
    .unwrap();
    for cut in 0..res.len() {
        assert_eq!(parse_response(&res[..cut]), Err(ParseError::Incomplete), "cut {cut}");
    }
}

#[test]
fn bad_magic() {
    let (mut bytes, _) = sample_request();
    // A short buffer is Incomplete whatever its first byte: memcached waits for 24 bytes.
    assert_eq!(parse_request(&[0x81]), Err(ParseError::Incomplete));
    // A response where a request belongs, and the other way round.
    bytes[0] = MAGIC_RESPONSE;
    assert_eq!(parse_request(&bytes), Err(ParseError::BadMagic(0x81)));
    assert_eq!(parse_request_header(&bytes), Err(ParseError::BadMagic(0x81)));
    bytes[0] = MAGIC_REQUEST;
    assert_eq!(parse_response(&bytes), Err(ParseError::BadMagic(0x80)));
    // Text protocol bytes.
    let text = b"get some_key_that_is_long_enough\r\n";
    assert_eq!(parse_request(text), Err(ParseError::BadMagic(b'g')));
}

#[test]
fn bad_lengths_detected_from_header_alone() {
    let mut h = [0u8; HEADER_LEN];
    h[0] = MAGIC_REQUEST;
    h[3] = 5; // key length 5
    h[11] = 4; // body length 4
    assert_eq!(parse_request(&h), Err(ParseError::BadLengths));
    let hdr = parse_request_header(&h).unwrap();
    assert_eq!(hdr.value_len(), None);
    assert_eq!(hdr.head_len(), 29);
}

#[test]
fn huge_body_len_is_incomplete_not_a_panic() {
    let mut h = [0u8; HEADER_LEN];
    h[0] = MAGIC_REQUEST;
    h[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(parse_request(&h), Err(ParseError::Incomplete));
    assert_eq!(parse_request_header(&h).unwrap().value_len(), Some(u32::MAX as usize));
}

#[test]
fn compose_rejects_oversized_parts_without_writing() {
    let mut out = vec![1, 2, 3];
    let long_key = vec![b'k'; 65536];
    let r = compose_request(
        &mut out,
        &Request {
            key: &long_key,
            ..Request::new(Opcode::GET)
        },
    );
    assert_eq!(r, Err(ComposeError::KeyTooLong));
    let long_extras = [0u8; 256];
    let r = compose_request(
        &mut out,
        &Request {
            extras: &long_extras,
            ..Request::new(Opcode::GET)
        },
    );
    assert_eq!(r, Err(ComposeError::ExtrasTooLong));
    let r = compose_response_with_tail(&mut out, &Response::new(Opcode::GET, 0, Status::SUCCESS), usize::MAX);
    assert_eq!(r, Err(ComposeError::BodyTooLong));
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn pipelined_frames() {
    let mut buf = Vec::new();
    for (i, op) in [Opcode::GETKQ, Opcode::GETKQ, Opcode::NOOP].into_iter().enumerate() {
        let key: &[u8] = if op == Opcode::NOOP { b"" } else { b"abc" };
        compose_request(
            &mut buf,
            &Request {
                opaque: i as u32,
                key,
                ..Request::new(op)
            },
        )
        .unwrap();
    }
    let mut at = 0;
    let mut seen = Vec::new();
    while at < buf.len() {
        let (req, used) = parse_request(&buf[at..]).unwrap();
        seen.push((req.opcode, req.opaque));
        at += used;
    }
    assert_eq!(seen, [(Opcode::GETKQ, 0), (Opcode::GETKQ, 1), (Opcode::NOOP, 2)]);
}

#[test]
fn quiet_twins() {
    assert!(Opcode::GETKQ.is_quiet());
    assert!(!Opcode::GETK.is_quiet());
    assert_eq!(Opcode::GATKQ.loud(), Opcode::GATK);
    assert_eq!(Opcode::SETQ.loud(), Opcode::SET);
    assert_eq!(Opcode::NOOP.loud(), Opcode::NOOP);
    assert_eq!(Opcode::DELETE.quiet(), Some(Opcode::DELETEQ));
    assert_eq!(Opcode::DELETEQ.quiet(), Some(Opcode::DELETEQ));
    assert_eq!(Opcode::STAT.quiet(), None);
    for op in 0..=255u8 {
        let op = Opcode(op);
        if op.is_quiet() {
            assert_eq!(op.loud().quiet(), Some(op));
            assert!(!op.loud().is_quiet());
        }
    }
    assert_eq!(format!("{:?}", Opcode::GATKQ), "GATKQ");
    assert_eq!(format!("{:?}", Opcode(0x40)), "Opcode(0x40)");
    assert_eq!(format!("{:?}", Status::E2BIG), "E2BIG");
}

#[test]
fn extras_round_trip() {
    let a = ArithExtras {
        delta: 1,
        initial: u64::MAX,
        exptime: ArithExtras::NO_CREATE,
    };
    assert_eq!(ArithExtras::parse(&a.to_bytes()), Some(a));
    assert_eq!(ArithExtras::parse(&[0; 19]), None);
    let s = StoreExtras {
        flags: u32::MAX,
        exptime: 3,
    };
    assert_eq!(StoreExtras::parse(&s.to_bytes()), Some(s));
    assert_eq!(StoreExtras::parse(&[0; 4]), None);
    assert_eq!(parse_u32_extras(&u32_extras(77)), Some(77));
    assert_eq!(parse_u32_extras(&[]), None);
    assert_eq!(parse_u64_value(&7u64.to_be_bytes()), Some(7));
}

/// A small deterministic generator, so these tests need no extra crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The fuzz target's invariants on random input, so `cargo test` checks them too.
#[test]
fn random_input_invariants() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut buf = rng.bytes(64);
        // Make well-formed-looking frames common.
        if rng.next() & 1 == 0 && buf.len() >= HEADER_LEN {
            buf[0] = if rng.next() & 1 == 0 {
                MAGIC_REQUEST
            } else {
                MAGIC_RESPONSE
            };
            buf[2] = 0;
            buf[3] %= 8;
            buf[4] %= 8;
            buf[8..11].fill(0);
            buf[11] %= 40;
        }
        if let Ok((req, used)) = parse_request(&buf) {
            assert!(used <= buf.len());
            let mut again = Vec::new();
            compose_request(&mut again, &req).unwrap();
            assert_eq!(again, &buf[..used]);
        }
        if let Ok((res, used)) = parse_response(&buf) {
            assert!(used <= buf.len());
            let mut again = Vec::new();
            compose_response(&mut again, &res).unwrap();
            assert_eq!(again, &buf[..used]);
        }
    }
}
