use super::*;

/// memcached's size rule for an `-I` of `max`.
fn limit(max: usize) -> impl Fn(&[u8], u32, usize) -> bool {
    move |key, flags, len| crate::item_size_ok(max, key.len(), flags, len)
}

/// The keys the planner hands to the prefetch: those of plain reads, none for a base64 key
/// (the prefetch decodes it) or a write.
fn planned_keys(p: Proto, buf: &[u8]) -> Vec<Option<Vec<u8>>> {
    let run = Run::plan(p, buf, Some(1024), &limit(1 << 20)).expect("a run");
    (0..run.n)
        .map(|i| {
            run.keys[i]
                .of(nth_request(buf, &run.ends[..run.n], i))
                .map(<[u8]>::to_vec)
        })
        .collect()
}

#[test]
fn the_planner_finds_each_reads_key() {
    let buf = b"mg  alpha v f O1\r\nmg YmV0YQ== v b\r\nms w 1 T0\r\nx\r\nget gamma\r\ngets  delta \r\nmg e\r\n";
    let keys = planned_keys(Proto::Text, buf);
    let want: Vec<Option<Vec<u8>>> = vec![
        Some(b"alpha".to_vec()),
        None,
        None,
        Some(b"gamma".to_vec()),
        Some(b"delta".to_vec()),
        Some(b"e".to_vec()),
    ];
    assert_eq!(keys, want);
    // A touch changes the item, so it ends the run; a multi-key get reads no key ahead.
    assert!(Run::plan(Proto::Text, b"mg a T30 v\r\nmg b v\r\n", Some(1024), &limit(1 << 20)).is_none());
    let multi = planned_keys(Proto::Text, b"get a b\r\nget c\r\n");
    assert_eq!(multi, vec![None, Some(b"c".to_vec())]);
}

/// The light scan for `ms` accepts only what the full check accepts, with the same length,
/// over lines built from valid and invalid pieces alike.
#[test]
fn the_light_ms_scan_accepts_only_what_the_parser_does() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let pieces: &[&str] = &[
        "F0",
        "F7",
        "F4294967296",
        "F-1",
        "Fx",
        "F",
        "T0",
        "T-1",
        "T30",
        "T99999999999999999999",
        "T",
        "T+5",
        "c",
        "k",
        "q",
        "s",
        "t",
        "f",
        "h",
        "l",
        "v",
        "b",
        "I",
        "C5",
        "MS",
        "ME",
        "N0",
        "R5",
        "O",
        "O1",
        "Oabcdefghijklmnopqrstuvwxyz01234",
        "Oabcdefghijklmnopqrstuvwxyz012345",
        "u",
        "P",
        "L",
        "Z",
        "\u{7f}",
    ];
    let (mut accepted, mut tried) = (0, 0);
    for _ in 0..20_000 {
        let key = match rng.gen_range(0..4) {
            0 => "k".repeat(250),
            1 => "k".repeat(251),
            _ => "key".to_string(),
        };
        let len: usize = rng.gen_range(0..6);
        let len_tok = match rng.gen_range(0..6) {
            0 => "-1".to_string(),
            1 => "x".to_string(),
            2 => "0005".to_string(),
            _ => len.to_string(),
        };
        let mut line = format!("ms{}{key} {len_tok}", if rng.gen_bool(0.1) { "  " } else { " " });
        for _ in 0..rng.gen_range(0..20) {
            line.push_str(if rng.gen_bool(0.1) { "  " } else { " " });
            line.push_str(pieces[rng.gen_range(0..pieces.len())]);
        }
        let data = if rng.gen_bool(0.9) {
            "x".repeat(len)
        } else {
            "y".repeat(len + 1)
        };
        let buf = format!("{line}\r\n{data}\r\nmg next\r\n").into_bytes();
        let (line_end, next) = (line.len(), line.len() + 2);
        let item_max = if rng.gen_bool(0.5) { 1 << 20 } else { 320 };
        tried += 1;
        if let Some(n) = plain_ms_len(&buf, line_end, next, 4, &limit(item_max)) {
            accepted += 1;
            assert_eq!(
                meta_set_len(&buf, line_end, next, 4, &limit(item_max)),
                Some(n),
                "{line}"
            );
        }
    }
    // The scan must take the common lines, or it saves nothing.
    assert!(accepted > tried / 50, "{accepted} of {tried}");
    let common = b"ms rb:74578 100 F0 T0 c O12346\r\n";
    let mut buf = common.to_vec();
    buf.extend_from_slice(&[b'v'; 100]);
    buf.extend_from_slice(b"\r\n");
    assert_eq!(
        plain_ms_len(&buf, common.len() - 2, common.len(), 1024, &limit(1 << 20)),
        Some(buf.len())
    );
}

#[test]
fn the_planner_finds_binary_keys() {
    let mut buf = Vec::new();
    for key in [&b"one"[..], b"three"] {
        let req = crate::binary::Request {
            key,
            ..crate::binary::Request::new(crate::binary::Opcode::GETK)
        };
        crate::binary::compose_request(&mut buf, &req).unwrap();
    }
    assert_eq!(
        planned_keys(Proto::Binary, &buf),
        vec![Some(b"one".to_vec()), Some(b"three".to_vec())]
    );
}

/// Pieces of bursts: requests a run may take, requests it must not, and malformed ones.
const TEXT_PIECES: &[&str] = &[
    "get a\r\n",
    "get a b c\r\n",
    "gets  k \r\n",
    "get\r\n",
    "get \r\n",
    "set k 0 0 1\r\nx\r\n",
    "set k 5 100 3\r\nabc\r\n",
    "set k 0 0 3\r\nab\r\n",
    "set k 0 0 1 noreply\r\nx\r\n",
    "set k 0 0 2000\r\n",
    "add k 0 0 1\r\nx\r\n",
    "cas k 0 0 1 5\r\nx\r\n",
    "mg k v\r\n",
    "mg k v f t c s k O123 q\r\n",
    "mg a2V5 b v\r\n",
    "mg k T30 v\r\n",
    "mg k N30 v\r\n",
    "mg k R5 v\r\n",
    "mg\r\n",
    "mg k v v\r\n",
    "ms k 1\r\nx\r\n",
    "ms k 1 T0 F5 c\r\nx\r\n",
    "ms k 2 MS I\r\nxy\r\n",
    "ms k 1 C7\r\nx\r\n",
    "ms k 1 ME\r\nx\r\n",
    "ms k 3\r\nxy\r\n",
    "ms k -1\r\nx\r\n",
    "md k\r\n",
    "mn\r\n",
    "delete k\r\n",
    "incr k 1\r\n",
    "\r\n",
    "bogus\r\n",
];

fn binary_pieces() -> Vec<Vec<u8>> {
    use crate::binary::{compose_request, Opcode, Request};
    let mut out = Vec::new();
    let extras = [0u8; 8];
    for (opcode, key, extras, value) in [
        (Opcode::GET, &b"k"[..], &[][..], &[][..]),
        (Opcode::GETK, b"key", &[], &[]),
        (Opcode::GETQ, b"k", &[], &[]),
        (Opcode::GET, b"", &[], &[]),
        (Opcode::GET, b"k", &extras[..4], &[]),
        (Opcode::SET, b"k", &extras, b"value"),
        (Opcode::SETQ, b"k", &extras, b"v"),
        (Opcode::SET, b"k", &extras[..4], b"v"),
        (Opcode::ADD, b"k", &extras, b"v"),
        (Opcode::DELETE, b"k", &[], &[]),
        (Opcode::NOOP, b"", &[], &[]),
    ] {
        let mut b = Vec::new();
        let req = Request {
            key,
            extras,
            value,
            ..Request::new(opcode)
        };
        compose_request(&mut b, &req).unwrap();
        out.push(b);
    }
    out
}

/// Whatever the burst, the run's requests tile its bytes; every write (and binary GET) is one
/// the full parsers take whole, with the same length; every text read is one whole line.
#[test]
fn every_request_of_a_run_is_what_the_parsers_measure() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let binary = binary_pieces();
    let (mut runs, mut requests) = (0, 0);
    for round in 0..20_000 {
        let p = if round % 3 == 0 { Proto::Binary } else { Proto::Text };
        let mut buf = Vec::new();
        for _ in 0..rng.gen_range(1..12) {
            match p {
                Proto::Text => buf.extend_from_slice(TEXT_PIECES[rng.gen_range(0..TEXT_PIECES.len())].as_bytes()),
                Proto::Binary => buf.extend_from_slice(&binary[rng.gen_range(0..binary.len())]),
            }
        }
        // Sometimes a request cut short.
        if rng.gen_bool(0.2) {
            buf.truncate(rng.gen_range(0..=buf.len()));
        }
        let write_max = if rng.gen_bool(0.2) {
            None
        } else {
            Some(rng.gen_range(0..8))
        };
        let size = limit(if rng.gen_bool(0.5) { 1 << 20 } else { 64 });
        let Some(run) = Run::plan(p, &buf, write_max, &size) else {
            continue;
        };
        runs += 1;
        assert!(run.n >= 2 && run.n <= MAX_RUN);
        assert_eq!(run.ends[run.n - 1], run.at);
        assert!(run.at <= buf.len());
        for i in 0..run.n {
            let req = nth_request(&buf, &run.ends[..run.n], i);
            requests += 1;
            let shown = String::from_utf8_lossy(&buf);
            if run.kinds[i] == Kind::Write || p == Proto::Binary {
                assert_eq!(
                    parsed_len(p, req, &size),
                    Some(req.len()),
                    "{p:?} request {i} of {shown:?}"
                );
            } else {
                // A read is one whole line, which the front end answers alone (with memcached's
                // error if it is malformed): the planner does not parse every flag of it.
                assert_eq!(
                    crate::find_line(req).map(|(_, next)| next),
                    Some(req.len()),
                    "{shown:?}"
                );
            }
            if run.kinds[i] == Kind::Write {
                assert!(write_max.is_some(), "a write joined a run that takes none");
            }
            if let Some(key) = run.keys[i].of(req) {
                assert!(crate::key_is_valid(key) || key.is_empty());
            }
        }
    }
    assert!(runs > 1000 && requests > 3000, "{runs} runs, {requests} requests");
}
