//! What part of a block a read or write moves, as spans (see [`crate::plan::Span`]). Both ends
//! of a transfer compute the same spans, so only the selection travels, never index lists.

use crate::error::Result;
use crate::layout::Layout;
use crate::plan::{region, Plan, Span};
use crate::service::protocol::Selection;

/// Spans from block `block` of `layout` (src: block-local offsets) to the reader's buffer
/// (dst: offsets in the reader's local part or region buffer).
pub fn read_spans(layout: &Layout, block: u64, sel: &Selection) -> Result<Vec<Span>> {
    match sel {
        Selection::Whole => whole(layout, block),
        Selection::Region { lo, hi } => region::region_spans(layout, block, lo, hi, None),
        Selection::Piece { target, q } => Plan::cached(layout, target)?.spans(block, *q),
    }
}

/// Spans from the writer's buffer (src) into block `block` of `layout` (dst: block-local).
pub fn write_spans(layout: &Layout, block: u64, sel: &Selection) -> Result<Vec<Span>> {
    match sel {
        Selection::Whole => whole(layout, block),
        Selection::Region { lo, hi } => Ok(region::region_spans(layout, block, lo, hi, None)?
            .into_iter()
            .map(Span::swapped)
            .collect()),
        Selection::Piece { target, q } => Plan::cached(target, layout)?.spans(*q, block),
    }
}

fn whole(layout: &Layout, block: u64) -> Result<Vec<Span>> {
    let len = layout.local_len(block)?;
    Ok(if len == 0 {
        vec![]
    } else {
        vec![Span {
            src: 0,
            dst: 0,
            len,
            count: 1,
            src_stride: 0,
            dst_stride: 0,
        }]
    })
}
