//! Layouts and selections from the wire: a block's layout (as a `Create` or `Host` carries it),
//! a block number and the `Selection` of a `Read` or `Write`, decoded, then run through what a
//! provider does with them: the layout's arithmetic, the spans of the selection, and the copy
//! of those spans between the block and a buffer. No panic; a decoded layout is usable (its
//! checks held), and spans that were computed stay inside both buffers.

#![no_main]

use juxmem::layout::Layout;
use juxmem::plan::stream::{pack_to, span_elements, unpack_from};
use juxmem::service::protocol::Selection;
use juxmem::service::selection::{read_spans, write_spans};
use juxmem::transport::tcp::decode;
use libfuzzer_sys::fuzz_target;

/// Largest block the target computes spans for and copies through (elements of one byte).
const COPY_LIMIT: u64 = 1 << 20;

fn layout_arithmetic(l: &Layout) {
    let last = l.nprocs() - 1;
    for rank in [0, last / 2, last] {
        let n = l.local_len(rank).expect("rank in the grid");
        let coords = l.rank_coords(rank).expect("rank in the grid");
        assert_eq!(
            l.coords_rank(&coords).expect("coordinates in the grid"),
            rank
        );
        if n > 0 {
            for off in [0, n / 2, n - 1] {
                let g = l.global_index(rank, off).expect("offset in the part");
                assert_eq!(l.locate(&g).expect("index in the shape"), (rank, off));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = decode::<Layout>(data) {
        layout_arithmetic(&l);
    }
    let Ok((layout, block, sel)) = decode::<(Layout, u32, Selection)>(data) else {
        return;
    };
    layout_arithmetic(&layout);
    let block = u64::from(block);
    // Spans are materialized (`Plan::spans`), up to one per element of the block: a provider
    // computes them only for a block it holds (`Store::meta_of_held`), within its capacity.
    match layout.local_len(block) {
        Ok(n) if n <= COPY_LIMIT => {}
        _ => return,
    }
    let (Ok(read), Ok(write)) = (
        read_spans(&layout, block, &sel),
        write_spans(&layout, block, &sel),
    ) else {
        return;
    };
    let elements = span_elements(&read);
    assert_eq!(
        elements,
        span_elements(&write),
        "a read and a write move the same elements"
    );
    // The block's side is the local part; the other side is packed on the wire.
    let local = layout
        .local_len(block)
        .expect("a block with spans is in the grid");
    assert!(elements <= local, "a selection moves at most the block");
    let block_data = vec![0u8; local as usize];
    let mut wire = Vec::new();
    pack_to(&read, &block_data, &mut wire).expect("read spans inside the block");
    assert_eq!(wire.len() as u64, elements);
    let mut block_data = block_data;
    unpack_from(&write, &mut &wire[..], &mut block_data).expect("write spans inside the block");
});
