//! Executors that carry out a [`Plan`](crate::plan::Plan).
//!
//! - [`local`]: every rank's data in one process (tests, single-process tools).
//! - [`mpi`]: inside one MPI job, over the same ranks or disjoint rank sets.

pub mod mpi;

use crate::error::{Error, Result};
use crate::plan::Plan;

/// Redistributes in one process: `srcs[p]` is source rank `p`'s local part, `dsts[q]`
/// destination rank `q`'s. Every element is copied once, straight from source to destination.
pub fn local<T: Copy>(plan: &Plan, srcs: &[&[T]], dsts: &mut [&mut [T]]) -> Result<()> {
    for (what, want, got) in [
        ("source", plan.src().nprocs(), srcs.len()),
        ("destination", plan.dst().nprocs(), dsts.len()),
    ] {
        if want != got as u64 {
            return Err(Error::InvalidArgument(format!(
                "{got} {what} parts given for a grid of {want} processes"
            )));
        }
    }
    for (p, src) in srcs.iter().enumerate() {
        for t in plan.destinations(p as u64)? {
            plan.copy(p as u64, t.peer, src, dsts[t.peer as usize])?;
        }
    }
    Ok(())
}
