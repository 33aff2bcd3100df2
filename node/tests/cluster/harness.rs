//! A three-zone cluster of real `riven-node` processes on loopback, for the smart client's
//! failure tests: zone `a` runs its nodes over real memcached processes (one each), zones `b`
//! and `c` on the embedded store. Nodes can be killed, restarted on their port, frozen
//! (SIGSTOP) and thawed (SIGCONT); everything is killed when the cluster is dropped.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use riven_client::{BreakerConfig, ClientConfig, ConnConfig, NodeConfig, Topology};

/// The longest the harness waits for a process to listen.
const PATIENCE: Duration = Duration::from_secs(10);

/// The zones every cluster has, the first (`a`) over memcached.
pub const ZONES: [&str; 3] = ["a", "b", "c"];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(child: &mut Child, port: u16, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} on port {port} exited at start: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; it has not been reaped while `child` is live.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", child.id());
}

/// A process started by the harness, on a fixed loopback port so it can be restarted where its
/// clients expect it.
pub struct Proc {
    name: &'static str,
    program: String,
    args: Vec<String>,
    child: Option<Child>,
    /// The loopback port it listens on.
    pub port: u16,
}

impl Proc {
    fn start(name: &'static str, program: &str, args: Vec<String>, port: u16) -> Proc {
        let mut p = Proc {
            name,
            program: program.to_string(),
            args,
            child: None,
            port,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts ({}): {e}", self.name, self.program));
        wait_listening(&mut child, self.port, self.name);
        self.child = Some(child);
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, on the same port with the same arguments.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a live {}", self.name);
        self.spawn();
    }

    /// Freezes it (SIGSTOP): its sockets stay open and nothing answers.
    pub fn pause(&self) {
        let child = self.child.as_ref().expect("a live process");
        signal(child, libc::SIGSTOP);
        // kill(2) returns before every thread has stopped; a request sent at once could still
        // be answered. Wait until /proc shows the process stopped (state T).
        let stat = format!("/proc/{}/stat", child.id());
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            // The state follows the command name's closing parenthesis.
            let state = text.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            if state == Some('T') {
                break;
            }
            assert!(Instant::now() < deadline, "{} did not stop: {text}", self.name);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.as_ref().expect("a live process"), libc::SIGCONT);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped process is killed all the same, but thaw it so nothing lingers.
            // SAFETY: as in `signal`.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
        }
        self.kill();
    }
}

/// A riven-node on a free port; over the memcached at `l1` if given, else on the embedded
/// store. `extra` goes on its command line.
pub fn node(l1: Option<&Proc>, extra: &[&str]) -> Proc {
    let port = free_port();
    let mut args: Vec<String> = ["-l", "127.0.0.1", "-p", &port.to_string(), "-t", "1", "-m", "64"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(mc) = l1 {
        args.push("--l1-memcached".into());
        args.push(mc.addr());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Proc::start("riven-node", env!("CARGO_BIN_EXE_riven-node"), args, port)
}

/// A memcached (the Debian package) on a free port.
pub fn memcached() -> Proc {
    let port = free_port();
    let mut args: Vec<String> = ["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0", "-m", "64"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // memcached refuses to run as root unless told which user to be.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        args.push("-u".into());
        args.push("root".into());
    }
    let program = std::env::var("MEMCACHED").unwrap_or_else(|_| "memcached".into());
    Proc::start("memcached", &program, args, port)
}

/// Three zones of `per_zone` nodes each; zone `a`'s nodes run over memcached.
pub struct Cluster {
    /// Each zone's nodes, in the order of [`ZONES`]. Dropped first, before their memcached.
    pub zones: Vec<Vec<Proc>>,
    /// The memcached behind each of zone `a`'s nodes, held only to live as long as they do.
    _memcached: Vec<Proc>,
}

impl Cluster {
    /// Starts the cluster; every node also gets `extra` on its command line.
    pub fn start(per_zone: usize, extra: &[&str]) -> Cluster {
        let memcached: Vec<Proc> = (0..per_zone).map(|_| memcached()).collect();
        let mut zones = vec![memcached.iter().map(|mc| node(Some(mc), extra)).collect()];
        for _ in 1..ZONES.len() {
            zones.push((0..per_zone).map(|_| node(None, extra)).collect());
        }
        Cluster {
            zones,
            _memcached: memcached,
        }
    }

    /// The cluster's topology with `local` as the local zone.
    pub fn topology(&self, local: &str) -> Topology {
        let mut b = Topology::builder("test", local);
        for (name, nodes) in ZONES.iter().zip(&self.zones) {
            b = b.zone(*name, nodes.iter().map(Proc::addr).collect::<Vec<_>>());
        }
        b.build().expect("a valid topology")
    }

    /// The node of zone `zone` (an index into [`ZONES`]) at `addr`.
    pub fn node_at(&mut self, zone: usize, addr: &str) -> &mut Proc {
        self.zones[zone]
            .iter_mut()
            .find(|p| p.addr() == addr)
            .unwrap_or_else(|| panic!("no node {addr} in zone {}", ZONES[zone]))
    }
}

/// A client configuration: `timeout` for connects and requests, one connection per node, and
/// the breaker's defaults but for a short first backoff, so a node that is back is probed soon.
pub fn client_config(timeout: Duration) -> ClientConfig {
    ClientConfig {
        node: NodeConfig {
            connections: 1,
            conn: ConnConfig {
                request_timeout: timeout,
                connect_timeout: timeout,
                ..ConnConfig::default()
            },
            breaker: BreakerConfig {
                min_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                ..BreakerConfig::default()
            },
        },
        ..ClientConfig::default()
    }
}
