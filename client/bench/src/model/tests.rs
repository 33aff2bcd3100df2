use super::*;

fn stream(seed: u64, len: usize) -> Part {
    Part::Stream { seed, len }
}

fn bytes(parts: &[Part]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        p.write(&mut v);
    }
    v
}

fn args(flags: u32, cas: u64, delta: u64) -> Args {
    Args {
        flags,
        exptime: 0,
        cas,
        delta,
    }
}

/// Applies and checks one command in one go, as if the server answered `reply`.
fn step(m: &mut Model, key: u64, op: Op, a: Args, value: Option<Part>, reply: Reply<'_>) -> Result<(), String> {
    let e = m.apply(key, op, &a, value).ok_or("the model cannot predict this")?;
    m.check(&e, &reply, &[], &[])
}

#[test]
fn unknown_keys_are_deleted_first() {
    let mut m = Model::new();
    assert_eq!(m.slot(1), &Slot::Unknown);
    assert_eq!(m.apply(1, Op::Get, &Args::default(), None), None);
    let e = m.apply(1, Op::Delete, &Args::default(), None).unwrap();
    assert_eq!(e, Expect::Cleared);
    assert!(m.check(&e, &Reply::Deleted, &[], &[]).is_ok());
    assert!(m.check(&e, &Reply::NotFound, &[], &[]).is_ok());
    assert!(m.check(&e, &Reply::Touched, &[], &[]).is_err());
    assert!(m.is_known(1));
    assert_eq!(m.apply(1, Op::Get, &Args::default(), None), Some(Expect::Miss));
}

#[test]
fn storage_commands_follow_memcached() {
    let mut m = Model::new();
    let a = args(5, 0, 0);
    let v = Some(stream(1, 10));
    step(&mut m, 1, Op::Delete, a, None, Reply::NotFound).unwrap();
    // On a missing key.
    for op in [Op::Replace, Op::Append, Op::Prepend] {
        step(&mut m, 1, op, a, v, Reply::NotStored).unwrap();
        assert!(step(&mut m, 1, op, a, v, Reply::Stored { cas: None }).is_err(), "{op}");
    }
    step(&mut m, 1, Op::Cas, args(5, 3, 0), v, Reply::NotFound).unwrap();
    for op in [Op::Touch, Op::Incr, Op::Decr, Op::Delete] {
        step(&mut m, 1, op, a, None, Reply::NotFound).unwrap();
    }
    step(&mut m, 1, Op::Get, a, None, Reply::Miss).unwrap();
    // add stores once.
    step(&mut m, 1, Op::Add, a, v, Reply::Stored { cas: None }).unwrap();
    step(&mut m, 1, Op::Add, a, Some(stream(2, 3)), Reply::NotStored).unwrap();
    // append and prepend keep the flags and put the bytes where they belong.
    step(
        &mut m,
        1,
        Op::Append,
        args(99, 0, 0),
        Some(stream(3, 4)),
        Reply::Stored { cas: None },
    )
    .unwrap();
    step(
        &mut m,
        1,
        Op::Prepend,
        a,
        Some(Part::number(77)),
        Reply::Stored { cas: None },
    )
    .unwrap();
    let want = [Part::number(77), stream(1, 10), stream(3, 4)];
    let data = bytes(&want);
    let e = m.apply(1, Op::Get, &a, None).unwrap();
    assert!(m
        .check(
            &e,
            &Reply::Hit {
                flags: Some(5),
                cas: None,
                data: &data
            },
            &[],
            &[]
        )
        .is_ok());
    let err = m
        .check(
            &e,
            &Reply::Hit {
                flags: Some(6),
                cas: None,
                data: &data,
            },
            &[],
            &[],
        )
        .unwrap_err();
    assert!(err.contains("flags 6, expected 5"), "{err}");
    let mut torn = data.clone();
    torn[5] ^= 1;
    let err = m
        .check(
            &e,
            &Reply::Hit {
                flags: None,
                cas: None,
                data: &torn,
            },
            &[],
            &[],
        )
        .unwrap_err();
    assert!(err.contains("wrong value: byte 5"), "{err}");
    assert!(m
        .check(&e, &Reply::Miss, &[], &[])
        .unwrap_err()
        .contains("a miss, expected a value of 16 bytes"));
    // replace and set overwrite; delete deletes.
    step(
        &mut m,
        1,
        Op::Replace,
        args(8, 0, 0),
        Some(stream(4, 2)),
        Reply::Stored { cas: None },
    )
    .unwrap();
    assert_eq!(
        m.item(1).map(|i| (i.flags, i.parts.clone())),
        Some((8, vec![stream(4, 2)]))
    );
    step(&mut m, 1, Op::Touch, a, None, Reply::Touched).unwrap();
    step(&mut m, 1, Op::Delete, a, None, Reply::Deleted).unwrap();
    step(&mut m, 1, Op::Delete, a, None, Reply::NotFound).unwrap();
}

#[test]
fn cas_uniques_are_learnt_and_used() {
    let mut m = Model::new();
    let a = args(1, 0, 0);
    step(&mut m, 1, Op::Delete, a, None, Reply::Deleted).unwrap();
    step(
        &mut m,
        1,
        Op::Set,
        a,
        Some(stream(1, 5)),
        Reply::Stored { cas: Some(40) },
    )
    .unwrap();
    assert_eq!(m.item(1).unwrap().cas, Some(40));
    step(
        &mut m,
        1,
        Op::Cas,
        args(1, BAD_CAS, 0),
        Some(stream(2, 5)),
        Reply::Exists,
    )
    .unwrap();
    step(
        &mut m,
        1,
        Op::Cas,
        args(2, 40, 0),
        Some(stream(2, 5)),
        Reply::Stored { cas: None },
    )
    .unwrap();
    assert_eq!(m.item(1).unwrap().cas, None, "a new version has a new CAS");

    // A gets learns the CAS, unless the item changed after it was sent.
    let gets = m.apply(1, Op::Gets, &a, None).unwrap();
    let data = bytes(&[stream(2, 5)]);
    m.check(
        &gets,
        &Reply::Hit {
            flags: Some(2),
            cas: Some(41),
            data: &data,
        },
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(m.item(1).unwrap().cas, Some(41));
    let gets = m.apply(1, Op::Gets, &a, None).unwrap();
    let append = m.apply(1, Op::Append, &a, Some(stream(3, 1))).unwrap();
    m.check(
        &gets,
        &Reply::Hit {
            flags: Some(2),
            cas: Some(41),
            data: &data,
        },
        &[],
        &[],
    )
    .unwrap();
    m.check(&append, &Reply::Stored { cas: None }, &[], &[]).unwrap();
    assert_eq!(m.item(1).unwrap().cas, None);
    // Touch forgets it too.
    step(
        &mut m,
        1,
        Op::Set,
        a,
        Some(stream(1, 5)),
        Reply::Stored { cas: Some(50) },
    )
    .unwrap();
    step(&mut m, 1, Op::Touch, a, None, Reply::Touched).unwrap();
    step(&mut m, 1, Op::Cas, args(1, 50, 0), Some(stream(1, 5)), Reply::Exists).unwrap();
}

#[test]
fn incr_and_decr() {
    let mut m = Model::new();
    let a = args(3, 0, 0);
    step(&mut m, 1, Op::Delete, a, None, Reply::Deleted).unwrap();
    step(
        &mut m,
        1,
        Op::Set,
        a,
        Some(Part::number(10)),
        Reply::Stored { cas: None },
    )
    .unwrap();
    step(&mut m, 1, Op::Incr, args(0, 0, 5), None, Reply::Number(15)).unwrap();
    assert!(step(&mut m, 1, Op::Incr, args(0, 0, 5), None, Reply::Number(21)).is_err());
    // The failed check above was still applied: the model says 20 now.
    step(&mut m, 1, Op::Decr, args(0, 0, 100), None, Reply::Number(0)).unwrap();
    // "0" stored in place of "20" may read "0 " or "0"; a read settles it.
    let e = m.apply(1, Op::Get, &a, None).unwrap();
    m.check(
        &e,
        &Reply::Hit {
            flags: Some(3),
            cas: None,
            data: b"0 ",
        },
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(
        m.item(1).unwrap().parts,
        vec![Part::Number {
            n: 0,
            min_len: 2,
            max_len: 2
        }]
    );
    // Wrapping at 2^64, with a memcached that may refuse numbers of 2^63 and more: the key is
    // then unknown again.
    step(
        &mut m,
        1,
        Op::Set,
        a,
        Some(Part::number(u64::MAX - 1)),
        Reply::Stored { cas: None },
    )
    .unwrap();
    let e = m.apply(1, Op::Incr, &args(0, 0, 3), None).unwrap();
    assert_eq!(e, Expect::NumberOrRefusal(1));
    assert!(m.check(&e, &Reply::Number(1), &[], &[]).is_ok());
    assert!(m.check(&e, &Reply::NonNumeric, &[], &[]).is_ok());
    assert!(m.check(&e, &Reply::Number(2), &[], &[]).is_err());
    assert!(!m.is_known(1));
    step(&mut m, 1, Op::Delete, a, None, Reply::Deleted).unwrap();
    // Below 2^63 the number is certain; a shorter result is padded in place, or not.
    step(
        &mut m,
        1,
        Op::Set,
        a,
        Some(Part::number(1_000_000)),
        Reply::Stored { cas: None },
    )
    .unwrap();
    step(&mut m, 1, Op::Decr, args(0, 0, 999_999), None, Reply::Number(1)).unwrap();
    let e = m.apply(1, Op::Get, &a, None).unwrap();
    let padded = format!("1{}", " ".repeat(6));
    m.check(
        &e,
        &Reply::Hit {
            flags: Some(3),
            cas: None,
            data: padded.as_bytes(),
        },
        &[],
        &[],
    )
    .unwrap();
    // Not a number.
    step(&mut m, 1, Op::Set, a, Some(stream(9, 30)), Reply::Stored { cas: None }).unwrap();
    step(&mut m, 1, Op::Incr, args(0, 0, 1), None, Reply::NonNumeric).unwrap();
}

#[test]
fn what_counts_as_a_number() {
    let n = |parts: &[Part]| numeric(parts);
    assert_eq!(n(&[Part::number(5)]), Numeric::Number(5));
    assert_eq!(n(&[]), Numeric::NotANumber);
    assert_eq!(n(&[Part::number(12), Part::number(34)]), Numeric::Number(1234));
    // Find stream values that start with a letter, with digits then a letter, or are all digits.
    let starts = |pred: &dyn Fn(&[u8]) -> bool, len| {
        (0..10_000u64)
            .map(|s| stream(s, len))
            .find(|p| pred(&bytes(&[*p])))
            .unwrap()
    };
    let letter = starts(&|b| b[0].is_ascii_alphabetic(), 8);
    assert_eq!(n(&[letter]), Numeric::NotANumber);
    let digit_then_letter = starts(&|b| b[0].is_ascii_digit() && b[1].is_ascii_alphabetic(), 8);
    assert_eq!(n(&[digit_then_letter]), Numeric::NotANumber);
    assert_eq!(n(&[Part::number(7), letter]), Numeric::NotANumber);
    let all_digits = starts(&|b| b.iter().all(u8::is_ascii_digit), 2);
    let text = bytes(&[all_digits]);
    let value: u64 = std::str::from_utf8(&text).unwrap().parse().unwrap();
    assert_eq!(n(&[all_digits]), Numeric::Number(value));
    let dash = starts(&|b| b[0] == b'-', 4);
    assert_eq!(n(&[dash]), Numeric::Unsure);
    let padded = Part::Number {
        n: 5,
        min_len: 3,
        max_len: 3,
    };
    assert_eq!(n(&[padded, letter]), Numeric::Unsure, "\"5  \" then letters");
    assert_eq!(
        n(&[Part::number(u64::MAX), Part::number(9)]),
        Numeric::Unsure,
        "past 2^64"
    );
}

#[test]
fn multi_gets_are_checked_key_by_key() {
    let mut m = Model::new();
    let a = args(4, 0, 0);
    for k in 1..=3 {
        step(&mut m, k, Op::Delete, a, None, Reply::NotFound).unwrap();
    }
    step(&mut m, 1, Op::Set, a, Some(stream(1, 3)), Reply::Stored { cas: None }).unwrap();
    step(&mut m, 3, Op::Set, a, Some(stream(3, 2)), Reply::Stored { cas: None }).unwrap();
    assert_eq!(m.apply_multi(&[1, 2, 99]), None, "key 99 is unknown");
    let e = m.apply_multi(&[1, 2, 3]).unwrap();
    let mut buf = bytes(&[stream(1, 3)]);
    buf.extend(bytes(&[stream(3, 2)]));
    let hit = |pos, data: std::ops::Range<usize>| MultiHit {
        pos,
        flags: Some(4),
        cas: None,
        data,
    };
    let good = [hit(0, 0..3), hit(2, 3..5)];
    assert_eq!(m.check(&e, &Reply::Multi, &good, &buf), Ok(()));
    let err = m.check(&e, &Reply::Multi, &good[..1], &buf).unwrap_err();
    assert!(err.contains("key 3 of the multi-get: a miss"), "{err}");
    let err = m
        .check(&e, &Reply::Multi, &[hit(0, 0..3), hit(1, 3..5), hit(2, 3..5)], &buf)
        .unwrap_err();
    assert!(err.contains("not stored"), "{err}");
    let err = m
        .check(&e, &Reply::Multi, &[hit(0, 0..3), hit(2, 0..2)], &buf)
        .unwrap_err();
    assert!(err.contains("wrong value"), "{err}");
}
