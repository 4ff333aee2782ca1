//! Non-blocking gets and puts (P3's `p3send`/`p3bind`, Global Arrays' `NGA_NbGet`/`NGA_NbPut`):
//! the transfer runs on its own thread while the caller computes, and an [`NbRequest`] tells
//! when it is done.
//!
//! Why a thread per request: a transfer is a blocking exchange with the blocks' homes (the
//! same code as the blocking call, failover retries included), and a request is worth issuing
//! only for a transfer long enough to overlap with computation, next to which starting a
//! thread costs nothing. A handle's requests never outlive what they read or write: every
//! change of access (release, release_read, an aborted write) and the handle's close wait for
//! them first, so a buffer is never written after its handle moved on, and a put is published
//! by the release that follows it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What a request's thread leaves for its waiter.
enum Ending<R> {
    Running,
    Done(Result<R>),
    /// Handed to a waiter already.
    Taken,
}

struct Slot<R> {
    ending: Mutex<Ending<R>>,
    done: Condvar,
}

impl<R> Slot<R> {
    fn lock(&self) -> MutexGuard<'_, Ending<R>> {
        self.ending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn complete(&self, r: Result<R>) {
        *self.lock() = Ending::Done(r);
        self.done.notify_all();
    }
}

/// A non-blocking get or put in flight: [`NbRequest::test`] asks whether it is done,
/// [`NbRequest::wait`] or [`NbRequest::wait_timeout`] gives its outcome (a get's buffer back
/// with the data in it). Dropping it does not cancel the transfer (the array handle still
/// waits for it at its next release).
pub struct NbRequest<R> {
    slot: Arc<Slot<R>>,
}

impl<R> NbRequest<R> {
    /// Whether the transfer has ended (its outcome is then ready for `wait`).
    pub fn test(&self) -> bool {
        !matches!(*self.slot.lock(), Ending::Running)
    }

    /// Waits for the transfer's end and gives its outcome. Each transfer is bounded by the
    /// federation's timeout, as the blocking call is, so this wait ends.
    pub fn wait(self) -> Result<R> {
        let mut o = self.slot.lock();
        while matches!(*o, Ending::Running) {
            o = self.slot.done.wait(o).unwrap_or_else(|e| e.into_inner());
        }
        take(&mut o)
    }

    /// Waits at most `timeout`: `None` if the transfer is still under way (it goes on; wait
    /// again), else its outcome (given once: a later call is refused).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<R>> {
        if !self.ended_within(timeout) {
            return Ok(None);
        }
        take(&mut self.slot.lock()).map(Some)
    }

    /// Waits at most `timeout` for the transfer to end, leaving its outcome for `wait`;
    /// whether it has ended.
    pub fn ended_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut o = self.slot.lock();
        while matches!(*o, Ending::Running) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            o = self
                .slot
                .done
                .wait_timeout(o, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

fn take<R>(o: &mut Ending<R>) -> Result<R> {
    match std::mem::replace(o, Ending::Taken) {
        Ending::Done(r) => r,
        Ending::Taken => Err(Error::InvalidArgument(
            "this non-blocking request was completed already (its outcome was given once)".into(),
        )),
        Ending::Running => unreachable!("taken only once the transfer ended"),
    }
}

/// The error of a transfer that had not started when its handle was closed.
fn closed(what: &str) -> Error {
    Error::NotAcquired(format!(
        "{what}: the array handle was closed before the transfer started"
    ))
}

/// Work a request's thread does after handing over its outcome.
pub(crate) type Tail = Box<dyn FnOnce() + Send>;

/// A handle's requests in flight.
#[derive(Default)]
pub(crate) struct Inflight {
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Requests that hold their own version (`get_version_nb`): the handle's release does not
    /// wait for them (one may wait for the very version that release makes); closing it does.
    apart: Mutex<Vec<JoinHandle<()>>>,
    /// Puts of the current write epoch, whose failures the release must know.
    puts: Mutex<Vec<Arc<Slot<()>>>>,
    closed: Arc<AtomicBool>,
}

impl Inflight {
    /// Runs `transfer` on a thread of its own. `transfer` gets the closed flag: it checks it
    /// before each attempt.
    pub(crate) fn spawn<R: Send + 'static>(
        &self,
        what: &'static str,
        transfer: impl FnOnce(&AtomicBool) -> Result<R> + Send + 'static,
    ) -> Result<NbRequest<R>> {
        self.spawn_then(what, false, move |closed| {
            transfer(closed).map(|r| (r, None))
        })
    }

    /// [`Inflight::spawn`], where a successful transfer may leave work to do after its
    /// outcome is handed to the waiter (letting go of a version it held: a round trip the
    /// waiter need not wait for). That work runs on the request's thread, so whatever waits
    /// for the request waits for it too. An `apart` request (one that holds its own version)
    /// is waited for by the handle's close, not by its release.
    pub(crate) fn spawn_then<R: Send + 'static>(
        &self,
        what: &'static str,
        apart: bool,
        transfer: impl FnOnce(&AtomicBool) -> Result<(R, Option<Tail>)> + Send + 'static,
    ) -> Result<NbRequest<R>> {
        let slot = Arc::new(Slot {
            ending: Mutex::new(Ending::Running),
            done: Condvar::new(),
        });
        let (s, closed) = (slot.clone(), self.closed.clone());
        let run = move || {
            let r = check_open(&closed, what).and_then(|()| {
                catch_unwind(AssertUnwindSafe(|| transfer(&closed))).unwrap_or_else(|_| {
                    Err(Error::Protocol(format!(
                        "{what}: the transfer failed (a panic)"
                    )))
                })
            });
            let (r, tail) = match r {
                Ok((r, tail)) => (Ok(r), tail),
                Err(e) => (Err(e), None),
            };
            s.complete(r);
            if let Some(tail) = tail {
                if catch_unwind(AssertUnwindSafe(tail)).is_err() {
                    tracing::warn!("{what}: the work after the transfer failed (a panic)");
                }
            }
        };
        let list = if apart { &self.apart } else { &self.threads };
        let mut threads = list.lock().unwrap_or_else(|e| e.into_inner());
        threads.retain(|t| !t.is_finished());
        let t = std::thread::Builder::new()
            .name("juxmem-nb".into())
            .spawn(run)
            .map_err(|e| {
                Error::Capacity(format!(
                    "{what}: cannot start a thread for the transfer: {e}"
                ))
            })?;
        threads.push(t);
        drop(threads);
        Ok(NbRequest { slot })
    }

    /// Keeps `put`'s outcome for the release of its write epoch.
    pub(crate) fn track_put(&self, put: &NbRequest<()>) {
        self.puts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(put.slot.clone());
    }

    /// Waits until every request in flight has ended.
    pub(crate) fn finish(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Waits for every request, then gives the first failure of this epoch's puts that nobody
    /// waited for (a release must not publish without it silently), and forgets the puts.
    pub(crate) fn finish_epoch(&self) -> Option<Error> {
        self.finish();
        let puts = std::mem::take(&mut *self.puts.lock().unwrap_or_else(|e| e.into_inner()));
        puts.iter().find_map(|s| match &*s.lock() {
            Ending::Done(Err(e)) => Some(Error::from_wire(
                e.code().as_u32(),
                format!("a non-blocking put that was not waited for failed: {e}"),
            )),
            _ => None,
        })
    }

    /// The handle closes: requests not started yet end with an error, the others are waited
    /// for.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.finish();
        let apart = std::mem::take(&mut *self.apart.lock().unwrap_or_else(|e| e.into_inner()));
        for t in apart {
            let _ = t.join();
        }
    }
}

/// Gives up an attempt of a transfer whose handle was closed meanwhile.
pub(crate) fn check_open(closed: &AtomicBool, what: &str) -> Result<()> {
    if closed.load(Ordering::SeqCst) {
        return Err(self::closed(what));
    }
    Ok(())
}

/// Memory a non-blocking transfer reads or writes: owned (a `Vec` handed back at the end) or
/// the caller's (the C interface), valid until the request ends.
pub(crate) trait NbBuf<T>: Send + 'static {
    fn slice(&self) -> &[T];
    fn slice_mut(&mut self) -> &mut [T];
    /// The data, kept to be written again if a home fails over before the release.
    fn kept(self) -> Vec<T>;
}

impl<T: Copy + Send + 'static> NbBuf<T> for Vec<T> {
    fn slice(&self) -> &[T] {
        self
    }
    fn slice_mut(&mut self) -> &mut [T] {
        self
    }
    fn kept(self) -> Vec<T> {
        self
    }
}

/// A caller's buffer (C), which it promises to leave alone until the request ends.
pub(crate) struct RawBuf<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: the caller of `RawBuf::new` promises exclusive use of the memory by the transfer
// until its request ends; the handle waits for the request before it moves on or closes.
unsafe impl<T: Send> Send for RawBuf<T> {}

impl<T> RawBuf<T> {
    /// # Safety
    /// `ptr` is valid for `len` elements (for writes too, if the transfer writes) and nothing
    /// else touches them until the request ends.
    pub(crate) unsafe fn new(ptr: *mut T, len: usize) -> RawBuf<T> {
        RawBuf { ptr, len }
    }
}

impl<T: Copy + Send + 'static> NbBuf<T> for RawBuf<T> {
    fn slice(&self) -> &[T] {
        // SAFETY: see `RawBuf::new`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn slice_mut(&mut self) -> &mut [T] {
        // SAFETY: see `RawBuf::new`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
    fn kept(self) -> Vec<T> {
        self.slice().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use std::sync::mpsc;

    #[test]
    fn a_request_is_under_way_until_its_transfer_ends_and_gives_its_outcome_once() {
        let inflight = Inflight::default();
        let (go, gate) = mpsc::channel::<()>();
        let mut r = inflight
            .spawn("test", move |_| {
                gate.recv().unwrap();
                Ok(7u32)
            })
            .unwrap();
        assert!(!r.test());
        assert!(r.wait_timeout(Duration::from_millis(50)).unwrap().is_none());
        go.send(()).unwrap();
        assert!(r.ended_within(Duration::from_secs(10)));
        assert_eq!(r.wait_timeout(Duration::ZERO).unwrap(), Some(7));
        assert_eq!(r.wait().unwrap_err().code(), ErrorCode::InvalidArgument);
    }

    #[test]
    fn a_closed_handle_waits_for_its_transfers_and_refuses_to_start_new_ones() {
        let inflight = Inflight::default();
        let ended = Arc::new(AtomicBool::new(false));
        let e = ended.clone();
        let (started, running) = mpsc::channel::<()>();
        let slow = inflight
            .spawn("slow", move |_| {
                started.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                e.store(true, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        running.recv().unwrap();
        inflight.close();
        assert!(
            ended.load(Ordering::SeqCst),
            "close returned before the transfer ended"
        );
        assert!(slow.test());
        let late = inflight.spawn("late", |_| Ok(())).unwrap();
        let e = late.wait().unwrap_err();
        assert_eq!(e.code(), ErrorCode::NotAcquired);
        assert!(e.to_string().contains("closed"), "{e}");
    }

    #[test]
    fn a_failed_put_counts_against_the_release_only_if_nobody_waited_for_it() {
        let inflight = Inflight::default();
        let fail = || Err(Error::Network("lost".into()));
        let seen = inflight.spawn("put_nb", move |_| fail()).unwrap();
        inflight.track_put(&seen);
        assert_eq!(seen.wait().unwrap_err().code(), ErrorCode::Network);
        let ok = inflight.spawn("put_nb", |_| Ok(())).unwrap();
        inflight.track_put(&ok);
        assert!(inflight.finish_epoch().is_none());
        let unseen = inflight.spawn("put_nb", move |_| fail()).unwrap();
        inflight.track_put(&unseen);
        let e = inflight.finish_epoch().expect("the unseen failure");
        assert_eq!(e.code(), ErrorCode::Network);
        assert!(e.to_string().contains("not waited for"), "{e}");
        assert!(
            inflight.finish_epoch().is_none(),
            "a new epoch starts clean"
        );
    }
}
