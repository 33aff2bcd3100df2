//! Malformed replies from a fake node. A real memcached never sends these, so a small server
//! here plays the node: for each connection it accepts it follows the next entry of a script,
//! either answering properly or sending one kind of bad reply. Each bad reply must fail the call
//! with a clear error naming the node, without waiting out the timeout or reserving what a
//! garbage header claims; the next call gets a new connection that works.

use std::sync::Arc;
use std::time::{Duration, Instant};

use riven_client::codec::binary::{self, Opcode, Response, Status, HEADER_LEN, MAGIC_RESPONSE};
use riven_client::{Client, Conn, ConnConfig, NodeError, Op, Store, Topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// Only `client_config` is used here.
#[allow(dead_code)]
mod common;

/// What the fake node does on one connection.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Answers every request as memcached would for a store holding `VALUE` under every key.
    Proper,
    /// Answers the first request with bytes that are not the binary protocol at all.
    NotBinary,
    /// Answers with a well-formed header whose body length is almost 4 GiB.
    HugeBody,
    /// Answers with the right opcode and a different opaque.
    WrongOpaque,
    /// Answers with extras and key longer than the body.
    BadLengths,
    /// Sends half a header and closes the connection.
    CutShort,
}

const VALUE: &[u8] = b"from the fake node";
const FLAGS: u32 = 9;

/// A fake node on a free loopback port, following `script` one connection at a time; once the
/// script is used up, every further connection is answered properly.
async fn fake_node(script: Vec<Behaviour>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let behaviour = script.next().unwrap_or(Behaviour::Proper);
            tokio::spawn(serve(stream, behaviour));
        }
    });
    addr
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour) {
    let mut buf = Vec::new();
    loop {
        let Some((opcode, opaque)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let mut out = Vec::new();
        match behaviour {
            Behaviour::Proper => {
                let flags = binary::u32_extras(FLAGS);
                let mut res = Response::new(opcode, opaque, Status::SUCCESS);
                res.cas = 1;
                if opcode == Opcode::GET {
                    res.extras = &flags;
                    res.value = VALUE;
                }
                binary::compose_response(&mut out, &res).expect("compose");
            }
            Behaviour::NotBinary => out.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            Behaviour::HugeBody => out.extend_from_slice(&header(opcode, opaque, 0, 0, 0xFFFF_FF00)),
            Behaviour::WrongOpaque => {
                let res = Response::new(opcode, opaque.wrapping_add(7), Status::SUCCESS);
                binary::compose_response(&mut out, &res).expect("compose");
            }
            Behaviour::BadLengths => {
                out.extend_from_slice(&header(opcode, opaque, 8, 4, 4));
                out.extend_from_slice(b"abcd");
            }
            Behaviour::CutShort => {
                let _ = stream.write_all(&header(opcode, opaque, 0, 0, 0)[..10]).await;
                return;
            }
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// A response header with the given lengths, which need not agree with each other.
fn header(opcode: Opcode, opaque: u32, extras_len: u8, key_len: u16, body_len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = MAGIC_RESPONSE;
    h[1] = opcode.0;
    h[2..4].copy_from_slice(&key_len.to_be_bytes());
    h[4] = extras_len;
    h[8..12].copy_from_slice(&body_len.to_be_bytes());
    h[12..16].copy_from_slice(&opaque.to_be_bytes());
    h
}

/// Reads one whole request; its opcode and opaque, or `None` once the client has gone.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(Opcode, u32)> {
    loop {
        if let Ok(head) = binary::parse_request_header(buf) {
            if buf.len() >= head.frame_len() {
                buf.drain(..head.frame_len());
                return Some((head.opcode, head.opaque));
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A request timeout far longer than any test should wait: a bad reply must fail the call by
/// itself, not by the timeout.
const TIMEOUT: Duration = Duration::from_secs(5);

fn conn(addr: &str) -> Conn {
    let config = ConnConfig {
        request_timeout: TIMEOUT,
        ..ConnConfig::default()
    };
    Conn::new(addr.to_owned(), config)
}

/// The first call meets `bad` and fails with a protocol or I/O error naming the node and
/// holding `expect`, well before the timeout; then a get and a set on the same `Conn` work,
/// over a new connection.
async fn fails_then_recovers(bad: Behaviour, expect: &str) {
    let addr = fake_node(vec![bad]).await;
    let c = conn(&addr);
    let start = Instant::now();
    let err = c
        .call(&Op::Get { key: b"k" })
        .await
        .expect_err("a bad reply is an error");
    assert!(
        start.elapsed() < TIMEOUT / 2,
        "{bad:?}: failed only after {:?}",
        start.elapsed()
    );
    assert!(
        matches!(err, NodeError::Protocol { .. } | NodeError::Io { .. }),
        "{bad:?}: {err:?}"
    );
    assert_eq!(err.addr(), addr, "{bad:?}: the error names the node");
    let message = err.to_string();
    assert!(message.contains(expect), "{bad:?}: {message:?} does not say {expect:?}");

    let got = c.call(&Op::Get { key: b"k" }).await.expect("the next call reconnects");
    assert_eq!((got.status, &got.value[..], got.flags), (Status::SUCCESS, VALUE, FLAGS));
    let set = c.call(&Op::Set(Store::new(b"k", b"v"))).await.expect("set");
    assert_eq!(set.status, Status::SUCCESS);
}

#[tokio::test]
async fn bytes_that_are_not_the_binary_protocol() {
    fails_then_recovers(Behaviour::NotBinary, "protocol error").await;
}

#[tokio::test]
async fn a_body_over_the_reply_limit_is_refused_before_it_is_read() {
    fails_then_recovers(Behaviour::HugeBody, "over the limit of 67108864 (max_reply)").await;
}

#[tokio::test]
async fn a_reply_to_a_request_never_sent() {
    fails_then_recovers(Behaviour::WrongOpaque, "does not match the oldest request").await;
}

#[tokio::test]
async fn extras_and_key_longer_than_the_body() {
    fails_then_recovers(Behaviour::BadLengths, "protocol error").await;
}

#[tokio::test]
async fn a_reply_cut_short_by_a_closed_connection() {
    fails_then_recovers(Behaviour::CutShort, "connection lost").await;
}

#[tokio::test]
async fn the_reply_limit_is_configurable() {
    let addr = fake_node(vec![]).await;
    let config = ConnConfig {
        max_reply: VALUE.len() - 1,
        ..ConnConfig::default()
    };
    let c = Conn::new(addr.clone(), config);
    // A set's reply has no body, so it is within any limit.
    assert_eq!(
        c.call(&Op::Set(Store::new(b"k", b"v"))).await.expect("set").status,
        Status::SUCCESS
    );
    let err = c
        .call(&Op::Get { key: b"k" })
        .await
        .expect_err("a get's reply is over the limit");
    assert!(matches!(err, NodeError::Protocol { .. }), "{err:?}");
}

/// Through the zone-aware client: every connection to zone a's node answers with garbage, and
/// reads are answered by zone b without an error reaching the application.
#[tokio::test]
async fn the_client_reads_from_the_next_zone_past_a_malformed_node() {
    let garbage = fake_node(vec![Behaviour::NotBinary; 64]).await;
    let good = fake_node(vec![]).await;
    let topology = Topology::builder("test", "a")
        .zone("a", [garbage])
        .zone("b", [good])
        .build()
        .expect("topology");
    let client = Arc::new(Client::new(topology, common::client_config(TIMEOUT)).expect("client"));
    for i in 0..20 {
        let key = format!("key-{i}");
        let got = client.get(key.as_bytes()).await.expect("zone b answers");
        assert_eq!(got.as_ref().map(|(v, f)| (&v[..], *f)), Some((VALUE, FLAGS)));
    }
    assert!(client.stats().failovers >= 20, "{:?}", client.stats());
}
