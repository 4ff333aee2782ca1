//! Status codes, error messages and the panic boundary.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

use jx::Error;

/// A status code: `JUXMEM_OK` or one of the `JUXMEM_E_*` codes. The values are stable: they
/// are the core library's `ErrorCode` values plus a few codes of the C ABI itself (5xx).
pub type juxmem_status = u32;

/// Success.
pub const JUXMEM_OK: juxmem_status = 0;
/// An argument is invalid.
pub const JUXMEM_E_INVALID_ARGUMENT: juxmem_status = 100;
/// Shapes differ (for example an array opened with another global shape).
pub const JUXMEM_E_SHAPE_MISMATCH: juxmem_status = 101;
/// Element types differ.
pub const JUXMEM_E_TYPE_MISMATCH: juxmem_status = 102;
/// A buffer has the wrong size.
pub const JUXMEM_E_BUFFER_SIZE: juxmem_status = 103;
/// An index or region lies outside the array.
pub const JUXMEM_E_OUT_OF_BOUNDS: juxmem_status = 104;
/// A process grid cannot be used (zero extent, wrong process count).
pub const JUXMEM_E_BAD_GRID: juxmem_status = 200;
/// A block size of zero.
pub const JUXMEM_E_ZERO_BLOCK: juxmem_status = 201;
/// Extents overflow 64 bits.
pub const JUXMEM_E_OVERFLOW: juxmem_status = 202;
/// Dimension counts disagree.
pub const JUXMEM_E_DIMENSION_MISMATCH: juxmem_status = 203;
/// MPI set-up or an MPI call failed.
pub const JUXMEM_E_MPI: juxmem_status = 300;
/// A wait ran out of time.
pub const JUXMEM_E_TIMEOUT: juxmem_status = 301;
/// A network operation failed.
pub const JUXMEM_E_NETWORK: juxmem_status = 302;
/// A peer sent invalid protocol.
pub const JUXMEM_E_PROTOCOL: juxmem_status = 303;
/// A peer refused the connection (other protocol version or federation).
pub const JUXMEM_E_REFUSED: juxmem_status = 304;
/// No array (or cluster) of that name.
pub const JUXMEM_E_NOT_FOUND: juxmem_status = 400;
/// An array of that name exists already.
pub const JUXMEM_E_ALREADY_EXISTS: juxmem_status = 401;
/// The version asked for is no longer retained.
pub const JUXMEM_E_VERSION_GONE: juxmem_status = 402;
/// No provider has room for the data.
pub const JUXMEM_E_CAPACITY: juxmem_status = 403;
/// Every copy of some data is gone.
pub const JUXMEM_E_LOST: juxmem_status = 404;
/// A contact file that no live manager answers to.
pub const JUXMEM_E_STALE: juxmem_status = 405;
/// The operation needs an acquire (or another kind of acquire).
pub const JUXMEM_E_NOT_ACQUIRED: juxmem_status = 406;
/// Refused after a failover or a lease expiry (an older placement term or a superseded write).
pub const JUXMEM_E_FENCED: juxmem_status = 407;
/// The array is in use by another process (write lock, read pins): not destroyed.
pub const JUXMEM_E_BUSY: juxmem_status = 408;
/// A version waited for will not come: the process that produced the array died.
pub const JUXMEM_E_PRODUCER_GONE: juxmem_status = 409;
/// No manager replica of the cluster leads (an election did not end in time).
pub const JUXMEM_E_NOT_LEADER: juxmem_status = 410;
/// A required pointer argument was NULL.
pub const JUXMEM_E_NULL_PARAMETER: juxmem_status = 500;
/// juxmem failed internally (a bug): the operation did not complete.
pub const JUXMEM_E_PANIC: juxmem_status = 501;
/// The context was finalized.
pub const JUXMEM_E_FINALIZED: juxmem_status = 502;

/// (code, name, description), for juxmem_strerror and the tests.
pub(crate) const STATUSES: &[(juxmem_status, &CStr)] = &[
    (JUXMEM_OK, c"JUXMEM_OK: success"),
    (
        JUXMEM_E_INVALID_ARGUMENT,
        c"JUXMEM_E_INVALID_ARGUMENT: an argument is invalid",
    ),
    (
        JUXMEM_E_SHAPE_MISMATCH,
        c"JUXMEM_E_SHAPE_MISMATCH: the shapes differ",
    ),
    (
        JUXMEM_E_TYPE_MISMATCH,
        c"JUXMEM_E_TYPE_MISMATCH: the element types differ",
    ),
    (
        JUXMEM_E_BUFFER_SIZE,
        c"JUXMEM_E_BUFFER_SIZE: a buffer has the wrong size",
    ),
    (
        JUXMEM_E_OUT_OF_BOUNDS,
        c"JUXMEM_E_OUT_OF_BOUNDS: an index or region lies outside the array",
    ),
    (
        JUXMEM_E_BAD_GRID,
        c"JUXMEM_E_BAD_GRID: the process grid cannot be used",
    ),
    (
        JUXMEM_E_ZERO_BLOCK,
        c"JUXMEM_E_ZERO_BLOCK: a block size of zero",
    ),
    (
        JUXMEM_E_OVERFLOW,
        c"JUXMEM_E_OVERFLOW: extents overflow 64 bits",
    ),
    (
        JUXMEM_E_DIMENSION_MISMATCH,
        c"JUXMEM_E_DIMENSION_MISMATCH: dimension counts disagree",
    ),
    (
        JUXMEM_E_MPI,
        c"JUXMEM_E_MPI: MPI set-up or an MPI call failed",
    ),
    (
        JUXMEM_E_TIMEOUT,
        c"JUXMEM_E_TIMEOUT: a wait ran out of time",
    ),
    (
        JUXMEM_E_NETWORK,
        c"JUXMEM_E_NETWORK: a network operation failed",
    ),
    (
        JUXMEM_E_PROTOCOL,
        c"JUXMEM_E_PROTOCOL: a peer sent invalid protocol",
    ),
    (
        JUXMEM_E_REFUSED,
        c"JUXMEM_E_REFUSED: a peer refused the connection",
    ),
    (JUXMEM_E_NOT_FOUND, c"JUXMEM_E_NOT_FOUND: no such name"),
    (
        JUXMEM_E_ALREADY_EXISTS,
        c"JUXMEM_E_ALREADY_EXISTS: the name is taken",
    ),
    (
        JUXMEM_E_VERSION_GONE,
        c"JUXMEM_E_VERSION_GONE: the version is no longer retained",
    ),
    (
        JUXMEM_E_CAPACITY,
        c"JUXMEM_E_CAPACITY: no provider has room for the data",
    ),
    (
        JUXMEM_E_LOST,
        c"JUXMEM_E_LOST: every copy of the data is gone",
    ),
    (JUXMEM_E_STALE, c"JUXMEM_E_STALE: a stale contact file"),
    (
        JUXMEM_E_NOT_ACQUIRED,
        c"JUXMEM_E_NOT_ACQUIRED: the operation needs an acquire",
    ),
    (
        JUXMEM_E_FENCED,
        c"JUXMEM_E_FENCED: refused after a failover or a lease expiry",
    ),
    (
        JUXMEM_E_BUSY,
        c"JUXMEM_E_BUSY: the array is in use by another process",
    ),
    (
        JUXMEM_E_PRODUCER_GONE,
        c"JUXMEM_E_PRODUCER_GONE: the producer of the array died",
    ),
    (
        JUXMEM_E_NOT_LEADER,
        c"JUXMEM_E_NOT_LEADER: no manager replica of the cluster leads",
    ),
    (
        JUXMEM_E_NULL_PARAMETER,
        c"JUXMEM_E_NULL_PARAMETER: a required pointer was NULL",
    ),
    (
        JUXMEM_E_PANIC,
        c"JUXMEM_E_PANIC: internal failure (a bug in juxmem)",
    ),
    (
        JUXMEM_E_FINALIZED,
        c"JUXMEM_E_FINALIZED: the context was finalized",
    ),
];

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records the calling thread's last error message.
pub(crate) fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Turns a result into a status, recording the message on failure.
pub(crate) fn status_of(r: Result<(), Error>) -> juxmem_status {
    match r {
        Ok(()) => JUXMEM_OK,
        Err(e) => fail(e.code().as_u32(), &e.to_string()),
    }
}

/// Records `msg` and returns `code`.
pub(crate) fn fail(code: juxmem_status, msg: &str) -> juxmem_status {
    set_last_error(msg);
    code
}

/// Runs an `extern "C"` body, turning a panic into `JUXMEM_E_PANIC` (never unwinding into C).
macro_rules! boundary {
    ($body:block) => {{
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            || -> $crate::status::juxmem_status { $body },
        )) {
            Ok(s) => s,
            Err(p) => {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                $crate::status::fail(
                    $crate::status::JUXMEM_E_PANIC,
                    &format!("internal failure: {what}"),
                )
            }
        }
    }};
}
pub(crate) use boundary;

/// Returns `JUXMEM_E_NULL_PARAMETER` from the enclosing function if any pointer is NULL.
macro_rules! check_null {
    ($($p:ident),+) => {
        $(
            if $p.is_null() {
                return $crate::status::fail(
                    $crate::status::JUXMEM_E_NULL_PARAMETER,
                    concat!("argument `", stringify!($p), "` is NULL"),
                );
            }
        )+
    };
}
pub(crate) use check_null;

/// Returns early with the status of an error.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $crate::status::status_of(Err(e)),
        }
    };
}
pub(crate) use tri;

/// The name and description of a status code, as a static NUL-terminated string
/// ("JUXMEM_E_UNKNOWN" for a code that does not exist). Never NULL.
#[no_mangle]
pub extern "C" fn juxmem_strerror(code: juxmem_status) -> *const c_char {
    STATUSES.iter().find(|(c, _)| *c == code).map_or(
        c"JUXMEM_E_UNKNOWN: no such status code".as_ptr(),
        |(_, s)| s.as_ptr(),
    )
}

/// The message of the calling thread's last failure ("" if none): what failed and why, with
/// names and sizes. Valid until the next failing juxmem call on this thread. Never NULL.
#[no_mangle]
pub extern "C" fn juxmem_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The juxmem version, as a static string such as "0.1.0". Never NULL.
#[no_mangle]
pub extern "C" fn juxmem_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jx::ErrorCode;

    #[test]
    fn every_core_error_code_has_the_same_value_and_a_description() {
        for code in ErrorCode::ALL {
            let v = code.as_u32();
            let (_, text) = STATUSES
                .iter()
                .find(|(c, _)| *c == v)
                .unwrap_or_else(|| panic!("{code:?} missing"));
            assert!(text.to_str().unwrap().starts_with("JUXMEM_E_"), "{code:?}");
        }
        // Codes are unique.
        let mut seen: Vec<u32> = STATUSES.iter().map(|(c, _)| *c).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), STATUSES.len());
    }
}
