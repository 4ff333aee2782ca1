//! Joining and leaving the federation from C and Fortran.

use std::cell::RefCell;
use std::os::raw::c_int;
use std::rc::{Rc, Weak};

use jx::array::{Federation, Group};
use jx::config::Config;
use mpi::ffi;
use mpi::raw::FromRaw;
use mpi::topology::SimpleCommunicator;

use crate::status::*;
use crate::typed::AnyArray;

/// An MPI communicator (from `mpi.h`).
pub type MPI_Comm = ffi::MPI_Comm;
/// A Fortran MPI handle (from `mpi.h`).
pub type MPI_Fint = c_int;

/// What a context holds until it is finalized.
pub(crate) struct Session {
    /// Arrays opened through this context: finalize closes them first.
    pub(crate) arrays: Vec<Weak<RefCell<Option<AnyArray>>>>,
    pub(crate) fed: Federation,
    /// juxmem's own duplicate of the communicator given to juxmem_init (freed last).
    pub(crate) comm: Box<SimpleCommunicator>,
}

/// The session of a context, shared with the arrays made through it. Handles are used from
/// one thread at a time (MPI calls are funneled through the caller's thread), hence `Rc`.
pub(crate) type Shared = Rc<RefCell<Option<Session>>>;

/// A process's membership in the federation (opaque). Made by `juxmem_init`, ended by
/// `juxmem_finalize`, freed by `juxmem_context_free`.
pub struct juxmem_context {
    pub(crate) session: Shared,
}

pub(crate) fn finalized() -> juxmem_status {
    fail(
        JUXMEM_E_FINALIZED,
        "juxmem_finalize was called on this context: it (and its arrays) can no longer be used",
    )
}

impl juxmem_context {
    /// Runs `f` with the live session, or reports that the context was finalized.
    pub(crate) fn with(&self, f: impl FnOnce(&mut Session) -> juxmem_status) -> juxmem_status {
        match self.session.borrow_mut().as_mut() {
            Some(s) => f(s),
            None => finalized(),
        }
    }
}

unsafe fn init(comm: MPI_Comm, out: *mut *mut juxmem_context) -> juxmem_status {
    let mut flag: c_int = 0;
    ffi::MPI_Initialized(&mut flag);
    if flag == 0 {
        return fail(
            JUXMEM_E_MPI,
            "MPI is not initialised: call MPI_Init_thread(..., MPI_THREAD_FUNNELED, ...) before juxmem_init",
        );
    }
    if comm == ffi::RSMPI_COMM_NULL {
        return fail(
            JUXMEM_E_INVALID_ARGUMENT,
            "the communicator is MPI_COMM_NULL",
        );
    }
    let mut level: c_int = 0;
    ffi::MPI_Query_thread(&mut level);
    if level < ffi::RSMPI_THREAD_FUNNELED {
        return fail(
            JUXMEM_E_MPI,
            "MPI was initialised with MPI_THREAD_SINGLE; juxmem runs service threads (which never \
             call MPI) and needs at least MPI_THREAD_FUNNELED: use \
             MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided)",
        );
    }
    let mut dup = ffi::RSMPI_COMM_NULL;
    if ffi::MPI_Comm_dup(comm, &mut dup) != ffi::MPI_SUCCESS as c_int {
        return fail(JUXMEM_E_MPI, "MPI_Comm_dup failed");
    }
    // SAFETY: a live intra-communicator we own, not world/self.
    let comm = Box::new(SimpleCommunicator::from_raw(dup));
    let rank = Group::rank(comm.as_ref());
    let cfg = tri!(Config::from_env());
    let fed = tri!(Federation::join_as(cfg, &format!("rank{rank}")));
    let ctx = Box::new(juxmem_context {
        session: Rc::new(RefCell::new(Some(Session {
            arrays: Vec::new(),
            fed,
            comm,
        }))),
    });
    *out = Box::into_raw(ctx);
    JUXMEM_OK
}

/// Joins the federation for the processes of `comm` (collective over `comm`; MPI must be
/// initialised with at least MPI_THREAD_FUNNELED). Settings come from the JUXMEM_*
/// environment variables (JUXMEM_CLUSTER, JUXMEM_FEDERATION_DIR, ...). juxmem works on its
/// own duplicate of `comm`.
#[no_mangle]
pub unsafe extern "C" fn juxmem_init(
    comm: MPI_Comm,
    out: *mut *mut juxmem_context,
) -> juxmem_status {
    boundary!({
        check_null!(out);
        init(comm, out)
    })
}

/// `juxmem_init` for a Fortran communicator handle (an INTEGER such as MPI_COMM_WORLD).
#[no_mangle]
pub unsafe extern "C" fn juxmem_init_f(
    comm: MPI_Fint,
    out: *mut *mut juxmem_context,
) -> juxmem_status {
    boundary!({
        check_null!(out);
        let mut flag: c_int = 0;
        ffi::MPI_Initialized(&mut flag);
        if flag == 0 {
            return fail(
                JUXMEM_E_MPI,
                "MPI is not initialised: call MPI_Init_thread before juxmem_init",
            );
        }
        init(ffi::RSMPI_Comm_f2c(comm), out)
    })
}

/// Leaves the federation (collective): closes the context's arrays (aborting writes in
/// progress), moves the blocks this process is home of to their replicas, frees juxmem's
/// communicator. Call it before MPI_Finalize. The context stays allocated so that later
/// calls report JUXMEM_E_FINALIZED; free it with juxmem_context_free.
#[no_mangle]
pub unsafe extern "C" fn juxmem_finalize(ctx: *mut juxmem_context) -> juxmem_status {
    boundary!({
        check_null!(ctx);
        let taken = (*ctx).session.borrow_mut().take();
        let Some(session) = taken else {
            return finalized();
        };
        let Session { arrays, fed, comm } = session;
        for a in arrays.iter().filter_map(Weak::upgrade) {
            a.borrow_mut().take();
        }
        let left = fed.leave();
        drop(fed);
        Group::barrier(comm.as_ref());
        drop(comm);
        status_of(left)
    })
}

/// Frees a context (finalizing it first if needed). Accepts NULL.
#[no_mangle]
pub unsafe extern "C" fn juxmem_context_free(ctx: *mut juxmem_context) {
    if ctx.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if (*ctx).session.borrow().is_some() {
            juxmem_finalize(ctx);
        }
        drop(Box::from_raw(ctx));
    }));
}

/// This process's rank and the number of processes in the context's communicator.
#[no_mangle]
pub unsafe extern "C" fn juxmem_context_rank(
    ctx: *const juxmem_context,
    rank: *mut u64,
    size: *mut u64,
) -> juxmem_status {
    boundary!({
        check_null!(ctx, rank, size);
        (*ctx).with(|s| {
            *rank = Group::rank(s.comm.as_ref()) as u64;
            *size = Group::size(s.comm.as_ref()) as u64;
            JUXMEM_OK
        })
    })
}
