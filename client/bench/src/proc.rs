//! Server processes under test and facts about the machine: starting and stopping a server,
//! reading its RSS, finding a free port, raising the file-descriptor limit, describing the host.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How to start one server: a program and its arguments, where `{port}` stands for its port,
/// `{dep_port}` for the port of the server it runs on, and `{tempdir}` for a fresh directory
/// removed when the server stops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl ServerSpec {
    /// The command line, for reports.
    pub fn command_line(&self, port: u16) -> String {
        self.command_line_with(port, None, None)
    }

    fn command_line_with(&self, port: u16, dep_port: Option<u16>, tempdir: Option<&Path>) -> String {
        let mut parts = vec![self.program.display().to_string()];
        parts.extend(self.args(port, dep_port, tempdir));
        shell_join(&parts)
    }

    fn args(&self, port: u16, dep_port: Option<u16>, tempdir: Option<&Path>) -> Vec<String> {
        let dep = dep_port.map(|p| p.to_string()).unwrap_or_else(|| "{dep_port}".into());
        let dir = tempdir
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "{tempdir}".into());
        self.args
            .iter()
            .map(|a| {
                a.replace("{port}", &port.to_string())
                    .replace("{dep_port}", &dep)
                    .replace("{tempdir}", &dir)
            })
            .collect()
    }

    fn needs_tempdir(&self) -> bool {
        self.args.iter().any(|a| a.contains("{tempdir}"))
    }
}

/// A running server, stopped when dropped.
pub struct Server {
    pub name: String,
    pub port: u16,
    pub command: String,
    child: Child,
    log: PathBuf,
    tempdir: Option<PathBuf>,
}

impl Server {
    /// Starts `spec` on a free port of 127.0.0.1 and waits until it answers `version`. Its output
    /// goes to a log file in the temporary directory, shown when it fails to start.
    pub fn start(name: &str, spec: &ServerSpec, ready_timeout: Duration) -> Result<Server, String> {
        Server::start_with(name, spec, None, ready_timeout)
    }

    /// [`Server::start`] for a server that runs on another one, listening on `dep_port`.
    pub fn start_with(
        name: &str,
        spec: &ServerSpec,
        dep_port: Option<u16>,
        ready_timeout: Duration,
    ) -> Result<Server, String> {
        if !spec.program.exists() && spec.program.components().count() > 1 {
            return Err(format!("{name}: {} does not exist", spec.program.display()));
        }
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let log = std::env::temp_dir().join(format!(
            "riven-bench-{}-{}-{port}.log",
            sanitize(name),
            std::process::id()
        ));
        let tempdir = if spec.needs_tempdir() {
            let dir = std::env::temp_dir().join(format!(
                "riven-bench-{}-{}-{port}.d",
                sanitize(name),
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            Some(dir)
        } else {
            None
        };
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(&spec.program)
            .args(spec.args(port, dep_port, tempdir.as_deref()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{name}: cannot start {}: {e}", spec.program.display()))?;
        let mut server = Server {
            name: name.to_string(),
            port,
            command: spec.command_line_with(port, dep_port, tempdir.as_deref()),
            child,
            log,
            tempdir,
        };
        server.wait_ready(ready_timeout)?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{}: exited at start ({status}); {}",
                    self.name,
                    self.log_tail()
                ));
            }
            if answers_version(&self.addr()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}: no answer to `version` on {} within {timeout:?}; {}",
                    self.name,
                    self.addr(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        if tail.is_empty() {
            format!("its log {} is empty", self.log.display())
        } else {
            let lines: Vec<&str> = tail.into_iter().rev().collect();
            format!("last lines of {}: {}", self.log.display(), lines.join(" | "))
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: kill(2) with our own child's pid and a valid signal number.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + grace;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        let _ = std::fs::remove_file(&self.log);
        if let Some(dir) = self.tempdir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Whether the process is still running (a crashed server explains failed runs).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Whether a memcached-compatible server on `addr` answers the text `version` command.
fn answers_version(addr: &str) -> bool {
    let Ok(sock) = addr.parse() else { return false };
    let Ok(mut s) = TcpStream::connect_timeout(&sock, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"version\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        if buf[..got].contains(&b'\n') {
            break;
        }
    }
    buf[..got].starts_with(b"VERSION ")
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident set size of a process, in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time a process has used so far, user + system over all its threads, in clock ticks
/// (fields 14 and 15 of `/proc/<pid>/stat`; see [`clock_ticks_per_sec`]). `None` once it has
/// exited or when the file cannot be read.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // Field 2, the command name, is in parentheses and may hold spaces and parentheses itself:
    // the fields after it start at the last `)`, with field 3 (the state).
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second, the unit of [`cpu_ticks`] (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clock_ticks_per_sec() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|&n| n > 0)
}

/// The RSS once it has stopped moving (equal over two reads 200 ms apart), or the last read when
/// `limit` runs out.
pub fn settled_rss_kib(pid: u32, limit: Duration) -> Option<u64> {
    let deadline = Instant::now() + limit;
    let mut last = rss_kib(pid)?;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = rss_kib(pid)?;
        if now == last || Instant::now() >= deadline {
            return Some(now);
        }
        last = now;
    }
}

/// Raises this process's soft limit on open files to its hard limit (children inherit it).
/// Returns the new soft limit.
pub fn raise_nofile_limit() -> std::io::Result<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(lim.rlim_cur)
}

/// Whether this process runs as root (memcached then needs `-u root`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Finds a program on `PATH` (or checks a path given with a slash).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.exists().then_some(p);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// The machine a benchmark ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// UTC, `YYYY-MM-DD HH:MM:SS`.
    pub date: String,
    pub cores: usize,
    pub cpu: String,
    pub memory: String,
    /// `uname -srvm`.
    pub uname: String,
    /// `/proc/version`.
    pub kernel: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            })
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)))
            .unwrap_or_else(|| "unknown".into());
        Machine {
            date: utc_now(),
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu,
            memory,
            uname: uname(),
            kernel: std::fs::read_to_string("/proc/version")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

fn uname() -> String {
    // SAFETY: utsname is plain old data; uname fills it with NUL-terminated strings.
    let u = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        u
    };
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {} {}",
        field(&u.sysname),
        field(&u.release),
        field(&u.version),
        field(&u.machine)
    )
}

/// The current UTC time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Joins arguments into a line a POSIX shell reads back as the same arguments.
pub fn shell_join<S: AsRef<str>>(args: &[S]) -> String {
    args.iter()
        .map(|a| shell_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss() {
        let status = "Name:\tmemcached\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nThreads:\t6\n";
        assert_eq!(parse_vm_rss(status), Some(4321));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn cpu_ticks_from_stat() {
        // A command name with a space and a parenthesis; utime 1234 and stime 56 are fields 14
        // and 15.
        let stat = "4242 (mem cached) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 56 0 0 20 0 6 0 100 \
                    1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(1290));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1 2 3"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
        assert!(cpu_ticks(std::process::id()).is_some());
        assert_eq!(cpu_ticks(u32::MAX), None);
        assert!(clock_ticks_per_sec().is_some_and(|n| n >= 100));
    }

    #[test]
    fn dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn quoting() {
        assert_eq!(
            shell_join(&["riven-bench", "compare", "--rounds", "5"]),
            "riven-bench compare --rounds 5"
        );
        assert_eq!(shell_join(&["a b", "it's", ""]), r"'a b' 'it'\''s' ''");
        let spec = ServerSpec {
            program: "/usr/bin/memcached".into(),
            args: vec!["-p".into(), "{port}".into()],
        };
        assert_eq!(spec.command_line(4242), "/usr/bin/memcached -p 4242");
        let spec = ServerSpec {
            program: "riven-node".into(),
            args: vec![
                "--l1-memcached".into(),
                "127.0.0.1:{dep_port}".into(),
                "--l2-path".into(),
                "{tempdir}".into(),
            ],
        };
        assert!(spec.needs_tempdir());
        assert_eq!(
            spec.command_line_with(1, Some(2), Some(Path::new("/tmp/x"))),
            "riven-node --l1-memcached 127.0.0.1:2 --l2-path /tmp/x"
        );
    }

    #[test]
    fn machine_facts() {
        let m = Machine::describe();
        assert!(m.cores >= 1);
        assert!(m.uname.starts_with("Linux"), "{}", m.uname);
        assert!(raise_nofile_limit().unwrap() >= 1024);
    }
}
