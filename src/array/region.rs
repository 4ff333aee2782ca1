//! Per-process forms of acquire: a region locked for read-modify-write ([`RegionLock`]) or a
//! version held for reading a region ([`RegionRead`]). Neither borrows the array handle, so
//! they can outlive the call that made them (and live behind a C handle).

use std::marker::PhantomData;
use std::time::Duration;

use crate::element::Element;
use crate::error::{Error, Result};
use crate::service::protocol::*;
use crate::transport::tcp::Conn;

use super::view::View;
use super::{unexpected, Federation};

/// A write epoch's lease: the manager connection the lock was granted on (closing it aborts).
pub(crate) struct Lease {
    conn: Conn,
    array: ArrayId,
    epoch: u64,
}

impl Lease {
    /// Commits `version` and releases the lock.
    pub(crate) fn commit(&mut self, version: u64) -> Result<()> {
        self.conn.send(&Request::Commit {
            array: self.array,
            epoch: self.epoch,
            version,
        })?;
        self.conn.recv::<Response>()?.into_result().map(|_| ())
    }

    /// Gives the lock up without publishing (closing the connection would too).
    pub(crate) fn abort(mut self) {
        let _ = self.conn.send(&Request::Abort {
            array: self.array,
            epoch: self.epoch,
        });
        let _ = self.conn.recv::<Response>();
    }
}

pub(crate) type Granted = (u64, u64, u64, Vec<BlockPlacement>);

/// Takes an array's write lock on a dedicated manager connection (the lease).
pub(crate) fn take_write_lock(
    fed: &Federation,
    manager: &NodeInfo,
    id: ArrayId,
    timeout: Duration,
) -> Result<(Lease, Granted)> {
    let pool = &fed.inner.pool;
    let mut conn = crate::transport::tcp::connect(&manager.addr, pool.hello(), pool.net())?;
    conn.set_read_timeout(Some(timeout + pool.net().io_timeout))?;
    conn.send(&Request::AcquireWrite {
        array: id,
        timeout_ms: timeout.as_millis() as u64,
    })?;
    match conn.recv::<Response>()?.into_result()? {
        Response::WriteGranted {
            epoch,
            base,
            floor,
            blocks,
        } => {
            conn.set_read_timeout(Some(pool.net().io_timeout))?;
            Ok((
                Lease {
                    conn,
                    array: id,
                    epoch,
                },
                (epoch, base, floor, blocks),
            ))
        }
        other => Err(unexpected("AcquireWrite", &other)),
    }
}

/// A region locked by one process for read-modify-write. Dropping it without `release`
/// aborts: nothing written is published.
pub struct RegionLock<T: Element> {
    view: View,
    lease: Option<Lease>,
    epoch: u64,
    base: u64,
    floor: u64,
    lo: Vec<u64>,
    hi: Vec<u64>,
    touched: Vec<u32>,
    _elem: PhantomData<T>,
}

impl<T: Element> RegionLock<T> {
    pub(crate) fn new(
        view: View,
        lease: Lease,
        epoch: u64,
        base: u64,
        floor: u64,
        lo: &[u64],
        hi: &[u64],
    ) -> Self {
        RegionLock {
            view,
            lease: Some(lease),
            epoch,
            base,
            floor,
            lo: lo.to_vec(),
            hi: hi.to_vec(),
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

    /// Reads the locked region's current contents (row-major over the region).
    pub fn get(&self, buf: &mut [T]) -> Result<()> {
        self.get_ld(buf, None)
    }

    /// [`RegionLock::get`] into a buffer with leading dimensions `ld`.
    pub fn get_ld(&self, buf: &mut [T], ld: Option<&[u64]>) -> Result<()> {
        self.view.get_region(
            self.base,
            Some((self.epoch, self.base)),
            &self.lo,
            &self.hi,
            buf,
            ld,
        )
    }

    /// Writes the locked region (row-major over the region).
    pub fn put(&mut self, buf: &[T]) -> Result<()> {
        self.put_ld(buf, None)
    }

    /// [`RegionLock::put`] from a buffer with leading dimensions `ld`.
    pub fn put_ld(&mut self, buf: &[T], ld: Option<&[u64]>) -> Result<()> {
        let touched = self
            .view
            .put_region(self.epoch, self.base, &self.lo, &self.hi, buf, ld)?;
        for b in touched {
            if !self.touched.contains(&b) {
                self.touched.push(b);
            }
        }
        Ok(())
    }

    /// Publishes the written blocks as a new version (replicas current) and commits it.
    pub fn release(mut self) -> Result<u64> {
        let version = self.base + 1;
        for &b in &self.touched {
            self.view
                .publish_block(b, self.epoch, version, self.floor)?;
        }
        let mut lease = self
            .lease
            .take()
            .ok_or_else(|| Error::NotAcquired("region lock already released".into()))?;
        lease.commit(version)?;
        Ok(version)
    }
}

impl<T: Element> Drop for RegionLock<T> {
    fn drop(&mut self) {
        if let Some(l) = self.lease.take() {
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
            _elem: PhantomData,
        }
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
        self.view
            .get_region(self.version, None, &self.lo, &self.hi, buf, ld)
    }

    /// Lets the version go.
    pub fn release(mut self) -> Result<()> {
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
                    .call(&self.view.meta.manager.addr, &req)
                    .map(|_| ())
            }
            None => Ok(()),
        }
    }
}

impl<T: Element> Drop for RegionRead<T> {
    fn drop(&mut self) {
        let _ = self.unpin();
    }
}
