//! A plan's size does not grow with the array: from 2^10 to 2^40 elements the number of run
//! descriptors stays flat (the build time is measured by `benches/plan.rs`).

use juxmem::layout::{Dist, Layout};
use juxmem::Plan;

fn run_counts(make: impl Fn(u64) -> (Layout, Layout)) -> Vec<usize> {
    (10..=40)
        .step_by(2)
        .map(|k| {
            let (s, d) = make(1u64 << k);
            Plan::new(&s, &d).unwrap().run_count()
        })
        .collect()
}

fn assert_flat(name: &str, counts: &[usize]) {
    let (lo, hi) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    eprintln!("{name}: run counts {counts:?}");
    // Flat: the largest plan is within 1% of the smallest (the final short block may add or
    // remove a run or two) and small in absolute terms.
    assert!(
        hi - lo <= 2 + lo / 100,
        "{name}: plan size grows with length: {counts:?}"
    );
    assert!(hi <= 50_000, "{name}: plan too large: {counts:?}");
}

#[test]
fn one_d_plans_are_flat() {
    let cases: Vec<(&str, Dist, u64, Dist, u64)> = vec![
        ("block->cyclic", Dist::Block, 4, Dist::Cyclic, 3),
        ("cyclic->block", Dist::Cyclic, 5, Dist::Block, 8),
        ("block->bc64", Dist::Block, 2, Dist::BlockCyclic(64), 2),
        ("bc7->bc3", Dist::BlockCyclic(7), 8, Dist::BlockCyclic(3), 5),
        ("cyclic->cyclic", Dist::Cyclic, 7, Dist::Cyclic, 3),
        ("block->block", Dist::Block, 8, Dist::Block, 7),
    ];
    for (name, sd, p, dd, q) in cases {
        let counts = run_counts(|n| {
            (
                Layout::one_d(n, sd, p).unwrap(),
                Layout::one_d(n, dd, q).unwrap(),
            )
        });
        assert_flat(name, &counts);
    }
}

/// Block sizes with a long common period (lcm(8*1000, 8*999) = 7,992,000 elements): the plan
/// grows while the array is shorter than one period, then stays flat; its size is bounded by
/// the period, never by the length.
#[test]
fn plans_saturate_at_the_period() {
    let period = 7_992_000u64;
    let counts = run_counts(|n| {
        (
            Layout::one_d(n, Dist::BlockCyclic(1000), 8).unwrap(),
            Layout::one_d(n, Dist::BlockCyclic(999), 8).unwrap(),
        )
    });
    eprintln!("bc1000->bc999: run counts {counts:?}");
    // At most three runs per source block of one period.
    let bound = 3 * (period / 999 + 8) as usize;
    assert!(
        counts.iter().all(|&c| c <= bound),
        "{counts:?} exceeds {bound}"
    );
    let beyond: Vec<usize> = (10..=40)
        .step_by(2)
        .zip(&counts)
        .filter(|(k, _)| (1u64 << k) >= 2 * period)
        .map(|(_, &c)| c)
        .collect();
    assert!(beyond.len() >= 8);
    assert_flat("bc1000->bc999 beyond two periods", &beyond);
}

#[test]
fn two_d_plans_are_flat() {
    let counts = run_counts(|n| {
        // n elements as a 2^(k/2) x 2^(k/2) square.
        let side = 1u64 << (n.trailing_zeros() / 2);
        let shape = [side, side];
        (
            Layout::new(&shape, &[Dist::Block, Dist::Block], &[2, 2]).unwrap(),
            Layout::new(&shape, &[Dist::Cyclic, Dist::BlockCyclic(64)], &[3, 1]).unwrap(),
        )
    });
    assert_flat("2-D (block,block)->(cyclic,bc64)", &counts);
}
