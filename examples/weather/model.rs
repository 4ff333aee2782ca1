//! The weather model of the pipeline examples: a 2-D temperature field, three forecast days,
//! each day work that suits the layout its stage holds the field in.
//!
//! - Day 1 (block rows): explicit advection-diffusion, a 5-point stencil with halo rows.
//! - Day 2 (cyclic rows): whole rows are local, so an implicit (tridiagonal) diffusion along
//!   each row, then relaxation toward a latitude-dependent climatology.
//! - Day 3 (block-cyclic tiles): dense per-tile operations, a separable smoothing
//!   `T <- S T S^T` on each `tile x tile` block.
//!
//! Every function here computes one row, one point or one tile from the same inputs in the same
//! order, so a distributed run reproduces [`serial`] exactly.
#![allow(dead_code)]

use juxmem::layout::Layout;
use mpi::traits::*;

/// Model parameters (the same on every stage).
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Rows (south to north).
    pub rows: usize,
    /// Columns (west to east).
    pub cols: usize,
    /// Explicit steps on day 1.
    pub day1_steps: usize,
    /// Diffusion number of the explicit scheme (kappa dt / dx^2), < 0.25 for stability.
    pub diffusion: f64,
    /// Courant numbers of the wind (u dt/dx, v dt/dy), upwind.
    pub wind: (f64, f64),
    /// Implicit diffusion number along rows on day 2.
    pub row_diffusion: f64,
    /// Relaxation toward climatology on day 2 (0..1).
    pub relaxation: f64,
    /// Tile size of day 3's block-cyclic layout.
    pub tile: usize,
}

impl Params {
    /// The parameters used by the demo.
    pub fn demo() -> Params {
        Params {
            rows: 480,
            cols: 400,
            day1_steps: 60,
            diffusion: 0.15,
            wind: (0.3, 0.2),
            row_diffusion: 2.0,
            relaxation: 0.1,
            tile: 16,
        }
    }
}

/// Initial temperature (K) of forecast cycle `cycle` at (row, col): a latitude gradient and a
/// warm anomaly whose position moves with the cycle.
pub fn initial(p: &Params, cycle: u64, row: usize, col: usize) -> f64 {
    let y = row as f64 / p.rows as f64;
    let x = col as f64 / p.cols as f64;
    let cx = 0.3 + 0.1 * (cycle % 4) as f64;
    let cy = 0.4 + 0.05 * (cycle % 3) as f64;
    let r2 = ((x - cx) / 0.08).powi(2) + ((y - cy) / 0.1).powi(2);
    climatology(p, row) + 15.0 * (-r2).exp() + 2.0 * (6.0 * x).sin() * (4.0 * y).cos()
}

/// Climatological temperature of a row: warm south, cold north.
pub fn climatology(p: &Params, row: usize) -> f64 {
    300.0 - 40.0 * row as f64 / p.rows as f64
}

/// One explicit step at an interior point from its neighbours (north = row - 1).
#[inline]
pub fn stencil(p: &Params, c: f64, n: f64, s: f64, w: f64, e: f64) -> f64 {
    let (u, v) = p.wind;
    // Upwind advection for u, v > 0 (from west and from north), then diffusion.
    let adv = u * (c - w) + v * (c - n);
    let diff = p.diffusion * (n + s + w + e - 4.0 * c);
    c - adv + diff
}

/// Day 2 on one row: implicit diffusion along the row (Thomas algorithm, fixed ends), then
/// relaxation toward the row's climatology.
pub fn row_update(p: &Params, global_row: usize, row: &mut [f64], scratch: &mut Vec<f64>) {
    let n = row.len();
    if n >= 3 {
        // Solve (1 + 2a) x_i - a x_{i-1} - a x_{i+1} = b_i for interior i; x_0, x_{n-1} fixed.
        let a = p.row_diffusion;
        scratch.clear();
        scratch.resize(n, 0.0); // modified upper coefficients
        let mut rhs: Vec<f64> = row.to_vec();
        rhs[1] += a * row[0];
        rhs[n - 2] += a * row[n - 1];
        let diag = 1.0 + 2.0 * a;
        scratch[1] = -a / diag;
        rhs[1] /= diag;
        for i in 2..n - 1 {
            let m = diag + a * scratch[i - 1];
            scratch[i] = -a / m;
            rhs[i] = (rhs[i] + a * rhs[i - 1]) / m;
        }
        row[n - 2] = rhs[n - 2];
        for i in (1..n - 2).rev() {
            row[i] = rhs[i] - scratch[i] * row[i + 1];
        }
    }
    let clim = climatology(p, global_row);
    for x in row.iter_mut() {
        *x += p.relaxation * (clim - *x);
    }
}

/// The 1-D smoothing matrix of size `n` used on day 3 (rows sum to 1).
pub fn smoother(n: usize) -> Vec<f64> {
    let mut s = vec![0.0; n * n];
    for i in 0..n {
        let mut wsum = 0.0;
        for j in 0..n {
            let d = i.abs_diff(j) as f64;
            let w = if d <= 2.0 {
                [0.5, 0.2, 0.05][d as usize]
            } else {
                0.0
            };
            s[i * n + j] = w;
            wsum += w;
        }
        for j in 0..n {
            s[i * n + j] /= wsum;
        }
    }
    s
}

/// Day 3 on one tile held row-major with leading dimension `ld`: `T <- S_r T S_c^T`.
pub fn tile_update(tile: &mut [f64], ld: usize, rows: usize, cols: usize) {
    let (sr, sc) = (smoother(rows), smoother(cols));
    // tmp = T S_c^T
    let mut tmp = vec![0.0; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            let mut acc = 0.0;
            for k in 0..cols {
                acc += tile[i * ld + k] * sc[j * cols + k];
            }
            tmp[i * cols + j] = acc;
        }
    }
    // T = S_r tmp
    for i in 0..rows {
        for j in 0..cols {
            let mut acc = 0.0;
            for k in 0..rows {
                acc += sr[i * rows + k] * tmp[k * cols + j];
            }
            tile[i * ld + j] = acc;
        }
    }
}

/// Day 1 on a band of full rows `[r0, r0 + band)` of a `rows x cols` field, given the halo rows
/// above (`north`, row r0 - 1) and below (`south`, row r0 + band) when they exist. Boundary
/// rows and columns of the whole field are held fixed.
pub fn stencil_band(
    p: &Params,
    r0: usize,
    band: &[f64],
    north: Option<&[f64]>,
    south: Option<&[f64]>,
    out: &mut [f64],
) {
    let cols = p.cols;
    let nrows = band.len() / cols;
    for lr in 0..nrows {
        let g = r0 + lr;
        let row = &band[lr * cols..(lr + 1) * cols];
        let dst = &mut out[lr * cols..(lr + 1) * cols];
        if g == 0 || g == p.rows - 1 {
            dst.copy_from_slice(row);
            continue;
        }
        let up = if lr == 0 {
            north.expect("halo row above")
        } else {
            &band[(lr - 1) * cols..lr * cols]
        };
        let down = if lr + 1 == nrows {
            south.expect("halo row below")
        } else {
            &band[(lr + 1) * cols..(lr + 2) * cols]
        };
        dst[0] = row[0];
        dst[cols - 1] = row[cols - 1];
        for c in 1..cols - 1 {
            dst[c] = stencil(p, row[c], up[c], down[c], row[c - 1], row[c + 1]);
        }
    }
}

/// The three days computed in one process: the reference every distributed run must match.
pub fn serial(p: &Params, cycle: u64) -> [Vec<f64>; 3] {
    let (rows, cols) = (p.rows, p.cols);
    let mut t: Vec<f64> = (0..rows * cols)
        .map(|i| initial(p, cycle, i / cols, i % cols))
        .collect();
    let mut next = vec![0.0; rows * cols];
    for _ in 0..p.day1_steps {
        stencil_band(p, 0, &t, None, None, &mut next);
        std::mem::swap(&mut t, &mut next);
    }
    let day1 = t.clone();
    let mut scratch = Vec::new();
    for r in 0..rows {
        row_update(p, r, &mut t[r * cols..(r + 1) * cols], &mut scratch);
    }
    let day2 = t.clone();
    for r0 in (0..rows).step_by(p.tile) {
        for c0 in (0..cols).step_by(p.tile) {
            let (h, w) = (p.tile.min(rows - r0), p.tile.min(cols - c0));
            tile_update(&mut t[r0 * cols + c0..], cols, h, w);
        }
    }
    [day1, day2, t]
}

/// The layout stage `stage` holds the field in, over `n` processes: (block, block) rows for day
/// 1's stencil, (cyclic, block) rows for day 2's row-wise work, block-cyclic tiles for day 3.
pub fn stage_layout(p: &Params, stage: usize, n: u64) -> juxmem::Result<Layout> {
    use juxmem::layout::Dist;
    let shape = [p.rows as u64, p.cols as u64];
    match stage {
        1 => Layout::new(&shape, &[Dist::Block, Dist::Block], &[n, 1]),
        2 => Layout::new(&shape, &[Dist::Cyclic, Dist::Block], &[n, 1]),
        _ => {
            let t = Dist::BlockCyclic(p.tile as u64);
            Layout::new(&shape, &[t, t], &juxmem::balanced_grid(n, 2)?)
        }
    }
}

/// Initial field of `cycle` for `rank`'s part of `layout`.
pub fn initial_part(
    p: &Params,
    cycle: u64,
    layout: &Layout,
    rank: u64,
) -> juxmem::Result<Vec<f64>> {
    let mut part = vec![0.0; layout.local_len(rank)? as usize];
    layout.for_each_local_run(rank, |g, off, len| {
        for i in 0..len {
            part[(off + i) as usize] = initial(p, cycle, g[0] as usize, (g[1] + i) as usize);
        }
    })?;
    Ok(part)
}

/// Day 1 on this rank's band of full rows ((block, *) layout over a grid [n, 1]), exchanging
/// halo rows with the neighbouring bands over `comm` (whose rank `r` holds band `r`).
pub fn day1_band<C: Communicator>(
    p: &Params,
    comm: &C,
    layout: &Layout,
    mut band: Vec<f64>,
) -> Vec<f64> {
    let cols = p.cols;
    let me = comm.rank();
    let r0 = layout
        .global_index(me as u64, 0)
        .map(|g| g[0] as usize)
        .unwrap_or(0);
    let nrows = band.len() / cols;
    let has_rows = |r: i32| layout.local_len(r as u64).is_ok_and(|l| l > 0);
    let north_peer = (me > 0 && nrows > 0).then_some(me - 1);
    let south_peer = (me + 1 < comm.size() && nrows > 0 && has_rows(me + 1)).then_some(me + 1);
    let (mut north, mut south) = (vec![0.0; cols], vec![0.0; cols]);
    let mut next = vec![0.0; band.len()];
    if nrows == 0 {
        return band;
    }
    for _ in 0..p.day1_steps {
        if let Some(peer) = north_peer {
            let proc = comm.process_at_rank(peer);
            mpi::point_to_point::send_receive_into(&band[..cols], &proc, &mut north[..], &proc);
        }
        if let Some(peer) = south_peer {
            let proc = comm.process_at_rank(peer);
            let last = &band[(nrows - 1) * cols..];
            mpi::point_to_point::send_receive_into(last, &proc, &mut south[..], &proc);
        }
        stencil_band(
            p,
            r0,
            &band,
            north_peer.map(|_| north.as_slice()),
            south_peer.map(|_| south.as_slice()),
            &mut next,
        );
        std::mem::swap(&mut band, &mut next);
    }
    band
}

/// Day 2 on `rank`'s whole rows ((cyclic, *) layout over a grid [n, 1]).
pub fn day2_rows(p: &Params, layout: &Layout, rank: u64, rows: &mut [f64]) {
    let mut scratch = Vec::new();
    let dim = layout.dims()[0];
    let row_coord = rank / layout.grid()[1];
    for (lr, row) in rows.chunks_mut(p.cols).enumerate() {
        let g = dim.global_index(row_coord, lr as u64) as usize;
        row_update(p, g, row, &mut scratch);
    }
}

/// Day 3 on `rank`'s tiles (block-cyclic(tile) on both axes): each local tile is one block.
pub fn day3_tiles(p: &Params, layout: &Layout, rank: u64, part: &mut [f64]) -> juxmem::Result<()> {
    let t = p.tile as u64;
    let local = layout.local_shape(rank)?;
    let (lrows, lcols) = (local[0], local[1]);
    for r0 in (0..lrows).step_by(t as usize) {
        for c0 in (0..lcols).step_by(t as usize) {
            let (h, w) = (t.min(lrows - r0) as usize, t.min(lcols - c0) as usize);
            let start = (r0 * lcols + c0) as usize;
            tile_update(&mut part[start..], lcols as usize, h, w);
        }
    }
    Ok(())
}

/// Largest difference between `rank`'s part of `layout` and the full reference field.
pub fn max_error(
    p: &Params,
    layout: &Layout,
    rank: u64,
    part: &[f64],
    reference: &[f64],
) -> juxmem::Result<f64> {
    let mut err = 0.0f64;
    let cols = p.cols as u64;
    layout.for_each_local_run(rank, |g, off, len| {
        let first = (g[0] * cols + g[1]) as usize;
        for i in 0..len as usize {
            err = err.max((part[off as usize + i] - reference[first + i]).abs());
        }
    })?;
    Ok(err)
}
