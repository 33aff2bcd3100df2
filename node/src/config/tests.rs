use clap::Parser;

use super::*;

fn args(flags: &[&str]) -> Args {
    let mut all = vec!["riven-node"];
    all.extend_from_slice(flags);
    Args::parse_from(all)
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("riven.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn nothing_set_is_the_defaults() {
    let c = load_from(&args(&[]), env(&[])).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.server.port, 11211);
    assert_eq!(c.limits.max_item_size, Size(1 << 20));
    assert_eq!(c.mode(), "l1-only");
}

/// Each layer overrides the one below it, key by key: file, then nested environment keys, then
/// flags; a key no later layer sets keeps the earlier layer's value.
#[test]
fn file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "[server]\nport = 22222\nconn_limit = 77\nthreads = 3\n\n[l2]\npath = \"/tmp/l2\"\nmax_bytes = \"2g\"\n\n\
         [l1.memcached]\nendpoint = \"127.0.0.1:11311\"\ntimeout_ms = 900\n",
    );
    let c = load_from(&args(&["--config", &path]), env(&[])).unwrap();
    assert_eq!((c.server.port, c.server.conn_limit, c.server.threads), (22222, 77, 3));
    assert_eq!(c.l2.max_bytes, Size(2 << 30));
    assert_eq!(c.l1.memcached.endpoint.as_deref(), Some("127.0.0.1:11311"));
    assert_eq!(c.mode(), "l1-l2");

    let e = env(&[
        ("RIVEN_L2__MAX_BYTES", "512m"),
        ("RIVEN_SERVER__CONN_LIMIT", "88"),
        ("RIVEN_L1__MEMCACHED__TIMEOUT_MS", "700"),
        ("UNRELATED", "x"),
    ]);
    let c = load_from(&args(&["--config", &path]), e.clone()).unwrap();
    assert_eq!(c.l2.max_bytes, Size(512 << 20));
    assert_eq!(c.server.conn_limit, 88);
    assert_eq!(c.l1.memcached.timeout_ms, 700);
    assert_eq!(c.server.port, 22222, "the file's value where the environment sets none");

    let flags = args(&["--config", &path, "-p", "1", "-c", "99", "--l2-max-bytes", "8m", "-vv"]);
    let c = load_from(&flags, e).unwrap();
    assert_eq!((c.server.port, c.server.conn_limit), (1, 99));
    assert_eq!(c.l2.max_bytes, Size(8 << 20));
    assert_eq!(
        c.l1.memcached.timeout_ms, 700,
        "the environment's value where no flag is given"
    );
    assert_eq!(c.log.verbose, 2);
}

/// memcached's flags keep their meaning.
#[test]
fn memcached_style_flags() {
    let flags = args(&[
        "-p", "12345", "-l", "0.0.0.0", "-m", "128", "-I", "2m", "-t", "2", "-c", "10",
    ]);
    let c = load_from(&flags, env(&[])).unwrap();
    assert_eq!(c.server.port, 12345);
    assert_eq!(c.server.listen, "0.0.0.0");
    assert_eq!(c.memory_bytes(), 128 << 20);
    assert_eq!(c.item_size_max(), 2 << 20);
    assert_eq!((c.server.threads, c.server.conn_limit), (2, 10));
    let flags = args(&[
        "--l1-memcached",
        "unix:/tmp/m",
        "--l1-max-buffered",
        "8m",
        "--l1-connections",
        "3",
    ]);
    let c = load_from(&flags, env(&[])).unwrap();
    assert_eq!(c.l1.memcached.max_buffered, Size(8 << 20));
    assert_eq!(c.l1.memcached.connections, 3);
    assert_eq!(c.l1.memcached.endpoint.as_deref(), Some("unix:/tmp/m"));
}

/// A value out of range names its key, its value and the allowed range.
#[test]
fn validation_names_the_key_and_the_range() {
    let err = load_from(&args(&["-I", "129m", "-m", "1024"]), env(&[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid limits.max_item_size (-I) = 129m: must be from 1k to 128m"
    );
    let err = load_from(&args(&[]), env(&[("RIVEN_SERVER__THREADS", "0")])).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                key: "server.threads (-t)",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "invalid server.threads (-t) = 0: must be from 1 to 1024"
    );
    let err = load_from(&args(&["--l2-path", "/tmp/x", "--l2-max-bytes", "1m"]), env(&[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid l2.max_bytes (--l2-max-bytes) = 1m: must be at least 4m"
    );
    let err = load_from(&args(&["--chunk-size", "100"]), env(&[])).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid l1.memory.chunk_size = 100"),
        "{err}"
    );
    // -I may take at most half of the embedded store, but over memcached -m holds no items.
    assert!(load_from(&args(&["-I", "64m", "-m", "64"]), env(&[])).is_err());
    assert!(load_from(
        &args(&["-I", "64m", "-m", "64", "--l1-memcached", "127.0.0.1:1"]),
        env(&[])
    )
    .is_ok());
}

/// Unknown keys, malformed values and missing files are errors that say what is wrong.
#[test]
fn bad_layers_are_clear_errors() {
    let err = load_from(&args(&[]), env(&[("RIVEN_PORT", "1")])).unwrap_err();
    assert!(matches!(err, ConfigError::Load(_)));
    assert!(err.to_string().contains("port"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "[l2]\nmax_bytes = \"lots\"\n");
    let err = load_from(&args(&["--config", &path]), env(&[])).unwrap_err();
    assert!(err.to_string().contains("not a size"), "{err}");
    let path = file(&dir, "[server]\nprot = 1\n");
    let err = load_from(&args(&["--config", &path]), env(&[])).unwrap_err();
    assert!(err.to_string().contains("prot"), "{err}");
    let err = load_from(&args(&["--config", "/nonexistent/riven.toml"]), env(&[])).unwrap_err();
    assert!(err.to_string().contains("riven.toml"), "{err}");
    let err = load_from(&args(&["-I", "1q"]), env(&[])).unwrap_err();
    assert!(err.to_string().contains("not a size"), "{err}");
}

/// What the log shows of a configuration: everything, secrets redacted.
#[test]
fn secrets_are_redacted_in_the_logged_config() {
    #[derive(Debug, Deserialize)]
    struct WithSecret {
        #[allow(dead_code)]
        user: String,
        #[allow(dead_code)]
        password: Secret,
    }
    let parsed: WithSecret = ::config::Config::builder()
        .set_override("user", "riven")
        .unwrap()
        .set_override("password", "hunter2")
        .unwrap()
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    let shown = format!("{parsed:?}");
    assert!(shown.contains("riven") && shown.contains("<redacted>"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(parsed.password.expose(), "hunter2");
    let logged = format!("{:?}", load_from(&args(&["-I", "2m"]), env(&[])).unwrap());
    assert!(logged.contains("max_item_size: 2m"), "{logged}");
}
