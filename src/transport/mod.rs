//! Transports: how bytes move between processes.
//!
//! - [`mpi`]: MPI point-to-point inside one job.

pub mod mpi;
