//! The handshake: the hello frame an accepting service parses (magic, protocol version, then
//! the hello) and the reply a connecting side decodes. No panic; whatever parses is encoded
//! back to the same value, and yields the identity authorization uses.

#![no_main]

use juxmem::transport::tcp::{decode, hello_frame, parse_hello_frame, HelloReply, Identity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = parse_hello_frame(data) {
        let id = Identity::claimed_by(&h);
        assert_eq!(id.cluster, h.cluster);
        let _ = id.is_manager_of(&h.cluster);
        let again = hello_frame(&h).expect("a parsed hello encodes");
        assert_eq!(
            parse_hello_frame(&again).expect("an encoded hello parses"),
            h
        );
    }
    if let Ok(reply) = decode::<HelloReply>(data) {
        if let HelloReply::Welcome(h) = &reply {
            let _ = Identity::claimed_by(h);
        }
        let again = postcard::to_stdvec(&reply).expect("a decoded reply encodes");
        assert_eq!(decode::<HelloReply>(&again).expect("re-decodes"), reply);
    }
});
