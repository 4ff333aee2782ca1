//! Inputs the fuzz targets (fuzz/, `ci/fuzz`) found to crash, each kept as a test of its fix:
//! the same bytes through the same decoding and checks, now a typed error instead of a panic.
//! New findings go here, with the target that found them (see docs/SECURITY.md, "Fuzzing").

use juxmem::error::Error;
use juxmem::service::protocol::Response;
use juxmem::transport::tcp::decode;

/// fuzz target `response`: an array entry whose placement has fewer blocks than its layout
/// (here none for a layout of one block). Clients indexed the placement by grid rank and
/// panicked; `ArrayMeta::check` (run on every entry a client receives) refuses it, and
/// placements in `WriteGranted`, `Version` and `Placement` responses are checked the same way
/// (`check_placement`).
#[test]
fn an_entry_with_a_short_placement_is_refused() {
    let input: &[u8] = &[
        0x02, 0x02, 0x01, 0x01, 0x01, 0x01, 0x19, 0x01, 0x01, 0x01, 0xff, 0xfe, 0xcb, 0x01, 0x01,
        0x60, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
        0x0e,
    ];
    let Ok(Response::Meta(m)) = decode::<Response>(input) else {
        panic!("the input decodes to an array entry");
    };
    assert!(m.blocks.len() as u64 != m.spec.layout.nprocs());
    assert!(
        matches!(m.check(), Err(Error::Protocol(_))),
        "{:?}",
        m.check()
    );
}

/// fuzz target `pipeline`: provider daemons whose total overflows the launcher's `u32` count
/// (`juxmem launch` summed them to know how many to wait for: an overflow panic, or a wrong
/// count in release). The parser now refuses such a file; a cluster declared twice (two
/// managers for one cluster) is refused too.
#[test]
fn a_pipeline_with_too_many_daemons_is_refused() {
    let input = b"cluster A\ncluster B providers=4294967295\nstage A np=2 l";
    let text = std::str::from_utf8(input).unwrap();
    let e = juxmem::pipeline::parse(text, "crash.pipeline").unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    assert!(e.to_string().contains("provider daemons"), "{e}");
    let twice = "cluster A\ncluster A\nstage A np=1 prog";
    let e = juxmem::pipeline::parse(twice, "twice.pipeline").unwrap_err();
    assert!(e.to_string().contains("declared twice"), "{e}");
    // The examples still parse.
    for p in ["weather", "handoff"] {
        let path = format!("{}/examples/{p}.pipeline", env!("CARGO_MANIFEST_DIR"));
        juxmem::pipeline::read(std::path::Path::new(&path)).unwrap();
    }
}
