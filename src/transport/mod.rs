//! Transports: how bytes move between processes.
//!
//! - [`mpi`]: MPI point-to-point inside one job.
//! - [`tcp`]: framed messages and bulk data between processes (always between clusters).
//! - [`tls`]: mutual TLS on every TCP connection (credentials per cluster and role).
//! - [`address`]: which address a process listens on and advertises.
//! - [`shm`]: shared memory on one host (array data in segments other processes map).
//! - [`verbs`]: RDMA devices, and the data path a process requires (`JUXMEM_TRANSPORT`).

pub mod address;
pub mod mpi;
pub mod shm;
pub mod tcp;
pub mod tls;
pub mod verbs;
