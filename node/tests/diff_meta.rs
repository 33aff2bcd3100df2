//! Differential test of the meta commands: the same scripted byte streams go to a real memcached
//! and to riven-node, and the replies must match byte for byte, except CAS values (`c` tokens and
//! `me`'s `cas=`, compared as "present") and the clock-driven `t`/`l` tokens (and `me`'s
//! `exp=`/`la=`), which may differ by one second when a tick falls between the two runs.
//!
//! Scripts do not flush: each one uses its own keys (`$` in a script becomes a per-script
//! prefix), so one script's items never meet another's. `RIVEN_DIFF_SHOW=1` prints memcached's
//! normalized replies to every script.
//!
//! Known differences are left out of the scripts and listed in `known_differences` below.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// A script: steps sent on one connection, or an interactive exchange (see [`Interactive`]).
enum Script {
    Raw(Vec<Step>),
    Interactive(Vec<String>),
}

fn raw(s: impl AsRef<[u8]>) -> Script {
    Script::Raw(vec![send(s)])
}

fn scripts() -> Vec<(&'static str, Script)> {
    let k250 = "k".repeat(250);
    let k251 = "k".repeat(251);
    let opaque31 = "o".repeat(31);
    let opaque32 = "o".repeat(32);
    let b64_250 = "QUJD".repeat(62) + "QQ==";
    let b64_252 = "QUJD".repeat(63);
    let flags17 = vec!["v"; 17].join(" ");
    let flags18 = vec!["v"; 18].join(" ");
    let big = 2_000_000;
    let limit_key = "meta_limit_key";
    let max = (1usize << 20) - (48 + 8 + limit_key.len() + 1 + 2);
    vec![
        ("a vivified item counts as fetched", raw("mg $a N30\r\nmg $a h\r\nmg $b N30 u\r\nmg $b h\r\n")),
        (
            "me only looks: no win token handed out",
            raw("ms $a 1\r\nx\r\nmd $a I\r\nme $a\r\nmg $a\r\nmg $a\r\n"),
        ),
        (
            "mn and the basic reply codes",
            raw("mn\r\nmn ignored tokens\r\nmg $a v\r\nmg $a\r\nmg $a q\r\nmn\r\nms $a 3\r\nbar\r\nmg $a\r\nmg $a v\r\n\
                 mg $a q\r\nmg $a q v\r\nmg $a s v f t c k O1 h l\r\nms $e 0\r\n\r\nmg $e v s\r\n"),
        ),
        (
            "return flags come back in request order",
            raw("ms $a 3 F7 T100\r\nbar\r\nmg $a O9 k c f s t v\r\nmg $a t s k O9 f c\r\nmg $a k q O1 u\r\n\
                 mg $a P/x Lpath k\r\nmg $a k1 v1 s1\r\n"),
        ),
        (
            "a miss carries only O and k",
            raw("mg $m O1 k v c t s f h l\r\nmg $m k O2\r\nmg $m q k O3\r\nmg $m O\r\nmn\r\n"),
        ),
        (
            "quiet mode",
            raw("ms $a 1 q\r\n1\r\nms $a 1 q ME\r\n2\r\nms $a 1 q C1\r\n3\r\nms $n 1 q MR\r\n4\r\nmg $a q v\r\n\
                 mg $n q v\r\nmd $n q\r\nmd $a q C1\r\nmd $a q\r\nma $n q\r\nms $c 1\r\n5\r\nma $c q\r\nma $c q v\r\n\
                 ma $c q C1\r\nmg $c v\r\nma $v N0 q\r\nma $v N0 q\r\nma $w N0 q v t\r\nmn\r\n"),
        ),
        (
            "opaque lengths",
            raw(format!(
                "mg $a O{opaque31}\r\nmg $a O{opaque32}\r\nms $a 1\r\n1\r\nmg $a O{opaque31} v\r\n\
                 mg $a O{opaque32} v\r\nma $a O{opaque32}\r\nmg $a v\r\nmd $a O{opaque32}\r\nmg $a v\r\n\
                 ms $b 1 O{opaque32}\r\n1\r\nmg $b v\r\n"
            )),
        ),
        (
            "base64 keys",
            raw(format!(
                "ms cml2ZW4tYjY0LWE= 3 b k c O1\r\nbar\r\nmg cml2ZW4tYjY0LWE= b k v s\r\n\
                 mg cml2ZW4tYjY0LWI= b k v\r\nmg cml2ZW4tYjY0LWI= b q k\r\nma cml2ZW4tYjY0LWM= b N0 J5 v k\r\n\
                 ma cml2ZW4tYjY0LWM= b v k\r\nmd cml2ZW4tYjY0LWM= b k\r\nmd cml2ZW4tYjY0LWM= b k\r\n\
                 me cml2ZW4tYjY0LWE= b\r\nmg Zh== b k\r\nmg Zm8=Zm8= b k\r\nmg Zg=a b k\r\nmg Zm9vYg b k\r\n\
                 mg ==== b k\r\nmg Z-9v b k\r\nmg Zm9v= b\r\nmd Zm9v= b\r\nms Zm9v= 1 b\r\n1\r\nmn\r\n\
                 mg {b64_250} b k\r\nmg {b64_252} b k\r\nme !!! b\r\nme Zm9v x b\r\nme Zm9v b1\r\n"
            )),
        ),
        (
            "ms modes",
            raw("ms $a 1 MS\r\na\r\nms $a 1 MA\r\nb\r\nms $a 1 MP\r\nc\r\nmg $a v\r\nms $a 1 ME\r\nd\r\n\
                 ms $b 1 ME\r\ne\r\nms $b 1 MR\r\nf\r\nms $n 1 MR\r\ng\r\nms $n 1 MA\r\nh\r\nms $n 1 MP\r\ni\r\n\
                 mg $a v\r\nmg $b v\r\nmg $n v\r\nms $a 1 Ma\r\nx\r\nms $a 1 Ms\r\nx\r\nms $a 1 MX\r\nx\r\n\
                 ms $a 1 M+\r\nx\r\nms $a 1 MSS\r\nx\r\nms $a 1 M\r\nx\r\nms $d 1 MA N30\r\nx\r\nmg $d v\r\n\
                 ms $f 3 F7 T0 I\r\nabc\r\nmg $f v f t\r\nms $f 1 MA F9\r\nd\r\nmg $f v f\r\n"),
        ),
        (
            "cas conflicts without knowing the cas",
            raw("ms $n 1 C0\r\nx\r\nms $n 1 C5\r\nx\r\nms $n 1 MR C5\r\nx\r\nms $n 1 ME C5 c\r\nx\r\nmg $n v\r\n\
                 ms $a 1 C0\r\nx\r\nms $a 1 C99999999\r\nx\r\nms $a 1 MA C1\r\nx\r\nms $a 1 MP C1\r\nx\r\n\
                 ms $a 1 MR C1\r\nx\r\nms $a 1 C99999999 I\r\nx\r\nmd $a C1\r\nmd $a I C1\r\nmd $n C1\r\n\
                 ma $a C1\r\nms $c 1\r\n1\r\nma $c C1 v\r\nma $c C1 q\r\nmg $a v\r\nmg $c v\r\nmn\r\n"),
        ),
        (
            "cas matches (interactive)",
            Script::Interactive(vec![
                "ms $a 3 c\r\nbar\r\n".into(),
                "ms $a 3 C{cas} c\r\nbaz\r\n".into(),
                "mg $a v c\r\n".into(),
                "ms $a 1 MA C{cas} c\r\n!\r\n".into(),
                "ms $a 1 MP C{cas}\r\n<\r\nmg $a v c\r\n".into(),
                "md $a C{cas} q\r\nmg $a v\r\nms $n 2 c\r\n10\r\n".into(),
                "ma $n C{cas} c v\r\n".into(),
                "ma $n C{cas} MD D3 v\r\nmg $n v c\r\n".into(),
                "md $n I C{cas}\r\nmg $n v c\r\n".into(),
                "ms $n 3 C{cas} T100\r\nnew\r\nmg $n v t c\r\n".into(),
                // An older CAS with I still writes, as stale.
                "md $n I\r\nmg $n c\r\n".into(),
                "ms $n 3 I C{cas-1}\r\nold\r\nmg $n v\r\nmg $n v\r\n".into(),
            ]),
        ),
        (
            "vivify, win and stale",
            raw("mg $a N30 v c t s f k O1\r\nmg $a v t s k O1 l\r\nmg $a N30 v\r\nmd $a I\r\nmg $a v t\r\n\
                 mg $a v\r\nmg $a N30 v\r\nms $a 3\r\nnew\r\nmg $a v\r\nmg $b N30 q\r\nmg $b N30 q v\r\nmn\r\n\
                 mg $c N0 t v\r\nmg $c R30 t\r\nms $d 3 T100\r\nbar\r\nmg $d R30 v\r\nmg $d R200 v\r\n\
                 mg $d R200 v\r\nmd $d I T30\r\nmg $d t\r\nmg $d t\r\nms $e 3\r\nbar\r\nmg $e R200 v\r\n\
                 mg $f N0 R30 v t\r\nmg $f R30 v t\r\nms $g 3 T20\r\nbar\r\nmg $g N0 R30 t\r\n\
                 mg $h N30 u h\r\nmg $h h\r\nmg $i N30 h l t\r\nmd $x I\r\nmd $x I q\r\n"),
        ),
        (
            "touch and ttl",
            vec_script(vec![
                send("ms $a 3 T100\r\nbar\r\nmg $a T30 t\r\nmg $a t\r\nmg $a T0 t\r\nms $b 3 T-1\r\nbar\r\nmg $b v\r\n\
                      ms $c 3 T2592000\r\nbar\r\nmg $c t\r\nms $d 3 T2592001\r\nbar\r\nmg $d v\r\n\
                      ms $e 3 T4102444800\r\nbar\r\nmg $e v\r\nms $f 3 T4294967296\r\nbar\r\nmg $f t\r\n\
                      ms $g 3 T1\r\nbar\r\nmg $h N1 v\r\nms $i 3\r\nbar\r\nmg $i T1 v t\r\nmg $a T-1 v\r\nmg $a v\r\n\
                      ms $j 3 T100\r\nbar\r\nmg $j t T30\r\nmg $j t\r\nmg $j R50 T10 t\r\nmg $j t\r\n\
                      ms $k 3 T100\r\nbar\r\nmg $k T10 R50 t\r\nmg $k t\r\n"),
                sleep_ms(2100),
                send("mg $g v\r\nmg $h v\r\nmg $i v\r\n"),
            ]),
        ),
        (
            "ma shrinks a value in place, padded with spaces",
            // memcached rewrites in place only when no queued reply still holds the item, so the
            // pause lets the `mg` reply go out first.
            vec_script(vec![
                send("ms $f 3\r\n100\r\nma $f v MD D1\r\nmg $f v s\r\n"),
                sleep_ms(100),
                send("ma $f v MD D1000\r\n"),
                sleep_ms(100),
                send("mg $f v s\r\n"),
            ]),
        ),
        (
            "ma",
            raw("ma $a\r\nma $a q\r\nma $a v N0\r\nma $a v\r\nma $a MD D20 v\r\nma $b N0 J10 v t c k O1\r\n\
                 ma $b O1 k c t v D5\r\nma $c N30 J7 t v\r\nma $d T30 N0 t v\r\nma $e J5 v\r\nma $b MI v\r\n\
                 ma $b M+ v\r\nma $b M- v\r\nma $b Md v\r\nma $b Mi v\r\nma $b MX\r\nma $b D v\r\n\
                 ms $w 20\r\n18446744073709551615\r\nma $w v\r\nma $w v\r\nms $w 20\r\n18446744073709551615\r\n\
                 ma $w v D2\r\n\
                 ms $g 2\r\n99\r\nma $g v\r\nmg $g v s\r\nms $h 3\r\nabc\r\nma $h v\r\nms $i 0\r\n\r\nma $i\r\n\
                 ms $j 3\r\n 12\r\nma $j v\r\nms $j 3\r\n12 \r\nma $j v\r\nms $k 21\r\n184467440737095516150\r\nma $k\r\n\
                 ms $l 3\r\n-12\r\nma $l\r\nms $m 3 T100\r\n100\r\nma $m T30 t v\r\nmg $m t\r\nma $m t c v\r\n\
                 ma $n v D18446744073709551615 N0 J1\r\nma $n v D18446744073709551615\r\nma $n D-1\r\nma $n J-1 N0\r\n\
                 ma $n Dabc\r\nma $n MDD\r\nma $n Nx\r\nms $o 2 F5\r\n10\r\nma $o v\r\nmg $o f v\r\n"),
        ),
        (
            "md",
            raw("md $a\r\nmd $a q\r\nmd $a k O1 c t f s v\r\nms $a 1\r\n1\r\nmd $a k O1 c t f s v\r\nmg $a\r\n\
                 ms $a 1\r\n1\r\nmd $a q\r\nmg $a\r\nms $b 1 T100\r\n1\r\nmd $b T30\r\nmg $b\r\nms $c 1 T100\r\n1\r\n\
                 md $c I T30 k\r\nmg $c t v\r\nmd $c I T-1\r\nmg $c v\r\nms $d 1\r\n1\r\nmd $d I T0\r\nmg $d t\r\n\
                 md $d I Tx\r\nmd $d x\r\nmd $d C\r\nmd $d MZ u v I1\r\nmg $d\r\nmn\r\n"),
        ),
        (
            "me",
            raw(format!(
                "me $a\r\nms $a 1\r\nx\r\nme $a\r\nmg $a v\r\nme $a\r\nms $b 1 T100 F5\r\n1\r\nme $b\r\n\
                 ms $c 100\r\n{}\r\nme $c\r\nms $d 1000\r\n{}\r\nme $d\r\nme\r\nme \r\nme $a extra tokens\r\n\
                 ms {k250} 1\r\nx\r\nme {k250}\r\nme {k251}\r\nms $e 100000\r\n{}\r\nme $e\r\n",
                "x".repeat(100),
                "x".repeat(1000),
                "x".repeat(100000)
            )),
        ),
        (
            "flag errors",
            raw(b"mg $a x\r\nmg $a !\r\nmg $a E5\r\nmg $a S3\r\nmg $a \x01\r\nmg $a \x7f\r\nmg $a \x80 \x81\r\n\
                 mg $a v v\r\nmg $a k k\r\nmg $a P L Pxx\r\nmg $a N\r\nmg $a Nabc\r\nmg $a T\r\nmg $a Tabc\r\n\
                 mg $a R\r\nmg $a C\r\nmg $a C-1\r\nmg $a D\r\nmg $a J\r\nmg $a F\r\nmg $a F-1\r\nmg $a M\r\n\
                 mg $a MXX\r\nmg $a b\r\nmg $a t T30 t\r\nmd $a x\r\nmd $a \xff\r\nmd $a v v\r\nma $a x\r\n\
                 ma $a b\r\nmg\r\nmg \r\nms\r\nmd\r\nma\r\nme\r\nmx $a\r\nmgx $a\r\nmn\r\n"),
        ),
        (
            "token and key limits",
            raw(format!(
                "mg $a {flags17}\r\nmg $a {flags18}\r\nmd $a {flags17}\r\nmd $a {flags18}\r\nma $a {flags18}\r\n\
                 ms $a 1 {v16}\r\nx\r\nms $a 1 {flags17}\r\nx\r\nmn\r\nms {k250} 1\r\nx\r\nmg {k250} v k\r\n\
                 mg {k251} v\r\nms {k251} 1\r\nx\r\nmd {k251}\r\nma {k251}\r\nmg {k251} {flags18}\r\n\
                 ms $b 1 a b c d e f g h i j k l m n o p q\r\nx\r\nmn\r\n",
                v16 = vec!["v"; 16].join(" ")
            )),
        ),
        (
            "ms line errors and data chunks",
            raw("ms $a\r\nms $a abc\r\nbar\r\nms $a -1\r\nbar\r\nms $a 3x\r\nbar\r\nms $a 99999999999999999999\r\nbar\r\n\
                 ms $a 3 x\r\nbar\r\nms $a 3 x\r\nbarbarbar\r\nms $a 3 v v\r\nbar\r\nms $a 3 T\r\nbar\r\n\
                 ms $a 3 F-1\r\nbar\r\nms $a 3 b\r\nbar\r\nms $a 3 O12345678901234567890123456789012 MX\r\nbar\r\n\
                 ms $a 3\r\nbarx\r\nms $a 3\r\nba\r\nmn\r\nms $a 3\r\nbar\n\r\nms $a 3\r\nbar\rxmn\r\n\
                 ms $a 3 k O1 c\r\nbarx\r\nms $a 1 q\r\nbarx\r\nmg $a v\r\nmn\r\n"),
        ),
        (
            "numbers read like C",
            raw("ms $a 3 T+5\r\nbar\r\nmg $a t\r\nms $b 3 T\t5\r\nbar\r\nmg $b t\r\nms $c 3 T5\tx\r\nbar\r\nmg $c t\r\n\
                 ms $d +3\r\nbar\r\nms $d \t3\r\nbar\r\nms $d 3\t\r\nbar\r\nms $d 4294967299\r\nbar\r\nmg $d v\r\n\
                 ms $e 3 F4294967295\r\nbar\r\nmg $e f\r\nms $e 3 F4294967297\r\nbar\r\nmg $e f\r\n\
                 ms $e 3 F99999999999999999999\r\nbar\r\nms $f 3 C-0\r\nbar\r\nms $f 3 C+0\r\nbar\r\n\
                 ms $f 3 C18446744073709551615\r\nbar\r\nms $f 3 C18446744073709551616\r\nbar\r\n\
                 ms $f 3 C-9223372036854775809\r\nbar\r\nms $g 3 T99999999999\r\nbar\r\nmg $g v\r\nmn\r\n"),
        ),
        (
            "oversized values are swallowed and the old value dropped",
            vec_script(vec![
                send("ms $a 3\r\nold\r\nms $b 3\r\nold\r\nms $c 3\r\nold\r\n"),
                send(format!("ms $a {big}\r\n")),
                send(vec![b'x'; big]),
                send("\r\nmg $a v\r\n"),
                send(format!("ms $b {big} MA k O1 c\r\n")),
                send(vec![b'y'; big + 2]),
                send("mg $b v\r\n"),
                send(format!("ms $c {big} q ME\r\n")),
                send(vec![b'z'; big + 2]),
                send(format!("mg $c v\r\nms $c {big} MX\r\n")),
                send(vec![b'z'; big + 2]),
                send("mg $c v\r\nmn\r\n"),
            ]),
        ),
        (
            "largest value memcached accepts at -I 1m",
            // 1 MB minus memcached's item overhead: 48 + 8 + key + 1 + 2, and 4 more with flags.
            vec_script(vec![
                send(format!("ms {limit_key} {max} s\r\n")),
                send(vec![b'a'; max]),
                send(format!("\r\nmg {limit_key} s\r\nms {limit_key} {} s\r\n", max + 1)),
                send(vec![b'a'; max + 1]),
                send(format!("\r\nmg {limit_key} s\r\nms {limit_key} {max} F1\r\n")),
                send(vec![b'a'; max]),
                send(format!("\r\nmg {limit_key} s\r\n")),
            ]),
        ),
        (
            "pipelined and split requests",
            vec_script(vec![
                send("ms $a 5 T0"),
                sleep_ms(50),
                send(" F3\r\nhel"),
                sleep_ms(50),
                send("lo\r"),
                sleep_ms(50),
                send("\nmg $a v f\r\nmg $a"),
                sleep_ms(50),
                send(" v\r\nms $b 4\r\n\r\n\r\n\r\nmg $b v\r\nmn\r\n"),
            ]),
        ),
        (
            "meta and classic commands mixed",
            raw("set $a 5 0 3\r\nabc\r\nmg $a v f\r\nms $b 3 F6\r\ndef\r\nget $b\r\ngets $a\r\nmd $a\r\nget $a\r\n\
                 incr $c 1\r\nma $c N0 J41\r\nincr $c 1\r\nmg $c v\r\n"),
        ),
    ]
}

fn vec_script(steps: Vec<Step>) -> Script {
    Script::Raw(steps)
}

/// Cases left out of [`scripts`] because riven answers differently, each with the reason. The
/// ignored test below checks that they still differ, so a case that starts to match (after a
/// store change) is noticed and moved into the scripts.
fn known_differences() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "memcached remembers per item that its key is binary, for `k` and `me`",
            "ms cml2ZW4ta25vd24= 1 b\r\nx\r\nmg riven-known k\r\n",
        ),
        (
            "N-1: memcached prints a wrapped TTL (2^32 minus its uptime); riven prints t0",
            "mg $a N-1 t\r\n",
        ),
    ]
}

#[test]
#[ignore = "documents known differences; run with --ignored"]
fn known_differences_still_differ() {
    let mc = Memcached::start(&[]);
    let node = start_node(test_settings());
    let mut now_same = Vec::new();
    for (i, (why, script)) in known_differences().into_iter().enumerate() {
        let steps = prepare(&[send(script)], &format!("k{i}_"));
        let (want, got) = (split(&exchange(mc.addr, &steps)), split(&exchange(node.addr, &steps)));
        eprintln!("--- {why}\nmemcached:\n{}riven:\n{}", render(&want), render(&got));
        if same(&want, &got, false) {
            now_same.push(why);
        }
    }
    assert!(
        now_same.is_empty(),
        "these now match memcached; move them into the scripts: {now_same:?}"
    );
}

/// Replaces `$` with the script's key prefix.
fn with_prefix(b: &[u8], prefix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for &c in b {
        if c == b'$' {
            out.extend_from_slice(prefix.as_bytes());
        } else {
            out.push(c);
        }
    }
    out
}

fn prepare(steps: &[Step], prefix: &str) -> Vec<Step> {
    steps
        .iter()
        .map(|s| match s {
            Step::Send(b) => Step::Send(with_prefix(b, prefix)),
            other => other.clone(),
        })
        .collect()
}

/// Runs an interactive script: each chunk is sent with an `mn` after it, the reply is read up to
/// the `MN`, and the last `c` token seen so far replaces `{cas}` (and `{cas-1}`) in later chunks.
/// This is how a script can use a CAS value, which differs between the two servers.
fn interactive(addr: SocketAddr, chunks: &[String], prefix: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let mut cas: u64 = 0;
    for chunk in chunks {
        let chunk = chunk
            .replace("{cas-1}", &cas.saturating_sub(1).to_string())
            .replace("{cas}", &cas.to_string());
        let mut bytes = with_prefix(chunk.as_bytes(), prefix);
        bytes.extend_from_slice(b"mn\r\n");
        s.write_all(&bytes).unwrap();
        let start = all.len();
        let mut buf = [0u8; 4096];
        while !all[start..].ends_with(b"MN\r\n") {
            let n = s.read(&mut buf).expect("reply");
            assert!(n > 0, "connection closed");
            all.extend_from_slice(&buf[..n]);
        }
        for line in String::from_utf8_lossy(&all[start..]).lines() {
            for tok in line.split(' ').skip(1) {
                if let Some(v) = tok.strip_prefix('c').and_then(|v| v.parse().ok()) {
                    cas = v;
                }
            }
        }
    }
    all
}

/// One reply, split so it can be compared with tolerance.
#[derive(Debug)]
enum Part {
    Line(String),
    Data(String),
}

/// Splits a reply stream into lines and data blocks (framed by `VA <len>`).
fn split(reply: &[u8]) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = reply;
    while !rest.is_empty() {
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], i + 2),
            None => (rest, rest.len()),
        };
        let text = String::from_utf8_lossy(line).into_owned();
        rest = &rest[next..];
        if let Some(len) = text
            .strip_prefix("VA ")
            .and_then(|v| v.split(' ').next()?.parse::<usize>().ok())
        {
            let end = (len + 2).min(rest.len());
            parts.push(Part::Line(text));
            parts.push(Part::Data(format!("{:?}", String::from_utf8_lossy(&rest[..end]))));
            rest = &rest[end..];
        } else {
            parts.push(Part::Line(text));
        }
    }
    parts
}

/// Whether two reply tokens match: CAS values only need to be present; clock-driven values may
/// be one second apart. `no_access_bits`: the node's L1 is a memcached reached over the binary
/// protocol, which does not report whether an item was fetched before (`h`, `fetch=`).
fn token_matches(a: &str, b: &str, meta_line: bool, no_access_bits: bool) -> bool {
    if a == b {
        return true;
    }
    let num = |s: &str, p: &str| s.strip_prefix(p).and_then(|v| v.parse::<i64>().ok());
    if no_access_bits {
        let bit = |s: &str, p: &str| matches!(s.strip_prefix(p), Some("0" | "1" | "yes" | "no"));
        if (bit(a, "h") && bit(b, "h")) || (bit(a, "fetch=") && bit(b, "fetch=")) {
            return true;
        }
    }
    if meta_line {
        if num(a, "c").is_some() && num(b, "c").is_some() {
            return true;
        }
        for p in ["t", "l"] {
            if let (Some(x), Some(y)) = (num(a, p), num(b, p)) {
                return x >= 0 && y >= 0 && (x - y).abs() <= 1;
            }
        }
    } else {
        if num(a, "cas=").is_some() && num(b, "cas=").is_some() {
            return true;
        }
        for p in ["exp=", "la="] {
            if let (Some(x), Some(y)) = (num(a, p), num(b, p)) {
                return (x == -1) == (y == -1) && (x - y).abs() <= 1;
            }
        }
    }
    false
}

fn same(want: &[Part], got: &[Part], no_access_bits: bool) -> bool {
    want.len() == got.len()
        && want.iter().zip(got).all(|(w, g)| match (w, g) {
            (Part::Data(a), Part::Data(b)) => a == b,
            (Part::Line(a), Part::Line(b)) => {
                let meta = ["VA ", "HD", "EN", "NF", "NS", "EX"].iter().any(|p| a.starts_with(p));
                let debug = a.starts_with("ME ");
                let (ta, tb): (Vec<&str>, Vec<&str>) = (a.split(' ').collect(), b.split(' ').collect());
                if a.starts_with("VALUE ") && ta.len() == 5 {
                    // A classic `gets` reply: everything but the CAS value must match.
                    return ta[..4] == tb[..4.min(tb.len())] && tb.len() == 5;
                }
                if !(meta || debug) {
                    return a == b;
                }
                ta.len() == tb.len()
                    && ta
                        .iter()
                        .zip(&tb)
                        .all(|(x, y)| token_matches(x, y, meta, no_access_bits))
            }
            _ => false,
        })
}

fn render(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|p| match p {
            Part::Line(l) => format!("{l}\n"),
            Part::Data(d) => format!("  <data {d}>\n"),
        })
        .collect()
}

#[test]
fn meta_commands_match_memcached() {
    diff_against(test_settings(), false);
}

/// The same scripts against a node in l1-l2 mode.
#[test]
fn meta_commands_match_memcached_in_l1_l2_mode() {
    let dir = tempfile::tempdir().unwrap();
    diff_against(tiered_settings(dir.path()), false);
}

/// The same scripts against a node whose L1 is another real memcached.
#[test]
fn meta_commands_match_memcached_over_a_memcached_l1() {
    let l1 = Memcached::start(&[]);
    diff_against(proxy_settings(&l1), true);
}

fn diff_against(settings: riven_node::config::Config, no_access_bits: bool) {
    let mc = Memcached::start(&[]);
    let node = start_node(settings);
    let show = std::env::var_os("RIVEN_DIFF_SHOW").is_some();
    let mut failures = Vec::new();
    for (i, (name, script)) in scripts().into_iter().enumerate() {
        let prefix = format!("m{i}_");
        let (want, got) = match &script {
            Script::Raw(steps) => {
                let steps = prepare(steps, &prefix);
                (exchange(mc.addr, &steps), exchange(node.addr, &steps))
            }
            Script::Interactive(chunks) => (
                interactive(mc.addr, chunks, &prefix),
                interactive(node.addr, chunks, &prefix),
            ),
        };
        let (want, got) = (split(&want), split(&got));
        if show {
            eprintln!("=== {name}\n{}", render(&want));
        }
        if !same(&want, &got, no_access_bits) {
            failures.push(format!(
                "--- {name}\nmemcached:\n{}riven:\n{}",
                render(&want),
                render(&got)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} scripts differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
