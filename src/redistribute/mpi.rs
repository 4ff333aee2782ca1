//! Redistribution inside one MPI job.
//!
//! The source and destination grids are mapped onto ranks of one communicator: the same ranks,
//! overlapping ones or disjoint sets (say stage 1 on ranks 0-1 and stage 2 on ranks 2-4 of an
//! MPMD job). Only ranks in either grid take part; no collective call is made, so ranks outside
//! both grids need not call at all.
//!
//! Per rank: post every receive (a piece that lands contiguously is received straight into
//! the destination), then pack and send per destination (a contiguous piece is sent straight
//! from the array, no packing), copy the same-process piece directly from source to
//! destination while messages fly, then unpack each remaining message as it completes.
//! Message sizes come from the plan, so there is no count exchange.

use mpi::topology::Communicator;

use crate::element::Element;
use crate::error::{Error, Result};
use crate::plan::stream::copy_to_ptr;
use crate::plan::Plan;
use crate::transport::mpi::Exchange;

/// Message tag used by redistributions. Give juxmem its own communicator (`MPI_Comm_dup`) so
/// these messages never meet the application's.
pub const REDISTRIBUTE_TAG: i32 = 0x4a4d;

/// Where the two grids of a plan sit in a communicator: `src[p]` is the communicator rank of
/// source grid rank `p`, `dst[q]` that of destination grid rank `q`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankMap {
    /// Communicator rank of each source grid rank.
    pub src: Vec<i32>,
    /// Communicator rank of each destination grid rank.
    pub dst: Vec<i32>,
}

impl RankMap {
    /// Both grids on the same ranks `0..n`.
    pub fn same(n: usize) -> RankMap {
        let ranks: Vec<i32> = (0..n as i32).collect();
        RankMap {
            src: ranks.clone(),
            dst: ranks,
        }
    }

    /// Source grid on ranks `src_first..src_first+src_n`, destination on `dst_first..+dst_n`.
    pub fn ranges(src_first: i32, src_n: usize, dst_first: i32, dst_n: usize) -> RankMap {
        RankMap {
            src: (0..src_n as i32).map(|i| src_first + i).collect(),
            dst: (0..dst_n as i32).map(|i| dst_first + i).collect(),
        }
    }

    fn validate(&self, plan: &Plan, comm_size: i32) -> Result<()> {
        for (what, ranks, want) in [
            ("source", &self.src, plan.src().nprocs()),
            ("destination", &self.dst, plan.dst().nprocs()),
        ] {
            if ranks.len() as u64 != want {
                return Err(Error::BadGrid(format!(
                    "{} {what} ranks given for a {what} grid of {want} processes",
                    ranks.len()
                )));
            }
            let mut seen = ranks.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != ranks.len() {
                return Err(Error::BadGrid(format!(
                    "{what} ranks {ranks:?} repeat a rank"
                )));
            }
            if let Some(r) = ranks.iter().find(|&&r| r < 0 || r >= comm_size) {
                return Err(Error::BadGrid(format!(
                    "{what} rank {r} is outside the communicator of size {comm_size}"
                )));
            }
        }
        Ok(())
    }
}

/// Redistributes according to `plan` over `comm`.
///
/// Every rank in `ranks.src` passes its source local part as `src`, every rank in `ranks.dst`
/// its destination local part as `dst` (a rank in both passes both); other ranks pass `None`
/// or do not call. Blocking: returns when this rank's part is done, or with
/// [`Error::Timeout`] (naming the messages and peers still pending) when no message completes
/// for [`wait_timeout`]: a peer is stuck, dead or did not call. The pending receives are then
/// cancelled; a send that still does not complete aborts the job, since its buffer cannot be
/// freed (see [`Exchange`]).
///
/// [`wait_timeout`]: crate::transport::mpi::wait_timeout
pub fn redistribute<T: Element, C: Communicator>(
    comm: &C,
    plan: &Plan,
    ranks: &RankMap,
    src: Option<&[T]>,
    dst: Option<&mut [T]>,
) -> Result<()> {
    ranks.validate(plan, comm.size())?;
    let me = comm.rank();
    let my_p = ranks.src.iter().position(|&r| r == me).map(|i| i as u64);
    let my_q = ranks.dst.iter().position(|&r| r == me).map(|i| i as u64);
    let src = match (my_p, src) {
        (Some(_), Some(s)) => Some(s),
        (None, None) => None,
        (Some(p), None) => {
            return Err(Error::InvalidArgument(format!(
                "rank {me} is source grid rank {p} but passed no source data"
            )))
        }
        (None, Some(_)) => {
            return Err(Error::InvalidArgument(format!(
                "rank {me} is not in the source grid but passed source data"
            )))
        }
    };
    let mut dst = match (my_q, dst) {
        (Some(_), Some(d)) => Some(d),
        (None, None) => None,
        (Some(q), None) => {
            return Err(Error::InvalidArgument(format!(
                "rank {me} is destination grid rank {q} but passed no destination buffer"
            )))
        }
        (None, Some(_)) => {
            return Err(Error::InvalidArgument(format!(
                "rank {me} is not in the destination grid but passed a destination buffer"
            )))
        }
    };
    if let (Some(p), Some(s)) = (my_p, src) {
        check_len("source", plan.src().local_len(p)?, s.len())?;
    }
    if let (Some(q), Some(d)) = (my_q, dst.as_deref()) {
        check_len("destination", plan.dst().local_len(q)?, d.len())?;
    }

    // While messages are in flight the destination is written only through this pointer,
    // each piece through a slice covering just its own elements (the plan moves every element
    // exactly once), so in-place receives and local writes never overlap.
    let (dst_ptr, dst_len) = match &mut dst {
        Some(d) => (d.as_mut_ptr(), d.len()),
        None => (std::ptr::null_mut(), 0),
    };
    let mut ex: Exchange<'_, T> = Exchange::new(comm, REDISTRIBUTE_TAG);
    let mut recv_from = Vec::new(); // message id -> source grid rank
    if let Some(q) = my_q {
        for t in plan.sources(q)? {
            let peer = ranks.src[t.peer as usize];
            if peer == me {
                continue;
            }
            let id = match plan.contiguous_dst(t.peer, q)? {
                // A piece landing contiguously is received in place: no buffer, no unpack.
                // SAFETY: within `dst` (the plan's ranges are), exclusive (see above), and
                // `ex` is dropped (waiting for every request) before `dst` is used again.
                Some(range) => unsafe {
                    ex.recv_into(peer, dst_ptr.add(range.start), range.len())?
                },
                None => ex.recv(peer, t.elements as usize)?,
            };
            if recv_from.len() <= id.0 {
                recv_from.resize(id.0 + 1, u64::MAX);
            }
            recv_from[id.0] = t.peer;
        }
    }
    if let (Some(p), Some(s)) = (my_p, src) {
        let dests = plan.destinations(p)?;
        // Start after our own position so that not every rank hits the same peer first.
        let start = dests.iter().position(|t| t.peer > p).unwrap_or(0);
        for t in dests[start..].iter().chain(&dests[..start]) {
            let peer = ranks.dst[t.peer as usize];
            if peer == me {
                continue;
            }
            if let Some(range) = plan.contiguous_src(p, t.peer)? {
                ex.send_borrowed(peer, &s[range])?;
            } else {
                let mut buf = vec![T::default(); t.elements as usize];
                plan.pack(p, t.peer, s, &mut buf)?;
                ex.send(peer, buf)?;
            }
        }
    }
    let piece_error = |e: std::io::Error| Error::InvalidArgument(format!("placing a piece: {e}"));
    // Same-process piece: straight copy, overlapping the messages in flight.
    if let (Some(p), Some(q), Some(s)) = (my_p, my_q, src) {
        let spans = plan.spans(p, q)?;
        // SAFETY: see above.
        unsafe { copy_to_ptr(&spans, s, dst_ptr, dst_len) }.map_err(piece_error)?;
    }
    while let Some(id) = ex.wait_any()? {
        if ex.is_receive(id) {
            let data = ex.take_received(id)?;
            let q = my_q.ok_or_else(|| {
                Error::InvalidArgument("received data without a destination".into())
            })?;
            // SAFETY: see above.
            unsafe { plan.unpack_to_ptr(recv_from[id.0], q, &data, dst_ptr, dst_len)? };
        }
    }
    drop(ex);
    Ok(())
}

fn check_len(what: &str, expected: u64, got: usize) -> Result<()> {
    if expected != got as u64 {
        return Err(Error::BufferSize {
            what: format!("{what} local part"),
            expected,
            got: got as u64,
        });
    }
    Ok(())
}
