//! Relaxed reads (issue 12, item 4; JuxMem's relaxed-read variant): no lock, no pin, a
//! committed version within the staleness bound the caller gives; never waiting for a writer,
//! never making one wait. Real manager processes; every wait bounded.

mod common;

use std::time::{Duration, Instant};

use common::federation::LocalFederation;
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::FullPolicy;
use juxmem::{ArrayOptions, Federation, Solo};

const N: u64 = 64;

fn layout() -> Layout {
    Layout::new(&[N], &[Dist::Block], &[1]).unwrap()
}

#[test]
fn relaxed_reads_never_wait_for_a_writer_nor_make_one_wait() {
    let fed = LocalFederation::start("relaxed", &[("A", 0), ("B", 0)]);
    let writer = Federation::join(fed.config("A")).unwrap();
    let mut w = writer
        .create::<f64, _>(
            &Solo,
            "relaxed/x",
            ArrayOptions::new(layout()).retention(2, FullPolicy::Block),
        )
        .unwrap();
    let write = |w: &mut juxmem::SharedArray<'_, f64, Solo>, x: f64| {
        w.acquire().unwrap();
        w.put(&[0], &[N], &vec![x; N as usize]).unwrap();
        w.release().unwrap()
    };
    assert_eq!(write(&mut w, 1.0), 1);

    // A monitor in another cluster, not a registered reader.
    let monitor = Federation::join(fed.config("B")).unwrap();
    let m = monitor
        .inspect::<f64, _>(&Solo, "relaxed/x", layout())
        .unwrap();
    let mut buf = vec![0.0; N as usize];

    // The writer holds the lock: a relaxed read does not wait for it.
    w.acquire().unwrap();
    w.put(&[0], &[N], &vec![2.0; N as usize]).unwrap();
    let t = Instant::now();
    let v = m.get_relaxed(&[0], &[N], &mut buf, Duration::ZERO).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(v, 1);
    assert!(
        buf.iter().all(|&x| x == 1.0),
        "a relaxed read saw uncommitted data"
    );
    assert_eq!(w.release().unwrap(), 2);

    // Within a generous bound the version learned a moment ago may be read again; with no
    // staleness allowed, the latest.
    let v = m
        .get_relaxed(&[0], &[N], &mut buf, Duration::from_secs(600))
        .unwrap();
    assert_eq!(v, 1, "the version learned within the bound");
    assert!(buf.iter().all(|&x| x == 1.0));
    let v = m.get_relaxed(&[0], &[N], &mut buf, Duration::ZERO).unwrap();
    assert_eq!(v, 2);
    assert!(buf.iter().all(|&x| x == 2.0));

    // The writer goes on (two versions retained, Block): relaxed reads in between never
    // hold it back.
    for k in 3..=8u64 {
        let t = Instant::now();
        assert_eq!(write(&mut w, k as f64), k);
        assert!(t.elapsed() < Duration::from_secs(5), "release {k} waited");
        let v = m.get_relaxed(&[0], &[N], &mut buf, Duration::ZERO).unwrap();
        assert_eq!(v, k);
        assert!(buf.iter().all(|&x| x == k as f64));
    }
    // The version learned last (8) is pruned by two more releases: a relaxed read allowed to
    // reuse it finds it gone and reads the latest instead, whole.
    write(&mut w, 9.0);
    write(&mut w, 10.0);
    let v = m
        .get_relaxed(&[0], &[N], &mut buf, Duration::from_secs(600))
        .unwrap();
    assert_eq!(v, 10, "a pruned version is replaced by the latest");
    assert!(buf.iter().all(|&x| x == 10.0), "{:?}", &buf[..4]);
}
