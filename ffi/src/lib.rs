//! The C ABI of juxmem: `libjuxmem.so` / `libjuxmem.a`, header `include/juxmem.h` (generated
//! by cbindgen from this crate), and a Fortran module (`ffi/fortran/juxmem.f90`) over it.
//!
//! Model: rustls-ffi. Opaque handles, every function returns a stable numeric status,
//! out-parameters written only on success, every pointer checked for NULL, every body behind a
//! panic boundary, `_free`/`_close` accept NULL. See the header's preamble for the conventions
//! as C users read them.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)] // every function's safety contract is in the header docs

mod array;
mod context;
mod layout;
mod namespace;
mod status;
mod typed;

pub use array::*;
pub use context::*;
pub use layout::*;
pub use namespace::*;
pub use status::*;
pub use typed::*;

/// Slice from a C pointer and length (`&[]` for length 0, whatever the pointer).
///
/// # Safety
/// `p` must point to `n` valid elements when `n > 0`.
pub(crate) unsafe fn slice<'a, T>(p: *const T, n: usize) -> &'a [T] {
    if n == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(p, n)
    }
}

/// A C string argument as UTF-8.
///
/// # Safety
/// `p` must be a valid NUL-terminated string.
pub(crate) unsafe fn c_str<'a>(
    p: *const std::ffi::c_char,
    what: &str,
) -> Result<&'a str, jx::Error> {
    std::ffi::CStr::from_ptr(p)
        .to_str()
        .map_err(|_| jx::Error::InvalidArgument(format!("{what} is not valid UTF-8")))
}
