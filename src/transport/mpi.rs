//! MPI point-to-point inside one job: the only module that calls raw MPI.
//!
//! rsmpi's safe requests tie a receive buffer's borrow to a scope, which stops us unpacking one
//! message while others are still in flight. [`Exchange`] owns its receive buffers instead and
//! hands each back as its message completes, so the executor can overlap unpacking with
//! communication. Messages larger than [`MAX_CHUNK_BYTES`] are split (MPI counts are `int`);
//! chunks between the same pair with the same tag arrive in order (MPI's non-overtaking rule).

use std::marker::PhantomData;
use std::os::raw::c_int;

use mpi::ffi;
use mpi::topology::Communicator;

use crate::element::{as_bytes, as_bytes_mut, Element};
use crate::error::{Error, Result};

/// Largest piece sent in one MPI call (bytes).
pub const MAX_CHUNK_BYTES: usize = 1 << 30;

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
    pending_chunks: usize,
}

/// A set of non-blocking sends and receives on one communicator and tag.
///
/// Dropping an `Exchange` waits for everything still in flight, so no buffer is freed under
/// MPI's feet.
pub struct Exchange<'a, T: Element> {
    comm: ffi::MPI_Comm,
    tag: c_int,
    requests: Vec<ffi::MPI_Request>,
    request_msg: Vec<usize>,
    messages: Vec<Message<T>>,
    _borrows: PhantomData<&'a [T]>,
}

impl<'a, T: Element> Exchange<'a, T> {
    /// A new exchange on `comm` using message tag `tag`.
    pub fn new<C: Communicator>(comm: &'a C, tag: i32) -> Exchange<'a, T> {
        Exchange {
            comm: comm.as_raw(),
            tag,
            requests: Vec::new(),
            request_msg: Vec::new(),
            messages: Vec::new(),
            _borrows: PhantomData,
        }
    }

    /// Sends `data` to `peer` without copying it.
    pub fn send_borrowed(&mut self, peer: i32, data: &'a [T]) -> Result<MsgId> {
        let id = self.push(Buffer::Send { _keep_alive: None });
        self.post_sends(
            id,
            peer,
            as_bytes(data).as_ptr(),
            std::mem::size_of_val(data),
        )?;
        Ok(id)
    }

    /// Sends `data` (typically a packed buffer) to `peer`; the exchange keeps it alive.
    pub fn send(&mut self, peer: i32, data: Vec<T>) -> Result<MsgId> {
        let (ptr, len) = (
            as_bytes(&data).as_ptr(),
            std::mem::size_of_val(data.as_slice()),
        );
        // The Vec's heap buffer does not move when the Vec itself is moved into `messages`.
        let id = self.push(Buffer::Send {
            _keep_alive: Some(data),
        });
        self.post_sends(id, peer, ptr, len)?;
        Ok(id)
    }

    /// Receives `len` elements from `peer`.
    pub fn recv(&mut self, peer: i32, len: usize) -> Result<MsgId> {
        let mut buf = vec![T::default(); len];
        let bytes = as_bytes_mut(&mut buf);
        let (ptr, nbytes) = (bytes.as_mut_ptr(), bytes.len());
        let id = self.push(Buffer::Recv(buf));
        self.post_recvs(id, peer, ptr, nbytes)?;
        Ok(id)
    }

    /// Receives `len` elements from `peer` straight into `dst` (no buffer, no unpacking).
    ///
    /// # Safety
    /// `dst` must be valid for `len` writes until the message completes (or the exchange is
    /// dropped), and nothing else may access those elements meanwhile.
    pub unsafe fn recv_into(&mut self, peer: i32, dst: *mut T, len: usize) -> Result<MsgId> {
        let id = self.push(Buffer::Placed);
        self.post_recvs(id, peer, dst.cast(), len * std::mem::size_of::<T>())?;
        Ok(id)
    }

    fn post_recvs(&mut self, id: MsgId, peer: i32, ptr: *mut u8, nbytes: usize) -> Result<()> {
        for (off, n) in chunks(nbytes) {
            let mut req = ffi_request_null();
            // SAFETY: the buffer is owned by `self.messages[id]` (or guaranteed by the caller of
            // `recv_into`) and outlives the request (Drop waits for all requests); chunks are
            // disjoint and within the buffer.
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
    pub fn wait_any(&mut self) -> Result<Option<MsgId>> {
        loop {
            if self.requests.is_empty() {
                return Ok(None);
            }
            let mut index: c_int = 0;
            // SAFETY: `requests` holds valid requests posted by this exchange.
            let rc = unsafe {
                ffi::MPI_Waitany(
                    self.requests.len() as c_int,
                    self.requests.as_mut_ptr(),
                    &mut index,
                    ffi::RSMPI_STATUS_IGNORE,
                )
            };
            check(rc, "MPI_Waitany")?;
            // SAFETY: reading an immutable extern constant provided by rsmpi's C shim.
            if index == unsafe { ffi::RSMPI_UNDEFINED } {
                return Ok(None);
            }
            let i = index as usize;
            self.requests.swap_remove(i);
            let msg = self.request_msg.swap_remove(i);
            let m = &mut self.messages[msg];
            m.pending_chunks -= 1;
            if m.pending_chunks == 0 {
                return Ok(Some(MsgId(msg)));
            }
        }
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

    fn push(&mut self, buffer: Buffer<T>) -> MsgId {
        self.messages.push(Message {
            buffer,
            pending_chunks: 0,
        });
        MsgId(self.messages.len() - 1)
    }

    fn post_sends(&mut self, id: MsgId, peer: i32, ptr: *const u8, nbytes: usize) -> Result<()> {
        for (off, n) in chunks(nbytes) {
            let mut req = ffi_request_null();
            // SAFETY: the data is borrowed for 'a or owned by `self.messages[id]`, and Drop
            // waits for all requests before either goes away.
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
    fn drop(&mut self) {
        if !self.requests.is_empty() {
            // SAFETY: valid requests posted by this exchange; their buffers are still alive.
            unsafe {
                ffi::MPI_Waitall(
                    self.requests.len() as c_int,
                    self.requests.as_mut_ptr(),
                    ffi::RSMPI_STATUSES_IGNORE,
                );
            }
        }
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
