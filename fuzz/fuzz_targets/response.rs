//! Every response, as a client receives it from a manager or provider: decoded (and encoded
//! back to the same bytes), turned into a result (`Error` responses into typed errors), and an
//! array entry or placement used as the client uses it (the placement of each block of the
//! layout, the stamp a version reads, the bytes of a block), after the checks the client
//! applies. No panic.

#![no_main]

use juxmem::service::protocol::{stamp_at, ArrayMeta, BlockPlacement, Response};
use juxmem::transport::tcp::decode;
use libfuzzer_sys::fuzz_target;

/// What a client does with the placement of one block.
fn use_block(p: &BlockPlacement, version: u64) {
    let _ = stamp_at(&p.stamps, version);
    let _ = p.latest();
    let _ = p.copies().count();
    let _ = p.push_targets();
}

/// What a client does with an array entry: checks it (as `lookup` and `create` do), then each
/// rank of the layout reads its block's placement.
fn use_meta(m: &ArrayMeta) {
    if m.check().is_err() {
        return;
    }
    let last = m.spec.layout.nprocs() - 1;
    for rank in [0, last / 2, last] {
        let p = &m.blocks[rank as usize];
        use_block(p, m.committed);
        let _ = m.block_bytes(rank);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(resp) = decode::<Response>(data) else {
        return;
    };
    // f64 fields (NaN) make equality useless: compare encodings instead.
    let bytes = postcard::to_stdvec(&resp).expect("a decoded response encodes");
    let again = decode::<Response>(&bytes).expect("re-decodes");
    assert_eq!(postcard::to_stdvec(&again).expect("encodes"), bytes);
    match resp.into_result() {
        Err(e) => {
            let _ = (e.code(), e.to_string());
        }
        Ok(Response::Meta(m)) => use_meta(&m),
        Ok(Response::WriteGranted { base, blocks, .. }) => {
            blocks.iter().for_each(|p| use_block(p, base));
        }
        Ok(Response::Version {
            version, blocks, ..
        }) => blocks.iter().for_each(|p| use_block(p, version)),
        Ok(Response::Placement(blocks)) => blocks.iter().for_each(|p| use_block(p, u64::MAX)),
        Ok(Response::Status(clusters)) => {
            for c in &clusters {
                for a in &c.arrays {
                    use_meta(&a.meta);
                }
            }
        }
        Ok(_) => {}
    }
});
