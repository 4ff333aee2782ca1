//! Shared arrays from C: create, open, acquire / release, version waits, regions, local access,
//! listing names.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CString};
use std::rc::Rc;
use std::time::Duration;

use jx::array::{ArrayOptions, Group};
use jx::service::protocol::{FullPolicy, VersionReq};
use jx::{ElemType, Error};

use crate::context::{finalized, juxmem_context, Shared};
use crate::layout::juxmem_layout;
use crate::status::*;
use crate::typed::*;
use crate::{c_str, slice};

/// Which version a read waits for (`JUXMEM_LATEST`, `JUXMEM_AT_LEAST`, `JUXMEM_EXACTLY`).
pub type juxmem_version_mode = u32;
/// The latest released version (0 before any release: zeros).
pub const JUXMEM_LATEST: juxmem_version_mode = 0;
/// The latest released version once it is at least the one given.
pub const JUXMEM_AT_LEAST: juxmem_version_mode = 1;
/// Exactly the version given (a pipeline step).
pub const JUXMEM_EXACTLY: juxmem_version_mode = 2;

/// What a writer does when the retained versions are at the bound.
pub type juxmem_full_policy = u32;
/// Wait until the oldest retained version has been read.
pub const JUXMEM_FULL_BLOCK: juxmem_full_policy = 0;
/// Drop the oldest version even if unread (and count it).
pub const JUXMEM_FULL_DROP_OLDEST: juxmem_full_policy = 1;

/// Longest array name, in bytes (a namespace path of '/'-separated segments).
pub const JUXMEM_MAX_NAME: u32 = 255;

/// How to create an array; fill with juxmem_array_options_default, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct juxmem_array_options {
    /// Clusters holding copies of each block (the home's included). Default 1.
    pub clusters: u32,
    /// Providers per cluster holding copies (the home included). Default 1.
    pub providers_per_cluster: u32,
    /// Released versions retained (at least 2). Default 4.
    pub max_versions: u32,
    /// JUXMEM_FULL_BLOCK (default) or JUXMEM_FULL_DROP_OLDEST.
    pub on_full: juxmem_full_policy,
    /// Non-zero: home the blocks on provider daemons instead of the creating ranks.
    pub homes_on_daemons: u32,
    /// Readers to wait for under JUXMEM_FULL_BLOCK before any opened the array (a consumer
    /// that may start after its producer loses no version). Default 0: writers wait only for
    /// readers that opened the array.
    pub readers: u32,
    /// Comma-separated clusters preferred for copies outside the home's (e.g. "A2"), or NULL.
    pub replicate_to: *const c_char,
}

/// Fills `opts` with the defaults: one copy, 4 versions retained, writers blocked at the bound,
/// homes on the creating ranks.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_options_default(
    opts: *mut juxmem_array_options,
) -> juxmem_status {
    boundary!({
        check_null!(opts);
        *opts = default_options();
        JUXMEM_OK
    })
}

fn default_options() -> juxmem_array_options {
    juxmem_array_options {
        clusters: 1,
        providers_per_cluster: 1,
        max_versions: 4,
        on_full: JUXMEM_FULL_BLOCK,
        homes_on_daemons: 0,
        readers: 0,
        replicate_to: std::ptr::null(),
    }
}

/// A shared array as this process's group sees it (opaque).
pub struct juxmem_array {
    inner: Rc<RefCell<Option<AnyArray>>>,
    session: Shared,
    ndims: usize,
    elem: ElemType,
}

/// A region held by one process (opaque): locked for read-modify-write, or a version held
/// for reading.
pub struct juxmem_region {
    inner: Option<Region>,
    session: Shared,
    elem: ElemType,
}

enum Region {
    Lock(AnyLock),
    Read(AnyRead),
}

/// A list of names of arrays or namespaces (opaque).
pub struct juxmem_names {
    pub(crate) names: Vec<CString>,
}

fn timeout_of(seconds: f64, default: Duration) -> Duration {
    if seconds.is_finite() && seconds > 0.0 {
        Duration::from_secs_f64(seconds.min(1e9))
    } else {
        default
    }
}

fn version_req(mode: juxmem_version_mode, version: u64) -> Result<VersionReq, Error> {
    match mode {
        JUXMEM_LATEST => Ok(VersionReq::Latest),
        JUXMEM_AT_LEAST => Ok(VersionReq::AtLeast(version)),
        JUXMEM_EXACTLY => Ok(VersionReq::Exactly(version)),
        other => Err(Error::InvalidArgument(format!(
            "unknown version mode {other} (use JUXMEM_LATEST, JUXMEM_AT_LEAST or JUXMEM_EXACTLY)"
        ))),
    }
}

/// The inclusive C corners `[lo, hi]` as the core's half-open `[lo, hi + 1)`.
unsafe fn corners(
    ndims: usize,
    lo: *const u64,
    hi: *const u64,
) -> Result<(Vec<u64>, Vec<u64>), Error> {
    let lo = slice(lo, ndims).to_vec();
    let hi_inclusive = slice(hi, ndims);
    let mut hi = Vec::with_capacity(ndims);
    for (d, (&l, &h)) in lo.iter().zip(hi_inclusive).enumerate() {
        if h < l {
            return Err(Error::OutOfBounds(format!(
                "region corner hi[{d}] = {h} is below lo[{d}] = {l} (hi is inclusive)"
            )));
        }
        hi.push(
            h.checked_add(1)
                .ok_or_else(|| Error::Overflow("region corner".into()))?,
        );
    }
    Ok((lo, hi))
}

/// Elements a buffer for `[lo, hi)` with leading dimensions `ld` spans (GA's rule).
fn buffer_len(lo: &[u64], hi: &[u64], ld: Option<&[u64]>) -> Result<usize, Error> {
    let ext: Vec<u64> = lo.iter().zip(hi).map(|(&l, &h)| h - l).collect();
    if ext.contains(&0) {
        return Ok(0);
    }
    let mut stride = 1u64;
    let mut len = 1u64;
    for i in (0..ext.len()).rev() {
        len = len
            .checked_add(
                (ext[i] - 1)
                    .checked_mul(stride)
                    .ok_or_else(|| Error::Overflow("buffer".into()))?,
            )
            .ok_or_else(|| Error::Overflow("buffer".into()))?;
        if i > 0 {
            let step = ld.map_or(ext[i], |l| l[i - 1].max(ext[i]));
            stride = stride
                .checked_mul(step)
                .ok_or_else(|| Error::Overflow("buffer".into()))?;
        }
    }
    usize::try_from(len).map_err(|_| Error::Overflow("buffer".into()))
}

/// Half-open corners, leading dimensions, and the elements the buffer must hold.
type RegionArgs<'a> = (Vec<u64>, Vec<u64>, Option<&'a [u64]>, usize);

/// A C region and its buffer's leading dimensions.
unsafe fn region_args<'a>(
    ndims: usize,
    lo: *const u64,
    hi: *const u64,
    ld: *const u64,
) -> Result<RegionArgs<'a>, Error> {
    let (lo, hi) = corners(ndims, lo, hi)?;
    let ld = (!ld.is_null()).then(|| slice(ld, ndims.saturating_sub(1)));
    let len = buffer_len(&lo, &hi, ld)?;
    Ok((lo, hi, ld, len))
}

fn check_aligned<T>(p: *const c_void) -> Result<(), Error> {
    if (p as usize) % std::mem::align_of::<T>() != 0 {
        return Err(Error::InvalidArgument(format!(
            "buffer {p:?} is not aligned for its element type ({} bytes)",
            std::mem::align_of::<T>()
        )));
    }
    Ok(())
}

impl juxmem_array {
    /// Runs `f` on the live array, or reports that the context was finalized.
    fn with(&self, f: impl FnOnce(&mut AnyArray) -> juxmem_status) -> juxmem_status {
        match self.inner.borrow_mut().as_mut() {
            Some(a) => f(a),
            None => finalized(),
        }
    }
}

unsafe fn make_array(
    ctx: *mut juxmem_context,
    name: *const c_char,
    elem_type: juxmem_type,
    layout: *const juxmem_layout,
    out: *mut *mut juxmem_array,
    build: impl FnOnce(
        &jx::Federation,
        &'static dyn Group,
        &str,
        ElemType,
        jx::Layout,
    ) -> Result<AnyArray, Error>,
) -> juxmem_status {
    let name = tri!(c_str(name, "the array name"));
    let elem = tri!(crate::typed::elem_type(elem_type));
    let layout = (*layout).layout.clone();
    let ndims = layout.ndims();
    let session = (*ctx).session.clone();
    (*ctx).with(|s| {
        // SAFETY: the communicator lives in the session until juxmem_finalize, which drops
        // every array (under this same lock) before freeing it.
        let group: &'static dyn Group =
            std::mem::transmute::<&dyn Group, &'static dyn Group>(s.comm.as_ref());
        let array = tri!(build(&s.fed, group, name, elem, layout));
        let inner = Rc::new(RefCell::new(Some(array)));
        s.arrays.retain(|w| w.strong_count() > 0);
        s.arrays.push(Rc::downgrade(&inner));
        *out = Box::into_raw(Box::new(juxmem_array {
            inner,
            session,
            ndims,
            elem,
        }));
        JUXMEM_OK
    })
}

/// Creates array `name` (a namespace path such as "forecast/day1/t") of `type` stored in
/// `layout` (collective over the context's communicator, whose rank i is grid rank i and, by
/// default, the home of block i). `opts` may be NULL for the defaults.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_create(
    ctx: *mut juxmem_context,
    name: *const c_char,
    elem_type: juxmem_type,
    layout: *const juxmem_layout,
    opts: *const juxmem_array_options,
    out: *mut *mut juxmem_array,
) -> juxmem_status {
    boundary!({
        check_null!(ctx, name, layout, out);
        let make = tri!(options_of(opts));
        make_array(
            ctx,
            name,
            elem_type,
            layout,
            out,
            |fed, group, name, elem, layout| {
                let opts = make(layout);
                jx::with_elem_type!(elem, T => fed.create::<T, dyn Group>(group, name, opts).map(AnyArray::from))
            },
        )
    })
}

/// The array options `opts` (NULL: the defaults) ask for, for a given layout.
unsafe fn options_of(
    opts: *const juxmem_array_options,
) -> Result<impl FnOnce(jx::Layout) -> ArrayOptions, Error> {
    let o = if opts.is_null() {
        default_options()
    } else {
        *opts
    };
    let replicate: Vec<String> = if o.replicate_to.is_null() {
        vec![]
    } else {
        c_str(o.replicate_to, "replicate_to")?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let policy = match o.on_full {
        JUXMEM_FULL_BLOCK => FullPolicy::Block,
        JUXMEM_FULL_DROP_OLDEST => FullPolicy::DropOldest,
        other => {
            return Err(Error::InvalidArgument(format!(
                "unknown on_full policy {other}"
            )))
        }
    };
    Ok(move |layout| {
        let mut opts = ArrayOptions::new(layout)
            .redundancy(o.clusters, o.providers_per_cluster)
            .retention(o.max_versions, policy)
            .expect_readers(o.readers)
            .replicate_to(replicate);
        if o.homes_on_daemons != 0 {
            opts = opts.homes_on_daemons();
        }
        opts
    })
}

/// Restores the checkpoint in directory `dir` (written by juxmem_array_checkpoint) as a new
/// array `name` of `type` in `layout` (any layout of the checkpoint's shape) with `opts` (NULL:
/// the defaults), collective. Each process reads the block files its part needs, each checked
/// against the manifest's size and CRC-32 first; the array's version 1 holds the checkpointed
/// data, released. A missing manifest is JUXMEM_E_NOT_FOUND; a torn or corrupt file
/// JUXMEM_E_INVALID_ARGUMENT naming it, and no array is left behind.
#[no_mangle]
pub unsafe extern "C" fn juxmem_restore(
    ctx: *mut juxmem_context,
    dir: *const c_char,
    name: *const c_char,
    elem_type: juxmem_type,
    layout: *const juxmem_layout,
    opts: *const juxmem_array_options,
    out: *mut *mut juxmem_array,
) -> juxmem_status {
    boundary!({
        check_null!(ctx, dir, name, layout, out);
        let dir = std::path::PathBuf::from(tri!(c_str(dir, "dir")));
        let make = tri!(options_of(opts));
        make_array(
            ctx,
            name,
            elem_type,
            layout,
            out,
            |fed, group, name, elem, layout| {
                let opts = make(layout);
                jx::with_elem_type!(elem, T => fed.restore::<T, dyn Group>(group, &dir, name, opts).map(AnyArray::from))
            },
        )
    })
}

/// Writes the version this handle reads (after juxmem_array_acquire_read) to directory `dir`
/// as a checkpoint (collective): one file per process (its local part) and a manifest, written
/// last; writers may go on meanwhile. The version written goes to `*version` (may be NULL).
/// The format is documented in docs/CHECKPOINT.md.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_checkpoint(
    array: *mut juxmem_array,
    dir: *const c_char,
    version: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(array, dir);
        let dir = std::path::PathBuf::from(tri!(c_str(dir, "dir")));
        (*array).with(|a| {
            each_array!(a, x, T => {
                let v = tri!(x.checkpoint(&dir));
                if !version.is_null() {
                    *version = v;
                }
                JUXMEM_OK
            })
        })
    })
}

/// Opens array `name` with this group's `layout` (collective). `type` must be the array's
/// element type (JUXMEM_E_TYPE_MISMATCH otherwise) and `layout` its global shape. With
/// `timeout_seconds` > 0, waits that long for the array to be created; with 0, an unknown name
/// fails at once with JUXMEM_E_NOT_FOUND.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_open(
    ctx: *mut juxmem_context,
    name: *const c_char,
    elem_type: juxmem_type,
    layout: *const juxmem_layout,
    timeout_seconds: f64,
    out: *mut *mut juxmem_array,
) -> juxmem_status {
    boundary!({
        check_null!(ctx, name, layout, out);
        let wait = timeout_of(timeout_seconds, Duration::ZERO);
        make_array(
            ctx,
            name,
            elem_type,
            layout,
            out,
            |fed, group, name, elem, layout| jx::with_elem_type!(elem, T => fed.open_wait::<T, dyn Group>(group, name, layout, wait).map(AnyArray::from)),
        )
    })
}

/// Closes an array handle (not collective; a write in progress is aborted). Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_close(array: *mut juxmem_array) {
    if array.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let a = Box::from_raw(array);
        a.inner.borrow_mut().take();
    }));
}

/// Destroys the array (collective, as Global Arrays' GA_Destroy) and frees the handle, which
/// must not be used again whatever the outcome: the name is free again, every copy is dropped
/// and the memory placed for it released. JUXMEM_E_BUSY while another process holds the
/// array's write lock or read pins. Accepts NULL (JUXMEM_E_NULL_PARAMETER).
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_destroy(array: *mut juxmem_array) -> juxmem_status {
    boundary!({
        check_null!(array);
        let a = Box::from_raw(array);
        let taken = a.inner.borrow_mut().take();
        match taken {
            Some(x) => each_array!(x, x, T => status_of(x.destroy())),
            None => finalized(),
        }
    })
}

/// Takes the array's write lock (collective), waiting at most `timeout_seconds` (<= 0: the
/// default, JUXMEM_TIMEOUT). The local part then holds the latest version and may be written.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_acquire(
    array: *mut juxmem_array,
    timeout_seconds: f64,
) -> juxmem_status {
    acquire(array, timeout_seconds, false)
}

/// The write acquires, loading the latest version or (`overwrite`) not.
unsafe fn acquire(
    array: *mut juxmem_array,
    timeout_seconds: f64,
    overwrite: bool,
) -> juxmem_status {
    boundary!({
        check_null!(array);
        (*array).with(|a| {
            each_array!(a, x, T => {
                let t = timeout_of(timeout_seconds, x.default_timeout());
                status_of(if overwrite {
                    x.acquire_overwrite_timeout(t)
                } else {
                    x.acquire_timeout(t)
                })
            })
        })
    })
}

/// Takes the write lock (collective) for a writer that overwrites its whole local part before
/// releasing (a time step recomputing its field): the latest version is not loaded, and the
/// local part's contents are unspecified until written. Timeout as `juxmem_array_acquire`.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_acquire_overwrite(
    array: *mut juxmem_array,
    timeout_seconds: f64,
) -> juxmem_status {
    acquire(array, timeout_seconds, true)
}

/// Publishes the local parts as a new version (collective); every replica is current when
/// this returns. The new version is written to `version` unless it is NULL.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_release(
    array: *mut juxmem_array,
    version: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(array);
        (*array).with(|a| {
            each_array!(a, x, T => {

                let v = tri!(x.release());
                if !version.is_null() {
                    *version = v;
                }
                JUXMEM_OK
            })
        })
    })
}

/// Waits (collective, at most `timeout_seconds`; <= 0: the default) for a version: the latest
/// (`JUXMEM_LATEST`), the latest once at least `version` (`JUXMEM_AT_LEAST`), or exactly
/// `version` (`JUXMEM_EXACTLY`); then the local part holds it in this handle's layout. The
/// version read is written to `version_out` (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_acquire_read(
    array: *mut juxmem_array,
    mode: juxmem_version_mode,
    version: u64,
    timeout_seconds: f64,
    version_out: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(array);
        let req = tri!(version_req(mode, version));
        (*array).with(|a| {
            each_array!(a, x, T => {

                let t = timeout_of(timeout_seconds, x.default_timeout());
                let v = tri!(x.acquire_read_timeout(req, t));
                if !version_out.is_null() {
                    *version_out = v;
                }
                JUXMEM_OK
            })
        })
    })
}

/// Ends a read (collective).
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_release_read(array: *mut juxmem_array) -> juxmem_status {
    boundary!({
        check_null!(array);
        (*array).with(|a| each_array!(a, x, T => status_of(x.release_read())))
    })
}

/// The version held (read) or being written from (write).
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_version(
    array: *mut juxmem_array,
    version: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(array, version);
        (*array).with(|a| {
            each_array!(a, x, T => {

                match x.version() {
                    Some(v) => {
                        *version = v;
                        JUXMEM_OK
                    }
                    None => fail(JUXMEM_E_NOT_ACQUIRED, &format!("{} is not acquired", x.name())),
                }
            })
        })
    })
}

unsafe fn local_access(
    array: *mut juxmem_array,
    writable: bool,
    data: *mut *mut c_void,
    local_shape: *mut u64,
    global_offset: *mut u64,
) -> juxmem_status {
    (*array).with(|a| {
        each_array!(a, x, T => {
            let (p, _len) = tri!(x.local_raw(writable));
            let layout = x.layout().clone();
            let rank = x.rank();
            let shape = tri!(layout.local_shape(rank));
            let first = if shape.contains(&0) { vec![0; shape.len()] } else { tri!(layout.global_index(rank, 0)) };

            *data = p.cast();
            std::ptr::copy_nonoverlapping(shape.as_ptr(), local_shape, shape.len());
            if !global_offset.is_null() {
                std::ptr::copy_nonoverlapping(first.as_ptr(), global_offset, first.len());
            }
            JUXMEM_OK
        })
    })
}

/// Direct read access to this process's local part (after an acquire or acquire_read, and
/// after a release until the next acquire): its address, its local shape (`ndims` values, the
/// part is row-major) and, unless NULL, the global index of its first element (`ndims`
/// values; zeros for an empty part). Valid until the next acquire, release, release_read or
/// close of this handle. Never write through it: it may be a released, shared version.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_local_read(
    array: *mut juxmem_array,
    data: *mut *const c_void,
    local_shape: *mut u64,
    global_offset: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(array, data, local_shape);
        local_access(array, false, data.cast(), local_shape, global_offset)
    })
}

/// Direct write access to this process's local part, under a write acquire (otherwise
/// JUXMEM_E_NOT_ACQUIRED). As juxmem_array_local_read otherwise. Until the release, the
/// pointer has the block to itself: other processes' one-sided get and put of this block in
/// the same epoch fail with JUXMEM_E_BUSY (this process's own get and put still work; do not
/// write through the pointer while another thread is inside a juxmem call on this array).
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_local_write(
    array: *mut juxmem_array,
    data: *mut *mut c_void,
    local_shape: *mut u64,
    global_offset: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(array, data, local_shape);
        local_access(array, true, data, local_shape, global_offset)
    })
}

/// Reads the global region [lo, hi] (inclusive, `ndims` values each) into `buf` (row-major,
/// leading dimensions `ld`: `ndims - 1` values, or NULL for compact), under any acquire. One
/// process alone.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_get(
    array: *mut juxmem_array,
    lo: *const u64,
    hi: *const u64,
    buf: *mut c_void,
    ld: *const u64,
) -> juxmem_status {
    boundary!({
        check_null!(array, lo, hi, buf);
        let (lo, hi, ld, len) = tri!(region_args((*array).ndims, lo, hi, ld));
        (*array).with(|a| {
            each_array!(a, x, T => {
                tri!(check_aligned::<T>(buf));
                let b = std::slice::from_raw_parts_mut(buf.cast::<T>(), len);
                status_of(x.get_ld(&lo, &hi, b, ld))
            })
        })
    })
}

/// Reads the global region [lo, hi] (inclusive) into `buf` like juxmem_array_get, but with no
/// acquire, lock or pin (a relaxed read, for monitoring and visualisation): a committed version
/// that was the latest at most `max_staleness_seconds` ago (0: the latest now). It never waits
/// for a writer and pins nothing (an opened array is a registered reader: writers under
/// JUXMEM_FULL_BLOCK keep versions until its reads pass them). The version read goes to
/// `*version` (may be NULL). One process alone.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_get_relaxed(
    array: *mut juxmem_array,
    lo: *const u64,
    hi: *const u64,
    buf: *mut c_void,
    ld: *const u64,
    max_staleness_seconds: f64,
    version: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(array, lo, hi, buf);
        if !(max_staleness_seconds >= 0.0 && max_staleness_seconds.is_finite()) {
            return status_of(Err(jx::Error::InvalidArgument(format!(
                "max_staleness_seconds {max_staleness_seconds}: give a finite number of seconds, \
                 0 or more"
            ))));
        }
        let (lo, hi, ld, len) = tri!(region_args((*array).ndims, lo, hi, ld));
        let staleness = std::time::Duration::from_secs_f64(max_staleness_seconds);
        (*array).with(|a| {
            each_array!(a, x, T => {
                tri!(check_aligned::<T>(buf));
                let b = std::slice::from_raw_parts_mut(buf.cast::<T>(), len);
                let v = tri!(x.get_relaxed_ld(&lo, &hi, b, ld, staleness));
                if !version.is_null() {
                    *version = v;
                }
                JUXMEM_OK
            })
        })
    })
}

/// Writes `buf` into the global region [lo, hi] (inclusive), under a write acquire. One
/// process alone. As juxmem_array_get otherwise.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_put(
    array: *mut juxmem_array,
    lo: *const u64,
    hi: *const u64,
    buf: *const c_void,
    ld: *const u64,
) -> juxmem_status {
    boundary!({
        check_null!(array, lo, hi, buf);
        let (lo, hi, ld, len) = tri!(region_args((*array).ndims, lo, hi, ld));
        (*array).with(|a| {
            each_array!(a, x, T => {
                tri!(check_aligned::<T>(buf));
                let b = slice(buf.cast::<T>(), len);
                status_of(x.put_ld(&lo, &hi, b, ld))
            })
        })
    })
}

/// A non-blocking get, put or acquire_read in flight (opaque): complete it with juxmem_wait
/// (or, for a get or put, juxmem_test), which frees it once it has ended.
pub struct juxmem_request {
    inner: Pending,
}

enum Pending {
    Transfer(jx::NbRequest<()>),
    /// An acquire_read under way on this array (completed by its handle, collectively).
    Read(Rc<RefCell<Option<AnyArray>>>),
}

impl Pending {
    /// Whether this rank's part has ended.
    fn ended(&self) -> bool {
        match self {
            Pending::Transfer(r) => r.test(),
            Pending::Read(a) => match a.borrow().as_ref() {
                Some(a) => each_array!(a, x, T => x.acquire_read_test()),
                None => true, // closed: nothing to wait for
            },
        }
    }

    /// Waits at most `wait` for this rank's part; whether it has ended.
    fn ended_within(&self, wait: Duration) -> bool {
        match self {
            Pending::Transfer(r) => r.ended_within(wait),
            Pending::Read(_) => {
                let deadline = std::time::Instant::now() + wait;
                while !self.ended() {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                true
            }
        }
    }

    /// Completes it: the outcome (collective for an acquire_read).
    fn complete(self) -> juxmem_status {
        match self {
            Pending::Transfer(r) => status_of(r.wait()),
            Pending::Read(a) => match a.borrow_mut().as_mut() {
                Some(a) => each_array!(a, x, T => status_of(x.acquire_read_wait().map(|_| ()))),
                None => fail(
                    JUXMEM_E_NOT_ACQUIRED,
                    "the array handle of this acquire_read was closed before it completed",
                ),
            },
        }
    }
}

unsafe fn start_request(
    request: *mut *mut juxmem_request,
    start: impl FnOnce() -> Result<jx::NbRequest<()>, Error>,
) -> juxmem_status {
    let r = tri!(start());
    *request = Box::into_raw(Box::new(juxmem_request {
        inner: Pending::Transfer(r),
    }));
    JUXMEM_OK
}

/// Starts juxmem_array_acquire_read and returns at once with `*request` (collective; P3's
/// non-blocking bind): each rank waits for the version and fetches its local part while the
/// caller computes. Complete it with juxmem_wait, called on every rank (collective: the
/// version read is then held as after juxmem_array_acquire_read; juxmem_array_version gives
/// it). juxmem_test only tells whether this rank's part has arrived (`*done` = 1, the request
/// kept). With more than one rank the mode must be JUXMEM_EXACTLY. Until it completes, the
/// array refuses other acquires; closing the array ends it (juxmem_wait then returns
/// JUXMEM_E_NOT_ACQUIRED).
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_acquire_read_nb(
    array: *mut juxmem_array,
    mode: juxmem_version_mode,
    version: u64,
    timeout_seconds: f64,
    request: *mut *mut juxmem_request,
) -> juxmem_status {
    boundary!({
        check_null!(request);
        *request = std::ptr::null_mut();
        check_null!(array);
        let req = tri!(version_req(mode, version));
        let started = (*array).with(|a| {
            each_array!(a, x, T => {
                let t = timeout_of(timeout_seconds, x.default_timeout());
                status_of(x.acquire_read_nb_timeout(req, t))
            })
        });
        if started == JUXMEM_OK {
            *request = Box::into_raw(Box::new(juxmem_request {
                inner: Pending::Read((*array).inner.clone()),
            }));
        }
        started
    })
}

/// Starts reading the global region [lo, hi] (inclusive) into `buf` like juxmem_array_get, and
/// returns at once with `*request` (as Global Arrays' NGA_NbGet). `buf` belongs to the
/// transfer until the request has ended (juxmem_wait or juxmem_test says so) or the array
/// handle has moved on (release_read, release, close, destroy: each first waits for the
/// handle's requests, and a request not started yet when its handle closes ends with
/// JUXMEM_E_NOT_ACQUIRED); until then the caller neither reads, writes nor frees it. Bad
/// arguments are refused here (`*request` is then NULL). One process alone.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_get_nb(
    array: *mut juxmem_array,
    lo: *const u64,
    hi: *const u64,
    buf: *mut c_void,
    ld: *const u64,
    request: *mut *mut juxmem_request,
) -> juxmem_status {
    boundary!({
        check_null!(request);
        *request = std::ptr::null_mut();
        check_null!(array, lo, hi, buf);
        let (lo, hi, ld, len) = tri!(region_args((*array).ndims, lo, hi, ld));
        (*array).with(|a| {
            each_array!(a, x, T => {
                tri!(check_aligned::<T>(buf));
                start_request(request, || x.get_nb_raw(&lo, &hi, buf.cast::<T>(), len, ld))
            })
        })
    })
}

/// Starts writing `buf` into the global region [lo, hi] (inclusive) like juxmem_array_put,
/// under a write acquire, and returns at once with `*request` (as NGA_NbPut). The caller
/// does not write `buf` until the request has ended; the release waits for every put of its
/// write epoch, and one that failed without being completed by juxmem_wait/juxmem_test fails
/// the release (nothing is published). One process alone.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_put_nb(
    array: *mut juxmem_array,
    lo: *const u64,
    hi: *const u64,
    buf: *const c_void,
    ld: *const u64,
    request: *mut *mut juxmem_request,
) -> juxmem_status {
    boundary!({
        check_null!(request);
        *request = std::ptr::null_mut();
        check_null!(array, lo, hi, buf);
        let (lo, hi, ld, len) = tri!(region_args((*array).ndims, lo, hi, ld));
        (*array).with(|a| {
            each_array!(a, x, T => {
                tri!(check_aligned::<T>(buf));
                start_request(request, || x.put_nb_raw(&lo, &hi, buf.cast::<T>(), len, ld))
            })
        })
    })
}

/// Waits for `*request` to end, at most `timeout_seconds` (<= 0: until it ends; every transfer
/// is bounded by the federation's timeout). Once it has ended, returns its status, frees it and
/// sets `*request` to NULL. If it is still under way at the timeout: JUXMEM_E_TIMEOUT with
/// `*request` unchanged (wait again); so a JUXMEM_E_TIMEOUT with `*request` NULL is the
/// operation's own. A NULL `*request` (completed already) returns JUXMEM_OK, as MPI_Wait on
/// MPI_REQUEST_NULL. For an acquire_read request this is collective once every rank's part
/// has arrived (call it on every rank). A request must be completed: one never waited for
/// (or tested to its end) is leaked.
#[no_mangle]
pub unsafe extern "C" fn juxmem_wait(
    request: *mut *mut juxmem_request,
    timeout_seconds: f64,
) -> juxmem_status {
    boundary!({
        check_null!(request);
        if (*request).is_null() {
            return JUXMEM_OK;
        }
        if timeout_seconds > 0.0 {
            let wait = timeout_of(timeout_seconds, Duration::ZERO);
            if !(**request).inner.ended_within(wait) {
                return fail(
                    JUXMEM_E_TIMEOUT,
                    &format!(
                        "the request is still under way after {timeout_seconds} s (wait again)"
                    ),
                );
            }
        }
        let done = Box::from_raw(*request);
        *request = std::ptr::null_mut();
        done.inner.complete()
    })
}

/// Whether `*request` has ended: if so, `*done` = 1 and its status is returned, the request
/// freed and `*request` set to NULL; otherwise `*done` = 0 and JUXMEM_OK. A NULL `*request`
/// counts as ended (JUXMEM_OK). An acquire_read request is only looked at (local): `*done`
/// says whether this rank's part has arrived, and juxmem_wait completes it.
#[no_mangle]
pub unsafe extern "C" fn juxmem_test(
    request: *mut *mut juxmem_request,
    done: *mut i32,
) -> juxmem_status {
    boundary!({
        check_null!(request, done);
        if (*request).is_null() {
            *done = 1;
            return JUXMEM_OK;
        }
        if !(**request).inner.ended() {
            *done = 0;
            return JUXMEM_OK;
        }
        *done = 1;
        if let Pending::Read(_) = (**request).inner {
            return JUXMEM_OK;
        }
        let r = Box::from_raw(*request);
        *request = std::ptr::null_mut();
        r.inner.complete()
    })
}

/// Locks the array for this process alone to read-modify-write the region [lo, hi]
/// (inclusive), waiting at most `timeout_seconds` (<= 0: the default). Use juxmem_region_get
/// / juxmem_region_put, then juxmem_region_release (publishes) or juxmem_region_free (aborts).
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_lock_region(
    array: *mut juxmem_array,
    lo: *const u64,
    hi: *const u64,
    timeout_seconds: f64,
    out: *mut *mut juxmem_region,
) -> juxmem_status {
    boundary!({
        check_null!(array, lo, hi, out);
        let (lo, hi) = tri!(corners((*array).ndims, lo, hi));
        let (session, elem) = ((*array).session.clone(), (*array).elem);
        (*array).with(|a| {
            each_array!(a, x, T => {
                let t = timeout_of(timeout_seconds, x.default_timeout());
                let l = tri!(x.acquire_region(&lo, &hi, t));
                let r = Region::Lock(AnyLock::from(l));

                *out = Box::into_raw(Box::new(juxmem_region { inner: Some(r), session, elem }));
                JUXMEM_OK
            })
        })
    })
}

/// Waits (at most `timeout_seconds`) for a version, as juxmem_array_acquire_read, and holds it
/// for this process alone to read the region [lo, hi] (inclusive) with juxmem_region_get.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_read_region(
    array: *mut juxmem_array,
    lo: *const u64,
    hi: *const u64,
    mode: juxmem_version_mode,
    version: u64,
    timeout_seconds: f64,
    out: *mut *mut juxmem_region,
) -> juxmem_status {
    boundary!({
        check_null!(array, lo, hi, out);
        let (lo, hi) = tri!(corners((*array).ndims, lo, hi));
        let req = tri!(version_req(mode, version));
        let (session, elem) = ((*array).session.clone(), (*array).elem);
        (*array).with(|a| {
            each_array!(a, x, T => {
                let t = timeout_of(timeout_seconds, x.default_timeout());
                let r = tri!(x.acquire_region_read(&lo, &hi, req, t));

                *out = Box::into_raw(Box::new(juxmem_region { inner: Some(Region::Read(AnyRead::from(r))), session, elem }));
                JUXMEM_OK
            })
        })
    })
}

unsafe fn region_len(r: &Region, ld: Option<&[u64]>) -> Result<usize, Error> {
    let (lo, hi) = match r {
        Region::Lock(l) => {
            each_lock!(l, x, T => { let (a, b) = x.region(); (a.to_vec(), b.to_vec()) })
        }
        Region::Read(l) => {
            each_read!(l, x, T => { let (a, b) = x.region(); (a.to_vec(), b.to_vec()) })
        }
    };
    buffer_len(&lo, &hi, ld)
}

impl juxmem_region {
    fn live(&mut self) -> Result<&mut Region, juxmem_status> {
        if self.session.borrow().is_none() {
            return Err(finalized());
        }
        self.inner
            .as_mut()
            .ok_or_else(|| fail(JUXMEM_E_NOT_ACQUIRED, "the region was released"))
    }
}

/// Reads the region (row-major into `buf`, leading dimensions `ld` or NULL).
#[no_mangle]
pub unsafe extern "C" fn juxmem_region_get(
    region: *mut juxmem_region,
    buf: *mut c_void,
    ld: *const u64,
) -> juxmem_status {
    boundary!({
        check_null!(region, buf);
        let r = match (*region).live() {
            Ok(r) => r,
            Err(s) => return s,
        };
        let n = match r {
            Region::Lock(l) => each_lock!(l, x, T => x.region().0.len()),
            Region::Read(l) => each_read!(l, x, T => x.region().0.len()),
        };
        let ld = (!ld.is_null()).then(|| slice(ld, n.saturating_sub(1)));
        let len = tri!(region_len(r, ld));
        match r {
            Region::Lock(l) => each_lock!(l, x, T => {
                tri!(check_aligned::<T>(buf));
                status_of(x.get_ld(std::slice::from_raw_parts_mut(buf.cast::<T>(), len), ld))
            }),
            Region::Read(l) => each_read!(l, x, T => {
                tri!(check_aligned::<T>(buf));
                status_of(x.get_ld(std::slice::from_raw_parts_mut(buf.cast::<T>(), len), ld))
            }),
        }
    })
}

/// Writes the locked region from `buf` (JUXMEM_E_NOT_ACQUIRED on a read region).
#[no_mangle]
pub unsafe extern "C" fn juxmem_region_put(
    region: *mut juxmem_region,
    buf: *const c_void,
    ld: *const u64,
) -> juxmem_status {
    boundary!({
        check_null!(region, buf);
        let r = match (*region).live() {
            Ok(r) => r,
            Err(s) => return s,
        };
        let Region::Lock(l) = r else {
            return fail(
                JUXMEM_E_NOT_ACQUIRED,
                "juxmem_region_put on a region held for reading",
            );
        };
        let n = each_lock!(l, x, T => x.region().0.len());
        let ld = (!ld.is_null()).then(|| slice(ld, n.saturating_sub(1)));
        let len = tri!(region_len(r, ld));
        let Region::Lock(l) = r else { unreachable!() };
        each_lock!(l, x, T => {
            tri!(check_aligned::<T>(buf));
            status_of(x.put_ld(slice(buf.cast::<T>(), len), ld))
        })
    })
}

/// Ends a region and frees it: a write lock publishes what was written as a new version
/// (written to `version` unless NULL); a read lets its version go. The handle is freed even
/// on failure.
#[no_mangle]
pub unsafe extern "C" fn juxmem_region_release(
    region: *mut juxmem_region,
    version: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(region);
        let mut r = Box::from_raw(region);
        if r.session.borrow().is_none() {
            return finalized();
        }
        let Some(inner) = r.inner.take() else {
            return fail(JUXMEM_E_NOT_ACQUIRED, "the region was released");
        };
        let v = match inner {
            Region::Lock(l) => each_lock!(l, x, T => tri!(x.release())),
            Region::Read(l) => each_read!(l, x, T => {

                let v = x.version();
                tri!(x.release());
                v
            }),
        };
        let _ = r.elem;
        if !version.is_null() {
            *version = v;
        }
        JUXMEM_OK
    })
}

/// Frees a region without publishing (a write lock is aborted). Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn juxmem_region_free(region: *mut juxmem_region) {
    if region.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(region))));
}

/// The names matching `pattern` across the federation (`*` matches any run of characters; a
/// pattern ending in '/' lists that namespace; "" or "*" lists everything), sorted.
#[no_mangle]
pub unsafe extern "C" fn juxmem_list(
    ctx: *mut juxmem_context,
    pattern: *const c_char,
    out: *mut *mut juxmem_names,
) -> juxmem_status {
    boundary!({
        check_null!(ctx, pattern, out);
        let pattern = tri!(c_str(pattern, "the pattern"));
        (*ctx).with(|s| names_out(s.fed.list(pattern), out))
    })
}

/// The names of the arrays of the whole federation matching every condition given (sorted):
/// the name `pattern` (as juxmem_list; NULL for all), the element type `elem_type` (0 for
/// any), the shape `shape` of `ndims` extents (NULL for any), and the `nattrs` attributes
/// `keys[i]` = `values[i]` (each array must carry all of them).
#[no_mangle]
pub unsafe extern "C" fn juxmem_search(
    ctx: *mut juxmem_context,
    pattern: *const c_char,
    elem_type: juxmem_type,
    ndims: u32,
    shape: *const u64,
    nattrs: u32,
    keys: *const *const c_char,
    values: *const *const c_char,
    out: *mut *mut juxmem_names,
) -> juxmem_status {
    boundary!({
        check_null!(ctx, out);
        let mut q = jx::service::protocol::Query {
            pattern: if pattern.is_null() {
                "*".into()
            } else {
                tri!(c_str(pattern, "the pattern")).to_string()
            },
            ..Default::default()
        };
        if elem_type != 0 {
            q.elem = Some(tri!(crate::typed::elem_type(elem_type)));
        }
        if !shape.is_null() {
            q.shape = Some(slice(shape, ndims as usize).to_vec());
        }
        if nattrs > 0 {
            check_null!(keys, values);
            for i in 0..nattrs as usize {
                let k = tri!(c_str(*keys.add(i), "an attribute key"));
                let v = tri!(c_str(*values.add(i), "an attribute value"));
                q.attributes.insert(k.to_string(), v.to_string());
            }
        }
        (*ctx).with(|s| names_out(s.fed.search(&q), out))
    })
}

/// Sets attribute `key` to `value` (user metadata: units, forecast cycle, model...; found by
/// juxmem_search), under a write acquire (collective); it takes effect at once. A key has 1 to
/// 64 letters, digits, '_', '-' or '.'; a value at most 1024 bytes on one line.
#[no_mangle]
pub unsafe extern "C" fn juxmem_array_set_attribute(
    array: *mut juxmem_array,
    key: *const c_char,
    value: *const c_char,
) -> juxmem_status {
    boundary!({
        check_null!(array, key, value);
        let key = tri!(c_str(key, "key"));
        let value = tri!(c_str(value, "value"));
        (*array).with(|a| {
            each_array!(a, x, T => {
                status_of(x.set_attributes(&[(key, value)], &[]))
            })
        })
    })
}

/// Hands the names of `found` to C as a new list in `*out`.
unsafe fn names_out(
    found: Result<Vec<jx::service::protocol::NameEntry>, Error>,
    out: *mut *mut juxmem_names,
) -> juxmem_status {
    let names = tri!(found)
        .into_iter()
        .map(|e| CString::new(e.name).unwrap_or_default())
        .collect();
    *out = Box::into_raw(Box::new(juxmem_names { names }));
    JUXMEM_OK
}

/// Number of names in a list.
#[no_mangle]
pub unsafe extern "C" fn juxmem_names_count(
    names: *const juxmem_names,
    count: *mut usize,
) -> juxmem_status {
    boundary!({
        check_null!(names, count);
        *count = (*names).names.len();
        JUXMEM_OK
    })
}

/// Name `i` of a list (valid until the list is freed).
#[no_mangle]
pub unsafe extern "C" fn juxmem_names_get(
    names: *const juxmem_names,
    i: usize,
    name: *mut *const c_char,
) -> juxmem_status {
    boundary!({
        check_null!(names, name);
        let list = &(*names).names;
        match list.get(i) {
            Some(n) => {
                *name = n.as_ptr();
                JUXMEM_OK
            }
            None => fail(
                JUXMEM_E_OUT_OF_BOUNDS,
                &format!("name {i} of a list of {}", list.len()),
            ),
        }
    })
}

/// Frees a list of names. Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn juxmem_names_free(names: *mut juxmem_names) {
    if !names.is_null() {
        drop(Box::from_raw(names));
    }
}

/// Element size in bytes of a type code (0 for an unknown code).
#[no_mangle]
pub extern "C" fn juxmem_type_size(elem_type: juxmem_type) -> usize {
    crate::typed::elem_type(elem_type).map_or(0, |t| t.size())
}
