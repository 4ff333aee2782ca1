//! Plan building with many processes (issue 11: "plan building stays flat from 2^10 to 2^40
//! elements, and takes < 1 ms for P = Q = 1024"). Run by `ci/bench`; single process, no MPI.
//!
//! What is timed for juxmem ("rank work"): `Plan::new` plus everything one rank needs to take
//! part in the redistribution, i.e. its row (its destinations and the spans it sends to each)
//! and its column (its sources and the spans it receives from each), for P = Q = 1024, 1-D.
//! Rank 513 is used (an interior rank; every rank does the same amount of work in these cases).
//!
//! Baseline, measured in the same run: what a competent MPI programmer computes for the same
//! rank before `MPI_Alltoallv` in the block -> cyclic case, the send counts to every
//! destination and the receive counts from every source with the closed-form count of indices
//! `i = q (mod Q)` in a block range, O(P + Q), into two preallocated arrays of `i32` ... which
//! is less than juxmem gives (no offsets: the cyclic side's offsets are implicit in that
//! program). The 1 ms target is not used as a baseline; it is printed next to the
//! figure it applies to.
//!
//! Output: one line per case and length (`plan-build: ...`, the build alone and the rank work,
//! medians), then
//! `BENCH name=plan-build-p1024-q1024-block-to-cyclic juxmem_s=<rank work at 2^40>
//! baseline_s=<counts loop at 2^40> ratio=<juxmem/baseline>`.
//!
//! Usage: `bench_plan [--quick]` (`--quick`: fewer repetitions).

use std::hint::black_box;
use std::time::{Duration, Instant};

use juxmem::layout::{Dist, Layout};
use juxmem::Plan;

const P: u64 = 1024;
const Q: u64 = 1024;
/// The rank whose row and column are built.
const RANK: u64 = 513;

/// Median seconds of `f`, run at least `min_reps` times and for at least `min_time`.
fn median_s(min_reps: usize, min_time: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm-up, not counted
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min_reps || start.elapsed() < min_time {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
        if times.len() >= 100_000 {
            break;
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Builds the plan and the row and column of `RANK`; returns the elements and spans seen so
/// nothing can be optimised away.
fn rank_work(s: &Layout, d: &Layout) -> (u64, usize) {
    let plan = Plan::new(s, d).unwrap();
    let (mut elements, mut spans) = (0u64, 0usize);
    for t in plan.destinations(RANK).unwrap() {
        elements += t.elements;
        spans += plan.spans(RANK, t.peer).unwrap().len();
    }
    for t in plan.sources(RANK).unwrap() {
        elements += t.elements;
        spans += plan.spans(t.peer, RANK).unwrap().len();
    }
    (elements, spans)
}

/// The hand-written counts for block (source, P ranks) -> cyclic (destination, Q ranks) of `n`
/// elements, for rank `RANK` on both sides, into `send` (per destination) and `recv` (per
/// source). Counts are `i32`, as `MPI_Alltoallv` takes them (saturated: at 2^40 elements a
/// count can exceed `i32`; the program would then need MPI 4's large counts, same arithmetic).
fn mpi_counts(n: u64, send: &mut [i32], recv: &mut [i32]) {
    let b = n.div_ceil(P); // block size, as MPI programs (and juxmem) choose it
                           // Indices i < x with i = r (mod Q).
    let below = |x: u64, r: u64| (x + Q - 1 - r) / Q;
    let range = |p: u64| ((p * b).min(n), ((p + 1) * b).min(n));
    let (lo, hi) = range(RANK);
    for (q, c) in send.iter_mut().enumerate() {
        let q = q as u64;
        *c = (below(hi, q) - below(lo, q)).min(i32::MAX as u64) as i32;
    }
    for (p, c) in recv.iter_mut().enumerate() {
        let (lo, hi) = range(p as u64);
        *c = (below(hi, RANK) - below(lo, RANK)).min(i32::MAX as u64) as i32;
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (reps, time) = if quick {
        (3, Duration::from_millis(20))
    } else {
        (7, Duration::from_millis(150))
    };
    let cases: [(&str, Dist, Dist); 3] = [
        ("block-to-cyclic", Dist::Block, Dist::Cyclic),
        ("block-to-bc64", Dist::Block, Dist::BlockCyclic(64)),
        ("bc7-to-bc3", Dist::BlockCyclic(7), Dist::BlockCyclic(3)),
    ];
    let mut headline = None;
    for (name, sd, dd) in cases {
        for k in [10u32, 20, 30, 40] {
            let n = 1u64 << k;
            let s = Layout::one_d(n, sd, P).unwrap();
            let d = Layout::one_d(n, dd, Q).unwrap();
            let build = median_s(reps, time, || {
                black_box(Plan::new(black_box(&s), black_box(&d)).unwrap());
            });
            let (elements, spans) = rank_work(&s, &d);
            let work = median_s(reps, time, || {
                black_box(rank_work(black_box(&s), black_box(&d)));
            });
            println!(
                "plan-build: case={name} p={P} q={Q} n=2^{k} new_s={build:.9} \
                 rank_work_s={work:.9} (rank {RANK}: {elements} elements, {spans} spans in \
                 its row and column; target < 0.001 s)"
            );
            if name == "block-to-cyclic" && k == 40 {
                headline = Some((n, work));
            }
        }
    }
    let (n, juxmem_s) = headline.expect("the block-to-cyclic 2^40 case ran");
    let (mut send, mut recv) = (vec![0i32; Q as usize], vec![0i32; P as usize]);
    let baseline_s = median_s(reps.max(101), time, || {
        mpi_counts(black_box(n), &mut send, &mut recv);
        black_box((&send, &recv));
    });
    // The counts must agree with juxmem's (checked outside the timing).
    let plan = Plan::new(
        &Layout::one_d(n, Dist::Block, P).unwrap(),
        &Layout::one_d(n, Dist::Cyclic, Q).unwrap(),
    )
    .unwrap();
    for t in plan.destinations(RANK).unwrap() {
        assert_eq!(
            t.elements, send[t.peer as usize] as u64,
            "send count to {}",
            t.peer
        );
    }
    for t in plan.sources(RANK).unwrap() {
        assert_eq!(
            t.elements, recv[t.peer as usize] as u64,
            "receive count from {}",
            t.peer
        );
    }
    println!(
        "BENCH name=plan-build-p{P}-q{Q}-block-to-cyclic juxmem_s={juxmem_s:.9} \
         baseline_s={baseline_s:.9} ratio={:.3}",
        juxmem_s / baseline_s
    );
}
