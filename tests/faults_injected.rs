//! Fault tests whose faults are injected in this very process (failpoints armed with
//! `juxmem::service::failpoint::arm`): a commit request lost, a commit's answer lost. Armed
//! points are process-wide, so these tests take turns.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::federation::{LocalFederation, Settings};
use juxmem::array::SharedArray;
use juxmem::layout::{Dist, Layout};
use juxmem::service::failpoint::{self, Action};
use juxmem::service::protocol::VersionReq;
use juxmem::{ArrayOptions, Federation, Solo};

static SOLO: Solo = Solo;
static TURN: Mutex<()> = Mutex::new(());

fn settings() -> Settings {
    Settings {
        failure_timeout: 1.0,
        timeout: 10.0,
        failpoints: None,
        capacity: "256MiB".into(),
    }
}

fn read_all(a: &SharedArray<'static, f64, Solo>, len: u64) -> (u64, Vec<f64>) {
    let g = a
        .acquire_region_read(&[0], &[len], VersionReq::Latest, Duration::from_secs(10))
        .unwrap();
    let mut buf = vec![-1.0; len as usize];
    g.get(&mut buf).unwrap();
    (g.version(), buf)
}

#[test]
fn a_retried_release_keeps_the_owners_own_writes() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let fed = LocalFederation::start_with("ownerretry", &[("A", 2)], settings());
    let client = Federation::join(fed.config("A")).unwrap();
    let len = 8u64;
    // One block homed on this process (the creator), a replica on a daemon.
    let opts = ArrayOptions::new(Layout::one_d(len, Dist::Block, 1).unwrap()).redundancy(1, 2);
    let mut a = client
        .create::<f64, _>(&SOLO, "inject/owner", opts)
        .unwrap();
    a.acquire().unwrap();
    a.local_mut().unwrap().fill(1.0); // the block's working copy, in place
    a.put(&[0], &[1], &[2.0]).unwrap(); // and a put into the same block
                                        // The first commit is lost: the release goes round again (the block published already).
    failpoint::arm("commit.request_lost", Action::Fail);
    assert_eq!(a.release().unwrap(), 1);
    let (version, buf) = read_all(&a, len);
    assert_eq!(version, 1);
    assert_eq!(
        buf,
        [2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        "the owner's writes survive"
    );
}

#[test]
fn a_commit_whose_answer_was_lost_is_acknowledged() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let fed = LocalFederation::start_with("lostanswer", &[("A", 2)], settings());
    let client = Federation::join(fed.config("A")).unwrap();
    let opts = ArrayOptions::new(Layout::one_d(8, Dist::Block, 1).unwrap())
        .homes_on_daemons()
        .redundancy(1, 2);
    let a = client
        .create::<f64, _>(&SOLO, "inject/lostanswer", opts)
        .unwrap();
    let mut l = a
        .acquire_region(&[0], &[8], Duration::from_secs(10))
        .unwrap();
    l.put(&[5.0; 8]).unwrap();
    // The manager commits but its answer is lost: the retry must be told it is done, not that
    // the lock is gone (the version is visible: a failure would be a lie).
    failpoint::arm("commit.reply_lost", Action::Fail);
    assert_eq!(l.release().unwrap(), 1);
    assert_eq!(read_all(&a, 8), (1, vec![5.0; 8]));
}
