//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/seed-*`: one valid
//! input of each kind (every request and response variant, hellos, layouts with selections,
//! contact and pipeline files). `ci/fuzz` minimizes the corpus it grows from them. Run from
//! `fuzz/`: `cargo run --example seeds`.

use std::path::Path;

use juxmem::element::ElemType;
use juxmem::layout::{Dist, Layout};
use juxmem::service::contact::{render, Contact};
use juxmem::service::protocol::*;
use juxmem::transport::tcp::{hello_frame, write_frame, Hello, HelloReply};
use serde::Serialize;

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("encodes")
}

fn framed(msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        write_frame(&mut out, m).expect("frame");
    }
    out
}

fn save(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed written");
}

fn node(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        cluster: "A1".into(),
        addr: "127.0.0.1:4000".into(),
        kind: NodeKind::Daemon,
        incarnation: 7,
    }
}

fn main() {
    let l1 = Layout::one_d(64, Dist::Block, 2).unwrap();
    let l2 = Layout::new(&[12, 10], &[Dist::BlockCyclic(3), Dist::Cyclic], &[2, 3]).unwrap();
    let l1b = Layout::one_d(64, Dist::Cyclic, 4).unwrap();
    let stamp = Stamp {
        version: 1,
        epoch: 1,
    };
    let placement = BlockPlacement {
        term: 1,
        home: Some(node("A1/provider-0")),
        replicas: vec![node("A1/provider-1")],
        restoring: vec![],
        stamps: vec![Stamp::default(), stamp],
        caches: vec![],
    };
    let spec = ArraySpec {
        name: "forecast/day1/t2m".into(),
        elem: ElemType::F64,
        layout: l1.clone(),
        redundancy: Redundancy::NONE,
        retention: Retention::default(),
        homes: HomePlacement::Daemons,
        replicate_to: vec!["A2".into()],
        attributes: Default::default(),
    };
    let meta = ArrayMeta {
        id: 1,
        spec: spec.clone(),
        manager: node("A1/manager"),
        blocks: vec![placement.clone(), placement.clone()],
        committed: 1,
        floor: 0,
    };
    let whole = Selection::Whole;
    let region = Selection::Region {
        lo: vec![10],
        hi: vec![40],
    };
    let piece = Selection::Piece {
        target: l1b.clone(),
        q: 1,
    };
    let requests = vec![
        Request::Register {
            node: node("A1/provider-0"),
            capacity: 1 << 20,
            rejoin: false,
        },
        Request::Renew { rejoin: true },
        Request::Leave {
            node: node("A1/provider-0"),
        },
        Request::Gone {
            node: node("A1/provider-0"),
        },
        Request::Members,
        Request::Reserve {
            bytes: 4096,
            count: 2,
            exclude: vec!["A1/provider-1".into()],
        },
        Request::Create {
            spec: spec.clone(),
            homes: vec![],
        },
        Request::Created { array: 1 },
        Request::Destroy {
            array: 1,
            force: true,
        },
        Request::Release {
            node: node("A1/provider-0"),
            bytes: 512,
        },
        Request::Lookup {
            name: "forecast/day1/t2m".into(),
            forwarded: false,
        },
        Request::List {
            pattern: "forecast/*/t2m".into(),
            forwarded: false,
        },
        Request::Status { forwarded: true },
        Request::Placement {
            array: 1,
            suspects: vec![node("A1/provider-1")],
        },
        Request::AcquireWrite {
            array: 1,
            timeout_ms: 1000,
        },
        Request::Commit {
            array: 1,
            epoch: 1,
            version: 1,
            touched: vec![Touched {
                block: 0,
                term: 1,
                holders: vec![node("A1/provider-0").id()],
            }],
        },
        Request::Abort { array: 1, epoch: 1 },
        Request::WaitVersion {
            array: 1,
            req: VersionReq::AtLeast(1),
            timeout_ms: 1000,
            pin: true,
            reader: Some(1),
        },
        Request::AddReader { array: 1 },
        Request::RemoveReader {
            array: 1,
            reader: 1,
        },
        Request::Unpin { array: 1, pin: 1 },
        Request::Ping,
        Request::Drop { array: 1 },
        Request::Host {
            meta: meta.clone(),
            block: 0,
        },
        Request::Promote {
            array: 1,
            block: 0,
            term: 2,
        },
        Request::Fence {
            array: 1,
            block: 0,
            term: 2,
        },
        Request::Restore {
            meta: meta.clone(),
            block: 1,
            stamps: vec![stamp],
            sources: vec![node("A1/provider-1")],
        },
        Request::Install {
            array: 1,
            block: 0,
            term: 1,
            stamp,
            keep: vec![Stamp::default()],
            bytes: 256,
        },
        Request::Write {
            array: 1,
            block: 0,
            term: 1,
            epoch: 2,
            base: stamp,
            selection: region.clone(),
            bytes: 22 * 8,
        },
        Request::Publish {
            array: 1,
            block: 0,
            term: 1,
            epoch: 2,
            version: 2,
            keep: vec![stamp],
            replicas: vec![],
        },
        Request::Read {
            array: 1,
            block: 0,
            stamp,
            working: Some(2),
            selection: piece.clone(),
        },
        Request::CreateNamespace {
            name: "forecast/day1".into(),
        },
        Request::Namespaces {
            pattern: "forecast/".into(),
            forwarded: false,
        },
        Request::CacheRead {
            array: 1,
            name: "forecast/day1/t2m".into(),
            block: 0,
            stamp,
            selection: piece.clone(),
        },
        Request::CacheAdd {
            array: 1,
            block: 0,
            stamp,
            node: node("A2/provider-0"),
        },
        Request::Invalidate {
            array: 1,
            copies: vec![(0, stamp)],
        },
    ];
    let frames: Vec<Vec<u8>> = requests.iter().map(enc).collect();
    for (i, f) in frames.iter().enumerate() {
        save(
            "request",
            &format!("{i:02}"),
            &framed(std::slice::from_ref(f)),
        );
    }
    // A provider's session: host, write, publish, read, install, as the data path runs them.
    let session: Vec<Vec<u8>> = [23usize, 25, 26, 28, 29, 30, 27]
        .iter()
        .map(|&i| frames[i].clone())
        .collect();
    save("request", "session", &framed(&session));
    let mut frame_seed = vec![1u8];
    frame_seed.extend(framed(&session));
    save("frame", "session", &frame_seed);
    save(
        "frame",
        "small-limit",
        &[64, 3, 0, 0, 0, 1, 2, 3, 200, 0, 0, 0],
    );

    let responses = vec![
        Response::Ok,
        Response::error(&juxmem::Error::NotFound("no array".into())),
        Response::Meta(meta.clone()),
        Response::Names(vec![NameEntry {
            name: "forecast/day1/t2m".into(),
            cluster: "A1".into(),
            elem: ElemType::F32,
            shape: vec![64],
            committed: 3,
            attributes: [("units".to_string(), "K".to_string())].into(),
        }]),
        Response::WriteGranted {
            epoch: 2,
            base: 1,
            floor: 0,
            blocks: meta.blocks.clone(),
        },
        Response::Version {
            version: 1,
            pin: Some(1),
            blocks: meta.blocks.clone(),
        },
        Response::Placement(meta.blocks.clone()),
        Response::Reader(1),
        Response::Reserved(vec![node("A1/provider-0")]),
        Response::Members(vec![node("A1/provider-0")]),
        Response::Published {
            stamp: Some(stamp),
            holders: vec![node("A1/provider-0").id()],
        },
        Response::Restored { held: vec![stamp] },
        Response::Data { bytes: 256 },
        Response::Status(vec![ClusterStatus {
            cluster: "A1".into(),
            manager: node("A1/manager"),
            members: vec![MemberStatus {
                node: node("A1/provider-0"),
                capacity: 1 << 30,
                reserved: 512,
            }],
            dead: vec![DeadMember {
                node: node("A1/provider-1"),
                reason: "lease expired".into(),
                ago_s: 1.5,
            }],
            arrays: vec![ArrayStatus {
                meta: meta.clone(),
                health: vec![Health::Healthy, Health::Degraded],
                pins: vec![1],
                writer: Some("A1/rank0".into()),
                dropped_unread: 0,
            }],
            replicas: vec![],
        }]),
        Response::CacheStats(CacheStats {
            copies: 1,
            bytes: 4096,
            fills: 2,
            hits: 5,
            invalidations: 1,
            evictions: 0,
            from_other_clusters: 3,
        }),
    ];
    for (i, r) in responses.iter().enumerate() {
        save("response", &format!("{i:02}"), &enc(r));
    }

    let hello = Hello {
        name: "A1/manager".into(),
        cluster: "A1".into(),
        federation: "weather".into(),
        incarnation: 42,
        software: "juxmem 0.1.0".into(),
    };
    save("handshake", "hello", &hello_frame(&hello).unwrap());
    save("handshake", "welcome", &enc(&HelloReply::Welcome(hello)));
    save(
        "handshake",
        "refused",
        &enc(&HelloReply::Refused("another federation".into())),
    );

    for (name, l, block, sel) in [
        ("whole", &l1, 1u32, &whole),
        ("region", &l1, 0, &region),
        ("piece", &l1, 1, &piece),
        (
            "region-2d",
            &l2,
            4,
            &Selection::Region {
                lo: vec![1, 2],
                hi: vec![11, 9],
            },
        ),
        (
            "piece-2d",
            &l2,
            3,
            &Selection::Piece {
                target: Layout::new(&[12, 10], &[Dist::Block, Dist::Block], &[3, 1]).unwrap(),
                q: 2,
            },
        ),
    ] {
        save("selection", name, &enc(&(l.clone(), block, sel.clone())));
    }

    let contact = Contact {
        cluster: "A1".into(),
        addr: "10.0.0.5:40123".into(),
        incarnation: Some(123456789),
        pid: Some(4242),
        host: Some("node17".into()),
        fingerprint: Some("ab".repeat(32)),
    };
    save("contact", "manager", render(&contact).as_bytes());

    for p in ["weather", "handoff"] {
        let text = std::fs::read(format!("../examples/{p}.pipeline")).expect("example pipeline");
        save("pipeline", p, &text);
    }
}
