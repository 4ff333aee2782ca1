//! Non-blocking gets overlapping computation (issue 12, item 1), on a local federation: a
//! stage reads each cycle's input (a version of a 32 MiB f64 array homed on a provider
//! daemon) and computes on it (passes over the data, calibrated to take as long as the
//! transfer, the case where overlap matters most: each measured right after a fetch, as the
//! runs measure them).
//!
//! - blocking: per cycle, hold version k (`acquire_region_read`), `get` it, compute;
//! - overlapped: per cycle, start reading version k+1 with `get_version_nb` (into a second
//!   buffer: the hold, the read and the release all run on the request's thread), compute on
//!   version k, wait; swap the buffers.
//!
//! Runs are interleaved (blocking, overlapped, ...), medians of the time per cycle. Both give
//! the same checksums, checked, and every input is checked whole against what was written.
//!
//! - `BENCH name=async-get-overlap-vs-sum ...`: overlapped against blocking (compute +
//!   transfer);
//! - `BENCH name=async-get-overlap-vs-max ...`: overlapped against max(compute, transfer),
//!   each measured alone in the same run (target <= 1.1);
//! - `BENCH name=async-get-overlap-vs-memcpy-overlap ...`: overlapped against the computation
//!   with a plain `memcpy` of the input on a second thread (buffers allocated outside the
//!   timing): how far this node lets a copy and the computation overlap at all.
//!
//! With `--compute-factor F` the computation takes F times the transfer (the names get a
//! `-compute-Fx` suffix). The computation is arithmetic-bound (a polynomial per element);
//! with `--memory-bound` it is one multiply-add per element instead (names end in
//! `-memory-bound`), which competes with the transfer's copy for the memory bandwidth. On a
//! node with fewer cores than the computation and both ends of the transfer need, the
//! overlap is bounded by the CPU time they add up to.
//!
//! `bench_async [--mib N] [--cycles K] [--rounds R] [--compute-factor F] [--memory-bound]`
//! (defaults 32, 6, 5, 1).

#[path = "../tests/common/federation.rs"]
mod federation;

use std::time::{Duration, Instant};

use federation::{LocalFederation, Settings};
use juxmem::array::RegionRead;
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::{FullPolicy, VersionReq};
use juxmem::{ArrayOptions, Federation, SharedArray, Solo};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(60);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg(args: &[String], name: &str, default: u64) -> Res<u64> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or(format!("{name} N"))?
            .parse()
            .map_err(|e| format!("{name}: {e}"))?),
        None => Ok(default),
    }
}

/// What version `k` holds at element `i`.
fn input(k: u64, i: usize) -> f64 {
    (k * 1_000_003 + i as u64 % 4096) as f64
}

/// What the stage computes per element of its input.
#[derive(Clone, Copy, PartialEq)]
enum Kernel {
    /// A degree-16 polynomial per element (an equation of state per cell, say): bound by the
    /// core's arithmetic, as most of a simulation step is.
    Cells,
    /// One multiply-add per element: bound by memory bandwidth, which the transfer (a copy)
    /// needs too, so on a node whose cores share that bandwidth the two cannot fully overlap.
    Sweep,
}

/// The stage's computation: `sweeps` passes of `kernel` over the input (the last one
/// partial, so that the computation can be as long as the transfer, not a whole number of
/// passes); a checksum.
fn compute(x: &[f64], sweeps: f64, kernel: Kernel) -> f64 {
    let mut acc = 0.0f64;
    let (whole, part) = (sweeps.trunc() as u32, sweeps.fract());
    for r in 0..=whole {
        let a = 1.0 + f64::from(r) * 1e-9;
        let len = if r < whole {
            x.len()
        } else {
            (part * x.len() as f64) as usize
        };
        let x = &x[..len];
        acc += match kernel {
            Kernel::Sweep => x.iter().fold(0.0, |s, &v| s + a * v),
            Kernel::Cells => x.iter().fold(0.0, |s, &v| {
                let t = v * 1e-7;
                s + (0..16).fold(a, |p, i| p * t + f64::from(i))
            }),
        };
    }
    std::hint::black_box(acc)
}

fn check_input(x: &[f64], k: u64) -> Res<()> {
    match x.iter().enumerate().find(|&(i, &v)| v != input(k, i)) {
        Some((i, v)) => Err(format!("version {k}: element {i} is {v}, not {}", input(k, i)).into()),
        None => Ok(()),
    }
}

/// CPU seconds used so far by this process (every thread).
fn own_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    s(u.ru_utime) + s(u.ru_stime)
}

/// CPU seconds used so far by process `pid` (user and system, from /proc).
fn cpu_of(pid: u32) -> Res<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').ok_or("no command in /proc stat")? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = (f[11].parse::<u64>()? + f[12].parse::<u64>()?) as f64;
    // SAFETY: sysconf has no preconditions.
    Ok(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

fn main() {
    if let Err(e) = bench() {
        eprintln!("bench_async: {e}");
        std::process::exit(1);
    }
}

struct Stage<'a> {
    a: SharedArray<'a, f64, Solo>,
    n: u64,
    /// Passes over the input per cycle's computation.
    sweeps: f64,
    kernel: Kernel,
}

impl Stage<'_> {
    /// Holds version `k` of the whole input.
    fn hold(&self, k: u64) -> Res<RegionRead<f64>> {
        Ok(self
            .a
            .acquire_region_read(&[0], &[self.n], VersionReq::Exactly(k), WAIT)?)
    }

    /// Reads version `k` into `buf` (blocking).
    fn fetch(&self, k: u64, buf: &mut [f64]) -> Res<()> {
        let held = self.hold(k)?;
        held.get(buf)?;
        Ok(held.release()?)
    }

    /// The blocking sequence over cycles 1..=k; the time per cycle and the checksums.
    fn blocking(&self, cycles: u64, buf: &mut [f64]) -> Res<(Vec<f64>, Vec<f64>)> {
        let (mut times, mut sums) = (Vec::new(), Vec::new());
        for k in 1..=cycles {
            let t = Instant::now();
            self.fetch(k, buf)?;
            sums.push(compute(buf, self.sweeps, self.kernel));
            times.push(t.elapsed().as_secs_f64());
            check_input(buf, k)?;
        }
        Ok((times, sums))
    }

    /// Cycle k computes while cycle k+1's input arrives.
    fn overlapped(
        &self,
        cycles: u64,
        cur: &mut Vec<f64>,
        spare: &mut Vec<f64>,
    ) -> Res<(Vec<f64>, Vec<f64>)> {
        let (mut times, mut sums) = (Vec::new(), Vec::new());
        self.fetch(1, cur)?;
        for k in 1..=cycles {
            let t = Instant::now();
            let next = if k < cycles {
                let whole = (&[0][..], &[self.n][..]);
                let buf = std::mem::take(spare);
                let req = VersionReq::Exactly(k + 1);
                Some(self.a.get_version_nb(whole.0, whole.1, req, buf, WAIT)?)
            } else {
                None
            };
            sums.push(compute(cur, self.sweeps, self.kernel));
            if let Some(req) = next {
                let (version, buf) = req.wait()?;
                if version != k + 1 {
                    return Err(format!("read version {version}, asked for {}", k + 1).into());
                }
                *spare = buf;
            }
            times.push(t.elapsed().as_secs_f64());
            check_input(cur, k)?;
            std::mem::swap(cur, spare);
        }
        Ok((times, sums))
    }
}

fn bench() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let mib = arg(&args, "--mib", 32)?;
    let cycles = arg(&args, "--cycles", 6)?.max(2);
    let rounds = arg(&args, "--rounds", 5)? as usize;
    let factor = arg(&args, "--compute-factor", 1)?.max(1);
    let kernel = if args.iter().any(|a| a == "--memory-bound") {
        Kernel::Sweep
    } else {
        Kernel::Cells
    };
    let mut suffix = if factor == 1 {
        String::new()
    } else {
        format!("-compute-{factor}x")
    };
    if kernel == Kernel::Sweep {
        suffix += "-memory-bound";
    }
    let n = mib * (1 << 20) / 8;
    let settings = Settings {
        capacity: format!("{}MiB", mib * (cycles + 2) + 64),
        ..Settings::default()
    };
    let fed = LocalFederation::start_with("async-bench", &[("A", 1)], settings);
    fed.wait_for_providers(1);
    let layout = Layout::one_d(n, Dist::Block, 1)?;

    // The inputs: versions 1..=cycles, all retained.
    let writer = Federation::join(fed.config("A"))?;
    let opts = ArrayOptions::new(layout.clone())
        .homes_on_daemons()
        .retention(cycles as u32 + 1, FullPolicy::DropOldest);
    let mut w = writer.create::<f64, _>(&Solo, "async/input", opts)?;
    for k in 1..=cycles {
        w.acquire()?;
        for (i, x) in w.local_mut()?.iter_mut().enumerate() {
            *x = input(k, i);
        }
        w.release()?;
    }

    let reader = Federation::join(fed.config("A"))?;
    let a = reader.inspect::<f64, _>(&Solo, "async/input", layout)?;
    let mut stage = Stage {
        a,
        n,
        sweeps: 1.0,
        kernel,
    };
    let (mut cur, mut spare) = (vec![0.0f64; n as usize], vec![0.0f64; n as usize]);

    // Calibration: the compute `factor` times as long as the transfer, each timed as the
    // runs below time them (the computation right after a fetch), refined three times: the
    // first fetches map the provider's segments, and a sweep's speed depends on the caches.
    for _ in 0..3 {
        let (mut transfer, mut took) = (Vec::new(), Vec::new());
        for k in 1..=cycles {
            let t = Instant::now();
            stage.fetch(k, &mut cur)?;
            transfer.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            compute(&cur, stage.sweeps, stage.kernel);
            took.push(t.elapsed().as_secs_f64());
        }
        stage.sweeps *= factor as f64 * median(transfer) / median(took);
    }

    let provider = fed.daemon(&fed.providers()[0]).pid();
    let (mut stage_cpu, mut provider_cpu) = (0.0, 0.0);
    let (mut tb, mut to, mut tt, mut tc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (source, mut tm) = (vec![1.0f64; n as usize], Vec::new());
    for _ in 0..rounds {
        let (times, sums_b) = stage.blocking(cycles, &mut cur)?;
        tb.extend(times);
        let (times, sums_o) = stage.overlapped(cycles, &mut cur, &mut spare)?;
        to.extend(times);
        if sums_b != sums_o {
            return Err(
                format!("checksums differ: {sums_b:?} blocking, {sums_o:?} overlapped").into(),
            );
        }
        // Each part alone, in the same run.
        for k in 1..=cycles {
            let (c0, p0) = (own_cpu(), cpu_of(provider)?);
            let t = Instant::now();
            stage.fetch(k, &mut cur)?;
            tt.push(t.elapsed().as_secs_f64());
            stage_cpu += own_cpu() - c0;
            provider_cpu += cpu_of(provider)? - p0;
            let t = Instant::now();
            compute(&cur, stage.sweeps, stage.kernel);
            tc.push(t.elapsed().as_secs_f64());
        }
        // The same overlap with nothing but a memcpy of the input on a second thread: what
        // this node allows when both stream memory at once.
        for _ in 1..=cycles {
            let t = Instant::now();
            std::thread::scope(|s| {
                s.spawn(|| spare.copy_from_slice(&source));
                compute(&cur, stage.sweeps, stage.kernel);
            });
            tm.push(t.elapsed().as_secs_f64());
        }
    }
    let (b, o, tr, co, mo) = (median(tb), median(to), median(tt), median(tc), median(tm));
    let max = tr.max(co);
    println!(
        "BENCH name=async-get-overlap-vs-sum{suffix} juxmem_s={o:.6} baseline_s={b:.6} ratio={:.3}",
        o / b
    );
    println!(
        "BENCH name=async-get-overlap-vs-max{suffix} juxmem_s={o:.6} baseline_s={max:.6} ratio={:.3}",
        o / max
    );
    println!(
        "BENCH name=async-get-overlap-vs-memcpy-overlap{suffix} juxmem_s={o:.6} baseline_s={mo:.6} ratio={:.3}",
        o / mo
    );
    println!(
        "async: {mib} MiB per cycle, {cycles} cycles x {rounds} rounds: transfer alone {tr:.6} s, compute alone {co:.6} s ({:.2} passes), blocking {b:.6} s, overlapped {o:.6} s per cycle; checksums equal, every input checked",
        stage.sweeps
    );
    let per = (cycles as usize * rounds) as f64;
    println!(
        "async: CPU per transfer alone: stage {:.6} s, provider {:.6} s ({} cores here)",
        stage_cpu / per,
        provider_cpu / per,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}
