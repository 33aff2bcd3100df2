//! Fuzzes the binary protocol codec. Invariants checked on every input:
//! - no parser panics, and none reports using more bytes than it was given;
//! - a parsed frame composes back to exactly the bytes it was parsed from;
//! - every strict prefix of a parsed frame is `Incomplete`;
//! - the header parser agrees with the frame parser;
//! - a request built from the input composes to bytes that parse back to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riven_memcache::binary::{
    compose_request, compose_response, parse_request, parse_request_header, parse_response, parse_response_header,
    Opcode, ParseError, Request, HEADER_LEN,
};

fuzz_target!(|data: &[u8]| {
    check_requests(data);
    check_responses(data);
    check_composed(data);
});

fn check_requests(data: &[u8]) {
    let header = parse_request_header(data);
    match parse_request(data) {
        Ok((req, used)) => {
            assert!(used <= data.len());
            let h = header.expect("a framed request has a readable header");
            assert_eq!(h.frame_len(), used);
            assert_eq!(h.value_len(), Some(req.value.len()));
            let mut again = Vec::new();
            compose_request(&mut again, &req).expect("a parsed request composes");
            assert_eq!(again, &data[..used]);
            check_prefixes(&data[..used], |b| parse_request(b).map(|_| ()));
        }
        Err(ParseError::Incomplete) => {
            // Either no whole header, or a header whose body has not all arrived.
            if let Ok(h) = header {
                assert!(h.frame_len() > data.len());
            }
        }
        Err(ParseError::BadMagic(m)) => assert_eq!(header, Err(ParseError::BadMagic(m))),
        Err(ParseError::BadLengths) => assert_eq!(header.map(|h| h.value_len()), Ok(None)),
    }
}

fn check_responses(data: &[u8]) {
    let header = parse_response_header(data);
    if let Ok((res, used)) = parse_response(data) {
        assert!(used <= data.len());
        let h = header.expect("a framed response has a readable header");
        assert_eq!((h.frame_len(), h.status, h.opaque), (used, res.status, res.opaque));
        let mut again = Vec::new();
        compose_response(&mut again, &res).expect("a parsed response composes");
        assert_eq!(again, &data[..used]);
        check_prefixes(&data[..used], |b| parse_response(b).map(|_| ()));
    }
}

/// Every strict prefix of a whole frame must ask for more bytes, never fail or succeed.
fn check_prefixes(frame: &[u8], parse: impl Fn(&[u8]) -> Result<(), ParseError>) {
    // Frames can be long; the cut points near the header and the end are where bugs live.
    let cuts = (0..frame.len().min(HEADER_LEN + 8)).chain(frame.len().saturating_sub(8)..frame.len());
    for cut in cuts {
        assert_eq!(parse(&frame[..cut]), Err(ParseError::Incomplete), "cut at {cut}");
    }
}

/// Builds a request from the input's bytes and checks it survives compose + parse.
fn check_composed(data: &[u8]) {
    let Some((fixed, rest)) = data.split_first_chunk::<12>() else {
        return;
    };
    let extras_len = usize::from(fixed[1] % 32).min(rest.len());
    let (extras, rest) = rest.split_at(extras_len);
    let key_len = usize::from(fixed[2]).min(rest.len());
    let (key, value) = rest.split_at(key_len);
    let req = Request {
        opcode: Opcode(fixed[0]),
        data_type: fixed[3],
        vbucket: u16::from_be_bytes([fixed[4], fixed[5]]),
        opaque: u32::from_be_bytes([fixed[6], fixed[7], fixed[8], fixed[9]]),
        cas: u64::from(u16::from_be_bytes([fixed[10], fixed[11]])) << 40,
        extras,
        key,
        value,
    };
    let mut bytes = Vec::new();
    compose_request(&mut bytes, &req).expect("parts are within header limits");
    let tail = bytes.len();
    bytes.extend_from_slice(data); // Trailing bytes must not change what is parsed.
    let (parsed, used) = parse_request(&bytes).expect("a composed request parses");
    assert_eq!((parsed, used), (req, tail));
}
