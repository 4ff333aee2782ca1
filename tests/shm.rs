//! Shared memory on one host (issue 11, item 4): a reader on the holder's host copies its
//! pieces out of the holder's segments instead of reading them over TCP, sees every version
//! whole while the holder reuses its segments, and keeps its mappings; small reads still go
//! over the network, as do processes that ask for TCP; a full segment directory is a typed
//! error naming its sizes. Real daemons;
//! every wait bounded.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::federation::{LocalFederation, Settings};
use juxmem::error::ErrorCode;
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::{FullPolicy, VersionReq};
use juxmem::transport::shm;
use juxmem::{ArrayOptions, Federation, Solo};

/// 1024 x 512 f64: a 4 MiB block, in shared memory at its holder.
const R: u64 = 1024;
const C: u64 = 512;

fn value(k: u64, v: u64) -> f64 {
    (v * 10_000_000 + k) as f64
}

fn whole() -> Layout {
    Layout::new(&[R, C], &[Dist::Block, Dist::Block], &[1, 1]).unwrap()
}

#[test]
fn same_host_reads_map_the_holders_memory_and_see_every_version() {
    let fed = LocalFederation::start("shm", &[("A", 1)]);
    fed.wait_for_providers(1);
    let writer = Federation::join(fed.config("A")).unwrap();
    // Two versions kept: each release retires one, whose segment the daemon reuses.
    let opts = ArrayOptions::new(whole())
        .homes_on_daemons()
        .retention(2, FullPolicy::DropOldest);
    let w = writer.create::<f64, _>(&Solo, "shm/x", opts).unwrap();
    let reader = Federation::join(fed.config("A")).unwrap();
    let mut r = reader.open::<f64, _>(&Solo, "shm/x", whole()).unwrap();
    let mut w = w;

    let before = shm::counters();
    let versions = 8;
    for v in 1..=versions {
        w.acquire().unwrap();
        let data: Vec<f64> = (0..R * C).map(|k| value(k, v)).collect();
        w.put(&[0, 0], &[R, C], &data).unwrap();
        assert_eq!(w.release().unwrap(), v);

        assert_eq!(r.acquire_read(VersionReq::Exactly(v)).unwrap(), v);
        let bad = r
            .local()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|&(k, &x)| x != value(k as u64, v))
            .count();
        assert_eq!(bad, 0, "version {v}: {bad} elements wrong");
        r.release_read().unwrap();
    }
    let after = shm::counters();
    let reads = after.reads - before.reads;
    let mappings = after.mappings - before.mappings;
    eprintln!("{reads} reads through shared memory, {mappings} mappings made");
    // Each version is read by the reader, and by the writer's acquire (its part, to write on).
    assert!(
        reads >= versions,
        "every version read out of the daemon's shared memory ({reads} reads)"
    );
    assert!(
        mappings < reads,
        "the daemon's reused segments are read through kept mappings ({mappings} made for {reads} reads)"
    );

    // A small region is read over the network (a mapping would cost more).
    r.acquire_read(VersionReq::Latest).unwrap();
    let after = shm::counters();
    let mut row = vec![0.0; C as usize];
    r.get(&[3, 0], &[4, C], &mut row).unwrap();
    assert!(row
        .iter()
        .enumerate()
        .all(|(j, &x)| x == value(3 * C + j as u64, versions)));
    r.release_read().unwrap();
    assert_eq!(
        shm::counters().reads,
        after.reads,
        "a small read stays on the socket"
    );

    // A process that asks for TCP (JUXMEM_TRANSPORT=tcp) reads the whole block over it.
    let tcp_cfg = juxmem::config::Config {
        transport: juxmem::transport::verbs::Transport::Tcp,
        ..fed.config("A")
    };
    let tcp_reader = Federation::join(tcp_cfg).unwrap();
    let mut t = tcp_reader.open::<f64, _>(&Solo, "shm/x", whole()).unwrap();
    assert_eq!(t.acquire_read(VersionReq::Latest).unwrap(), versions);
    assert!(t
        .local()
        .unwrap()
        .iter()
        .enumerate()
        .all(|(k, &x)| x == value(k as u64, versions)));
    t.release_read().unwrap();
    assert_eq!(
        shm::counters().reads,
        after.reads,
        "JUXMEM_TRANSPORT=tcp reads over TCP"
    );
}

/// Unmounts the small tmpfs when the test ends (after the federation using it stopped).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_full_shared_memory_directory_is_a_capacity_error_naming_its_sizes() {
    let dir = std::env::temp_dir().join(format!("juxmem-test-shmfull-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&dir)
        .output();
    match mount {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "SKIPPED: cannot mount a 2 MiB tmpfs to fill (needs root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot run mount: {e}");
            return;
        }
    }
    let _mounted = Mounted(dir.clone());
    let shm_dir = dir.to_str().unwrap();
    let fed = LocalFederation::start_with_env(
        "shmfull",
        &[("A", 1)],
        Settings::default(),
        &[("JUXMEM_SHM_DIR", shm_dir)],
    );
    fed.wait_for_providers(1);
    let client = Federation::join(fed.config("A")).unwrap();
    let e = client
        .create::<f64, _>(
            &Solo,
            "shm/big",
            ArrayOptions::new(whole()).homes_on_daemons(),
        )
        .err()
        .expect("a 4 MiB block in a 2 MiB shared memory directory");
    let msg = e.to_string();
    eprintln!("{msg}");
    assert_eq!(e.code(), ErrorCode::Capacity, "{msg}");
    for part in [
        &format!("shared memory {shm_dir} is full"),
        "bytes free of 2097152",
        &format!("{} bytes of array data", R * C * 8),
    ] {
        assert!(msg.contains(part), "{msg:?} does not say {part:?}");
    }
    // The name is left free, and an array that fits is made.
    let small = Layout::new(&[64, 64], &[Dist::Block, Dist::Block], &[1, 1]).unwrap();
    client
        .create::<f64, _>(
            &Solo,
            "shm/big",
            ArrayOptions::new(small).homes_on_daemons(),
        )
        .unwrap();
}
