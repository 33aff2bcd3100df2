//! Differential test of the binary protocol: the same scripted byte streams go to a real memcached
//! and to riven-node, and the replies must match byte for byte once CAS values (compared only as
//! zero or not), the VERSION string and STAT values are masked.
//!
//! Every script ends with a NOOP, so a connection the server closed early shows up as a missing
//! NOOP reply. `RIVEN_DIFF_SHOW=1` prints memcached's normalized replies to each script.

mod common;

use std::net::SocketAddr;

use common::*;
use riven_memcache::binary::{
    compose_request, parse_response, ArithExtras, Opcode, Request, Response, Status, StoreExtras,
};

/// A binary request stream under construction; each request gets the next opaque, so replies
/// are matched to requests when a script fails.
#[derive(Default)]
struct Script {
    steps: Vec<Step>,
    pending: Vec<u8>,
    opaque: u32,
}

impl Script {
    fn new() -> Script {
        Script {
            opaque: 100,
            ..Script::default()
        }
    }

    fn frame(&mut self, op: Opcode, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        self.opaque += 1;
        let mut b = Vec::new();
        let req = Request {
            opaque: self.opaque,
            cas,
            extras,
            key,
            value,
            ..Request::new(op)
        };
        compose_request(&mut b, &req).unwrap();
        b
    }

    fn req(mut self, op: Opcode, extras: &[u8], key: &[u8], value: &[u8]) -> Script {
        let f = self.frame(op, 0, extras, key, value);
        self.pending.extend(f);
        self
    }

    fn req_cas(mut self, op: Opcode, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) -> Script {
        let f = self.frame(op, cas, extras, key, value);
        self.pending.extend(f);
        self
    }

    fn get(self, op: Opcode, key: &[u8]) -> Script {
        self.req(op, &[], key, b"")
    }

    fn set(self, op: Opcode, key: &[u8], flags: u32, exptime: u32, value: &[u8]) -> Script {
        self.req(op, &StoreExtras { flags, exptime }.to_bytes(), key, value)
    }

    fn arith(self, op: Opcode, key: &[u8], delta: u64, initial: u64, exptime: u32) -> Script {
        let e = ArithExtras {
            delta,
            initial,
            exptime,
        };
        self.req(op, &e.to_bytes(), key, b"")
    }

    fn ttl(self, op: Opcode, key: &[u8], exptime: u32) -> Script {
        self.req(op, &exptime.to_be_bytes(), key, b"")
    }

    /// Bytes sent as they are (malformed frames, junk).
    fn raw(mut self, bytes: &[u8]) -> Script {
        self.pending.extend_from_slice(bytes);
        self
    }

    /// Sends what is pending now, as one write.
    fn flush(mut self) -> Script {
        if !self.pending.is_empty() {
            self.steps.push(send(std::mem::take(&mut self.pending)));
        }
        self
    }

    fn sleep(self, ms: u64) -> Script {
        let mut s = self.flush();
        s.steps.push(sleep_ms(ms));
        s
    }

    fn done(self) -> Vec<Step> {
        let s = self.req(Opcode::NOOP, &[], b"", b"").flush();
        s.steps
    }
}

fn script() -> Script {
    Script::new()
}

/// A frame with explicit (possibly inconsistent) lengths, for malformed-request cases.
#[allow(clippy::too_many_arguments)]
fn raw_frame(magic: u8, op: u8, key_len: u16, extras_len: u8, body_len: u32, opaque: u32, body: &[u8]) -> Vec<u8> {
    let mut b = vec![magic, op];
    b.extend(key_len.to_be_bytes());
    b.push(extras_len);
    b.push(0);
    b.extend([0, 0]);
    b.extend(body_len.to_be_bytes());
    b.extend(opaque.to_be_bytes());
    b.extend([0; 8]);
    b.extend_from_slice(body);
    b
}

fn short(v: &[u8]) -> String {
    if v.len() <= 64 {
        format!("{:?}", String::from_utf8_lossy(v))
    } else {
        // Long values: length and a checksum are enough to tell them apart.
        let sum = v.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        format!("<{} bytes, fnv {sum:016x}>", v.len())
    }
}

/// One line per reply frame, with the CAS, VERSION string and STAT values masked; consecutive
/// STAT entries fold into one line (the lists differ: riven reports what it has).
fn normalize(mut reply: &[u8]) -> String {
    let mut out = String::new();
    let mut in_stats = false;
    loop {
        let (r, used): (Response<'_>, usize) = match parse_response(reply) {
            Ok(x) => x,
            Err(_) => {
                if !reply.is_empty() {
                    out.push_str(&format!("trailing bytes {}\n", short(reply)));
                }
                return out;
            }
        };
        reply = &reply[used..];
        let stat_entry = r.opcode == Opcode::STAT && r.status == Status::SUCCESS && !r.key.is_empty();
        if stat_entry {
            if !in_stats {
                out.push_str(&format!("STAT... opaque={}\n", r.opaque));
                in_stats = true;
            }
            continue;
        }
        in_stats = false;
        let value = if r.opcode == Opcode::VERSION && r.status == Status::SUCCESS {
            "<version>".to_string()
        } else {
            short(r.value)
        };
        out.push_str(&format!(
            "{:?} {:?} opaque={} type={} extras={:02x?} key={} value={} cas={}\n",
            r.opcode,
            r.status,
            r.opaque,
            r.data_type,
            r.extras,
            short(r.key),
            value,
            if r.cas == 0 { "0" } else { "<cas>" },
        ));
    }
}

/// Runs `mc_steps` on memcached and `node_steps` on the node (each on a new connection, after
/// flushing both) and returns a description of the difference, if any.
fn diff_pair(name: &str, mc: SocketAddr, node: SocketAddr, mc_steps: &[Step], node_steps: &[Step]) -> Option<String> {
    let want = normalize(&exchange(mc, mc_steps));
    let got = normalize(&exchange(node, node_steps));
    if std::env::var_os("RIVEN_DIFF_SHOW").is_some() {
        eprintln!("--- {name}\n{want}");
    }
    // Two silent servers would compare equal: only the scripts named here get no reply at all.
    let silent = ["quitq", "bad magic drops the replies not yet sent"];
    assert!(
        !want.is_empty() || silent.contains(&name.trim_end_matches(" (l1-l2)").trim_end_matches(" (over memcached)")),
        "{name}: memcached sent nothing"
    );
    (want != got).then(|| format!("--- {name}\nmemcached:\n{want}riven:\n{got}"))
}

/// The CAS of `key` on the server at `addr`.
fn cas_of(addr: SocketAddr, key: &[u8]) -> u64 {
    let reply = exchange(addr, &script().get(Opcode::GET, key).flush().steps);
    let (r, _) = parse_response(&reply).expect("a GET reply");
    assert_eq!(r.status, Status::SUCCESS, "{key:?} must exist");
    r.cas
}

/// memcached, a node on the memory store alone, and a node in l1-l2 mode: every script must give
/// memcached's replies on both nodes.
struct Servers {
    mc: Memcached,
    node: riven_node::node::Node,
    tiered: riven_node::node::Node,
    _l2_dir: tempfile::TempDir,
    proxy: riven_node::node::Node,
    _l1: Memcached,
}

impl Servers {
    fn start() -> Servers {
        let dir = tempfile::tempdir().unwrap();
        let l1 = Memcached::start(&[]);
        Servers {
            mc: Memcached::start(&[]),
            node: start_node(test_settings()),
            tiered: start_node(tiered_settings(dir.path())),
            _l2_dir: dir,
            proxy: start_node(proxy_settings(&l1)),
            _l1: l1,
        }
    }

    fn wipe(&self) {
        let s = script().req(Opcode::FLUSHQ, &[], b"", b"").flush().steps;
        exchange(self.mc.addr, &s);
        exchange(self.node.addr, &s);
        exchange(self.tiered.addr, &s);
        exchange(self.proxy.addr, &s);
    }

    /// Runs each script on all three, from empty caches; panics listing every difference.
    fn check(&self, scripts: Vec<(&str, Vec<Step>)>) {
        let mut failures = Vec::new();
        for (name, steps) in scripts {
            self.wipe();
            failures.extend(diff_pair(name, self.mc.addr, self.node.addr, &steps, &steps));
            self.wipe();
            let tiered = format!("{name} (l1-l2)");
            failures.extend(diff_pair(&tiered, self.mc.addr, self.tiered.addr, &steps, &steps));
            self.wipe();
            let proxy = format!("{name} (over memcached)");
            failures.extend(diff_pair(&proxy, self.mc.addr, self.proxy.addr, &steps, &steps));
        }
        assert!(
            failures.is_empty(),
            "{} scripts differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

use Opcode as O;

#[test]
fn storage_and_reads() {
    let big = vec![b'v'; 500_000];
    Servers::start().check(vec![
        (
            "set get getk and quiet reads",
            script()
                .set(O::SET, b"a", 0xdead_beef, 0, b"hello")
                .get(O::GET, b"a")
                .get(O::GETK, b"a")
                .get(O::GETQ, b"a")
                .get(O::GETKQ, b"a")
                .get(O::GET, b"miss")
                .get(O::GETK, b"miss")
                .get(O::GETQ, b"miss")
                .get(O::GETKQ, b"miss")
                .set(O::SETQ, b"b", 1, 0, b"")
                .get(O::GETK, b"b")
                .done(),
        ),
        (
            "add replace append prepend",
            script()
                .set(O::ADD, b"a", 1, 0, b"one")
                .set(O::ADD, b"a", 2, 0, b"two")
                .set(O::ADDQ, b"a", 2, 0, b"two")
                .set(O::ADDQ, b"b", 3, 0, b"bee")
                .set(O::REPLACE, b"a", 4, 0, b"uno")
                .set(O::REPLACE, b"nope", 4, 0, b"x")
                .set(O::REPLACEQ, b"nope", 4, 0, b"x")
                .set(O::REPLACEQ, b"b", 5, 0, b"B")
                .req(O::APPEND, &[], b"a", b"_end")
                .req(O::PREPEND, &[], b"a", b"beg_")
                .req(O::APPENDQ, &[], b"a", b"!")
                .req(O::PREPENDQ, &[], b"a", b"!")
                .req(O::APPEND, &[], b"nope", b"x")
                .req(O::PREPENDQ, &[], b"nope", b"x")
                .get(O::GETK, b"a")
                .get(O::GETK, b"b")
                .done(),
        ),
        (
            "delete",
            script()
                .set(O::SET, b"d", 0, 0, b"1")
                .get(O::DELETE, b"d")
                .get(O::DELETE, b"d")
                .set(O::SET, b"d", 0, 0, b"1")
                .get(O::DELETEQ, b"d")
                .get(O::DELETEQ, b"d")
                .get(O::GET, b"d")
                .done(),
        ),
        (
            "pipelined multi-get",
            script()
                .set(O::SETQ, b"k1", 1, 0, b"1")
                .set(O::SETQ, b"k3", 3, 0, b"333")
                .get(O::GETKQ, b"k1")
                .get(O::GETKQ, b"k2")
                .get(O::GETKQ, b"k3")
                .get(O::GETQ, b"k1")
                .done(),
        ),
        (
            "large value and binary-safe keys",
            script()
                .set(O::SET, b"big", 0, 0, &big)
                .get(O::GET, b"big")
                .set(O::SET, b"key with spaces\r\n\x00\xff", 9, 0, b"\x80\x81\r\n")
                .get(O::GETK, b"key with spaces\r\n\x00\xff")
                .set(O::SET, &[b'k'; 250], 0, 0, b"max key")
                .get(O::GETK, &[b'k'; 250])
                .done(),
        ),
        (
            "version noop and ignored header fields",
            script()
                .get(O::VERSION, b"")
                .raw(&{
                    // Data type and vbucket are ignored.
                    let mut f = raw_frame(0x80, 0x01, 1, 8, 10, 7, b"\0\0\0\0\0\0\0\0zv");
                    f[5] = 5;
                    f[7] = 9;
                    f
                })
                .get(O::GET, b"z")
                .done(),
        ),
        (
            "split writes",
            script()
                .raw(&raw_frame(0x80, 0x01, 1, 8, 14, 1, b"\0\0\0\x07\0\0\0\0phello"))
                .flush()
                .done()
                .into_iter()
                .chain({
                    let mut f = raw_frame(0x80, 0x00, 1, 0, 1, 2, b"p");
                    f.extend(raw_frame(0x80, 0x0c, 1, 0, 1, 3, b"p"));
                    // Header, extras/key and the next header cut at odd places.
                    vec![
                        send(&f[..5]),
                        sleep_ms(30),
                        send(&f[5..24]),
                        sleep_ms(30),
                        send(&f[24..30]),
                        sleep_ms(30),
                        send(&f[30..]),
                    ]
                })
                .chain(script().done())
                .collect(),
        ),
    ]);
}

#[test]
fn cas_semantics() {
    let s = Servers::start();
    s.check(vec![(
        "cas mismatch and cas on a miss",
        script()
            .set(O::SET, b"c", 0, 0, b"v")
            .req_cas(
                O::SET,
                0xdead_beef_0000,
                &StoreExtras { flags: 0, exptime: 0 }.to_bytes(),
                b"c",
                b"x",
            )
            .req_cas(
                O::SET,
                0xdead_beef_0000,
                &StoreExtras { flags: 0, exptime: 0 }.to_bytes(),
                b"nope",
                b"x",
            )
            .req_cas(
                O::ADD,
                0xdead_beef_0000,
                &StoreExtras { flags: 0, exptime: 0 }.to_bytes(),
                b"c",
                b"x",
            )
            .req_cas(
                O::ADD,
                0xdead_beef_0000,
                &StoreExtras { flags: 0, exptime: 0 }.to_bytes(),
                b"nope",
                b"x",
            )
            .req_cas(
                O::REPLACEQ,
                0xdead_beef_0000,
                &StoreExtras { flags: 0, exptime: 0 }.to_bytes(),
                b"c",
                b"x",
            )
            .req_cas(O::APPEND, 0xdead_beef_0000, &[], b"c", b"x")
            .req_cas(O::DELETE, 0xdead_beef_0000, &[], b"c", b"")
            .req_cas(O::DELETE, 0xdead_beef_0000, &[], b"nope", b"")
            .req_cas(
                O::INCREMENT,
                0xdead_beef_0000,
                &ArithExtras {
                    delta: 1,
                    initial: 5,
                    exptime: 0,
                }
                .to_bytes(),
                b"c",
                b"",
            )
            .req_cas(
                O::INCREMENT,
                0xdead_beef_0000,
                &ArithExtras {
                    delta: 1,
                    initial: 5,
                    exptime: 0,
                }
                .to_bytes(),
                b"n",
                b"",
            )
            .get(O::GETK, b"c")
            .done(),
    )]);

    // A matching CAS is each server's own: read it from each, then build one script per server.
    type Op = fn(Script, u64) -> Script;
    let cases: [(&str, Op); 6] = [
        ("set", |s, cas| {
            s.req_cas(
                O::SET,
                cas,
                &StoreExtras { flags: 3, exptime: 0 }.to_bytes(),
                b"m",
                b"new",
            )
        }),
        ("add", |s, cas| {
            s.req_cas(
                O::ADD,
                cas,
                &StoreExtras { flags: 3, exptime: 0 }.to_bytes(),
                b"m",
                b"new",
            )
        }),
        ("replaceq", |s, cas| {
            s.req_cas(
                O::REPLACEQ,
                cas,
                &StoreExtras { flags: 3, exptime: 0 }.to_bytes(),
                b"m",
                b"new",
            )
        }),
        ("append", |s, cas| s.req_cas(O::APPEND, cas, &[], b"m", b"+new")),
        ("delete", |s, cas| s.req_cas(O::DELETE, cas, &[], b"m", b"")),
        ("incr", |s, cas| {
            s.req_cas(
                O::INCREMENT,
                cas,
                &ArithExtras {
                    delta: 10,
                    initial: 0,
                    exptime: 0,
                }
                .to_bytes(),
                b"m",
                b"",
            )
        }),
    ];
    let mut failures = Vec::new();
    for (name, op) in cases {
        s.wipe();
        let init = script().set(O::SET, b"m", 0, 0, b"5").flush().steps;
        exchange(s.mc.addr, &init);
        exchange(s.node.addr, &init);
        let (mc_cas, node_cas) = (cas_of(s.mc.addr, b"m"), cas_of(s.node.addr, b"m"));
        let run = |cas| op(script(), cas).get(O::GETK, b"m").done();
        failures.extend(diff_pair(
            &format!("{name} with matching cas"),
            s.mc.addr,
            s.node.addr,
            &run(mc_cas),
            &run(node_cas),
        ));
    }
    assert!(
        failures.is_empty(),
        "{} scripts differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn arithmetic() {
    Servers::start().check(vec![
        (
            "create, no-create, wrap and floor",
            script()
                .arith(O::INCREMENT, b"n", 1, 10, ArithExtras::NO_CREATE)
                .arith(O::DECREMENT, b"n", 1, 10, ArithExtras::NO_CREATE)
                .arith(O::INCREMENT, b"n", 1, 10, 0)
                .arith(O::INCREMENT, b"n", 5, 10, 0)
                .arith(O::DECREMENT, b"n", 100, 10, 0)
                .get(O::GET, b"n")
                .arith(O::DECREMENT, b"m", 3, 7, 0)
                .arith(O::INCREMENT, b"m", u64::MAX, 0, 0)
                .get(O::GET, b"m")
                .set(O::SET, b"w", 0, 0, b"18446744073709551615")
                .arith(O::INCREMENT, b"w", 2, 0, 0)
                .get(O::GET, b"w")
                .set(O::SET, b"g", 5, 0, b"99")
                .arith(O::INCREMENT, b"g", 1, 0, 0)
                .get(O::GET, b"g")
                .set(O::SET, b"p", 0, 0, b"100")
                .arith(O::DECREMENT, b"p", 1, 0, 0)
                .get(O::GET, b"p")
                .done(),
        ),
        (
            "non-numeric values",
            script()
                .set(O::SET, b"s", 0, 0, b"abc")
                .arith(O::INCREMENT, b"s", 1, 0, 0)
                .set(O::SET, b"e", 0, 0, b"")
                .arith(O::DECREMENT, b"e", 1, 0, 0)
                .set(O::SET, b"sp", 0, 0, b" 12")
                .arith(O::INCREMENT, b"sp", 1, 0, 0)
                .set(O::SET, b"l", 0, 0, b"123456789012345678901234567890")
                .arith(O::INCREMENT, b"l", 1, 0, 0)
                .set(O::SET, b"neg", 0, 0, b"-5")
                .arith(O::INCREMENT, b"neg", 1, 0, 0)
                .done(),
        ),
        (
            "quiet arithmetic",
            script()
                .arith(O::INCREMENTQ, b"q", 1, 3, 0)
                .arith(O::DECREMENTQ, b"q", 1, 3, 0)
                .arith(O::INCREMENTQ, b"none", 1, 3, ArithExtras::NO_CREATE)
                .set(O::SETQ, b"bad", 0, 0, b"x")
                .arith(O::DECREMENTQ, b"bad", 1, 0, 0)
                .get(O::GET, b"q")
                .done(),
        ),
    ]);
}

#[test]
fn expiry_touch_and_flush() {
    let past = 1_000_000_000u32; // an absolute time in 2001
    let far = 4_102_444_800u32; // an absolute time in 2100
    Servers::start().check(vec![
        (
            "ttl rules, touch and gat",
            script()
                .set(O::SET, b"rel", 1, 3, b"r")
                .set(O::SET, b"past", 2, past, b"p")
                .set(O::SET, b"far", 3, far, b"f")
                .set(O::SET, b"t", 4, 0, b"t")
                .set(O::SET, b"g", 5, 0, b"g")
                .set(O::SET, b"gk", 6, 0, b"gk")
                .set(O::SET, b"gq", 7, 0, b"gq")
                .get(O::GET, b"past")
                .get(O::GETK, b"rel")
                .ttl(O::TOUCH, b"t", 3)
                .ttl(O::TOUCH, b"nope", 3)
                .ttl(O::GAT, b"g", 3)
                .ttl(O::GAT, b"nope", 3)
                .ttl(O::GATK, b"gk", 3)
                .ttl(O::GATK, b"nope", 3)
                .ttl(O::GATQ, b"gq", 3)
                .ttl(O::GATQ, b"nope", 3)
                .ttl(O::GATKQ, b"far", 0)
                .ttl(O::GATKQ, b"nope", 0)
                .ttl(O::GAT, b"past", 100)
                .sleep(3300)
                .get(O::GETK, b"rel")
                .get(O::GETK, b"far")
                .get(O::GETK, b"t")
                .get(O::GETK, b"g")
                .get(O::GETK, b"gk")
                .get(O::GETK, b"gq")
                .done(),
        ),
        (
            "flush now and delayed",
            script()
                .set(O::SET, b"a", 0, 0, b"1")
                .req(O::FLUSH, &[], b"", b"")
                .get(O::GET, b"a")
                .set(O::SET, b"b", 0, 0, b"1")
                .req(O::FLUSHQ, &0u32.to_be_bytes(), b"", b"")
                .get(O::GET, b"b")
                .set(O::SET, b"c", 0, 0, b"1")
                // Takes effect one to two seconds from now, in both.
                .req(O::FLUSH, &3u32.to_be_bytes(), b"", b"")
                .get(O::GET, b"c")
                .sleep(3300)
                .get(O::GET, b"c")
                .set(O::SET, b"d", 0, 0, b"1")
                .get(O::GET, b"d")
                .done(),
        ),
    ]);
}

#[test]
fn oversized_values_are_rejected_and_swallowed() {
    let big = vec![b'x'; 2 << 20];
    let value_frame = |op: u8, opaque: u32, extras: &[u8]| {
        let mut body = extras.to_vec();
        body.extend(b"bk");
        body.extend(&big);
        raw_frame(0x80, op, 2, extras.len() as u8, body.len() as u32, opaque, &body)
    };
    let e = StoreExtras { flags: 0, exptime: 0 }.to_bytes();
    let head = value_frame(0x01, 9, &e);
    Servers::start().check(vec![
        (
            "too large set, setq, add, replace, append",
            script()
                .set(O::SET, b"bk", 0, 0, b"old")
                .raw(&value_frame(0x02, 1, &e))
                .get(O::GET, b"bk")
                .raw(&value_frame(0x03, 2, &e))
                .raw(&value_frame(0x0e, 3, &[]))
                .raw(&value_frame(0x0f, 4, &[]))
                .get(O::GET, b"bk")
                .raw(&value_frame(0x01, 5, &e))
                .get(O::GET, b"bk")
                .set(O::SET, b"bk", 0, 0, b"old")
                .raw(&value_frame(0x11, 6, &e))
                .get(O::GET, b"bk")
                .done(),
        ),
        (
            "largest value that fits, with and without flags",
            script()
                .set(O::SET, b"k", 0, 0, &vec![b'y'; (1 << 20) - 59 - 1])
                .set(O::SET, b"k", 0, 0, &vec![b'y'; (1 << 20) - 59])
                .set(O::SET, b"k", 1, 0, &vec![b'y'; (1 << 20) - 63 - 1])
                .set(O::SET, b"k", 1, 0, &vec![b'y'; (1 << 20) - 63])
                .done(),
        ),
        (
            "append and prepend growing past the limit",
            script()
                .set(O::SET, b"ag", 0, 0, &vec![b'a'; 600_000])
                .req(O::APPEND, &[], b"ag", &vec![b'b'; 600_000])
                .req(O::PREPENDQ, &[], b"ag", &vec![b'b'; 600_000])
                .req(O::APPEND, &[], b"ag", &vec![b'b'; 400_000])
                .get(O::GET, b"ag")
                .done(),
        ),
        (
            "reply before the value arrives",
            // The reply comes from the head alone; the value trickles in afterwards.
            script()
                .raw(&head[..40])
                .sleep(100)
                .raw(&head[40..head.len() / 2])
                .sleep(50)
                .raw(&head[head.len() / 2..])
                .done(),
        ),
    ]);
}

#[test]
fn malformed_requests() {
    let long_key = vec![b'k'; 251];
    let set_extras = StoreExtras { flags: 0, exptime: 0 }.to_bytes();
    let noop = raw_frame(0x80, 0x0a, 0, 0, 0, 77, b"");
    let mut touch_with_body = raw_frame(0x80, 0x1c, 1, 4, 5 + noop.len() as u32, 3, b"\0\0\0\0t");
    touch_with_body.extend(&noop);
    let mut stat_with_body = raw_frame(0x80, 0x10, 5, 0, 5 + noop.len() as u32, 4, b"bogus");
    stat_with_body.extend(&noop);
    let text_after_binary = b"get k\r\nget k\r\nget k\r\nget k\r\nget k\r\n";
    Servers::start().check(vec![
        ("key over 250", script().get(O::GET, &long_key).done()),
        ("key over 250, quiet", script().get(O::GETQ, &long_key).done()),
        ("key over 250, set", script().set(O::SET, &long_key, 0, 0, b"v").done()),
        (
            "key over 250, unknown opcode",
            script().req(Opcode(0x40), &[], &long_key, b"").done(),
        ),
        (
            "key longer than body",
            script().raw(&raw_frame(0x80, 0x00, 2, 0, 1, 5, b"kk")).done(),
        ),
        (
            "key longer than body, unknown",
            script().raw(&raw_frame(0x80, 0x40, 2, 0, 1, 5, b"kk")).done(),
        ),
        ("get with extras", script().req(O::GET, &[0; 4], b"k", b"").done()),
        ("get without key", script().get(O::GET, b"").done()),
        ("get with value", script().req(O::GET, &[], b"k", b"v").done()),
        ("getk with value", script().req(O::GETK, &[], b"k", b"v").done()),
        ("set without extras", script().req(O::SET, &[], b"k", b"v").done()),
        ("set without key", script().req(O::SET, &set_extras, b"", b"v").done()),
        (
            "add with short extras",
            script().req(O::ADD, &[0; 4], b"k", b"v").done(),
        ),
        (
            "append with extras",
            script().req(O::APPEND, &set_extras, b"k", b"v").done(),
        ),
        ("append without key", script().req(O::APPEND, &[], b"", b"v").done()),
        ("delete with extras", script().req(O::DELETE, &[0; 4], b"k", b"").done()),
        ("delete with value", script().req(O::DELETE, &[], b"k", b"v").done()),
        (
            "incr with short extras",
            script().req(O::INCREMENT, &[0; 8], b"k", b"").done(),
        ),
        (
            "incr with value",
            script().req(O::INCREMENT, &[0; 20], b"k", b"v").done(),
        ),
        ("noop with body", script().req(O::NOOP, &[], b"", b"x").done()),
        ("version with key", script().req(O::VERSION, &[], b"x", b"").done()),
        ("quit with body", script().req(O::QUIT, &[], b"", b"x").done()),
        ("flush with 8 extras", script().req(O::FLUSH, &[0; 8], b"", b"").done()),
        ("flush with key", script().req(O::FLUSH, &[], b"k", b"").done()),
        ("stat with extras", script().req(O::STAT, &[0; 4], b"", b"").done()),
        ("touch without extras", script().req(O::TOUCH, &[], b"k", b"").done()),
        ("gat without key", script().req(O::GAT, &[0; 4], b"", b"").done()),
        (
            "touch body read as the next request",
            script().raw(&touch_with_body).done(),
        ),
        (
            "stat body read as the next request",
            script().raw(&stat_with_body).done(),
        ),
        (
            "bad magic",
            script()
                .get(O::NOOP, b"")
                .raw(&raw_frame(0x81, 0x0a, 0, 0, 0, 1, b""))
                .done(),
        ),
        (
            "bad magic drops the replies not yet sent",
            script()
                .set(O::SET, b"a", 0, 0, b"v")
                .get(O::GET, b"a")
                .raw(&raw_frame(0x81, 0x0a, 0, 0, 0, 1, b""))
                .done(),
        ),
        (
            "bad magic keeps the replies up to the last noop",
            script()
                .set(O::SET, b"a", 0, 0, b"v")
                .get(O::NOOP, b"")
                .get(O::GETK, b"a")
                .raw(&raw_frame(0x81, 0x0a, 0, 0, 0, 1, b""))
                .done(),
        ),
        (
            "text after binary",
            script().get(O::NOOP, b"").raw(text_after_binary).done(),
        ),
        (
            "junk then a request make a bad header",
            script().get(O::NOOP, b"").raw(b"\x81\x00\x00").done(),
        ),
        (
            "unknown opcodes swallow body length past the head",
            script()
                .raw(&raw_frame(0x80, 0x40, 3, 2, 10, 1, b"eeabcvvvvv"))
                .raw(b"JJJJJ")
                .get(O::NOOP, b"")
                .req(Opcode(0x25), &[], b"", b"")
                .req(Opcode(0xff), &[], b"", b"")
                .done(),
        ),
        (
            "verbosity is unknown to memcached 1.6",
            script()
                .req(O::VERBOSITY, &1u32.to_be_bytes(), b"", b"")
                .raw(b"JUNK")
                .done(),
        ),
        ("sasl list mechs", script().get(O::SASL_LIST_MECHS, b"").done()),
        (
            "sasl list mechs with body",
            script().req(O::SASL_LIST_MECHS, &[], b"", b"x").done(),
        ),
        ("sasl auth", script().req(O::SASL_AUTH, &[], b"PLAIN", b"\0u\0p").done()),
        (
            "sasl auth without value",
            script().req(O::SASL_AUTH, &[], b"PLAIN", b"").done(),
        ),
        ("sasl step", script().req(O::SASL_STEP, &[], b"PLAIN", b"abc").done()),
        (
            "sasl auth with extras",
            script().req(O::SASL_AUTH, &[0; 4], b"PLAIN", b"").done(),
        ),
        (
            "sasl step without key",
            script().req(O::SASL_STEP, &[], b"", b"").done(),
        ),
    ]);
}

#[test]
fn quit_stat_and_version() {
    Servers::start().check(vec![
        ("quit", script().get(O::QUIT, b"").done()),
        ("quitq", script().get(O::QUITQ, b"").done()),
        (
            "stat groups",
            script()
                .set(O::SET, b"a", 0, 0, b"1")
                .get(O::STAT, b"")
                .get(O::STAT, b"settings")
                .get(O::STAT, b"bogus")
                .get(O::STAT, b"conns")
                .get(O::STAT, b"reset")
                .get(O::STAT, b"resetting")
                .get(O::STAT, b"detail on")
                .get(O::STAT, b"detail off")
                .get(O::STAT, b"detail dump")
                .get(O::STAT, b"detail")
                .get(O::STAT, b"\xff\xfe")
                .get(O::VERSION, b"")
                .done(),
        ),
    ]);
}
