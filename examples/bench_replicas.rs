//! What replicating a cluster's manager costs, and what a failover costs (issue 8), on
//! loopback with real manager processes:
//!
//! - `BENCH name=manager-3-replicas-lock-put-unlock-vs-1 ...`: lock-put-unlock of a 64 KiB array
//!   (its one block homed on the writing process, so the manager's round trips are most of the
//!   operation) in cluster Z, run by 3 manager replicas that keep their logs on disk (fsync),
//!   against the same in cluster X, run by one manager keeping its log on disk the same way
//!   (the same durability); interleaved operation by operation, medians. Target ratio <= 1.5.
//! - `BENCH name=manager-3-replicas-lock-put-unlock-vs-1-in-memory ...`: the same 3 replicas
//!   against cluster Y, run by one manager as the demo runs it (memory only: nothing survives
//!   its death), interleaved with the above.
//! - `BENCH name=manager-failover-lock-put-unlock-vs-no-kill ...`: the same loop in Z for
//!   alternating windows of `--window` seconds (20 by default): in every other window the
//!   leader is SIGKILLed at its start (and started again on its data directory 2 s later);
//!   the mean time per operation in the windows with a kill against those without. Every
//!   operation must succeed (the client follows the new leader by itself): a failed one ends
//!   the benchmark with an error. Target ratio <= 1.2, 0 failed operations.
//!
//! Every put writes the operation's number; the last version of each array is read back whole.
//!
//! `bench_replicas [--ops N] [--window SECONDS] [--windows K]` (defaults 300, 20, 4).

#[path = "../tests/common/federation.rs"]
mod federation;

use std::time::{Duration, Instant};

use federation::{kill_leader, leader_pid, start_replica, LocalFederation, ManagerReplica};
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::VersionReq;
use juxmem::{ArrayOptions, Federation, SharedArray, Solo};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

static SOLO: Solo = Solo;
const LEN: u64 = 1 << 13; // 64 KiB of f64

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

fn main() {
    if let Err(e) = bench() {
        eprintln!("bench_replicas: {e}");
        std::process::exit(1);
    }
}

/// One lock-put-unlock writing `x` everywhere; the version it published.
fn step(a: &mut SharedArray<'_, f64, Solo>, buf: &mut [f64], x: f64) -> Res<u64> {
    buf.fill(x);
    a.acquire()?;
    a.put(&[0], &[LEN], buf)?;
    Ok(a.release()?)
}

/// Reads the last version of `a` back and checks it holds `x`.
fn check(fed: &Federation, name: &str, x: f64) -> Res<()> {
    let layout = Layout::one_d(LEN, Dist::Block, 1)?;
    let mut r = fed.open::<f64, _>(&SOLO, name, layout)?;
    let v = r.acquire_read(VersionReq::Latest)?;
    let mut back = vec![0.0f64; LEN as usize];
    r.get(&[0], &[LEN], &mut back)?;
    if back.iter().any(|&b| b != x) {
        return Err(format!("{name}: version {v} does not hold the last put ({x})").into());
    }
    Ok(())
}

fn bench() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let ops = arg(&args, "--ops", 300)? as usize;
    let window = Duration::from_secs(arg(&args, "--window", 20)?);
    let windows = arg(&args, "--windows", 4)?.max(2) as usize;
    let fed = LocalFederation::start("replicas-bench", &[("Y", 0)]);
    fed.add_cluster_credentials("Z");
    fed.add_cluster_credentials("X");
    let mut replicas: Vec<ManagerReplica> =
        (1..=3).map(|k| start_replica(&fed, "Z", k, 3)).collect();
    let single = start_replica(&fed, "X", 1, 1);
    let t = Instant::now();
    while leader_pid(&fed, "Z").is_none() || leader_pid(&fed, "X").is_none() {
        if t.elapsed() > Duration::from_secs(60) {
            return Err("no leader of Z or X within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let layout = Layout::one_d(LEN, Dist::Block, 1)?;
    let cz = Federation::join(fed.config("Z"))?;
    let cy = Federation::join(fed.config("Y"))?;
    let cx = Federation::join(fed.config("X"))?;
    let mut z = cz.create::<f64, _>(&SOLO, "bench/z", ArrayOptions::new(layout.clone()))?;
    let mut y = cy.create::<f64, _>(&SOLO, "bench/y", ArrayOptions::new(layout.clone()))?;
    let mut xa = cx.create::<f64, _>(&SOLO, "bench/x", ArrayOptions::new(layout))?;
    let mut buf = vec![0.0f64; LEN as usize];

    // Healthy: 3 replicas against 1 manager, interleaved.
    let (mut tz, mut ty, mut tx) = (Vec::new(), Vec::new(), Vec::new());
    for op in 1..=ops {
        let t0 = Instant::now();
        step(&mut z, &mut buf, op as f64)?;
        tz.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        step(&mut xa, &mut buf, op as f64)?;
        tx.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        step(&mut y, &mut buf, op as f64)?;
        ty.push(t0.elapsed().as_secs_f64());
    }
    check(&cy, "bench/z", ops as f64)?;
    check(&cz, "bench/y", ops as f64)?;
    check(&cz, "bench/x", ops as f64)?;
    let (mz, mx, my) = (median(tz), median(tx), median(ty));
    println!(
        "BENCH name=manager-3-replicas-lock-put-unlock-vs-1 juxmem_s={mz:.6} baseline_s={mx:.6} ratio={:.3}",
        mz / mx
    );
    println!(
        "BENCH name=manager-3-replicas-lock-put-unlock-vs-1-in-memory juxmem_s={mz:.6} baseline_s={my:.6} ratio={:.3}",
        mz / my
    );
    println!(
        "replicas: {ops} lock-put-unlock of 64 KiB each: 3 replicas (fsync) median {mz:.6} s, 1 manager (fsync) median {mx:.6} s, 1 manager (memory) median {my:.6} s"
    );

    // Failover: windows with a leader kill at their start against windows without.
    let mut x = ops as f64;
    let (mut killed_ops, mut killed_s, mut calm_ops, mut calm_s) = (0u64, 0.0, 0u64, 0.0);
    let mut failovers = Vec::new();
    for w in 0..windows {
        let kill = w % 2 == 1;
        let start = Instant::now();
        let mut restart: Option<(u64, Instant)> = None;
        if kill {
            let (id, took) = kill_leader(&fed, "Z", &mut replicas);
            failovers.push(took.as_secs_f64());
            restart = Some((id, Instant::now() + Duration::from_secs(2)));
        }
        let mut n = 0u64;
        while start.elapsed() < window {
            x += 1.0;
            step(&mut z, &mut buf, x).map_err(|e| format!("operation {x} failed: {e}"))?;
            n += 1;
            if let Some((id, at)) = restart {
                if Instant::now() >= at {
                    replicas.push(start_replica(&fed, "Z", id, 3));
                    restart = None;
                }
            }
        }
        if let Some((id, _)) = restart {
            replicas.push(start_replica(&fed, "Z", id, 3));
        }
        let s = start.elapsed().as_secs_f64();
        if kill {
            (killed_ops, killed_s) = (killed_ops + n, killed_s + s);
        } else {
            (calm_ops, calm_s) = (calm_ops + n, calm_s + s);
        }
    }
    check(&cy, "bench/z", x)?;
    let (k, c) = (killed_s / killed_ops as f64, calm_s / calm_ops as f64);
    println!(
        "BENCH name=manager-failover-lock-put-unlock-vs-no-kill juxmem_s={k:.6} baseline_s={c:.6} ratio={:.3}",
        k / c
    );
    println!(
        "replicas: {windows} windows of {:.0} s: {killed_ops} operations with a leader kill per window ({} kills, new leader after {failovers:.2?} s), {calm_ops} without; 0 failed",
        window.as_secs_f64(),
        failovers.len()
    );
    drop(z);
    drop(y);
    drop(xa);
    drop(cz);
    drop(cy);
    drop(cx);
    drop(replicas);
    drop(single);
    Ok(())
}
