//! Layouts from C: block, cyclic or block-cyclic per dimension over a process grid.

use jx::layout::{balanced_grid, Dist, Layout};

use crate::slice;
use crate::status::*;

/// A distribution kind (`JUXMEM_BLOCK`, `JUXMEM_CYCLIC`, `JUXMEM_BLOCK_CYCLIC`).
pub type juxmem_dist = u32;
/// Contiguous blocks of ceil(n / p) indices, one per process.
pub const JUXMEM_BLOCK: juxmem_dist = 1;
/// Index i on process i mod p.
pub const JUXMEM_CYCLIC: juxmem_dist = 2;
/// Blocks of a given size dealt round robin (ScaLAPACK's block-cyclic).
pub const JUXMEM_BLOCK_CYCLIC: juxmem_dist = 3;

/// A layout (opaque): global shape, distribution per dimension, process grid.
pub struct juxmem_layout {
    pub(crate) layout: Layout,
}

fn dists(kinds: &[juxmem_dist], blocks: Option<&[u64]>) -> Result<Vec<Dist>, jx::Error> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| match k {
            JUXMEM_BLOCK => Ok(Dist::Block),
            JUXMEM_CYCLIC => Ok(Dist::Cyclic),
            JUXMEM_BLOCK_CYCLIC => blocks.map(|b| Dist::BlockCyclic(b[i])).ok_or_else(|| {
                jx::Error::InvalidArgument(format!(
                    "dimension {i} is JUXMEM_BLOCK_CYCLIC but block_sizes is NULL"
                ))
            }),
            other => Err(jx::Error::InvalidArgument(format!(
                "dimension {i}: unknown distribution code {other} (use JUXMEM_BLOCK, JUXMEM_CYCLIC or JUXMEM_BLOCK_CYCLIC)"
            ))),
        })
        .collect()
}

/// Makes a layout of `ndims` dimensions: `shape[i]` indices along dimension i, distributed as
/// `kinds[i]` (with block size `block_sizes[i]` for JUXMEM_BLOCK_CYCLIC; `block_sizes` may be
/// NULL if no dimension is block-cyclic) over `grid[i]` processes. Processes are numbered
/// row-major over the grid; each holds its local part row-major.
#[no_mangle]
pub unsafe extern "C" fn juxmem_layout_new(
    ndims: u32,
    shape: *const u64,
    kinds: *const juxmem_dist,
    block_sizes: *const u64,
    grid: *const u64,
    out: *mut *mut juxmem_layout,
) -> juxmem_status {
    boundary!({
        check_null!(shape, kinds, grid, out);
        let n = ndims as usize;
        let blocks = (!block_sizes.is_null()).then(|| slice(block_sizes, n));
        let d = tri!(dists(slice(kinds, n), blocks));
        let layout = tri!(Layout::new(slice(shape, n), &d, slice(grid, n)));
        *out = Box::into_raw(Box::new(juxmem_layout { layout }));
        JUXMEM_OK
    })
}

/// Frees a layout. Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn juxmem_layout_free(layout: *mut juxmem_layout) {
    if !layout.is_null() {
        drop(Box::from_raw(layout));
    }
}

/// Number of dimensions.
#[no_mangle]
pub unsafe extern "C" fn juxmem_layout_ndims(
    layout: *const juxmem_layout,
    out: *mut u32,
) -> juxmem_status {
    boundary!({
        check_null!(layout, out);
        *out = (*layout).layout.ndims() as u32;
        JUXMEM_OK
    })
}

/// The local shape held by `rank` (`ndims` values).
#[no_mangle]
pub unsafe extern "C" fn juxmem_layout_local_shape(
    layout: *const juxmem_layout,
    rank: u64,
    local_shape: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(layout, local_shape);
        let s = tri!((*layout).layout.local_shape(rank));
        std::ptr::copy_nonoverlapping(s.as_ptr(), local_shape, s.len());
        JUXMEM_OK
    })
}

/// Number of elements `rank` holds.
#[no_mangle]
pub unsafe extern "C" fn juxmem_layout_local_len(
    layout: *const juxmem_layout,
    rank: u64,
    out: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(layout, out);
        *out = tri!((*layout).layout.local_len(rank));
        JUXMEM_OK
    })
}

/// The rank owning global `index` (`ndims` values) and the element's offset in that rank's
/// local storage.
#[no_mangle]
pub unsafe extern "C" fn juxmem_layout_locate(
    layout: *const juxmem_layout,
    index: *const u64,
    rank: *mut u64,
    local_offset: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(layout, index, rank, local_offset);
        let l = &(*layout).layout;
        let (r, off) = tri!(l.locate(slice(index, l.ndims())));
        *rank = r;
        *local_offset = off;
        JUXMEM_OK
    })
}

/// The global index (`ndims` values) of the element at `local_offset` on `rank`.
#[no_mangle]
pub unsafe extern "C" fn juxmem_layout_global_index(
    layout: *const juxmem_layout,
    rank: u64,
    local_offset: u64,
    index: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(layout, index);
        let g = tri!((*layout).layout.global_index(rank, local_offset));
        std::ptr::copy_nonoverlapping(g.as_ptr(), index, g.len());
        JUXMEM_OK
    })
}

/// A balanced process grid of `ndims` axes for `nprocs` processes (as MPI_Dims_create), larger
/// factors first, written to `grid`.
#[no_mangle]
pub unsafe extern "C" fn juxmem_balanced_grid(
    nprocs: u64,
    ndims: u32,
    grid: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(grid);
        let g = tri!(balanced_grid(nprocs, ndims as usize));
        std::ptr::copy_nonoverlapping(g.as_ptr(), grid, g.len());
        JUXMEM_OK
    })
}
