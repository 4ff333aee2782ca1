//! Per-process forms of acquire: a region locked for read-modify-write ([`RegionLock`]) or a
//! version held for reading a region ([`RegionRead`]). Neither borrows the array handle, so
//! they can outlive the call that made them (and live behind a C handle).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::element::Element;
use crate::error::{Error, Result};
use crate::service::protocol::*;
use crate::service::{contact, failpoint};

use super::nonblocking::{check_open, Inflight, NbRequest};
use super::view::{retry, retry_shared, View};
use super::{unexpected, Federation};

/// A write epoch granted by an array's manager. The lock lives as long as this process's
/// lease there (heartbeats from the lease keeper), so a holder that dies or stops answering
/// loses it and its epoch is aborted.
pub(crate) struct WriteEpoch {
    fed: Federation,
    manager: NodeInfo,
    array: ArrayId,
    pub(crate) epoch: u64,
}

impl WriteEpoch {
    /// Commits `version` with what the release did to each block, and releases the lock.
    pub(crate) fn commit(&self, version: u64, touched: Vec<Touched>) -> Result<()> {
        if failpoint::hit("commit.request_lost") {
            return Err(Error::Network(
                "failpoint: the commit request was lost".into(),
            ));
        }
        let req = Request::Commit {
            array: self.array,
            epoch: self.epoch,
            version,
            touched,
        };
        self.fed
            .inner
            .pool
            .call_manager(&contact::of_node(&self.manager), &req)?;
        if failpoint::hit("commit.reply_lost") {
            return Err(Error::Network(
                "failpoint: the commit's answer was lost".into(),
            ));
        }
        Ok(())
    }

    /// Gives the lock up without publishing.
    pub(crate) fn abort(self) {
        let req = Request::Abort {
            array: self.array,
            epoch: self.epoch,
        };
        let _ = self
            .fed
            .inner
            .pool
            .call_manager(&contact::of_node(&self.manager), &req);
    }
}

/// What a write lock grant says.
pub(crate) struct Granted {
    pub(crate) epoch: WriteEpoch,
    pub(crate) base: u64,
    pub(crate) floor: u64,
    pub(crate) blocks: Vec<BlockPlacement>,
}

/// Takes an array's write lock, under this process's lease at the array's manager.
pub(crate) fn take_write_lock(
    fed: &Federation,
    manager: &NodeInfo,
    id: ArrayId,
    layout: &crate::layout::Layout,
    timeout: Duration,
    reader: Option<u64>,
) -> Result<Granted> {
    fed.ensure_lease(manager)?;
    let timeout_ms = timeout.as_millis() as u64;
    let req = match reader {
        Some(reader) => Request::AcquireWriteAsReader {
            array: id,
            timeout_ms,
            reader,
        },
        None => Request::AcquireWrite {
            array: id,
            timeout_ms,
        },
    };
    let r = fed
        .inner
        .pool
        .call_manager_waiting(&contact::of_node(manager), &req, Some(timeout))?;
    match r {
        Response::WriteGranted {
            epoch,
            base,
            floor,
            blocks,
        } => {
            let epoch = WriteEpoch {
                fed: fed.clone(),
                manager: manager.clone(),
                array: id,
                epoch,
            };
            if let Err(e) = check_placement(layout, &blocks) {
                epoch.abort();
                return Err(e);
            }
            Ok(Granted {
                epoch,
                base,
                floor,
                blocks,
            })
        }
        other => Err(unexpected("AcquireWrite", &other)),
    }
}

/// One `put` of a region lock, kept to be written again if a home fails over before the
/// release commits.
struct Put<T> {
    buf: Vec<T>,
    ld: Option<Vec<u64>>,
}

/// A region locked by one process for read-modify-write. Dropping it without `release`
/// aborts: nothing written is published.
pub struct RegionLock<T: Element> {
    view: View,
    epoch: Option<WriteEpoch>,
    base: u64,
    floor: u64,
    lo: Vec<u64>,
    hi: Vec<u64>,
    puts: Vec<Put<T>>,
    touched: Vec<u32>,
    _elem: PhantomData<T>,
}

impl<T: Element> RegionLock<T> {
    pub(crate) fn new(view: View, granted: Granted, lo: &[u64], hi: &[u64]) -> Self {
        let mut view = view;
        view.meta.blocks = granted.blocks;
        RegionLock {
            view,
            epoch: Some(granted.epoch),
            base: granted.base,
            floor: granted.floor,
            lo: lo.to_vec(),
            hi: hi.to_vec(),
            puts: Vec::new(),
            touched: Vec::new(),
            _elem: PhantomData,
        }
    }

    /// The version this lock started from.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The locked region's corners `[lo, hi)`.
    pub fn region(&self) -> (&[u64], &[u64]) {
        (&self.lo, &self.hi)
    }

    fn epoch(&self) -> Result<u64> {
        self.epoch
            .as_ref()
            .map(|e| e.epoch)
            .ok_or_else(|| Error::NotAcquired("the region lock was released".into()))
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.view.fed.retry_budget()
    }

    /// Writes every put so far again, to the homes of the current placement (after a
    /// failover the new home starts the epoch from the committed state).
    fn replay(view: &View, epoch: u64, lo: &[u64], hi: &[u64], puts: &[Put<T>]) -> Result<()> {
        for p in puts {
            view.put_region(epoch, lo, hi, &p.buf, p.ld.as_deref())?;
        }
        Ok(())
    }

    /// Reads the locked region's current contents (row-major over the region).
    pub fn get(&self, buf: &mut [T]) -> Result<()> {
        self.get_ld(buf, None)
    }

    /// [`RegionLock::get`] into a buffer with leading dimensions `ld`.
    pub fn get_ld(&self, buf: &mut [T], ld: Option<&[u64]>) -> Result<()> {
        let epoch = self.epoch()?;
        let (lo, hi, puts) = (&self.lo, &self.hi, &self.puts);
        retry_shared(
            &self.view,
            self.deadline(),
            "reading a locked region",
            |v, moved| {
                if moved {
                    Self::replay(v, epoch, lo, hi, puts)?;
                }
                v.get_region(self.base, Some(epoch), lo, hi, buf, ld)
            },
        )
    }

    /// Writes the locked region (row-major over the region).
    pub fn put(&mut self, buf: &[T]) -> Result<()> {
        self.put_ld(buf, None)
    }

    /// [`RegionLock::put`] from a buffer with leading dimensions `ld`.
    pub fn put_ld(&mut self, buf: &[T], ld: Option<&[u64]>) -> Result<()> {
        let epoch = self.epoch()?;
        let deadline = self.deadline();
        let (lo, hi, puts) = (&self.lo, &self.hi, &self.puts);
        let mut fresh = false;
        let touched = retry(&mut self.view, deadline, "writing a locked region", |v| {
            if fresh {
                Self::replay(v, epoch, lo, hi, puts)?;
            }
            fresh = true;
            v.put_region(epoch, lo, hi, buf, ld)
        })?;
        self.puts.push(Put {
            buf: buf.to_vec(),
            ld: ld.map(<[u64]>::to_vec),
        });
        for b in touched {
            if !self.touched.contains(&b) {
                self.touched.push(b);
            }
        }
        Ok(())
    }

    /// Publishes the written blocks as a new version (every live copy current) and commits
    /// it. A home that fails over meanwhile is written again and the release retried, within
    /// the federation's timeout.
    pub fn release(mut self) -> Result<u64> {
        let epoch = self.epoch()?;
        let version = self.base + 1;
        let (floor, deadline) = (self.floor, self.deadline());
        let (lo, hi, puts, touched) = (&self.lo, &self.hi, &self.puts, &self.touched);
        let lock = self.epoch.as_ref().expect("checked above");
        let mut fresh = false;
        let r = retry(&mut self.view, deadline, "releasing a region lock", |v| {
            if fresh {
                Self::replay(v, epoch, lo, hi, puts)?;
            }
            fresh = true;
            let mut done = Vec::new();
            for &b in touched {
                done.extend(v.publish_block(b, epoch, version, floor)?);
            }
            let _ = failpoint::hit("release.before_commit");
            lock.commit(version, done)
        });
        match r {
            Ok(()) => {
                self.epoch = None;
                Ok(version)
            }
            Err(e) => Err(e),
        }
    }
}

impl<T: Element> Drop for RegionLock<T> {
    fn drop(&mut self) {
        if let Some(l) = self.epoch.take() {
            l.abort();
        }
    }
}

/// A version held by one process for reading a region. Dropping it lets the version go.
pub struct RegionRead<T: Element> {
    view: View,
    version: u64,
    pin: Option<u64>,
    lo: Vec<u64>,
    hi: Vec<u64>,
    /// Non-blocking gets in flight (waited for before the version goes).
    inflight: Inflight,
    _elem: PhantomData<T>,
}

impl<T: Element> RegionRead<T> {
    pub(crate) fn new(view: View, version: u64, pin: Option<u64>, lo: &[u64], hi: &[u64]) -> Self {
        RegionRead {
            view,
            version,
            pin,
            lo: lo.to_vec(),
            hi: hi.to_vec(),
            inflight: Inflight::default(),
            _elem: PhantomData,
        }
    }

    /// Waits for the version `req` of `view`'s array and holds it (a pin at its manager) for
    /// reading the region `[lo, hi)`, already checked.
    pub(crate) fn hold(
        view: &View,
        lo: &[u64],
        hi: &[u64],
        req: VersionReq,
        timeout: Duration,
        reader: Option<u64>,
    ) -> Result<Self> {
        let (version, pin, blocks) = super::shared::wait_version(
            &view.fed,
            &view.meta.manager,
            view.meta.id,
            &view.meta.spec.layout,
            req,
            timeout,
            reader,
            true,
        )?;
        let mut view = view.clone();
        view.meta.blocks = blocks;
        Ok(RegionRead::new(view, version, pin, lo, hi))
    }

    /// The version held.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The region's corners `[lo, hi)`.
    pub fn region(&self) -> (&[u64], &[u64]) {
        (&self.lo, &self.hi)
    }

    /// Reads the region at the version held (row-major over the region).
    pub fn get(&self, buf: &mut [T]) -> Result<()> {
        self.get_ld(buf, None)
    }

    /// [`RegionRead::get`] into a buffer with leading dimensions `ld`.
    pub fn get_ld(&self, buf: &mut [T], ld: Option<&[u64]>) -> Result<()> {
        let deadline = Instant::now() + self.view.fed.retry_budget();
        retry_shared(&self.view, deadline, "reading a region", |v, _| {
            v.get_region(self.version, None, &self.lo, &self.hi, buf, ld)
        })
    }

    /// Starts reading the region at the version held into `buf` and returns at once (for
    /// example the next cycle's input, while this one is computed): the request's `wait`
    /// hands `buf` back with the data. The version is let go only once every such read ended.
    pub fn get_nb(&self, buf: Vec<T>) -> Result<NbRequest<Vec<T>>> {
        self.get_nb_ld(buf, None)
    }

    /// [`RegionRead::get_nb`] into a buffer with leading dimensions `ld`.
    pub fn get_nb_ld(&self, mut buf: Vec<T>, ld: Option<&[u64]>) -> Result<NbRequest<Vec<T>>> {
        self.view
            .prepare_region(&self.lo, &self.hi, ld, buf.len())?;
        let (view, version) = (self.view.clone(), self.version);
        let (lo, hi, ld) = (self.lo.clone(), self.hi.clone(), ld.map(<[u64]>::to_vec));
        let deadline = Instant::now() + self.view.fed.retry_budget();
        self.inflight.spawn("get_nb", move |closed| {
            retry_shared(&view, deadline, "reading a region", |v, _| {
                check_open(closed, "get_nb")?;
                v.get_region(version, None, &lo, &hi, &mut buf, ld.as_deref())
            })?;
            Ok(buf)
        })
    }

    /// Lets the version go (once the non-blocking reads in flight ended).
    pub fn release(mut self) -> Result<()> {
        self.inflight.finish();
        self.unpin()
    }

    fn unpin(&mut self) -> Result<()> {
        match self.pin.take() {
            Some(pin) => {
                let req = Request::Unpin {
                    array: self.view.meta.id,
                    pin,
                };
                self.view
                    .fed
                    .inner
                    .pool
                    .call_manager(&contact::of_node(&self.view.meta.manager), &req)
                    .map(|_| ())
            }
            None => Ok(()),
        }
    }
}

impl<T: Element> Drop for RegionRead<T> {
    fn drop(&mut self) {
        self.inflight.close();
        let _ = self.unpin();
    }
}
