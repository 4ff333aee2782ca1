//! What part of a block a read or write moves, as spans (see [`crate::plan::Span`]). Both ends
//! of a transfer compute the same spans, so only the selection travels, never index lists.

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::plan::stream::span_elements;
use crate::plan::{region, Plan, Span};
use crate::service::protocol::{ArrayMeta, Selection};

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

/// [`write_spans`] for a `Write` of block `block` of the array `meta` that announces `bytes`:
/// `Protocol` unless the selection holds exactly that many bytes of the array's type (checked
/// before a byte of the data is read).
pub fn announced_write_spans(
    meta: &ArrayMeta,
    block: u32,
    sel: &Selection,
    bytes: u64,
) -> Result<Vec<Span>> {
    let spans = write_spans(&meta.spec.layout, u64::from(block), sel)?;
    let want = span_elements(&spans) * meta.spec.elem.size() as u64;
    if want != bytes {
        return Err(Error::Protocol(format!(
            "write to block {block} of {} announces {bytes} bytes; the selection holds {want}",
            meta.spec.name
        )));
    }
    Ok(spans)
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
