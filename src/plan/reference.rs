//! The plan as it was built before pairs were computed on demand: every (source, destination)
//! pair of every axis materialized (O(P x Q) time and memory). Kept, unchanged but for names,
//! as the oracle the on-demand plan is tested against (same runs, in the same order).

#![allow(dead_code)]

use crate::layout::DimLayout;
use crate::plan::dim::{Repeat, Run};

fn repeat(count: u64, src_stride: u64, dst_stride: u64) -> Repeat {
    if count <= 1 {
        Repeat::ONCE
    } else {
        Repeat {
            count,
            src_stride,
            dst_stride,
        }
    }
}

fn normalized(mut r: Run) -> Run {
    if r.inner.count > 1 && r.inner.src_stride == r.len && r.inner.dst_stride == r.len {
        r.len *= r.inner.count;
        r.inner = Repeat::ONCE;
    }
    if r.inner.count == 1
        && r.outer.count > 1
        && r.outer.src_stride == r.len
        && r.outer.dst_stride == r.len
    {
        r.len *= r.outer.count;
        r.outer = Repeat::ONCE;
    }
    r
}

/// The runs between one source process and one destination process along one axis.
#[derive(Clone, Debug)]
pub struct Pair {
    pub src: u64,
    pub dst: u64,
    pub elements: u64,
    start: usize,
    end: usize,
}

/// A 1-D plan between two layouts of the same extent.
#[derive(Clone, Debug)]
pub struct OldDimPlan {
    runs: Vec<Run>,
    /// Pairs sorted by (src, dst).
    pairs: Vec<Pair>,
    /// `pairs[by_src[p]..by_src[p+1]]` are the pairs with source `p`.
    by_src: Vec<usize>,
    /// Indices into `pairs`, sorted by (dst, src); `by_dst[q]..by_dst[q+1]` index into it.
    dst_order: Vec<usize>,
    by_dst: Vec<usize>,
}

impl OldDimPlan {
    /// Builds the plan from `src` to `dst` (same extent).
    pub fn build(src: &DimLayout, dst: &DimLayout) -> OldDimPlan {
        debug_assert_eq!(src.extent(), dst.extent());
        let coarse_is_src = src.block() >= dst.block();
        let (coarse, fine) = if coarse_is_src {
            (src, dst)
        } else {
            (dst, src)
        };
        let mut runs = Vec::new();
        let mut pairs = Vec::new();
        let mut scratch: Vec<(u64, Run)> = Vec::new(); // (fine process, run in coarse/fine terms)
                                                       // Pairs come out sorted by coarse process; fine processes are sorted per coarse one.
        let mut grouped: Vec<(u64, u64, Vec<Run>)> = Vec::new(); // (coarse, fine, runs)
        for c in 0..coarse.procs() {
            scratch.clear();
            coarse_process_runs(coarse, fine, c, &mut scratch);
            scratch.sort_by_key(|&(f, _)| f); // stable: keeps pattern order inside a pair
            let mut i = 0;
            while i < scratch.len() {
                let f = scratch[i].0;
                let mut j = i;
                let mut list = Vec::new();
                while j < scratch.len() && scratch[j].0 == f {
                    list.push(scratch[j].1);
                    j += 1;
                }
                grouped.push((c, f, list));
                i = j;
            }
        }
        // Express in source/destination terms.
        let mut oriented: Vec<(u64, u64, Vec<Run>)> = grouped
            .into_iter()
            .map(|(c, f, list)| {
                if coarse_is_src {
                    (c, f, list)
                } else {
                    (f, c, list.into_iter().map(swap_sides).collect())
                }
            })
            .collect();
        oriented.sort_by_key(|&(s, d, _)| (s, d));
        for (s, d, list) in oriented {
            let start = runs.len();
            let elements = list.iter().map(Run::elements).sum();
            runs.extend(list);
            pairs.push(Pair {
                src: s,
                dst: d,
                elements,
                start,
                end: runs.len(),
            });
        }
        let by_src = csr_index(src.procs(), pairs.iter().map(|p| p.src));
        let mut dst_order: Vec<usize> = (0..pairs.len()).collect();
        dst_order.sort_by_key(|&i| (pairs[i].dst, pairs[i].src));
        let by_dst = csr_index(dst.procs(), dst_order.iter().map(|&i| pairs[i].dst));
        OldDimPlan {
            runs,
            pairs,
            by_src,
            dst_order,
            by_dst,
        }
    }

    /// Total number of run descriptors (the plan's size).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// The runs from source process `p` to destination process `q` (empty if none).
    pub fn runs(&self, p: u64, q: u64) -> &[Run] {
        match self.find(p, q) {
            Some(pair) => &self.runs[pair.start..pair.end],
            None => &[],
        }
    }

    /// Elements moved from `p` to `q`.
    pub fn elements(&self, p: u64, q: u64) -> u64 {
        self.find(p, q).map_or(0, |pair| pair.elements)
    }

    /// Pairs with source `p`, sorted by destination.
    pub fn pairs_of_src(&self, p: u64) -> &[Pair] {
        let p = usize::try_from(p).unwrap_or(usize::MAX);
        match (self.by_src.get(p), self.by_src.get(p.wrapping_add(1))) {
            (Some(&a), Some(&b)) => &self.pairs[a..b],
            _ => &[],
        }
    }

    /// Pairs with destination `q`, sorted by source.
    pub fn pairs_of_dst(&self, q: u64) -> impl Iterator<Item = &Pair> {
        let q = usize::try_from(q).unwrap_or(usize::MAX);
        let range = match (self.by_dst.get(q), self.by_dst.get(q.wrapping_add(1))) {
            (Some(&a), Some(&b)) => a..b,
            _ => 0..0,
        };
        self.dst_order[range].iter().map(|&i| &self.pairs[i])
    }

    fn find(&self, p: u64, q: u64) -> Option<&Pair> {
        let list = self.pairs_of_src(p);
        list.binary_search_by_key(&q, |pair| pair.dst)
            .ok()
            .map(|i| &list[i])
    }
}

/// CSR offsets for `keys` (sorted ascending, each `< n`).
fn csr_index(n: u64, keys: impl Iterator<Item = u64>) -> Vec<usize> {
    let n = usize::try_from(n).expect("process count fits in usize");
    let mut counts = vec![0usize; n + 1];
    for k in keys {
        counts[k as usize + 1] += 1;
    }
    for i in 0..n {
        counts[i + 1] += counts[i];
    }
    counts
}

/// A run computed with coarse = source; flips it for coarse = destination.
fn swap_sides(r: Run) -> Run {
    let flip = |rep: Repeat| Repeat {
        count: rep.count,
        src_stride: rep.dst_stride,
        dst_stride: rep.src_stride,
    };
    Run {
        src: r.dst,
        dst: r.src,
        len: r.len,
        inner: flip(r.inner),
        outer: flip(r.outer),
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Appends `(fine process, run)` for every run of coarse process `c`, with `src` = coarse side.
fn coarse_process_runs(coarse: &DimLayout, fine: &DimLayout, c: u64, out: &mut Vec<(u64, Run)>) {
    let (bc, pc) = (coarse.block(), coarse.procs());
    let (bf, qf) = (fine.block(), fine.procs());
    let n = coarse.extent();
    let a_c = u128::from(pc) * u128::from(bc); // coarse period
    let b_f = u128::from(qf) * u128::from(bf); // fine period
    let period_blocks = b_f / gcd(a_c, b_f); // T: blocks of c before the pattern repeats
    let full = coarse.full_blocks_of(c);
    let patterns = u128::from(full).min(period_blocks) as u64;
    for t in 0..patterns {
        // Blocks j = t, t + T, t + 2T, ... (< full) of process c share one pattern.
        let repeats = (full - t).div_ceil(period_blocks.min(u128::from(full)) as u64);
        let outer = if repeats > 1 {
            // Valid because repeats > 1 implies T * Ac <= n fits in u64.
            let t_blocks = period_blocks as u64;
            let global_period = t_blocks * pc * bc; // lcm(Ac, Bf)
            repeat(repeats, t_blocks * bc, global_period / (qf * bf) * bf)
        } else {
            Repeat::ONCE
        };
        let k = c + t * pc; // global block index
        block_runs(fine, k * bc, bc, t * bc, outer, out);
    }
    // The final short block of the whole array, if c owns it.
    let full_total = n / bc;
    if n % bc != 0 && full_total % pc == c {
        let g0 = full_total * bc;
        block_runs(fine, g0, n - g0, (full_total / pc) * bc, Repeat::ONCE, out);
    }
}

/// Runs of the coarse block `[g0, g0 + len)` (local offset `c_local` on the coarse side) per
/// fine owner.
fn block_runs(
    fine: &DimLayout,
    g0: u64,
    len: u64,
    c_local: u64,
    outer: Repeat,
    out: &mut Vec<(u64, Run)>,
) {
    let (bf, qf) = (fine.block(), fine.procs());
    let end = g0 + len; // exclusive
    let m_lo = g0 / bf;
    let m_hi = (end - 1) / bf;
    let span = m_hi - m_lo + 1; // fine blocks touched
    let owners = span.min(qf);
    let mut push = |f: u64, gs: u64, ge: u64, inner: Repeat| {
        let run = Run {
            src: c_local + (gs - g0),
            dst: fine.local_offset(gs),
            len: ge - gs,
            inner,
            outer,
        };
        out.push((f, normalized(run)));
    };
    for i in 0..owners {
        let f = (m_lo + i) % qf;
        let m_first = m_lo + i; // first fine block of f in range (i < qf)
        let m_last = m_hi - ((m_hi % qf + qf - f) % qf);
        let clip = |m: u64| ((m * bf).max(g0), ((m + 1) * bf).min(end));
        if m_first == m_last {
            let (gs, ge) = clip(m_first);
            push(f, gs, ge, Repeat::ONCE);
            continue;
        }
        let first_full = m_first * bf >= g0;
        let last_full = (m_last + 1) * bf <= end;
        if !first_full {
            let (gs, ge) = clip(m_first);
            push(f, gs, ge, Repeat::ONCE);
        }
        let mid_start = if first_full { m_first } else { m_first + qf };
        let mid_end = if last_full { m_last } else { m_last - qf };
        if mid_start <= mid_end {
            let count = (mid_end - mid_start) / qf + 1;
            let gs = mid_start * bf;
            push(f, gs, gs + bf, repeat(count, qf * bf, bf));
        }
        if !last_full {
            let (gs, ge) = clip(m_last);
            push(f, gs, ge, Repeat::ONCE);
        }
    }
}

/// The on-demand plan against this one, on random layouts: same runs in the same order for
/// every pair, same rows and columns, same spans for n-D plans.
mod tests {
    use proptest::prelude::*;

    use super::OldDimPlan;
    use crate::layout::{DimLayout, Dist, Layout};
    use crate::plan::{product_transfers, row_major_strides, walk_spans, DimPlan, Plan, Span};

    fn dist() -> impl Strategy<Value = Dist> {
        prop_oneof![
            Just(Dist::Block),
            Just(Dist::Cyclic),
            (1u64..40).prop_map(Dist::BlockCyclic),
        ]
    }

    /// Short arrays (partial periods, empty processes) and long ones (many periods, outer
    /// repeats, a final short block).
    fn extent() -> impl Strategy<Value = u64> {
        prop_oneof![1u64..3000, (1u64 << 20)..(1u64 << 40)]
    }

    fn check_dim(s: &DimLayout, d: &DimLayout) {
        let (old, new) = (OldDimPlan::build(s, d), DimPlan::build(s, d));
        assert_eq!(new.run_count(), old.run_count());
        for p in 0..s.procs() {
            let want: Vec<(u64, u64)> = old
                .pairs_of_src(p)
                .iter()
                .map(|x| (x.dst, x.elements))
                .collect();
            assert_eq!(new.peers_of_src(p), want, "row of {p}");
            for q in 0..d.procs() {
                assert_eq!(new.runs(p, q), old.runs(p, q), "runs {p} -> {q}");
                assert_eq!(
                    new.elements(p, q),
                    old.elements(p, q),
                    "elements {p} -> {q}"
                );
            }
        }
        for q in 0..d.procs() {
            let want: Vec<(u64, u64)> = old.pairs_of_dst(q).map(|x| (x.src, x.elements)).collect();
            assert_eq!(new.peers_of_dst(q), want, "column of {q}");
        }
        // Out-of-range processes have no peers (the n-D plan checks ranks before asking).
        assert!(new.peers_of_src(s.procs()).is_empty());
        assert!(new.peers_of_dst(d.procs()).is_empty());
        assert!(new.runs(s.procs(), 0).is_empty());
    }

    /// The old plan's spans of `(p, q)`, walked as `Plan::for_each_span` used to.
    fn old_spans(old: &[OldDimPlan], src: &Layout, dst: &Layout, p: u64, q: u64) -> Vec<Span> {
        let (cp, cq) = (src.rank_coords(p).unwrap(), dst.rank_coords(q).unwrap());
        let runs: Vec<&[crate::plan::Run]> = old
            .iter()
            .zip(cp.iter().zip(&cq))
            .map(|(d, (&a, &b))| d.runs(a, b))
            .collect();
        let mut v = Vec::new();
        walk_spans(
            &runs,
            &row_major_strides(&src.local_shape_at(&cp)),
            &row_major_strides(&dst.local_shape_at(&cq)),
            &mut |s| v.push(s),
        );
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn one_d_pairs_equal_the_materialized_plan(
            n in extent(), sd in dist(), dd in dist(), p in 1u64..9, q in 1u64..9,
        ) {
            let s = Layout::one_d(n, sd, p).unwrap();
            let d = Layout::one_d(n, dd, q).unwrap();
            check_dim(&s.dims()[0], &d.dims()[0]);
        }

        #[test]
        fn n_d_spans_equal_the_materialized_plan(
            shape in prop::collection::vec(1u64..50, 2..=3),
            sd in prop::collection::vec(dist(), 3),
            dd in prop::collection::vec(dist(), 3),
            sg in prop::collection::vec(1u64..4, 3),
            dg in prop::collection::vec(1u64..4, 3),
        ) {
            let k = shape.len();
            let s = Layout::new(&shape, &sd[..k], &sg[..k]).unwrap();
            let d = Layout::new(&shape, &dd[..k], &dg[..k]).unwrap();
            let plan = Plan::new(&s, &d).unwrap();
            let old: Vec<OldDimPlan> =
                s.dims().iter().zip(d.dims()).map(|(a, b)| OldDimPlan::build(a, b)).collect();
            let old_runs: usize = old.iter().map(OldDimPlan::run_count).sum();
            prop_assert_eq!(plan.run_count(), old_runs);
            for p in 0..s.nprocs() {
                let cp = s.rank_coords(p).unwrap();
                let lists: Vec<Vec<(u64, u64)>> = old
                    .iter()
                    .zip(&cp)
                    .map(|(o, &c)| o.pairs_of_src(c).iter().map(|x| (x.dst, x.elements)).collect())
                    .collect();
                prop_assert_eq!(plan.destinations(p).unwrap(), product_transfers(&lists, &d.grid()));
                for q in 0..d.nprocs() {
                    let want = old_spans(&old, &s, &d, p, q);
                    let moved: u64 = want.iter().map(Span::elements).sum();
                    prop_assert_eq!(plan.spans(p, q).unwrap(), want);
                    prop_assert_eq!(plan.elements(p, q).unwrap(), moved);
                }
            }
            for q in 0..d.nprocs() {
                let cq = d.rank_coords(q).unwrap();
                let lists: Vec<Vec<(u64, u64)>> = old
                    .iter()
                    .zip(&cq)
                    .map(|(o, &c)| o.pairs_of_dst(c).map(|x| (x.src, x.elements)).collect())
                    .collect();
                prop_assert_eq!(plan.sources(q).unwrap(), product_transfers(&lists, &s.grid()));
            }
        }
    }
}
