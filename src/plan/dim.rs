//! 1-D redistribution plans: for each (source process, destination process) pair along one
//! axis, the runs of indices to move, computed on demand in time independent of the extent
//! (and of the process counts, for one pair).
//!
//! Both sides are block-cyclic (see [`crate::layout`]). Take the side with the larger block as
//! *coarse* and the other as *fine*. Inside one coarse block the fine owners cycle with period
//! `Bf = Qf * bf`, so the part of the block going to one fine process is at most a partial
//! first run, a strided sequence of full fine blocks, and a partial last run. The coarse
//! blocks of one process repeat the same pattern every `T = Bf / gcd(Ac, Bf)` blocks
//! (`Ac = Pc * bc`), i.e. with global period `lcm(Ac, Bf)`, so only `min(T, blocks)` blocks per
//! process are examined and each run carries an outer repeat count. The final short block of
//! the array, if any, is handled on its own.
//!
//! A pair's runs come from its coarse process's pattern blocks, keeping only the fine
//! process's part of each (O(1) per block). A process's row (its peers and the elements each
//! takes) is one walk over its pattern blocks if it is on the coarse side, one per coarse
//! process otherwise.

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

/// A 1-D plan between two layouts of the same extent. It holds only the two layouts: a pair's
/// runs and a process's peers are computed when asked, so building it costs nothing and its
/// size is independent of the extent and of the process counts (a rank asks only for its own
/// row and column; materializing every pair cost O(P*Q) time and memory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Sides", into = "Sides")]
pub struct DimPlan {
    src: DimLayout,
    dst: DimLayout,
    geo: Geometry,
}

/// What a [`DimPlan`] travels as: its two layouts (the rest is derived from them).
#[derive(Clone, Serialize, Deserialize)]
struct Sides {
    src: DimLayout,
    dst: DimLayout,
}

impl From<Sides> for DimPlan {
    fn from(s: Sides) -> DimPlan {
        DimPlan::build(&s.src, &s.dst)
    }
}

impl From<DimPlan> for Sides {
    fn from(d: DimPlan) -> Sides {
        Sides {
            src: d.src,
            dst: d.dst,
        }
    }
}

/// The coarse and fine sides and their common period, computed once per plan: every pair and
/// row needs them, and the gcd and inverse (u128 divisions) would otherwise dominate a pair.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Geometry {
    coarse: DimLayout,
    fine: DimLayout,
    /// The side with the larger block is coarse (the source on a tie).
    coarse_is_src: bool,
    /// `g = gcd(Ac, Bf)`.
    g: u128,
    /// `T = Bf / g`: blocks of a coarse process before its pattern repeats.
    period: u128,
    /// `(Ac / g)^-1 mod T`.
    inv: u128,
    /// Full coarse blocks in the array, per coarse process and left over: a pair needs them
    /// and dividing again each time was a good part of a pair's cost.
    full_each: u64,
    full_rem: u64,
    /// The array ends with a short coarse block.
    short: bool,
}

impl Geometry {
    fn new(src: &DimLayout, dst: &DimLayout) -> Geometry {
        let coarse_is_src = src.block() >= dst.block();
        let (coarse, fine) = if coarse_is_src {
            (*src, *dst)
        } else {
            (*dst, *src)
        };
        let a_c = u128::from(coarse.procs()) * u128::from(coarse.block());
        let b_f = u128::from(fine.procs()) * u128::from(fine.block());
        let g = gcd(a_c, b_f);
        let period = b_f / g;
        let full_total = coarse.extent() / coarse.block();
        Geometry {
            coarse,
            fine,
            coarse_is_src,
            g,
            period,
            inv: mod_inverse(a_c / g, period),
            full_each: full_total / coarse.procs(),
            full_rem: full_total % coarse.procs(),
            short: coarse.extent() % coarse.block() != 0,
        }
    }
}

impl DimPlan {
    /// The plan from `src` to `dst` (same extent).
    pub fn build(src: &DimLayout, dst: &DimLayout) -> DimPlan {
        debug_assert_eq!(src.extent(), dst.extent());
        DimPlan {
            src: *src,
            dst: *dst,
            geo: Geometry::new(src, dst),
        }
    }

    /// Number of run descriptors over all pairs (what a materialized plan would hold). Walks
    /// every coarse process's pattern, so it costs what building every pair would: for tests
    /// and diagnostics, never on a data path.
    pub fn run_count(&self) -> usize {
        let mut n = 0;
        for c in 0..self.geo.coarse.procs() {
            coarse_process_runs(&self.geo, c, None, &mut |_, _| n += 1);
        }
        n
    }

    /// Calls `f` for every run from source process `p` to destination process `q`, in the
    /// canonical order. Costs O(pattern blocks of the coarse process): never more than one
    /// block-cyclic period, independent of the extent.
    pub fn for_each_run(&self, p: u64, q: u64, mut f: impl FnMut(Run)) {
        let geo = &self.geo;
        let coarse_is_src = geo.coarse_is_src;
        let (c, fp) = if coarse_is_src { (p, q) } else { (q, p) };
        if c >= geo.coarse.procs() || fp >= geo.fine.procs() {
            return;
        }
        coarse_process_runs(geo, c, Some(fp), &mut |_, r| {
            f(if coarse_is_src { r } else { swap_sides(r) })
        });
    }

    /// The runs from source process `p` to destination process `q` (empty if none).
    pub fn runs(&self, p: u64, q: u64) -> Vec<Run> {
        let mut v = Vec::new();
        self.for_each_run(p, q, |r| v.push(r));
        v
    }

    /// Elements moved from `p` to `q`.
    pub fn elements(&self, p: u64, q: u64) -> u64 {
        let mut e = 0;
        self.for_each_run(p, q, |r| e += r.elements());
        e
    }

    /// `(destination process, elements)` for every destination of source process `p`, sorted
    /// by destination (the row of `p`).
    pub fn peers_of_src(&self, p: u64) -> Vec<(u64, u64)> {
        if self.geo.coarse_is_src {
            coarse_row(&self.geo, p)
        } else {
            fine_row(&self.geo, p)
        }
    }

    /// `(source process, elements)` for every source of destination process `q`, sorted by
    /// source (the column of `q`).
    pub fn peers_of_dst(&self, q: u64) -> Vec<(u64, u64)> {
        if self.geo.coarse_is_src {
            fine_row(&self.geo, q)
        } else {
            coarse_row(&self.geo, q)
        }
    }
}

/// Elements coarse process `c` exchanges with each fine process, sorted by fine process: one
/// walk over `c`'s pattern blocks, every owner of each (O(runs of `c` + fine processes)).
fn coarse_row(geo: &Geometry, c: u64) -> Vec<(u64, u64)> {
    if c >= geo.coarse.procs() {
        return Vec::new();
    }
    let fine_procs = usize::try_from(geo.fine.procs()).expect("process count fits");
    let mut per_fine = vec![0u64; fine_procs];
    coarse_process_runs(geo, c, None, &mut |f, r| {
        per_fine[f as usize] += r.elements()
    });
    nonzero(per_fine)
}

/// Elements fine process `f` exchanges with each coarse process, sorted by coarse process:
/// each coarse process's pattern blocks, only `f`'s part of each (O(1) per block), so
/// O(coarse processes x pattern blocks per process), never O(coarse x fine processes).
fn fine_row(geo: &Geometry, f: u64) -> Vec<(u64, u64)> {
    if f >= geo.fine.procs() {
        return Vec::new();
    }
    let per_coarse = (0..geo.coarse.procs())
        .map(|c| {
            let mut e = 0;
            coarse_process_runs(geo, c, Some(f), &mut |_, r| e += r.elements());
            e
        })
        .collect();
    nonzero(per_coarse)
}

/// `(index, value)` of the non-zero values.
fn nonzero(v: Vec<u64>) -> Vec<(u64, u64)> {
    v.into_iter()
        .enumerate()
        .filter(|&(_, e)| e > 0)
        .map(|(i, e)| (i as u64, e))
        .collect()
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

/// Calls `out(fine process, run)` for every run of coarse process `c` (only those to fine
/// process `only`, if given), with `src` = coarse side, in canonical order: by pattern block,
/// then the final short block; inside a block by fine owner, each owner's runs in order.
fn coarse_process_runs(geo: &Geometry, c: u64, only: Option<u64>, out: &mut dyn FnMut(u64, Run)) {
    let (coarse, fine) = (&geo.coarse, &geo.fine);
    let (bc, pc) = (coarse.block(), coarse.procs());
    let (bf, qf) = (fine.block(), fine.procs());
    let n = coarse.extent();
    let period_blocks = geo.period; // T: blocks of c before the pattern repeats
    let full = geo.full_each + u64::from(c < geo.full_rem); // coarse.full_blocks_of(c)
    let patterns = u128::from(full).min(period_blocks) as u64;
    let pattern = |t: u64, out: &mut dyn FnMut(u64, Run)| {
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
        block_runs(fine, k * bc, bc, t * bc, outer, only, out);
    };
    match only.and_then(|f| touching_patterns(geo, c, f, patterns)) {
        Some(ts) => ts.into_iter().for_each(|t| pattern(t, out)),
        None => (0..patterns).for_each(|t| pattern(t, out)),
    }
    // The final short block of the whole array, if c owns it.
    if geo.short && geo.full_rem == c {
        let g0 = (geo.full_each * pc + geo.full_rem) * bc;
        block_runs(
            fine,
            g0,
            n - g0,
            geo.full_each * bc,
            Repeat::ONCE,
            only,
            out,
        );
    }
}

/// The pattern blocks `t < patterns` of coarse process `c` that hold some index of fine
/// process `f`, ascending; `None` when that is not fewer than all of them (walk them all).
///
/// Block `t` starts at `x = c*bc + t*Ac` and touches `f` iff `y = (x - f*bf) mod Bf` is
/// `< bf` (a block of `f` starts in it or before it and reaches it) or `> Bf - bc` (one starts
/// inside it). As `t` runs over one period `T = Bf/g` (`g = gcd(Ac, Bf)`), `t*Ac mod Bf` takes
/// every multiple of `g` once: `y = r + g*u` with `u = (s0 + t*Ac/g) mod T`, so the touching
/// `u` are two ranges and each gives `t = (u - s0) * (Ac/g)^-1 mod T`. O(touching blocks),
/// about `(bc + bf)/g`, instead of O(T) (bc(1000) on 1024 -> bc(999) on 1024: 3 of 999).
fn touching_patterns(geo: &Geometry, c: u64, f: u64, patterns: u64) -> Option<Vec<u64>> {
    let bc = u128::from(geo.coarse.block());
    let (bf, qf) = (u128::from(geo.fine.block()), u128::from(geo.fine.procs()));
    if patterns <= 1 {
        return None; // one block: as cheap to look at as to skip
    }
    let (b_f, g, period) = (qf * bf, geo.g, geo.period);
    let y0 = (u128::from(c) * bc % b_f + b_f - u128::from(f) * bf % b_f) % b_f;
    let (r, s0) = (y0 % g, y0 / g);
    // u < u1: y < bf; u >= u2: y > Bf - bc.
    let u1 = if bf > r { (bf - r).div_ceil(g) } else { 0 }.min(period);
    let u2 = if b_f >= bc + r {
        (b_f - bc - r) / g + 1
    } else {
        0
    }
    .max(u1);
    let count = u1 + (period - u2.min(period));
    if count >= u128::from(patterns) {
        return None;
    }
    let inv = geo.inv;
    let mut ts: Vec<u64> = (0..u1)
        .chain(u2..period)
        .map(|u| ((u + period - s0 % period) % period * inv % period) as u64)
        .filter(|&t| t < patterns)
        .collect();
    ts.sort_unstable();
    Some(ts)
}

/// The inverse of `a` modulo `m` (`gcd(a, m) = 1`; 0 when `m = 1`).
fn mod_inverse(a: u128, m: u128) -> u128 {
    // Extended Euclid on (a mod m, m), coefficients of `a` kept modulo m.
    let (mut r0, mut r1) = (m, a % m);
    let (mut t0, mut t1) = (0u128, 1u128 % m);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        // t0 - q*t1 (mod m), without going negative.
        let next = (t0 + m - (q % m) * t1 % m) % m;
        (t0, t1) = (t1, next);
    }
    debug_assert_eq!(r0, 1, "not invertible");
    t0
}

/// Runs of the coarse block `[g0, g0 + len)` (local offset `c_local` on the coarse side) per
/// fine owner, in owner order starting at the block's first one; with `only`, that owner's
/// runs alone, found in O(1).
fn block_runs(
    fine: &DimLayout,
    g0: u64,
    len: u64,
    c_local: u64,
    outer: Repeat,
    only: Option<u64>,
    out: &mut dyn FnMut(u64, Run),
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
        out(f, run.normalized());
    };
    let owner_range = match only {
        // The owners are m_lo % qf, m_lo % qf + 1, ... (mod qf): `f` is the i-th.
        Some(f) => {
            let i = (f % qf + qf - m_lo % qf) % qf;
            if i < owners {
                i..i + 1
            } else {
                0..0
            }
        }
        None => 0..owners,
    };
    for i in owner_range {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Dist, Layout};

    #[test]
    fn modular_inverses() {
        for m in 1u128..60 {
            for a in 1..3 * m {
                if gcd(a, m) == 1 {
                    assert_eq!(a * mod_inverse(a, m) % m, 1 % m, "{a}^-1 mod {m}");
                }
            }
        }
    }

    /// The pattern blocks found by the congruence are exactly those whose runs include the
    /// fine process, found by walking every block; and the shortcut is taken often here.
    #[test]
    fn touching_patterns_are_the_blocks_with_runs() {
        let mut shortcuts = 0;
        for (bc, pc, bf, qf) in [
            (37, 7, 29, 5),
            (1000, 8, 999, 8),
            (5, 3, 4, 6),
            (64, 4, 48, 3),
        ] {
            for extra in [0u64, 1, 17] {
                let n = 3 * pc * bc * qf * bf + extra; // several periods and a short block
                let coarse = Layout::one_d(n, Dist::BlockCyclic(bc), pc).unwrap().dims()[0];
                let fine = Layout::one_d(n, Dist::BlockCyclic(bf), qf).unwrap().dims()[0];
                let geo = Geometry::new(&coarse, &fine);
                let period = geo.period;
                for c in 0..pc {
                    let patterns = u128::from(coarse.full_blocks_of(c)).min(period) as u64;
                    for f in 0..qf {
                        let walked: Vec<u64> = (0..patterns)
                            .filter(|&t| {
                                let mut any = false;
                                let g0 = (c + t * pc) * bc;
                                block_runs(&fine, g0, bc, 0, Repeat::ONCE, Some(f), &mut |_, _| {
                                    any = true
                                });
                                any
                            })
                            .collect();
                        if let Some(found) = touching_patterns(&geo, c, f, patterns) {
                            assert_eq!(found, walked, "bc {bc} x {pc}, bf {bf} x {qf}: {c}, {f}");
                            shortcuts += 1;
                        } else if u128::from(patterns) == period {
                            // Over a whole period the count is exact: not taken only when every
                            // block touches `f`.
                            assert_eq!(walked.len() as u64, patterns, "{bc} x {pc}: {c}, {f}");
                        }
                    }
                }
            }
        }
        assert!(shortcuts >= 100, "shortcut taken {shortcuts} times");
    }
}
