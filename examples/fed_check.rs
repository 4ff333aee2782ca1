//! Client programs for the multi-process federation tests (`tests/federation.rs`). Each
//! subcommand prints a result line and exits non-zero on failure.
//!
//! ```text
//! fed_check pairs-produce      (mpirun -np 2, cluster A) create the 9 layout-pair arrays
//! fed_check pairs-consume      (mpirun -np 3, cluster B) read each in another layout, check
//! fed_check counter-init NAME  create a counter homed on provider daemons
//! fed_check counter-inc NAME K K acquire / increment / release rounds
//! fed_check counter-read NAME  print the counter and its version
//! fed_check snap-write N       (mpirun) publish N versions, every element = the version
//! fed_check snap-read N        (mpirun, other layout) read latest versions until N, checking
//!                              each is whole
//! fed_check create-on-daemons NAME LEN CLUSTERS PPC
//!                              (mpirun -np B) create a 1-D f64 array of LEN elements in B
//!                              blocks homed on provider daemons, CLUSTERS x PPC copies
//! fed_check write-all NAME VALUE
//!                              lock the whole array, write VALUE everywhere, release
//! fed_check hold-lock NAME VALUE
//!                              the same, but hold the lock until a line arrives on stdin
//! fed_check produce NAME N    create NAME (homes on daemons), release N versions, print
//!                              PRODUCED, then wait to be killed
//! fed_check collective-write NAME ROUNDS
//!                              (mpirun) open NAME in a cyclic layout; ROUNDS collective
//!                              acquire / fill with the round / release; check the last
//! fed_check tools-write PREFIX RELEASES
//!                              (mpirun) create PREFIX/<type> for every element type, 2-D
//!                              13 x 17 block-cyclic over the ranks, and PREFIX/cube (f32,
//!                              4 x 13 x 17), homed on provider daemons, 2 versions kept; release
//!                              RELEASES versions, element i (linear) of version v = tools_value
//! fed_check ckpt-write DIR    (mpirun) create ckpt/x (2-D block over the ranks), release
//!                              version 1 (element i = f(i)), checkpoint it to DIR
//! fed_check ckpt-restore DIR NAME DIST
//!                              (mpirun) restore DIR as NAME in a DIST layout over the ranks,
//!                              check every element
//! fed_check ckpt-refused DIR NAME
//!                              (mpirun) restoring DIR as NAME must fail; print the error and
//!                              whether NAME is still free
//! fed_check nb-group           (mpirun -np 2) non-blocking requests in a group: a put that
//!                              failed on rank 1 without being waited for fails the release on
//!                              both ranks (nothing published); then a non-blocking
//!                              acquire_read of an exact version, every element checked
//! ```

use std::time::Duration;

use juxmem::config::Config;
use juxmem::layout::{balanced_grid, Dist, Layout};
use juxmem::service::protocol::{FullPolicy, VersionReq};
use juxmem::{ArrayOptions, Federation, Solo};
use mpi::traits::*;

const WAIT: Duration = Duration::from_secs(60);
const SHAPE: [u64; 2] = [67, 45];

fn kinds() -> [(&'static str, Dist); 3] {
    [
        ("block", Dist::Block),
        ("cyclic", Dist::Cyclic),
        ("bc3", Dist::BlockCyclic(3)),
    ]
}

fn layout_2d(d: Dist, n: u64) -> Layout {
    Layout::new(&SHAPE, &[d, d], &balanced_grid(n, 2).unwrap()).unwrap()
}

fn f(linear: u64) -> f64 {
    linear as f64 * 1.5 - 7.0
}

fn fill(layout: &Layout, rank: u64, out: &mut [f64]) {
    layout
        .for_each_local_run(rank, |g, off, len| {
            let first = layout.linear_index(g).unwrap();
            for i in 0..len {
                out[(off + i) as usize] = f(first + i);
            }
        })
        .unwrap();
}

fn join(label: &str) -> Federation {
    Federation::join_as(Config::from_env().unwrap(), label).unwrap()
}

fn pairs_produce() {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let n = world.size() as u64;
    let fed = join(&format!("producer{}", world.rank()));
    let consumer = std::env::var("CONSUMER_CLUSTER").unwrap_or_else(|_| "B".into());
    let mut arrays = Vec::new();
    for (i, (sn, sd)) in kinds().into_iter().enumerate() {
        for (j, (dn, _)) in kinds().into_iter().enumerate() {
            let layout = layout_2d(sd, n);
            // Half the pairs keep a copy in the consumer's cluster (read locally there), half
            // are read straight from the producer's ranks across clusters.
            let mut opts = ArrayOptions::new(layout.clone());
            if (i + j) % 2 == 0 {
                opts = opts.redundancy(2, 1).replicate_to([consumer.clone()]);
            }
            let mut a = fed
                .create::<f64, _>(&world, &format!("pairs/{sn}-to-{dn}"), opts)
                .unwrap();
            a.acquire().unwrap();
            fill(&layout, world.rank() as u64, &mut a.local_mut().unwrap());
            assert_eq!(a.release().unwrap(), 1);
            arrays.push(a);
        }
    }
    // Stay alive (our ranks are homes) until the consumer says it has read everything.
    let ack_layout = Layout::one_d(1, Dist::Block, n).unwrap();
    let mut ack = fed
        .open_wait::<u8, _>(&world, "pairs/ack", ack_layout, WAIT)
        .unwrap();
    ack.acquire_read_timeout(VersionReq::AtLeast(1), WAIT)
        .unwrap();
    ack.release_read().unwrap();
    if world.rank() == 0 {
        println!("PAIRS produced 9 arrays on {n} ranks");
    }
}

fn pairs_consume() {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let n = world.size() as u64;
    let me = world.rank() as u64;
    let fed = join(&format!("consumer{me}"));
    let mut bad = 0u64;
    let mut checked = 0u64;
    for (sn, _) in kinds() {
        for (dn, dd) in kinds() {
            let layout = layout_2d(dd, n);
            let name = format!("pairs/{sn}-to-{dn}");
            let mut a = fed
                .open_wait::<f64, _>(&world, &name, layout.clone(), WAIT)
                .unwrap();
            a.acquire_read_timeout(VersionReq::Exactly(1), WAIT)
                .unwrap();
            let mut want = vec![0.0; layout.local_len(me).unwrap() as usize];
            fill(&layout, me, &mut want);
            let got = a.local().unwrap();
            let wrong = got.iter().zip(&want).filter(|(a, b)| a != b).count() as u64;
            if wrong > 0 {
                eprintln!("rank {me}: {name}: {wrong} wrong elements");
            }
            bad += wrong;
            checked += got.len() as u64;
            drop(got);
            a.release_read().unwrap();
        }
    }
    let ack_layout = Layout::one_d(1, Dist::Block, n).unwrap();
    let mut ack = fed
        .create::<u8, _>(
            &world,
            "pairs/ack",
            ArrayOptions::new(ack_layout).homes_on_daemons(),
        )
        .unwrap();
    ack.acquire().unwrap();
    ack.release().unwrap();
    let mut all_bad = 0u64;
    let mut all_checked = 0u64;
    world.all_reduce_into(&bad, &mut all_bad, mpi::collective::SystemOperation::sum());
    world.all_reduce_into(
        &checked,
        &mut all_checked,
        mpi::collective::SystemOperation::sum(),
    );
    if world.rank() == 0 {
        println!("PAIRS consumed pairs=9 elements={all_checked} wrong={all_bad}");
    }
    if all_bad > 0 || all_checked != 9 * SHAPE[0] * SHAPE[1] {
        std::process::exit(1);
    }
}

/// A counter homed on daemons with copies in `clusters` clusters (2 unless given).
fn counter_init(name: &str, clusters: Option<u32>) {
    let fed = join("counter-init");
    let l = Layout::one_d(1, Dist::Block, 1).unwrap();
    let opts = ArrayOptions::new(l)
        .homes_on_daemons()
        .redundancy(clusters.unwrap_or(2), 1)
        .retention(2, FullPolicy::DropOldest);
    fed.create::<i64, _>(&Solo, name, opts).unwrap();
    println!("COUNTER created {name}");
}

fn counter_inc(name: &str, k: u64) {
    let fed = join(&format!("counter-{}", std::process::id()));
    let a = fed
        .open::<i64, _>(&Solo, name, Layout::one_d(1, Dist::Block, 1).unwrap())
        .unwrap();
    for _ in 0..k {
        let mut lock = a.acquire_region(&[0], &[1], WAIT).unwrap();
        let mut v = [0i64];
        lock.get(&mut v).unwrap();
        v[0] += 1;
        lock.put(&v).unwrap();
        lock.release().unwrap();
    }
    println!("COUNTER incremented {k} times");
}

fn counter_read(name: &str) {
    let fed = join("counter-read");
    let mut a = fed
        .open::<i64, _>(&Solo, name, Layout::one_d(1, Dist::Block, 1).unwrap())
        .unwrap();
    let version = a.acquire_read(VersionReq::Latest).unwrap();
    let value = a.local().unwrap()[0];
    a.release_read().unwrap();
    println!("COUNTER value={value} version={version}");
}

fn snap_write(versions: u64) {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let n = world.size() as u64;
    let fed = join(&format!("writer{}", world.rank()));
    let layout = Layout::new(&[300, 200], &[Dist::Block, Dist::Block], &[n, 1]).unwrap();
    // The writer stays at most two versions ahead of the reader (which it waits for), so that
    // the reader's reads race its writes whatever the machine's timing.
    let opts = ArrayOptions::new(layout)
        .redundancy(2, 1)
        .retention(3, FullPolicy::Block)
        .expect_readers(1);
    let mut a = fed.create::<f64, _>(&world, "snap/field", opts).unwrap();
    for v in 1..=versions {
        a.acquire().unwrap();
        // Write in several passes so that a torn read would see mixed values.
        for pass in 0..3 {
            a.local_mut()
                .unwrap()
                .fill(v as f64 - 1.0 + pass as f64 / 3.0);
        }
        a.local_mut().unwrap().fill(v as f64);
        assert_eq!(a.release().unwrap(), v);
    }
    // Stay (homes) until the reader has seen the last version.
    let mut done = fed
        .open_wait::<u8, _>(
            &world,
            "snap/done",
            Layout::one_d(1, Dist::Block, n).unwrap(),
            WAIT,
        )
        .unwrap();
    done.acquire_read_timeout(VersionReq::AtLeast(1), WAIT)
        .unwrap();
    done.release_read().unwrap();
    if world.rank() == 0 {
        println!("SNAP wrote {versions} versions");
    }
}

fn snap_read(last: u64) {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let n = world.size() as u64;
    let fed = join(&format!("reader{}", world.rank()));
    let layout = Layout::new(
        &[300, 200],
        &[Dist::Cyclic, Dist::BlockCyclic(7)],
        &balanced_grid(n, 2).unwrap(),
    )
    .unwrap();
    let mut a = fed
        .open_wait::<f64, _>(&world, "snap/field", layout, WAIT)
        .unwrap();
    let (mut reads, mut torn, mut seen) = (0u64, 0u64, std::collections::BTreeSet::new());
    let mut full = vec![0.0; 300 * 200];
    loop {
        let v = a.acquire_read_timeout(VersionReq::Latest, WAIT).unwrap();
        reads += 1;
        seen.insert(v);
        torn += a
            .local()
            .unwrap()
            .iter()
            .filter(|&&x| x != v as f64)
            .count() as u64;
        if world.rank() == 0 {
            // A one-sided get of the whole field must show the same version everywhere.
            a.get(&[0, 0], &[300, 200], &mut full).unwrap();
            torn += full.iter().filter(|&&x| x != v as f64).count() as u64;
        }
        a.release_read().unwrap();
        if v >= last {
            break;
        }
    }
    let mut done = fed
        .create::<u8, _>(
            &world,
            "snap/done",
            ArrayOptions::new(Layout::one_d(1, Dist::Block, n).unwrap()).homes_on_daemons(),
        )
        .unwrap();
    done.acquire().unwrap();
    done.release().unwrap();
    let mut all_torn = 0u64;
    world.all_reduce_into(
        &torn,
        &mut all_torn,
        mpi::collective::SystemOperation::sum(),
    );
    if world.rank() == 0 {
        println!(
            "SNAP reads={reads} distinct_versions={} torn_elements={all_torn}",
            seen.len()
        );
    }
    if all_torn > 0 {
        std::process::exit(1);
    }
}

fn create_on_daemons(name: &str, len: u64, clusters: u32, ppc: u32) {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let fed = join(&format!("create{}", world.rank()));
    let l = Layout::one_d(len, Dist::Block, world.size() as u64).unwrap();
    let opts = ArrayOptions::new(l)
        .homes_on_daemons()
        .redundancy(clusters, ppc)
        .retention(4, FullPolicy::DropOldest);
    fed.create::<f64, _>(&world, name, opts).unwrap();
    if world.rank() == 0 {
        println!("CREATED {name}");
    }
}

fn produce(name: &str, n: u64) {
    use std::io::Write;
    let fed = join("producer");
    let opts = ArrayOptions::new(Layout::one_d(16, Dist::Block, 1).unwrap())
        .homes_on_daemons()
        .retention(4, FullPolicy::DropOldest);
    let mut a = fed.create::<f64, _>(&Solo, name, opts).unwrap();
    for v in 1..=n {
        a.acquire().unwrap();
        a.local_mut().unwrap().fill(v as f64);
        a.release().unwrap();
    }
    println!("PRODUCED {}", fed.node().name);
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(3600));
}

fn collective_write(name: &str, rounds: u64) {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let fed = join(&format!("writer{}", world.rank()));
    let len = fed.lookup(name).unwrap().spec.layout.shape()[0];
    let l = Layout::one_d(len, Dist::Cyclic, world.size() as u64).unwrap();
    let mut a = fed.open::<f64, _>(&world, name, l).unwrap();
    let mut versions = Vec::new();
    for r in 1..=rounds {
        a.acquire().unwrap();
        a.local_mut().unwrap().fill(r as f64);
        versions.push(a.release().unwrap());
    }
    let v = a.acquire_read(VersionReq::Latest).unwrap();
    let wrong = a
        .local()
        .unwrap()
        .iter()
        .filter(|&&x| x != rounds as f64)
        .count();
    a.release_read().unwrap();
    println!(
        "COLLECTIVE rank={} versions={versions:?} latest={v} wrong={wrong}",
        world.rank()
    );
    if wrong != 0 {
        std::process::exit(1);
    }
}

/// Two ranks, each home of its block: rank 0 takes a raw pointer to its part (as C's
/// `juxmem_array_local_write`) and writes through it; meanwhile rank 1's one-sided get and put
/// of rank 0's block are refused (Busy), while rank 0's own get works. After the release both
/// read what the pointer wrote.
fn lend() {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let me = world.rank() as u64;
    let fed = join(&format!("lend{me}"));
    let len = 1u64 << 10;
    let layout = Layout::one_d(2 * len, Dist::Block, 2).unwrap();
    let mut a = fed
        .create::<f64, _>(&world, "lend/a", juxmem::ArrayOptions::new(layout))
        .unwrap();
    a.acquire().unwrap();
    if me == 0 {
        let (ptr, n) = a.local_raw(true).unwrap();
        // SAFETY: the handle's local part, valid until release.
        let part = unsafe { std::slice::from_raw_parts_mut(ptr, n) };
        for (i, x) in part.iter_mut().enumerate() {
            *x = i as f64 + 0.5;
        }
        let mut buf = [0.0; 2];
        a.get(&[3], &[5], &mut buf).unwrap();
        assert_eq!(buf, [3.5, 4.5], "own get during the loan");
    }
    world.barrier();
    if me == 1 {
        let mut buf = [0.0; 2];
        let e = a.get(&[3], &[5], &mut buf).unwrap_err();
        println!("LEND get {:?} {e}", e.code());
        let e = a.put(&[3], &[5], &buf).unwrap_err();
        println!("LEND put {:?} {e}", e.code());
    }
    world.barrier();
    let v = a.release().unwrap();
    a.acquire_read(VersionReq::Exactly(v)).unwrap();
    let mut all = vec![0.0; 2 * len as usize];
    a.get(&[0], &[2 * len], &mut all).unwrap();
    let wrong = all[..len as usize]
        .iter()
        .enumerate()
        .filter(|&(i, &x)| x != i as f64 + 0.5)
        .count();
    a.release_read().unwrap();
    println!("LEND rank={me} version={v} wrong={wrong}");
}

/// Locks the whole array, writes `value` everywhere, then (with `hold`) waits for a line on
/// stdin before releasing.
fn write_all(name: &str, value: f64, hold: bool) {
    use std::io::Write;
    let fed = join("writer");
    let shape = fed.lookup(name).unwrap().spec.layout.shape();
    let l = Layout::one_d(shape[0], Dist::Block, 1).unwrap();
    let a = fed.open::<f64, _>(&Solo, name, l).unwrap();
    let mut lock = a.acquire_region(&[0], &[shape[0]], WAIT).unwrap();
    lock.put(&vec![value; shape[0] as usize]).unwrap();
    if hold {
        println!("LOCKED");
        std::io::stdout().flush().unwrap();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
    }
    match lock.release() {
        Ok(v) => println!("RELEASED version={v}"),
        Err(e) => println!("RELEASE-ERR code={} {e}", e.code().as_u32()),
    }
}

/// Element `linear` of version `v` of the `tools-write` arrays: `linear + 3 v` for integer
/// types (wrapped to the type), `0.5 (linear + 3 v) - 7.25` for floating point ones.
fn tools_value(linear: u64, v: u64) -> f64 {
    (linear + 3 * v) as f64 * 0.5 - 7.25
}

trait ToolsElem: juxmem::Element {
    fn make(linear: u64, v: u64) -> Self;
}

macro_rules! tools_int {
    ($($t:ty),*) => {
        $(impl ToolsElem for $t {
            fn make(linear: u64, v: u64) -> Self {
                (linear + 3 * v) as $t
            }
        })*
    };
}
tools_int!(i8, u8, i16, u16, i32, u32, i64, u64);

impl ToolsElem for f32 {
    fn make(linear: u64, v: u64) -> Self {
        tools_value(linear, v) as f32
    }
}

impl ToolsElem for f64 {
    fn make(linear: u64, v: u64) -> Self {
        tools_value(linear, v)
    }
}

fn tools_array<T: ToolsElem>(
    fed: &Federation,
    world: &mpi::topology::SimpleCommunicator,
    name: &str,
    layout: Layout,
    releases: u64,
) {
    let rank = world.rank() as u64;
    let opts = ArrayOptions::new(layout.clone())
        .homes_on_daemons()
        .retention(2, FullPolicy::DropOldest);
    let mut a = fed.create::<T, _>(world, name, opts).unwrap();
    for v in 1..=releases {
        a.acquire().unwrap();
        let mut part = a.local_mut().unwrap();
        layout
            .for_each_local_run(rank, |g, off, len| {
                let first = layout.linear_index(g).unwrap();
                for i in 0..len {
                    part[(off + i) as usize] = T::make(first + i, v);
                }
            })
            .unwrap();
        drop(part);
        assert_eq!(a.release().unwrap(), v);
    }
}

fn tools_write(prefix: &str, releases: u64) {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let n = world.size() as u64;
    let fed = join(&format!("tools{}", world.rank()));
    let flat = Layout::new(
        &[13, 17],
        &[Dist::BlockCyclic(4), Dist::Cyclic],
        &balanced_grid(n, 2).unwrap(),
    )
    .unwrap();
    let name = |t: &str| format!("{prefix}/{t}");
    tools_array::<i8>(&fed, &world, &name("i8"), flat.clone(), releases);
    tools_array::<u8>(&fed, &world, &name("u8"), flat.clone(), releases);
    tools_array::<i16>(&fed, &world, &name("i16"), flat.clone(), releases);
    tools_array::<u16>(&fed, &world, &name("u16"), flat.clone(), releases);
    tools_array::<i32>(&fed, &world, &name("i32"), flat.clone(), releases);
    tools_array::<u32>(&fed, &world, &name("u32"), flat.clone(), releases);
    tools_array::<i64>(&fed, &world, &name("i64"), flat.clone(), releases);
    tools_array::<u64>(&fed, &world, &name("u64"), flat.clone(), releases);
    tools_array::<f32>(&fed, &world, &name("f32"), flat.clone(), releases);
    tools_array::<f64>(&fed, &world, &name("f64"), flat, releases);
    let cube = Layout::new(
        &[4, 13, 17],
        &[Dist::Block, Dist::Block, Dist::Block],
        &balanced_grid(n, 3).unwrap(),
    )
    .unwrap();
    tools_array::<f32>(&fed, &world, &name("cube"), cube, releases);
    if world.rank() == 0 {
        println!("TOOLS wrote 11 arrays under {prefix}, {releases} versions each");
    }
}

fn ckpt_write(dir: &str) {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let (n, me) = (world.size() as u64, world.rank() as u64);
    let fed = join(&format!("ckpt-writer{me}"));
    let layout = layout_2d(Dist::Block, n);
    let mut a = fed
        .create::<f64, _>(&world, "ckpt/x", ArrayOptions::new(layout.clone()))
        .unwrap();
    a.acquire().unwrap();
    fill(&layout, me, &mut a.local_mut().unwrap());
    assert_eq!(a.release().unwrap(), 1);
    a.acquire_read(VersionReq::Exactly(1)).unwrap();
    let v = a.checkpoint(std::path::Path::new(dir)).unwrap();
    a.release_read().unwrap();
    if me == 0 {
        println!("CKPT written version {v} on {n} ranks");
    }
}

fn ckpt_restore(dir: &str, name: &str, dist: &str) {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let (n, me) = (world.size() as u64, world.rank() as u64);
    let fed = join(&format!("ckpt-reader{me}"));
    let layout = layout_2d(dist.parse().unwrap(), n);
    let mut a = fed
        .restore::<f64, _>(
            &world,
            std::path::Path::new(dir),
            name,
            ArrayOptions::new(layout.clone()),
        )
        .unwrap();
    a.acquire_read(VersionReq::Exactly(1)).unwrap();
    let mut want = vec![0.0; layout.local_len(me).unwrap() as usize];
    fill(&layout, me, &mut want);
    let got = a.local().unwrap();
    let wrong = got.iter().zip(&want).filter(|(x, y)| x != y).count() as u64;
    let checked = got.len() as u64;
    drop(got);
    a.release_read().unwrap();
    let sum = |x: u64| {
        let mut total = 0u64;
        world.all_reduce_into(&x, &mut total, mpi::collective::SystemOperation::sum());
        total
    };
    let (all_wrong, all_checked) = (sum(wrong), sum(checked));
    if me == 0 {
        println!("CKPT restored {all_checked} elements on {n} ranks ({dist}), {all_wrong} wrong");
    }
}

fn ckpt_refused(dir: &str, name: &str) {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let (n, me) = (world.size() as u64, world.rank() as u64);
    let fed = join(&format!("ckpt-refused{me}"));
    let layout = layout_2d(Dist::Cyclic, n);
    let e = match fed.restore::<f64, _>(
        &world,
        std::path::Path::new(dir),
        name,
        ArrayOptions::new(layout),
    ) {
        Ok(_) => {
            println!("CKPT restored a bad checkpoint");
            std::process::exit(1);
        }
        Err(e) => e,
    };
    let free = matches!(fed.lookup(name), Err(juxmem::Error::NotFound(_)));
    if me == 0 || !matches!(e, juxmem::Error::Remote { .. }) {
        println!("CKPT refused on rank {me}: {:?}: {e}", e.code());
    }
    if me == 0 {
        println!("CKPT name {}", if free { "free" } else { "TAKEN" });
    }
}

fn nb_group() {
    use juxmem::service::failpoint::{self, Action};
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let (n, me) = (world.size() as u64, world.rank() as u64);
    let fed = join(&format!("nb-group{me}"));
    let layout = layout_2d(Dist::Block, n);
    let mut a = fed
        .create::<f64, _>(&world, "nb/group", ArrayOptions::new(layout.clone()))
        .unwrap();
    // Each rank puts the next rank's rows (its block's home is that rank); rank 1's put fails
    // and nobody waits for it.
    a.acquire().unwrap();
    let rows = SHAPE[0] / n;
    let first = ((me + 1) % n) * rows;
    let last = if (me + 1) % n == n - 1 {
        SHAPE[0]
    } else {
        first + rows
    };
    let band: Vec<f64> = (first * SHAPE[1]..last * SHAPE[1]).map(f).collect();
    if me == 1 {
        failpoint::arm("put_nb.transfer", Action::Fail);
    }
    let p = a
        .put_nb(&[first, 0], &[last, SHAPE[1]], band.clone())
        .unwrap();
    while !p.test() {
        std::thread::sleep(Duration::from_millis(5));
    }
    match a.release() {
        Ok(v) => {
            println!("NBFAIL rank {me} released version {v}");
            std::process::exit(1);
        }
        Err(e) => println!("NBFAIL rank {me} refused {:?}: {e}", e.code()),
    }
    world.barrier();
    let committed = fed.lookup("nb/group").unwrap().committed;
    if me == 0 {
        println!("NBFAIL committed {committed}");
    }

    // Again without the failure; then the version read without waiting in the group.
    a.acquire().unwrap();
    a.put_nb(&[first, 0], &[last, SHAPE[1]], band)
        .unwrap()
        .wait()
        .unwrap();
    let v = a.release().unwrap();
    let latest = a.acquire_read_nb(VersionReq::Latest).map_err(|e| e.code());
    a.acquire_read_nb(VersionReq::Exactly(v)).unwrap();
    let got = a.acquire_read_wait().unwrap();
    let mut want = vec![0.0; layout.local_len(me).unwrap() as usize];
    fill(&layout, me, &mut want);
    let whole = a.local().unwrap()[..] == want[..];
    a.release_read().unwrap();
    println!("NBREAD rank {me} version {got} of {v} whole {whole} latest {latest:?}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "pairs-produce" => pairs_produce(),
        "lend" => lend(),
        "pairs-consume" => pairs_consume(),
        "counter-init" => counter_init(&arg(2), arg(3).parse().ok()),
        "counter-inc" => counter_inc(&arg(2), arg(3).parse().unwrap()),
        "counter-read" => counter_read(&arg(2)),
        "snap-write" => snap_write(arg(2).parse().unwrap()),
        "snap-read" => snap_read(arg(2).parse().unwrap()),
        "create-on-daemons" => create_on_daemons(
            &arg(2),
            arg(3).parse().unwrap(),
            arg(4).parse().unwrap(),
            arg(5).parse().unwrap(),
        ),
        "write-all" => write_all(&arg(2), arg(3).parse().unwrap(), false),
        "collective-write" => collective_write(&arg(2), arg(3).parse().unwrap()),
        "produce" => produce(&arg(2), arg(3).parse().unwrap()),
        "hold-lock" => write_all(&arg(2), arg(3).parse().unwrap(), true),
        "tools-write" => tools_write(&arg(2), arg(3).parse().unwrap()),
        "ckpt-write" => ckpt_write(&arg(2)),
        "ckpt-restore" => ckpt_restore(&arg(2), &arg(3), &arg(4)),
        "ckpt-refused" => ckpt_refused(&arg(2), &arg(3)),
        "nb-group" => nb_group(),
        other => {
            eprintln!("unknown subcommand {other:?}");
            std::process::exit(2);
        }
    }
}
