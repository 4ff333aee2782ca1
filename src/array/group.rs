//! Groups: the processes that call a collective operation together (a stage's MPI ranks, or a
//! single process). Collective calls go through the group's root and share its answer, so every
//! member returns the same result, errors included, and nobody hangs when one member fails.
//!
//! Nobody hangs when a member is stuck or dead either: the collectives of a communicator wait
//! at most [`wait_timeout`] (plus what the root may legitimately take, see [`on_root_within`]).
//! A collective cannot be cancelled in MPI, and its buffers stay MPI's until it completes, so
//! a member that runs out of time prints which operation it waited in, its rank and how long,
//! and aborts the job (`MPI_Abort`, exit code 1).

use std::time::Duration;

use mpi::collective::SystemOperation;
use mpi::traits::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::transport::mpi::{abort_job, seconds, wait_timeout, Patience};

/// The processes of a collective operation.
pub trait Group {
    /// This process's rank in the group.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn size(&self) -> usize;
    /// Waits for every member.
    fn barrier(&self);
    /// Replaces `bytes` on every member by the root's.
    fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>);
    /// [`Group::broadcast_bytes`] where the root may first take up to `root_may_take` (it
    /// waits for a lock or a version with a caller's timeout): the other members wait that
    /// much longer than the usual bound before they give up.
    fn broadcast_bytes_within(&self, root: usize, bytes: &mut Vec<u8>, root_may_take: Duration) {
        let _ = root_may_take;
        self.broadcast_bytes(root, bytes)
    }
    /// Every member's bytes, on every member.
    fn all_gather_bytes(&self, bytes: &[u8]) -> Vec<Vec<u8>>;
    /// Maximum of `x` over the members.
    fn max_u32(&self, x: u32) -> u32;
}

/// A group of one process (tools, tests, single-process clients).
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

impl Group for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn barrier(&self) {}
    fn broadcast_bytes(&self, _root: usize, _bytes: &mut Vec<u8>) {}
    fn all_gather_bytes(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        vec![bytes.to_vec()]
    }
    fn max_u32(&self, x: u32) -> u32 {
        x
    }
}

/// Completes a non-blocking MPI collective by testing it with growing sleeps (up to 1 ms)
/// instead of spinning: a member waiting for its group (say, for the root's answer from a
/// manager, or for a slower member's data) leaves the CPU to the threads doing the work. On a
/// node with fewer cores than processes this is the difference between the service threads
/// running or starving; the cost is at most a millisecond of latency per collective call.
///
/// Bounded by [`wait_timeout`] plus `allowance`: past it, another member is stuck or dead (or
/// skipped the collective). MPI cannot cancel a collective and the request's buffers are MPI's
/// until it completes, so returning is impossible and waiting on would hang the job: print
/// what we waited in and abort the job.
fn wait_gently<'a, C, D, S>(
    comm: &C,
    operation: &str,
    allowance: Duration,
    mut req: mpi::request::Request<'a, D, S>,
) where
    C: Communicator + ?Sized,
    D: ?Sized,
    S: mpi::request::Scope<'a>,
{
    let limit = wait_timeout().saturating_add(allowance);
    let mut patience = Patience::new(limit, Duration::ZERO, Duration::from_millis(1));
    loop {
        match req.test() {
            Ok(_) => return,
            Err(r) => req = r,
        }
        if !patience.pause() {
            abort_job(
                comm.as_raw(),
                &format!(
                    "rank {} waited {} in a juxmem collective ({operation}): another rank of \
                     the job is stuck or dead; aborting the job",
                    Communicator::rank(comm),
                    seconds(patience.waited())
                ),
            );
        }
    }
}

/// An MPI communicator as a group (juxmem calls it from the calling thread only).
impl<C: Communicator> Group for C {
    fn rank(&self) -> usize {
        Communicator::rank(self) as usize
    }
    fn size(&self) -> usize {
        Communicator::size(self) as usize
    }
    fn barrier(&self) {
        wait_gently(self, "barrier", Duration::ZERO, self.immediate_barrier());
    }
    fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) {
        self.broadcast_bytes_within(root, bytes, Duration::ZERO);
    }
    fn broadcast_bytes_within(&self, root: usize, bytes: &mut Vec<u8>, root_may_take: Duration) {
        let proc = self.process_at_rank(root as i32);
        let what = if root == 0 {
            "broadcast from the root".to_string()
        } else {
            format!("broadcast from rank {root}")
        };
        let mut len = bytes.len() as u64;
        mpi::request::scope(|scope| {
            wait_gently(
                self,
                &what,
                root_may_take,
                proc.immediate_broadcast_into(scope, &mut len),
            )
        });
        bytes.resize(len as usize, 0);
        if len > 0 {
            mpi::request::scope(|scope| {
                wait_gently(
                    self,
                    &what,
                    Duration::ZERO,
                    proc.immediate_broadcast_into(scope, &mut bytes[..]),
                )
            });
        }
    }
    fn all_gather_bytes(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let n = Communicator::size(self) as usize;
        let mut lens = vec![0i32; n];
        let mine = bytes.len() as i32;
        mpi::request::scope(|scope| {
            wait_gently(
                self,
                "all-gather of lengths",
                Duration::ZERO,
                self.immediate_all_gather_into(scope, &mine, &mut lens[..]),
            )
        });
        let displs: Vec<i32> = lens
            .iter()
            .scan(0, |acc, &l| {
                let d = *acc;
                *acc += l;
                Some(d)
            })
            .collect();
        let total: i32 = lens.iter().sum();
        let mut all = vec![0u8; total as usize];
        {
            let mut part = mpi::datatype::PartitionMut::new(&mut all[..], &lens[..], &displs[..]);
            mpi::request::scope(|scope| {
                wait_gently(
                    self,
                    "all-gather",
                    Duration::ZERO,
                    self.immediate_all_gather_varcount_into(scope, bytes, &mut part),
                )
            });
        }
        (0..n)
            .map(|i| all[displs[i] as usize..(displs[i] + lens[i]) as usize].to_vec())
            .collect()
    }
    fn max_u32(&self, x: u32) -> u32 {
        let mut m = 0u32;
        mpi::request::scope(|scope| {
            wait_gently(
                self,
                "maximum reduction",
                Duration::ZERO,
                self.immediate_all_reduce_into(scope, &x, &mut m, SystemOperation::max()),
            )
        });
        m
    }
}

#[derive(Serialize, Deserialize)]
enum Outcome<T> {
    Ok(T),
    Err(u32, String),
}

/// Runs `f` on the root only and gives its result (value or error) to every member.
///
/// The other members wait for the root's answer at most [`wait_timeout`]: when `f` may itself
/// wait longer (a lock or a version with a caller's timeout), use [`on_root_within`].
pub fn on_root<G: Group + ?Sized, T: Serialize + DeserializeOwned>(
    g: &G,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    on_root_within(g, Duration::ZERO, f)
}

/// [`on_root`] for an `f` that may take up to `root_may_take` (say, waiting for a lock or a
/// version with the caller's timeout): the other members wait that much longer than the usual
/// bound, so they do not give up (and abort the job) while the root waits legitimately.
pub fn on_root_within<G: Group + ?Sized, T: Serialize + DeserializeOwned>(
    g: &G,
    root_may_take: Duration,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let mut bytes = Vec::new();
    if g.rank() == 0 {
        let outcome = match f() {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Err(e.code().as_u32(), e.detail()),
        };
        bytes = postcard::to_stdvec(&outcome)
            .map_err(|e| Error::Protocol(format!("encoding a collective result: {e}")))?;
    }
    g.broadcast_bytes_within(0, &mut bytes, root_may_take);
    match postcard::from_bytes::<Outcome<T>>(&bytes) {
        Ok(Outcome::Ok(v)) => Ok(v),
        Ok(Outcome::Err(code, msg)) => Err(Error::from_wire(code, msg)),
        Err(e) => Err(Error::Protocol(format!(
            "decoding a collective result: {e}"
        ))),
    }
}

/// Combines every member's outcome: all succeed, or all fail (a member that succeeded reports
/// that another failed, with that failure's code).
pub fn agree<G: Group + ?Sized>(g: &G, r: Result<()>) -> Result<()> {
    let mine = r.as_ref().err().map_or(0, |e| e.code().as_u32());
    let worst = g.max_u32(mine);
    match r {
        Err(e) => Err(e),
        Ok(()) if worst == 0 => Ok(()),
        Ok(()) => Err(Error::Remote {
            code: ErrorCode::from_u32(worst).unwrap_or(ErrorCode::InvalidArgument),
            message: format!(
                "another member of the group failed (error code {worst}); see its message"
            ),
        }),
    }
}
