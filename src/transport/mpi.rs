//! MPI point-to-point inside one job: the only module that calls raw MPI.
//!
//! rsmpi's safe requests tie a receive buffer's borrow to a scope, which stops us unpacking one
//! message while others are still in flight. [`Exchange`] owns its receive buffers instead and
//! hands each back as its message completes, so the executor can overlap unpacking with
//! communication. Messages larger than [`MAX_CHUNK_BYTES`] are split (MPI counts are `int`);
//! chunks between the same pair with the same tag arrive in order (MPI's non-overtaking rule).
//!
//! Every wait is bounded, MPI waits included: a rank of the job that is stuck or dead must not
//! hang the others forever. The bound is process-wide ([`set_wait_timeout`], 120 s by default)
//! and counts from the last progress: [`Exchange::wait_any`] fails with [`Error::Timeout`] when
//! nothing completes for that long. Waits poll (`MPI_Testsome`) rather than block, spinning
//! briefly and then sleeping with growing pauses (`Patience`), so a long wait leaves the CPU
//! to the threads doing the work.

use std::marker::PhantomData;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mpi::ffi;
use mpi::topology::Communicator;

use crate::element::{as_bytes, as_bytes_mut, Element};
use crate::error::{Error, Result};

/// Largest piece sent in one MPI call (bytes).
pub const MAX_CHUNK_BYTES: usize = 1 << 30;

/// The bound of MPI waits when nobody set one ([`set_wait_timeout`]).
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(120);

/// The bound of MPI waits, in milliseconds.
static WAIT_TIMEOUT_MS: AtomicU64 = AtomicU64::new(DEFAULT_WAIT_TIMEOUT.as_millis() as u64);

/// Sets, for the whole process, how long an MPI wait of juxmem may go without progress: a
/// message exchange ([`Exchange`]) or a collective of a communicator's [`Group`] (barrier,
/// broadcast, all-gather, reduction). Rounded to milliseconds, at least 1 ms; [`Duration::MAX`]
/// means no bound.
///
/// What happens when it passes depends on what can be undone: an exchange returns
/// [`Error::Timeout`] and cancels its receives; a collective cannot be cancelled in MPI, so the
/// job is aborted with a message naming the operation and the rank (see [`Group`]).
///
/// [`Group`]: crate::array::Group
pub fn set_wait_timeout(d: Duration) {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
    WAIT_TIMEOUT_MS.store(ms, Ordering::Relaxed);
}

/// The bound of MPI waits set by [`set_wait_timeout`] ([`DEFAULT_WAIT_TIMEOUT`] if never set).
pub fn wait_timeout() -> Duration {
    Duration::from_millis(WAIT_TIMEOUT_MS.load(Ordering::Relaxed))
}

/// The pauses of a polling wait and its deadline.
///
/// A waiter tests its requests, and when nothing is done calls [`Patience::pause`]: first it
/// only yields the CPU (for `spin`, the time in which messages usually complete), then it
/// sleeps, starting at 5 µs and doubling up to `max_pause`. Sleeping instead of spinning
/// matters on nodes with fewer cores than processes, where a spinning waiter starves the
/// threads that would let it proceed; the cost is at most `max_pause` of latency once a wait
/// has gone on for longer than `spin`. The deadline counts from the start or from the last
/// call of [`Patience::progress`].
pub(crate) struct Patience {
    limit: Duration,
    spin: Duration,
    max_pause: Duration,
    started: Instant,
    /// `None`: no bound (the limit does not fit in an `Instant`).
    deadline: Option<Instant>,
    spin_until: Instant,
    pause: Duration,
}

impl Patience {
    /// Starts a wait bounded by `limit`.
    pub(crate) fn new(limit: Duration, spin: Duration, max_pause: Duration) -> Patience {
        let now = Instant::now();
        let mut p = Patience {
            limit,
            spin,
            max_pause,
            started: now,
            deadline: None,
            spin_until: now,
            pause: Duration::ZERO,
        };
        p.progress();
        p
    }

    /// Something completed: the deadline and the pauses start over.
    pub(crate) fn progress(&mut self) {
        let now = Instant::now();
        self.deadline = now.checked_add(self.limit);
        self.spin_until = now + self.spin;
        self.pause = Duration::from_micros(5);
    }

    /// Pauses before the next test; `false` (without pausing) once the deadline has passed.
    pub(crate) fn pause(&mut self) -> bool {
        let now = Instant::now();
        let left = match self.deadline {
            Some(d) if now >= d => return false,
            Some(d) => d - now,
            None => Duration::MAX,
        };
        if now < self.spin_until {
            std::thread::yield_now();
        } else {
            std::thread::sleep(self.pause.min(left));
            self.pause = (self.pause * 2).min(self.max_pause);
        }
        true
    }

    /// The bound of this wait.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// Time since the wait started.
    pub(crate) fn waited(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Ends the whole job: prints `message` on stderr, then `MPI_Abort(comm, 1)`.
///
/// For the waits that cannot be given up safely: a collective (MPI cannot cancel one, and its
/// buffers are MPI's until it completes) or a send whose buffer MPI may still read. Returning
/// would either hang or free memory MPI still uses; aborting with a clear message is the only
/// bounded outcome.
pub(crate) fn abort_job(comm: ffi::MPI_Comm, message: &str) -> ! {
    // One write, so that the lines of several ranks aborting at once do not interleave.
    let line = format!("juxmem: {message}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    // SAFETY: MPI_Abort takes any communicator; it does not return on success.
    unsafe {
        ffi::MPI_Abort(comm, 1);
    }
    // MPI_Abort is not supposed to return; if it does, end this process at least, without
    // running exit handlers that might call into MPI again.
    // SAFETY: `_exit` ends the process immediately.
    unsafe { libc::_exit(1) }
}

/// This process's rank in `comm` (-1 if MPI cannot tell).
pub(crate) fn rank_of(comm: ffi::MPI_Comm) -> c_int {
    let mut rank: c_int = -1;
    // SAFETY: `comm` is a valid communicator; MPI writes one int.
    unsafe {
        ffi::MPI_Comm_rank(comm, &mut rank);
    }
    rank
}

/// Seconds for a message: whole seconds from 10 s up ("120 s"), else one decimal ("1.0 s").
pub(crate) fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// How long an [`Exchange`] spins (yielding) before it sleeps between tests.
const EXCHANGE_SPIN: Duration = Duration::from_millis(1);
/// The longest sleep between two tests of an [`Exchange`]: it also bounds how often MPI is
/// given the chance to progress large transfers while we wait.
const EXCHANGE_MAX_PAUSE: Duration = Duration::from_micros(250);

/// Identifies a message posted on an [`Exchange`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsgId(pub usize);

enum Buffer<T> {
    /// A send; an owned packed buffer is kept here until MPI is done with it (a borrowed one is
    /// kept alive by the exchange's lifetime).
    Send {
        _keep_alive: Option<Vec<T>>,
    },
    Recv(Vec<T>),
    /// Received straight into memory the caller owns.
    Placed,
    Taken,
}

struct Message<T> {
    buffer: Buffer<T>,
    peer: i32,
    pending_chunks: usize,
}

impl<T> Message<T> {
    fn is_send(&self) -> bool {
        matches!(self.buffer, Buffer::Send { .. })
    }
}

/// A set of non-blocking sends and receives on one communicator and tag.
///
/// Waits are bounded by [`wait_timeout`]. Dropping an `Exchange` with messages still in flight
/// (an early return on an error) first gives them that long to complete, unless a wait of this
/// exchange already timed out; then it cancels the receives still pending and waits, bounded
/// again, for the cancellations and the sends. Receives are not cancelled at once because a
/// healthy peer's messages are better consumed than left unmatched: a large send to us would
/// otherwise never complete (and abort the peer's job), a small one would linger to be matched
/// by a later exchange on the same tag. Sends cannot be cancelled reliably (MPI 4 deprecates
/// it, Open MPI does not do it), and a buffer MPI may still read or write must not be freed:
/// if something is still pending after both waits, the drop aborts the job (`MPI_Abort`, exit
/// code 1) with a message naming the rank and what was pending, rather than hang or free it.
pub struct Exchange<'a, T: Element> {
    comm: ffi::MPI_Comm,
    tag: c_int,
    requests: Vec<ffi::MPI_Request>,
    request_msg: Vec<usize>,
    messages: Vec<Message<T>>,
    /// Messages completed by a test but not yet returned by `wait_any`.
    ready: Vec<usize>,
    /// A wait of this exchange timed out: what is pending is not coming.
    timed_out: bool,
    /// Room for the indices `MPI_Testsome` returns (kept to not allocate on every test).
    indices: Vec<c_int>,
    _borrows: PhantomData<&'a [T]>,
}

impl<'a, T: Element> Exchange<'a, T> {
    /// Runs `f` with a new exchange on `comm` using message tag `tag`; whatever is still in
    /// flight when `f` returns (or unwinds) is completed or cancelled before `scope` returns
    /// (see [`Exchange`]). Only a scope makes exchanges, and `f` only borrows this one, so it
    /// cannot be leaked (`mem::forget`) while MPI still reads a buffer borrowed for `'a`, as
    /// rsmpi's request scopes:
    ///
    /// ```compile_fail,E0507
    /// use juxmem::transport::mpi::Exchange;
    /// fn leak<C: mpi::traits::Communicator>(comm: &C, data: &[u64]) {
    ///     Exchange::scope(comm, 7, |ex| {
    ///         ex.send_borrowed(1, data).unwrap();
    ///         std::mem::forget(*ex); // cannot move out of a borrow: refused
    ///     });
    /// }
    /// ```
    pub fn scope<C: Communicator, R>(
        comm: &'a C,
        tag: i32,
        f: impl FnOnce(&mut Exchange<'a, T>) -> R,
    ) -> R {
        let mut ex = Exchange::new(comm, tag);
        let r = f(&mut ex);
        drop(ex);
        r
    }

    fn new<C: Communicator>(comm: &'a C, tag: i32) -> Exchange<'a, T> {
        Exchange {
            comm: comm.as_raw(),
            tag,
            requests: Vec::new(),
            request_msg: Vec::new(),
            messages: Vec::new(),
            ready: Vec::new(),
            timed_out: false,
            indices: Vec::new(),
            _borrows: PhantomData,
        }
    }

    /// Sends `data` to `peer` without copying it.
    pub fn send_borrowed(&mut self, peer: i32, data: &'a [T]) -> Result<MsgId> {
        let id = self.push(peer, Buffer::Send { _keep_alive: None });
        self.post_sends(
            id,
            peer,
            as_bytes(data).as_ptr(),
            std::mem::size_of_val(data),
        )?;
        Ok(id)
    }

    /// Sends `len` elements at `data` to `peer`, from memory the caller keeps alive (a reused
    /// buffer): no copy, no ownership.
    ///
    /// # Safety
    /// `data` must be valid for `len` reads and not be written until the message completes (or
    /// the exchange is dropped).
    pub unsafe fn send_raw(&mut self, peer: i32, data: *const T, len: usize) -> Result<MsgId> {
        let id = self.push(peer, Buffer::Send { _keep_alive: None });
        self.post_sends(id, peer, data.cast(), len * std::mem::size_of::<T>())?;
        Ok(id)
    }

    /// Sends `data` (typically a packed buffer) to `peer`; the exchange keeps it alive.
    pub fn send(&mut self, peer: i32, data: Vec<T>) -> Result<MsgId> {
        let (ptr, len) = (
            as_bytes(&data).as_ptr(),
            std::mem::size_of_val(data.as_slice()),
        );
        // The Vec's heap buffer does not move when the Vec itself is moved into `messages`.
        let id = self.push(
            peer,
            Buffer::Send {
                _keep_alive: Some(data),
            },
        );
        self.post_sends(id, peer, ptr, len)?;
        Ok(id)
    }

    /// Receives `len` elements from `peer`.
    pub fn recv(&mut self, peer: i32, len: usize) -> Result<MsgId> {
        let mut buf = vec![T::default(); len];
        let bytes = as_bytes_mut(&mut buf);
        let (ptr, nbytes) = (bytes.as_mut_ptr(), bytes.len());
        let id = self.push(peer, Buffer::Recv(buf));
        self.post_recvs(id, peer, ptr, nbytes)?;
        Ok(id)
    }

    /// Receives `len` elements from `peer` straight into `dst` (no buffer, no unpacking).
    ///
    /// # Safety
    /// `dst` must be valid for `len` writes until the message completes (or the exchange is
    /// dropped), and nothing else may access those elements meanwhile.
    pub unsafe fn recv_into(&mut self, peer: i32, dst: *mut T, len: usize) -> Result<MsgId> {
        let id = self.push(peer, Buffer::Placed);
        self.post_recvs(id, peer, dst.cast(), len * std::mem::size_of::<T>())?;
        Ok(id)
    }

    fn post_recvs(&mut self, id: MsgId, peer: i32, ptr: *mut u8, nbytes: usize) -> Result<()> {
        for (off, n) in chunks(nbytes) {
            let mut req = ffi_request_null();
            // SAFETY: the buffer is owned by `self.messages[id]` (or guaranteed by the caller of
            // `recv_into`) and outlives the request (Drop completes or cancels every request,
            // or aborts the job); chunks are disjoint and within the buffer.
            let rc = unsafe {
                ffi::MPI_Irecv(
                    ptr.add(off).cast(),
                    n,
                    ffi::RSMPI_UINT8_T,
                    peer,
                    self.tag,
                    self.comm,
                    &mut req,
                )
            };
            self.track(rc, req, id, "MPI_Irecv")?;
        }
        Ok(())
    }

    /// Waits until some message has fully completed and returns it; `None` once nothing is in
    /// flight.
    ///
    /// Fails with [`Error::Timeout`], naming what is pending, when nothing completes for
    /// [`wait_timeout`]: a peer is stuck, dead, or not taking part. The exchange can then only
    /// be dropped (which cancels the pending receives; see [`Exchange`]).
    pub fn wait_any(&mut self) -> Result<Option<MsgId>> {
        let mut patience = Patience::new(wait_timeout(), EXCHANGE_SPIN, EXCHANGE_MAX_PAUSE);
        loop {
            if let Some(msg) = self.ready.pop() {
                return Ok(Some(MsgId(msg)));
            }
            if self.requests.is_empty() {
                return Ok(None);
            }
            if self.test_some()? {
                patience.progress();
            } else if !patience.pause() {
                self.timed_out = true;
                return Err(Error::Timeout {
                    what: format!("rank {} waiting for {}", rank_of(self.comm), self.pending()),
                    seconds: patience.limit().as_secs_f64(),
                });
            }
        }
    }

    /// A message that has fully completed, if any, without waiting: tests the requests in
    /// flight once (which also lets MPI progress them). `None` when nothing has completed yet
    /// (or nothing is in flight).
    pub fn test_any(&mut self) -> Result<Option<MsgId>> {
        if self.ready.is_empty() {
            self.test_some()?;
        }
        Ok(self.ready.pop().map(MsgId))
    }

    /// True while some message is in flight or completed but not yet returned.
    pub fn busy(&self) -> bool {
        !self.requests.is_empty() || !self.ready.is_empty()
    }

    /// Tests every request once (`MPI_Testsome`): drops the completed ones and queues the
    /// messages they complete in `ready`. True if any request completed.
    fn test_some(&mut self) -> Result<bool> {
        let n = self.requests.len();
        if n == 0 {
            return Ok(false);
        }
        let mut outcount: c_int = 0;
        self.indices.resize(n, 0);
        // SAFETY: `requests` holds `n` valid requests posted by this exchange; `indices` has
        // room for `n`.
        let rc = unsafe {
            ffi::MPI_Testsome(
                n as c_int,
                self.requests.as_mut_ptr(),
                &mut outcount,
                self.indices.as_mut_ptr(),
                ffi::RSMPI_STATUSES_IGNORE,
            )
        };
        check(rc, "MPI_Testsome")?;
        // SAFETY: reading an immutable extern constant provided by rsmpi's C shim.
        if outcount == unsafe { ffi::RSMPI_UNDEFINED } || outcount <= 0 {
            return Ok(false);
        }
        // Highest index first: each `swap_remove` then moves a request not yet looked at.
        let done = &mut self.indices[..outcount as usize];
        done.sort_unstable_by(|a, b| b.cmp(a));
        for &i in done.iter() {
            self.requests.swap_remove(i as usize);
            let msg = self.request_msg.swap_remove(i as usize);
            let m = &mut self.messages[msg];
            m.pending_chunks -= 1;
            if m.pending_chunks == 0 {
                self.ready.push(msg);
            }
        }
        Ok(true)
    }

    /// Tests until nothing is in flight (true) or nothing completed for `limit` (false).
    fn complete_within(&mut self, limit: Duration) -> Result<bool> {
        let mut patience = Patience::new(limit, EXCHANGE_SPIN, EXCHANGE_MAX_PAUSE);
        while !self.requests.is_empty() {
            if self.test_some()? {
                patience.progress();
            } else if !patience.pause() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What is still in flight, for messages: "2 receives (from ranks 1, 3) and 1 send (to
    /// rank 1) of 9 messages of an MPI exchange (tag 0x4a4d)".
    fn pending(&self) -> String {
        let (mut from, mut to) = (Vec::new(), Vec::new());
        for m in self.messages.iter().filter(|m| m.pending_chunks > 0) {
            if m.is_send() {
                to.push(m.peer);
            } else {
                from.push(m.peer);
            }
        }
        let mut parts = Vec::new();
        for (list, what, dir) in [(&mut from, "receive", "from"), (&mut to, "send", "to")] {
            if list.is_empty() {
                continue;
            }
            let count = list.len();
            list.sort_unstable();
            list.dedup();
            let ranks = if list.len() == 1 { "rank" } else { "ranks" };
            let mut names: Vec<String> = list.iter().take(8).map(|r| r.to_string()).collect();
            if list.len() > 8 {
                names.push(format!("... ({} ranks)", list.len()));
            }
            let plural = if count == 1 { "" } else { "s" };
            parts.push(format!(
                "{count} {what}{plural} ({dir} {ranks} {})",
                names.join(", ")
            ));
        }
        let total = self.messages.len();
        format!(
            "{} of {total} message{} of an MPI exchange (tag {:#x})",
            parts.join(" and "),
            if total == 1 { "" } else { "s" },
            self.tag
        )
    }

    /// Takes the data of a completed receive.
    pub fn take_received(&mut self, id: MsgId) -> Result<Vec<T>> {
        let m = self
            .messages
            .get_mut(id.0)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown message {id:?}")))?;
        if m.pending_chunks != 0 {
            return Err(Error::InvalidArgument(format!(
                "message {id:?} has not completed"
            )));
        }
        match std::mem::replace(&mut m.buffer, Buffer::Taken) {
            Buffer::Recv(v) => Ok(v),
            other => {
                m.buffer = other;
                Err(Error::InvalidArgument(format!(
                    "message {id:?} is not a receive"
                )))
            }
        }
    }

    /// True when `id` is a receive into a buffer of the exchange (to take with
    /// [`Exchange::take_received`]).
    pub fn is_receive(&self, id: MsgId) -> bool {
        matches!(
            self.messages.get(id.0),
            Some(Message {
                buffer: Buffer::Recv(_),
                ..
            })
        )
    }

    fn push(&mut self, peer: i32, buffer: Buffer<T>) -> MsgId {
        self.messages.push(Message {
            buffer,
            peer,
            pending_chunks: 0,
        });
        MsgId(self.messages.len() - 1)
    }

    fn post_sends(&mut self, id: MsgId, peer: i32, ptr: *const u8, nbytes: usize) -> Result<()> {
        for (off, n) in chunks(nbytes) {
            let mut req = ffi_request_null();
            // SAFETY: the data is borrowed for 'a or owned by `self.messages[id]`, and Drop
            // completes every request (or aborts the job) before either goes away.
            let rc = unsafe {
                ffi::MPI_Isend(
                    ptr.add(off).cast(),
                    n,
                    ffi::RSMPI_UINT8_T,
                    peer,
                    self.tag,
                    self.comm,
                    &mut req,
                )
            };
            self.track(rc, req, id, "MPI_Isend")?;
        }
        Ok(())
    }

    fn track(&mut self, rc: c_int, req: ffi::MPI_Request, id: MsgId, what: &str) -> Result<()> {
        check(rc, what)?;
        self.requests.push(req);
        self.request_msg.push(id.0);
        self.messages[id.0].pending_chunks += 1;
        Ok(())
    }
}

impl<T: Element> Drop for Exchange<'_, T> {
    /// Completes or cancels everything in flight, bounded; aborts the job if MPI may still
    /// use a buffer after that (see [`Exchange`] for why).
    fn drop(&mut self) {
        if self.requests.is_empty() {
            return;
        }
        let limit = wait_timeout();
        // An early return: let healthy peers' messages complete, unless a wait already showed
        // that what is pending does not come.
        if !self.timed_out && matches!(self.complete_within(limit), Ok(true)) {
            return;
        }
        let cancelled = self.cancel_receives();
        match self.complete_within(limit) {
            Ok(true) => {}
            Ok(false) => abort_job(
                self.comm,
                &format!(
                    "rank {} waited {} for {} to complete{}: another rank of the job is stuck \
                     or dead. MPI may still use their buffers, which must not be freed, so the \
                     job is aborted",
                    rank_of(self.comm),
                    seconds(limit),
                    self.pending(),
                    if cancelled == 0 {
                        String::new()
                    } else {
                        format!(" (after cancelling {cancelled} receive requests)")
                    }
                ),
            ),
            Err(e) => abort_job(
                self.comm,
                &format!(
                    "rank {}: cannot complete {} ({e}); MPI may still use their buffers, so \
                     the job is aborted",
                    rank_of(self.comm),
                    self.pending()
                ),
            ),
        }
    }
}

impl<T: Element> Exchange<'_, T> {
    /// Asks MPI to cancel every pending receive (`MPI_Cancel`); the requests still have to be
    /// completed (a cancelled receive completes at once; one already matched completes when its
    /// data has arrived). Returns how many were cancelled.
    fn cancel_receives(&mut self) -> usize {
        let mut n = 0;
        for (req, &msg) in self.requests.iter_mut().zip(&self.request_msg) {
            if !self.messages[msg].is_send() {
                // SAFETY: a valid, active receive request of this exchange.
                unsafe {
                    ffi::MPI_Cancel(req);
                }
                n += 1;
            }
        }
        n
    }
}

/// Byte chunks `(offset, len)` covering `n` bytes, each at most [`MAX_CHUNK_BYTES`]. A zero-length
/// message is still one (empty) chunk so that the receiver's matching receive completes.
fn chunks(n: usize) -> impl Iterator<Item = (usize, c_int)> {
    let count = n.div_ceil(MAX_CHUNK_BYTES).max(1);
    (0..count).map(move |i| {
        let off = i * MAX_CHUNK_BYTES;
        (off, (n - off).min(MAX_CHUNK_BYTES) as c_int)
    })
}

fn ffi_request_null() -> ffi::MPI_Request {
    // SAFETY: reading an immutable extern constant provided by rsmpi's C shim.
    unsafe { ffi::RSMPI_REQUEST_NULL }
}

fn check(rc: c_int, what: &str) -> Result<()> {
    if rc == ffi::MPI_SUCCESS as c_int {
        Ok(())
    } else {
        Err(Error::Mpi(format!(
            "{what} failed with MPI error code {rc}"
        )))
    }
}

/// Checks that the MPI thread level granted is enough for juxmem (it calls MPI only from the
/// thread that calls it, so `Funneled` is the minimum).
pub fn check_thread_level(granted: mpi::Threading) -> Result<()> {
    match granted {
        mpi::Threading::Single => Err(Error::Mpi(
            "MPI was initialised with MPI_THREAD_SINGLE; juxmem needs at least \
             MPI_THREAD_FUNNELED (initialise with mpi::initialize_with_threading)"
                .into(),
        )),
        _ => Ok(()),
    }
}
