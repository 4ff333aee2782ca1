//! JuxMem's kill experiment (PACT 2003), reproduced: a client runs lock-put-unlock on a 1 MiB
//! array with 4 copies (2 clusters x 2 providers, homes on provider daemons, 16 daemons in all)
//! while a random daemon holding a copy is SIGKILLed every `delta` seconds and a fresh daemon
//! joins its cluster (so the pool never runs dry). The baseline is the same loop with no
//! kills, run just before each kill run in the same federation.
//!
//! Prints, per delta:
//! `BENCH name=kill-lock-put-unlock-delta<d>s-vs-no-kills juxmem_s=<mean op> baseline_s=<mean op> ratio=...`
//! and a `kill:` line with the operations, failures, the history check, and whether the
//! redundancy degree was restored before each next kill. Exits non-zero if an operation
//! failed, the history check failed, or a kill found the degree not yet restored.
//!
//! `bench_kill [--seconds S] [--deltas 5,10,30]` (default 60 s per run).

#[path = "../tests/common/federation.rs"]
mod federation;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use federation::{LocalFederation, Settings};
use juxmem::history::{self, FinalState, Op, Outcome, Recorder};
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::{Health, VersionReq};
use juxmem::{ArrayOptions, Federation, Solo};

static SOLO: Solo = Solo;
const LEN: u64 = 1 << 17; // 1 MiB of f64
const NAME: &str = "bench/kill";

struct Run {
    ops: u64,
    failed: u64,
    /// Operations the history recorder could not take (counted as a failure).
    unrecorded: u64,
    mean_s: f64,
    max_s: f64,
    kills: u32,
    restored_before_next: u32,
    restore_s: Vec<f64>,
}

/// A small xorshift: which daemon to kill.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn healthy(client: &Federation) -> bool {
    client.status().is_ok_and(|s| {
        s.iter()
            .flat_map(|c| &c.arrays)
            .filter(|a| a.meta.spec.name == NAME)
            .all(|a| a.health.iter().all(|h| *h == Health::Healthy))
    })
}

/// Runs the loop for `seconds`, killing a daemon holding a copy every `delta` (if any).
#[allow(clippy::too_many_arguments)]
fn run(
    fed: &Mutex<LocalFederation>,
    client: &Federation,
    a: &juxmem::SharedArray<'static, f64, Solo>,
    rec: &Recorder,
    next_value: &mut u64,
    seconds: f64,
    delta: Option<f64>,
    rng: &mut Rng,
    fresh: &mut u32,
) -> Run {
    let stop = AtomicBool::new(false);
    let mut r = Run {
        ops: 0,
        failed: 0,
        unrecorded: 0,
        mean_s: 0.0,
        max_s: 0.0,
        kills: 0,
        restored_before_next: 0,
        restore_s: vec![],
    };
    let mut times = Vec::new();
    std::thread::scope(|s| {
        let killer = s.spawn(|| {
            let Some(delta) = delta else {
                return (0, 0, vec![]);
            };
            let (mut kills, mut restored, mut restore_s) = (0, 0, vec![]);
            let start = Instant::now();
            let mut next = Duration::from_secs_f64(delta);
            while !stop.load(Ordering::SeqCst) {
                if start.elapsed() < next {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                next += Duration::from_secs_f64(delta);
                if kills > 0 {
                    restored += u32::from(healthy(client));
                }
                let Ok(meta) = client.lookup(NAME) else {
                    continue;
                };
                let holders: Vec<String> = meta.blocks[0]
                    .copies()
                    .chain(meta.blocks[0].restoring.iter())
                    .map(|n| n.name.clone())
                    .collect();
                let victim = holders[(rng.next() % holders.len() as u64) as usize].clone();
                let cluster = victim.split('/').next().unwrap_or("A").to_string();
                let t = Instant::now();
                {
                    let mut f = fed.lock().unwrap_or_else(|e| e.into_inner());
                    f.kill(&victim);
                    f.spawn_provider(&cluster, &format!("fresh-{fresh}"));
                }
                *fresh += 1;
                kills += 1;
                println!("kill: {victim} at {:.1} s", start.elapsed().as_secs_f64());
                // How long until the degree is back (bounded by the next kill): first the
                // manager notices the death, then the copy is restored.
                let gone = |c: &Federation| {
                    c.lookup(NAME).is_ok_and(|m| {
                        let p = &m.blocks[0];
                        !p.copies().chain(&p.restoring).any(|n| n.name == victim)
                    })
                };
                while !stop.load(Ordering::SeqCst) && start.elapsed() < next {
                    if gone(client) && healthy(client) {
                        restore_s.push(t.elapsed().as_secs_f64());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            (kills, restored, restore_s)
        });
        let start = Instant::now();
        let mut buf = vec![0.0f64; LEN as usize];
        while start.elapsed().as_secs_f64() < seconds {
            *next_value += 1;
            let value = *next_value;
            buf.fill(value as f64);
            let p = rec.begin("client", Op::Write { value });
            let t = Instant::now();
            let res = (|| {
                let mut l = a.acquire_region(&[0], &[LEN], Duration::from_secs(60))?;
                l.put(&buf)?;
                l.release()
            })();
            let dt = t.elapsed().as_secs_f64();
            times.push(dt);
            match res {
                Ok(version) => {
                    r.unrecorded += rec.finish(p, Outcome::Ok { version, value }).is_err() as u64
                }
                Err(e) => {
                    eprintln!("kill: operation failed: {e}");
                    r.failed += 1;
                    r.unrecorded += rec.finish(p, Outcome::Unknown).is_err() as u64;
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        let (kills, restored, restore_s) = killer.join().unwrap_or_default();
        r.kills = kills;
        r.restored_before_next = restored + u32::from(kills > 0 && healthy(client));
        r.restore_s = restore_s;
    });
    r.ops = times.len() as u64;
    r.mean_s = times.iter().sum::<f64>() / times.len().max(1) as f64;
    r.max_s = times.iter().copied().fold(0.0, f64::max);
    r
}

fn main() {
    if let Err(e) = bench() {
        eprintln!("bench_kill: {e}");
        std::process::exit(1);
    }
}

fn bench() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let seconds: f64 = match opt("--seconds") {
        Some(s) => s.parse().map_err(|e| format!("--seconds {s:?}: {e}"))?,
        None => 60.0,
    };
    let deltas: Vec<f64> = opt("--deltas")
        .unwrap_or_else(|| "5,10,30".into())
        .split(',')
        .map(|d| d.parse().map_err(|e| format!("--deltas: {d:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let settings = Settings {
        failure_timeout: 3.0,
        timeout: 20.0,
        failpoints: None,
        capacity: "64MiB".into(),
    };
    let fed = LocalFederation::start_with("kill", &[("A", 8), ("B", 8)], settings);
    let client = Federation::join(fed.config("A"))?;
    let opts = ArrayOptions::new(Layout::one_d(LEN, Dist::Block, 1)?)
        .homes_on_daemons()
        .redundancy(2, 2);
    let a = client.create::<f64, _>(&SOLO, NAME, opts)?;
    let fed = Mutex::new(fed);
    let rec = Recorder::new();
    let mut value = 0u64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    let mut fresh = 0u32;
    let mut ok = true;
    // Baselines interleaved with the kill runs: each kill run is compared with the mean of the
    // no-kill runs just before and just after it (same federation, same machine load).
    let mut baselines = vec![run(
        &fed, &client, &a, &rec, &mut value, seconds, None, &mut rng, &mut fresh,
    )];
    let mut kills = Vec::new();
    for &delta in &deltas {
        kills.push(run(
            &fed,
            &client,
            &a,
            &rec,
            &mut value,
            seconds,
            Some(delta),
            &mut rng,
            &mut fresh,
        ));
        baselines.push(run(
            &fed, &client, &a, &rec, &mut value, seconds, None, &mut rng, &mut fresh,
        ));
    }
    for (i, (&delta, kill)) in deltas.iter().zip(&kills).enumerate() {
        let (before, after) = (&baselines[i], &baselines[i + 1]);
        let base_s = (before.mean_s * before.ops as f64 + after.mean_s * after.ops as f64)
            / (before.ops + after.ops).max(1) as f64;
        let ratio = kill.mean_s / base_s;
        println!(
            "BENCH name=kill-lock-put-unlock-delta{delta}s-vs-no-kills juxmem_s={:.6} baseline_s={base_s:.6} ratio={ratio:.3}",
            kill.mean_s
        );
        let restores: Vec<String> = kill.restore_s.iter().map(|s| format!("{s:.2}")).collect();
        println!(
            "kill: delta {delta} s: {} ops ({} failed, slowest {:.3} s) with {} kills; degree restored before the next kill {}/{} (restore times s: {}); baselines {} + {} ops ({} failed)",
            kill.ops,
            kill.failed,
            kill.max_s,
            kill.kills,
            kill.restored_before_next,
            kill.kills,
            restores.join(" "),
            before.ops,
            after.ops,
            before.failed + after.failed
        );
        ok &= kill.failed == 0 && kill.unrecorded == 0 && kill.restored_before_next == kill.kills;
    }
    ok &= baselines.iter().all(|b| b.failed == 0);
    // The history: every acknowledged write readable as the latest at the end.
    let g = a.acquire_region_read(&[0], &[LEN], VersionReq::Latest, Duration::from_secs(60))?;
    let mut buf = vec![0.0; LEN as usize];
    g.get(&mut buf)?;
    let uniform = buf.iter().all(|&x| x == buf[0]);
    let records = rec.records();
    let report = history::check(
        &records,
        Some(&FinalState {
            latest: g.version(),
            versions: vec![(g.version(), buf[0] as u64)],
        }),
    );
    println!("kill: history: {report}");
    println!("kill: final version {} whole: {uniform}", g.version());
    drop(g);
    ok &= report.is_ok() && uniform;
    drop(a);
    drop(client);
    if !ok {
        return Err("kill: FAILED (see above)".into());
    }
    Ok(())
}
