//! Every message a peer can send, decoded from arbitrary bytes: no panic, no allocation beyond
//! the input's size plus a constant, and a decoded layout is usable (its checks held).

#![no_main]

use juxmem::layout::Layout;
use juxmem::service::protocol::{Request, Response};
use juxmem::transport::tcp::{decode, HelloReply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode::<Request>(data);
    let _ = decode::<Response>(data);
    let _ = decode::<HelloReply>(data);
    if let Ok(l) = decode::<Layout>(data) {
        // The arithmetic a handler runs on a layout from the wire.
        let last = l.nprocs() - 1;
        for rank in [0, last / 2, last] {
            let n = l.local_len(rank).expect("rank in the grid");
            let _ = l.rank_coords(rank).expect("rank in the grid");
            if n > 0 {
                let g = l.global_index(rank, n - 1).expect("offset in the part");
                assert_eq!(l.owner(&g).expect("index in the shape"), rank);
            }
        }
    }
});
