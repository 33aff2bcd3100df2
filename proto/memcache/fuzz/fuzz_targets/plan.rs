//! Fuzzes the pipeline planner's scans (`riven_memcache::plan`). Invariants checked on every
//! input, read as text and as binary, with and without writes, under two item-size limits:
//! - no scan panics; a run has 2 to `MAX_RUN` requests that tile its bytes, within the input;
//! - every write of a run (and every binary request) is what the full parsers measure;
//! - every text read of a run is one whole line;
//! - the light `ms` scan accepts only what the full `ms` check accepts, with the same length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riven_memcache::plan::{meta_set_len, nth_request, parsed_len, plain_ms_len, Kind, Proto, Run, MAX_RUN};

fuzz_target!(|data: &[u8]| {
    for max in [1 << 20, 64] {
        let size_ok = move |key: &[u8], flags: u32, len: usize| riven_memcache::item_size_ok(max, key.len(), flags, len);
        for p in [Proto::Text, Proto::Binary] {
            for write_max in [None, Some(4), Some(1 << 20)] {
                check_run(p, data, write_max, &size_ok);
            }
        }
        check_ms(data, &size_ok);
    }
});

fn check_run(p: Proto, buf: &[u8], write_max: Option<usize>, size_ok: &dyn Fn(&[u8], u32, usize) -> bool) {
    let Some(run) = Run::plan(p, buf, write_max, size_ok) else {
        return;
    };
    assert!(run.n >= 2 && run.n <= MAX_RUN);
    assert_eq!(run.ends[run.n - 1], run.at);
    assert!(run.at <= buf.len());
    for i in 0..run.n {
        let req = nth_request(buf, &run.ends[..run.n], i);
        assert!(!req.is_empty());
        if run.kinds[i] == Kind::Write || p == Proto::Binary {
            assert_eq!(parsed_len(p, req, size_ok), Some(req.len()));
        } else {
            assert_eq!(riven_memcache::find_line(req).map(|(_, next)| next), Some(req.len()));
        }
        if run.kinds[i] == Kind::Write {
            assert!(write_max.is_some());
        }
    }
}

fn check_ms(buf: &[u8], size_ok: &dyn Fn(&[u8], u32, usize) -> bool) {
    let Some((line_end, next)) = riven_memcache::find_line(buf) else {
        return;
    };
    for write_max in [4, 1 << 20] {
        if let Some(n) = plain_ms_len(buf, line_end, next, write_max, size_ok) {
            assert_eq!(meta_set_len(buf, line_end, next, write_max, size_ok), Some(n));
        }
    }
}
