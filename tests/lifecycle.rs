//! Array lifecycle and memory limits on a local federation: destroy (Rust, the command; C and
//! Fortran in tests/c_abi.rs through the README's programs), creations undone when the creator
//! dies or a block does not fit, arrays too large for memory, a producer that dies while a
//! consumer waits. Every wait is bounded.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::federation::{wait_for, LocalFederation, Settings};
use common::mpirun::{example, mpi_env, run_with_timeout};
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::VersionReq;
use juxmem::{ArrayOptions, ErrorCode, Federation, Solo};

static SOLO: Solo = Solo;
const LIMIT: Duration = Duration::from_secs(120);

fn settings() -> Settings {
    Settings {
        failure_timeout: 1.0,
        timeout: 10.0,
        failpoints: None,
        capacity: "256MiB".into(),
    }
}

/// Bytes the manager has placed on the cluster's provider daemons.
fn placed(client: &Federation) -> u64 {
    client
        .status()
        .unwrap()
        .iter()
        .flat_map(|c| &c.members)
        .map(|m| m.reserved)
        .sum()
}

fn daemons_array(client: &Federation, name: &str) -> juxmem::SharedArray<'static, f64, Solo> {
    let opts = ArrayOptions::new(Layout::one_d(1 << 16, Dist::Block, 1).unwrap())
        .homes_on_daemons()
        .redundancy(1, 2);
    client.create::<f64, _>(&SOLO, name, opts).unwrap()
}

#[test]
fn destroy_frees_the_name_the_copies_and_the_memory() {
    let fed = LocalFederation::start_with("destroy", &[("A", 2)], settings());
    let client = Federation::join(fed.config("A")).unwrap();
    assert_eq!(placed(&client), 0);
    let mut a = daemons_array(&client, "life/destroy");
    a.acquire().unwrap();
    a.local_mut().unwrap().fill(3.0);
    a.release().unwrap();
    let before = placed(&client);
    // Two copies of 512 KiB, each with room for the 4 retained versions.
    assert_eq!(before, 2 * 4 * (8 << 16), "two copies placed");
    a.destroy().unwrap();
    assert_eq!(placed(&client), 0, "the memory placed goes back");
    let e = client.lookup("life/destroy").unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    // The name is free again.
    let again = daemons_array(&client, "life/destroy");
    drop(again);
    // The command does the same.
    let mut cmd = Command::new(common::federation::juxmem_bin());
    fed.env(&mut cmd, "A");
    let out = cmd.args(["destroy", "life/destroy"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        client.lookup("life/destroy").unwrap_err().code(),
        ErrorCode::NotFound
    );
    let mut cmd = Command::new(common::federation::juxmem_bin());
    fed.env(&mut cmd, "A");
    let out = cmd.args(["destroy", "life/no-such"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no array named"));
}

#[test]
fn an_array_in_use_elsewhere_is_not_destroyed_unless_forced() {
    let fed = LocalFederation::start_with("busy", &[("A", 2)], settings());
    let owner = Federation::join(fed.config("A")).unwrap();
    let other = Federation::join(fed.config("A")).unwrap();
    let a = daemons_array(&owner, "life/busy");
    let b = other
        .open::<f64, _>(
            &SOLO,
            "life/busy",
            Layout::one_d(1 << 16, Dist::Block, 1).unwrap(),
        )
        .unwrap();
    let lock = b
        .acquire_region(&[0], &[4], Duration::from_secs(5))
        .unwrap();
    let e = owner.destroy("life/busy", false).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Busy, "{e}");
    assert!(
        e.to_string().contains(&other.node().name),
        "names the holder: {e}"
    );
    owner.destroy("life/busy", true).unwrap();
    // The holder finds out with a typed error.
    let e = lock.release().unwrap_err();
    assert!(
        matches!(e.code(), ErrorCode::NotFound | ErrorCode::NotAcquired),
        "{e}"
    );
    drop(a);
    drop(b);
    assert_eq!(placed(&owner), 0);
}

#[test]
fn a_creator_killed_before_confirming_leaves_no_name_behind() {
    let fed = LocalFederation::start_with("midcreate", &[("A", 2)], settings());
    let mut create = Command::new("mpirun");
    mpi_env(&mut create);
    fed.env(&mut create, "A");
    create
        .env("JUXMEM_FAILPOINTS", "create.before_confirm=kill")
        .args(["-np", "2"])
        .arg(example("fed_check"))
        .args(["create-on-daemons", "life/midcreate", "4096", "1", "2"]);
    let out = run_with_timeout(create, LIMIT);
    assert!(
        !out.success && !out.stdout.contains("CREATED"),
        "{}",
        out.stdout
    );
    let client = Federation::join(fed.config("A")).unwrap();
    // Not visible meanwhile, and free again once the manager noticed the creator's death.
    assert_eq!(
        client.lookup("life/midcreate").unwrap_err().code(),
        ErrorCode::NotFound
    );
    let t = Instant::now();
    wait_for("the name to be free", || {
        client
            .create::<f64, _>(
                &SOLO,
                "life/midcreate",
                ArrayOptions::new(Layout::one_d(16, Dist::Block, 1).unwrap()),
            )
            .is_ok()
    });
    eprintln!("name free after {:.2} s", t.elapsed().as_secs_f64());
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_array_too_large_for_memory_fails_with_capacity_at_once() {
    let fed = LocalFederation::start_with("toolarge", &[("A", 1)], settings());
    let huge = Layout::one_d(1 << 38, Dist::Block, 1).unwrap(); // 2 TiB of f64
    for cfg in [
        fed.config("A"), // the default capacity: half the node's memory
        {
            let mut c = fed.config("A");
            c.capacity = u64::MAX; // no bound: the allocation itself must fail cleanly
            c
        },
    ] {
        let client = Federation::join(cfg).unwrap();
        let t = Instant::now();
        let e = client
            .create::<f64, _>(&SOLO, "life/huge", ArrayOptions::new(huge.clone()))
            .err()
            .expect("2 TiB does not fit");
        assert_eq!(e.code(), ErrorCode::Capacity, "{e}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // The process goes on, and the name is free.
        client
            .create::<f64, _>(
                &SOLO,
                "life/huge",
                ArrayOptions::new(Layout::one_d(16, Dist::Block, 1).unwrap()),
            )
            .unwrap()
            .destroy()
            .unwrap();
    }
}

#[test]
fn a_consumer_waiting_for_a_dead_producer_is_told_at_once() {
    let fed = LocalFederation::start_with("producer", &[("A", 2)], settings());
    let mut producer = Command::new(example("fed_check"));
    fed.env(&mut producer, "A");
    let mut producer = producer
        .args(["produce", "life/produced", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(producer.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let name = line.trim().strip_prefix("PRODUCED ").unwrap().to_string();
    let client = Federation::join(fed.config("A")).unwrap();
    let mut a = client
        .open::<f64, _>(
            &SOLO,
            "life/produced",
            Layout::one_d(16, Dist::Block, 1).unwrap(),
        )
        .unwrap();
    assert_eq!(a.acquire_read(VersionReq::Exactly(2)).unwrap(), 2);
    a.release_read().unwrap();
    let _ = producer.kill();
    let _ = producer.wait();
    let t = Instant::now();
    let e = a
        .acquire_read_timeout(VersionReq::Exactly(3), Duration::from_secs(20))
        .unwrap_err();
    eprintln!("told after {:.2} s: {e}", t.elapsed().as_secs_f64());
    assert_eq!(e.code(), ErrorCode::ProducerGone, "{e}");
    assert!(e.to_string().contains(&name), "names the producer: {e}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // What it released stays readable.
    assert_eq!(a.acquire_read(VersionReq::Latest).unwrap(), 2);
    assert_eq!(a.local().unwrap()[0], 2.0);
    a.release_read().unwrap();
}

#[test]
fn a_lost_array_is_listed_as_lost_and_can_be_destroyed() {
    let fed = LocalFederation::start_with("lost", &[("A", 1)], settings());
    let client = Federation::join(fed.config("A")).unwrap();
    let opts = ArrayOptions::new(Layout::one_d(1 << 10, Dist::Block, 1).unwrap())
        .homes_on_daemons()
        .redundancy(1, 1);
    let mut a = client.create::<f64, _>(&SOLO, "life/lost", opts).unwrap();
    a.acquire().unwrap();
    a.local_mut().unwrap().fill(1.0);
    a.release().unwrap();
    let mut fed = fed;
    fed.kill("A/provider-0"); // the only copy
    let health = |c: &Federation| -> Vec<String> {
        c.status()
            .unwrap()
            .iter()
            .flat_map(|s| &s.arrays)
            .filter(|x| x.meta.spec.name == "life/lost")
            .flat_map(|x| x.health.iter().map(|h| h.to_string()))
            .collect()
    };
    wait_for("the array listed as lost", || health(&client) == ["LOST"]);
    assert!(fed.status_text().contains("LOST"), "{}", fed.status_text());
    // Reading it says so (typed), and destroying it frees the name.
    let e = a
        .acquire_read_timeout(VersionReq::Latest, Duration::from_secs(5))
        .and_then(|_| a.local().map(|l| l[0]))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Lost, "{e}");
    a.destroy().unwrap();
    assert_eq!(
        client.lookup("life/lost").unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert!(health(&client).is_empty());
}
