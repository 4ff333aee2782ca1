//! Names without races (issue 8, item 3): a name is unique across the federation's clusters
//! under concurrent creations, a creation that cannot ask every cluster fails rather than
//! guess, and a cluster never gets two managers, even when the first one is paused.
//! Real manager processes; every wait bounded.

mod common;

use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::federation::{juxmem_bin, wait_for, wait_for_within, LocalFederation};
use juxmem::layout::{Dist, Layout};
use juxmem::{ArrayOptions, ErrorCode, Federation, Solo};

fn layout() -> Layout {
    Layout::new(&[64], &[Dist::Block], &[1]).unwrap()
}

#[test]
fn concurrent_creations_of_one_name_in_three_clusters_make_one_array() {
    let clusters = ["A", "B", "C"];
    let fed = LocalFederation::start("names-race", &[("A", 0), ("B", 0), ("C", 0)]);
    let clients: Vec<Federation> = clusters
        .iter()
        .map(|c| Federation::join(fed.config(c)).unwrap())
        .collect();
    let rounds = 20;
    let barrier = Barrier::new(clusters.len());
    // Each client keeps the arrays it created (dropping a handle does not destroy them).
    let outcomes: Vec<Vec<Result<(), ErrorCode>>> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .map(|client| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut kept = Vec::new();
                    let mut out = Vec::new();
                    for i in 0..rounds {
                        barrier.wait();
                        let r = client.create::<f64, _>(
                            &Solo,
                            &format!("race/n{i}"),
                            ArrayOptions::new(layout()),
                        );
                        out.push(match r {
                            Ok(a) => {
                                kept.push(a);
                                Ok(())
                            }
                            Err(e) => Err(e.code()),
                        });
                    }
                    (out, kept)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (out, kept) = h.join().unwrap();
                std::mem::forget(kept); // the arrays stay until the federation stops
                out
            })
            .collect()
    });
    for i in 0..rounds {
        let won: Vec<&str> = clusters
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| o[i].is_ok())
            .map(|(c, _)| *c)
            .collect();
        assert_eq!(
            won.len(),
            1,
            "race/n{i}: created in {won:?} (outcomes {:?})",
            outcomes.iter().map(|o| o[i]).collect::<Vec<_>>()
        );
        for o in &outcomes {
            if let Err(code) = o[i] {
                assert_eq!(code, ErrorCode::AlreadyExists, "race/n{i}");
            }
        }
        // Every cluster sees the one array, made by the winner's cluster.
        for client in &clients {
            let meta = client.lookup(&format!("race/n{i}")).unwrap();
            assert_eq!(meta.manager.cluster, won[0], "race/n{i}");
        }
    }
}

#[test]
fn a_creation_that_cannot_ask_a_cluster_fails_and_frees_the_name() {
    let fed = LocalFederation::start("names-unreachable", &[("A", 0), ("B", 0)]);
    fed.add_cluster_credentials("Z");
    let a = Federation::join(fed.config("A")).unwrap();
    // Cluster Z's manager is gone, its contact file left behind (nothing listens there).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let z = fed.dir().join("Z.manager");
    std::fs::write(
        &z,
        format!("cluster=Z\naddr=127.0.0.1:{port}\nincarnation=42\npid=999999\n"),
    )
    .unwrap();
    let t = Instant::now();
    let e = a
        .create::<f64, _>(&Solo, "unsure/x", ArrayOptions::new(layout()))
        .err()
        .expect("a name cannot be known free in a cluster that does not answer");
    assert_eq!(e.code(), ErrorCode::Stale, "{e}");
    assert!(
        e.to_string().contains("unsure/x") && e.to_string().contains("cluster Z"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Nothing was left behind: once Z is out of the federation, the name is free.
    std::fs::remove_file(&z).unwrap();
    let x = a.create::<f64, _>(&Solo, "unsure/x", ArrayOptions::new(layout()));
    assert!(x.is_ok(), "{:?}", x.err());
    let b = Federation::join(fed.config("B")).unwrap();
    let e = b
        .create::<f64, _>(&Solo, "unsure/x", ArrayOptions::new(layout()))
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::AlreadyExists, "{e}");
    assert!(e.to_string().contains("cluster A"), "{e}");
}

/// A process this test started, killed when dropped (also when the test fails half-way, so
/// that a paused manager is never left behind).
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            signal(&self.0, libc::SIGCONT);
            signal(&self.0, libc::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// A `juxmem manager` process for `cluster`, its output in `log`.
fn manager(fed: &LocalFederation, cluster: &str, log: &str) -> Daemon {
    let mut m = Command::new(juxmem_bin());
    m.args(["manager", "--cluster", cluster]);
    fed.env(&mut m, cluster);
    Daemon(
        m.stdout(Stdio::null())
            .stderr(std::fs::File::create(fed.dir().join(log)).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: a signal to a child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// Waits (bounded) for `child` to exit; kills it if it does not.
fn exit_within(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(child, libc::SIGKILL);
    let _ = child.wait();
    None
}

#[test]
fn a_cluster_never_gets_two_managers_even_when_the_first_is_paused() {
    let fed = LocalFederation::start("names-managers", &[("A", 0)]);
    fed.add_cluster_credentials("Z");
    let contact = fed.dir().join("Z.manager");
    let first = manager(&fed, "Z", "z1.log");
    wait_for("the first Z manager", || contact.exists());
    let first_contact = std::fs::read_to_string(&contact).unwrap();
    // Paused: it answers nobody, but it is still the cluster's manager.
    signal(&first.0, libc::SIGSTOP);
    let mut second = manager(&fed, "Z", "z2.log");
    let st = exit_within(&mut second.0, Duration::from_secs(30));
    signal(&first.0, libc::SIGCONT);
    let log = std::fs::read_to_string(fed.dir().join("z2.log")).unwrap_or_default();
    assert!(
        st.is_some_and(|s| !s.success()),
        "a second manager of Z started while the first was paused: {st:?}\n{log}"
    );
    assert!(
        log.contains("already runs") && log.contains(&format!("pid {}", first.0.id())),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&contact).unwrap(),
        first_contact,
        "the first manager's contact file was replaced"
    );
    // Once the first is gone (killed: no clean-up), a new one takes over.
    drop(first); // SIGKILL
    let mut third = manager(&fed, "Z", "z3.log");
    wait_for_within("the new Z manager", Duration::from_secs(30), || {
        std::fs::read_to_string(&contact).is_ok_and(|t| t != first_contact)
    });
    let z = Federation::join(fed.config("Z"));
    signal(&third.0, libc::SIGTERM);
    let _ = exit_within(&mut third.0, Duration::from_secs(30));
    assert!(z.is_ok(), "{:?}", z.err());
}

/// `mpirun -np N fed_check create-on-daemons NAME LEN 1 1` in cluster A.
fn create_on_daemons(
    fed: &LocalFederation,
    np: u32,
    name: &str,
    len: u64,
) -> common::mpirun::Output {
    let mut cmd = Command::new("mpirun");
    common::mpirun::mpi_env(&mut cmd);
    fed.env(&mut cmd, "A");
    cmd.arg("-np")
        .arg(np.to_string())
        .arg(common::mpirun::example("fed_check"))
        .args(["create-on-daemons", name, &len.to_string(), "1", "1"]);
    common::mpirun::run_with_timeout(cmd, Duration::from_secs(120))
}

#[test]
fn a_creation_that_finds_no_room_frees_what_it_reserved() {
    // One daemon of 1 MiB; blocks of 12288 f64 with 4 versions retained need 384 KiB each:
    // two fit, three do not.
    let settings = common::federation::Settings {
        capacity: "1MiB".into(),
        ..Default::default()
    };
    let fed = LocalFederation::start_with("names-room", &[("A", 1)], settings);
    let out = create_on_daemons(&fed, 3, "room/big", 3 * 12288);
    assert!(!out.success, "three blocks do not fit:\n{}", out.stdout);
    assert!(
        out.stderr.contains("Capacity") || out.stdout.contains("Capacity"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    // What the failed creation reserved for its first two blocks is free again.
    let out = create_on_daemons(&fed, 2, "room/small", 2 * 12288);
    assert!(
        out.success && out.stdout.contains("CREATED room/small"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}
