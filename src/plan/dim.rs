//! 1-D redistribution plans: for each (source process, destination process) pair along one
//! axis, the runs of indices to move, built in time and space independent of the extent.
//!
//! Both sides are block-cyclic (see [`crate::layout`]). Take the side with the larger block as
//! *coarse* and the other as *fine*. Inside one coarse block the fine owners cycle with period
//! `Bf = Qf * bf`, so the part of the block going to one fine process is at most a partial
//! first run, a strided sequence of full fine blocks, and a partial last run. The coarse
//! blocks of one process repeat the same pattern every `T = Bf / gcd(Ac, Bf)` blocks
//! (`Ac = Pc * bc`), i.e. with global period `lcm(Ac, Bf)`, so only `min(T, blocks)` blocks per
//! process are examined and each run carries an outer repeat count. The final short block of
//! the array, if any, is handled on its own.

use serde::{Deserialize, Serialize};

use crate::layout::DimLayout;

/// `count` repetitions of a run, each shifted by the given strides (in local elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repeat {
    /// Number of repetitions (at least 1).
    pub count: u64,
    /// Local offset step on the source side.
    pub src_stride: u64,
    /// Local offset step on the destination side.
    pub dst_stride: u64,
}

impl Repeat {
    /// A single occurrence.
    pub const ONCE: Repeat = Repeat {
        count: 1,
        src_stride: 0,
        dst_stride: 0,
    };

    fn new(count: u64, src_stride: u64, dst_stride: u64) -> Repeat {
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
}

/// A run of `len` consecutive indices, repeated by `inner` and then by `outer`.
///
/// Expanded, it is: for `o` in `0..outer.count`, for `i` in `0..inner.count`, the `len`
/// indices starting at local offset `src + o*outer.src_stride + i*inner.src_stride` on the
/// source and `dst + o*outer.dst_stride + i*inner.dst_stride` on the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Source local offset of the first index.
    pub src: u64,
    /// Destination local offset of the first index.
    pub dst: u64,
    /// Consecutive indices in one piece.
    pub len: u64,
    /// Innermost repetition.
    pub inner: Repeat,
    /// Outermost repetition.
    pub outer: Repeat,
}

impl Run {
    /// Number of indices this run moves.
    pub fn elements(&self) -> u64 {
        self.len * self.inner.count * self.outer.count
    }

    /// Folds repetitions that are contiguous on both sides into the run itself, so that a
    /// contiguous piece is one copy rather than many.
    fn normalized(mut self) -> Run {
        if self.inner.count > 1
            && self.inner.src_stride == self.len
            && self.inner.dst_stride == self.len
        {
            self.len *= self.inner.count;
            self.inner = Repeat::ONCE;
        }
        if self.inner.count == 1
            && self.outer.count > 1
            && self.outer.src_stride == self.len
            && self.outer.dst_stride == self.len
        {
            self.len *= self.outer.count;
            self.outer = Repeat::ONCE;
        }
        self
    }

    /// Calls `f(src_offset, dst_offset)` for every index, in pack order.
    pub fn for_each_index(&self, mut f: impl FnMut(u64, u64)) {
        for o in 0..self.outer.count {
            for i in 0..self.inner.count {
                let s = self.src + o * self.outer.src_stride + i * self.inner.src_stride;
                let d = self.dst + o * self.outer.dst_stride + i * self.inner.dst_stride;
                for e in 0..self.len {
                    f(s + e, d + e);
                }
            }
        }
    }
}

/// The runs between one source process and one destination process along one axis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pair {
    pub src: u64,
    pub dst: u64,
    pub elements: u64,
    start: usize,
    end: usize,
}

/// A 1-D plan between two layouts of the same extent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimPlan {
    runs: Vec<Run>,
    /// Pairs sorted by (src, dst).
    pairs: Vec<Pair>,
    /// `pairs[by_src[p]..by_src[p+1]]` are the pairs with source `p`.
    by_src: Vec<usize>,
    /// Indices into `pairs`, sorted by (dst, src); `by_dst[q]..by_dst[q+1]` index into it.
    dst_order: Vec<usize>,
    by_dst: Vec<usize>,
}

impl DimPlan {
    /// Builds the plan from `src` to `dst` (same extent).
    pub fn build(src: &DimLayout, dst: &DimLayout) -> DimPlan {
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
        DimPlan {
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
    pub(crate) fn pairs_of_src(&self, p: u64) -> &[Pair] {
        let p = usize::try_from(p).unwrap_or(usize::MAX);
        match (self.by_src.get(p), self.by_src.get(p.wrapping_add(1))) {
            (Some(&a), Some(&b)) => &self.pairs[a..b],
            _ => &[],
        }
    }

    /// Pairs with destination `q`, sorted by source.
    pub(crate) fn pairs_of_dst(&self, q: u64) -> impl Iterator<Item = &Pair> {
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
            Repeat::new(repeats, t_blocks * bc, global_period / (qf * bf) * bf)
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
        out.push((f, run.normalized()));
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
            push(f, gs, gs + bf, Repeat::new(count, qf * bf, bf));
        }
        if !last_full {
            let (gs, ge) = clip(m_last);
            push(f, gs, ge, Repeat::ONCE);
        }
    }
}
