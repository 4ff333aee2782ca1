//! Reads from a cache copy against reads from the remote home, across hosts (issue 12, item 5;
//! CANTO): run by `ci/bench-cache` on host 2 of a `ci/netlab` pair (1 Gbit/s, 5 ms each way),
//! where cluster B's manager and provider daemon live; cluster A's live on host 1.
//!
//! A writer of cluster A (this process) writes two arrays of the same size, each homed on A's
//! daemon, so on host 1. Then readers of cluster B read them whole, interleaved:
//! - the baseline reads `cache/remote` with no cache, from the home across the link;
//! - juxmem reads `cache/cached` with `JUXMEM_READ_CACHE=1`: the first read fills a cache copy
//!   in B's daemon (timed apart, as `fill`), and every later one is served from it.
//!
//! Every read is checked whole. Prints `BENCH name=cache-read-<MIB>mib-across-hosts-vs-remote
//! juxmem_s=<median cached read> baseline_s=<median remote read> ratio=...` (target <= 0.2:
//! reads from a cached copy at least 5x faster).
//!
//! `bench_cache [--mib N] [--reps R]` (defaults 64, 5); the federation from `JUXMEM_*`.

use std::time::{Duration, Instant};

use juxmem::config::Config;
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::{FullPolicy, NodeKind, VersionReq};
use juxmem::{ArrayOptions, Federation, Solo};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn arg(args: &[String], name: &str, default: u64) -> Res<u64> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or_else(|| format!("{name} needs a value"))?
            .parse()?),
        None => Ok(default),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn value(name_salt: u64, i: u64) -> f64 {
    (name_salt * 1_000_000_007 + i) as f64
}

/// Reads `name` whole (its latest version) and checks it: the seconds it took.
fn read(fed: &Federation, name: &str, layout: &Layout, salt: u64, buf: &mut [f64]) -> Res<f64> {
    let a = fed.inspect::<f64, _>(&Solo, name, layout.clone())?;
    let n = buf.len() as u64;
    let t = Instant::now();
    let held = a.acquire_region_read(&[0], &[n], VersionReq::Latest, Duration::from_secs(60))?;
    held.get(buf)?;
    held.release()?;
    let took = t.elapsed().as_secs_f64();
    if let Some((i, x)) = buf
        .iter()
        .enumerate()
        .find(|(i, &x)| x != value(salt, *i as u64))
    {
        return Err(format!("{name}: element {i} is {x}").into());
    }
    Ok(took)
}

fn main() {
    if let Err(e) = bench() {
        eprintln!("bench_cache: {e}");
        std::process::exit(1);
    }
}

fn bench() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let mib = arg(&args, "--mib", 64)?;
    let reps = arg(&args, "--reps", 5)?.max(1);
    let n = mib * (1 << 20) / 8;
    let layout = Layout::one_d(n, Dist::Block, 1)?;
    let base = Config::from_env()?;

    // Both daemons registered before anything is placed.
    let writer = Federation::join(base.clone().cluster("A"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let daemons = writer
            .status()?
            .iter()
            .flat_map(|c| c.members.iter())
            .filter(|m| m.node.kind == NodeKind::Daemon)
            .count();
        if daemons >= 2 {
            break;
        }
        if Instant::now() > deadline {
            return Err("the provider daemons of A and B did not register within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut keep = Vec::new();
    for (salt, name) in [(1, "cache/remote"), (2, "cache/cached")] {
        let opts = ArrayOptions::new(layout.clone())
            .homes_on_daemons()
            .retention(2, FullPolicy::DropOldest);
        let mut a = writer.create::<f64, _>(&Solo, name, opts)?;
        a.acquire()?;
        for (i, x) in a.local_mut()?.iter_mut().enumerate() {
            *x = value(salt, i as u64);
        }
        a.release()?;
        keep.push(a);
    }

    let plain = Federation::join(base.clone().cluster("B"))?;
    let mut caching_cfg = base.cluster("B");
    caching_cfg.read_cache = true;
    let caching = Federation::join(caching_cfg)?;
    let mut buf = vec![0.0f64; n as usize];
    let fill = read(&caching, "cache/cached", &layout, 2, &mut buf)?;
    let (mut remote, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        remote.push(read(&plain, "cache/remote", &layout, 1, &mut buf)?);
        cached.push(read(&caching, "cache/cached", &layout, 2, &mut buf)?);
    }
    // The cached reads were served by B's daemon: its counters say so.
    let status = plain.status()?;
    let b = status
        .iter()
        .find(|c| c.cluster == "B")
        .and_then(|c| c.members.iter().find(|m| m.node.kind == NodeKind::Daemon))
        .ok_or("no daemon in cluster B")?;
    let stats = plain.cache_stats(&b.node.addr)?;
    if stats.fills != 1 || stats.hits != reps {
        return Err(format!("B's daemon cache: {stats:?}; expected 1 fill, {reps} hits").into());
    }
    let (c, r) = (median(cached), median(remote));
    println!(
        "BENCH name=cache-read-{mib}mib-across-hosts-vs-remote juxmem_s={c:.6} baseline_s={r:.6} ratio={:.3}",
        c / r
    );
    println!(
        "cache: {mib} MiB, {reps} reads each, interleaved: from the remote home {r:.6} s, from B's cache copy {c:.6} s ({:.1}x faster); the fill took {fill:.6} s; B's daemon: {} fill, {} hits; every read checked",
        r / c,
        stats.fills,
        stats.hits
    );
    Ok(())
}
