//! Replicated cluster managers (issue 8): a cluster run by three manager replicas (real
//! processes) loses nothing acknowledged when its leader is SIGKILLed, elects a new leader
//! within the failure timeout + 5 s, and clients follow it by themselves. Every wait bounded;
//! every process this test starts is killed by PID when it ends.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::federation::{
    durable_dir, durable_log_path, kill_leader, leader_pid, replica_logs, start_durable_provider,
    start_replica, wait_for_within, DurableProvider, LocalFederation, ManagerReplica,
};
use juxmem::history::{self, FinalState, Op, Outcome, Recorder};
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::VersionReq;
use juxmem::{ArrayOptions, ErrorCode, Federation, SharedArray, Solo};

const N: u64 = 64;

fn layout() -> Layout {
    Layout::new(&[N], &[Dist::Block], &[1]).unwrap()
}

/// Cluster Z of `fed`, run by 3 manager replicas, once one of them leads.
fn three_replicas(fed: &LocalFederation) -> Vec<ManagerReplica> {
    fed.add_cluster_credentials("Z");
    let replicas: Vec<ManagerReplica> = (1..=3).map(|k| start_replica(fed, "Z", k, 3)).collect();
    wait_for_within("a leader of Z", Duration::from_secs(60), || {
        leader_pid(fed, "Z").is_some()
    });
    replicas
}

/// Acquire, put `x` everywhere, release: the version published.
fn write(w: &mut SharedArray<'_, f64, Solo>, x: f64) -> u64 {
    w.acquire().unwrap();
    w.put(&[0], &[N], &vec![x; N as usize]).unwrap();
    w.release().unwrap()
}

#[test]
fn the_leader_killed_during_a_burst_of_creates_loses_no_acknowledged_create() {
    let fed = LocalFederation::start("replicas-creates", &[("A", 0)]);
    let mut replicas = three_replicas(&fed);
    let client = Federation::join(fed.config("Z")).unwrap();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (outcomes, took) = std::thread::scope(|s| {
        let burst = s.spawn(|| {
            let mut out: Vec<(String, Result<(), ErrorCode>)> = Vec::new();
            let mut kept = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                let name = format!("burst/a{i}");
                match client.create::<f64, _>(&Solo, &name, ArrayOptions::new(layout())) {
                    Ok(a) => {
                        kept.push(a);
                        out.push((name, Ok(())));
                    }
                    Err(e) => {
                        eprintln!("create {name}: {e}");
                        out.push((name, Err(e.code())));
                    }
                }
                i += 1;
            }
            std::mem::forget(kept);
            out
        });
        std::thread::sleep(Duration::from_millis(1500));
        let (_, took) = kill_leader(&fed, "Z", &mut replicas);
        // The burst goes on with the new leader for a while.
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::SeqCst);
        (burst.join().unwrap(), took)
    });
    let failure_timeout = Duration::from_secs_f64(fed.settings.failure_timeout);
    assert!(
        took <= failure_timeout + Duration::from_secs(5),
        "a new leader after {took:?}\n{}",
        replica_logs(&fed, "Z", 3)
    );
    let acked: Vec<&String> = outcomes
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| n)
        .collect();
    let failed: Vec<&(String, Result<(), ErrorCode>)> =
        outcomes.iter().filter(|(_, r)| r.is_err()).collect();
    eprintln!(
        "{} creates acknowledged, {} failed ({failed:?}); new leader after {took:?}",
        acked.len(),
        failed.len()
    );
    assert!(acked.len() >= 10, "too few creates to mean anything");
    // Failures are the typed errors of an operation in flight at the kill.
    for (name, e) in &failed {
        assert!(
            matches!(
                e,
                Err(ErrorCode::NotLeader
                    | ErrorCode::Network
                    | ErrorCode::Stale
                    | ErrorCode::Timeout)
            ),
            "{name}: {e:?}"
        );
    }
    assert!(failed.len() <= 3, "{failed:?}");
    // Every acknowledged create is known to the new leader, once, under its own id; creates
    // acknowledged after the failover too (the client followed the leader).
    let reader = Federation::join(fed.config("A")).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for name in &acked {
        let meta = reader.lookup(name).unwrap_or_else(|e| {
            panic!(
                "{name}, acknowledged, is gone: {e}\n{}",
                replica_logs(&fed, "Z", 3)
            )
        });
        assert!(ids.insert(meta.id), "{name}: id {} given twice", meta.id);
    }
    let last = outcomes.iter().rposition(|(_, r)| r.is_ok()).unwrap();
    assert!(
        last > outcomes.len() / 2,
        "no create acknowledged after the failover: {outcomes:?}"
    );
}

#[test]
fn a_lock_put_unlock_loop_rides_over_a_leader_kill() {
    let fed = LocalFederation::start("replicas-loop", &[("A", 0)]);
    let mut replicas = three_replicas(&fed);
    let writer = Federation::join(fed.config("Z")).unwrap();
    let mut w = writer
        .create::<f64, _>(&Solo, "loop/x", ArrayOptions::new(layout()))
        .unwrap();
    // A reader in another cluster reads the latest version all along.
    let reader = Federation::join(fed.config("A")).unwrap();
    let mut r = reader.open::<f64, _>(&Solo, "loop/x", layout()).unwrap();
    let rec = Recorder::new();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (acked, retried, reads) = std::thread::scope(|s| {
        let run = s.spawn(|| {
            // (value written, version acknowledged)
            let mut acked: Vec<(f64, u64)> = Vec::new();
            let mut retried = Vec::new();
            let mut x = 1.0;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                let p = rec.begin("writer", Op::Write { value: x as u64 });
                let step = (|| {
                    w.acquire()?;
                    w.put(&[0], &[N], &vec![x; N as usize])?;
                    w.release()
                })();
                match step {
                    Ok(v) => {
                        let done = Outcome::Ok {
                            version: v,
                            value: x as u64,
                        };
                        rec.finish(p, done).unwrap();
                        acked.push((x, v));
                    }
                    // The application goes on with the next value; what failed may or may not
                    // have taken effect (the history checker decides from the reads).
                    Err(e) => {
                        eprintln!("step {x}: {e}");
                        rec.finish(p, Outcome::Unknown).unwrap();
                        retried.push(e.code());
                        if retried.len() > 20 {
                            break; // it does not recover: the assertions below say how
                        }
                    }
                }
                x += 1.0;
            }
            (acked, retried)
        });
        let read = s.spawn(|| {
            let mut reads = 0;
            let mut buf = vec![0.0; N as usize];
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                let p = rec.begin("reader", Op::Read);
                let got = r.acquire_read(VersionReq::Latest).and_then(|v| {
                    r.get(&[0], &[N], &mut buf)?;
                    r.release_read()?;
                    Ok(v)
                });
                let outcome = match got {
                    Ok(v) if buf.iter().all(|&b| b == buf[0]) => Outcome::Ok {
                        version: v,
                        value: buf[0] as u64,
                    },
                    Ok(v) => panic!("version {v} read torn: {:?}", &buf[..4]),
                    Err(e) => {
                        eprintln!("read: {e}");
                        Outcome::failed(e)
                    }
                };
                rec.finish(p, outcome).unwrap();
                reads += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            reads
        });
        std::thread::sleep(Duration::from_millis(1500));
        let (_, took) = kill_leader(&fed, "Z", &mut replicas);
        eprintln!("new leader after {took:?}");
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::SeqCst);
        let (acked, retried) = run.join().unwrap();
        (acked, retried, read.join().unwrap())
    });
    eprintln!(
        "{} steps acknowledged, {reads} reads; retried: {retried:?}",
        acked.len()
    );
    assert!(acked.len() >= 10, "{acked:?}");
    assert!(reads >= 10, "{reads} reads");
    for e in &retried {
        assert!(
            matches!(
                e,
                ErrorCode::NotLeader
                    | ErrorCode::Network
                    | ErrorCode::Stale
                    | ErrorCode::Timeout
                    | ErrorCode::NotAcquired
                    | ErrorCode::Fenced
            ),
            "{retried:?}"
        );
    }
    // A reader gets the last acknowledged version, with its values, and the whole history
    // (writes and the concurrent reads) checks: no acknowledged write lost, no aborted one
    // visible, real time respected.
    let (x, v) = *acked.last().unwrap();
    let got = r.acquire_read(VersionReq::Latest).unwrap();
    let mut buf = vec![0.0; N as usize];
    r.get(&[0], &[N], &mut buf).unwrap();
    assert_eq!(
        got, v,
        "the latest version is not the last acknowledged one"
    );
    assert!(
        buf.iter().all(|&b| b == x),
        "version {got} holds {:?}, not {x}",
        &buf[..4]
    );
    let report = history::check(
        &rec.records(),
        Some(&FinalState {
            latest: got,
            versions: vec![(got, x as u64)],
        }),
    );
    assert!(report.is_ok(), "{report}");
    eprintln!("history: {report}");
}

#[test]
fn every_replica_restarted_on_its_data_directory_brings_the_arrays_back() {
    let fed = LocalFederation::start("replicas-restart", &[("A", 0)]);
    let replicas = three_replicas(&fed);
    // The writer (home of the only block) lives on; every manager replica dies.
    let writer = Federation::join(fed.config("Z")).unwrap();
    let mut w = writer
        .create::<f64, _>(&Solo, "restart/x", ArrayOptions::new(layout()))
        .unwrap();
    for x in 1..=5 {
        assert_eq!(write(&mut w, x as f64), x);
    }
    // A namespace is in the replicated book too.
    writer.create_namespace("restart").unwrap();
    let old: Vec<u32> = replicas.iter().map(|r| r.pid()).collect();
    drop(replicas); // SIGKILL, all three
    let replicas: Vec<ManagerReplica> = (1..=3).map(|k| start_replica(&fed, "Z", k, 3)).collect();
    wait_for_within(
        "a leader of Z after the restart",
        Duration::from_secs(60),
        || leader_pid(&fed, "Z").is_some_and(|p| !old.contains(&p)),
    );
    // A reader elsewhere gets the last acknowledged version, placed where it was.
    let reader = Federation::join(fed.config("A")).unwrap();
    let read = |want: u64| {
        let mut r = reader
            .open::<f64, _>(&Solo, "restart/x", layout())
            .unwrap_or_else(|e| panic!("after the restart: {e}\n{}", replica_logs(&fed, "Z", 3)));
        let got = r.acquire_read(VersionReq::Latest).unwrap();
        let mut buf = vec![0.0; N as usize];
        r.get(&[0], &[N], &mut buf).unwrap();
        assert_eq!(got, want, "the latest version after the restart");
        assert!(buf.iter().all(|&b| b == want as f64), "{:?}", &buf[..4]);
        let home = r.meta().blocks[0].home.as_ref().map(|h| h.name.clone());
        assert_eq!(home.as_deref(), Some(writer.node().name.as_str()));
    };
    let t = Instant::now();
    read(5);
    eprintln!("read after the restart in {:?}", t.elapsed());
    let ns = reader.namespaces("*").unwrap();
    assert_eq!(ns.len(), 1, "{ns:?}");
    assert_eq!(
        (ns[0].name.as_str(), ns[0].cluster.as_str()),
        ("restart", "Z")
    );
    // And the writer goes on with the new leader.
    assert_eq!(write(&mut w, 6.0), 6);
    read(6);
    // The clients leave while their manager runs.
    drop(w);
    drop(reader);
    drop(writer);
    drop(replicas);
}

/// What cluster Z's replicas and its durable providers logged, for failure messages.
fn cluster_logs(fed: &LocalFederation, labels: &[&str]) -> String {
    let mut text = replica_logs(fed, "Z", 3);
    for l in labels {
        let log = std::fs::read_to_string(durable_log_path(fed, "Z", l)).unwrap_or_default();
        text.push_str(&format!("--- provider {l}:\n{log}"));
    }
    text
}

/// Each block's placement term, home and replicas (by name).
fn where_(blocks: &[juxmem::service::protocol::BlockPlacement]) -> Vec<(u64, String, Vec<String>)> {
    blocks
        .iter()
        .map(|b| {
            (
                b.term,
                b.home.as_ref().map(|h| h.name.clone()).unwrap_or_default(),
                b.replicas.iter().map(|r| r.name.clone()).collect(),
            )
        })
        .collect()
}

/// Block files (`a<id>.b<block>...`) in a provider's data directory.
fn block_files(fed: &LocalFederation, label: &str) -> usize {
    std::fs::read_dir(durable_dir(fed, "Z", label))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with('a'))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_whole_cluster_stopped_and_started_on_its_data_directories_serves_the_last_version() {
    const LABELS: [&str; 2] = ["p1", "p2"];
    let fed = LocalFederation::start("replicas-whole", &[("A", 0)]);
    let replicas = three_replicas(&fed);
    let providers: Vec<DurableProvider> = LABELS
        .iter()
        .map(|l| start_durable_provider(&fed, "Z", l))
        .collect();
    let started = |times: usize| {
        LABELS.iter().all(|l| {
            std::fs::read_to_string(durable_log_path(&fed, "Z", l))
                .is_ok_and(|t| t.matches("offering").count() >= times)
        })
    };
    wait_for_within("Z's providers", Duration::from_secs(60), || started(1));
    // Homes and replicas on the two daemons: the job that writes goes away.
    let layout = layout();
    let placement = {
        let writer = Federation::join(fed.config("Z")).unwrap();
        let mut w = writer
            .create::<f64, _>(
                &Solo,
                "whole/x",
                ArrayOptions::new(layout.clone())
                    .homes_on_daemons()
                    .redundancy(1, 2),
            )
            .unwrap_or_else(|e| panic!("create: {e}\n{}", cluster_logs(&fed, &LABELS)));
        for x in 1..=5 {
            assert_eq!(write(&mut w, x as f64), x);
        }
        where_(&w.meta().blocks)
    };
    assert!(
        placement
            .iter()
            .all(|(_, home, replicas)| home.starts_with("Z/p") && replicas.len() == 1),
        "{placement:?}"
    );
    // Every manager replica and then every provider of Z SIGKILLed (managers first: a
    // provider whose death its manager records is handed over, as after any failure), then
    // started again on their data directories: p1 with the managers (it waits for a leader),
    // p2 late, past the failure timeout after the leader took office (the resume grace, 30 s
    // by default, covers it).
    let old: Vec<u32> = replicas.iter().map(|r| r.pid()).collect();
    drop(replicas);
    drop(providers);
    let replicas: Vec<ManagerReplica> = (1..=3).map(|k| start_replica(&fed, "Z", k, 3)).collect();
    let mut providers = vec![start_durable_provider(&fed, "Z", LABELS[0])];
    wait_for_within(
        "a leader of Z after the restart",
        Duration::from_secs(60),
        || leader_pid(&fed, "Z").is_some_and(|p| !old.contains(&p)),
    );
    std::thread::sleep(Duration::from_secs(5));
    providers.push(start_durable_provider(&fed, "Z", LABELS[1]));
    wait_for_within("Z's providers resumed", Duration::from_secs(60), || {
        started(2)
    });
    assert!(
        !cluster_logs(&fed, &LABELS).contains("starting as a new member"),
        "{}",
        cluster_logs(&fed, &LABELS)
    );
    let reader = Federation::join(fed.config("A")).unwrap();
    let read = |want: u64| {
        let mut r = reader
            .open::<f64, _>(&Solo, "whole/x", layout.clone())
            .unwrap_or_else(|e| panic!("after the restart: {e}\n{}", cluster_logs(&fed, &LABELS)));
        let got = r
            .acquire_read(VersionReq::Latest)
            .unwrap_or_else(|e| panic!("after the restart: {e}\n{}", cluster_logs(&fed, &LABELS)));
        let mut buf = vec![0.0; N as usize];
        r.get(&[0], &[N], &mut buf)
            .unwrap_or_else(|e| panic!("after the restart: {e}\n{}", cluster_logs(&fed, &LABELS)));
        assert_eq!(got, want, "the latest version after the restart");
        assert!(buf.iter().all(|&b| b == want as f64), "{:?}", &buf[..4]);
        where_(&r.meta().blocks)
    };
    let t = Instant::now();
    let after = read(5);
    eprintln!("read after the whole restart in {:?}", t.elapsed());
    assert_eq!(
        after, placement,
        "placements (homes, replicas, terms) came back"
    );
    // The cluster goes on: a new writer releases version 6.
    {
        let writer = Federation::join(fed.config("Z")).unwrap();
        let mut w = writer
            .open::<f64, _>(&Solo, "whole/x", layout.clone())
            .unwrap();
        assert_eq!(write(&mut w, 6.0), 6);
    }
    read(6);
    // A provider that stays down past the failure timeout is declared dead (its copies handed
    // over); started again on its data directory, it is refused as its former self and starts
    // as a new member, its directory emptied. The data is still read from the other copy.
    let gone = providers.remove(0);
    assert!(block_files(&fed, &gone.label) > 0);
    drop(gone);
    wait_for_within("p1 declared dead", Duration::from_secs(30), || {
        replica_logs(&fed, "Z", 3).contains("Z/p1 declared dead")
    });
    providers.push(start_durable_provider(&fed, "Z", "p1"));
    wait_for_within("p1 as a new member", Duration::from_secs(60), || {
        std::fs::read_to_string(durable_log_path(&fed, "Z", "p1"))
            .is_ok_and(|t| t.contains("starting as a new member"))
    });
    // What it held is not deleted: it was moved aside for an operator.
    let aside = std::fs::read_dir(durable_dir(&fed, "Z", "p1"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("stale-"))
        .expect("a stale- directory");
    assert!(std::fs::read_dir(aside.path()).unwrap().count() > 0);
    read(6);
    drop(reader);
    drop(providers);
    drop(replicas);
}

/// `juxmem manager add|remove K` in cluster Z; its output.
fn change(fed: &LocalFederation, what: &str, id: u64) -> std::process::Output {
    let mut cmd = std::process::Command::new(common::federation::juxmem_bin());
    cmd.args(["manager", what, &id.to_string(), "--cluster", "Z"]);
    fed.env(&mut cmd, "Z");
    cmd.output().unwrap()
}

#[test]
fn replicas_are_added_and_removed_by_command() {
    let fed = LocalFederation::start("replicas-change", &[("A", 0)]);
    let mut replicas = three_replicas(&fed);
    let writer = Federation::join(fed.config("Z")).unwrap();
    let mut w = writer
        .create::<f64, _>(&Solo, "change/x", ArrayOptions::new(layout()))
        .unwrap();
    assert_eq!(write(&mut w, 1.0), 1);
    // Replica 4 joins, replica 1 leaves.
    replicas.push(common::federation::start_joining_replica(&fed, "Z", 4));
    let out = change(&fed, "add", 4);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = change(&fed, "remove", 1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Replica 1 is killed; bad requests are typed errors: no id, or a replica that did not
    // start (it would count in every majority).
    replicas.retain(|r| r.id != 1);
    let out = change(&fed, "add", 0);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("replica id"));
    let out = change(&fed, "add", 9);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("has not started"),
        "{err}"
    );
    // The replicas are now 2, 3, 4: with one more of them killed, the two left (replica 4
    // among them unless it was the one) still make a majority and serve.
    wait_for_within("replica 4 caught up", Duration::from_secs(30), || {
        fed.status_text().contains("replica 4 at")
    });
    let status = fed.status_text();
    assert!(!status.contains("replica 1 at"), "{status}");
    let victim = match leader_pid(&fed, "Z") {
        Some(p) if replicas.iter().any(|r| r.id == 4 && r.pid() == p) => 2,
        _ => 0, // the leader
    };
    if victim == 0 {
        kill_leader(&fed, "Z", &mut replicas);
    } else {
        replicas.retain(|r| r.id != victim);
    }
    assert_eq!(write(&mut w, 2.0), 2, "{}", replica_logs(&fed, "Z", 4));
    let reader = Federation::join(fed.config("A")).unwrap();
    let mut r = reader.open::<f64, _>(&Solo, "change/x", layout()).unwrap();
    assert_eq!(r.acquire_read(VersionReq::Latest).unwrap(), 2);
    drop(r);
    drop(reader);
    drop(w);
    drop(writer);
}
