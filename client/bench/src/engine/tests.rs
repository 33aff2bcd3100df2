use super::*;

#[test]
fn failures_are_summarized() {
    let f = vec![
        (3, "timed out".to_string()),
        (1, "timed out".to_string()),
        (2, "wrong value".to_string()),
    ];
    assert_eq!(
        summarize_failures(f),
        vec![
            "connection 1: timed out (and 1 more connections alike)".to_string(),
            "connection 2: wrong value".to_string()
        ]
    );
}

#[test]
fn batches_hold_requests_and_their_keys() {
    let mut b = Batch::default();
    b.push(Op::Get, 7, Args::default(), None);
    b.push_multi(Op::MultiGet, [1, 2, 3], Args::default(), None);
    assert_eq!(b.len(), 2);
    assert_eq!(b.keys_of(&b.reqs[0]), &[7]);
    assert_eq!(b.keys_of(&b.reqs[1]), &[1, 2, 3]);
    assert_ne!(b.reqs[0].opaque, b.reqs[1].opaque);
    b.barrier();
    b.clear();
    assert!(b.is_empty() && !b.barrier);
}
