//! Frames as they arrive on a connection: a stream of length-prefixed frames read with a limit,
//! each decoded as the request a service receives or the response a client receives. No panic,
//! no frame over the limit, nothing allocated beyond the limit, and a frame read is exactly the
//! bytes `write_frame` would have sent for it.

#![no_main]

use std::io::Cursor;

use juxmem::service::protocol::{Request, Response};
use juxmem::transport::tcp::{decode, read_frame, write_frame, HANDSHAKE_MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limit: a small one (refusals) or the handshake's.
    let Some((&pick, stream)) = data.split_first() else {
        return;
    };
    let max = if pick & 1 == 0 {
        usize::from(pick)
    } else {
        HANDSHAKE_MAX_FRAME
    };
    let mut cur = Cursor::new(stream);
    loop {
        let start = cur.position() as usize;
        let Ok(frame) = read_frame(&mut cur, max) else {
            break;
        };
        assert!(frame.len() <= max, "a frame over the limit was accepted");
        let end = cur.position() as usize;
        let mut again = Vec::new();
        write_frame(&mut again, &frame).expect("a frame read can be written");
        assert_eq!(&stream[start..end], &again[..], "read and write disagree");
        let _ = decode::<Request>(&frame);
        let _ = decode::<Response>(&frame).map(|r| r.into_result());
    }
});
