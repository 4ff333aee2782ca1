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
    /// A network operation failed (connection refused or reset, peer gone).
    Network = 302,
    /// A peer sent something that is not valid protocol (malformed or oversized frame).
    Protocol = 303,
    /// A peer refused the connection (another protocol version, another federation).
    Refused = 304,
    /// No array (or cluster, or member) of that name.
    NotFound = 400,
    /// An array of that name already exists.
    AlreadyExists = 401,
    /// The version asked for is no longer retained.
    VersionGone = 402,
    /// A provider (or the federation) has no room for the data.
    Capacity = 403,
    /// Data whose every copy is gone.
    Lost = 404,
    /// A contact file that no live process answers to.
    Stale = 405,
    /// An operation that needs an acquire was called without one (or with the wrong mode).
    NotAcquired = 406,
    /// Refused because it came from an older placement term or a superseded write epoch: a
    /// failover or a lease expiry happened meanwhile (clients retry against the new placement).
    Fenced = 407,
    /// The array is in use by another process (its write lock or read pins) and cannot be
    /// destroyed now.
    Busy = 408,
    /// A version waited for will not come: the process that produced the array died.
    ProducerGone = 409,
    /// The manager replica asked does not lead its cluster (or no replica leads yet: an
    /// election is under way); clients follow the leader by themselves, so this is seen only
    /// when none could be found in time.
    NotLeader = 410,
}

impl ErrorCode {
    /// Every code, for tables and round trips.
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::InvalidArgument,
        ErrorCode::ShapeMismatch,
        ErrorCode::TypeMismatch,
        ErrorCode::BufferSize,
        ErrorCode::OutOfBounds,
        ErrorCode::BadGrid,
        ErrorCode::ZeroBlock,
        ErrorCode::Overflow,
        ErrorCode::DimensionMismatch,
        ErrorCode::Mpi,
        ErrorCode::Timeout,
        ErrorCode::Network,
        ErrorCode::Protocol,
        ErrorCode::Refused,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::VersionGone,
        ErrorCode::Capacity,
        ErrorCode::Lost,
        ErrorCode::Stale,
        ErrorCode::NotAcquired,
        ErrorCode::Fenced,
        ErrorCode::Busy,
        ErrorCode::ProducerGone,
        ErrorCode::NotLeader,
    ];

    /// The numeric value, as the C ABI returns it.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The code with this numeric value, if any.
    pub fn from_u32(v: u32) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_u32() == v)
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
    /// A network operation failed.
    #[error("network: {0}")]
    Network(String),
    /// Invalid protocol from a peer.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A peer refused us.
    #[error("refused: {0}")]
    Refused(String),
    /// Unknown name.
    #[error("not found: {0}")]
    NotFound(String),
    /// Name already taken.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// Version no longer retained.
    #[error("version gone: {0}")]
    VersionGone(String),
    /// Out of memory budget.
    #[error("capacity: {0}")]
    Capacity(String),
    /// Every copy is gone.
    #[error("lost: {0}")]
    Lost(String),
    /// Stale contact file.
    #[error("stale: {0}")]
    Stale(String),
    /// Missing or wrong acquire.
    #[error("not acquired: {0}")]
    NotAcquired(String),
    /// From an older term or a superseded epoch.
    #[error("fenced: {0}")]
    Fenced(String),
    /// In use by another process.
    #[error("busy: {0}")]
    Busy(String),
    /// The producer of a version waited for died.
    #[error("producer gone: {0}")]
    ProducerGone(String),
    /// A manager replica that does not lead its cluster.
    #[error("not the leader: {0}")]
    NotLeader(String),
    /// An error raised by a remote peer, with its code and full message.
    #[error("{message}")]
    Remote {
        /// The remote error's code.
        code: ErrorCode,
        /// The remote error's message.
        message: String,
    },
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
            Error::Network(_) => ErrorCode::Network,
            Error::Protocol(_) => ErrorCode::Protocol,
            Error::Refused(_) => ErrorCode::Refused,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::VersionGone(_) => ErrorCode::VersionGone,
            Error::Capacity(_) => ErrorCode::Capacity,
            Error::Lost(_) => ErrorCode::Lost,
            Error::Stale(_) => ErrorCode::Stale,
            Error::NotAcquired(_) => ErrorCode::NotAcquired,
            Error::Fenced(_) => ErrorCode::Fenced,
            Error::Busy(_) => ErrorCode::Busy,
            Error::ProducerGone(_) => ErrorCode::ProducerGone,
            Error::NotLeader(_) => ErrorCode::NotLeader,
            Error::Remote { code, .. } => *code,
        }
    }

    /// The message without its kind's prefix: what crosses the wire with the code, from which
    /// the receiver rebuilds the kind (so a message does not gain a prefix per hop).
    pub fn detail(&self) -> String {
        match self {
            Error::InvalidArgument(m)
            | Error::OutOfBounds(m)
            | Error::BadGrid(m)
            | Error::Overflow(m)
            | Error::Mpi(m)
            | Error::Network(m)
            | Error::Protocol(m)
            | Error::Refused(m)
            | Error::NotFound(m)
            | Error::AlreadyExists(m)
            | Error::VersionGone(m)
            | Error::Capacity(m)
            | Error::Lost(m)
            | Error::Stale(m)
            | Error::NotAcquired(m)
            | Error::Fenced(m)
            | Error::Busy(m)
            | Error::ProducerGone(m)
            | Error::NotLeader(m) => m.clone(),
            Error::Remote { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Rebuilds an error from its code and message as carried in a wire reply. The message is
    /// the remote error's full text; structured variants come back as [`Error::Remote`].
    pub fn from_wire(code: u32, message: String) -> Error {
        let m = message;
        match code {
            100 => Error::InvalidArgument(m),
            104 => Error::OutOfBounds(m),
            200 => Error::BadGrid(m),
            202 => Error::Overflow(m),
            300 => Error::Mpi(m),
            302 => Error::Network(m),
            303 => Error::Protocol(m),
            304 => Error::Refused(m),
            400 => Error::NotFound(m),
            401 => Error::AlreadyExists(m),
            402 => Error::VersionGone(m),
            403 => Error::Capacity(m),
            404 => Error::Lost(m),
            405 => Error::Stale(m),
            406 => Error::NotAcquired(m),
            407 => Error::Fenced(m),
            408 => Error::Busy(m),
            409 => Error::ProducerGone(m),
            410 => Error::NotLeader(m),
            other => Error::Remote {
                code: ErrorCode::from_u32(other).unwrap_or(ErrorCode::InvalidArgument),
                message: m,
            },
        }
    }

    pub(crate) fn overflow(what: impl fmt::Display) -> Error {
        Error::Overflow(what.to_string())
    }
}

thread_local! {
    /// Why the last value refused while decoding on this thread was refused: serde's custom
    /// errors lose their message in postcard, and the peer deserves a clear one.
    static DECODE_REFUSAL: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Records why a decoded value is invalid (see [`take_decode_error`]) and returns the message,
/// for `#[serde(try_from)]` conversions.
pub(crate) fn note_decode_error(msg: String) -> String {
    DECODE_REFUSAL.with(|r| *r.borrow_mut() = Some(msg.clone()));
    msg
}

/// The reason recorded by the last refused conversion on this thread, if any (and clears it).
pub(crate) fn take_decode_error() -> Option<String> {
    DECODE_REFUSAL.with(|r| r.borrow_mut().take())
}
