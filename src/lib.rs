//! # juxmem
//!
//! A data-sharing service for tightly coupled simulation codes, in the spirit of JuxMem
//! (juxtaposed memory): named, shared, distributed n-D arrays laid out block, cyclic or
//! block-cyclic over a process grid, handed from one pipeline stage to the next with automatic
//! redistribution.
//!
//! Read `docs/ARCHITECTURE.md` first. The modules follow the architecture:
//!
//! - [`layout`]: distribution math (owner, local offset, local shape, local runs). Pure.
//! - [`plan`]: redistribution plans between two layouts, independent of the array length. Pure.
//! - [`redistribute`]: executors for a plan (in one process; inside an MPI job).
//! - [`transport`]: how bytes move (MPI point-to-point inside a job).
//! - [`element`]: the element types arrays hold.
//! - [`error`]: the one error type, with stable numeric codes shared with the C ABI.
//! - [`history`]: fault-test histories, their text files and checker (Jepsen semantics).
//! - [`pipeline`]: pipeline files (`juxmem launch`).

#![warn(missing_docs)]

pub mod array;
pub mod config;
pub mod credentials;
pub mod element;
pub mod error;
pub mod history;
pub mod layout;
pub mod pipeline;
pub mod plan;
pub mod redistribute;
pub mod service;
pub mod transport;

pub use array::{ArrayOptions, Federation, NbRequest, SharedArray, Solo};
pub use element::{ElemType, Element};
pub use error::{Error, ErrorCode, Result};
pub use layout::{balanced_grid, Dist, Layout};
pub use plan::Plan;

/// The README's code blocks, compiled as doctests so the documented usage keeps building.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
