//! Layouts: how an n-D array is laid out over a process grid. Pure math, no I/O.
//!
//! A [`Layout`] is the tensor product of one [`DimLayout`] per dimension over a process grid of
//! any shape. Processes are numbered row-major over the grid (the last grid axis varies
//! fastest), and each process stores its local part row-major over its local shape.

mod dim;

pub use dim::{DimLayout, Dist};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest number of dimensions an array may have.
pub const MAX_DIMS: usize = 16;

/// Largest process grid (processes, i.e. blocks of an array). A grid sizes per-block state
/// (placements, homes, plans), so a layout received from a peer must not name more; 2^20 is
/// already more blocks than a `Create` request of one frame can carry homes for.
pub const MAX_PROCS: u64 = 1 << 20;

/// An n-D array layout: global shape, per-dimension distribution, process grid.
///
/// A layout from the wire goes through [`Layout::new`]'s checks (`try_from`): a zero grid or
/// block, an overflowing shape or a grid over [`MAX_PROCS`] is refused while decoding, so no
/// invalid layout exists anywhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawLayout")]
pub struct Layout {
    dims: Vec<DimLayout>,
}

/// A layout as it travels, unchecked (the same fields, so the encoding is unchanged).
#[derive(Deserialize)]
struct RawLayout {
    dims: Vec<DimLayout>,
}

impl TryFrom<RawLayout> for Layout {
    type Error = String;

    fn try_from(raw: RawLayout) -> std::result::Result<Layout, String> {
        let shape: Vec<u64> = raw.dims.iter().map(|d| d.extent()).collect();
        let dists: Vec<Dist> = raw.dims.iter().map(|d| d.dist()).collect();
        let grid: Vec<u64> = raw.dims.iter().map(|d| d.procs()).collect();
        Layout::new(&shape, &dists, &grid)
            .map_err(|e| crate::error::note_decode_error(format!("invalid layout: {e}")))
    }
}

impl Layout {
    /// A layout of `shape` with `dists[i]` along dimension `i` over a process grid of `grid`.
    ///
    /// Fails on mismatched dimension counts, zero grid extents, zero block sizes, grids of more
    /// than [`MAX_PROCS`] processes, and shapes or grids whose element counts do not fit in 64
    /// bits (or local parts that do not fit in memory addresses).
    pub fn new(shape: &[u64], dists: &[Dist], grid: &[u64]) -> Result<Layout> {
        if shape.is_empty() {
            return Err(Error::InvalidArgument(
                "a layout needs at least one dimension".into(),
            ));
        }
        if shape.len() > MAX_DIMS {
            return Err(Error::InvalidArgument(format!(
                "{} dimensions requested; at most {MAX_DIMS} are supported",
                shape.len()
            )));
        }
        for (what, len) in [("distributions", dists.len()), ("process grid", grid.len())] {
            if len != shape.len() {
                return Err(Error::DimensionMismatch {
                    what: format!("{what} for a shape of {shape:?}"),
                    expected: shape.len(),
                    got: len,
                });
            }
        }
        checked_product(shape).ok_or_else(|| {
            Error::overflow(format!(
                "global shape {shape:?} has more than 2^64 - 1 elements"
            ))
        })?;
        let nprocs = checked_product(grid).ok_or_else(|| {
            Error::overflow(format!(
                "process grid {grid:?} has more than 2^64 - 1 processes"
            ))
        })?;
        if nprocs > MAX_PROCS {
            return Err(Error::BadGrid(format!(
                "process grid {grid:?} has {nprocs} processes; at most {MAX_PROCS} are supported"
            )));
        }
        let dims = shape
            .iter()
            .zip(dists)
            .zip(grid)
            .enumerate()
            .map(|(i, ((&n, &d), &p))| DimLayout::new(n, p, d, i))
            .collect::<Result<Vec<_>>>()?;
        let layout = Layout { dims };
        // Rank 0 holds the largest local part along every axis.
        let biggest: Vec<u64> = layout.dims.iter().map(|d| d.local_len(0)).collect();
        match checked_product(&biggest) {
            Some(n) if usize::try_from(n).is_ok() && n.checked_mul(16).is_some() => {}
            _ => {
                return Err(Error::overflow(format!(
                    "local part {biggest:?} of shape {shape:?} does not fit in memory addresses"
                )))
            }
        }
        Ok(layout)
    }

    /// A 1-D layout of `len` elements over `procs` processes.
    pub fn one_d(len: u64, dist: Dist, procs: u64) -> Result<Layout> {
        Layout::new(&[len], &[dist], &[procs])
    }

    /// The per-dimension layouts.
    pub fn dims(&self) -> &[DimLayout] {
        &self.dims
    }

    /// Number of dimensions.
    pub fn ndims(&self) -> usize {
        self.dims.len()
    }

    /// Global shape.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().map(|d| d.extent()).collect()
    }

    /// Process grid shape.
    pub fn grid(&self) -> Vec<u64> {
        self.dims.iter().map(|d| d.procs()).collect()
    }

    /// Per-dimension distributions as asked for.
    pub fn dists(&self) -> Vec<Dist> {
        self.dims.iter().map(|d| d.dist()).collect()
    }

    /// Number of processes in the grid.
    pub fn nprocs(&self) -> u64 {
        self.dims.iter().map(|d| d.procs()).product()
    }

    /// Total number of elements.
    pub fn len(&self) -> u64 {
        self.dims.iter().map(|d| d.extent()).product()
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Grid coordinates of `rank` (row-major over the grid).
    pub fn rank_coords(&self, rank: u64) -> Result<Vec<u64>> {
        self.check_rank(rank)?;
        let mut coords = vec![0; self.ndims()];
        let mut r = rank;
        for (c, d) in coords.iter_mut().zip(&self.dims).rev() {
            *c = r % d.procs();
            r /= d.procs();
        }
        Ok(coords)
    }

    /// Rank at grid coordinates `coords`.
    pub fn coords_rank(&self, coords: &[u64]) -> Result<u64> {
        self.check_ndims("grid coordinates", coords.len())?;
        let mut rank = 0;
        for (i, (&c, d)) in coords.iter().zip(&self.dims).enumerate() {
            if c >= d.procs() {
                return Err(Error::OutOfBounds(format!(
                    "grid coordinate {c} on axis {i} of a grid with {} processes",
                    d.procs()
                )));
            }
            rank = rank * d.procs() + c;
        }
        Ok(rank)
    }

    /// Local shape held by `rank`.
    pub fn local_shape(&self, rank: u64) -> Result<Vec<u64>> {
        let coords = self.rank_coords(rank)?;
        Ok(self.local_shape_at(&coords))
    }

    pub(crate) fn local_shape_at(&self, coords: &[u64]) -> Vec<u64> {
        coords
            .iter()
            .zip(&self.dims)
            .map(|(&c, d)| d.local_len(c))
            .collect()
    }

    /// Number of elements `rank` holds.
    pub fn local_len(&self, rank: u64) -> Result<u64> {
        Ok(self.local_shape(rank)?.iter().product())
    }

    /// Rank owning the element at global index `index`.
    pub fn owner(&self, index: &[u64]) -> Result<u64> {
        Ok(self.locate(index)?.0)
    }

    /// Owner rank of `index` and its offset (in elements) in the owner's local storage.
    pub fn locate(&self, index: &[u64]) -> Result<(u64, u64)> {
        self.check_index(index)?;
        let mut rank = 0;
        let mut offset = 0;
        for (&g, d) in index.iter().zip(&self.dims) {
            let p = d.owner(g);
            rank = rank * d.procs() + p;
            offset = offset * d.local_len(p) + d.local_offset(g);
        }
        Ok((rank, offset))
    }

    /// Global index of the element at local `offset` on `rank`.
    pub fn global_index(&self, rank: u64, offset: u64) -> Result<Vec<u64>> {
        let coords = self.rank_coords(rank)?;
        let local = self.local_shape_at(&coords);
        let total: u64 = local.iter().product();
        if offset >= total {
            return Err(Error::OutOfBounds(format!(
                "local offset {offset} on rank {rank}, which holds {total} elements"
            )));
        }
        let mut index = vec![0; self.ndims()];
        let mut rest = offset;
        for i in (0..self.ndims()).rev() {
            let l = rest % local[i];
            rest /= local[i];
            index[i] = self.dims[i].global_index(coords[i], l);
        }
        Ok(index)
    }

    /// Row-major linear position of a global index (for checks and file formats).
    pub fn linear_index(&self, index: &[u64]) -> Result<u64> {
        self.check_index(index)?;
        Ok(index
            .iter()
            .zip(&self.dims)
            .fold(0, |acc, (&g, d)| acc * d.extent() + g))
    }

    /// Calls `f(global_start, local_offset, len)` for every run of elements that `rank` holds
    /// contiguously both in its local storage and along the last global dimension, in local
    /// storage order. `global_start` is the global index of the run's first element.
    pub fn for_each_local_run(&self, rank: u64, mut f: impl FnMut(&[u64], u64, u64)) -> Result<()> {
        let coords = self.rank_coords(rank)?;
        let local = self.local_shape_at(&coords);
        if local.contains(&0) {
            return Ok(());
        }
        let nd = self.ndims();
        let last = &self.dims[nd - 1];
        let row_len = local[nd - 1];
        let mut outer = vec![0u64; nd - 1]; // local multi-index over the outer dimensions
        let mut global = vec![0u64; nd];
        let mut row = 0u64;
        loop {
            for i in 0..nd - 1 {
                global[i] = self.dims[i].global_index(coords[i], outer[i]);
            }
            let base = row * row_len;
            last.for_each_local_block(coords[nd - 1], |g0, l0, len| {
                global[nd - 1] = g0;
                f(&global, base + l0, len);
            });
            row += 1;
            // Advance the outer odometer.
            let mut i = nd - 1;
            loop {
                if i == 0 {
                    return Ok(());
                }
                i -= 1;
                outer[i] += 1;
                if outer[i] < local[i] {
                    break;
                }
                outer[i] = 0;
            }
        }
    }

    /// Checks that `other` has the same global shape (as needed to redistribute between them).
    pub fn check_same_shape(&self, other: &Layout) -> Result<()> {
        if self.shape() != other.shape() {
            return Err(Error::ShapeMismatch {
                what: "the two layouts of a redistribution must have the same global shape".into(),
                expected: self.shape(),
                got: other.shape(),
            });
        }
        Ok(())
    }

    fn check_rank(&self, rank: u64) -> Result<()> {
        if rank >= self.nprocs() {
            return Err(Error::OutOfBounds(format!(
                "rank {rank} in a grid of {} processes",
                self.nprocs()
            )));
        }
        Ok(())
    }

    fn check_ndims(&self, what: &str, got: usize) -> Result<()> {
        if got != self.ndims() {
            return Err(Error::DimensionMismatch {
                what: what.into(),
                expected: self.ndims(),
                got,
            });
        }
        Ok(())
    }

    fn check_index(&self, index: &[u64]) -> Result<()> {
        self.check_ndims("global index", index.len())?;
        for (i, (&g, d)) in index.iter().zip(&self.dims).enumerate() {
            if g >= d.extent() {
                return Err(Error::OutOfBounds(format!(
                    "index {g} on dimension {i} of extent {}",
                    d.extent()
                )));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.dims.iter().map(|d| d.dist().to_string()).collect();
        write!(
            f,
            "{:?} as ({}) over grid {:?}",
            self.shape(),
            parts.join(", "),
            self.grid()
        )
    }
}

/// Product of `xs`, or `None` on overflow.
pub(crate) fn checked_product(xs: &[u64]) -> Option<u64> {
    xs.iter().try_fold(1u64, |acc, &x| acc.checked_mul(x))
}

/// A balanced process grid of `ndims` axes for `nprocs` processes (as `MPI_Dims_create` does:
/// factors as close to each other as possible, larger ones first).
pub fn balanced_grid(nprocs: u64, ndims: usize) -> Result<Vec<u64>> {
    if nprocs == 0 || ndims == 0 {
        return Err(Error::BadGrid(format!(
            "cannot build a grid of {ndims} axes for {nprocs} processes"
        )));
    }
    let mut grid = vec![1u64; ndims];
    // Prime factors, largest first, each given to the currently smallest axis.
    let mut factors = Vec::new();
    let mut n = nprocs;
    let mut f = 2;
    while f * f <= n {
        while n % f == 0 {
            factors.push(f);
            n /= f;
        }
        f += 1;
    }
    if n > 1 {
        factors.push(n);
    }
    for &f in factors.iter().rev() {
        let smallest = (0..ndims).min_by_key(|&i| grid[i]).unwrap_or(0);
        grid[smallest] *= f;
    }
    grid.sort_unstable_by(|a, b| b.cmp(a));
    Ok(grid)
}
