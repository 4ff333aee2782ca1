//! Read caches with tracked, confined invalidation (issue 12, item 5; CANTO): a reader of
//! another cluster's array reads through a provider of its own cluster, which keeps a cache
//! copy; the array's manager tracks it, later readers of that cluster are served from it, and
//! the release that makes it stale tells its holder, and nobody else, to drop it. Cache copies
//! give way when a block of a data group needs the room. Real managers and daemons, three
//! clusters.

mod common;

use std::time::Duration;

use common::federation::{wait_for, LocalFederation, Settings};
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::{
    CacheStats, FullPolicy, NodeInfo, NodeKind, Request, Response, Selection, VersionReq,
};
use juxmem::{ArrayOptions, ErrorCode, Federation, Solo};

const R: u64 = 256;
const C: u64 = 256;

fn layout(rows: u64) -> Layout {
    Layout::new(&[rows, C], &[Dist::Block, Dist::Block], &[1, 1]).unwrap()
}

fn value(i: u64, v: u64) -> f64 {
    (v * 1_000_000 + i) as f64
}

/// Reads the whole latest version of `c/x` from `fed`: the version read.
fn read(fed: &Federation) -> u64 {
    let mut r = fed.inspect::<f64, _>(&Solo, "c/x", layout(R)).unwrap();
    let v = r.acquire_read(VersionReq::Latest).unwrap();
    let mut buf = vec![0.0; (R * C) as usize];
    r.get(&[0, 0], &[R, C], &mut buf).unwrap();
    r.release_read().unwrap();
    assert!(
        buf.iter()
            .enumerate()
            .all(|(i, &x)| x == value(i as u64, v)),
        "version {v} read back wrong"
    );
    v
}

/// The provider daemon and the manager of `cluster`: their addresses.
fn daemon_and_manager(fed: &Federation, cluster: &str) -> (String, String) {
    let s = fed.status().unwrap();
    let c = s.iter().find(|c| c.cluster == cluster).unwrap();
    let d = c
        .members
        .iter()
        .find(|m| m.node.kind == NodeKind::Daemon)
        .unwrap();
    (d.node.addr.clone(), c.manager.addr.clone())
}

#[test]
fn a_release_invalidates_only_the_clusters_holding_cache_copies() {
    let settings = Settings {
        capacity: "2MiB".into(),
        ..Settings::default()
    };
    let fed = LocalFederation::start_with("caches", &[("A1", 1), ("A2", 1), ("A3", 1)], settings);
    fed.wait_for_providers(3);
    let writer = Federation::join(fed.config("A1")).unwrap();
    // One 512 KiB block homed on A1's daemon.
    let mut w = writer
        .create::<f64, _>(
            &Solo,
            "c/x",
            ArrayOptions::new(layout(R))
                .homes_on_daemons()
                .retention(2, FullPolicy::DropOldest),
        )
        .unwrap();
    let write = |w: &mut juxmem::SharedArray<'_, f64, Solo>, v: u64| {
        w.acquire().unwrap();
        let data: Vec<f64> = (0..R * C).map(|i| value(i, v)).collect();
        w.put(&[0, 0], &[R, C], &data).unwrap();
        assert_eq!(w.release().unwrap(), v);
    };
    write(&mut w, 1);

    let mut cfg = fed.config("A2");
    cfg.read_cache = true;
    let caching = Federation::join(cfg).unwrap();
    let plain = Federation::join(fed.config("A2")).unwrap();
    let far = Federation::join(fed.config("A3")).unwrap();
    let (a2, _) = daemon_and_manager(&writer, "A2");
    let (a3, m3) = daemon_and_manager(&writer, "A3");
    let stats = |addr: &str| -> CacheStats { writer.cache_stats(addr).unwrap() };

    // A reader of A2 asking for caching reads through A2's daemon, which fills a copy.
    assert_eq!(read(&caching), 1);
    let s = stats(&a2);
    assert_eq!((s.copies, s.bytes, s.fills), (1, R * C * 8, 1), "{s:?}");
    // Any later reader of A2 is served from it: the manager lists it with the placement.
    assert_eq!(read(&plain), 1);
    assert_eq!(read(&caching), 1);
    let s = stats(&a2);
    assert_eq!((s.copies, s.fills), (1, 1), "{s:?}");
    assert!(s.hits >= 2, "{s:?}");
    let meta = writer.lookup("c/x").unwrap();
    assert_eq!(meta.blocks[0].caches.len(), 1);
    assert_eq!(meta.blocks[0].caches[0].node.cluster, "A2");
    // `juxmem status` shows it with the block.
    let mut cmd = std::process::Command::new(common::federation::juxmem_bin());
    fed.env(&mut cmd, "A3");
    let out = cmd.arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "cache copies [{}]",
            meta.blocks[0].caches[0].node.name
        )),
        "{text}"
    );
    // A3's reader reads from the home, and caches nothing (it did not ask to).
    assert_eq!(read(&far), 1);
    assert_eq!(stats(&a3).copies, 0);

    // The release: A2's daemon is told to drop its stale copy; A3 hears nothing at all.
    let (d3, mgr3) = (stats(&a3), stats(&m3));
    write(&mut w, 2);
    wait_for("the invalidation of A2's copy", || {
        let s = stats(&a2);
        s.invalidations == 1 && s.copies == 0 && s.bytes == 0
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stats(&a3), d3, "A3's daemon received something");
    assert_eq!(
        stats(&m3).from_other_clusters,
        mgr3.from_other_clusters,
        "A3's manager received something"
    );
    assert!(writer.lookup("c/x").unwrap().blocks[0].caches.is_empty());
    // The new version is read through and cached again.
    assert_eq!(read(&caching), 2);
    assert_eq!((stats(&a2).copies, stats(&a2).fills), (1, 2));

    // A block of a data group needs the room: the cache copy gives way.
    let mut big = plain
        .create::<f64, _>(
            &Solo,
            "c/big",
            ArrayOptions::new(layout(512))
                .homes_on_daemons()
                .retention(2, FullPolicy::DropOldest),
        )
        .unwrap();
    big.acquire().unwrap();
    big.put(&[0, 0], &[512, C], &vec![1.0; (512 * C) as usize])
        .unwrap();
    big.release().unwrap();
    let s = stats(&a2);
    assert_eq!((s.copies, s.evictions), (0, 1), "{s:?}");
    // A reader of A2 still reads c/x (the copy the manager still lists is gone: it falls
    // back to the home).
    assert_eq!(read(&plain), 2);
}

/// `req` on a connection as `name` of `cluster` (with that cluster's credentials): the
/// refusal's message.
fn refused(
    fed: &LocalFederation,
    addr: &str,
    (name, cluster, incarnation): (&str, &str, u64),
    req: &Request,
) -> String {
    let mut c = common::federation::forged(addr, fed, name, cluster, incarnation);
    c.send(req).unwrap();
    match c.recv::<Response>().unwrap() {
        Response::Error { code, message } => {
            assert_eq!(code, ErrorCode::Refused.as_u32(), "{message}");
            message
        }
        other => panic!("{req:?} as {name} of {cluster}: answered {other:?}"),
    }
}

#[test]
fn cache_requests_are_refused_from_whoever_may_not_send_them() {
    let fed = LocalFederation::start("caches-authz", &[("A1", 1), ("A2", 1), ("A3", 0)]);
    fed.wait_for_providers(2);
    let writer = Federation::join(fed.config("A1")).unwrap();
    let mut w = writer
        .create::<f64, _>(
            &Solo,
            "c/y",
            ArrayOptions::new(layout(4)).homes_on_daemons(),
        )
        .unwrap();
    w.acquire().unwrap();
    w.release().unwrap();
    let meta = writer.lookup("c/y").unwrap();
    let stamp = *meta.blocks[0].stamps.last().unwrap();
    let status = writer.status().unwrap();
    let of = |cluster: &str| status.iter().find(|c| c.cluster == cluster).unwrap();
    let a2 = of("A2")
        .members
        .iter()
        .find(|m| m.node.kind == NodeKind::Daemon)
        .unwrap()
        .node
        .clone();
    let m1 = of("A1").manager.addr.clone();

    // A reader of another cluster may not fill A2's daemon.
    let read = Request::CacheRead {
        array: meta.id,
        name: "c/y".into(),
        block: 0,
        stamp,
        selection: Selection::Whole,
    };
    let m = refused(&fed, &a2.addr, ("A3/reader", "A3", 1), &read);
    assert!(m.contains("caches for readers of cluster A2"), "{m}");
    assert_eq!(writer.cache_stats(&a2.addr).unwrap().fills, 0);

    // A member of A3 may not report a cache copy on A2's daemon, even under its name: readers
    // of A2 would be sent to it.
    let add = |node: &NodeInfo| Request::CacheAdd {
        array: meta.id,
        block: 0,
        stamp,
        node: node.clone(),
    };
    let forged_a2 = NodeInfo {
        cluster: "A2".into(),
        ..a2.clone()
    };
    refused(
        &fed,
        &m1,
        (&a2.name, "A3", a2.incarnation),
        &add(&forged_a2),
    );
    // Nor may a rank report one (only daemons cache for their cluster).
    let rank = NodeInfo {
        name: "A2/rank9".into(),
        kind: NodeKind::Rank,
        incarnation: 5,
        ..a2.clone()
    };
    refused(&fed, &m1, ("A2/rank9", "A2", 5), &add(&rank));
    assert!(writer.lookup("c/y").unwrap().blocks[0].caches.is_empty());

    // Only a manager invalidates.
    let inv = Request::Invalidate {
        array: meta.id,
        copies: vec![(0, stamp)],
    };
    refused(&fed, &a2.addr, ("A2/rank9", "A2", 5), &inv);
}
