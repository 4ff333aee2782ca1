//! Element types an array may hold.

use serde::{Deserialize, Serialize};

/// The element type of an array, as stored in the service and named in the C ABI.
///
/// The numeric values are part of the C ABI (`JUXMEM_TYPE_*`); never renumber them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u32)]
pub enum ElemType {
    /// `i8` / `int8_t`
    I8 = 1,
    /// `u8` / `uint8_t`
    U8 = 2,
    /// `i16` / `int16_t`
    I16 = 3,
    /// `u16` / `uint16_t`
    U16 = 4,
    /// `i32` / `int32_t`
    I32 = 5,
    /// `u32` / `uint32_t`
    U32 = 6,
    /// `i64` / `int64_t`
    I64 = 7,
    /// `u64` / `uint64_t`
    U64 = 8,
    /// `f32` / `float`
    F32 = 9,
    /// `f64` / `double`
    F64 = 10,
}

impl ElemType {
    /// Every element type.
    pub const ALL: [ElemType; 10] = [
        ElemType::I8,
        ElemType::U8,
        ElemType::I16,
        ElemType::U16,
        ElemType::I32,
        ElemType::U32,
        ElemType::I64,
        ElemType::U64,
        ElemType::F32,
        ElemType::F64,
    ];

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            ElemType::I8 | ElemType::U8 => 1,
            ElemType::I16 | ElemType::U16 => 2,
            ElemType::I32 | ElemType::U32 | ElemType::F32 => 4,
            ElemType::I64 | ElemType::U64 | ElemType::F64 => 8,
        }
    }

    /// The Rust name of the type.
    pub fn name(self) -> &'static str {
        match self {
            ElemType::I8 => "i8",
            ElemType::U8 => "u8",
            ElemType::I16 => "i16",
            ElemType::U16 => "u16",
            ElemType::I32 => "i32",
            ElemType::U32 => "u32",
            ElemType::I64 => "i64",
            ElemType::U64 => "u64",
            ElemType::F32 => "f32",
            ElemType::F64 => "f64",
        }
    }
}

impl std::fmt::Display for ElemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A plain-old-data element type.
///
/// # Safety
/// Implementors must have no padding and no invalid bit patterns, so that any byte sequence of
/// `size_of::<Self>()` bytes received from a peer is a valid value.
pub unsafe trait Element:
    Copy + Default + Send + Sync + PartialEq + std::fmt::Debug + 'static
{
    /// The runtime type tag.
    const TYPE: ElemType;
}

/// Asks for transparent huge pages on a large allocation (array data): its first touch then
/// faults 2 MiB at a time instead of 4 KiB, which makes the first write of a fresh working
/// copy or local part several times faster. Only a hint: ignored where huge pages are off.
pub fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    const HUGE: usize = 2 << 20;
    if bytes < 2 * HUGE {
        return;
    }
    // The 2 MiB-aligned range inside the allocation (madvise wants page alignment; huge pages
    // only ever cover aligned 2 MiB ranges anyway).
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + bytes) / HUGE * HUGE;
    if end > start {
        // SAFETY: the range lies within an allocation we own; MADV_HUGEPAGE changes no
        // contents, only how the kernel backs the pages.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

/// `n` zero elements, or a `Capacity` error naming `what` if the process cannot get the memory
/// (never an abort in the allocator). Zeroed pages come from the kernel lazily, as with
/// `vec![0; n]`.
pub fn try_zeroed<T: Element>(n: usize, what: &dyn Fn() -> String) -> crate::Result<Vec<T>> {
    let fail = || {
        crate::Error::Capacity(format!(
            "{}: cannot allocate {n} elements of {} ({} bytes): this process is out of memory",
            what(),
            T::TYPE,
            n.saturating_mul(std::mem::size_of::<T>())
        ))
    };
    if n == 0 || std::mem::size_of::<T>() == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<T>(n).map_err(|_| fail())?;
    // SAFETY: a non-zero-sized layout; the pointer, if not null, is a fresh allocation of the
    // global allocator for `n` `T`s, all zero, which is a valid `T` for every `Element` (plain
    // numbers); `Vec` frees it with the same allocator and layout.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<T>();
        if ptr.is_null() {
            return Err(fail());
        }
        advise_huge_pages(ptr.cast(), layout.size());
        Ok(Vec::from_raw_parts(ptr, n, n))
    }
}

macro_rules! element {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(
            // SAFETY: primitive numeric types have no padding and every bit pattern is valid.
            unsafe impl Element for $t {
                const TYPE: ElemType = ElemType::$v;
            }
        )*
    };
}

element!(i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32, u32 => U32,
         i64 => I64, u64 => U64, f32 => F32, f64 => F64);

/// Views a slice of elements as bytes.
pub fn as_bytes<T: Element>(data: &[T]) -> &[u8] {
    // SAFETY: `Element` types have no padding, so every byte is initialised.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

/// Views a mutable slice of elements as bytes.
pub fn as_bytes_mut<T: Element>(data: &mut [T]) -> &mut [u8] {
    // SAFETY: `Element` types accept any bit pattern, so any bytes written leave valid values.
    unsafe {
        std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(data))
    }
}

/// Runs `$body` with `$T` bound to the unsigned integer type of `$size` bytes, so that data of a
/// runtime element type can be moved with typed copies (elements are plain bits).
#[macro_export]
#[doc(hidden)]
macro_rules! with_elem_size {
    ($size:expr, $T:ident => $body:expr) => {
        match $size {
            1 => {
                type $T = u8;
                $body
            }
            2 => {
                type $T = u16;
                $body
            }
            4 => {
                type $T = u32;
                $body
            }
            8 => {
                type $T = u64;
                $body
            }
            other => unreachable!("no element type of {other} bytes"),
        }
    };
}

/// Runs `$body` with `$T` bound to the Rust type of the runtime element type `$elem` (an
/// [`ElemType`](crate::ElemType)): one place for the dispatch the command and the C ABI need.
#[macro_export]
#[doc(hidden)]
macro_rules! with_elem_type {
    ($elem:expr, $T:ident => $body:expr) => {
        match $elem {
            $crate::ElemType::I8 => {
                #[allow(dead_code)]
                type $T = i8;
                $body
            }
            $crate::ElemType::U8 => {
                #[allow(dead_code)]
                type $T = u8;
                $body
            }
            $crate::ElemType::I16 => {
                #[allow(dead_code)]
                type $T = i16;
                $body
            }
            $crate::ElemType::U16 => {
                #[allow(dead_code)]
                type $T = u16;
                $body
            }
            $crate::ElemType::I32 => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
            $crate::ElemType::U32 => {
                #[allow(dead_code)]
                type $T = u32;
                $body
            }
            $crate::ElemType::I64 => {
                #[allow(dead_code)]
                type $T = i64;
                $body
            }
            $crate::ElemType::U64 => {
                #[allow(dead_code)]
                type $T = u64;
                $body
            }
            $crate::ElemType::F32 => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::ElemType::F64 => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
        }
    };
}
