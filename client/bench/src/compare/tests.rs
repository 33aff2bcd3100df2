use super::report::cpu_us_per_op;
use super::*;

pub(super) fn sample(ops: f64, p50: f64, p99: f64) -> RunSample {
    RunSample {
        ops_per_sec: ops,
        p50_us: p50,
        p99_us: p99,
        p999_us: p99 * 2.0,
        hit_ratio: 1.0,
        gen_cpu: 0.5,
        server_us_per_op: None,
        dep_us_per_op: None,
    }
}

pub(super) fn setting() -> SettingResult {
    SettingResult {
        client_threads: 1,
        protocol: Protocol::Text,
        pipeline: 16,
        value_size: 100,
        keys: 1000,
        targets: vec![
            TargetResult {
                name: "memcached".into(),
                runs: vec![
                    sample(100.0, 10.0, 50.0),
                    sample(120.0, 12.0, 40.0),
                    sample(110.0, 11.0, 60.0),
                ],
                ..TargetResult::default()
            },
            TargetResult {
                name: "riven-node".into(),
                runs: vec![
                    sample(99.0, 9.0, 66.0),
                    sample(88.0, 8.0, 55.0),
                    sample(500.0, 7.0, 44.0),
                ],
                ..TargetResult::default()
            },
        ],
    }
}

#[test]
fn medians_and_ratios_against_the_first_target() {
    let mut s = setting();
    s.finish();
    let (m, n) = (&s.targets[0], &s.targets[1]);
    assert_eq!(
        (m.ops_per_sec, m.p50_us, m.p99_us),
        (Some(110.0), Some(11.0), Some(50.0))
    );
    assert_eq!(m.ops_ratio, Some(1.0));
    assert_eq!(m.p99_ratio, Some(1.0));
    // The outlier round (500) does not move the median.
    assert_eq!(n.ops_per_sec, Some(99.0));
    assert_eq!(n.ops_ratio, Some(0.9));
    // Round by round: 99/100, 88/120, 500/110; the median is the first.
    assert_eq!(n.round_ratio, Some(0.99));
    assert_eq!(m.round_ratio, Some(1.0));
    assert_eq!(n.p99_ratio, Some(55.0 / 50.0));
    assert!((m.spread.unwrap() - 20.0 / 110.0).abs() < 1e-9);
}

#[test]
fn server_cpu_per_operation() {
    // 300 ticks of 10 ms over 600,000 operations: 3 s / 600,000 = 5 µs each.
    assert_eq!(cpu_us_per_op(Some(300), 100, 600_000), Some(5.0));
    // One tick, at 1000 ticks per second, over 4 operations: 1 ms / 4.
    assert_eq!(cpu_us_per_op(Some(1), 1000, 4), Some(250.0));
    // An idle server over a short round: no tick yet, which is a figure (0), not a missing one.
    assert_eq!(cpu_us_per_op(Some(0), 100, 1000), Some(0.0));
    // No process read, no operations, or no tick length: nothing to report.
    assert_eq!(cpu_us_per_op(None, 100, 1000), None);
    assert_eq!(cpu_us_per_op(Some(300), 100, 0), None);
    assert_eq!(cpu_us_per_op(Some(300), 0, 1000), None);
}

#[test]
fn server_cpu_medians_over_the_rounds_that_have_it() {
    let mut s = setting();
    for (r, (us, dep)) in
        s.targets[1]
            .runs
            .iter_mut()
            .zip([(Some(4.0), Some(1.0)), (Some(6.0), None), (Some(5.0), Some(2.0))])
    {
        r.server_us_per_op = us;
        r.dep_us_per_op = dep;
    }
    s.targets[0].runs[1].server_us_per_op = Some(3.0);
    s.finish();
    let (m, n) = (&s.targets[0], &s.targets[1]);
    assert_eq!((n.server_us_per_op, n.dep_us_per_op), (Some(5.0), Some(1.5)));
    // The one round with a process read; no dependency, no figure.
    assert_eq!((m.server_us_per_op, m.dep_us_per_op), (Some(3.0), None));
    let mut s = setting();
    s.finish();
    assert_eq!(
        (s.targets[0].server_us_per_op, s.targets[0].dep_us_per_op),
        (None, None)
    );
}

#[test]
fn a_failed_baseline_leaves_no_ratio() {
    let mut s = setting();
    s.targets[0].runs.clear();
    s.targets[0].error = Some("closed".into());
    s.finish();
    assert_eq!(s.targets[1].ops_ratio, None);
    assert_eq!(s.targets[1].round_ratio, None);
    assert_eq!(s.targets[1].ops_per_sec, Some(99.0));
}

#[test]
fn key_space_fits_the_memory_bound() {
    let cfg = CompareConfig::new(Vec::new(), String::new());
    assert_eq!(cfg.keys_for(100), 100_000);
    assert_eq!(cfg.keys_for(100 * 1024), 2621);
    assert_eq!(cfg.value_sizes, vec![100, 100 * 1024]);
    let args = memcached("/usr/bin/memcached", ServerSettings::default()).server.args;
    assert!(args.windows(2).any(|w| w == ["-U", "0"]));
    assert!(args.windows(2).any(|w| w == ["-R", "1000"]));
    assert!(args.windows(2).any(|w| w == ["-p", "{port}"]));
    let over = riven_node_over_memcached("riven-node", ServerSettings::default(), 0);
    assert!(over.optional && over.depends_on == Some(0));
    assert!(over
        .server
        .args
        .windows(2)
        .any(|w| w == ["--l1-memcached", "127.0.0.1:{dep_port}"]));
    let l2 = riven_node_l1_l2("riven-node", ServerSettings::default());
    assert!(l2.server.args.windows(2).any(|w| w == ["--l2-path", "{tempdir}"]));
    assert!(l2.server.args.windows(2).any(|w| w == ["--l2-max-bytes", "1g"]));
}

#[test]
fn large_values_get_the_large_thread_count() {
    let cfg = CompareConfig::new(Vec::new(), String::new());
    assert_eq!(cfg.client_threads_for(100), 1);
    assert_eq!(cfg.client_threads_for(LARGE_VALUE - 1), 1);
    assert_eq!(cfg.client_threads_for(100 * 1024), 2);
}
