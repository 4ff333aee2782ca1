//! Cross-cluster hand-off benchmark (run by `ci/bench`: through `juxmem launch
//! examples/handoff.pipeline` on loopback, and across two network-namespace hosts by
//! `ci/bench-hosts`): a 256 MiB f64 array handed from cluster A (2 ranks, block) to cluster B
//! (2 ranks, cyclic), against, in the same run and interleaved repetition by repetition:
//!
//! - plain TCP with the same streams and socket buffers as juxmem: every consumer rank has one
//!   connection to every producer rank (4 streams), 4 MiB send and receive buffers at both ends,
//!   connections made once outside the timing (as juxmem's pooled ones). At the start, each
//!   consumer rank sends one byte on each connection and each producer rank answers with the
//!   elements that consumer owns, already in its order, read straight into place: the wire and
//!   nothing else (no packing, no unpacking);
//! - the file hand-off users do today (loopback only, `--files`): each producer rank writes and
//!   fsyncs its part, each consumer rank reads the files and keeps the elements it owns (no copy
//!   between clusters counted: a shared file system is assumed).
//!
//! The juxmem time of one hand-off is the producer's `release` plus the consumer's
//! `acquire_read` (which redistributes block -> cyclic from the producer's ranks), each the
//! slowest rank's. The consumer's rank 0 prints, with medians over the repetitions (min and max
//! alongside): `BENCH name=<name>-vs-tcp ...` and with `--files` `...-vs-file ...`, where
//! `<name>` is `--name` (default `handoff-<mib>mib-block-to-cyclic`). Every result of every
//! method is checked element by element, outside the timing.
//!
//! With `--memcpy` (both stages on one host, where juxmem reads the producer's copies through
//! shared memory), the consumer also times, interleaved, a `memcpy` of the whole array by one
//! rank and one of each rank's share by every consumer rank at once (buffers filled outside
//! the timing), and prints `BENCH name=handoff-<mib>mib-same-host-vs-memcpy ...` against the
//! first (the "a memcpy of the array"), the second on a `#` line.
//!
//! Usage: `bench_handoff --role producer|consumer --dir DIR [--mib N] [--reps R] [--name NAME]
//! [--files] [--memcpy]`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use juxmem::config::Config;
use juxmem::element::{as_bytes, as_bytes_mut};
use juxmem::layout::{Dist, Layout};
// juxmem's own socket settings, so the baseline has exactly the same.
use juxmem::service::protocol::{FullPolicy, VersionReq};
use juxmem::transport::tcp::{tune_bulk, SOCKET_BUFFER};
use juxmem::{ArrayOptions, Federation};
use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(300);

fn slowest(world: &SimpleCommunicator, t: f64) -> f64 {
    let mut m = 0.0;
    world.all_reduce_into(&t, &mut m, SystemOperation::max());
    m
}

/// Median, min and max.
fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Waits for a file to appear (the other job's signal).
fn wait_file(p: &Path) -> Res<()> {
    let start = Instant::now();
    while !p.exists() {
        if start.elapsed() > WAIT {
            return Err(format!("timed out waiting for {}", p.display()).into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn read_f64(p: &Path) -> Res<f64> {
    wait_file(p)?;
    Ok(std::fs::read_to_string(p)?.trim().parse()?)
}

fn write_atomic(p: &Path, text: &str) -> Res<()> {
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, p)?;
    Ok(())
}

fn value(g: u64, rep: u64) -> f64 {
    (g as f64) * 0.5 + rep as f64
}

/// Elements of consumer rank `c` (cyclic over `n`) inside producer block `[first, first+len)`:
/// `(first element's global index, count)`. They are contiguous in the consumer's local part.
fn share(first: u64, len: u64, c: u64, n: u64) -> (u64, u64) {
    let g0 = first + (c + n - first % n) % n;
    let count = if g0 >= first + len {
        0
    } else {
        (first + len - g0).div_ceil(n)
    };
    (g0, count)
}

struct Args {
    role: String,
    dir: PathBuf,
    mib: u64,
    reps: u64,
    name: Option<String>,
    files: bool,
    memcpy: bool,
}

fn parse_args() -> Res<Args> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let num = |name: &str, default: u64| -> Res<u64> {
        arg(name).map_or(Ok(default), |s| {
            s.parse().map_err(|e| format!("{name} {s:?}: {e}").into())
        })
    };
    Ok(Args {
        role: arg("--role").ok_or("--role producer|consumer is required")?,
        dir: PathBuf::from(arg("--dir").ok_or("--dir DIR is required")?),
        mib: num("--mib", 256)?,
        reps: num("--reps", 5)?,
        name: arg("--name"),
        files: args.iter().any(|a| a == "--files"),
        memcpy: args.iter().any(|a| a == "--memcpy"),
    })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_handoff: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Funneled)
        .ok_or("MPI is already initialised")?;
    juxmem::transport::mpi::check_thread_level(level)?;
    let a = parse_args()?;
    let world = universe.world();
    let me = world.rank() as u64;
    let n = world.size() as u64;
    let len = a.mib * (1 << 20) / 8;
    let fed = Federation::join_as(Config::from_env()?, &format!("{}{me}", a.role))?;
    let block = Layout::one_d(len, Dist::Block, n)?;
    let cyclic = Layout::one_d(len, Dist::Cyclic, n)?;
    std::fs::create_dir_all(&a.dir)?;
    let dir = &a.dir;
    match a.role.as_str() {
        "producer" => producer(&a, &world, &fed, &block),
        "consumer" => consumer(&a, &world, &fed, &block, &cyclic),
        other => Err(format!("--role {other:?}: producer or consumer").into()),
    }?;
    // Both jobs are done with the files once the consumer's rank 0 says so.
    if a.role == "producer" && me == 0 {
        wait_file(&dir.join("done"))?;
    }
    Ok(())
}

fn producer(a: &Args, world: &SimpleCommunicator, fed: &Federation, block: &Layout) -> Res<()> {
    let (me, n) = (world.rank() as u64, world.size() as u64);
    let dir = &a.dir;
    let opts = ArrayOptions::new(block.clone()).retention(2, FullPolicy::Block);
    let mut arr = fed.create::<f64, _>(world, "bench/handoff", opts)?;
    let mut ack =
        fed.open_wait::<u8, _>(world, "bench/ack", Layout::one_d(1, Dist::Block, n)?, WAIT)?;
    let first = block.global_index(me, 0).map_or(0, |g| g[0]);
    let plen = block.local_len(me)?;

    // The baseline's server: one connection per consumer rank, at this rank's juxmem address
    // (reachable from the consumer's host), made before any timing.
    let ip = fed
        .node()
        .addr
        .rsplit_once(':')
        .map(|(ip, _)| ip.to_string())
        .ok_or("own address")?;
    let listener = TcpListener::bind((ip.as_str(), 0))?;
    write_atomic(
        &dir.join(format!("tcp-addr-{me}")),
        &listener.local_addr()?.to_string(),
    )?;
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let (mut s, _) = listener.accept()?;
        tune_bulk(&s)?;
        let mut who = [0u8; 8];
        s.read_exact(&mut who)?;
        let c = u64::from_le_bytes(who);
        *conns
            .get_mut(c as usize)
            .ok_or("consumer rank out of range")? = Some(s);
    }
    let mut conns: Vec<TcpStream> = conns
        .into_iter()
        .map(|c| c.ok_or("a consumer did not connect"))
        .collect::<Result<_, _>>()?;
    // Each consumer's elements, in its order, refilled every repetition outside the timing.
    let mut outgoing: Vec<Vec<f64>> = (0..n)
        .map(|c| vec![0.0; share(first, plen, c, n).1 as usize])
        .collect();

    let mut part = vec![0.0f64; if a.files { plen as usize } else { 0 }];
    for rep in 0..=a.reps {
        // juxmem.
        arr.acquire_overwrite()?;
        for (i, x) in arr.local_mut()?.iter_mut().enumerate() {
            *x = value(first + i as u64, rep);
        }
        world.barrier();
        let t0 = Instant::now();
        let v = arr.release()?;
        let t = slowest(world, t0.elapsed().as_secs_f64());
        if me == 0 {
            write_atomic(&dir.join(format!("release-{rep}")), &t.to_string())?;
        }
        // Wait until the consumer has read it before the next step (clean timings).
        ack.acquire_read_timeout(VersionReq::AtLeast(v), WAIT)?;
        ack.release_read()?;

        // Plain TCP: answer each consumer's byte with its elements.
        for (c, out) in outgoing.iter_mut().enumerate() {
            let (g0, _) = share(first, plen, c as u64, n);
            for (i, x) in out.iter_mut().enumerate() {
                *x = value(g0 + i as u64 * n, rep);
            }
        }
        world.barrier();
        if me == 0 {
            write_atomic(&dir.join(format!("tcp-ready-{rep}")), "ready")?;
        }
        std::thread::scope(|s| -> Res<()> {
            let sends: Vec<_> = conns
                .iter_mut()
                .zip(&outgoing)
                .map(|(conn, out)| {
                    s.spawn(move || -> std::io::Result<()> {
                        let mut go = [0u8; 1];
                        conn.read_exact(&mut go)?;
                        conn.write_all(as_bytes(out))
                    })
                })
                .collect();
            for h in sends {
                h.join().map_err(|_| "a sending thread panicked")??;
            }
            Ok(())
        })?;
        world.barrier();

        // File hand-off: every rank writes and fsyncs its part.
        if a.files {
            for (i, x) in part.iter_mut().enumerate() {
                *x = value(first + i as u64, rep);
            }
            world.barrier();
            let t0 = Instant::now();
            let mut f = std::fs::File::create(dir.join(format!("part-{me}")))?;
            f.write_all(as_bytes(&part))?;
            f.sync_all()?;
            drop(f);
            let t = slowest(world, t0.elapsed().as_secs_f64());
            if me == 0 {
                write_atomic(&dir.join(format!("file-written-{rep}")), &t.to_string())?;
            }
            wait_file(&dir.join(format!("file-read-{rep}")))?;
        }
    }
    if me == 0 {
        println!("producer done: {} repetitions of {} MiB", a.reps, a.mib);
    }
    Ok(())
}

fn consumer(
    a: &Args,
    world: &SimpleCommunicator,
    fed: &Federation,
    block: &Layout,
    cyclic: &Layout,
) -> Res<()> {
    let (me, n) = (world.rank() as u64, world.size() as u64);
    let dir = &a.dir;
    let mut ack = fed.create::<u8, _>(
        world,
        "bench/ack",
        ArrayOptions::new(Layout::one_d(1, Dist::Block, n)?),
    )?;
    let mut arr = fed.open_wait::<f64, _>(world, "bench/handoff", cyclic.clone(), WAIT)?;
    // One connection to every producer rank, made before any timing.
    let mut conns = Vec::new();
    for p in 0..n {
        let addr = std::fs::read_to_string({
            let f = dir.join(format!("tcp-addr-{p}"));
            wait_file(&f)?;
            f
        })?;
        let mut s = TcpStream::connect(addr.trim())?;
        tune_bulk(&s)?;
        s.write_all(&me.to_le_bytes())?;
        conns.push(s);
    }
    let mine_len = cyclic.local_len(me)? as usize;
    let mut mine = vec![0.0f64; mine_len];
    // Where each producer's elements go in `mine`.
    let mut slices = Vec::new();
    for p in 0..n {
        let first = block.global_index(p, 0).map_or(0, |g| g[0]);
        let (g0, count) = share(first, block.local_len(p)?, me, n);
        slices.push((g0 / n) as usize..(g0 / n + count) as usize);
    }
    let check = |part: &[f64], rep: u64, what: &str| -> Res<()> {
        let bad = part
            .iter()
            .enumerate()
            .filter(|&(i, &x)| x != value(me + i as u64 * n, rep))
            .count();
        if bad == 0 {
            Ok(())
        } else {
            Err(format!("{what} hand-off wrong on rank {me}: {bad} elements").into())
        }
    };
    // The memcpy baselines' buffers, filled (so faulted in) outside the timing.
    let whole = (cyclic.len() * 8) as usize;
    let (one_src, mut one_dst) = if a.memcpy && me == 0 {
        (vec![1u8; whole], vec![2u8; whole])
    } else {
        (vec![], vec![])
    };
    let (par_src, mut par_dst) = if a.memcpy {
        (vec![1u8; whole / n as usize], vec![2u8; whole / n as usize])
    } else {
        (vec![], vec![])
    };
    let (mut t_one, mut t_par) = (vec![], vec![]);
    let (mut t_jux, mut t_tcp, mut t_file) = (vec![], vec![], vec![]);
    let verbose = me == 0 && std::env::var("BENCH_VERBOSE").is_ok();
    for rep in 0..=a.reps {
        // juxmem. Timing starts once the producer has released (its release time is added),
        // so that waiting for the producer to compute is not counted.
        let t_rel = read_f64(&dir.join(format!("release-{rep}")))?;
        world.barrier();
        let t0 = Instant::now();
        let v = arr.acquire_read_timeout(VersionReq::Exactly(rep + 1), WAIT)?;
        let t_read = slowest(world, t0.elapsed().as_secs_f64());
        check(&arr.local()?, rep, "juxmem")?;
        arr.release_read()?;
        if v != rep + 1 {
            return Err(format!("read version {v}, wanted {}", rep + 1).into());
        }
        ack.acquire()?;
        ack.release()?;

        // Plain TCP, same streams and buffers.
        wait_file(&dir.join(format!("tcp-ready-{rep}")))?;
        mine.fill(f64::NAN);
        world.barrier();
        let t0 = Instant::now();
        std::thread::scope(|s| -> Res<()> {
            let mut rest: &mut [f64] = &mut mine;
            let mut handles = Vec::new();
            let mut at = 0;
            for (conn, range) in conns.iter_mut().zip(&slices) {
                let (_, tail) = std::mem::take(&mut rest).split_at_mut(range.start - at);
                let (dst, tail) = tail.split_at_mut(range.len());
                rest = tail;
                at = range.end;
                handles.push(s.spawn(move || -> std::io::Result<()> {
                    conn.write_all(&[1])?;
                    conn.read_exact(as_bytes_mut(dst))
                }));
            }
            for h in handles {
                h.join().map_err(|_| "a receiving thread panicked")??;
            }
            Ok(())
        })?;
        let t = slowest(world, t0.elapsed().as_secs_f64());
        check(&mine, rep, "plain TCP")?;
        if verbose {
            eprintln!("rep {rep}: juxmem release {t_rel:.4} s + read {t_read:.4} s, TCP {t:.4} s");
        }
        if rep > 0 {
            t_jux.push(t_rel + t_read);
            t_tcp.push(t);
        }

        if a.memcpy {
            world.barrier();
            if me == 0 {
                let t0 = Instant::now();
                one_dst.copy_from_slice(std::hint::black_box(&one_src));
                let t = t0.elapsed().as_secs_f64();
                std::hint::black_box(&one_dst);
                if rep > 0 {
                    t_one.push(t);
                }
            }
            world.barrier();
            let t0 = Instant::now();
            par_dst.copy_from_slice(std::hint::black_box(&par_src));
            std::hint::black_box(&par_dst);
            let t = slowest(world, t0.elapsed().as_secs_f64());
            if rep > 0 {
                t_par.push(t);
            }
        }

        if a.files {
            let t_write = read_f64(&dir.join(format!("file-written-{rep}")))?;
            world.barrier();
            let t0 = Instant::now();
            // Read each producer's file and keep the elements this rank owns (cyclic).
            for p in 0..n {
                let plen = block.local_len(p)? as usize;
                let first = block.global_index(p, 0).map_or(0, |g| g[0]);
                let mut part = vec![0.0f64; plen];
                std::fs::File::open(dir.join(format!("part-{p}")))?
                    .read_exact(as_bytes_mut(&mut part))?;
                let start = ((me + n - first % n) % n) as usize;
                for i in (start..plen).step_by(n as usize) {
                    let g = first as usize + i;
                    mine[g / n as usize] = part[i];
                }
            }
            let t_read = slowest(world, t0.elapsed().as_secs_f64());
            check(&mine, rep, "file")?;
            if me == 0 {
                write_atomic(&dir.join(format!("file-read-{rep}")), "done")?;
            }
            if rep > 0 {
                t_file.push(t_write + t_read);
            }
        }
    }
    if me == 0 {
        let bytes = (cyclic.len() * 8) as f64;
        let name = a
            .name
            .clone()
            .unwrap_or_else(|| format!("handoff-{}mib-block-to-cyclic", a.mib));
        let (j, jmin, jmax) = stats(t_jux);
        let (t, tmin, tmax) = stats(t_tcp);
        println!(
            "BENCH name={name}-vs-tcp juxmem_s={j:.6} baseline_s={t:.6} ratio={:.3}",
            j / t
        );
        println!(
            "handoff: {name}: juxmem {:.3} GB/s (median {j:.4} s, min {jmin:.4}, max {jmax:.4}), plain TCP with {} streams and {} MiB socket buffers {:.3} GB/s (median {t:.4} s, min {tmin:.4}, max {tmax:.4}): juxmem at {:.0}% of TCP",
            bytes / j / 1e9,
            n * n,
            SOCKET_BUFFER >> 20,
            bytes / t / 1e9,
            100.0 * t / j
        );
        if a.files {
            let (f, fmin, fmax) = stats(t_file);
            println!(
                "BENCH name={name}-vs-file juxmem_s={j:.6} baseline_s={f:.6} ratio={:.3}",
                j / f
            );
            println!(
                "handoff: {name}: file hand-off {:.3} GB/s (median {f:.4} s, min {fmin:.4}, max {fmax:.4}): juxmem {:.1}x faster",
                bytes / f / 1e9,
                f / j
            );
        }
        if a.memcpy {
            let (o, omin, omax) = stats(t_one);
            let (p, pmin, pmax) = stats(t_par);
            println!(
                "BENCH name=handoff-{}mib-same-host-vs-memcpy juxmem_s={j:.6} baseline_s={o:.6} ratio={:.3}",
                a.mib,
                j / o
            );
            println!(
                "handoff: handoff-{}mib-same-host: memcpy of the array by one rank median {o:.4} s (min {omin:.4}, max {omax:.4}); by the {n} consumer ranks at once (each its share) median {p:.4} s (min {pmin:.4}, max {pmax:.4}): juxmem / parallel memcpy = {:.3}",
                a.mib,
                j / p
            );
        }
        write_atomic(&dir.join("done"), "done")?;
    }
    Ok(())
}
