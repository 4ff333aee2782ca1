//! Non-blocking gets and puts (issue 12, item 1; P3's p3send/p3bind, Global Arrays'
//! NGA_NbGet/NGA_NbPut): several in flight at once, every element where it belongs, refusals
//! at the call, a release that waits for its epoch's puts (and refuses to publish without one
//! that failed unseen), and a closed handle ending its requests with a typed error. Real
//! daemons; every wait bounded.

mod common;

use std::time::{Duration, Instant};

use common::federation::{wait_for, LocalFederation, Settings};
use juxmem::error::ErrorCode;
use juxmem::layout::{Dist, Layout};
use juxmem::service::failpoint::{self, Action};
use juxmem::service::protocol::{FullPolicy, VersionReq};
use juxmem::{ArrayOptions, Federation, Solo};

const R: u64 = 64;
const C: u64 = 48;

/// Element (i, j) of version `v`.
fn value(i: u64, j: u64, v: u64) -> f64 {
    (v * 100_000 + i * C + j) as f64
}

/// Rows `rows` of version `v`, row-major.
fn rows(rows: std::ops::Range<u64>, v: u64) -> Vec<f64> {
    rows.flat_map(|i| (0..C).map(move |j| value(i, j, v)))
        .collect()
}

/// Checks a compact buffer holding the region `[lo, hi)` of version `v`.
fn check(buf: &[f64], lo: [u64; 2], hi: [u64; 2], v: u64) {
    let w = (hi[1] - lo[1]) as usize;
    assert_eq!(buf.len(), (hi[0] - lo[0]) as usize * w);
    for (k, &x) in buf.iter().enumerate() {
        let (i, j) = (lo[0] + (k / w) as u64, lo[1] + (k % w) as u64);
        assert_eq!(x, value(i, j, v), "element ({i}, {j}) of version {v}");
    }
}

fn code<T>(r: juxmem::Result<T>) -> ErrorCode {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code(),
    }
}

#[test]
fn nonblocking_gets_and_puts_deliver_every_element_and_end_with_their_handle() {
    // A short JUXMEM_TIMEOUT bounds the transfer held up by a paused provider below; a long
    // failure timeout keeps that provider a member meanwhile.
    let settings = Settings {
        timeout: 3.0,
        failure_timeout: 30.0,
        ..Settings::default()
    };
    let fed = LocalFederation::start_with("nonblocking", &[("A", 2), ("B", 0)], settings);
    fed.wait_for_providers(2);
    let writer = Federation::join(fed.config("A")).unwrap();
    let layout = Layout::new(&[R, C], &[Dist::Block, Dist::Block], &[1, 1]).unwrap();
    let mut w = writer
        .create::<f64, _>(&Solo, "nb/x", ArrayOptions::new(layout).homes_on_daemons())
        .unwrap();

    // Four bands in flight at once; the fourth is issued before any is waited for.
    w.acquire().unwrap();
    let band = R / 4;
    let puts: Vec<_> = (0..4)
        .map(|k| {
            let buf = rows(k * band..(k + 1) * band, 1);
            w.put_nb(&[k * band, 0], &[(k + 1) * band, C], buf).unwrap()
        })
        .collect();
    for p in puts {
        p.wait().unwrap();
    }
    assert_eq!(w.release().unwrap(), 1);

    // A put never waited for: the release waits for it and publishes it.
    w.acquire().unwrap();
    drop(w.put_nb(&[0, 0], &[R, C], rows(0..R, 2)).unwrap());
    assert_eq!(w.release().unwrap(), 2);

    // A reader in another cluster: quarters in flight together, and the whole array into a
    // buffer with a padded leading dimension (the padding untouched).
    let reader = Federation::join(fed.config("B")).unwrap();
    let mut r = reader
        .open::<f64, _>(
            &Solo,
            "nb/x",
            Layout::new(&[R, C], &[Dist::Block, Dist::Block], &[1, 1]).unwrap(),
        )
        .unwrap();
    assert_eq!(r.acquire_read(VersionReq::Exactly(1)).unwrap(), 1);
    let (hr, hc) = (R / 2, C / 2);
    let quarters = [
        ([0, 0], [hr, hc]),
        ([0, hc], [hr, C]),
        ([hr, 0], [R, hc]),
        ([hr, hc], [R, C]),
    ];
    let gets: Vec<_> = quarters
        .iter()
        .map(|(lo, hi)| r.get_nb(lo, hi, vec![0.0; (hr * hc) as usize]).unwrap())
        .collect();
    let ld = C + 5;
    let padded = r
        .get_nb_ld(&[0, 0], &[R, C], vec![-1.0; (R * ld) as usize], Some(&[ld]))
        .unwrap();
    for ((lo, hi), g) in quarters.iter().zip(gets) {
        check(&g.wait().unwrap(), *lo, *hi, 1);
    }
    let b = padded.wait().unwrap();
    for i in 0..R {
        let row = &b[(i * ld) as usize..((i + 1) * ld) as usize];
        check(&row[..C as usize], [i, 0], [i + 1, C], 1);
        assert!(
            row[C as usize..].iter().all(|&x| x == -1.0),
            "padding of row {i} written"
        );
    }
    r.release_read().unwrap();
    assert_eq!(r.acquire_read(VersionReq::Exactly(2)).unwrap(), 2);
    let mut g = r
        .get_nb(&[0, 0], &[R, C], vec![0.0; (R * C) as usize])
        .unwrap();
    let all = g
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the get ended within 30 s");
    check(&all, [0, 0], [R, C], 2);
    assert_eq!(
        code(g.wait_timeout(Duration::from_secs(1))),
        ErrorCode::InvalidArgument,
        "an outcome is given once"
    );

    // Refused at the call: a put under a read, a bad region, a buffer of the wrong size; and
    // anything without an acquire.
    let whole = || vec![0.0; (R * C) as usize];
    assert_eq!(
        code(r.put_nb(&[0, 0], &[R, C], whole())),
        ErrorCode::NotAcquired
    );
    assert_eq!(
        code(r.get_nb(&[0, 0], &[R + 1, C], whole())),
        ErrorCode::OutOfBounds
    );
    assert_eq!(
        code(r.get_nb(&[0, 0], &[R, C], vec![0.0; 3])),
        ErrorCode::BufferSize
    );
    r.release_read().unwrap();
    assert_eq!(
        code(r.get_nb(&[0, 0], &[R, C], whole())),
        ErrorCode::NotAcquired
    );

    // A failed put nobody waited for fails the release, on every rank, and nothing is
    // published; one that was waited for (its failure seen) does not.
    failpoint::arm("put_nb.transfer", Action::Fail);
    w.acquire().unwrap();
    let p = w.put_nb(&[0, 0], &[R, C], rows(0..R, 3)).unwrap();
    wait_for("the armed put to fail", || p.test());
    let e = w.release().unwrap_err();
    assert!(e.to_string().contains("not waited for"), "{e}");
    assert_eq!(writer.lookup("nb/x").unwrap().committed, 2);
    assert_eq!(code(p.wait()), ErrorCode::Network);
    failpoint::arm("put_nb.transfer", Action::Fail);
    w.acquire().unwrap();
    assert_eq!(
        code(w.put_nb(&[0, 0], &[R, C], rows(0..R, 9)).unwrap().wait()),
        ErrorCode::Network
    );
    w.put(&[0, 0], &[R, C], &rows(0..R, 3)).unwrap();
    assert_eq!(w.release().unwrap(), 3);

    // A get held up by a paused provider: still under way for test and a short wait; the
    // handle's close waits for the attempt under way and ends the request with a typed error
    // (the buffer is never written after the close).
    assert_eq!(r.acquire_read(VersionReq::Exactly(3)).unwrap(), 3);
    let home = reader.lookup("nb/x").unwrap().blocks[0]
        .home
        .clone()
        .unwrap()
        .name;
    fed.pause(&home);
    let mut g = r.get_nb(&[0, 0], &[R, C], whole()).unwrap();
    assert!(!g.test());
    assert!(
        g.wait_timeout(Duration::from_millis(300))
            .unwrap()
            .is_none(),
        "still under way"
    );
    assert!(
        !g.test(),
        "the transfer goes on after a wait that timed out"
    );
    let t = Instant::now();
    drop(r);
    let closed = t.elapsed();
    fed.resume(&home);
    assert!(g.test(), "the close waited for the request");
    let e = g.wait().unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotAcquired, "{e}");
    assert!(e.to_string().contains("closed"), "{e}");
    assert!(
        closed < Duration::from_secs(20),
        "the close took {closed:?}"
    );
}

#[test]
fn a_nonblocking_acquire_read_waits_for_its_version_while_the_caller_goes_on() {
    let fed = LocalFederation::start("nb-acquire", &[("A", 1), ("B", 0)]);
    fed.wait_for_providers(1);
    let writer = Federation::join(fed.config("A")).unwrap();
    let layout = || Layout::new(&[R, C], &[Dist::Block, Dist::Block], &[1, 1]).unwrap();
    let mut w = writer
        .create::<f64, _>(
            &Solo,
            "nb/acq",
            ArrayOptions::new(layout())
                .homes_on_daemons()
                .retention(4, FullPolicy::Block),
        )
        .unwrap();
    let write = |w: &mut juxmem::SharedArray<'_, f64, Solo>, v: u64| {
        w.acquire().unwrap();
        w.put(&[0, 0], &[R, C], &rows(0..R, v)).unwrap();
        assert_eq!(w.release().unwrap(), v);
    };
    write(&mut w, 1);

    let reader = Federation::join(fed.config("B")).unwrap();
    let mut r = reader.open::<f64, _>(&Solo, "nb/acq", layout()).unwrap();
    assert_eq!(
        code(r.acquire_read_wait()),
        ErrorCode::NotAcquired,
        "none started"
    );

    // Version 2 does not exist yet: the request is under way while the writer produces it.
    r.acquire_read_nb(VersionReq::Exactly(2)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!r.acquire_read_test(), "ended before version 2 existed");
    assert_eq!(
        code(r.acquire()),
        ErrorCode::NotAcquired,
        "acquire while one is under way"
    );
    assert_eq!(
        code(r.acquire_read_nb(VersionReq::Latest)),
        ErrorCode::NotAcquired,
        "a second one"
    );
    write(&mut w, 2);
    wait_for("the acquire_read to end", || r.acquire_read_test());
    assert_eq!(r.acquire_read_wait().unwrap(), 2);
    check(&r.local().unwrap(), [0, 0], [R, C], 2);
    r.release_read().unwrap();

    // One that times out leaves the handle as it was: usable again.
    r.acquire_read_nb_timeout(VersionReq::Exactly(9), Duration::from_millis(500))
        .unwrap();
    let e = r.acquire_read_wait().unwrap_err();
    assert_eq!(e.code(), ErrorCode::Timeout, "{e}");
    assert_eq!(r.acquire_read(VersionReq::Latest).unwrap(), 2);
    check(&r.local().unwrap(), [0, 0], [R, C], 2);
    r.release_read().unwrap();

    // get_version_nb holds a version, reads it and lets it go on its own thread, with no
    // acquire: version 3 does not exist yet, so that request is under way while one of
    // version 2 ends.
    let whole = || vec![0.0; (R * C) as usize];
    let part = || vec![0.0; (32 * 26) as usize];
    let wait = Duration::from_secs(30);
    let g3 = r
        .get_version_nb(&[8, 4], &[40, 30], VersionReq::Exactly(3), part(), wait)
        .unwrap();
    let g2 = r
        .get_version_nb(&[0, 0], &[R, C], VersionReq::Exactly(2), whole(), wait)
        .unwrap();
    let (v, buf) = g2.wait().unwrap();
    assert_eq!(v, 2);
    check(&buf, [0, 0], [R, C], 2);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!g3.test(), "ended before version 3 existed");
    write(&mut w, 3);
    let (v, buf) = g3.wait().unwrap();
    assert_eq!(v, 3);
    check(&buf, [8, 4], [40, 30], 3);
    let (v, buf) = r
        .get_version_nb(&[0, 0], &[R, C], VersionReq::Latest, whole(), wait)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(v, 3);
    check(&buf, [0, 0], [R, C], 3);
    // Refused at the call: a region out of bounds, a buffer of the wrong size.
    let over = r.get_version_nb(&[0, 0], &[R + 1, C], VersionReq::Latest, whole(), wait);
    assert_eq!(code(over), ErrorCode::OutOfBounds);
    let short = r.get_version_nb(&[0, 0], &[R, C], VersionReq::Latest, part(), wait);
    assert_eq!(code(short), ErrorCode::BufferSize);
    // A version that never comes: a timeout, at the wait.
    let never = r
        .get_version_nb(
            &[0, 0],
            &[R, C],
            VersionReq::Exactly(9),
            whole(),
            Duration::from_millis(300),
        )
        .unwrap();
    assert_eq!(code(never.wait()), ErrorCode::Timeout);
    // The writer's own request for the version its next release makes: that release does not
    // wait for it (it would wait for itself).
    let next = w
        .get_version_nb(&[0, 0], &[R, C], VersionReq::Exactly(4), whole(), wait)
        .unwrap();
    let t = Instant::now();
    write(&mut w, 4);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let (v, buf) = next.wait().unwrap();
    assert_eq!(v, 4);
    check(&buf, [0, 0], [R, C], 4);
    // Closing a handle ends its wait for a version that does not come, within a second or so,
    // not at the request's timeout.
    let h = reader.inspect::<f64, _>(&Solo, "nb/acq", layout()).unwrap();
    let g = h
        .get_version_nb(&[0, 0], &[R, C], VersionReq::Exactly(99), whole(), wait)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    drop(h);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let e = g.wait().unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotAcquired, "{e}");

    // A block homed on this process, its working copy lent to foreign code (as C's
    // juxmem_array_local_write does): requests that would run beside the caller are refused;
    // once the release ends the loan, they go again.
    let mut own = writer
        .create::<f64, _>(&Solo, "nb/own", ArrayOptions::new(layout()))
        .unwrap();
    own.acquire().unwrap();
    own.local_raw(true).unwrap();
    assert_eq!(code(own.get_nb(&[0, 0], &[R, C], whole())), ErrorCode::Busy);
    assert_eq!(code(own.put_nb(&[0, 0], &[R, C], whole())), ErrorCode::Busy);
    own.put(&[0, 0], &[R, C], &rows(0..R, 1)).unwrap();
    assert_eq!(own.release().unwrap(), 1);
    own.acquire().unwrap();
    check(
        &own.get_nb(&[0, 0], &[R, C], whole())
            .unwrap()
            .wait()
            .unwrap(),
        [0, 0],
        [R, C],
        1,
    );
    own.release().unwrap();

    // Closed with its version arrived but not completed: its pin goes (one left behind would
    // make the destroy Busy, as a get_version_nb's left behind would).
    r.acquire_read_nb(VersionReq::Exactly(2)).unwrap();
    wait_for("the version to arrive", || r.acquire_read_test());
    drop(r);
    w.destroy().unwrap();
}

#[test]
fn in_a_group_a_failed_put_fails_every_ranks_release_and_an_exact_read_needs_no_collective() {
    let fed = LocalFederation::start("nb-group", &[("A", 0)]);
    let mut cmd = std::process::Command::new("mpirun");
    common::mpirun::mpi_env(&mut cmd);
    fed.env(&mut cmd, "A");
    cmd.args(["-np", "2"])
        .arg(common::mpirun::example("fed_check"))
        .arg("nb-group");
    let out = common::mpirun::run_with_timeout(cmd, Duration::from_secs(180));
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert!(out.success, "{all}");
    // The failing rank reports its own failure; the other, the same code from it.
    assert!(
        out.stdout.contains("NBFAIL rank 1 refused Network"),
        "{all}"
    );
    assert!(
        out.stdout.contains("NBFAIL rank 0 refused Network"),
        "{all}"
    );
    assert!(out.stdout.contains("not waited for"), "{all}");
    assert!(out.stdout.contains("NBFAIL committed 0"), "{all}");
    for rank in 0..2 {
        assert!(
            out.stdout.contains(&format!(
                "NBREAD rank {rank} version 1 of 1 whole true latest Err(InvalidArgument)"
            )),
            "{all}"
        );
    }
}
