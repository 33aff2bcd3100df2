//! A real memcached for tests: started on a free loopback port, frozen and thawed with
//! SIGSTOP/SIGCONT, killed when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest any test waits for something it expects to happen soon.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A client configuration for tests: one connection per node, `timeout` for connects and
/// requests (so a stalled node costs a test little), and a breaker that does not open during a
/// test, so every call really reaches its node.
#[allow(dead_code)]
pub fn client_config(timeout: Duration) -> riven_client::ClientConfig {
    let node = riven_client::NodeConfig {
        connections: 1,
        conn: riven_client::ConnConfig {
            request_timeout: timeout,
            connect_timeout: timeout,
            ..riven_client::ConnConfig::default()
        },
        breaker: riven_client::BreakerConfig {
            failure_threshold: 1000,
            ..riven_client::BreakerConfig::default()
        },
    };
    riven_client::ClientConfig {
        node,
        ..riven_client::ClientConfig::default()
    }
}

/// A memcached process, killed when dropped.
pub struct Memcached {
    child: Option<Child>,
    /// The loopback port it listens on.
    pub port: u16,
}

impl Memcached {
    /// Starts memcached on a free loopback port and waits until it listens.
    pub fn start() -> Memcached {
        // The kernel picks a free port; memcached binds it right after (with SO_REUSEADDR).
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        Memcached::start_on(port)
    }

    /// Starts memcached on `port` and waits until it listens.
    pub fn start_on(port: u16) -> Memcached {
        let mut cmd = Command::new("/usr/bin/memcached");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "root"]);
        }
        let port_arg = port.to_string();
        cmd.args(["-l", "127.0.0.1", "-p", &port_arg, "-U", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("memcached starts (/usr/bin/memcached)");
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("memcached on port {port} exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "memcached did not listen on port {port} within {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Memcached {
            child: Some(child),
            port,
        }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("memcached is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Freezes memcached: connections stay open, nothing is answered. SIGSTOP is delivered
    /// asynchronously, and a worker thread that is running could still answer a request sent
    /// after `kill` returned, so this waits until every thread of the process is stopped.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
        let pid = self.child.as_ref().expect("memcached is running").id();
        let deadline = Instant::now() + PATIENCE;
        while !all_threads_stopped(pid) {
            assert!(
                Instant::now() < deadline,
                "memcached {pid} did not stop within {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Thaws a paused memcached.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills memcached and reaps it, so its port is closed when this returns.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether every thread of process `pid` is in the stopped state (`T` in `/proc/.../stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.into_iter().all(|task| {
        let Ok(task) = task else { return false };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            return false;
        };
        // The state follows the command name, which is in parentheses and may hold anything.
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
        state == Some("T")
    })
}

/// Polls `done` until it holds, panicking with `what` after [`PATIENCE`].
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
