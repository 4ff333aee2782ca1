//! Redistribution inside one MPI job.
//!
//! The source and destination grids are mapped onto ranks of one communicator: the same ranks,
//! overlapping ones or disjoint sets (say stage 1 on ranks 0-1 and stage 2 on ranks 2-4 of an
//! MPMD job). Only ranks in either grid take part; no collective call is made, so ranks outside
//! both grids need not call at all.
//!
//! Per rank: every transfer is cut into chunks of about [`CHUNK_BYTES`] (see
//! [`crate::plan::chunk`]). A chunk whose elements are contiguous in the array is sent from it
//! or received into it in place; the others go through a few buffers per transfer that are
//! packed (or unpacked) while earlier chunks are in flight, so they stay in cache. The chunks,
//! buffers and message roles of a plan are kept in a small process-wide pool, so repeated calls
//! allocate no element buffers. The same-process piece is copied directly from source to
//! destination, a chunk at a time between the sends. Message sizes come from the plan: no
//! count exchange.

use std::sync::Mutex;

use mpi::topology::Communicator;

use crate::element::Element;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::plan::chunk::Chunked;
use crate::plan::stream::{copy_to_ptr, pack_to_ptr, unpack_to_ptr};
use crate::plan::Plan;
use crate::transport::mpi::{Exchange, MsgId};

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
    if std::mem::align_of::<T>() > std::mem::align_of::<u64>() {
        // The pooled buffers are u64 words: a more aligned type would be misaligned in them.
        return Err(Error::InvalidArgument(format!(
            "element type {} is aligned to {} bytes; at most 8 is supported",
            T::TYPE,
            std::mem::align_of::<T>()
        )));
    }
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
    // each chunk through a slice covering just its own elements (the plan moves every element
    // exactly once), so in-place receives and local writes never overlap.
    let (dst_ptr, dst_len) = match &mut dst {
        Some(d) => (d.as_mut_ptr(), d.len()),
        None => (std::ptr::null_mut(), 0),
    };
    let mut pooled = Pooled::take(plan, my_p, my_q, std::mem::size_of::<T>())?;
    pooled.get().reset();
    // The exchange's scope ends inside `pooled`'s: every request is completed (or cancelled)
    // before the buffers it uses go back to the pool.
    let prep = pooled.get();
    Exchange::scope(comm, REDISTRIBUTE_TAG, |ex| {
        Run {
            ex,
            prep,
            ranks,
            src: src.unwrap_or(&[]),
            dst_ptr,
            dst_len,
        }
        .execute()
    })
}

/// Bytes of the chunks a transfer is cut into when it has to be packed or unpacked, for
/// transfers between two processes: small enough that the buffers of the messages in flight
/// stay in cache (the peer reads a chunk soon after it is packed), large enough that a message
/// costs little against its copy. Divided by the number of processes (at least
/// [`MIN_CHUNK_BYTES`]) so the buffers of one plan stay bounded whatever the job's size.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Smallest chunk, however many processes.
pub const MIN_CHUNK_BYTES: usize = 64 << 10;
/// Chunks of one transfer in flight at once that go through buffers (per peer and way).
pub const CHUNKS_IN_FLIGHT: usize = 3;
/// Prepared plans (with their buffers) kept for reuse, most recently used last.
const POOL_CAPACITY: usize = 8;

fn chunk_elements(plan: &Plan, elem: usize) -> u64 {
    let procs = plan.src().nprocs().max(plan.dst().nprocs()).max(1);
    let bytes = (CHUNK_BYTES as u64 / procs).max(MIN_CHUNK_BYTES as u64);
    (bytes / elem.max(1) as u64).max(1)
}

/// Reused memory for packed chunks: 8-byte words, so aligned for element types aligned to at
/// most 8 bytes (checked by [`redistribute`]).
struct Slot(Vec<u64>);

impl Slot {
    fn new(elements: u64, elem: usize) -> Slot {
        Slot(vec![0u64; (elements as usize * elem).div_ceil(8)])
    }
    fn ptr<T>(&mut self) -> *mut T {
        self.0.as_mut_ptr().cast()
    }
    fn len<T>(&self) -> usize {
        self.0.len() * 8 / std::mem::size_of::<T>().max(1)
    }
}

/// One transfer of this process: its peer (grid rank), chunks and buffers, and where a call
/// stands in it.
struct Side {
    peer: u64,
    chunks: Chunked,
    slots: Vec<Slot>,
    /// Next chunk to post.
    next: usize,
    /// Slots not in use.
    free: Vec<usize>,
}

impl Side {
    fn new(peer: u64, spans: &[crate::plan::Span], size: u64, elem: usize, send: bool) -> Side {
        let chunks = Chunked::new(spans, size);
        let buffered = if send {
            chunks.largest_buffered(|c| c.src_contiguous)
        } else {
            chunks.largest_buffered(|c| c.dst_contiguous)
        };
        let slots = match buffered {
            Some(n) => {
                let k = chunks.chunks.len().min(CHUNKS_IN_FLIGHT);
                (0..k).map(|_| Slot::new(n, elem)).collect()
            }
            None => Vec::new(),
        };
        Side {
            peer,
            chunks,
            slots,
            next: 0,
            free: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.next = 0;
        self.free.clear();
        self.free.extend((0..self.slots.len()).rev());
    }

    fn done(&self) -> bool {
        self.next == self.chunks.chunks.len()
    }
}

/// What this process does for one plan: its transfers cut into chunks, with their buffers.
/// Built on the first call and kept in a pool keyed like the plan cache (plus this process's
/// place in the two grids and the element size), so later calls allocate no buffers.
struct Prepared {
    src: Layout,
    dst: Layout,
    p: Option<u64>,
    q: Option<u64>,
    elem: usize,
    /// Sends to other processes, in the order they are served.
    sends: Vec<Side>,
    /// Receives from other processes.
    recvs: Vec<Side>,
    /// The same-process piece, copied chunk by chunk between the sends.
    own: Chunked,
    own_next: usize,
    /// What each message of the exchange is (indexed by message id).
    roles: Vec<Role>,
}

#[derive(Clone, Copy)]
enum Role {
    Send {
        side: usize,
        slot: Option<usize>,
    },
    Recv {
        side: usize,
        chunk: usize,
        slot: Option<usize>,
    },
}

impl Prepared {
    fn new(plan: &Plan, p: Option<u64>, q: Option<u64>, elem: usize) -> Result<Prepared> {
        let size = chunk_elements(plan, elem);
        let mut sends = Vec::new();
        let mut own = Chunked::default();
        if let Some(p) = p {
            let dests = plan.destinations(p)?;
            // Start after our own position so that not every rank serves the same peer first.
            let start = dests.iter().position(|t| t.peer > p).unwrap_or(0);
            for t in dests[start..].iter().chain(&dests[..start]) {
                let spans = plan.spans(p, t.peer)?;
                if Some(t.peer) == q {
                    own = Chunked::new(&spans, size);
                } else {
                    sends.push(Side::new(t.peer, &spans, size, elem, true));
                }
            }
        }
        let mut recvs = Vec::new();
        if let Some(q) = q {
            for t in plan.sources(q)? {
                if Some(t.peer) != p {
                    let spans = plan.spans(t.peer, q)?;
                    recvs.push(Side::new(t.peer, &spans, size, elem, false));
                }
            }
        }
        Ok(Prepared {
            src: plan.src().clone(),
            dst: plan.dst().clone(),
            p,
            q,
            elem,
            sends,
            recvs,
            own,
            own_next: 0,
            roles: Vec::new(),
        })
    }

    fn is_for(&self, plan: &Plan, p: Option<u64>, q: Option<u64>, elem: usize) -> bool {
        (self.p, self.q, self.elem) == (p, q, elem)
            && &self.src == plan.src()
            && &self.dst == plan.dst()
    }

    fn key(&self) -> (&Layout, &Layout, Option<u64>, Option<u64>, usize) {
        (&self.src, &self.dst, self.p, self.q, self.elem)
    }

    fn reset(&mut self) {
        self.sends
            .iter_mut()
            .chain(&mut self.recvs)
            .for_each(Side::reset);
        self.own_next = 0;
        self.roles.clear();
    }
}

static POOL: Mutex<Vec<Prepared>> = Mutex::new(Vec::new());

/// A prepared plan taken from the pool for one call, given back when dropped.
struct Pooled(Option<Prepared>);

impl Pooled {
    fn take(plan: &Plan, p: Option<u64>, q: Option<u64>, elem: usize) -> Result<Pooled> {
        {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = pool.iter().position(|x| x.is_for(plan, p, q, elem)) {
                return Ok(Pooled(Some(pool.remove(i))));
            }
        }
        Ok(Pooled(Some(Prepared::new(plan, p, q, elem)?)))
    }

    fn get(&mut self) -> &mut Prepared {
        self.0
            .as_mut()
            .expect("a pooled plan is held until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(prep) = self.0.take() else {
            return;
        };
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        // Another thread may have prepared the same plan meanwhile: keep one.
        if pool.iter().any(|x| x.key() == prep.key()) {
            return;
        }
        if pool.len() >= POOL_CAPACITY {
            pool.remove(0);
        }
        pool.push(prep);
    }
}

/// One call in progress.
struct Run<'a, 'p, 'e, T: Element> {
    ex: &'e mut Exchange<'a, T>,
    prep: &'p mut Prepared,
    ranks: &'p RankMap,
    src: &'a [T],
    dst_ptr: *mut T,
    dst_len: usize,
}

fn piece_error(e: std::io::Error) -> Error {
    Error::InvalidArgument(format!("placing a piece: {e}"))
}

impl<T: Element> Run<'_, '_, '_, T> {
    /// Posts every receive, sends chunk after chunk (one per destination in turn) while
    /// buffers are free, copies the same-process piece a chunk at a time in between, and
    /// unpacks what arrives in buffers, until everything has been sent and received.
    fn execute(&mut self) -> Result<()> {
        for i in 0..self.prep.recvs.len() {
            self.post_recvs(i)?;
        }
        loop {
            let mut worked = false;
            for i in 0..self.prep.sends.len() {
                worked |= self.send_next(i)?;
            }
            // One chunk of the local copy per round: it overlaps the messages in flight, and
            // reads the source region the packs just read (still in cache for 1-D layouts).
            worked |= self.copy_own_next()?;
            while let Some(id) = self.ex.test_any()? {
                self.handle(id)?;
                worked = true; // a buffer may be free again
            }
            if worked {
                continue;
            }
            if self.prep.sends.iter().all(Side::done) {
                break;
            }
            // Every send waits for a buffer: wait for a message to complete.
            match self.ex.wait_any()? {
                Some(id) => self.handle(id)?,
                None => {
                    return Err(Error::InvalidArgument(
                        "redistribution stalled: sends wait for buffers with nothing in flight"
                            .into(),
                    ))
                }
            }
        }
        while self.copy_own_next()? {}
        while let Some(id) = self.ex.wait_any()? {
            self.handle(id)?;
        }
        if !self.prep.recvs.iter().all(Side::done) {
            return Err(Error::InvalidArgument(
                "redistribution ended with receives not posted".into(),
            ));
        }
        Ok(())
    }

    fn record(&mut self, id: MsgId, role: Role) {
        debug_assert_eq!(id.0, self.prep.roles.len());
        if self.prep.roles.len() <= id.0 {
            self.prep.roles.resize(id.0 + 1, role);
        }
        self.prep.roles[id.0] = role;
    }

    /// Posts the receives of transfer `i` in chunk order, as far as buffers allow (chunks
    /// landing contiguously are received in place and need none).
    fn post_recvs(&mut self, i: usize) -> Result<()> {
        loop {
            let side = &mut self.prep.recvs[i];
            if side.done() {
                return Ok(());
            }
            let k = side.next;
            let chunk = &side.chunks.chunks[k];
            let peer = self.ranks.src[side.peer as usize];
            let len = chunk.len as usize;
            let (id, slot) = match chunk.dst_contiguous {
                // SAFETY: within `dst` (the plan's offsets are), exclusive (see `redistribute`),
                // and the exchange completes the request before `dst` is used again.
                Some(off) => (
                    unsafe {
                        self.ex
                            .recv_into(peer, self.dst_ptr.add(off as usize), len)?
                    },
                    None,
                ),
                None => match side.free.pop() {
                    Some(s) => {
                        let buf = &mut side.slots[s];
                        debug_assert!(len <= buf.len::<T>());
                        // SAFETY: the slot is not in use (it was free) and lives in the pool
                        // entry, which outlives the exchange.
                        (
                            unsafe { self.ex.recv_into(peer, buf.ptr::<T>(), len)? },
                            Some(s),
                        )
                    }
                    None => return Ok(()),
                },
            };
            side.next += 1;
            self.record(
                id,
                Role::Recv {
                    side: i,
                    chunk: k,
                    slot,
                },
            );
        }
    }

    /// Sends the next chunk of transfer `i` if it can: straight from the source if its
    /// elements are contiguous there, else packed into a free buffer. True if it did.
    fn send_next(&mut self, i: usize) -> Result<bool> {
        let side = &mut self.prep.sends[i];
        if side.done() {
            return Ok(false);
        }
        let k = side.next;
        let chunk = &side.chunks.chunks[k];
        let peer = self.ranks.dst[side.peer as usize];
        let len = chunk.len as usize;
        let (id, slot) = match chunk.src_contiguous {
            Some(off) => {
                let piece = self
                    .src
                    .get(off as usize..off as usize + len)
                    .ok_or_else(|| piece_error(std::io::ErrorKind::InvalidInput.into()))?;
                // SAFETY: `src` is borrowed for the whole call, which outlives the exchange.
                (
                    unsafe { self.ex.send_raw(peer, piece.as_ptr(), len)? },
                    None,
                )
            }
            None => {
                let Some(s) = side.free.pop() else {
                    return Ok(false);
                };
                let buf = &mut side.slots[s];
                let (ptr, cap) = (buf.ptr::<T>(), buf.len::<T>());
                // SAFETY: the slot is not in use (it was free); it lives in the pool entry,
                // which outlives the exchange.
                unsafe {
                    pack_to_ptr(side.chunks.chunk_spans(k), self.src, ptr, cap)
                        .map_err(piece_error)?;
                    (self.ex.send_raw(peer, ptr, len)?, Some(s))
                }
            }
        };
        side.next += 1;
        self.record(id, Role::Send { side: i, slot });
        Ok(true)
    }

    /// Copies the next chunk of the same-process piece; true if there was one.
    fn copy_own_next(&mut self) -> Result<bool> {
        let k = self.prep.own_next;
        if k == self.prep.own.chunks.len() {
            return Ok(false);
        }
        self.prep.own_next += 1;
        // SAFETY: see `redistribute`: these elements are this chunk's only.
        unsafe {
            copy_to_ptr(
                self.prep.own.chunk_spans(k),
                self.src,
                self.dst_ptr,
                self.dst_len,
            )
        }
        .map_err(piece_error)?;
        Ok(true)
    }

    /// A message completed: free its buffer; unpack a chunk received in a buffer and post
    /// the next receives of that transfer.
    fn handle(&mut self, id: MsgId) -> Result<()> {
        let role = *self
            .prep
            .roles
            .get(id.0)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown message {id:?}")))?;
        match role {
            Role::Send { side, slot } => {
                if let Some(s) = slot {
                    self.prep.sends[side].free.push(s);
                }
            }
            Role::Recv { side, chunk, slot } => {
                if let Some(s) = slot {
                    let r = &mut self.prep.recvs[side];
                    let len = r.chunks.chunks[chunk].len as usize;
                    let buf = &mut r.slots[s];
                    // SAFETY: the message has completed, so MPI no longer writes the slot;
                    // the chunk's elements of `dst` are its own (see `redistribute`).
                    unsafe {
                        let data = std::slice::from_raw_parts(buf.ptr::<T>().cast_const(), len);
                        unpack_to_ptr(
                            r.chunks.chunk_spans(chunk),
                            data,
                            self.dst_ptr,
                            self.dst_len,
                        )
                        .map_err(piece_error)?;
                    }
                    r.free.push(s);
                    self.post_recvs(side)?;
                }
            }
        }
        Ok(())
    }
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
