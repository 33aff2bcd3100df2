use super::client::{self, Response};
use super::*;

fn parse(buf: &[u8]) -> Result<(Request<'_>, usize), Error<'_>> {
    parse_request(buf, &Limits::default(), |_, _, len| len <= 1024)
}

#[test]
fn get_keys_and_incomplete() {
    let (r, n) = parse(b"get a  b c\r\nxx").unwrap();
    assert_eq!(n, 12);
    let Request::Get { cas: false, keys } = r else {
        panic!("{r:?}")
    };
    assert_eq!(keys.iter().collect::<Vec<_>>(), vec![&b"a"[..], b"b", b"c"]);
    assert_eq!(parse(b"get a"), Err(Error::Incomplete));
    assert_eq!(parse(b"get\r\n"), Err(reply(ERROR, 5, false)));
}

#[test]
fn storage_every_split_point() {
    let full = b"set k 5 10 3 noreply\r\nabc\r\n";
    for cut in 0..full.len() {
        assert_eq!(parse(&full[..cut]), Err(Error::Incomplete), "cut {cut}");
    }
    let (r, n) = parse(full).unwrap();
    assert_eq!(n, full.len());
    assert_eq!(
        r,
        Request::Store {
            cmd: StoreCmd::Set,
            key: b"k",
            flags: 5,
            exptime: 10,
            cas: 0,
            data: b"abc",
            noreply: true
        }
    );
}

#[test]
fn storage_errors_follow_memcached() {
    assert_eq!(
        parse(b"set k 0 0 1\r\nxy\r\n"),
        Err(Error::BadDataChunk {
            consumed: 16,
            noreply: false
        })
    );
    assert_eq!(parse(b"set k -1 0 1\r\n"), Err(reply(BAD_FORMAT, 14, false)));
    assert_eq!(parse(b"set k 0 0\r\n"), Err(reply(ERROR, 11, false)));
    let long = format!("set {} 0 0 1\r\n", "k".repeat(251));
    assert_eq!(parse(long.as_bytes()), Err(reply(BAD_FORMAT, long.len(), false)));
    // Oversized: rejected before the block arrives, so it can be swallowed.
    assert_eq!(
        parse(b"set k 0 0 5000\r\n"),
        Err(Error::TooLarge {
            cmd: StoreCmd::Set,
            key: b"k",
            consumed: 16,
            swallow: 5002,
            noreply: false
        })
    );
    // memcached truncates flags to 32 bits.
    let (r, _) = parse(b"set k 4294967296 0 0\r\n\r\n").unwrap();
    assert!(matches!(r, Request::Store { flags: 0, .. }));
}

#[test]
fn overlong_lines() {
    let junk = vec![b'a'; 3000];
    assert_eq!(parse(&junk), Err(Error::Close));
    let mut get = b"get ".to_vec();
    get.extend(std::iter::repeat_n(b'a', 3000));
    assert_eq!(parse(&get), Err(Error::Incomplete));
}

#[test]
fn other_commands() {
    assert!(matches!(
        parse(b"delete a 0\r\n"),
        Ok((Request::Delete { noreply: false, .. }, _))
    ));
    assert_eq!(parse(b"delete a 1\r\n"), Err(reply(DELETE_USAGE, 12, false)));
    assert!(matches!(
        parse(b"incr a 5\r\n"),
        Ok((
            Request::Arith {
                incr: true,
                delta: 5,
                ..
            },
            _
        ))
    ));
    assert_eq!(parse(b"incr a x\r\n"), Err(reply(INVALID_DELTA, 10, false)));
    assert!(matches!(
        parse(b"flush_all noreply\r\n"),
        Ok((
            Request::FlushAll {
                delay: 0,
                noreply: true
            },
            _
        ))
    ));
    assert_eq!(parse(b"flush_all x\r\n"), Err(reply(INVALID_EXPTIME, 13, false)));
    assert!(matches!(
        parse(b"mg foo v\r\n"),
        Ok((
            Request::Meta {
                cmd: b'g',
                line_end: 8,
                next: 10
            },
            10
        ))
    ));
    assert_eq!(parse(b"\r\n"), Err(reply(ERROR, 2, false)));
    assert_eq!(parse(b"GET a\r\n"), Err(reply(ERROR, 7, false)));
}

#[test]
fn client_round_trip() {
    let mut out = Vec::new();
    client::store(&mut out, StoreCmd::Cas, b"k", 1, 2, b"v\r\n", 99, false);
    let (r, n) = parse(&out).unwrap();
    assert_eq!(n, out.len());
    assert!(matches!(
        r,
        Request::Store {
            cmd: StoreCmd::Cas,
            cas: 99,
            data: b"v\r\n",
            ..
        }
    ));

    let reply = b"VALUE k 1 3 7\r\nabc\r\nEND\r\n";
    let (r, n) = client::parse_response(reply).unwrap();
    assert_eq!(
        r,
        Response::Value {
            key: b"k",
            flags: 1,
            cas: Some(7),
            data: b"abc"
        }
    );
    assert_eq!(client::parse_response(&reply[n..]).unwrap().0, Response::End);
    assert_eq!(
        client::parse_response(&reply[..18]),
        Err(client::ParseError::Incomplete)
    );
    assert_eq!(client::parse_response(b"42\r\n").unwrap().0, Response::Number(42));
}
