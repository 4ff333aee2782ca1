//! Bad input to layouts and plans returns typed errors with clear messages.

use juxmem::layout::{Dist, Layout};
use juxmem::{ErrorCode, Plan};

#[test]
fn mismatched_global_shapes() {
    let a = Layout::one_d(100, Dist::Block, 2).unwrap();
    let b = Layout::one_d(101, Dist::Block, 2).unwrap();
    let e = Plan::new(&a, &b).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ShapeMismatch);
    assert!(
        e.to_string().contains("[100]") && e.to_string().contains("[101]"),
        "{e}"
    );
    let c = Layout::new(&[10, 10], &[Dist::Block; 2], &[1, 2]).unwrap();
    assert_eq!(
        Plan::new(&a, &c).unwrap_err().code(),
        ErrorCode::DimensionMismatch
    );
}

#[test]
fn zero_sized_grids() {
    let e = Layout::one_d(10, Dist::Block, 0).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadGrid);
    assert!(e.to_string().contains("0 processes"), "{e}");
    let e = Layout::new(&[4, 4], &[Dist::Cyclic; 2], &[2, 0]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadGrid);
    assert!(juxmem::balanced_grid(0, 2).is_err());
}

#[test]
fn zero_block_size() {
    let e = Layout::new(&[4, 4], &[Dist::Block, Dist::BlockCyclic(0)], &[1, 1]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ZeroBlock);
    assert!(e.to_string().contains("dimension 1"), "{e}");
}

#[test]
fn overflowing_extents() {
    let e = Layout::new(&[1 << 33, 1 << 33], &[Dist::Block; 2], &[1, 1]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Overflow);
    assert!(e.to_string().contains("2^64"), "{e}");
    // Fits in 64 bits overall but one process's part cannot be addressed.
    let e = Layout::one_d(u64::MAX, Dist::Block, 1).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Overflow);
    let e = Layout::new(&[2, 2], &[Dist::Block; 2], &[u64::MAX, 2]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Overflow);
}

#[test]
fn mismatched_dimension_counts_and_indices() {
    let e = Layout::new(&[4, 4], &[Dist::Block], &[1, 1]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::DimensionMismatch);
    let e = Layout::new(&[], &[], &[]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    let l = Layout::new(&[4, 4], &[Dist::Block; 2], &[2, 1]).unwrap();
    assert_eq!(l.owner(&[4, 0]).unwrap_err().code(), ErrorCode::OutOfBounds);
    assert_eq!(
        l.owner(&[1]).unwrap_err().code(),
        ErrorCode::DimensionMismatch
    );
    assert_eq!(l.local_len(2).unwrap_err().code(), ErrorCode::OutOfBounds);
    assert_eq!(
        l.global_index(0, 8).unwrap_err().code(),
        ErrorCode::OutOfBounds
    );
}

#[test]
fn distribution_names_parse_or_fail_clearly() {
    assert_eq!("block".parse::<Dist>().unwrap(), Dist::Block);
    assert_eq!("cyclic".parse::<Dist>().unwrap(), Dist::Cyclic);
    assert_eq!(
        "block-cyclic(64)".parse::<Dist>().unwrap(),
        Dist::BlockCyclic(64)
    );
    assert_eq!("bc7".parse::<Dist>().unwrap(), Dist::BlockCyclic(7));
    let e = "diagonal".parse::<Dist>().unwrap_err();
    assert!(e.to_string().contains("diagonal"), "{e}");
    assert!("block-cyclic(x)".parse::<Dist>().is_err());
}

#[test]
fn wrong_buffer_lengths() {
    let a = Layout::one_d(10, Dist::Block, 2).unwrap();
    let b = Layout::one_d(10, Dist::Cyclic, 2).unwrap();
    let plan = Plan::new(&a, &b).unwrap();
    let src = vec![0.0f64; 4]; // rank 0 holds 5
    let mut dst = vec![0.0f64; 5];
    let e = plan.copy(0, 0, &src, &mut dst).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BufferSize);
    let mut out = vec![0.0f64; 1];
    let e = plan.pack(0, 1, &[0.0; 5], &mut out).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BufferSize);
    let srcs: Vec<&[f64]> = vec![&[0.0; 5]];
    let mut d0 = [0.0; 5];
    let mut dsts: Vec<&mut [f64]> = vec![&mut d0];
    let e = juxmem::redistribute::local(&plan, &srcs, &mut dsts).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
}

#[test]
fn grids_over_the_process_limit() {
    let n = juxmem::layout::MAX_PROCS;
    assert!(Layout::one_d(n, Dist::Cyclic, n).is_ok());
    let e = Layout::new(&[4, 4], &[Dist::Cyclic; 2], &[n, 2]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadGrid);
    assert!(e.to_string().contains("at most 1048576"), "{e}");
}

/// A layout as it travels, unchecked (the fields of `Layout` / `DimLayout`).
#[derive(serde::Serialize)]
struct RawLayout {
    dims: Vec<(u64, u64, u64, Dist)>,
}

#[test]
fn layouts_are_checked_when_decoded() {
    use juxmem::transport::tcp::decode;
    let decode_raw = |dims: Vec<(u64, u64, u64, Dist)>| {
        decode::<Layout>(&postcard::to_stdvec(&RawLayout { dims }).unwrap())
    };
    // The raw form is the real encoding.
    let l = Layout::new(&[10, 7], &[Dist::Block, Dist::BlockCyclic(3)], &[3, 2]).unwrap();
    let raw = vec![(10, 3, 4, Dist::Block), (7, 2, 3, Dist::BlockCyclic(3))];
    assert_eq!(
        postcard::to_stdvec(&l).unwrap(),
        postcard::to_stdvec(&RawLayout { dims: raw.clone() }).unwrap()
    );
    assert_eq!(decode_raw(raw).unwrap(), l);
    for (dims, why) in [
        (vec![(10, 0, 1, Dist::Block)], "0 processes"),
        (vec![(10, 2, 0, Dist::BlockCyclic(0))], "block size of 0"),
        (vec![(10, 2, 0, Dist::Block)], "does not match"),
        (vec![(10, 2, 7, Dist::Cyclic)], "does not match"),
        (vec![(1 << 40, 1 << 21, 1, Dist::Cyclic)], "at most 1048576"),
        (
            vec![(u64::MAX, 1, u64::MAX, Dist::Block)],
            "memory addresses",
        ),
        (vec![], "at least one dimension"),
    ] {
        let e = decode_raw(dims).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Protocol, "{e}");
        assert!(
            e.to_string().contains("invalid layout") && e.to_string().contains(why),
            "expected {why:?}: {e}"
        );
    }
    // A zero block size never reaches the index arithmetic (it would divide by zero).
    let e = decode::<juxmem::layout::DimLayout>(
        &postcard::to_stdvec(&(8u64, 2u64, 0u64, Dist::Block)).unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
}
