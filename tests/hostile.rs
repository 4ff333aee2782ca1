//! Hostile peers against real daemons (issue 9, parts 3 and 4): invalid layouts from the wire,
//! a peer trickling bytes, oversized frames before the handshake, too many connections, a
//! handler that panics. After each, the daemon is alive and serves a normal client. Every
//! wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::federation::{
    closed_by_peer, forged, hello_frame, manager_addr, raw_tls, tls_closed_by_peer, tls_over,
    wait_for, LocalFederation, RawTls, Settings,
};
use juxmem::layout::Dist;
use juxmem::service::protocol::{
    ArraySpec, HomePlacement, NodeInfo, NodeKind, Redundancy, Request, Response, Retention,
    Selection, Stamp,
};
use juxmem::transport::tcp::{self, HelloReply, PROTOCOL_VERSION};
use juxmem::{ElemType, ErrorCode, Federation, Layout};
use serde::Serialize;

/// A handshaken raw connection inside TLS (a member of cluster A), as `name`.
fn raw_conn(addr: &str, fed: &LocalFederation, name: &str) -> RawTls {
    let mut s = raw_tls(fed, addr, "A");
    s.write_all(&hello_frame(name, PROTOCOL_VERSION, &fed.name))
        .unwrap();
    let reply: HelloReply = tcp::recv(&mut s, 1 << 16).unwrap();
    assert!(matches!(reply, HelloReply::Welcome(_)), "{reply:?}");
    s
}

/// A layout dimension as it travels, without the checks of `Layout::new`.
#[derive(Serialize)]
struct RawDim {
    extent: u64,
    procs: u64,
    block: u64,
    dist: Dist,
}

/// A layout as it travels.
#[derive(Serialize)]
struct RawLayout {
    dims: Vec<RawDim>,
}

/// An `ArraySpec` as it travels, with a raw layout.
#[derive(Serialize)]
struct RawSpec {
    name: String,
    elem: ElemType,
    layout: RawLayout,
    redundancy: Redundancy,
    retention: Retention,
    homes: HomePlacement,
    replicate_to: Vec<String>,
    attributes: std::collections::BTreeMap<String, String>,
}

fn dim(extent: u64, procs: u64, block: u64, dist: Dist) -> RawDim {
    RawDim {
        extent,
        procs,
        block,
        dist,
    }
}

/// Variant indexes of `Request` (postcard writes an enum's variant index as a varint, one byte
/// below 128); checked against the real encoding in the test.
const CREATE: u8 = 6;
const READ: u8 = 30;

/// A `Create` request carrying `layout`, encoded as the real one would be.
fn create_bytes(layout: RawLayout) -> Vec<u8> {
    let spec = RawSpec {
        name: "hostile/x".into(),
        elem: ElemType::F64,
        layout,
        redundancy: Redundancy::NONE,
        retention: Retention::default(),
        homes: HomePlacement::Daemons,
        replicate_to: vec![],
        attributes: Default::default(),
    };
    let mut b = vec![CREATE];
    b.extend(postcard::to_stdvec(&(spec, Vec::<NodeInfo>::new())).unwrap());
    b
}

/// A `Read { Piece { target: layout, q: 0 } }` of block 0 of array 1.
fn read_piece_bytes(layout: RawLayout) -> Vec<u8> {
    let mut b = vec![READ];
    b.extend(postcard::to_stdvec(&(1u64, 0u32, Stamp::default(), None::<u64>)).unwrap());
    b.push(1); // Selection::Piece
    b.extend(postcard::to_stdvec(&(layout, 0u64)).unwrap());
    b
}

/// Sends `frame` on a fresh connection and expects a `Protocol` error naming `why`, then the
/// connection closed.
fn expect_refused(addr: &str, fed: &LocalFederation, frame: &[u8], why: &str) {
    let mut s = raw_conn(addr, fed, "test/raw");
    tcp::write_frame(&mut s, frame).unwrap();
    s.flush().unwrap();
    let resp: Response = tcp::recv(&mut s, 1 << 20).unwrap();
    match resp {
        Response::Error { code, message } => {
            assert_eq!(code, ErrorCode::Protocol as u32, "{message}");
            assert!(message.contains(why), "expected {why:?} in {message:?}");
        }
        other => panic!("expected an error naming {why:?}, got {other:?}"),
    }
    assert!(
        tls_closed_by_peer(&mut s, Duration::from_secs(10)),
        "the connection must be closed"
    );
}

/// A normal client still gets served by the manager of A.
fn still_serves(fed: &LocalFederation) {
    let me = Federation::join(fed.config("A")).unwrap();
    me.list("*").unwrap();
}

#[test]
fn invalid_layouts_from_the_wire_get_a_typed_error_and_the_daemons_keep_serving() {
    let fed = LocalFederation::start("hostile-layouts", &[("A", 1)]);
    let addr = manager_addr(&fed, "A");

    // The hand-made encoding is the real one for a valid layout.
    let valid = Layout::new(&[8, 6], &[Dist::Block, Dist::BlockCyclic(2)], &[2, 3]).unwrap();
    let real = Request::Create {
        spec: ArraySpec {
            name: "hostile/x".into(),
            elem: ElemType::F64,
            layout: valid,
            redundancy: Redundancy::NONE,
            retention: Retention::default(),
            homes: HomePlacement::Daemons,
            replicate_to: vec![],
            attributes: Default::default(),
        },
        homes: vec![],
    };
    let raw_valid = RawLayout {
        dims: vec![
            dim(8, 2, 4, Dist::Block),
            dim(6, 3, 2, Dist::BlockCyclic(2)),
        ],
    };
    assert_eq!(postcard::to_stdvec(&real).unwrap(), create_bytes(raw_valid));
    let real_read = Request::Read {
        array: 1,
        block: 0,
        stamp: Stamp::default(),
        working: None,
        selection: Selection::Piece {
            target: Layout::one_d(8, Dist::Cyclic, 2).unwrap(),
            q: 0,
        },
    };
    assert_eq!(
        postcard::to_stdvec(&real_read).unwrap(),
        read_piece_bytes(RawLayout {
            dims: vec![dim(8, 2, 1, Dist::Cyclic)]
        })
    );

    let cases: Vec<(&str, RawLayout, &str)> = vec![
        (
            "zero grid",
            RawLayout {
                dims: vec![dim(8, 0, 1, Dist::Block)],
            },
            "0 processes",
        ),
        (
            "zero block",
            RawLayout {
                dims: vec![dim(8, 2, 0, Dist::BlockCyclic(0))],
            },
            "block size of 0",
        ),
        (
            "block not the distribution's",
            RawLayout {
                dims: vec![dim(8, 2, 3, Dist::Block)],
            },
            "does not match",
        ),
        (
            "huge grid",
            RawLayout {
                dims: vec![dim(1 << 40, 1 << 30, 1024, Dist::BlockCyclic(1024))],
            },
            "at most 1048576",
        ),
        (
            "grid overflowing 64 bits",
            RawLayout {
                dims: vec![
                    dim(1 << 40, 1 << 40, 1, Dist::Cyclic),
                    dim(1 << 40, 1 << 40, 1, Dist::Cyclic),
                ],
            },
            "2^64",
        ),
        (
            "too many dimensions",
            RawLayout {
                dims: (0..17).map(|_| dim(1, 1, 1, Dist::Block)).collect(),
            },
            "at most 16",
        ),
        ("no dimension", RawLayout { dims: vec![] }, "at least one"),
    ];
    for (what, layout, why) in cases {
        eprintln!("manager: {what}");
        expect_refused(&addr, &fed, &create_bytes(layout), why);
    }
    let log = fed.log("A-manager");
    assert!(log.contains("invalid layout"), "manager log:\n{log}");
    still_serves(&fed);

    // A provider decodes a reader's layout (a redistribution piece) the same way.
    let mut s = raw_conn(&addr, &fed, "test/raw");
    tcp::send(&mut s, &Request::Members).unwrap();
    let Response::Members(members) = tcp::recv(&mut s, 1 << 20).unwrap() else {
        panic!("no member list");
    };
    let provider = members
        .iter()
        .find(|n| n.kind == NodeKind::Daemon)
        .expect("a provider daemon");
    let zero_block = RawLayout {
        dims: vec![dim(8, 2, 0, Dist::BlockCyclic(0))],
    };
    expect_refused(
        &provider.addr,
        &fed,
        &read_piece_bytes(zero_block),
        "block size of 0",
    );
    let zero_grid = RawLayout {
        dims: vec![dim(8, 0, 1, Dist::Cyclic)],
    };
    expect_refused(
        &provider.addr,
        &fed,
        &read_piece_bytes(zero_grid),
        "0 processes",
    );
    // The provider is alive and answers.
    let mut p = raw_conn(&provider.addr, &fed, "test/raw");
    tcp::send(&mut p, &Request::Ping).unwrap();
    assert_eq!(
        tcp::recv::<_, Response>(&mut p, 1 << 20).unwrap(),
        Response::Ok
    );
    assert!(
        fed.status_text().contains("(provider daemon)"),
        "{}",
        fed.status_text()
    );
    still_serves(&fed);
}

/// A raw connection, plain or inside TLS.
trait Sock: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Sock for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Sock for RawTls {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// Writes a byte every `every` until the peer closes the connection; returns how long after the
/// first byte it closed it (or `None` after `limit`).
fn trickle(s: &mut impl Sock, bytes: &[u8], every: Duration, limit: Duration) -> Option<Duration> {
    s.tcp().set_read_timeout(Some(every)).unwrap();
    let start = Instant::now();
    let mut next = 0;
    let mut buf = [0u8; 256];
    while start.elapsed() < limit {
        if next < bytes.len() {
            if s.write_all(&bytes[next..next + 1])
                .and_then(|()| s.flush())
                .is_err()
            {
                return Some(start.elapsed());
            }
            next += 1;
        }
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn a_trickling_peer_is_cut_off_at_the_frame_deadline_while_others_are_served() {
    let settings = Settings {
        timeout: 3.0,
        ..Settings::default()
    };
    let fed = LocalFederation::start_with_env(
        "hostile-trickle",
        &[("A", 0)],
        settings,
        &[("JUXMEM_HANDSHAKE_TIMEOUT", "2")],
    );
    let addr = manager_addr(&fed, "A");
    // After the handshake: a frame of 100 bytes, one byte a second. The whole frame has 3 s.
    let mut s = raw_conn(&addr, &fed, "test/slow");
    let mut frame = 100u32.to_le_bytes().to_vec();
    frame.extend([0u8; 100]);
    let every = Duration::from_millis(500);
    let slow = std::thread::spawn(move || trickle(&mut s, &frame, every, Duration::from_secs(30)));
    // Meanwhile everyone else is served (each connection has its own thread; the bound is
    // loose for a loaded machine).
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    still_serves(&fed);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let cut = slow
        .join()
        .unwrap()
        .expect("the trickling peer must be cut off");
    assert!(
        cut >= Duration::from_millis(2500) && cut < Duration::from_secs(6),
        "cut off after {cut:?}; the frame deadline is 3 s"
    );
    // Before the handshake: the hello trickled; the handshake has 2 s.
    let mut s = TcpStream::connect(&addr).unwrap();
    let hello = hello_frame("test/slow", PROTOCOL_VERSION, &fed.name);
    let cut = trickle(&mut s, &hello, every, Duration::from_secs(30))
        .expect("a trickled handshake must be cut off");
    assert!(
        cut >= Duration::from_millis(1500) && cut < Duration::from_secs(5),
        "cut off after {cut:?}; the handshake deadline is 2 s"
    );
    wait_for("both cut-offs in the manager's log", || {
        let log = fed.log("A-manager");
        log.contains("the whole frame did not arrive in time") && log.contains("the handshake")
    });
    still_serves(&fed);
}

#[test]
fn a_peer_trickling_bulk_data_is_cut_off_at_the_transfer_deadline() {
    // The frame timeout is 2 s; a 64 KiB transfer may take 2 s + 64 KiB at 1 MiB/s.
    let settings = Settings {
        timeout: 2.0,
        ..Settings::default()
    };
    let fed = LocalFederation::start_with("hostile-bulk", &[("A", 1)], settings);
    fed.wait_for_providers(1);
    let client = Federation::join(fed.config("A")).unwrap();
    let n = 8192u64;
    let opts =
        juxmem::ArrayOptions::new(Layout::one_d(n, Dist::Block, 1).unwrap()).homes_on_daemons();
    let mut a = client
        .create::<f64, _>(&juxmem::Solo, "hostile/bulk", opts)
        .unwrap();
    a.acquire().unwrap();
    a.local_mut().unwrap().fill(1.0);
    assert_eq!(a.release().unwrap(), 1);
    drop(a);

    // A member of A takes the write lock, announces a Write of the whole block to its home,
    // then sends its bytes one every 200 ms.
    let meta = client.lookup("hostile/bulk").unwrap();
    let mut m = forged(&manager_addr(&fed, "A"), &fed, "A/slow", "A", 9);
    m.send(&Request::AcquireWrite {
        array: meta.id,
        timeout_ms: 5000,
    })
    .unwrap();
    let (epoch, block) = match m.recv::<Response>().unwrap() {
        Response::WriteGranted { epoch, blocks, .. } => (epoch, blocks[0].clone()),
        other => panic!("{other:?}"),
    };
    let home = block.home.clone().unwrap();
    let mut h = forged(&home.addr, &fed, "A/slow", "A", 9);
    h.send(&Request::Write {
        array: meta.id,
        block: 0,
        term: block.term,
        epoch,
        base: *block.stamps.last().unwrap(),
        selection: Selection::Whole,
        bytes: n * 8,
    })
    .unwrap();
    let start = Instant::now();
    let cut = loop {
        if start.elapsed() > Duration::from_secs(30) {
            break None;
        }
        let sent = h.stream().write_all(&[0]).and_then(|()| h.stream().flush());
        if sent.is_err() || h.peer_closed() {
            break Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let cut = cut.expect("a peer trickling bulk data must be cut off");
    assert!(
        cut >= Duration::from_millis(1800) && cut < Duration::from_secs(6),
        "cut off after {cut:?}; the transfer's deadline is about 2.1 s"
    );
    let provider = fed.providers().remove(0);
    wait_for("the cut-off in the provider's log", || {
        fed.log(&provider).contains("did not end within")
    });
    // The daemon serves a normal reader meanwhile and after.
    let mut r = client
        .open::<f64, _>(
            &juxmem::Solo,
            "hostile/bulk",
            Layout::one_d(n, Dist::Block, 1).unwrap(),
        )
        .unwrap();
    assert_eq!(
        r.acquire_read(juxmem::service::protocol::VersionReq::Exactly(1))
            .unwrap(),
        1
    );
    assert!(r.local().unwrap().iter().all(|&x| x == 1.0));
}

#[test]
fn oversized_frames_before_the_handshake_are_refused() {
    let fed = LocalFederation::start("hostile-big-hello", &[("A", 0)]);
    let addr = manager_addr(&fed, "A");
    // 1 MiB is far below the frame limit after the handshake, far above a hello.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&(1u32 << 20).to_le_bytes()).unwrap();
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(10)),
        "an oversized hello must be refused"
    );
    // A hello padded past 64 KiB, whole.
    let mut s = TcpStream::connect(&addr).unwrap();
    let mut body = hello_frame("test/big", PROTOCOL_VERSION, &fed.name)[4..].to_vec();
    body.resize(70 << 10, 0);
    let _ = tcp::write_frame(&mut s, &body);
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(10)),
        "an oversized hello must be refused"
    );
    // The refusal is logged just after the connection closes.
    wait_for("both refusals in the manager's log", || {
        let log = fed.log("A-manager");
        log.contains("frame of 1048576 bytes exceeds the limit of 65536 bytes")
            && log.contains("frame of 71680 bytes exceeds the limit of 65536 bytes")
    });
    still_serves(&fed);
}

/// Connects from `source` (a loopback address) to `addr`.
fn connect_from(source: &str, addr: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    sock.bind(&from.into()).unwrap();
    let to: SocketAddr = addr.parse().unwrap();
    sock.connect_timeout(&to.into(), Duration::from_secs(10))
        .unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Connects from `source` with the credentials of A and handshakes; the server's answer.
fn hello_from(source: &str, addr: &str, fed: &LocalFederation) -> (RawTls, HelloReply) {
    let mut s = tls_over(fed, connect_from(source, addr), "A");
    let _ = s.write_all(&hello_frame("test/many", PROTOCOL_VERSION, &fed.name));
    let reply = tcp::recv(&mut s, 1 << 16).unwrap();
    (s, reply)
}

/// Connects from `source` in plain TCP: a service over its limits refuses before TLS, in plain
/// framing; the refusal.
fn refused_from(source: &str, addr: &str, fed: &LocalFederation) -> HelloReply {
    let mut s = connect_from(source, addr);
    let _ = s.write_all(&hello_frame("test/many", PROTOCOL_VERSION, &fed.name));
    tcp::recv(&mut s, 1 << 16).unwrap()
}

#[test]
fn connections_over_the_limits_are_refused_with_the_reason() {
    let fed = LocalFederation::start_with_env(
        "hostile-conns",
        &[("A", 0)],
        Settings::default(),
        &[
            ("JUXMEM_MAX_CONNECTIONS", "6"),
            ("JUXMEM_MAX_CONNECTIONS_PER_HOST", "4"),
        ],
    );
    let addr = manager_addr(&fed, "A");
    // Connections of the federation's start-up (status) are gone once a full set opens.
    let mut held = Vec::new();
    wait_for("the start-up connections to close", || {
        held.clear();
        (0..4).all(|_| {
            let (s, r) = hello_from("127.0.0.1", &addr, &fed);
            held.push(s);
            matches!(r, HelloReply::Welcome(_))
        })
    });
    // A fifth from the same address is refused, saying why.
    let r = refused_from("127.0.0.1", &addr, &fed);
    match r {
        HelloReply::Refused(why) => assert!(
            why.contains("too many connections from 127.0.0.1")
                && why.contains("JUXMEM_MAX_CONNECTIONS_PER_HOST"),
            "{why}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Another address still gets in, up to the total.
    for _ in 0..2 {
        let (s, r) = hello_from("127.0.0.2", &addr, &fed);
        assert!(matches!(r, HelloReply::Welcome(_)), "{r:?}");
        held.push(s);
    }
    let r = refused_from("127.0.0.3", &addr, &fed);
    match r {
        HelloReply::Refused(why) => assert!(
            why.contains("too many connections: 6 open") && why.contains("JUXMEM_MAX_CONNECTIONS"),
            "{why}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A client over the limit gets a typed error naming it.
    let e = Federation::join(fed.config("A")).err().expect("refused");
    assert_eq!(e.code(), ErrorCode::Refused, "{e}");
    assert!(e.to_string().contains("too many connections"), "{e}");
    // Closed connections give their slots back.
    drop(held);
    wait_for("a normal client to be served again", || {
        Federation::join(fed.config("A"))
            .and_then(|me| me.list("*"))
            .is_ok()
    });
    let log = fed.log("A-manager");
    assert!(log.contains("connection refused: too many"), "{log}");
}

#[test]
fn a_panicking_handler_closes_only_its_connection_and_cleans_up_its_session() {
    let dir = std::env::temp_dir().join(format!("juxmem-hostile-panic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let arm = dir.join("arm");
    let _ = std::fs::remove_file(&arm);
    let points = format!("manager.members=panic@{}", arm.display());
    let fed = LocalFederation::start_with_env(
        "hostile-panic",
        &[("A", 0)],
        Settings::default(),
        &[("JUXMEM_FAILPOINTS", &points)],
    );
    let addr = manager_addr(&fed, "A");
    // A process registers on this connection (its control connection), then its request
    // panics in the manager, holding the manager's state lock.
    let mut s = raw_conn(&addr, &fed, "A/raw");
    let node = NodeInfo {
        name: "A/raw".into(),
        cluster: "A".into(),
        addr: "127.0.0.1:9".into(),
        kind: NodeKind::Daemon,
        incarnation: 1,
    };
    tcp::send(
        &mut s,
        &Request::Register {
            node,
            capacity: 1 << 20,
            rejoin: false,
        },
    )
    .unwrap();
    assert_eq!(
        tcp::recv::<_, Response>(&mut s, 1 << 20).unwrap(),
        Response::Ok
    );
    std::fs::write(&arm, "").unwrap();
    tcp::send(&mut s, &Request::Members).unwrap();
    assert!(
        tls_closed_by_peer(&mut s, Duration::from_secs(10)),
        "a panic closes that connection"
    );
    let log = fed.log("A-manager");
    assert!(
        log.contains("handling Members panicked: failpoint manager.members"),
        "manager log:\n{log}"
    );
    // The session's clean-up ran: the process is declared dead as if its connection closed.
    wait_for("the panicked session's clean-up", || {
        let st = fed.status_text();
        st.contains("dead   A/raw") && st.contains("its control connection closed")
    });
    // The poisoned lock does not stop anyone: the same request is answered now.
    let mut s = raw_conn(&addr, &fed, "test/raw");
    tcp::send(&mut s, &Request::Members).unwrap();
    assert!(matches!(
        tcp::recv::<_, Response>(&mut s, 1 << 20).unwrap(),
        Response::Members(_)
    ));
    still_serves(&fed);
    let _ = std::fs::remove_dir_all(&dir);
}
