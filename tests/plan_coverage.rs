//! Every plan moves every element exactly once to its new owner, checked in-process with the
//! ranks simulated, over the whole matrix the foundation issue asks for:
//! P, Q in 1..=8, b in {1, 2, 3, 7}, lengths {0, 1, a prime, P*Q*b - 1, P*Q*b + 1, 10^6},
//! every pair of block / cyclic / block-cyclic(b), 1-D and 2-D.
//!
//! Block and cyclic do not depend on b, so layouts without a block-cyclic axis are only
//! exercised with b = 1; the 10^6 cases are split per source rank count to use every core.

mod common;

use juxmem::layout::{balanced_grid, Dist, Layout};

const BLOCKS: [u64; 4] = [1, 2, 3, 7];
const PRIME: u64 = 1009;
const MILLION: u64 = 1_000_000;

fn lengths(p: u64, q: u64, b: u64, big: bool) -> Vec<u64> {
    if big {
        vec![MILLION]
    } else {
        vec![0, 1, PRIME, p * q * b - 1, p * q * b + 1]
    }
}

/// Distributions to test at block size `b` (block and cyclic only with b = 1).
fn dists_1d(b: u64) -> Vec<Dist> {
    if b == 1 {
        vec![Dist::Block, Dist::Cyclic, Dist::BlockCyclic(1)]
    } else {
        vec![Dist::BlockCyclic(b)]
    }
}

fn one_d(ps: std::ops::RangeInclusive<u64>, big: bool) {
    let mut cases = 0;
    for p in ps {
        for q in 1..=8u64 {
            for b in BLOCKS {
                for n in lengths(p, q, b, big) {
                    let srcs: Vec<Layout> = kinds(b)
                        .iter()
                        .map(|&d| Layout::one_d(n, d, p).unwrap())
                        .collect();
                    let dsts: Vec<Layout> = kinds(b)
                        .iter()
                        .map(|&d| Layout::one_d(n, d, q).unwrap())
                        .collect();
                    // Pairs where neither side is block-cyclic(b) were covered at b = 1.
                    let s_bc: Vec<Layout> = dists_1d(b)
                        .iter()
                        .map(|&d| Layout::one_d(n, d, p).unwrap())
                        .collect();
                    let d_bc: Vec<Layout> = dists_1d(b)
                        .iter()
                        .map(|&d| Layout::one_d(n, d, q).unwrap())
                        .collect();
                    if b == 1 {
                        cases += common::check_all(&srcs, &dsts);
                    } else {
                        cases += common::check_all(&s_bc, &dsts);
                        cases += common::check_all(&srcs[..2], &d_bc);
                    }
                }
            }
        }
    }
    eprintln!("1-D cases checked: {cases}");
}

fn kinds(b: u64) -> [Dist; 3] {
    [Dist::Block, Dist::Cyclic, Dist::BlockCyclic(b)]
}

fn combos_2d(b: u64) -> Vec<[Dist; 2]> {
    let bc = Dist::BlockCyclic(b);
    vec![
        [Dist::Block, Dist::Block],
        [Dist::Cyclic, Dist::Cyclic],
        [Dist::Block, Dist::Cyclic],
        [bc, bc],
        [Dist::Cyclic, bc],
    ]
}

fn two_d(ps: std::ops::RangeInclusive<u64>, big: bool) {
    let mut cases = 0;
    for p in ps {
        for q in 1..=8u64 {
            let gp = balanced_grid(p, 2).unwrap();
            let gq = balanced_grid(q, 2).unwrap();
            for b in BLOCKS {
                for n in lengths(p, q, b, big) {
                    // About n elements: n rows x 3 columns, or 1000 x 1000 for 10^6.
                    let shape = if n == MILLION { [1000, 1000] } else { [n, 3] };
                    let combos = combos_2d(b);
                    let with_bc =
                        |c: &[Dist; 2]| c.iter().any(|d| matches!(d, Dist::BlockCyclic(_)));
                    let srcs: Vec<Layout> = combos
                        .iter()
                        .map(|c| Layout::new(&shape, c, &gp).unwrap())
                        .collect();
                    // Both orientations of the destination grid, so non-square grids meet
                    // both ways.
                    let dsts: Vec<Layout> = combos
                        .iter()
                        .flat_map(|c| {
                            [
                                Layout::new(&shape, c, &gq).unwrap(),
                                Layout::new(&shape, c, &[gq[1], gq[0]]).unwrap(),
                            ]
                        })
                        .collect();
                    if b == 1 {
                        cases += common::check_all(&srcs, &dsts);
                    } else {
                        // Only pairs with a block-cyclic(b) side are new at this b.
                        let s_bc: Vec<Layout> = srcs
                            .iter()
                            .filter(|l| with_bc(&[l.dists()[0], l.dists()[1]]))
                            .cloned()
                            .collect();
                        let d_bc: Vec<Layout> = dsts
                            .iter()
                            .filter(|l| with_bc(&[l.dists()[0], l.dists()[1]]))
                            .cloned()
                            .collect();
                        let s_plain: Vec<Layout> = srcs
                            .iter()
                            .filter(|l| !with_bc(&[l.dists()[0], l.dists()[1]]))
                            .cloned()
                            .collect();
                        cases += common::check_all(&s_bc, &dsts);
                        cases += common::check_all(&s_plain, &d_bc);
                    }
                }
            }
        }
    }
    eprintln!("2-D cases checked: {cases}");
}

#[test]
fn one_d_small_lengths() {
    one_d(1..=8, false);
}

#[test]
fn one_d_million() {
    one_d(1..=8, true);
}

#[test]
fn two_d_small_lengths() {
    two_d(1..=8, false);
}

#[test]
fn two_d_million_p1_to_p3() {
    two_d(1..=3, true);
}

#[test]
fn two_d_million_p4_to_p5() {
    two_d(4..=5, true);
}

#[test]
fn two_d_million_p6_to_p8() {
    two_d(6..=8, true);
}

#[test]
fn three_d_mixed() {
    let shape = [7, 10, 13];
    let grids: [&[u64]; 4] = [&[1, 1, 1], &[2, 1, 2], &[1, 3, 2], &[2, 2, 2]];
    let combos = [
        [Dist::Block, Dist::Block, Dist::Block],
        [Dist::Cyclic, Dist::Block, Dist::BlockCyclic(3)],
        [Dist::BlockCyclic(2), Dist::Cyclic, Dist::Cyclic],
    ];
    let layouts: Vec<Layout> = grids
        .iter()
        .flat_map(|g| {
            combos
                .iter()
                .map(move |c| Layout::new(&shape, c, g).unwrap())
        })
        .collect();
    common::check_all(&layouts, &layouts);
}

#[test]
fn identical_layouts_move_nothing_between_ranks() {
    for p in 1..=8u64 {
        for d in kinds(3) {
            let l = Layout::one_d(PRIME, d, p).unwrap();
            let plan = juxmem::Plan::new(&l, &l).unwrap();
            for r in 0..p {
                let dests = plan.destinations(r).unwrap();
                assert!(
                    dests.iter().all(|t| t.peer == r),
                    "{l}: rank {r} sends {dests:?}"
                );
            }
        }
    }
}
