//! Helpers shared by the single-process tests.
#![allow(dead_code)]

pub mod federation;
pub mod mpirun;
pub mod netlab;

/// The repository's root.
pub fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

use juxmem::layout::Layout;
use juxmem::plan::Plan;
use juxmem::redistribute;

/// A layout with every rank's local part filled: each element holds its global row-major
/// index (as u32, enough for the sizes tested here and half the memory traffic of u64).
pub struct Filled {
    pub layout: Layout,
    pub parts: Vec<Vec<u32>>,
}

impl Filled {
    pub fn new(layout: Layout) -> Filled {
        assert!(layout.len() < u64::from(u32::MAX));
        let parts = (0..layout.nprocs())
            .map(|r| {
                let mut v = vec![u32::MAX; layout.local_len(r).unwrap() as usize];
                layout
                    .for_each_local_run(r, |g, off, len| {
                        let first = layout.linear_index(g).unwrap() as u32;
                        for (i, x) in v[off as usize..(off + len) as usize].iter_mut().enumerate() {
                            *x = first + i as u32;
                        }
                    })
                    .unwrap();
                v
            })
            .collect();
        Filled { layout, parts }
    }
}

/// Redistributes `src` -> `dst` in one process and checks every element arrived exactly once at
/// its new owner. Returns the plan's run count.
pub fn check(src: &Filled, dst: &Filled) -> usize {
    let (sl, dl) = (&src.layout, &dst.layout);
    let plan = Plan::new(sl, dl).unwrap();
    let mut to: Vec<Vec<u32>> = dst.parts.iter().map(|v| vec![u32::MAX; v.len()]).collect();
    {
        let srcs: Vec<&[u32]> = src.parts.iter().map(|v| v.as_slice()).collect();
        let mut dsts: Vec<&mut [u32]> = to.iter_mut().map(|v| v.as_mut_slice()).collect();
        redistribute::local(&plan, &srcs, &mut dsts).unwrap();
    }
    for (q, (got, want)) in to.iter().zip(&dst.parts).enumerate() {
        if got != want {
            let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
            panic!(
                "{sl} -> {dl}: destination rank {q} local {i} holds {} instead of {}",
                got[i], want[i]
            );
        }
    }
    // Every element was written at least once (above) and exactly `len` elements moved in
    // all, so every element moved exactly once.
    let mut moved = 0u64;
    for p in 0..sl.nprocs() {
        let sent: u64 = plan
            .destinations(p)
            .unwrap()
            .iter()
            .map(|t| t.elements)
            .sum();
        assert_eq!(
            sent,
            sl.local_len(p).unwrap(),
            "{sl} -> {dl}: rank {p} sends"
        );
        moved += sent;
    }
    for q in 0..dl.nprocs() {
        let got: u64 = plan.sources(q).unwrap().iter().map(|t| t.elements).sum();
        assert_eq!(
            got,
            dl.local_len(q).unwrap(),
            "{sl} -> {dl}: rank {q} receives"
        );
    }
    assert_eq!(moved, sl.len(), "{sl} -> {dl}: elements moved");
    plan.run_count()
}

/// Checks every (source, destination) pair of the two lists.
pub fn check_all(srcs: &[Layout], dsts: &[Layout]) -> usize {
    let s: Vec<Filled> = srcs.iter().cloned().map(Filled::new).collect();
    let d: Vec<Filled> = dsts.iter().cloned().map(Filled::new).collect();
    for a in &s {
        for b in &d {
            check(a, b);
        }
    }
    s.len() * d.len()
}
