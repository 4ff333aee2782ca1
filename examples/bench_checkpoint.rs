//! Checkpoint benchmark (run by `ci/bench` through `juxmem launch examples/checkpoint.pipeline`):
//! a 256 MiB f64 array over the ranks (block), checkpointed to a directory and restored from
//! it, against `dd` moving the same bytes per rank in the same run, repetition by repetition:
//!
//! - write: `SharedArray::checkpoint` (each rank writes and fsyncs its block file, then the
//!   manifest) against `dd if=/dev/zero of=<rank file> bs=4M count=... conv=fsync` on every rank
//!   at once;
//! - read: `Federation::restore` (create, read and check every block file, copy into place,
//!   release) against `dd if=<rank file> of=/dev/null bs=4M` on every rank at once; before
//!   each, the files read are dropped from the page cache (`posix_fadvise(DONTNEED)` after
//!   they were synced), so both read the disk.
//!
//! Each time is the slowest rank's, between barriers. Rank 0 prints medians:
//! `BENCH name=checkpoint-<mib>mib-write-vs-dd ...` and `...-restore-vs-dd ...` (target: at
//! least half dd's bandwidth, ratio <= 2). Every restored element is checked, outside the
//! timing.
//!
//! Usage: `bench_checkpoint --dir DIR [--mib N] [--reps R]`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use juxmem::config::Config;
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::VersionReq;
use juxmem::{ArrayOptions, Federation};
use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

fn value(i: u64) -> f64 {
    (i % 1_000_003) as f64 * 0.5
}

/// Drops `path`'s pages from the page cache (it was synced: they are clean).
fn evict(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(f) = std::fs::File::open(path) {
        // SAFETY: an advisory call on a descriptor we own.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

fn evict_dir(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            evict(&e.path());
        }
    }
}

/// Runs `f` on every rank between barriers; the slowest rank's seconds.
fn timed(world: &SimpleCommunicator, f: impl FnOnce()) -> f64 {
    world.barrier();
    let t = Instant::now();
    f();
    let mine = t.elapsed().as_secs_f64();
    let mut slowest = 0.0f64;
    world.all_reduce_into(&mine, &mut slowest, SystemOperation::max());
    slowest
}

fn dd(args: &[String]) {
    let st = Command::new("dd")
        .args(args)
        .arg("status=none")
        .status()
        .expect("dd");
    assert!(st.success(), "dd {args:?}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let dir = std::path::PathBuf::from(opt("--dir").expect("--dir DIR"));
    let mib: u64 = opt("--mib").map_or(256, |s| s.parse().unwrap());
    let reps: usize = opt("--reps").map_or(5, |s| s.parse().unwrap());

    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let (n, me) = (world.size() as u64, world.rank() as u64);
    let fed = Federation::join_as(Config::from_env().unwrap(), &format!("ckpt{me}")).unwrap();
    let len = mib * (1 << 20) / 8;
    let layout = Layout::one_d(len, Dist::Block, n).unwrap();
    let mut a = fed
        .create::<f64, _>(&world, "bench/ckpt", ArrayOptions::new(layout.clone()))
        .unwrap();
    a.acquire().unwrap();
    {
        let mut local = a.local_mut().unwrap();
        let first = layout.global_index(me, 0).unwrap()[0];
        for (k, x) in local.iter_mut().enumerate() {
            *x = value(first + k as u64);
        }
    }
    a.release().unwrap();
    a.acquire_read(VersionReq::Exactly(1)).unwrap();
    let local_bytes = layout.local_len(me).unwrap() * 8;
    let ckpt = dir.join("juxmem");
    let dd_file = dir.join(format!("dd-{me}.bin"));
    if me == 0 {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
    }
    world.barrier();

    let (mut jw, mut dw, mut jr, mut dr) = (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        // Write: juxmem, then dd, alternating which goes first.
        let write_j = |w: &mut Vec<f64>| {
            w.push(timed(&world, || {
                a.checkpoint(&ckpt).unwrap();
            }))
        };
        let write_d = |w: &mut Vec<f64>| {
            let count = local_bytes.div_ceil(4 << 20);
            w.push(timed(&world, || {
                dd(&[
                    "if=/dev/zero".into(),
                    format!("of={}", dd_file.display()),
                    "bs=4M".into(),
                    format!("count={count}"),
                    "conv=fsync".into(),
                ])
            }))
        };
        if rep % 2 == 0 {
            write_j(&mut jw);
            write_d(&mut dw);
        } else {
            write_d(&mut dw);
            write_j(&mut jw);
        }
        // Read, each from the disk.
        evict_dir(&ckpt);
        let name = format!("bench/ckpt-restored-{rep}");
        let mut restored = None;
        jr.push(timed(&world, || {
            restored = Some(
                fed.restore::<f64, _>(&world, &ckpt, &name, ArrayOptions::new(layout.clone()))
                    .unwrap(),
            );
        }));
        evict(&dd_file);
        dr.push(timed(&world, || {
            dd(&[
                format!("if={}", dd_file.display()),
                "of=/dev/null".into(),
                "bs=4M".into(),
            ])
        }));
        // Checked outside the timing: every element.
        let mut r = restored.unwrap();
        r.acquire_read(VersionReq::Exactly(1)).unwrap();
        let first = layout.global_index(me, 0).unwrap()[0];
        let wrong = r
            .local()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(k, x)| **x != value(first + *k as u64))
            .count();
        assert_eq!(wrong, 0, "rank {me}: {wrong} elements restored wrong");
        r.release_read().unwrap();
        r.destroy().unwrap();
        assert_eq!(
            std::fs::metadata(&dd_file).unwrap().len(),
            local_bytes.div_ceil(4 << 20) * (4 << 20)
        );
    }
    a.release_read().unwrap();
    if me == 0 {
        let gib = mib as f64 / 1024.0;
        for (what, j, d) in [("write", &jw, &dw), ("restore", &jr, &dr)] {
            let (j, d) = (median(j.clone()), median(d.clone()));
            println!(
                "BENCH name=checkpoint-{mib}mib-{what}-vs-dd juxmem_s={j:.6} baseline_s={d:.6} ratio={:.3}",
                j / d
            );
            println!(
                "checkpoint: {what} {:.2} GiB/s, dd {:.2} GiB/s ({n} ranks, {reps} reps; juxmem {j:?}, dd {d:?})",
                gib / j,
                gib / d,
                j = if what == "write" { &jw } else { &jr },
                d = if what == "write" { &dw } else { &dr },
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
