//! Property tests of the layout math: every global index has exactly one owner, local and
//! global maps are inverse, local sizes sum to the global size.

use juxmem::layout::{Dist, Layout};
use proptest::prelude::*;

fn dist() -> impl Strategy<Value = Dist> {
    prop_oneof![
        Just(Dist::Block),
        Just(Dist::Cyclic),
        (1u64..20).prop_map(Dist::BlockCyclic),
    ]
}

/// A layout of 1 to 3 dimensions with small extents and grids.
fn layout() -> impl Strategy<Value = Layout> {
    (1usize..=3)
        .prop_flat_map(|nd| {
            (
                prop::collection::vec(0u64..40, nd),
                prop::collection::vec(dist(), nd),
                prop::collection::vec(1u64..6, nd),
            )
        })
        .prop_map(|(shape, dists, grid)| Layout::new(&shape, &dists, &grid).unwrap())
}

fn all_indices(shape: &[u64]) -> Vec<Vec<u64>> {
    let mut out = vec![vec![]];
    for &n in shape {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                (0..n).map(move |i| {
                    let mut v = prefix.clone();
                    v.push(i);
                    v
                })
            })
            .collect();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn local_sizes_sum_to_global(l in layout()) {
        let total: u64 = (0..l.nprocs()).map(|r| l.local_len(r).unwrap()).sum();
        prop_assert_eq!(total, l.len());
    }

    #[test]
    fn each_index_has_one_owner_and_maps_round_trip(l in layout()) {
        let mut seen: Vec<Vec<bool>> = (0..l.nprocs())
            .map(|r| vec![false; l.local_len(r).unwrap() as usize])
            .collect();
        for idx in all_indices(&l.shape()) {
            let (rank, off) = l.locate(&idx).unwrap();
            prop_assert_eq!(l.owner(&idx).unwrap(), rank);
            prop_assert!(!seen[rank as usize][off as usize], "{:?} collides at rank {} offset {}", idx, rank, off);
            seen[rank as usize][off as usize] = true;
            prop_assert_eq!(l.global_index(rank, off).unwrap(), idx);
        }
        // Every local slot is the image of some global index: the maps are bijections.
        prop_assert!(seen.iter().all(|v| v.iter().all(|&b| b)));
    }

    #[test]
    fn local_runs_cover_local_storage_in_order(l in layout()) {
        for r in 0..l.nprocs() {
            let mut next = 0;
            l.for_each_local_run(r, |g, off, len| {
                assert_eq!(off, next);
                for i in 0..len {
                    let mut idx = g.to_vec();
                    *idx.last_mut().unwrap() += i;
                    assert_eq!(l.locate(&idx).unwrap(), (r, off + i));
                }
                next += len;
            }).unwrap();
            prop_assert_eq!(next, l.local_len(r).unwrap());
        }
    }

    #[test]
    fn grid_coordinates_round_trip(l in layout()) {
        for r in 0..l.nprocs() {
            let c = l.rank_coords(r).unwrap();
            prop_assert_eq!(l.coords_rank(&c).unwrap(), r);
        }
    }
}

#[test]
fn block_follows_the_hpf_convention() {
    // 10 over 4: blocks of ceil(10/4) = 3, so 3, 3, 3, 1.
    let l = Layout::one_d(10, Dist::Block, 4).unwrap();
    let sizes: Vec<u64> = (0..4).map(|r| l.local_len(r).unwrap()).collect();
    assert_eq!(sizes, vec![3, 3, 3, 1]);
    // Cyclic: i on i mod p.
    let c = Layout::one_d(10, Dist::Cyclic, 4).unwrap();
    assert_eq!(c.locate(&[9]).unwrap(), (1, 2));
    // Block-cyclic(2) over 3: blocks [0,1]->0 [2,3]->1 [4,5]->2 [6,7]->0 ...
    let bc = Layout::one_d(10, Dist::BlockCyclic(2), 3).unwrap();
    assert_eq!(bc.locate(&[7]).unwrap(), (0, 3));
    assert_eq!(bc.global_index(0, 3).unwrap(), vec![7]);
}

#[test]
fn extents_beyond_32_bits_work() {
    let n = 1u64 << 40;
    let l = Layout::one_d(n, Dist::BlockCyclic(1000), 7).unwrap();
    let g = n - 12345;
    let (r, off) = l.locate(&[g]).unwrap();
    assert_eq!(l.global_index(r, off).unwrap(), vec![g]);
    let total: u64 = (0..7).map(|r| l.local_len(r).unwrap()).sum();
    assert_eq!(total, n);
}
