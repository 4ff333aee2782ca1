//! Namespaces: create, list, destroy (with everything under them), checkpoint and restore.

use std::ffi::{c_char, c_int, CString};

use jx::array::Group;

use crate::array::juxmem_names;
use crate::c_str;
use crate::context::juxmem_context;
use crate::status::*;

/// Creates the namespace `name` (its record kept by this process's cluster; arrays are then
/// created under it as "name/..."). JUXMEM_E_ALREADY_EXISTS while an array or a namespace of
/// that name exists in the federation. One process: call it on one rank.
#[no_mangle]
pub unsafe extern "C" fn juxmem_namespace_create(
    ctx: *mut juxmem_context,
    name: *const c_char,
) -> juxmem_status {
    boundary!({
        check_null!(ctx, name);
        let name = tri!(c_str(name, "the namespace name"));
        (*ctx).with(|s| status_of(s.fed.create_namespace(name)))
    })
}

/// Destroys the namespace `name` with every array and namespace under it, in every cluster.
/// A namespace holding anything needs `confirm` != 0: without it the call fails with
/// JUXMEM_E_BUSY, saying what it holds, and nothing changes. Arrays in use by other processes
/// are not destroyed (JUXMEM_E_BUSY, naming them); the namespace then stays until a later
/// call can finish. One process: call it on one rank.
#[no_mangle]
pub unsafe extern "C" fn juxmem_namespace_destroy(
    ctx: *mut juxmem_context,
    name: *const c_char,
    confirm: c_int,
) -> juxmem_status {
    boundary!({
        check_null!(ctx, name);
        let name = tri!(c_str(name, "the namespace name"));
        (*ctx).with(|s| status_of(s.fed.destroy_namespace(name, confirm != 0).map(|_| ())))
    })
}

/// The namespaces of the whole federation matching `pattern` ('*' any run; a pattern ending
/// in '/' every path under it; NULL: all), as a new list in `*out` (read it with
/// juxmem_names_count and juxmem_names_get, free it with juxmem_names_free).
#[no_mangle]
pub unsafe extern "C" fn juxmem_namespaces(
    ctx: *mut juxmem_context,
    pattern: *const c_char,
    out: *mut *mut juxmem_names,
) -> juxmem_status {
    boundary!({
        check_null!(ctx, out);
        let pattern = if pattern.is_null() {
            "*"
        } else {
            tri!(c_str(pattern, "the pattern"))
        };
        (*ctx).with(|s| {
            let found = tri!(s.fed.namespaces(pattern));
            let names = found
                .into_iter()
                .map(|n| CString::new(n.name).unwrap_or_default())
                .collect();
            *out = Box::into_raw(Box::new(juxmem_names { names }));
            JUXMEM_OK
        })
    })
}

/// Writes the latest released version of every array under the namespace `name` to the
/// directory `dir` (collective over the context's communicator): one array checkpoint per
/// array, in the subdirectory of its path relative to the namespace, then a manifest listing
/// them and the namespaces under `name` (docs/CHECKPOINT.md). Arrays with no released version
/// are left out. JUXMEM_E_NOT_FOUND if nothing is under `name` and no namespace has that name.
#[no_mangle]
pub unsafe extern "C" fn juxmem_namespace_checkpoint(
    ctx: *mut juxmem_context,
    name: *const c_char,
    dir: *const c_char,
) -> juxmem_status {
    boundary!({
        check_null!(ctx, name, dir);
        let name = tri!(c_str(name, "the namespace name"));
        let dir = std::path::PathBuf::from(tri!(c_str(dir, "dir")));
        (*ctx).with(|s| {
            let group: &dyn Group = s.comm.as_ref();
            status_of(s.fed.checkpoint_namespace(group, name, &dir).map(|_| ()))
        })
    })
}

/// Restores the namespace checkpoint in `dir` as the new namespace `name` (collective over the
/// context's communicator): its namespaces, then each array in a block layout over the
/// communicator, version 1 holding the checkpointed data. A missing, torn or corrupt file
/// fails (naming it) and what was restored so far is destroyed again: never a partial
/// restore. The restored arrays' names go to `*out` as a new list (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn juxmem_namespace_restore(
    ctx: *mut juxmem_context,
    dir: *const c_char,
    name: *const c_char,
    out: *mut *mut juxmem_names,
) -> juxmem_status {
    boundary!({
        check_null!(ctx, dir, name);
        let name = tri!(c_str(name, "the namespace name"));
        let dir = std::path::PathBuf::from(tri!(c_str(dir, "dir")));
        (*ctx).with(|s| {
            let group: &dyn Group = s.comm.as_ref();
            let restored = tri!(s.fed.restore_namespace(group, &dir, name));
            if !out.is_null() {
                let names = restored
                    .into_iter()
                    .map(|n| CString::new(n).unwrap_or_default())
                    .collect();
                *out = Box::into_raw(Box::new(juxmem_names { names }));
            }
            JUXMEM_OK
        })
    })
}
