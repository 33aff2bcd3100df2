//! Text protocol invariants on arbitrary input: no panic; a parsed request never claims more
//! bytes than it was given; keys of parsed requests are within memcached's limit; a data block
//! lies inside the consumed bytes; the client reply parser stays in bounds too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riven_memcache::text::{client, parse_request, Error, Limits, Request};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_get_line: 4096 };
    let mut rest = data;
    // Walk the input as a connection would: request after request.
    for _ in 0..64 {
        match parse_request(rest, &limits, |_, _, len| len <= 1024) {
            Ok((req, used)) => {
                assert!(used > 0 && used <= rest.len());
                match req {
                    Request::Store { key, data: value, .. } => {
                        assert!(key.len() <= 250);
                        let start = value.as_ptr() as usize - rest.as_ptr() as usize;
                        assert!(start + value.len() + 2 <= used);
                    }
                    Request::Get { keys, .. } | Request::Gat { keys, .. } => {
                        assert!(keys.iter().all(|k| !k.is_empty() && k.len() <= 250));
                    }
                    Request::Meta { line_end, next, .. } => assert!(line_end < next && next == used),
                    _ => {}
                }
                rest = &rest[used..];
            }
            Err(Error::Reply { consumed, .. }) | Err(Error::BadDataChunk { consumed, .. }) => {
                assert!(consumed > 0 && consumed <= rest.len());
                rest = &rest[consumed..];
            }
            Err(Error::TooLarge { consumed, swallow, .. }) => {
                assert!(consumed <= rest.len() && swallow > 1024);
                rest = &rest[consumed..];
                rest = &rest[swallow.min(rest.len())..];
            }
            Err(Error::Incomplete) | Err(Error::Close) => break,
        }
    }
    let mut rest = data;
    while let Ok((_, used)) = client::parse_response(rest) {
        assert!(used > 0 && used <= rest.len());
        rest = &rest[used..];
    }
});
