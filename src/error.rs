//! The one error type of the library.
//!
//! Every variant has a stable numeric [`ErrorCode`] so the C ABI can return it unchanged; codes
//! are never renumbered or reused (retired ones stay reserved).

use std::fmt;

/// Result alias used throughout juxmem.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Stable numeric error codes, shared with the C ABI (`JUXMEM_E*`).
///
/// Grouped by subsystem in hundreds: 1xx bad arguments, 2xx layouts and plans, 3xx transports,
/// 4xx service. Never renumber a code; retire it and leave a comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// An argument is invalid (a catch-all when no more precise code applies).
    InvalidArgument = 100,
    /// Two things that must have the same shape do not.
    ShapeMismatch = 101,
    /// An element type does not match the one the data was created with.
    TypeMismatch = 102,
    /// A buffer has the wrong length.
    BufferSize = 103,
    /// A region lies outside the array.
    OutOfBounds = 104,
    /// A process grid has a zero extent or does not match the number of processes.
    BadGrid = 200,
    /// A block size of zero.
    ZeroBlock = 201,
    /// An extent or a product of extents does not fit in 64 bits (or in memory addresses).
    Overflow = 202,
    /// Dimension counts disagree.
    DimensionMismatch = 203,
    /// An MPI call or MPI set-up failed (for example, the thread level granted is too low).
    Mpi = 300,
    /// An operation did not complete within its timeout.
    Timeout = 301,
}

impl ErrorCode {
    /// The numeric value, as the C ABI returns it.
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

/// Everything that can go wrong, with enough context to act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Generic invalid argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Two global shapes (or buffer shapes) differ.
    #[error("shape mismatch: {what}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// What was being compared.
        what: String,
        /// The shape that was required.
        expected: Vec<u64>,
        /// The shape that was given.
        got: Vec<u64>,
    },
    /// Element types differ.
    #[error("type mismatch: {what}: expected {expected}, got {got}")]
    TypeMismatch {
        /// What was being compared.
        what: String,
        /// The type that was required.
        expected: String,
        /// The type that was given.
        got: String,
    },
    /// A buffer does not have the length the operation needs.
    #[error("buffer size: {what}: need {expected} elements, got {got}")]
    BufferSize {
        /// Which buffer.
        what: String,
        /// Elements required.
        expected: u64,
        /// Elements given.
        got: u64,
    },
    /// A region or index outside the array.
    #[error("out of bounds: {0}")]
    OutOfBounds(String),
    /// A process grid that cannot be used.
    #[error("bad process grid: {0}")]
    BadGrid(String),
    /// A block-cyclic block size of zero.
    #[error("block size must be at least 1 (dimension {dim})")]
    ZeroBlock {
        /// The dimension whose block size was zero.
        dim: usize,
    },
    /// Arithmetic on extents overflowed.
    #[error("overflow: {0}")]
    Overflow(String),
    /// Dimension counts disagree.
    #[error("dimension mismatch: {what}: expected {expected} dimensions, got {got}")]
    DimensionMismatch {
        /// What was being compared.
        what: String,
        /// Dimensions required.
        expected: usize,
        /// Dimensions given.
        got: usize,
    },
    /// MPI set-up or an MPI call failed.
    #[error("MPI: {0}")]
    Mpi(String),
    /// A wait ran out of time.
    #[error("timed out after {seconds:.3} s: {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long we waited.
        seconds: f64,
    },
}

impl Error {
    /// The stable numeric code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::ShapeMismatch { .. } => ErrorCode::ShapeMismatch,
            Error::TypeMismatch { .. } => ErrorCode::TypeMismatch,
            Error::BufferSize { .. } => ErrorCode::BufferSize,
            Error::OutOfBounds(_) => ErrorCode::OutOfBounds,
            Error::BadGrid(_) => ErrorCode::BadGrid,
            Error::ZeroBlock { .. } => ErrorCode::ZeroBlock,
            Error::Overflow(_) => ErrorCode::Overflow,
            Error::DimensionMismatch { .. } => ErrorCode::DimensionMismatch,
            Error::Mpi(_) => ErrorCode::Mpi,
            Error::Timeout { .. } => ErrorCode::Timeout,
        }
    }

    pub(crate) fn overflow(what: impl fmt::Display) -> Error {
        Error::Overflow(what.to_string())
    }
}
