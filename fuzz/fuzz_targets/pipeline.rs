//! Pipeline files (`juxmem launch FILE`). No panic; what parses holds what the launcher relies
//! on (at least one stage, each in a declared cluster with a program, clusters declared once),
//! and the launcher's own arithmetic on it (the provider daemons to wait for) cannot overflow.

#![no_main]

use juxmem::pipeline::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = parse(text, "fuzz.pipeline") else {
        return;
    };
    assert!(!p.stages.is_empty());
    for (i, c) in p.clusters.iter().enumerate() {
        assert!(
            p.clusters[..i].iter().all(|d| d.name != c.name),
            "a cluster twice"
        );
    }
    for s in &p.stages {
        assert!(!s.argv.is_empty());
        assert!(p.clusters.iter().any(|c| c.name == s.cluster));
    }
    // What `juxmem launch` computes: the provider daemons to wait for.
    let want: u32 = p.clusters.iter().map(|c| c.providers).sum();
    let _ = want;
});
