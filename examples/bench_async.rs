//! Non-blocking gets overlapping computation (issue 12, item 1), on a local federation: a
//! stage reads each cycle's input (a version of a 32 MiB f64 array homed on a provider
//! daemon) and computes on it (a sweep over the data, calibrated to take as long as the
//! transfer, the case where overlap matters most).
//!
//! - blocking: per cycle, hold version k (`acquire_region_read`), `get` it, compute;
//! - overlapped: per cycle, hold version k+1 and start its `get_nb` (into a second buffer),
//!   compute on version k, wait; swap the buffers.
//!
//! Runs are interleaved (blocking, overlapped, ...), medians of the time per cycle. Both give
//! the same checksums, checked, and every input is checked whole against what was written.
//!
//! - `BENCH name=async-get-overlap-vs-sum ...`: overlapped against blocking (compute +
//!   transfer);
//! - `BENCH name=async-get-overlap-vs-max ...`: overlapped against max(compute, transfer),
//!   each measured alone in the same run (target <= 1.1).
//!
//! With `--compute-factor F` the computation takes F times the transfer (the names get a
//! `-compute-Fx` suffix). On a node with fewer cores than the computation and both ends of
//! the transfer need, the overlap is bounded by the CPU time they add up to.
//!
//! `bench_async [--mib N] [--cycles K] [--rounds R] [--compute-factor F]` (defaults 32, 6, 5,
//! 1).

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

/// The stage's computation: `reps` sweeps over the input; a checksum of the result.
fn compute(x: &[f64], reps: u32) -> f64 {
    let mut acc = 0.0f64;
    for r in 0..reps {
        let a = 1.0 + f64::from(r) * 1e-9;
        acc += x.iter().fold(0.0, |s, &v| s + a * v);
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
    reps: u32,
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
            sums.push(compute(buf, self.reps));
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
                let held = self.hold(k + 1)?;
                let req = held.get_nb(std::mem::take(spare))?;
                Some((held, req))
            } else {
                None
            };
            sums.push(compute(cur, self.reps));
            if let Some((held, req)) = next {
                *spare = req.wait()?;
                held.release()?;
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
    let suffix = if factor == 1 {
        String::new()
    } else {
        format!("-compute-{factor}x")
    };
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
    let mut stage = Stage { a, n, reps: 1 };
    let (mut cur, mut spare) = (vec![0.0f64; n as usize], vec![0.0f64; n as usize]);

    // Calibration: the compute as long as the transfer.
    let mut transfer = Vec::new();
    for k in 1..=cycles {
        let t = Instant::now();
        stage.fetch(k, &mut cur)?;
        transfer.push(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    compute(&cur, 4);
    let sweep = t.elapsed().as_secs_f64() / 4.0;
    stage.reps = ((factor as f64 * median(transfer) / sweep).round() as u32).max(1);

    let provider = fed.daemon(&fed.providers()[0]).pid();
    let (mut stage_cpu, mut provider_cpu) = (0.0, 0.0);
    let (mut tb, mut to, mut tt, mut tc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
            compute(&cur, stage.reps);
            tc.push(t.elapsed().as_secs_f64());
        }
    }
    let (b, o, tr, co) = (median(tb), median(to), median(tt), median(tc));
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
        "async: {mib} MiB per cycle, {cycles} cycles x {rounds} rounds: transfer alone {tr:.6} s, compute alone {co:.6} s ({} sweeps), blocking {b:.6} s, overlapped {o:.6} s per cycle; checksums equal, every input checked",
        stage.reps
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
