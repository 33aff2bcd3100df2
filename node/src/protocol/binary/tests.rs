use super::*;
use crate::config::Config;
use crate::protocol::ConnState;
use crate::state::ServerState;
use riven_memcache::binary::{compose_request, Request};
use std::sync::Arc;

fn state() -> Arc<ServerState> {
    let mut config = Config::default();
    config.l1.memory.limit_mb = 8;
    ServerState::embedded(config)
}

/// Feeds `input` to the front end as the connection loop does, returning the replies, the
/// bytes left unconsumed and whether the connection was closed.
fn run(state: &ServerState, input: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut conn = ConnState::default();
    let mut out = crate::out::Out::default();
    let mut pos = 0;
    while pos < input.len() {
        let mut ctx = Ctx {
            state,
            engine: &state.engine,
            conn: &mut conn,
        };
        match crate::protocol::block_on(handle(&mut ctx, &input[pos..], &mut out)) {
            Step::Done(n) => pos += n,
            Step::Swallow { consumed, swallow } => pos = (pos + consumed + swallow).min(input.len()),
            Step::Incomplete => break,
            Step::Close => return (out.take_buf_flat(), input.len() - pos, true),
            Step::Abort => return (Vec::new(), input.len() - pos, true),
        }
    }
    (out.take_buf_flat(), input.len() - pos, false)
}

fn req(op: Opcode, opaque: u32, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    compose_request(
        &mut v,
        &Request {
            opaque,
            extras,
            key,
            value,
            ..Request::new(op)
        },
    )
    .unwrap();
    v
}

/// A reply as the tests look at it: CAS only as zero or not.
#[derive(Debug, PartialEq)]
struct Got {
    op: Opcode,
    status: Status,
    opaque: u32,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
    has_cas: bool,
}

fn replies(mut b: &[u8]) -> Vec<Got> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let (r, n) = parse_response(b).unwrap();
        v.push(Got {
            op: r.opcode,
            status: r.status,
            opaque: r.opaque,
            extras: r.extras.to_vec(),
            key: r.key.to_vec(),
            value: r.value.to_vec(),
            has_cas: r.cas != 0,
        });
        b = &b[n..];
    }
    v
}

fn set_extras(flags: u32, exptime: u32) -> [u8; 8] {
    StoreExtras { flags, exptime }.to_bytes()
}

#[test]
fn set_get_quiet_and_miss() {
    let st = state();
    let mut input = req(Opcode::SETQ, 1, &set_extras(7, 0), b"k", b"v1");
    input.extend(req(Opcode::GETQ, 2, &[], b"nope", b""));
    input.extend(req(Opcode::GETKQ, 3, &[], b"k", b""));
    input.extend(req(Opcode::GETK, 4, &[], b"nope", b""));
    input.extend(req(Opcode::GET, 5, &[], b"nope", b""));
    input.extend(req(Opcode::NOOP, 6, &[], b"", b""));
    let (out, left, closed) = run(&st, &input);
    assert_eq!((left, closed), (0, false));
    let r = replies(&out);
    assert_eq!(r.len(), 4);
    assert_eq!(
        r[0],
        Got {
            op: Opcode::GETKQ,
            status: Status::SUCCESS,
            opaque: 3,
            extras: 7u32.to_be_bytes().to_vec(),
            key: b"k".to_vec(),
            value: b"v1".to_vec(),
            has_cas: true
        }
    );
    assert_eq!(
        r[1],
        Got {
            op: Opcode::GETK,
            status: Status::KEY_ENOENT,
            opaque: 4,
            extras: vec![],
            key: b"nope".to_vec(),
            value: vec![],
            has_cas: false
        }
    );
    assert_eq!(
        r[2],
        Got {
            op: Opcode::GET,
            status: Status::KEY_ENOENT,
            opaque: 5,
            extras: vec![],
            key: vec![],
            value: b"Not found".to_vec(),
            has_cas: false
        }
    );
    assert_eq!(r[3].op, Opcode::NOOP);
}

#[test]
fn incomplete_until_the_whole_value() {
    let st = state();
    let input = req(Opcode::SET, 1, &set_extras(0, 0), b"key", b"value");
    for cut in 0..input.len() {
        let (out, left, closed) = run(&st, &input[..cut]);
        assert_eq!((out.len(), left, closed), (0, cut, false), "cut {cut}");
    }
    let (out, left, _) = run(&st, &input);
    assert_eq!(left, 0);
    assert_eq!(replies(&out)[0].status, Status::SUCCESS);
}

#[test]
fn too_large_is_answered_from_the_head_and_swallowed() {
    let st = state();
    let mut input = req(Opcode::SET, 1, &set_extras(0, 0), b"big", b"old");
    let big_len = st.config.item_size_max();
    let mut big = req(Opcode::SETQ, 2, &set_extras(0, 0), b"big", &vec![b'x'; big_len]);
    // Only the head has arrived: the reply must not wait for the value.
    big.truncate(24 + 8 + 3);
    input.extend(&big);
    let mut conn = ConnState::default();
    let mut out = crate::out::Out::default();
    let mut ctx = Ctx {
        state: &st,
        engine: &st.engine,
        conn: &mut conn,
    };
    let Step::Done(n) = crate::protocol::block_on(handle(&mut ctx, &input, &mut out)) else {
        panic!()
    };
    let step = crate::protocol::block_on(handle(&mut ctx, &input[n..], &mut out));
    assert_eq!(
        step,
        Step::Swallow {
            consumed: 35,
            swallow: big_len
        }
    );
    let r = replies(&out);
    assert_eq!(
        (r[1].status, r[1].value.as_slice()),
        (Status::E2BIG, &b"Too large."[..])
    );
    // The SET that could not be stored removed the old value.
    let (out, _, _) = run(&st, &req(Opcode::GET, 3, &[], b"big", b""));
    assert_eq!(replies(&out)[0].status, Status::KEY_ENOENT);
}

#[test]
fn malformed_requests_close_like_memcached() {
    let st = state();
    let long_key = vec![b'k'; 251];
    for (input, status) in [
        (req(Opcode::GET, 1, &[], &long_key, b""), Status::EINVAL),
        (req(Opcode::GET, 1, &[0; 4], b"k", b""), Status::EINVAL),
        (req(Opcode::NOOP, 1, &[], b"", b"x"), Status::EINVAL),
        (req(Opcode::INCREMENT, 1, &[0; 8], b"k", b""), Status::EINVAL),
        (req(Opcode::SASL_AUTH, 1, &[0; 4], b"PLAIN", b""), Status::EINVAL),
    ] {
        let (out, _, closed) = run(&st, &input);
        assert!(closed);
        let r = replies(&out);
        assert_eq!((r.len(), r[0].status, r[0].opaque), (1, status, 1));
    }
    // Key longer than the body.
    let mut bad = req(Opcode::GET, 9, &[], b"kk", b"");
    bad[11] = 1;
    let (out, _, closed) = run(&st, &bad);
    assert!(closed);
    assert_eq!(replies(&out)[0].status, Status::UNKNOWN_COMMAND);
    // Bad magic: closed without a reply, but only once a whole header is in.
    let (out, _, closed) = run(&st, &[0x81; 23]);
    assert_eq!((out.len(), closed), (0, false));
    let (out, _, closed) = run(&st, &[0x81; 24]);
    assert_eq!((out.len(), closed), (0, true));
}

#[test]
fn bad_magic_drops_replies_after_the_last_noop() {
    let st = state();
    let mut input = req(Opcode::SET, 1, &set_extras(0, 0), b"a", b"v");
    input.extend(req(Opcode::NOOP, 2, &[], b"", b""));
    input.extend(req(Opcode::GET, 3, &[], b"a", b""));
    input.extend([0x81; 24]);
    let (out, _, closed) = run(&st, &input);
    assert!(closed);
    let r = replies(&out);
    assert_eq!(r.iter().map(|x| x.opaque).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn unknown_command_swallows_the_body_after_the_head() {
    let st = state();
    let mut input = req(Opcode(0x40), 1, b"ee", b"abc", b"vvvvv");
    input.extend(b"JJJJJ"); // memcached also discards extras + key bytes past the body.
    input.extend(req(Opcode::NOOP, 2, &[], b"", b""));
    let (out, left, closed) = run(&st, &input);
    assert_eq!((left, closed), (0, false));
    let r = replies(&out);
    assert_eq!(
        (r[0].status, r[0].value.as_slice()),
        (Status::UNKNOWN_COMMAND, &b"Unknown command"[..])
    );
    assert_eq!((r[1].op, r[1].opaque), (Opcode::NOOP, 2));
}

#[test]
fn arith_create_wrap_and_floor() {
    let st = state();
    let ext = |delta, initial, exptime| {
        ArithExtras {
            delta,
            initial,
            exptime,
        }
        .to_bytes()
    };
    let mut input = req(Opcode::INCREMENT, 1, &ext(1, 10, ArithExtras::NO_CREATE), b"n", b"");
    input.extend(req(Opcode::INCREMENT, 2, &ext(1, u64::MAX, 0), b"n", b""));
    input.extend(req(Opcode::INCREMENT, 3, &ext(2, 0, 0), b"n", b""));
    input.extend(req(Opcode::DECREMENT, 4, &ext(5, 0, 0), b"n", b""));
    input.extend(req(Opcode::INCREMENTQ, 5, &ext(5, 0, 0), b"n", b""));
    let (out, _, _) = run(&st, &input);
    let r = replies(&out);
    assert_eq!(r.len(), 4);
    assert_eq!(r[0].status, Status::KEY_ENOENT);
    assert_eq!(r[1].value, u64::MAX.to_be_bytes());
    assert_eq!(r[2].value, 1u64.to_be_bytes());
    assert_eq!(r[3].value, 0u64.to_be_bytes());
}

#[test]
fn stat_ends_with_an_empty_reply() {
    let st = state();
    let (out, _, _) = run(&st, &req(Opcode::STAT, 7, &[], b"", b""));
    let r = replies(&out);
    assert!(r.len() > 10);
    assert!(r
        .iter()
        .all(|x| x.op == Opcode::STAT && x.status == Status::SUCCESS && x.opaque == 7));
    assert!(r[0].key == b"pid");
    let last = r.last().unwrap();
    assert!(last.key.is_empty() && last.value.is_empty());
    let (out, _, _) = run(&st, &req(Opcode::STAT, 7, &[], b"bogus", b""));
    assert_eq!(replies(&out)[0].status, Status::KEY_ENOENT);
}
