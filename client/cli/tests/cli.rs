//! The `riven` binary against real memcached processes: two zones, one memcached each, on free
//! loopback ports, with the topology in a temporary file.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use riven_client::{Rings, Topology};

/// The longest a test waits for memcached to listen.
const PATIENCE: Duration = Duration::from_secs(10);

/// A memcached process on a loopback port, killed (and reaped) when dropped.
struct Memcached {
    child: Child,
    port: u16,
}

impl Memcached {
    fn start() -> Memcached {
        // Another process can take the port between the probe and memcached's bind; memcached
        // then exits at once, and a fresh port is tried.
        for _ in 0..5 {
            if let Some(memcached) = Memcached::try_start(free_port()) {
                return memcached;
            }
        }
        panic!("memcached did not start on any of 5 free ports");
    }

    fn try_start(port: u16) -> Option<Memcached> {
        let mut cmd = Command::new("/usr/bin/memcached");
        // memcached refuses to run as root unless told which user to be.
        if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            cmd.args(["-u", "root"]);
        }
        let mut child = cmd
            .args(["-p", &port.to_string(), "-U", "0", "-l", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached starts (/usr/bin/memcached)");
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if child.try_wait().expect("memcached's status").is_some() {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "memcached did not listen on {port} in {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(Memcached { child, port })
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Two zones, `a` (local) and `b`, one memcached each, and their topology file.
struct Cluster {
    a: Memcached,
    b: Option<Memcached>,
    b_addr: String,
    _dir: tempfile::TempDir,
    topology: PathBuf,
}

impl Cluster {
    fn start() -> Cluster {
        let (a, b) = (Memcached::start(), Memcached::start());
        let b_addr = b.addr();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let topology = write_topology(dir.path(), &[("a", &a.addr()), ("b", &b_addr)]);
        Cluster {
            a,
            b: Some(b),
            b_addr,
            _dir: dir,
            topology,
        }
    }

    /// Runs `riven --topology FILE args...`.
    fn riven(&self, args: &[&str]) -> Output {
        riven(&self.topology, args, None)
    }

    /// Kills zone b's memcached.
    fn kill_b(&mut self) {
        drop(self.b.take());
    }
}

fn write_topology(dir: &Path, zones: &[(&str, &str)]) -> PathBuf {
    let mut text = String::from("cluster = \"test\"\nlocal_zone = \"a\"\n\n[zones]\n");
    for (zone, addr) in zones {
        text.push_str(&format!("{zone} = [\"{addr}\"]\n"));
    }
    let path = dir.join("topology.toml");
    std::fs::write(&path, text).expect("write the topology");
    path
}

/// Runs the binary with a 1 s timeout and `stdin` (nothing when `None`) as its input.
fn riven(topology: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_riven"))
        .arg("--topology")
        .arg(topology)
        .args(["--timeout-ms", "1000"])
        .args(args)
        .env_remove("RIVEN_TOPOLOGY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the riven binary starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("riven finishes")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

#[test]
fn set_then_get_round_trips_value_and_flags() {
    let cluster = Cluster::start();
    let set = cluster.riven(&["set", "greeting", "hello world", "--flags", "42", "--ttl", "300"]);
    assert_exit(&set, 0);
    assert_eq!(stdout(&set), "STORED\n");

    let get = cluster.riven(&["get", "greeting"]);
    assert_exit(&get, 0);
    assert_eq!(get.stdout, b"hello world", "the value, byte for byte, nothing added");
    assert_eq!(stderr(&get), "flags 42\n");

    // A local write reaches zone a only: zone b misses.
    let in_b = cluster.riven(&["--zone", "b", "get", "greeting"]);
    assert_exit(&in_b, 1);
}

#[test]
fn set_reads_a_binary_value_from_stdin() {
    let cluster = Cluster::start();
    let value: Vec<u8> = (0..=255u8).chain(*b"\r\nEND\r\n").collect();
    let set = riven(&cluster.topology, &["set", "blob", "-"], Some(&value));
    assert_exit(&set, 0);
    let get = cluster.riven(&["get", "blob"]);
    assert_exit(&get, 0);
    assert_eq!(get.stdout, value);
    assert_eq!(stderr(&get), "flags 0\n");
}

#[test]
fn set_to_all_zones_names_each_zone() {
    let cluster = Cluster::start();
    let set = cluster.riven(&["set", "everywhere", "v", "--all-zones"]);
    assert_exit(&set, 0);
    let text = stdout(&set);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "STORED".to_owned(),
            format!("a {} stored", cluster.a.addr()),
            format!("b {} stored", cluster.b_addr),
        ]
    );
    for zone in ["a", "b"] {
        let get = cluster.riven(&["--zone", zone, "get", "everywhere"]);
        assert_exit(&get, 0);
        assert_eq!(get.stdout, b"v", "zone {zone}");
    }
}

#[test]
fn set_to_all_zones_fails_naming_the_zone_down() {
    let mut cluster = Cluster::start();
    cluster.kill_b();
    let set = cluster.riven(&["set", "k", "v", "--all-zones"]);
    assert_exit(&set, 2);
    let err = stderr(&set);
    assert!(err.contains("zone b") && err.contains(&cluster.b_addr), "{err}");
}

#[test]
fn get_of_a_missing_key_exits_1() {
    let cluster = Cluster::start();
    let get = cluster.riven(&["get", "nothing-here"]);
    assert_exit(&get, 1);
    assert!(get.stdout.is_empty());
    assert_eq!(stderr(&get), "not found\n");
}

#[test]
fn delete_then_delete_again() {
    let cluster = Cluster::start();
    assert_exit(&cluster.riven(&["set", "doomed", "x"]), 0);
    let delete = cluster.riven(&["delete", "doomed"]);
    assert_exit(&delete, 0);
    assert_eq!(stdout(&delete), "DELETED\n");
    assert_exit(&cluster.riven(&["get", "doomed"]), 1);
    let again = cluster.riven(&["delete", "doomed"]);
    assert_exit(&again, 1);
    assert_eq!(stdout(&again), "NOT_FOUND\n");
}

#[test]
fn touch_present_and_missing() {
    let cluster = Cluster::start();
    assert_exit(&cluster.riven(&["set", "touchy", "x", "--ttl", "100"]), 0);
    let touch = cluster.riven(&["touch", "touchy", "1000"]);
    assert_exit(&touch, 0);
    assert_eq!(stdout(&touch), "TOUCHED\n");
    let missing = cluster.riven(&["touch", "absent", "10"]);
    assert_exit(&missing, 1);
    assert_eq!(stdout(&missing), "NOT_FOUND\n");
    // A lifetime of one second ends: the item is gone once it has passed.
    assert_exit(&cluster.riven(&["touch", "touchy", "1"]), 0);
    std::thread::sleep(Duration::from_millis(2500));
    assert_exit(&cluster.riven(&["get", "touchy"]), 1);
}

#[test]
fn where_matches_the_rings() {
    // Several nodes per zone, none running: `where` must not need them.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let text = "cluster = \"test\"\nlocal_zone = \"b\"\nvnodes = 64\n\n[zones]\n\
                a = [\"10.0.0.1:11211\", \"10.0.0.2:11211\", \"10.0.0.3:11211\"]\n\
                b = [\"10.0.1.1:11211\", \"10.0.1.2:11211\"]\n";
    let path = dir.path().join("topology.toml");
    std::fs::write(&path, text).expect("write the topology");
    let rings = Rings::new(&Topology::from_toml_str(text).expect("valid topology"));
    for key in ["user:1", "user:2", "session:abc", "k"] {
        let output = riven(&path, &["where", key], None);
        assert_exit(&output, 0);
        let expected: Vec<String> = rings
            .zones()
            .map(|(zone, ring)| {
                let node = ring.node_for(key.as_bytes()).expect("an owner");
                let mark = if zone == "b" { " (local)" } else { "" };
                format!("{zone} {node}{mark}")
            })
            .collect();
        assert_eq!(stdout(&output).lines().collect::<Vec<_>>(), expected, "key {key}");
    }
    // `--zone` moves the mark.
    let moved = riven(&path, &["--zone", "a", "where", "k"], None);
    assert_exit(&moved, 0);
    assert!(stdout(&moved).lines().next().is_some_and(|l| l.ends_with(" (local)")));
}

/// The stats table's header and the row named `name`, split into cells.
fn row(table: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let split = |line: &str| {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    let mut lines = table.lines();
    let header = split(lines.next().expect("a header"));
    let row = lines
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"));
    (header, split(row))
}

#[test]
fn stats_has_a_column_per_node_and_survives_a_dead_one() {
    let mut cluster = Cluster::start();
    assert_exit(&cluster.riven(&["set", "counted", "x"]), 0);
    let (a, b) = (format!("a/{}", cluster.a.addr()), format!("b/{}", cluster.b_addr));

    let stats = cluster.riven(&["stats"]);
    assert_exit(&stats, 0);
    let (header, items) = row(&stdout(&stats), "curr_items");
    assert_eq!(header, ["stat", a.as_str(), b.as_str()]);
    assert_eq!(items, ["curr_items", "1", "0"], "the local write is in zone a only");

    let filtered = cluster.riven(&["stats", "--filter", "curr_"]);
    assert_exit(&filtered, 0);
    let text = stdout(&filtered);
    assert!(text.lines().skip(1).all(|l| l.starts_with("curr_")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("curr_items ")), "{text}");

    cluster.kill_b();
    let stats = cluster.riven(&["stats", "--filter", "curr_items"]);
    assert_exit(&stats, 2);
    let (header, items) = row(&stdout(&stats), "curr_items");
    assert_eq!(header, ["stat", a.as_str(), b.as_str()]);
    assert_eq!(items[..2], ["curr_items", "1"]);
    assert!(items[2].starts_with("unreachable: "), "{items:?}");
    let err = stderr(&stats);
    assert!(err.contains(&b) && err.contains("unreachable"), "{err}");
}

#[test]
fn stats_gives_up_on_a_silent_node_after_the_timeout() {
    let a = Memcached::start();
    // Accepts connections (the kernel does, from the backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let silent_addr = silent.local_addr().expect("its address").to_string();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_topology(dir.path(), &[("a", &a.addr()), ("b", &silent_addr)]);
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_riven"))
        .arg("--topology")
        .arg(&path)
        .args(["--timeout-ms", "300", "stats", "--filter", "pid"])
        .output()
        .expect("riven runs");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_exit(&output, 2);
    let (_, pid) = row(&stdout(&output), "pid");
    assert!(pid[1].parse::<u32>().is_ok(), "{pid:?}");
    assert_eq!(pid[2], "unreachable: no answer within 300 ms");
}

#[test]
fn a_bad_key_fails_before_any_io() {
    // No memcached at all: the key check must come first.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_topology(dir.path(), &[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]);
    for args in [
        &["get", "has space"][..],
        &["set", "has space", "v"],
        &["delete", "has space"],
        &["touch", "has space", "1"],
        &["where", "has space"],
    ] {
        let output = riven(&path, args, None);
        assert_exit(&output, 2);
        let err = stderr(&output);
        assert!(
            err.starts_with("riven: ") && err.contains("\"has space\": invalid key"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(!err.contains("127.0.0.1"), "no node was tried: {err}");
    }
}

#[test]
fn a_missing_topology_file_is_named() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("no-such-topology.toml");
    let output = riven(&path, &["get", "k"], None);
    assert_exit(&output, 2);
    let err = stderr(&output);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_topology_can_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_topology(dir.path(), &[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]);
    let output = Command::new(env!("CARGO_BIN_EXE_riven"))
        .args(["where", "k"])
        .env("RIVEN_TOPOLOGY", &path)
        .output()
        .expect("riven runs");
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).lines().count(), 2);
}
