//! Transports: how bytes move between processes.
//!
//! - [`mpi`]: MPI point-to-point inside one job.
//! - [`tcp`]: framed messages and bulk data between processes (always between clusters).

pub mod mpi;
pub mod tcp;
