//! Cross-cluster hand-off benchmark (run by `ci/bench` through `juxmem launch
//! examples/handoff.pipeline`): a 256 MiB f64 array handed from cluster A (2 ranks, block) to
//! cluster B (2 ranks, cyclic) on loopback, against, in the same run:
//!
//! - a plain TCP stream of the same bytes between two processes (producer rank 0 sends,
//!   consumer rank 0 receives, one connection, no packing);
//! - the file hand-off users do today: each producer rank writes and fsyncs its part, each
//!   consumer rank reads the files and keeps the elements it owns (no copy between clusters
//!   counted: a shared file system is assumed).
//!
//! The juxmem time of one hand-off is the producer's `release` plus the consumer's
//! `acquire_read` (which redistributes block -> cyclic from the producer's ranks), each the
//! slowest rank's. The consumer's rank 0 prints, with medians over the repetitions:
//! `BENCH name=handoff-256mib-block-to-cyclic-vs-tcp ...` and `...-vs-file ...`.
//!
//! Usage: `bench_handoff --role producer|consumer --dir DIR [--mib N] [--reps R]`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use juxmem::config::Config;
use juxmem::element::{as_bytes, as_bytes_mut};
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::{FullPolicy, VersionReq};
use juxmem::{ArrayOptions, Federation};
use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

const WAIT: Duration = Duration::from_secs(300);

fn slowest(world: &SimpleCommunicator, t: f64) -> f64 {
    let mut m = 0.0;
    world.all_reduce_into(&t, &mut m, SystemOperation::max());
    m
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Waits for a file to appear (the other job's signal).
fn wait_file(p: &Path) {
    let start = Instant::now();
    while !p.exists() {
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for {}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn write_atomic(p: &Path, text: &str) {
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, p).unwrap();
}

fn value(g: u64, rep: u64) -> f64 {
    (g as f64) * 0.5 + rep as f64
}

fn main() {
    let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    juxmem::transport::mpi::check_thread_level(level).unwrap();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let role = arg("--role").expect("--role producer|consumer");
    let dir = PathBuf::from(arg("--dir").expect("--dir DIR"));
    let mib: u64 = arg("--mib").and_then(|s| s.parse().ok()).unwrap_or(256);
    let reps: u64 = arg("--reps").and_then(|s| s.parse().ok()).unwrap_or(5);
    let world = universe.world();
    let me = world.rank() as u64;
    let n = world.size() as u64;
    let len = mib * (1 << 20) / 8;
    let fed = Federation::join_as(Config::from_env().unwrap(), &format!("{role}{me}")).unwrap();
    let block = Layout::one_d(len, Dist::Block, n).unwrap();
    let cyclic = Layout::one_d(len, Dist::Cyclic, n).unwrap();
    std::fs::create_dir_all(&dir).unwrap();

    if role == "producer" {
        let opts = ArrayOptions::new(block.clone()).retention(2, FullPolicy::Block);
        let mut a = fed.create::<f64, _>(&world, "bench/handoff", opts).unwrap();
        let mut ack = fed
            .open_wait::<u8, _>(
                &world,
                "bench/ack",
                Layout::one_d(1, Dist::Block, n).unwrap(),
                WAIT,
            )
            .unwrap();
        let offset = block.global_index(me, 0).map_or(0, |g| g[0]);
        for rep in 0..=reps {
            a.acquire().unwrap();
            for (i, x) in a.local_mut().unwrap().iter_mut().enumerate() {
                *x = value(offset + i as u64, rep);
            }
            world.barrier();
            let t0 = Instant::now();
            let v = a.release().unwrap();
            let t = slowest(&world, t0.elapsed().as_secs_f64());
            if me == 0 {
                write_atomic(&dir.join(format!("release-{rep}")), &t.to_string());
            }
            // Wait until the consumer has read it before the next step (clean timings).
            ack.acquire_read_timeout(VersionReq::AtLeast(v), WAIT)
                .unwrap();
            ack.release_read().unwrap();
        }
        // Plain TCP: rank 0 streams the same number of bytes to the consumer's rank 0.
        let data = vec![1.25f64; len as usize];
        for rep in 0..=reps {
            if me == 0 {
                let port_file = dir.join(format!("tcp-port-{rep}"));
                wait_file(&port_file);
                let addr = std::fs::read_to_string(&port_file).unwrap();
                let mut s = TcpStream::connect(addr.trim()).unwrap();
                s.write_all(as_bytes(&data)).unwrap();
                let mut done = [0u8; 1];
                s.read_exact(&mut done).unwrap();
            }
            world.barrier();
        }
        // File hand-off: every rank writes and fsyncs its part.
        let mut part = vec![0.0f64; block.local_len(me).unwrap() as usize];
        for rep in 0..=reps {
            for (i, x) in part.iter_mut().enumerate() {
                *x = value(offset + i as u64, rep);
            }
            world.barrier();
            let t0 = Instant::now();
            let path = dir.join(format!("part-{me}"));
            let mut f = std::fs::File::create(&path).unwrap();
            f.write_all(as_bytes(&part)).unwrap();
            f.sync_all().unwrap();
            drop(f);
            let t = slowest(&world, t0.elapsed().as_secs_f64());
            if me == 0 {
                write_atomic(&dir.join(format!("file-written-{rep}")), &t.to_string());
            }
            wait_file(&dir.join(format!("file-read-{rep}")));
        }
        if me == 0 {
            println!("producer done: {reps} repetitions of {mib} MiB");
        }
        return;
    }

    // Consumer.
    let mut ack = fed
        .create::<u8, _>(
            &world,
            "bench/ack",
            juxmem::ArrayOptions::new(Layout::one_d(1, Dist::Block, n).unwrap()),
        )
        .unwrap();
    let mut a = fed
        .open_wait::<f64, _>(&world, "bench/handoff", cyclic.clone(), WAIT)
        .unwrap();
    let (mut t_jux, mut t_tcp, mut t_file) = (vec![], vec![], vec![]);
    for rep in 0..=reps {
        // Start timing once the producer has released (its release time is added below), so
        // that waiting for the producer to compute is not counted.
        let rel_file = dir.join(format!("release-{rep}"));
        wait_file(&rel_file);
        let t_rel: f64 = std::fs::read_to_string(&rel_file).unwrap().parse().unwrap();
        world.barrier();
        let t0 = Instant::now();
        let v = a
            .acquire_read_timeout(VersionReq::Exactly(rep + 1), WAIT)
            .unwrap();
        let t_read = slowest(&world, t0.elapsed().as_secs_f64());
        // Check every element: global index g = q + i * n.
        let bad = a
            .local()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|&(i, &x)| x != value(me + i as u64 * n, rep))
            .count();
        assert_eq!(bad, 0, "juxmem hand-off wrong on rank {me}");
        a.release_read().unwrap();
        if rep > 0 {
            t_jux.push(t_rel + t_read);
        }
        if me == 0 && std::env::var("BENCH_VERBOSE").is_ok() {
            eprintln!("rep {rep}: release {t_rel:.4} s, read {t_read:.4} s");
        }
        assert_eq!(v, rep + 1);
        ack.acquire().unwrap();
        ack.release().unwrap();
    }
    let mut buf = vec![0.0f64; len as usize];
    for rep in 0..=reps {
        if me == 0 {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            write_atomic(
                &dir.join(format!("tcp-port-{rep}")),
                &l.local_addr().unwrap().to_string(),
            );
            let (mut s, _) = l.accept().unwrap();
            let t0 = Instant::now();
            s.read_exact(as_bytes_mut(&mut buf)).unwrap();
            let t = t0.elapsed().as_secs_f64();
            s.write_all(&[1]).unwrap();
            if rep > 0 {
                t_tcp.push(t);
            }
        }
        world.barrier();
    }
    let mine_len = cyclic.local_len(me).unwrap() as usize;
    let mut mine = vec![0.0f64; mine_len];
    for rep in 0..=reps {
        let written = dir.join(format!("file-written-{rep}"));
        wait_file(&written);
        let t_write: f64 = std::fs::read_to_string(&written).unwrap().parse().unwrap();
        world.barrier();
        let t0 = Instant::now();
        // Read each producer's file and keep the elements this rank owns (cyclic).
        for p in 0..n {
            let plen = block.local_len(p).unwrap() as usize;
            let first = block.global_index(p, 0).map_or(0, |g| g[0]);
            let mut part = vec![0.0f64; plen];
            std::fs::File::open(dir.join(format!("part-{p}")))
                .unwrap()
                .read_exact(as_bytes_mut(&mut part))
                .unwrap();
            let start = ((me + n - first % n) % n) as usize;
            for i in (start..plen).step_by(n as usize) {
                let g = first as usize + i;
                mine[g / n as usize] = part[i];
            }
        }
        let t_read = slowest(&world, t0.elapsed().as_secs_f64());
        let bad = mine
            .iter()
            .enumerate()
            .filter(|&(i, &x)| x != value(me + i as u64 * n, rep))
            .count();
        assert_eq!(bad, 0, "file hand-off wrong on rank {me}");
        if me == 0 {
            write_atomic(&dir.join(format!("file-read-{rep}")), "done");
        }
        if rep > 0 {
            t_file.push(t_write + t_read);
        }
    }
    if me == 0 {
        let (j, t, f) = (median(t_jux), median(t_tcp), median(t_file));
        let name = format!("handoff-{mib}mib-block-to-cyclic");
        println!(
            "BENCH name={name}-vs-tcp juxmem_s={j:.6} baseline_s={t:.6} ratio={:.3}",
            j / t
        );
        println!(
            "BENCH name={name}-vs-file juxmem_s={j:.6} baseline_s={f:.6} ratio={:.3}",
            j / f
        );
        println!(
            "handoff: juxmem {:.2} GB/s, plain TCP {:.2} GB/s ({:.0}% of TCP), file hand-off {:.2} GB/s ({:.1}x slower than juxmem)",
            (len * 8) as f64 / j / 1e9,
            (len * 8) as f64 / t / 1e9,
            100.0 * t / j,
            (len * 8) as f64 / f / 1e9,
            f / j
        );
    }
}
