//! The seam and the lifecycle, end to end over real sockets, a real memcached and a real L2:
//! a scripted hook sees every successful mutation in every mode (and nothing that failed), and
//! the ordered shutdown flushes it only after the last connection drained.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use common::{exchange, proxy_settings, send, test_settings, tiered_settings, Memcached};
use riven_node::config::Config;
use riven_node::engine::{Change, Hook, Mutation, Origin};
use riven_node::model::{Backend, Expiry, Mode, StoreReq};
use riven_node::node::Node;
use riven_node::state::ServerState;

/// What the scripted hook saw: each mutation, and at flush time how many connections were open
/// and how many mutations it had seen.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(Origin, String, Change)>>,
    flushes: Mutex<Vec<(u64, usize)>>,
    /// Weak: a hook must not keep the node's tiers (and the L2's directory lock) alive.
    state: Mutex<Option<Weak<ServerState>>>,
}

impl Hook for Recorder {
    fn mutated(&self, m: &Mutation<'_>) {
        let key = String::from_utf8_lossy(m.key).into_owned();
        self.seen.lock().unwrap().push((m.origin, key, m.change));
    }

    fn flush(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let open = self
                .state
                .lock()
                .unwrap()
                .as_ref()
                .and_then(Weak::upgrade)
                .map_or(u64::MAX, |s| s.stats.curr_connections.load(Ordering::Relaxed));
            let seen = self.seen.lock().unwrap().len();
            self.flushes.lock().unwrap().push((open, seen));
        })
    }
}

fn start(settings: Config) -> (Node, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let node = Node::start_with(settings, vec![rec.clone() as Arc<dyn Hook>]).expect("start node");
    *rec.state.lock().unwrap() = Some(Arc::downgrade(&node.state));
    (node, rec)
}

/// Commands that succeed, commands that fail, and reads: only the successes reach the hook,
/// in order, with what they changed.
fn script() -> Vec<u8> {
    [
        "set a 0 0 1\r\n1\r\n",
        "add a 0 0 1\r\n2\r\n", // fails: exists
        "append a 0 0 1\r\n0\r\n",
        "incr a 5\r\n",
        "incr nope 1\r\n", // fails: not found
        "get a\r\n",       // a read changes nothing
        "touch a 100\r\n",
        "gat 200 a\r\n",
        "gat 200 missing\r\n", // a miss touches nothing
        "delete a\r\n",
        "delete a\r\n", // fails: not found
        "ms m 2 T0\r\nhi\r\n",
        "md m I\r\n",
        "flush_all\r\n",
    ]
    .concat()
    .into_bytes()
}

fn expected(origin: Origin) -> Vec<(Origin, String, Change)> {
    let e = |k: &str, c: Change| (origin, k.to_string(), c);
    vec![
        e(
            "a",
            Change::Stored {
                mode: Mode::Set,
                cas: 0,
            },
        ),
        e(
            "a",
            Change::Stored {
                mode: Mode::Append,
                cas: 0,
            },
        ),
        e("a", Change::Counted { value: 15, cas: 0 }),
        e("a", Change::Touched { expiry: Expiry(0) }),
        e("a", Change::Touched { expiry: Expiry(0) }),
        e("a", Change::Deleted),
        e(
            "m",
            Change::Stored {
                mode: Mode::Set,
                cas: 0,
            },
        ),
        e("m", Change::Invalidated),
        e("", Change::Flushed { delay: 0 }),
    ]
}

/// CAS values and expiries differ per mode and run; the rest must match exactly.
fn normalized(seen: &[(Origin, String, Change)]) -> Vec<(Origin, String, Change)> {
    seen.iter()
        .map(|(o, k, c)| {
            let c = match *c {
                Change::Stored { mode, .. } => Change::Stored { mode, cas: 0 },
                Change::Counted { value, .. } => Change::Counted { value, cas: 0 },
                Change::Touched { .. } => Change::Touched { expiry: Expiry(0) },
                other => other,
            };
            (*o, k.clone(), c)
        })
        .collect()
}

fn check_mode(name: &str, settings: Config) {
    let (node, rec) = start(settings);
    let replies = exchange(node.addr, &[send(script())]);
    let text = String::from_utf8_lossy(&replies);
    assert!(
        text.starts_with("STORED\r\nNOT_STORED\r\nSTORED\r\n15\r\nNOT_FOUND\r\n"),
        "{name}: {text}"
    );
    assert_eq!(
        normalized(&rec.seen.lock().unwrap()),
        expected(Origin::Client),
        "{name}"
    );
    // The batch listener's mutations carry their origin.
    rec.seen.lock().unwrap().clear();
    let batch = node.batch_addr.expect("batch listener");
    let replies = exchange(batch, &[send("set b 0 0 1\r\nx\r\n")]);
    assert_eq!(replies, b"STORED\r\n", "{name}");
    let seen = normalized(&rec.seen.lock().unwrap());
    assert_eq!(
        seen,
        vec![(
            Origin::Batch,
            "b".to_string(),
            Change::Stored {
                mode: Mode::Set,
                cas: 0
            }
        )],
        "{name}"
    );
    // The replica-apply view's mutations are marked, so a publisher skips them.
    rec.seen.lock().unwrap().clear();
    let replica = node.state.engine.replica_view();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let req = StoreReq {
        mode: Mode::Set,
        key: b"r",
        flags: 0,
        expiry: Expiry::NEVER,
        value: b"from another zone",
        cas: None,
        invalidate: false,
    };
    let stored = rt.block_on(replica.store(&req)).expect("replica store");
    assert!(
        matches!(stored, riven_node::model::StoreOutcome::Stored { .. }),
        "{name}"
    );
    let seen = normalized(&rec.seen.lock().unwrap());
    assert_eq!(
        seen,
        vec![(
            Origin::Replica,
            "r".to_string(),
            Change::Stored {
                mode: Mode::Set,
                cas: 0
            }
        )],
        "{name}"
    );
    node.stop();
    // Flushed once, at shutdown.
    assert_eq!(rec.flushes.lock().unwrap().len(), 1, "{name}");
}

fn with_batch(settings: Config) -> Config {
    common::with(settings, |c| c.server.batch_port = Some(0))
}

#[test]
fn the_hook_sees_every_successful_mutation_in_every_mode() {
    check_mode("embedded", with_batch(test_settings()));
    let dir = tempfile::tempdir().unwrap();
    check_mode("embedded over l2", with_batch(tiered_settings(dir.path())));
    let mc = Memcached::start(&["-m", "64"]);
    check_mode("over memcached", with_batch(proxy_settings(&mc)));
    let dir = tempfile::tempdir().unwrap();
    check_mode(
        "over memcached and l2",
        with_batch(common::with_l2(proxy_settings(&mc), dir.path())),
    );
}

/// A connection in the middle of a request when shutdown starts gets its reply; the hook is
/// flushed after that connection closed, with its mutation already seen; then shutdown returns.
fn check_ordered_shutdown(name: &str, settings: Config) {
    let (node, rec) = start(settings);
    let mut conn = TcpStream::connect(node.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(b"set k 0 0 5\r\nhel").unwrap();
    // Wait until the node has read the first part (the connection is registered).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while node.state.stats.curr_connections.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "{name}: connection not seen");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    let token = node.shutdown_token();
    let stopper = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(node.shutdown());
    });
    token.cancel();
    std::thread::sleep(Duration::from_millis(100));
    // Not flushed yet: the connection is still open, mid-request.
    assert!(
        rec.flushes.lock().unwrap().is_empty(),
        "{name}: flushed before the drain"
    );
    conn.write_all(b"lo\r\n").unwrap();
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).unwrap();
    assert_eq!(
        reply, b"STORED\r\n",
        "{name}: the request in flight is answered, then the node hangs up"
    );
    stopper.join().unwrap();
    let flushes = rec.flushes.lock().unwrap().clone();
    assert_eq!(flushes.len(), 1, "{name}");
    let (open_at_flush, seen_at_flush) = flushes[0];
    assert_eq!(open_at_flush, 0, "{name}: flushed while a connection was open");
    assert_eq!(
        seen_at_flush, 1,
        "{name}: the drained connection's write came before the flush"
    );
}

#[test]
fn shutdown_drains_then_flushes_the_hooks_then_returns() {
    check_ordered_shutdown("embedded", test_settings());
    let mc = Memcached::start(&["-m", "64"]);
    check_ordered_shutdown("over memcached", proxy_settings(&mc));
}

/// What the L2 holds is synced at shutdown and there after a restart on the same directory.
#[test]
fn shutdown_closes_the_l2_and_a_restart_finds_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = start(tiered_settings(dir.path()));
    let replies = exchange(node.addr, &[send("set kept 0 0 4\r\ndata\r\n")]);
    assert_eq!(replies, b"STORED\r\n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(node.shutdown());
    let (node, _) = start(tiered_settings(dir.path()));
    let replies = exchange(node.addr, &[send("get kept\r\n")]);
    assert_eq!(replies, b"VALUE kept 0 4\r\ndata\r\nEND\r\n");
}

/// The binary refuses a bad configuration with a non-zero status and a message naming the key.
#[test]
fn a_bad_config_exits_non_zero_naming_the_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riven-node"))
        .args(["-p", "0", "-t", "0"])
        .env("RIVEN_L2__MAX_BYTES", "1g")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.threads (-t) = 0: must be from 1 to 1024"), "{err}");
}

/// `main` goes through the same ordered shutdown on SIGTERM and exits 0, logging its effective
/// configuration at start.
#[test]
fn the_binary_serves_then_stops_cleanly_on_sigterm() {
    let port = common::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_riven-node"))
        .args(["-p", &port.to_string(), "-t", "1"])
        .env("RIVEN_L1__MEMORY__LIMIT_MB", "16")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        exchange(addr, &[send("set a 0 0 1\r\nx\r\nget a\r\n")]),
        b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("effective configuration") && log.contains("limit_mb: 16"),
        "{log}"
    );
    assert!(log.contains("SIGTERM") && log.contains("stopped"), "{log}");
}
