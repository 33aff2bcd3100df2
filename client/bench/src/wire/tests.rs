use riven_memcache::binary::{self, ArithExtras, Opcode, Status, StoreExtras};

use super::*;

fn keys(list: &[&str]) -> Keys {
    let mut k = Keys::default();
    for s in list {
        k.push(s.as_bytes());
    }
    k
}

fn req(proto: Protocol, op: Op, k: &[&str], args: Args, value: &[u8], opaque: u32) -> Vec<u8> {
    let mut out = Vec::new();
    compose(proto, &mut out, op, &keys(k), &args, value, opaque);
    out
}

/// Parses `reply` whole, after checking that every shorter prefix is incomplete.
fn parse_all<'a>(proto: Protocol, op: Op, k: &[&str], opaque: u32, reply: &'a [u8]) -> Result<Reply<'a>, String> {
    let ks = keys(k);
    let mut hits = Vec::new();
    for cut in 0..reply.len() {
        assert_eq!(
            parse(proto, op, &ks, opaque, &reply[..cut], &mut hits),
            Err(WireError::Incomplete),
            "{op} cut {cut} of {}",
            show(reply)
        );
    }
    match parse(proto, op, &ks, opaque, reply, &mut hits) {
        Ok((r, n)) => {
            assert_eq!(n, reply.len(), "{op}: whole reply used");
            Ok(r)
        }
        Err(WireError::Unexpected(m)) => Err(m),
        Err(WireError::Incomplete) => panic!("{op}: whole reply incomplete"),
    }
}

/// The error `reply` gets (judged as soon as the bytes show it is wrong, whole or not).
fn bad(proto: Protocol, op: Op, k: &[&str], opaque: u32, reply: &[u8]) -> String {
    match parse(proto, op, &keys(k), opaque, reply, &mut Vec::new()) {
        Err(WireError::Unexpected(m)) => m,
        r => panic!("{op} {}: {r:?}", show(reply)),
    }
}

fn args() -> Args {
    Args {
        flags: 7,
        exptime: 30,
        cas: 99,
        delta: 5,
    }
}

#[test]
fn keys_are_kept_back_to_back() {
    let k = keys(&["a", "bb", "ccc"]);
    assert_eq!(
        (k.len(), k.get(1), k.get(2), k.get(3)),
        (3, &b"bb"[..], &b"ccc"[..], &b""[..])
    );
    assert_eq!(k.position(b"a", 1), None);
    assert_eq!(k.position(b"ccc", 1), Some(2));
    assert_eq!(
        Op::ALL.iter().enumerate().filter(|(i, o)| o.index() == *i).count(),
        Op::COUNT
    );
}

#[test]
fn text_requests() {
    let t = |op, k: &[&str], v: &[u8]| String::from_utf8(req(Protocol::Text, op, k, args(), v, 0)).unwrap();
    assert_eq!(t(Op::Get, &["k"], b""), "get k\r\n");
    assert_eq!(t(Op::Gets, &["k"], b""), "gets k\r\n");
    assert_eq!(t(Op::MultiGet, &["a", "b"], b""), "get a b\r\n");
    assert_eq!(t(Op::Gat, &["k"], b""), "gat 30 k\r\n");
    assert_eq!(t(Op::Touch, &["k"], b""), "touch k 30\r\n");
    assert_eq!(t(Op::Set, &["k"], b"abc"), "set k 7 30 3\r\nabc\r\n");
    assert_eq!(t(Op::Add, &["k"], b"abc"), "add k 7 30 3\r\nabc\r\n");
    assert_eq!(t(Op::Replace, &["k"], b"abc"), "replace k 7 30 3\r\nabc\r\n");
    assert_eq!(t(Op::Append, &["k"], b"x"), "append k 0 0 1\r\nx\r\n");
    assert_eq!(t(Op::Prepend, &["k"], b"x"), "prepend k 0 0 1\r\nx\r\n");
    assert_eq!(t(Op::Cas, &["k"], b"abc"), "cas k 7 30 3 99\r\nabc\r\n");
    assert_eq!(t(Op::Incr, &["k"], b""), "incr k 5\r\n");
    assert_eq!(t(Op::Decr, &["k"], b""), "decr k 5\r\n");
    assert_eq!(t(Op::Delete, &["k"], b""), "delete k\r\n");
}

#[test]
fn text_replies() {
    fn p(op: Op, r: &[u8]) -> Result<Reply<'_>, String> {
        parse_all(Protocol::Text, op, &["k1"], 0, r)
    }
    let hit = |cas| Reply::Hit {
        flags: Some(7),
        cas,
        data: b"abc",
    };
    assert_eq!(p(Op::Get, b"VALUE k1 7 3\r\nabc\r\nEND\r\n"), Ok(hit(None)));
    assert_eq!(p(Op::Gets, b"VALUE k1 7 3 12\r\nabc\r\nEND\r\n"), Ok(hit(Some(12))));
    assert_eq!(p(Op::Gat, b"END\r\n"), Ok(Reply::Miss));
    assert_eq!(p(Op::Touch, b"TOUCHED\r\n"), Ok(Reply::Touched));
    assert_eq!(p(Op::Touch, b"NOT_FOUND\r\n"), Ok(Reply::NotFound));
    assert_eq!(p(Op::Set, b"STORED\r\n"), Ok(Reply::Stored { cas: None }));
    assert_eq!(p(Op::Add, b"NOT_STORED\r\n"), Ok(Reply::NotStored));
    assert_eq!(p(Op::Append, b"NOT_STORED\r\n"), Ok(Reply::NotStored));
    assert_eq!(p(Op::Cas, b"EXISTS\r\n"), Ok(Reply::Exists));
    assert_eq!(p(Op::Cas, b"NOT_FOUND\r\n"), Ok(Reply::NotFound));
    assert_eq!(p(Op::Incr, b"18446744073709551615\r\n"), Ok(Reply::Number(u64::MAX)));
    assert_eq!(
        p(
            Op::Decr,
            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
        ),
        Ok(Reply::NonNumeric)
    );
    assert_eq!(p(Op::Delete, b"DELETED\r\n"), Ok(Reply::Deleted));

    for (op, bad, why) in [
        (Op::Get, &b"VALUE k2 7 3\r\nabc\r\nEND\r\n"[..], "another key"),
        (Op::Get, b"VALUE k1 7 3\r\nabc\r\nSTORED\r\n", "instead of END"),
        (Op::Gets, b"VALUE k1 7 3\r\nabc\r\nEND\r\n", "without a CAS"),
        (Op::Set, b"SERVER_ERROR out of memory\r\n", "SERVER_ERROR"),
        (Op::Set, b"NOT_STORED\r\n", "NOT_STORED"),
        (Op::Get, b"STORED\r\n", "STORED"),
        (Op::Delete, b"TOUCHED\r\n", "TOUCHED"),
        (Op::Incr, b"CLIENT_ERROR bad command line format\r\n", "CLIENT_ERROR"),
        (Op::Get, b"garbage\r\n", "garbage"),
    ] {
        let m = super::tests::bad(Protocol::Text, op, &["k1"], 0, bad);
        assert!(m.contains(why), "{op} {}: {m}", show(bad));
    }
}

#[test]
fn multi_gets_over_every_protocol() {
    let ks = ["a", "b", "c"];
    let text = b"VALUE a 1 2\r\naa\r\nVALUE c 3 1\r\nc\r\nEND\r\n".to_vec();
    let meta = b"VA 2 f1 ka O9\r\naa\r\nVA 1 f3 kc O9\r\nc\r\nMN\r\n".to_vec();
    let mut binary = Vec::new();
    for (k, f, v) in [("a", 1u32, &b"aa"[..]), ("c", 3, b"c")] {
        let flags = f.to_be_bytes();
        let res = binary::Response {
            key: k.as_bytes(),
            extras: &flags,
            value: v,
            ..binary::Response::new(Opcode::GETKQ, 9, Status::SUCCESS)
        };
        binary::compose_response(&mut binary, &res).unwrap();
    }
    binary::compose_response(&mut binary, &binary::Response::new(Opcode::NOOP, 9, Status::SUCCESS)).unwrap();

    assert_eq!(
        req(Protocol::Meta, Op::MultiGet, &ks, args(), b"", 9),
        b"mg a f v k q O9\r\nmg b f v k q O9\r\nmg c f v k q O9\r\nmn\r\n"
    );
    let sent = req(Protocol::Binary, Op::MultiGet, &ks, args(), b"", 9);
    let (first, n) = binary::parse_request(&sent).unwrap();
    assert_eq!((first.opcode, first.key, first.opaque), (Opcode::GETKQ, &b"a"[..], 9));
    assert_eq!(sent.len(), 3 * 25 + 24);
    assert!(n == 25);

    for (proto, reply) in [
        (Protocol::Text, text),
        (Protocol::Meta, meta),
        (Protocol::Binary, binary),
    ] {
        assert_eq!(
            parse_all(proto, Op::MultiGet, &ks, 9, &reply),
            Ok(Reply::Multi),
            "{proto}"
        );
        let mut hits = Vec::new();
        parse(proto, Op::MultiGet, &keys(&ks), 9, &reply, &mut hits).unwrap();
        let got: Vec<(usize, Option<u32>, &[u8])> =
            hits.iter().map(|h| (h.pos, h.flags, &reply[h.data.clone()])).collect();
        assert_eq!(got, vec![(0, Some(1), &b"aa"[..]), (2, Some(3), &b"c"[..])], "{proto}");

        // Out of order or unrequested keys are caught.
        let mut wrong = keys(&["c", "a"]);
        assert!(
            matches!(
                parse(proto, Op::MultiGet, &wrong, 9, &reply, &mut hits),
                Err(WireError::Unexpected(_))
            ),
            "{proto}"
        );
        wrong = keys(&["a"]);
        assert!(
            matches!(
                parse(proto, Op::MultiGet, &wrong, 9, &reply, &mut hits),
                Err(WireError::Unexpected(_))
            ),
            "{proto}"
        );
    }
}

fn binary_reply(opcode: Opcode, opaque: u32, status: Status, cas: u64, extras: &[u8], value: &[u8]) -> Vec<u8> {
    let res = binary::Response {
        extras,
        value,
        cas,
        ..binary::Response::new(opcode, opaque, status)
    };
    let mut out = Vec::new();
    binary::compose_response(&mut out, &res).unwrap();
    out
}

#[test]
fn binary_requests() {
    let r = |op, v: &[u8]| req(Protocol::Binary, op, &["k"], args(), v, 42);
    for (op, opcode, extras_len, cas) in [
        (Op::Get, Opcode::GET, 0, 0),
        (Op::Gat, Opcode::GAT, 4, 0),
        (Op::Touch, Opcode::TOUCH, 4, 0),
        (Op::Set, Opcode::SET, 8, 0),
        (Op::Add, Opcode::ADD, 8, 0),
        (Op::Replace, Opcode::REPLACE, 8, 0),
        (Op::Append, Opcode::APPEND, 0, 0),
        (Op::Prepend, Opcode::PREPEND, 0, 0),
        (Op::Cas, Opcode::SET, 8, 99),
        (Op::Incr, Opcode::INCREMENT, 20, 0),
        (Op::Decr, Opcode::DECREMENT, 20, 0),
        (Op::Delete, Opcode::DELETE, 0, 0),
    ] {
        let out = r(op, if op.has_value() { b"vv" } else { b"" });
        let (req, n) = binary::parse_request(&out).unwrap();
        assert_eq!(n, out.len());
        assert_eq!(
            (req.opcode, req.opaque, req.key, req.extras.len(), req.cas),
            (opcode, 42, &b"k"[..], extras_len, cas),
            "{op}"
        );
    }
    let out = r(Op::Set, b"vv");
    let (req, _) = binary::parse_request(&out).unwrap();
    assert_eq!(
        StoreExtras::parse(req.extras),
        Some(StoreExtras { flags: 7, exptime: 30 })
    );
    let out = r(Op::Incr, b"");
    let (req, _) = binary::parse_request(&out).unwrap();
    assert_eq!(
        ArithExtras::parse(req.extras).map(|e| (e.delta, e.exptime)),
        Some((5, ArithExtras::NO_CREATE))
    );
}

#[test]
fn binary_replies() {
    fn p(op: Op, r: &[u8]) -> Result<Reply<'_>, String> {
        parse_all(Protocol::Binary, op, &["k"], 5, r)
    }
    let flags = 9u32.to_be_bytes();
    assert_eq!(
        p(
            Op::Gets,
            &binary_reply(Opcode::GET, 5, Status::SUCCESS, 77, &flags, b"vv")
        ),
        Ok(Reply::Hit {
            flags: Some(9),
            cas: Some(77),
            data: b"vv"
        })
    );
    let ok = |opcode, op| {
        binary_reply(
            opcode,
            5,
            Status::SUCCESS,
            3,
            &[],
            if op == Op::Incr {
                &[0, 0, 0, 0, 0, 0, 0, 12]
            } else {
                &[]
            },
        )
    };
    let st = |opcode, status| binary_reply(opcode, 5, status, 0, &[], b"msg");
    assert_eq!(p(Op::Gat, &st(Opcode::GAT, Status::KEY_ENOENT)), Ok(Reply::Miss));
    assert_eq!(p(Op::Touch, &ok(Opcode::TOUCH, Op::Touch)), Ok(Reply::Touched));
    assert_eq!(
        p(Op::Set, &ok(Opcode::SET, Op::Set)),
        Ok(Reply::Stored { cas: Some(3) })
    );
    assert_eq!(p(Op::Add, &st(Opcode::ADD, Status::KEY_EEXISTS)), Ok(Reply::NotStored));
    assert_eq!(
        p(Op::Replace, &st(Opcode::REPLACE, Status::KEY_ENOENT)),
        Ok(Reply::NotStored)
    );
    assert_eq!(
        p(Op::Prepend, &st(Opcode::PREPEND, Status::NOT_STORED)),
        Ok(Reply::NotStored)
    );
    assert_eq!(p(Op::Cas, &st(Opcode::SET, Status::KEY_EEXISTS)), Ok(Reply::Exists));
    assert_eq!(p(Op::Cas, &st(Opcode::SET, Status::KEY_ENOENT)), Ok(Reply::NotFound));
    assert_eq!(p(Op::Incr, &ok(Opcode::INCREMENT, Op::Incr)), Ok(Reply::Number(12)));
    assert_eq!(
        p(Op::Decr, &st(Opcode::DECREMENT, Status::DELTA_BADVAL)),
        Ok(Reply::NonNumeric)
    );
    assert_eq!(
        p(Op::Delete, &st(Opcode::DELETE, Status::KEY_ENOENT)),
        Ok(Reply::NotFound)
    );

    // Wrong opaque (a dropped reply), wrong opcode, an error status where none fits, bad extras.
    for (op, reply) in [
        (Op::Get, binary_reply(Opcode::GET, 4, Status::SUCCESS, 0, &flags, b"")),
        (Op::Get, ok(Opcode::SET, Op::Set)),
        (Op::Add, st(Opcode::ADD, Status::NOT_STORED)),
        (Op::Set, st(Opcode::SET, Status::E2BIG)),
        (Op::Get, binary_reply(Opcode::GET, 5, Status::SUCCESS, 0, &[], b"vv")),
        (
            Op::Incr,
            binary_reply(Opcode::INCREMENT, 5, Status::SUCCESS, 0, &[], b"12"),
        ),
    ] {
        bad(Protocol::Binary, op, &["k"], 5, &reply);
    }
    let mut hits = Vec::new();
    assert!(matches!(
        parse(Protocol::Binary, Op::Get, &keys(&["k"]), 0, b"ERROR\r\n", &mut hits),
        Err(WireError::Unexpected(m)) if m.contains("magic")
    ));
}

#[test]
fn meta_requests() {
    let m = |op, v: &[u8]| String::from_utf8(req(Protocol::Meta, op, &["k"], args(), v, 6)).unwrap();
    assert_eq!(m(Op::Get, b""), "mg k f v O6\r\n");
    assert_eq!(m(Op::Gets, b""), "mg k f v c O6\r\n");
    assert_eq!(m(Op::Gat, b""), "mg k f v T30 O6\r\n");
    assert_eq!(m(Op::Touch, b""), "mg k T30 O6\r\n");
    assert_eq!(m(Op::Set, b"ab"), "ms k 2 F7 T30 c O6\r\nab\r\n");
    assert_eq!(m(Op::Add, b"ab"), "ms k 2 F7 T30 ME c O6\r\nab\r\n");
    assert_eq!(m(Op::Replace, b"ab"), "ms k 2 F7 T30 MR c O6\r\nab\r\n");
    assert_eq!(m(Op::Append, b"ab"), "ms k 2 MA c O6\r\nab\r\n");
    assert_eq!(m(Op::Prepend, b"ab"), "ms k 2 MP c O6\r\nab\r\n");
    assert_eq!(m(Op::Cas, b"ab"), "ms k 2 F7 T30 C99 c O6\r\nab\r\n");
    assert_eq!(m(Op::Incr, b""), "ma k D5 v O6\r\n");
    assert_eq!(m(Op::Decr, b""), "ma k MD D5 v O6\r\n");
    assert_eq!(m(Op::Delete, b""), "md k O6\r\n");
}

#[test]
fn meta_replies() {
    fn p(op: Op, r: &[u8]) -> Result<Reply<'_>, String> {
        parse_all(Protocol::Meta, op, &["k1"], 6, r)
    }
    assert_eq!(
        p(Op::Gets, b"VA 3 f7 c12 O6\r\nabc\r\n"),
        Ok(Reply::Hit {
            flags: Some(7),
            cas: Some(12),
            data: b"abc"
        })
    );
    assert_eq!(p(Op::Get, b"EN O6\r\n"), Ok(Reply::Miss));
    assert_eq!(p(Op::Touch, b"HD O6\r\n"), Ok(Reply::Touched));
    assert_eq!(p(Op::Touch, b"EN O6\r\n"), Ok(Reply::NotFound));
    assert_eq!(p(Op::Set, b"HD c5 O6\r\n"), Ok(Reply::Stored { cas: Some(5) }));
    assert_eq!(p(Op::Add, b"NS O6\r\n"), Ok(Reply::NotStored));
    assert_eq!(p(Op::Cas, b"EX O6\r\n"), Ok(Reply::Exists));
    assert_eq!(p(Op::Cas, b"NF O6\r\n"), Ok(Reply::NotFound));
    assert_eq!(p(Op::Incr, b"VA 2 O6\r\n13\r\n"), Ok(Reply::Number(13)));
    assert_eq!(
        p(
            Op::Incr,
            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
        ),
        Ok(Reply::NonNumeric)
    );
    assert_eq!(p(Op::Delete, b"HD O6\r\n"), Ok(Reply::Deleted));

    for (op, reply) in [
        (Op::Set, &b"HD O4\r\n"[..]),
        (Op::Set, b"HD\r\n"),
        (Op::Set, b"EN O6\r\n"),
        (Op::Set, b"NS O6\r\n"),
        (Op::Get, b"HD O6\r\n"),
        (Op::Get, b"VA 3 O6\r\nabc\r\n"),
        (Op::Gets, b"VA 3 f1 O6\r\nabc\r\n"),
        (Op::Incr, b"VA 2 O6\r\nab\r\n"),
        (Op::Set, b"SERVER_ERROR out of memory\r\n"),
        (
            Op::Delete,
            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        (Op::Set, b"STORED\r\n"),
    ] {
        bad(Protocol::Meta, op, &["k1"], 6, reply);
    }
}

#[test]
fn protocol_names() {
    for p in Protocol::ALL {
        assert_eq!(p.name().parse::<Protocol>(), Ok(p));
    }
    assert!("udp".parse::<Protocol>().is_err());
    assert_eq!(show(b"a\r\n"), "\"a\\r\\n\"");
}
