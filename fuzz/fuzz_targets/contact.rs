//! Contact files (`<dir>/<cluster>.manager`), as a client reads them from the federation
//! directory. No panic; a contact that parses is written back (as a manager writes it) to text
//! that parses to the same contact.

#![no_main]

use juxmem::service::contact::{parse, render, Contact};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // read_to_string refuses what is not UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = parse(text, "fuzz.manager") else {
        return;
    };
    assert!(
        c.incarnation.is_some(),
        "a contact file names an incarnation"
    );
    let again = parse(&render(&c), "fuzz.manager").expect("a written contact parses");
    // A missing pid is written as 0.
    let expected = Contact {
        pid: Some(c.pid.unwrap_or(0)),
        ..c
    };
    assert_eq!(again, expected);
});
