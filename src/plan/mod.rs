//! Redistribution plans between two layouts of the same global shape. Pure math, no I/O.
//!
//! An n-D plan is the tensor product of one [`DimPlan`] per dimension: the elements process `p`
//! of the source grid sends to process `q` of the destination grid are the Cartesian product of
//! the per-axis index sets. A plan holds only the two layouts (and per axis a few constants of
//! their common period): a pair's spans and a rank's row
//! ([`Plan::destinations`]) or column ([`Plan::sources`]) are computed when asked, in time
//! independent of the array's extent (see [`dim`] for why), so building one is O(dimensions)
//! whatever the process counts, and a rank pays only for its own row and column, never for
//! all P x Q pairs. Plans are cached per layout pair
//! ([`Plan::cached`]) so a pipeline step reuses the plan of the previous step, as MCT's routers
//! are reused.
//!
//! The element order inside one (p, q) transfer is fixed by [`Plan::for_each_span`]; the packing
//! side and the unpacking side both walk it, so no index lists travel with the data.

pub mod chunk;
pub mod dim;
#[cfg(test)]
mod reference;
pub mod region;
pub mod stream;

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use dim::{DimPlan, Repeat, Run};

use crate::error::{Error, Result};
use crate::layout::Layout;

/// A strided group of runs in local element offsets: `count` runs of `len` elements, the `i`-th
/// starting at `src + i*src_stride` in the source's local storage and `dst + i*dst_stride` in
/// the destination's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Source local offset of the first run.
    pub src: u64,
    /// Destination local offset of the first run.
    pub dst: u64,
    /// Elements per run (contiguous on both sides).
    pub len: u64,
    /// Number of runs.
    pub count: u64,
    /// Source offset step between runs.
    pub src_stride: u64,
    /// Destination offset step between runs.
    pub dst_stride: u64,
}

impl Span {
    /// Elements in the span.
    pub fn elements(&self) -> u64 {
        self.len * self.count
    }

    /// The span with one side replaced by positions `pos..` of a packed message.
    pub fn packed_at(self, side: Packed, pos: u64) -> Span {
        let mut t = self;
        match side {
            Packed::Src => (t.src, t.src_stride) = (pos, self.len),
            Packed::Dst => (t.dst, t.dst_stride) = (pos, self.len),
        }
        t
    }

    /// The same span seen from the other side (source and destination exchanged).
    pub fn swapped(self) -> Span {
        Span {
            src: self.dst,
            dst: self.src,
            len: self.len,
            count: self.count,
            src_stride: self.dst_stride,
            dst_stride: self.src_stride,
        }
    }
}

/// Which side of a span is a packed message (elements at consecutive positions in span
/// order, as [`Plan::pack`] and [`stream::pack_to`] lay them out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packed {
    /// The source is the packed message (unpacking).
    Src,
    /// The destination is the packed message (packing).
    Dst,
}

/// One side of a transfer: the peer's rank and how many elements move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Rank of the peer (destination grid rank for a send, source grid rank for a receive).
    pub peer: u64,
    /// Elements moved.
    pub elements: u64,
}

/// A plan from one layout to another of the same global shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    src: Layout,
    dst: Layout,
    dims: Vec<DimPlan>,
}

/// How many plans [`Plan::cached`] keeps.
const CACHE_CAPACITY: usize = 64;

type PlanCache = Vec<(Layout, Layout, Arc<Plan>)>;

static CACHE: Mutex<PlanCache> = Mutex::new(Vec::new());

impl Plan {
    /// Builds the plan moving data laid out as `src` into the layout `dst`.
    pub fn new(src: &Layout, dst: &Layout) -> Result<Plan> {
        if src.ndims() != dst.ndims() {
            return Err(Error::DimensionMismatch {
                what: "the two layouts of a redistribution".into(),
                expected: src.ndims(),
                got: dst.ndims(),
            });
        }
        src.check_same_shape(dst)?;
        let dims = src
            .dims()
            .iter()
            .zip(dst.dims())
            .map(|(s, d)| DimPlan::build(s, d))
            .collect();
        Ok(Plan {
            src: src.clone(),
            dst: dst.clone(),
            dims,
        })
    }

    /// The plan for this layout pair from the process-wide cache, building it on a miss.
    pub fn cached(src: &Layout, dst: &Layout) -> Result<Arc<Plan>> {
        {
            let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = cache.iter().position(|(s, d, _)| s == src && d == dst) {
                let entry = cache.remove(i);
                let plan = entry.2.clone();
                cache.push(entry); // most recently used last
                return Ok(plan);
            }
        }
        // Build outside the lock: another thread may build the same plan; both are equal.
        let plan = Arc::new(Plan::new(src, dst)?);
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.remove(0);
        }
        cache.push((src.clone(), dst.clone(), plan.clone()));
        Ok(plan)
    }

    /// The source layout.
    pub fn src(&self) -> &Layout {
        &self.src
    }

    /// The destination layout.
    pub fn dst(&self) -> &Layout {
        &self.dst
    }

    /// The per-dimension plans.
    pub fn dim_plans(&self) -> &[DimPlan] {
        &self.dims
    }

    /// Number of run descriptors over all pairs of all axes: what a plan materializing every
    /// pair would store (independent of the extents). Computed by walking every pair, so
    /// O(P x Q) in the worst case: for tests and diagnostics, not for data paths.
    pub fn run_count(&self) -> usize {
        self.dims.iter().map(DimPlan::run_count).sum()
    }

    /// Destinations of source rank `p`, sorted by rank, with the elements each receives.
    pub fn destinations(&self, p: u64) -> Result<Vec<Transfer>> {
        let cp = self.src.rank_coords(p)?;
        let lists: Vec<Vec<(u64, u64)>> = self
            .dims
            .iter()
            .zip(&cp)
            .map(|(d, &c)| d.peers_of_src(c))
            .collect();
        Ok(product_transfers(&lists, &self.dst.grid()))
    }

    /// Sources sending to destination rank `q`, sorted by rank, with the elements each sends.
    pub fn sources(&self, q: u64) -> Result<Vec<Transfer>> {
        let cq = self.dst.rank_coords(q)?;
        let lists: Vec<Vec<(u64, u64)>> = self
            .dims
            .iter()
            .zip(&cq)
            .map(|(d, &c)| d.peers_of_dst(c))
            .collect();
        Ok(product_transfers(&lists, &self.src.grid()))
    }

    /// Elements moved from source rank `p` to destination rank `q`.
    pub fn elements(&self, p: u64, q: u64) -> Result<u64> {
        let (cp, cq) = (self.src.rank_coords(p)?, self.dst.rank_coords(q)?);
        let mut total = 1;
        for (d, (&a, &b)) in self.dims.iter().zip(cp.iter().zip(&cq)) {
            total *= d.elements(a, b);
            if total == 0 {
                break; // no need to compute the other axes
            }
        }
        Ok(total)
    }

    /// Calls `f` for every span moved from source rank `p` to destination rank `q`, in the
    /// canonical order both sides of a transfer use. Offsets are local element offsets in `p`'s
    /// and `q`'s row-major local storage.
    pub fn for_each_span(&self, p: u64, q: u64, mut f: impl FnMut(Span)) -> Result<()> {
        let (cp, cq) = (self.src.rank_coords(p)?, self.dst.rank_coords(q)?);
        let mut runs: Vec<Vec<Run>> = Vec::with_capacity(self.dims.len());
        for (d, (&a, &b)) in self.dims.iter().zip(cp.iter().zip(&cq)) {
            let r = d.runs(a, b);
            if r.is_empty() {
                return Ok(()); // nothing moves: skip the other axes
            }
            runs.push(r);
        }
        let runs: Vec<&[Run]> = runs.iter().map(Vec::as_slice).collect();
        let src_strides = row_major_strides(&self.src.local_shape_at(&cp));
        let dst_strides = row_major_strides(&self.dst.local_shape_at(&cq));
        walk_spans(&runs, &src_strides, &dst_strides, &mut f);
        Ok(())
    }

    /// The spans of pair `(p, q)`, collected.
    pub fn spans(&self, p: u64, q: u64) -> Result<Vec<Span>> {
        let mut v = Vec::new();
        self.for_each_span(p, q, |s| v.push(s))?;
        Ok(v)
    }

    /// Copies what source rank `p` sends to destination rank `q`, from `src` (p's local data)
    /// straight into `dst` (q's local data): the same-process case, no buffer in between.
    pub fn copy<T: Copy>(&self, p: u64, q: u64, src: &[T], dst: &mut [T]) -> Result<()> {
        self.check_local_len("source", &self.src, p, src.len())?;
        self.check_local_len("destination", &self.dst, q, dst.len())?;
        // SAFETY: `dst` is borrowed exclusively.
        unsafe { self.move_elements(p, q, None, src, dst.as_mut_ptr(), dst.len()) }
    }

    /// Packs what source rank `p` sends to destination rank `q` from `src` into `out`, which
    /// must hold exactly [`Plan::elements`]`(p, q)` elements.
    pub fn pack<T: Copy>(&self, p: u64, q: u64, src: &[T], out: &mut [T]) -> Result<()> {
        self.check_local_len("source", &self.src, p, src.len())?;
        self.check_message_len(p, q, out.len())?;
        // SAFETY: `out` is borrowed exclusively.
        unsafe { self.move_elements(p, q, Some(Packed::Dst), src, out.as_mut_ptr(), out.len()) }
    }

    /// Unpacks a message packed by [`Plan::pack`] for `(p, q)` into `dst` (q's local data).
    pub fn unpack<T: Copy>(&self, p: u64, q: u64, data: &[T], dst: &mut [T]) -> Result<()> {
        self.check_local_len("destination", &self.dst, q, dst.len())?;
        // SAFETY: `dst` is borrowed exclusively.
        unsafe { self.unpack_to_ptr(p, q, data, dst.as_mut_ptr(), dst.len()) }
    }

    /// [`Plan::unpack`] into a destination given by pointer (writes go through slices covering
    /// only the elements the pair selects), so other pieces may land in the same buffer
    /// meanwhile (in-place receives).
    ///
    /// # Safety
    /// `dst` must be valid for writes of `len` elements, and nothing else may access the
    /// elements this pair selects while this runs.
    pub unsafe fn unpack_to_ptr<T: Copy>(
        &self,
        p: u64,
        q: u64,
        data: &[T],
        dst: *mut T,
        len: usize,
    ) -> Result<()> {
        self.check_message_len(p, q, data.len())?;
        self.move_elements(p, q, Some(Packed::Src), data, dst, len)
    }

    /// Moves the elements of pair `(p, q)` from `src` to `dst`, span by span; with `packed`,
    /// that side is a packed message (consecutive positions in span order).
    unsafe fn move_elements<T: Copy>(
        &self,
        p: u64,
        q: u64,
        packed: Option<Packed>,
        src: &[T],
        dst: *mut T,
        len: usize,
    ) -> Result<()> {
        let mut pos = 0u64;
        let mut failed = None;
        self.for_each_span(p, q, |s| {
            if failed.is_some() {
                return;
            }
            let s = match packed {
                Some(side) => {
                    let t = s.packed_at(side, pos);
                    pos += s.elements();
                    t
                }
                None => s,
            };
            // SAFETY: per this function's contract.
            if let Err(e) = unsafe { stream::copy_span_to_ptr(&s, src, dst, len) } {
                failed = Some(e);
            }
        })?;
        failed.map_or(Ok(()), |e| {
            Err(Error::OutOfBounds(format!("plan span: {e}")))
        })
    }

    /// If everything `p` sends to `q` is one contiguous range of p's local storage, that range
    /// (so it can be sent without packing).
    pub fn contiguous_src(&self, p: u64, q: u64) -> Result<Option<std::ops::Range<usize>>> {
        self.contiguous(p, q, |s| (s.src, s.src_stride))
    }

    /// If everything `q` receives from `p` lands in one contiguous range of q's local storage,
    /// that range (so it can be received in place).
    pub fn contiguous_dst(&self, p: u64, q: u64) -> Result<Option<std::ops::Range<usize>>> {
        self.contiguous(p, q, |s| (s.dst, s.dst_stride))
    }

    fn contiguous(
        &self,
        p: u64,
        q: u64,
        side: impl Fn(&Span) -> (u64, u64),
    ) -> Result<Option<std::ops::Range<usize>>> {
        let mut range: Option<(u64, u64)> = None; // [start, end)
        let mut broken = false;
        self.for_each_span(p, q, |s| {
            if broken {
                return;
            }
            let (start, stride) = side(&s);
            if s.count > 1 && stride != s.len {
                broken = true;
                return;
            }
            let end = start + s.len * s.count;
            range = match range {
                None => Some((start, end)),
                Some((a, b)) if b == start => Some((a, end)),
                Some(_) => {
                    broken = true;
                    None
                }
            };
        })?;
        Ok(match (broken, range) {
            (false, Some((a, b))) => Some(a as usize..b as usize),
            _ => None,
        })
    }

    fn check_local_len(&self, what: &str, layout: &Layout, rank: u64, got: usize) -> Result<()> {
        let expected = layout.local_len(rank)?;
        if expected != got as u64 {
            return Err(Error::BufferSize {
                what: format!("{what} local part of rank {rank}"),
                expected,
                got: got as u64,
            });
        }
        Ok(())
    }

    fn check_message_len(&self, p: u64, q: u64, got: usize) -> Result<()> {
        let expected = self.elements(p, q)?;
        if expected != got as u64 {
            return Err(Error::BufferSize {
                what: format!("message from source rank {p} to destination rank {q}"),
                expected,
                got: got as u64,
            });
        }
        Ok(())
    }
}

/// Row-major strides (in elements) of a local shape.
pub(crate) fn row_major_strides(shape: &[u64]) -> Vec<u64> {
    let mut strides = vec![1u64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Cartesian product of per-axis `(peer coordinate, elements)` lists into ranks of `grid`.
fn product_transfers(lists: &[Vec<(u64, u64)>], grid: &[u64]) -> Vec<Transfer> {
    if lists.iter().any(Vec::is_empty) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut idx = vec![0usize; lists.len()];
    loop {
        let mut rank = 0;
        let mut elements = 1;
        for (axis, &i) in idx.iter().enumerate() {
            let (c, e) = lists[axis][i];
            rank = rank * grid[axis] + c;
            elements *= e;
        }
        out.push(Transfer {
            peer: rank,
            elements,
        });
        let mut axis = lists.len();
        loop {
            if axis == 0 {
                return out;
            }
            axis -= 1;
            idx[axis] += 1;
            if idx[axis] < lists[axis].len() {
                break;
            }
            idx[axis] = 0;
        }
    }
}

/// Calls `f` for every span of the tensor product of per-dimension run lists, with local
/// offsets computed from the given row-major strides. The order is the canonical pack order.
pub(crate) fn walk_spans(
    runs: &[&[Run]],
    src_strides: &[u64],
    dst_strides: &[u64],
    f: &mut dyn FnMut(Span),
) {
    if runs.is_empty() || runs.iter().any(|r| r.is_empty()) {
        return;
    }
    let walk = Walk {
        runs,
        src_strides,
        dst_strides,
    };
    walk.dim(0, 0, 0, f);
}

/// Recursive walk over the tensor product of per-dimension runs.
struct Walk<'a> {
    runs: &'a [&'a [Run]],
    src_strides: &'a [u64],
    dst_strides: &'a [u64],
}

impl Walk<'_> {
    fn dim(&self, d: usize, src_base: u64, dst_base: u64, f: &mut dyn FnMut(Span)) {
        let last = self.runs.len() - 1;
        if d == last {
            // Innermost dimension: its runs are contiguous on both sides.
            for r in self.runs[d] {
                if r.inner.count == 1 {
                    // Only one level of repetition: it is the span's own stride.
                    f(Span {
                        src: src_base + r.src,
                        dst: dst_base + r.dst,
                        len: r.len,
                        count: r.outer.count,
                        src_stride: r.outer.src_stride,
                        dst_stride: r.outer.dst_stride,
                    });
                    continue;
                }
                for o in 0..r.outer.count {
                    f(Span {
                        src: src_base + r.src + o * r.outer.src_stride,
                        dst: dst_base + r.dst + o * r.outer.dst_stride,
                        len: r.len,
                        count: r.inner.count,
                        src_stride: r.inner.src_stride,
                        dst_stride: r.inner.dst_stride,
                    });
                }
            }
            return;
        }
        let (ss, ds) = (self.src_strides[d], self.dst_strides[d]);
        for r in self.runs[d] {
            r.for_each_index(|s, t| self.dim(d + 1, src_base + s * ss, dst_base + t * ds, f));
        }
    }
}
