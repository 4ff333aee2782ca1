//! Element types as C sees them, and the handles generic over them.

use jx::array::{Group, RegionLock, RegionRead, SharedArray};
use jx::ElemType;

/// An element type (`JUXMEM_TYPE_*`).
pub type juxmem_type = u32;

/// `int8_t`
pub const JUXMEM_TYPE_INT8: juxmem_type = 1;
/// `uint8_t`
pub const JUXMEM_TYPE_UINT8: juxmem_type = 2;
/// `int16_t`
pub const JUXMEM_TYPE_INT16: juxmem_type = 3;
/// `uint16_t`
pub const JUXMEM_TYPE_UINT16: juxmem_type = 4;
/// `int32_t`
pub const JUXMEM_TYPE_INT32: juxmem_type = 5;
/// `uint32_t`
pub const JUXMEM_TYPE_UINT32: juxmem_type = 6;
/// `int64_t`
pub const JUXMEM_TYPE_INT64: juxmem_type = 7;
/// `uint64_t`
pub const JUXMEM_TYPE_UINT64: juxmem_type = 8;
/// `float`
pub const JUXMEM_TYPE_FLOAT: juxmem_type = 9;
/// `double`
pub const JUXMEM_TYPE_DOUBLE: juxmem_type = 10;

/// The core type of a C type code.
pub(crate) fn elem_type(t: juxmem_type) -> Result<ElemType, jx::Error> {
    Ok(match t {
        JUXMEM_TYPE_INT8 => ElemType::I8,
        JUXMEM_TYPE_UINT8 => ElemType::U8,
        JUXMEM_TYPE_INT16 => ElemType::I16,
        JUXMEM_TYPE_UINT16 => ElemType::U16,
        JUXMEM_TYPE_INT32 => ElemType::I32,
        JUXMEM_TYPE_UINT32 => ElemType::U32,
        JUXMEM_TYPE_INT64 => ElemType::I64,
        JUXMEM_TYPE_UINT64 => ElemType::U64,
        JUXMEM_TYPE_FLOAT => ElemType::F32,
        JUXMEM_TYPE_DOUBLE => ElemType::F64,
        other => {
            return Err(jx::Error::InvalidArgument(format!(
                "unknown element type code {other} (use a JUXMEM_TYPE_* constant)"
            )))
        }
    })
}

/// An array handle of any element type (its group lives in the context's session).
pub(crate) enum AnyArray {
    I8(SharedArray<'static, i8, dyn Group>),
    U8(SharedArray<'static, u8, dyn Group>),
    I16(SharedArray<'static, i16, dyn Group>),
    U16(SharedArray<'static, u16, dyn Group>),
    I32(SharedArray<'static, i32, dyn Group>),
    U32(SharedArray<'static, u32, dyn Group>),
    I64(SharedArray<'static, i64, dyn Group>),
    U64(SharedArray<'static, u64, dyn Group>),
    F32(SharedArray<'static, f32, dyn Group>),
    F64(SharedArray<'static, f64, dyn Group>),
}

/// Runs `$body` with `$x` bound to the AnyArray handle and `$T` to its element type.
macro_rules! each_array {
    ($v:expr, $x:ident, $T:ident => $body:expr) => {
        match $v {
            $crate::typed::AnyArray::I8($x) => {
                #[allow(dead_code)]
                type $T = i8;
                $body
            }
            $crate::typed::AnyArray::U8($x) => {
                #[allow(dead_code)]
                type $T = u8;
                $body
            }
            $crate::typed::AnyArray::I16($x) => {
                #[allow(dead_code)]
                type $T = i16;
                $body
            }
            $crate::typed::AnyArray::U16($x) => {
                #[allow(dead_code)]
                type $T = u16;
                $body
            }
            $crate::typed::AnyArray::I32($x) => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
            $crate::typed::AnyArray::U32($x) => {
                #[allow(dead_code)]
                type $T = u32;
                $body
            }
            $crate::typed::AnyArray::I64($x) => {
                #[allow(dead_code)]
                type $T = i64;
                $body
            }
            $crate::typed::AnyArray::U64($x) => {
                #[allow(dead_code)]
                type $T = u64;
                $body
            }
            $crate::typed::AnyArray::F32($x) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::typed::AnyArray::F64($x) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
        }
    };
}
pub(crate) use each_array;

impl From<SharedArray<'static, i8, dyn Group>> for AnyArray {
    fn from(h: SharedArray<'static, i8, dyn Group>) -> Self {
        AnyArray::I8(h)
    }
}
impl From<SharedArray<'static, u8, dyn Group>> for AnyArray {
    fn from(h: SharedArray<'static, u8, dyn Group>) -> Self {
        AnyArray::U8(h)
    }
}
impl From<SharedArray<'static, i16, dyn Group>> for AnyArray {
    fn from(h: SharedArray<'static, i16, dyn Group>) -> Self {
        AnyArray::I16(h)
    }
}
impl From<SharedArray<'static, u16, dyn Group>> for AnyArray {
    fn from(h: SharedArray<'static, u16, dyn Group>) -> Self {
        AnyArray::U16(h)
    }
}
impl From<SharedArray<'static, i32, dyn Group>> for AnyArray {
    fn from(h: SharedArray<'static, i32, dyn Group>) -> Self {
        AnyArray::I32(h)
    }
}
impl From<SharedArray<'static, u32, dyn Group>> for AnyArray {
    fn from(h: SharedArray<'static, u32, dyn Group>) -> Self {
        AnyArray::U32(h)
    }
}
impl From<SharedArray<'static, i64, dyn Group>> for AnyArray {
    fn from(h: SharedArray<'static, i64, dyn Group>) -> Self {
        AnyArray::I64(h)
    }
}
impl From<SharedArray<'static, u64, dyn Group>> for AnyArray {
    fn from(h: SharedArray<'static, u64, dyn Group>) -> Self {
        AnyArray::U64(h)
    }
}
impl From<SharedArray<'static, f32, dyn Group>> for AnyArray {
    fn from(h: SharedArray<'static, f32, dyn Group>) -> Self {
        AnyArray::F32(h)
    }
}
impl From<SharedArray<'static, f64, dyn Group>> for AnyArray {
    fn from(h: SharedArray<'static, f64, dyn Group>) -> Self {
        AnyArray::F64(h)
    }
}

/// A region write lock of any element type.
pub(crate) enum AnyLock {
    I8(RegionLock<i8>),
    U8(RegionLock<u8>),
    I16(RegionLock<i16>),
    U16(RegionLock<u16>),
    I32(RegionLock<i32>),
    U32(RegionLock<u32>),
    I64(RegionLock<i64>),
    U64(RegionLock<u64>),
    F32(RegionLock<f32>),
    F64(RegionLock<f64>),
}

/// Runs `$body` with `$x` bound to the AnyLock handle and `$T` to its element type.
macro_rules! each_lock {
    ($v:expr, $x:ident, $T:ident => $body:expr) => {
        match $v {
            $crate::typed::AnyLock::I8($x) => {
                #[allow(dead_code)]
                type $T = i8;
                $body
            }
            $crate::typed::AnyLock::U8($x) => {
                #[allow(dead_code)]
                type $T = u8;
                $body
            }
            $crate::typed::AnyLock::I16($x) => {
                #[allow(dead_code)]
                type $T = i16;
                $body
            }
            $crate::typed::AnyLock::U16($x) => {
                #[allow(dead_code)]
                type $T = u16;
                $body
            }
            $crate::typed::AnyLock::I32($x) => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
            $crate::typed::AnyLock::U32($x) => {
                #[allow(dead_code)]
                type $T = u32;
                $body
            }
            $crate::typed::AnyLock::I64($x) => {
                #[allow(dead_code)]
                type $T = i64;
                $body
            }
            $crate::typed::AnyLock::U64($x) => {
                #[allow(dead_code)]
                type $T = u64;
                $body
            }
            $crate::typed::AnyLock::F32($x) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::typed::AnyLock::F64($x) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
        }
    };
}
pub(crate) use each_lock;

impl From<RegionLock<i8>> for AnyLock {
    fn from(h: RegionLock<i8>) -> Self {
        AnyLock::I8(h)
    }
}
impl From<RegionLock<u8>> for AnyLock {
    fn from(h: RegionLock<u8>) -> Self {
        AnyLock::U8(h)
    }
}
impl From<RegionLock<i16>> for AnyLock {
    fn from(h: RegionLock<i16>) -> Self {
        AnyLock::I16(h)
    }
}
impl From<RegionLock<u16>> for AnyLock {
    fn from(h: RegionLock<u16>) -> Self {
        AnyLock::U16(h)
    }
}
impl From<RegionLock<i32>> for AnyLock {
    fn from(h: RegionLock<i32>) -> Self {
        AnyLock::I32(h)
    }
}
impl From<RegionLock<u32>> for AnyLock {
    fn from(h: RegionLock<u32>) -> Self {
        AnyLock::U32(h)
    }
}
impl From<RegionLock<i64>> for AnyLock {
    fn from(h: RegionLock<i64>) -> Self {
        AnyLock::I64(h)
    }
}
impl From<RegionLock<u64>> for AnyLock {
    fn from(h: RegionLock<u64>) -> Self {
        AnyLock::U64(h)
    }
}
impl From<RegionLock<f32>> for AnyLock {
    fn from(h: RegionLock<f32>) -> Self {
        AnyLock::F32(h)
    }
}
impl From<RegionLock<f64>> for AnyLock {
    fn from(h: RegionLock<f64>) -> Self {
        AnyLock::F64(h)
    }
}

/// A region read of any element type.
pub(crate) enum AnyRead {
    I8(RegionRead<i8>),
    U8(RegionRead<u8>),
    I16(RegionRead<i16>),
    U16(RegionRead<u16>),
    I32(RegionRead<i32>),
    U32(RegionRead<u32>),
    I64(RegionRead<i64>),
    U64(RegionRead<u64>),
    F32(RegionRead<f32>),
    F64(RegionRead<f64>),
}

/// Runs `$body` with `$x` bound to the AnyRead handle and `$T` to its element type.
macro_rules! each_read {
    ($v:expr, $x:ident, $T:ident => $body:expr) => {
        match $v {
            $crate::typed::AnyRead::I8($x) => {
                #[allow(dead_code)]
                type $T = i8;
                $body
            }
            $crate::typed::AnyRead::U8($x) => {
                #[allow(dead_code)]
                type $T = u8;
                $body
            }
            $crate::typed::AnyRead::I16($x) => {
                #[allow(dead_code)]
                type $T = i16;
                $body
            }
            $crate::typed::AnyRead::U16($x) => {
                #[allow(dead_code)]
                type $T = u16;
                $body
            }
            $crate::typed::AnyRead::I32($x) => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
            $crate::typed::AnyRead::U32($x) => {
                #[allow(dead_code)]
                type $T = u32;
                $body
            }
            $crate::typed::AnyRead::I64($x) => {
                #[allow(dead_code)]
                type $T = i64;
                $body
            }
            $crate::typed::AnyRead::U64($x) => {
                #[allow(dead_code)]
                type $T = u64;
                $body
            }
            $crate::typed::AnyRead::F32($x) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::typed::AnyRead::F64($x) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
        }
    };
}
pub(crate) use each_read;

impl From<RegionRead<i8>> for AnyRead {
    fn from(h: RegionRead<i8>) -> Self {
        AnyRead::I8(h)
    }
}
impl From<RegionRead<u8>> for AnyRead {
    fn from(h: RegionRead<u8>) -> Self {
        AnyRead::U8(h)
    }
}
impl From<RegionRead<i16>> for AnyRead {
    fn from(h: RegionRead<i16>) -> Self {
        AnyRead::I16(h)
    }
}
impl From<RegionRead<u16>> for AnyRead {
    fn from(h: RegionRead<u16>) -> Self {
        AnyRead::U16(h)
    }
}
impl From<RegionRead<i32>> for AnyRead {
    fn from(h: RegionRead<i32>) -> Self {
        AnyRead::I32(h)
    }
}
impl From<RegionRead<u32>> for AnyRead {
    fn from(h: RegionRead<u32>) -> Self {
        AnyRead::U32(h)
    }
}
impl From<RegionRead<i64>> for AnyRead {
    fn from(h: RegionRead<i64>) -> Self {
        AnyRead::I64(h)
    }
}
impl From<RegionRead<u64>> for AnyRead {
    fn from(h: RegionRead<u64>) -> Self {
        AnyRead::U64(h)
    }
}
impl From<RegionRead<f32>> for AnyRead {
    fn from(h: RegionRead<f32>) -> Self {
        AnyRead::F32(h)
    }
}
impl From<RegionRead<f64>> for AnyRead {
    fn from(h: RegionRead<f64>) -> Self {
        AnyRead::F64(h)
    }
}
