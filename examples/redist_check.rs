//! Multi-rank redistribution check, run under `mpirun -np N` (N = 1..4) by `tests/mpi.rs`.
//!
//! For block, cyclic and block-cyclic in both directions, 1-D and 2-D, on the same ranks and on
//! different (overlapping or disjoint) rank sets of every size, each rank fills its source part
//! with f(global index), redistributes with the MPI executor, and checks every destination
//! element. Prints `REDIST-CHECK ranks=N cases=K failures=F` on rank 0 and exits non-zero on
//! any failure.

use juxmem::layout::{balanced_grid, Dist, Layout};
use juxmem::redistribute::mpi::{redistribute, RankMap};
use juxmem::transport::mpi::check_thread_level;
use juxmem::{Element, ErrorCode, Plan};
use mpi::collective::SystemOperation;
use mpi::traits::*;

/// The value every element must carry: a function of its global row-major index.
fn f(linear: u64) -> f64 {
    (linear as f64) * 0.5 + ((linear % 7) as f64) * 1000.0
}

fn fill(layout: &Layout, rank: u64) -> Vec<f64> {
    let mut v = vec![f64::NAN; layout.local_len(rank).unwrap() as usize];
    layout
        .for_each_local_run(rank, |g, off, len| {
            let first = layout.linear_index(g).unwrap();
            for i in 0..len {
                v[(off + i) as usize] = f(first + i);
            }
        })
        .unwrap();
    v
}

/// Runs one case; returns the number of wrong elements on this rank.
fn case<C: Communicator>(comm: &C, src: &Layout, dst: &Layout, ranks: &RankMap) -> u64 {
    let me = comm.rank();
    let plan = Plan::cached(src, dst).unwrap();
    let p = ranks.src.iter().position(|&r| r == me).map(|i| i as u64);
    let q = ranks.dst.iter().position(|&r| r == me).map(|i| i as u64);
    let source = p.map(|p| fill(src, p));
    let mut dest = q.map(|q| vec![f64::NAN; dst.local_len(q).unwrap() as usize]);
    redistribute(comm, &plan, ranks, source.as_deref(), dest.as_deref_mut()).unwrap();
    let (Some(q), Some(got)) = (q, dest) else {
        return 0;
    };
    let want = fill(dst, q);
    let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count() as u64;
    if bad > 0 {
        eprintln!("rank {me}: {src} -> {dst} ranks {ranks:?}: {bad} wrong elements");
    }
    bad
}

/// Runs one case twice with elements of type `T` valued `val(global index)`; returns the number
/// of wrong elements on this rank.
fn typed_case<T: Element, C: Communicator>(
    comm: &C,
    src: &Layout,
    dst: &Layout,
    ranks: &RankMap,
    val: fn(u64) -> T,
) -> u64 {
    let me = comm.rank();
    let plan = Plan::cached(src, dst).unwrap();
    let p = ranks.src.iter().position(|&r| r == me).map(|i| i as u64);
    let q = ranks.dst.iter().position(|&r| r == me).map(|i| i as u64);
    let part = |layout: &Layout, rank: u64| {
        let mut v = vec![T::default(); layout.local_len(rank).unwrap() as usize];
        layout
            .for_each_local_run(rank, |g, off, len| {
                let first = layout.linear_index(g).unwrap();
                for i in 0..len {
                    v[(off + i) as usize] = val(first + i);
                }
            })
            .unwrap();
        v
    };
    let source = p.map(|p| part(src, p));
    let mut bad = 0;
    for _ in 0..2 {
        let mut dest = q.map(|q| vec![T::default(); dst.local_len(q).unwrap() as usize]);
        redistribute(comm, &plan, ranks, source.as_deref(), dest.as_deref_mut()).unwrap();
        if let (Some(q), Some(got)) = (q, dest) {
            let want = part(dst, q);
            let wrong = got.iter().zip(&want).filter(|(a, b)| a != b).count() as u64;
            if wrong > 0 {
                eprintln!(
                    "rank {me}: {} {src} -> {dst} ranks {ranks:?}: {wrong} wrong elements",
                    T::TYPE
                );
            }
            bad += wrong;
        }
    }
    bad
}

fn main() {
    let (universe, level) =
        mpi::initialize_with_threading(mpi::Threading::Funneled).expect("MPI initialises once");
    check_thread_level(level).unwrap();
    let world = universe.world();
    let comm = world.duplicate();
    let n = comm.size() as u64;
    let mut cases = 0u64;
    let mut failures = 0u64;

    // Rank sets: the same ranks, and every (P, Q) with the source on the first P ranks and the
    // destination on the last Q (overlapping or disjoint).
    let mut rank_sets = vec![];
    for p in 1..=n {
        for q in 1..=n {
            rank_sets.push(RankMap::ranges(0, p as usize, (n - q) as i32, q as usize));
        }
    }
    rank_sets.push(RankMap {
        src: (0..n as i32).rev().collect(),
        dst: (0..n as i32).collect(),
    });

    let kinds = [Dist::Block, Dist::Cyclic, Dist::BlockCyclic(3)];
    for ranks in &rank_sets {
        let (p, q) = (ranks.src.len() as u64, ranks.dst.len() as u64);
        for len in [0u64, 1, 1009, 100_003] {
            for &s in &kinds {
                for &d in &kinds {
                    let src = Layout::one_d(len, s, p).unwrap();
                    let dst = Layout::one_d(len, d, q).unwrap();
                    failures += case(&comm, &src, &dst, ranks);
                    cases += 1;
                }
            }
        }
        let combos = [
            [Dist::Block, Dist::Block],
            [Dist::Cyclic, Dist::Cyclic],
            [Dist::BlockCyclic(2), Dist::BlockCyclic(5)],
            [Dist::Block, Dist::Cyclic],
        ];
        let (gp, gq) = (balanced_grid(p, 2).unwrap(), balanced_grid(q, 2).unwrap());
        for shape in [[37u64, 23], [256, 300]] {
            for s in &combos {
                for d in &combos {
                    for grid_q in [gq.clone(), vec![gq[1], gq[0]]] {
                        let src = Layout::new(&shape, s, &gp).unwrap();
                        let dst = Layout::new(&shape, d, &grid_q).unwrap();
                        failures += case(&comm, &src, &dst, ranks);
                        cases += 1;
                    }
                }
            }
        }
    }

    // Transfers large enough to be cut into many chunks (packed into reused buffers, sent or
    // received in place where contiguous, unpacked from buffers otherwise), for element types
    // of every size, each redistributed twice (the second call reuses the first one's buffers).
    let mut big_sets = vec![RankMap::same(n as usize)];
    if n > 1 {
        // Disjoint: source on the first ranks, destination on the others.
        let p = (n / 2) as usize;
        big_sets.push(RankMap::ranges(0, p, p as i32, n as usize - p));
    }
    for ranks in &big_sets {
        let (p, q) = (ranks.src.len() as u64, ranks.dst.len() as u64);
        let len = (1u64 << 20) + 17;
        for (s, d) in [
            (Dist::Block, Dist::Cyclic),
            (Dist::Cyclic, Dist::BlockCyclic(3)),
            (Dist::BlockCyclic(64), Dist::Block),
            (Dist::Block, Dist::Block),
        ] {
            let src = Layout::one_d(len, s, p).unwrap();
            let dst = Layout::one_d(len, d, q).unwrap();
            failures += typed_case::<f64, _>(&comm, &src, &dst, ranks, |x| x as f64 * 0.5);
            failures += typed_case::<u8, _>(&comm, &src, &dst, ranks, |x| (x % 251) as u8);
            cases += 2;
        }
        let (bc64, bc16, cyc) = (Dist::BlockCyclic(64), Dist::BlockCyclic(16), Dist::Cyclic);
        for (s, d) in [([bc64, bc64], [bc16, bc16]), ([bc64, bc64], [cyc, cyc])] {
            let shape = [1024u64, 1000];
            let src = Layout::new(&shape, &s, &[p, 1]).unwrap();
            let dst = Layout::new(&shape, &d, &[1, q]).unwrap();
            failures += typed_case::<f32, _>(&comm, &src, &dst, ranks, |x| (x % 1_000_003) as f32);
            failures += typed_case::<u64, _>(&comm, &src, &dst, ranks, |x| x * 3);
            cases += 2;
        }
    }

    // Bad input gets typed errors, not hangs: a wrong-length buffer and a bad rank map.
    let src = Layout::one_d(10, Dist::Block, n).unwrap();
    let plan = Plan::new(&src, &src).unwrap();
    let same = RankMap::same(n as usize);
    let short = vec![0.0f64; 0];
    let mut out = vec![0.0f64; src.local_len(comm.rank() as u64).unwrap() as usize];
    let len0 = src.local_len(comm.rank() as u64).unwrap();
    if len0 > 0 {
        let e = redistribute(&comm, &plan, &same, Some(&short), Some(&mut out)).unwrap_err();
        failures += u64::from(e.code() != ErrorCode::BufferSize);
        cases += 1;
    }
    let bad_map = RankMap {
        src: vec![n as i32; n as usize],
        dst: same.dst.clone(),
    };
    let e = redistribute::<f64, _>(&comm, &plan, &bad_map, None, None).unwrap_err();
    failures += u64::from(e.code() != ErrorCode::BadGrid);
    cases += 1;

    let mut total = 0u64;
    comm.all_reduce_into(&failures, &mut total, SystemOperation::sum());
    if comm.rank() == 0 {
        println!("REDIST-CHECK ranks={n} cases={cases} failures={total}");
    }
    if total > 0 {
        std::process::exit(1);
    }
}
