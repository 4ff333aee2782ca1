//! Regions: the part of a global box `[lo, hi)` that one process's local part holds, as spans
//! between its local storage and a row-major buffer of the box (Global Arrays' get/put).

use crate::error::{Error, Result};
use crate::layout::{DimLayout, Layout};
use crate::plan::dim::{Repeat, Run};
use crate::plan::{row_major_strides, walk_spans, Span};

/// Checks that `[lo, hi)` is a box inside `layout`'s global shape.
pub fn check_region(layout: &Layout, lo: &[u64], hi: &[u64]) -> Result<()> {
    let shape = layout.shape();
    if lo.len() != shape.len() || hi.len() != shape.len() {
        return Err(Error::DimensionMismatch {
            what: "region corners".into(),
            expected: shape.len(),
            got: lo.len().min(hi.len()),
        });
    }
    for (d, ((&l, &h), &n)) in lo.iter().zip(hi).zip(&shape).enumerate() {
        if l > h || h > n {
            return Err(Error::OutOfBounds(format!(
                "region [{lo:?}, {hi:?}) on dimension {d}: [{l}, {h}) is not inside [0, {n})"
            )));
        }
    }
    Ok(())
}

/// Elements in the box `[lo, hi)`.
pub fn region_len(lo: &[u64], hi: &[u64]) -> u64 {
    lo.iter().zip(hi).map(|(&l, &h)| h - l).product()
}

/// Runs of one axis: local indices of process coordinate `coord` inside `[lo, hi)`, paired with
/// their position in the box, in increasing global order.
fn axis_runs(dim: &DimLayout, coord: u64, lo: u64, hi: u64) -> Vec<Run> {
    let mut runs = Vec::new();
    if lo >= hi {
        return runs;
    }
    let (b, p) = (dim.block(), dim.procs());
    // First block of `coord` that may overlap: blocks k = coord + j*p with (k+1)*b > lo.
    let first_k = lo / b;
    let mut j = if first_k <= coord {
        0
    } else {
        (first_k - coord).div_ceil(p)
    };
    loop {
        let k = coord + j * p;
        let start = k * b;
        if start >= hi || start >= dim.extent() {
            break;
        }
        let end = ((k + 1) * b).min(dim.extent());
        let (s, e) = (start.max(lo), end.min(hi));
        if s < e {
            runs.push(Run {
                src: j * b + (s - start),
                dst: s - lo,
                len: e - s,
                inner: Repeat::ONCE,
                outer: Repeat::ONCE,
            });
        }
        j += 1;
    }
    runs
}

/// Spans from `rank`'s local storage (src) to a buffer of the box `[lo, hi)` (dst) laid out
/// with the given row-major strides (`None`: compact row-major). In the box's row-major order
/// restricted to what `rank` holds.
pub fn region_spans(
    layout: &Layout,
    rank: u64,
    lo: &[u64],
    hi: &[u64],
    strides: Option<&[u64]>,
) -> Result<Vec<Span>> {
    check_region(layout, lo, hi)?;
    let coords = layout.rank_coords(rank)?;
    let local = layout.local_shape_at(&coords);
    // A part empty along one axis holds nothing: no runs are made for the others, which could
    // number up to a whole axis's blocks. Otherwise each axis has at most its local extent of
    // runs, so what is built is bounded by the part's size.
    if local.contains(&0) {
        return Ok(Vec::new());
    }
    let runs: Vec<Vec<Run>> = layout
        .dims()
        .iter()
        .zip(&coords)
        .zip(lo.iter().zip(hi))
        .map(|((d, &c), (&l, &h))| axis_runs(d, c, l, h))
        .collect();
    let refs: Vec<&[Run]> = runs.iter().map(|r| r.as_slice()).collect();
    let src_strides = row_major_strides(&local);
    let extents: Vec<u64> = lo.iter().zip(hi).map(|(&l, &h)| h - l).collect();
    let dst_strides = match strides {
        Some(s) => s.to_vec(),
        None => row_major_strides(&extents),
    };
    let mut spans = Vec::new();
    walk_spans(&refs, &src_strides, &dst_strides, &mut |s| spans.push(s));
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Dist;

    #[test]
    fn every_element_of_a_box_comes_from_its_owner() {
        let l = Layout::new(&[13, 11], &[Dist::BlockCyclic(3), Dist::Cyclic], &[2, 3]).unwrap();
        let (lo, hi) = ([2u64, 1], [12u64, 10]);
        let mut filled = vec![u64::MAX; region_len(&lo, &hi) as usize];
        for r in 0..l.nprocs() {
            for s in region_spans(&l, r, &lo, &hi, None).unwrap() {
                for i in 0..s.count {
                    for e in 0..s.len {
                        let src = s.src + i * s.src_stride + e;
                        let dst = (s.dst + i * s.dst_stride + e) as usize;
                        let g = l.global_index(r, src).unwrap();
                        let want = (g[0] - lo[0]) * (hi[1] - lo[1]) + (g[1] - lo[1]);
                        assert_eq!(dst as u64, want);
                        assert_eq!(filled[dst], u64::MAX, "written twice");
                        filled[dst] = 1;
                    }
                }
            }
        }
        assert!(filled.iter().all(|&x| x == 1));
    }

    #[test]
    fn boxes_outside_the_array_are_refused() {
        let l = Layout::one_d(10, Dist::Block, 2).unwrap();
        assert_eq!(
            check_region(&l, &[3], &[11]).unwrap_err().code(),
            crate::ErrorCode::OutOfBounds
        );
        assert_eq!(
            check_region(&l, &[5], &[4]).unwrap_err().code(),
            crate::ErrorCode::OutOfBounds
        );
        assert!(check_region(&l, &[0, 0], &[1, 1]).is_err());
    }
}
