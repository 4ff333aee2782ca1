//! MPI redistribution benchmark: juxmem against a hand-written `MPI_Alltoallv` redistribution
//! (what users write today: count per destination, pack, all-to-all of counts, all-to-all-v,
//! unpack), on the same data in the same run. Run with `mpirun -np 2` (see `ci/bench`).
//!
//! Each case alternates the two implementations (warm-up excluded), times each repetition as
//! the slowest rank's time, checks both results against f(global index), and prints
//! `BENCH name=<case>-vs-alltoallv juxmem_s=<median> baseline_s=<median> ratio=<juxmem/baseline>`,
//! and a second line `<case>-vs-memcpy` against one memcpy of the rank's part (the least any
//! redistribution must do: how far juxmem is from the machine's limit).
//!
//! Usage: `bench_redist [--reps N] [--quick]` (`--quick` shrinks the sizes for smoke tests).

use std::time::Instant;

use juxmem::layout::{balanced_grid, Dist, Layout};
use juxmem::redistribute::mpi::{redistribute, RankMap};
use juxmem::transport::mpi::check_thread_level;
use juxmem::Plan;
use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::traits::*;

fn f(linear: u64) -> f64 {
    linear as f64 * 0.25 + 1.0
}

/// Source part of `rank`, each element f(global row-major index).
fn fill(layout: &Layout, rank: u64) -> Vec<f64> {
    let mut v = vec![0.0; layout.local_len(rank).unwrap() as usize];
    layout
        .for_each_local_run(rank, |g, off, len| {
            let first = layout.linear_index(g).unwrap();
            for (i, x) in v[off as usize..(off + len) as usize].iter_mut().enumerate() {
                *x = f(first + i as u64);
            }
        })
        .unwrap();
    v
}

/// The hand-written baseline's view of one axis: block size and process count, with the
/// owner / local-offset formulas users write by hand.
#[derive(Clone, Copy)]
struct Axis {
    n: usize,
    procs: usize,
    block: usize,
}

impl Axis {
    fn new(n: usize, procs: usize, dist: Dist) -> Axis {
        let block = match dist {
            Dist::Block => n.div_ceil(procs).max(1),
            Dist::Cyclic => 1,
            Dist::BlockCyclic(b) => b as usize,
        };
        Axis { n, procs, block }
    }
    fn owner(&self, g: usize) -> usize {
        (g / self.block) % self.procs
    }
    fn global(&self, p: usize, l: usize) -> usize {
        ((l / self.block) * self.procs + p) * self.block + l % self.block
    }
    fn local_len(&self, p: usize) -> usize {
        let (full, rem) = (self.n / self.block, self.n % self.block);
        let mine = full / self.procs + usize::from(p < full % self.procs);
        mine * self.block
            + if rem > 0 && full % self.procs == p {
                rem
            } else {
                0
            }
    }
}

/// The local elements of one rank, visited in local row-major order with their global index.
/// 1-D arrays are handled as 2-D with a leading axis of extent 1.
#[inline(always)]
fn walk<F: FnMut(usize, usize, usize)>(
    axes: &[Axis; 2],
    coords: [usize; 2],
    local: [usize; 2],
    mut f: F,
) {
    for r in 0..local[0] {
        let gr = axes[0].global(coords[0], r);
        for c in 0..local[1] {
            f(r * local[1] + c, gr, axes[1].global(coords[1], c));
        }
    }
}

fn as_2d(axes: &[Axis]) -> [Axis; 2] {
    match axes {
        [a] => [
            Axis {
                n: 1,
                procs: 1,
                block: 1,
            },
            *a,
        ],
        [a, b] => [*a, *b],
        _ => unreachable!("the baseline handles 1-D and 2-D"),
    }
}

/// Hand-written redistribution over the same ranks with MPI_Alltoallv, as users write it:
/// count per destination, pack, all-to-all of counts, all-to-all-v, unpack. Both sides walk
/// their local elements in row-major order, which is global row-major order restricted to the
/// piece, so the receiver takes each source's elements in arrival order.
fn baseline<C: Communicator>(
    comm: &C,
    src: &[Axis],
    src_coords: &[usize],
    dst: &[Axis],
    dst_coords: &[usize],
    data: &[f64],
    out: &mut [f64],
) {
    let size = comm.size() as usize;
    let (src, dst) = (as_2d(src), as_2d(dst));
    let two = |c: &[usize]| {
        if c.len() == 1 {
            [0, c[0]]
        } else {
            [c[0], c[1]]
        }
    };
    let (sc, dc) = (two(src_coords), two(dst_coords));
    let src_local = [src[0].local_len(sc[0]), src[1].local_len(sc[1])];
    let dst_local = [dst[0].local_len(dc[0]), dst[1].local_len(dc[1])];
    let dest_rank = |gr: usize, gc: usize| dst[0].owner(gr) * dst[1].procs + dst[1].owner(gc);
    let src_rank = |gr: usize, gc: usize| src[0].owner(gr) * src[1].procs + src[1].owner(gc);
    let prefix = |c: &[i32]| -> Vec<i32> {
        c.iter()
            .scan(0, |acc, &x| {
                let d = *acc;
                *acc += x;
                Some(d)
            })
            .collect()
    };
    // Count, then pack per destination.
    let mut counts = vec![0i32; size];
    walk(&src, sc, src_local, |_, gr, gc| {
        counts[dest_rank(gr, gc)] += 1
    });
    let displs = prefix(&counts);
    let mut sendbuf = vec![0.0f64; data.len()];
    let mut pos: Vec<usize> = displs.iter().map(|&d| d as usize).collect();
    walk(&src, sc, src_local, |l, gr, gc| {
        let d = dest_rank(gr, gc);
        sendbuf[pos[d]] = data[l];
        pos[d] += 1;
    });
    // Counts, then data.
    let mut rcounts = vec![0i32; size];
    comm.all_to_all_into(&counts[..], &mut rcounts[..]);
    let rdispls = prefix(&rcounts);
    let mut recvbuf = vec![0.0f64; out.len()];
    {
        let s = Partition::new(&sendbuf[..], &counts[..], &displs[..]);
        let mut r = PartitionMut::new(&mut recvbuf[..], &rcounts[..], &rdispls[..]);
        comm.all_to_all_varcount_into(&s, &mut r);
    }
    // Unpack in arrival order per source.
    let mut rpos: Vec<usize> = rdispls.iter().map(|&d| d as usize).collect();
    walk(&dst, dc, dst_local, |l, gr, gc| {
        let s = src_rank(gr, gc);
        out[l] = recvbuf[rpos[s]];
        rpos[s] += 1;
    });
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn slowest<C: Communicator>(comm: &C, t: f64) -> f64 {
    let mut m = 0.0;
    comm.all_reduce_into(&t, &mut m, SystemOperation::max());
    m
}

fn run_case<C: Communicator>(
    comm: &C,
    name: &str,
    shape: &[u64],
    sd: &[Dist],
    dd: &[Dist],
    reps: usize,
) {
    let n = comm.size() as u64;
    let me = comm.rank() as u64;
    let grid = balanced_grid(n, shape.len()).unwrap();
    let src = Layout::new(shape, sd, &grid).unwrap();
    let dst = Layout::new(shape, dd, &grid).unwrap();
    let ranks = RankMap::same(n as usize);
    let data = fill(&src, me);
    let want = fill(&dst, me);
    let mut out = vec![0.0; want.len()];
    let axes = |l: &Layout| -> Vec<Axis> {
        l.dims()
            .iter()
            .map(|d| Axis::new(d.extent() as usize, d.procs() as usize, d.dist()))
            .collect()
    };
    let (sa, da) = (axes(&src), axes(&dst));
    let sc: Vec<usize> = src
        .rank_coords(me)
        .unwrap()
        .iter()
        .map(|&c| c as usize)
        .collect();
    let dc: Vec<usize> = dst
        .rank_coords(me)
        .unwrap()
        .iter()
        .map(|&c| c as usize)
        .collect();

    let (mut tj, mut tb, mut tm) = (Vec::new(), Vec::new(), Vec::new());
    let mut copy = vec![0.0f64; data.len()];
    for rep in 0..=reps {
        comm.barrier();
        let t0 = Instant::now();
        let plan = Plan::cached(&src, &dst).unwrap();
        redistribute(comm, &plan, &ranks, Some(&data), Some(&mut out)).unwrap();
        let t = slowest(comm, t0.elapsed().as_secs_f64());
        assert!(out == want, "{name}: juxmem result wrong on rank {me}");
        out.iter_mut().for_each(|x| *x = 0.0);

        comm.barrier();
        let t0 = Instant::now();
        baseline(comm, &sa, &sc, &da, &dc, &data, &mut out);
        let b = slowest(comm, t0.elapsed().as_secs_f64());
        assert!(out == want, "{name}: baseline result wrong on rank {me}");
        out.iter_mut().for_each(|x| *x = 0.0);
        // Reference: one memcpy of this rank's part (the least any redistribution must do).
        comm.barrier();
        let t0 = Instant::now();
        copy.copy_from_slice(&data);
        let m = slowest(comm, t0.elapsed().as_secs_f64());
        if rep > 0 {
            tj.push(t);
            tb.push(b);
            tm.push(m);
        }
    }
    let (j, b, m) = (median(tj), median(tb), median(tm));
    if me == 0 {
        println!(
            "BENCH name={name}-vs-alltoallv juxmem_s={j:.6} baseline_s={b:.6} ratio={:.3}",
            j / b
        );
        println!(
            "BENCH name={name}-vs-memcpy juxmem_s={j:.6} baseline_s={m:.6} ratio={:.3}",
            j / m
        );
    }
}

fn main() {
    let (universe, level) =
        mpi::initialize_with_threading(mpi::Threading::Funneled).expect("MPI init");
    check_thread_level(level).unwrap();
    let world = universe.world();
    let comm = world.duplicate();
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 2 } else { 7 });
    let (n1, n2) = if quick {
        (1u64 << 16, 256u64)
    } else {
        (1u64 << 25, 8192u64)
    };
    if comm.rank() == 0 {
        eprintln!(
            "bench_redist: {} ranks, 1-D {n1} f64, 2-D {n2}x{n2} f64, {reps} repetitions",
            comm.size()
        );
    }
    run_case(
        &comm,
        "redist-1d-block-to-cyclic",
        &[n1],
        &[Dist::Block],
        &[Dist::Cyclic],
        reps,
    );
    run_case(
        &comm,
        "redist-1d-block-to-bc64",
        &[n1],
        &[Dist::Block],
        &[Dist::BlockCyclic(64)],
        reps,
    );
    run_case(
        &comm,
        "redist-2d-block-block-to-cyclic-cyclic",
        &[n2, n2],
        &[Dist::Block, Dist::Block],
        &[Dist::Cyclic, Dist::Cyclic],
        reps,
    );
}
