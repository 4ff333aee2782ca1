//! [`SharedArray`]: a named array as seen by one group with one layout.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::element::Element;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::plan::{region, Plan, Span};
use crate::service::protocol::*;
use crate::service::store::{Data, Working};

use super::region::{take_write_lock, Lease, RegionLock, RegionRead};
use super::view::View;
use super::{agree, on_root, unexpected, Federation, Group};

/// This process's part of an array, wherever it lives.
enum Local<T> {
    Empty,
    /// A released version held here (zero copy).
    Snapshot(Arc<Data>),
    /// The working copy of this process's own block during a write epoch.
    Working(Arc<Mutex<Working>>),
    /// A copy in this process's layout.
    Owned(Vec<T>),
}

/// Read access to the local part.
pub enum LocalRef<'a, T: Element> {
    #[doc(hidden)]
    Slice(&'a [T]),
    #[doc(hidden)]
    Guard(MutexGuard<'a, Working>, PhantomData<T>),
}

impl<T: Element> Deref for LocalRef<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            LocalRef::Slice(s) => s,
            LocalRef::Guard(g, _) => g.data.typed::<T>(),
        }
    }
}

/// Write access to the local part (under `acquire`).
pub enum LocalMut<'a, T: Element> {
    #[doc(hidden)]
    Slice(&'a mut [T]),
    #[doc(hidden)]
    Guard(MutexGuard<'a, Working>, PhantomData<T>),
}

impl<T: Element> Deref for LocalMut<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            LocalMut::Slice(s) => s,
            LocalMut::Guard(g, _) => g.data.typed::<T>(),
        }
    }
}

impl<T: Element> DerefMut for LocalMut<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            LocalMut::Slice(s) => s,
            LocalMut::Guard(g, _) => g.data.typed_mut::<T>(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    None,
    Write { epoch: u64, base: u64, floor: u64 },
    Read { version: u64, pin: Option<u64> },
}

/// A named shared array as seen by one group with one layout.
pub struct SharedArray<'g, T: Element, G: Group + ?Sized> {
    view: View,
    group: &'g G,
    layout: Layout,
    access: Access,
    local: Local<T>,
    lease: Option<Lease>,
}

impl<'g, T: Element, G: Group + ?Sized> SharedArray<'g, T, G> {
    pub(crate) fn new(fed: Federation, group: &'g G, meta: ArrayMeta, layout: Layout) -> Self {
        SharedArray {
            view: View {
                fed,
                meta,
                rank: group.rank() as u64,
            },
            group,
            layout,
            access: Access::None,
            local: Local::Empty,
            lease: None,
        }
    }

    /// The array's name.
    pub fn name(&self) -> &str {
        self.view.name()
    }

    /// The array's directory entry (as of the last acquire).
    pub fn meta(&self) -> &ArrayMeta {
        &self.view.meta
    }

    /// This handle's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// This process's grid rank in the layout (its rank in the group).
    pub fn rank(&self) -> u64 {
        self.view.rank
    }

    /// The default timeout of this process's waits (`JUXMEM_TIMEOUT`).
    pub fn default_timeout(&self) -> Duration {
        self.view.fed.timeout()
    }

    /// The version currently held (read) or being written from (write).
    pub fn version(&self) -> Option<u64> {
        match self.access {
            Access::None => None,
            Access::Read { version, .. } => Some(version),
            Access::Write { base, .. } => Some(base),
        }
    }

    /// Whether this handle's local part is the group rank's own block, homed here.
    fn owns_block(&self) -> bool {
        self.layout == self.view.meta.spec.layout
            && self.view.fed.is_home(&self.view.meta, self.view.rank)
    }

    /// Takes the array's write lock (collective): the local part then holds the latest version
    /// and may be modified; `put` may write anywhere.
    pub fn acquire(&mut self) -> Result<()> {
        self.acquire_timeout(self.view.fed.timeout())
    }

    /// [`SharedArray::acquire`] waiting at most `timeout` for the lock.
    pub fn acquire_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.check_idle("acquire")?;
        let fed = self.view.fed.clone();
        let (id, manager) = (self.view.meta.id, self.view.meta.manager.clone());
        let mut lease = None;
        let grant = on_root(self.group, || {
            let (l, g) = take_write_lock(&fed, &manager, id, timeout)?;
            lease = Some(l);
            Ok(g)
        })?;
        self.lease = lease;
        let (epoch, base, floor, blocks) = grant;
        self.view.meta.blocks = blocks;
        self.view.meta.committed = base;
        self.access = Access::Write { epoch, base, floor };
        let loaded = self.load_for_write(epoch, base);
        let r = agree(self.group, loaded);
        if r.is_err() {
            self.abort_write();
        }
        r
    }

    fn load_for_write(&mut self, epoch: u64, base: u64) -> Result<()> {
        if self.owns_block() {
            let (id, rank) = (self.view.meta.id, self.view.rank as u32);
            self.local = Local::Working(self.view.fed.inner.store.working(id, rank, epoch, base)?);
        } else {
            let mut v = self.reusable_local()?;
            self.view.fetch_pieces(&self.layout, base, None, &mut v)?;
            self.local = Local::Owned(v);
        }
        Ok(())
    }

    /// Publishes the local parts (collective): every block gets the new version, every replica
    /// is current, then the version is committed and returned.
    pub fn release(&mut self) -> Result<u64> {
        let Access::Write { epoch, base, floor } = self.access else {
            return Err(Error::NotAcquired(format!(
                "release of {} without a write acquire",
                self.name()
            )));
        };
        let version = base + 1;
        let written = self.write_back(epoch, base, version, floor);
        let r = agree(self.group, written).and_then(|_| {
            let lease = &mut self.lease;
            on_root(self.group, || {
                let l = lease
                    .as_mut()
                    .ok_or_else(|| Error::NotAcquired("no lease on the root".into()))?;
                l.commit(version)
            })
        });
        if let Err(e) = r {
            self.abort_write();
            return Err(e);
        }
        self.lease = None;
        self.access = Access::None;
        self.view.meta.committed = version;
        // Keep the published local part readable without a copy.
        if self.owns_block() {
            let (id, rank) = (self.view.meta.id, self.view.rank as u32);
            if let Ok(s) = self.view.fed.inner.store.snapshot(id, rank, version) {
                self.local = Local::Snapshot(s);
            }
        }
        Ok(version)
    }

    fn write_back(&mut self, epoch: u64, base: u64, version: u64, floor: u64) -> Result<()> {
        if self.owns_block() {
            // Own block: publish here (replicas are brought up to date before this returns).
            self.local = Local::Empty;
            return self
                .view
                .publish_block(self.view.rank as u32, epoch, version, floor);
        }
        // Another layout (or remote homes): send our pieces to the homes, then publish the
        // blocks, spread over the group's members.
        if let Local::Owned(v) = &self.local {
            let rank = self.view.rank;
            let plan = Plan::cached(&self.layout, &self.view.meta.spec.layout)?;
            for t in plan.destinations(rank)? {
                let spans: Vec<Span> = plan.spans(rank, t.peer)?;
                let sel = Selection::Piece {
                    target: self.layout.clone(),
                    q: rank,
                };
                self.view
                    .send_write(t.peer as u32, epoch, base, &sel, &spans, v)?;
            }
        }
        agree(self.group, Ok(()))?;
        let nblocks = self.view.meta.blocks.len() as u64;
        let mut b = self.view.rank;
        while b < nblocks {
            self.view.publish_block(b as u32, epoch, version, floor)?;
            b += self.group.size() as u64;
        }
        Ok(())
    }

    fn abort_write(&mut self) {
        if let Some(l) = self.lease.take() {
            l.abort();
        }
        self.access = Access::None;
        self.local = Local::Empty;
    }

    /// Waits for a version (collective) and makes the local part hold it in this handle's
    /// layout, redistributing from the nearest copies. The version stays retained until
    /// [`SharedArray::release_read`].
    pub fn acquire_read(&mut self, req: VersionReq) -> Result<u64> {
        self.acquire_read_timeout(req, self.view.fed.timeout())
    }

    /// [`SharedArray::acquire_read`] waiting at most `timeout` for the version.
    pub fn acquire_read_timeout(&mut self, req: VersionReq, timeout: Duration) -> Result<u64> {
        self.check_idle("acquire_read")?;
        let fed = self.view.fed.clone();
        let (id, manager) = (self.view.meta.id, self.view.meta.manager.clone());
        let (version, pin, blocks) = on_root(self.group, || {
            wait_version(&fed, &manager, id, req, timeout)
        })?;
        self.view.meta.blocks = blocks;
        self.access = Access::Read { version, pin };
        let loaded = self.load_for_read(version);
        if let Err(e) = agree(self.group, loaded) {
            let _ = self.release_read();
            return Err(e);
        }
        Ok(version)
    }

    fn load_for_read(&mut self, version: u64) -> Result<()> {
        let (id, rank) = (self.view.meta.id, self.view.rank);
        let me = &self.view.fed.inner.node.name;
        let held_here = self.layout == self.view.meta.spec.layout
            && self.view.meta.blocks[rank as usize]
                .copies()
                .any(|n| &n.name == me);
        if held_here {
            self.local = Local::Snapshot(self.view.fed.inner.store.snapshot(
                id,
                rank as u32,
                version,
            )?);
            return Ok(());
        }
        let mut v = self.reusable_local()?;
        self.view
            .fetch_pieces(&self.layout, version, None, &mut v)?;
        self.local = Local::Owned(v);
        Ok(())
    }

    /// A buffer for this rank's local part: the previous one when it is ours to reuse (a
    /// pipeline reading every step then touches no fresh pages), else a new one.
    fn reusable_local(&mut self) -> Result<Vec<T>> {
        let n = self.layout.local_len(self.view.rank)? as usize;
        match std::mem::replace(&mut self.local, Local::Empty) {
            Local::Owned(v) if v.len() == n => Ok(v),
            _ => Ok(vec![T::default(); n]),
        }
    }

    /// Ends a read (collective): the version may be dropped once every reader is done.
    pub fn release_read(&mut self) -> Result<()> {
        let Access::Read { pin, .. } = self.access else {
            return Err(Error::NotAcquired(format!(
                "release_read of {} without acquire_read",
                self.name()
            )));
        };
        self.access = Access::None;
        let fed = self.view.fed.clone();
        let (id, manager) = (self.view.meta.id, self.view.meta.manager.clone());
        self.group.barrier();
        on_root(self.group, || match pin {
            Some(p) => fed
                .inner
                .pool
                .call(&manager.addr, &Request::Unpin { array: id, pin: p })
                .map(|_| ()),
            None => Ok(()),
        })
    }

    /// The local part (after `acquire` or `acquire_read`, and after `release` until the next
    /// acquire).
    pub fn local(&self) -> Result<LocalRef<'_, T>> {
        match &self.local {
            Local::Empty => Err(Error::NotAcquired(format!(
                "{}: no local data; acquire first",
                self.name()
            ))),
            Local::Snapshot(d) => Ok(LocalRef::Slice(d.typed::<T>())),
            Local::Owned(v) => Ok(LocalRef::Slice(v)),
            Local::Working(w) => Ok(LocalRef::Guard(
                w.lock().unwrap_or_else(|e| e.into_inner()),
                PhantomData,
            )),
        }
    }

    /// The local part, writable (under `acquire`).
    pub fn local_mut(&mut self) -> Result<LocalMut<'_, T>> {
        if !matches!(self.access, Access::Write { .. }) {
            return Err(Error::NotAcquired(format!(
                "{}: writing needs acquire()",
                self.name()
            )));
        }
        let name = self.name().to_string();
        match &mut self.local {
            Local::Owned(v) => Ok(LocalMut::Slice(v)),
            Local::Working(w) => Ok(LocalMut::Guard(
                w.lock().unwrap_or_else(|e| e.into_inner()),
                PhantomData,
            )),
            _ => Err(Error::NotAcquired(format!(
                "{name}: no writable local data"
            ))),
        }
    }

    /// The local part's address and length, for foreign code (the C ABI). Valid until the
    /// next acquire, release, release_read or drop of this handle; read only unless
    /// `writable` (which needs a write acquire).
    pub fn local_raw(&mut self, writable: bool) -> Result<(*mut T, usize)> {
        if writable && !matches!(self.access, Access::Write { .. }) {
            return Err(Error::NotAcquired(format!(
                "{}: writing needs acquire()",
                self.name()
            )));
        }
        match &mut self.local {
            Local::Empty => Err(Error::NotAcquired(format!(
                "{}: no local data; acquire first",
                self.view.name()
            ))),
            // A snapshot is shared with readers: it is never handed out writable (a write
            // acquire never leaves a snapshot as the local part).
            Local::Snapshot(d) => Ok((d.typed::<T>().as_ptr().cast_mut(), d.typed::<T>().len())),
            Local::Owned(v) => Ok((v.as_mut_ptr(), v.len())),
            Local::Working(w) => {
                // The working copy's memory stays put while the handle holds the Arc.
                let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
                let s = g.data.typed_mut::<T>();
                Ok((s.as_mut_ptr(), s.len()))
            }
        }
    }

    fn check_idle(&self, what: &str) -> Result<()> {
        if self.access != Access::None {
            return Err(Error::NotAcquired(format!(
                "{what} of {} while it is still acquired ({:?}); release it first",
                self.name(),
                self.access
            )));
        }
        Ok(())
    }

    /// Reads the global region `[lo, hi)` into `buf` (row-major over the region), under any
    /// acquire: the version read, or the write epoch's current state. One process alone.
    pub fn get(&self, lo: &[u64], hi: &[u64], buf: &mut [T]) -> Result<()> {
        self.get_ld(lo, hi, buf, None)
    }

    /// [`SharedArray::get`] into a buffer with leading dimensions `ld` (one per dimension but
    /// the last: the buffer's extent along dimensions 1..n), as Global Arrays' `NGA_Get`.
    pub fn get_ld(&self, lo: &[u64], hi: &[u64], buf: &mut [T], ld: Option<&[u64]>) -> Result<()> {
        let (version, epoch) = match self.access {
            Access::Read { version, .. } => (version, None),
            Access::Write { epoch, base, .. } => (base, Some((epoch, base))),
            Access::None => {
                return Err(Error::NotAcquired(format!(
                    "get on {} needs an acquire",
                    self.name()
                )))
            }
        };
        self.view.get_region(version, epoch, lo, hi, buf, ld)
    }

    /// Writes `buf` (row-major over the region) into the global region `[lo, hi)`, under a
    /// write acquire. One process alone.
    pub fn put(&self, lo: &[u64], hi: &[u64], buf: &[T]) -> Result<()> {
        self.put_ld(lo, hi, buf, None)
    }

    /// [`SharedArray::put`] from a buffer with leading dimensions `ld`.
    pub fn put_ld(&self, lo: &[u64], hi: &[u64], buf: &[T], ld: Option<&[u64]>) -> Result<()> {
        let Access::Write { epoch, base, .. } = self.access else {
            return Err(Error::NotAcquired(format!(
                "put on {} needs acquire()",
                self.name()
            )));
        };
        self.view
            .put_region(epoch, base, lo, hi, buf, ld)
            .map(|_| ())
    }

    /// Takes the array's write lock for this process alone, to read-modify-write the region
    /// `[lo, hi)` (entry consistency on a region; e.g. a shared counter).
    pub fn acquire_region(
        &self,
        lo: &[u64],
        hi: &[u64],
        timeout: Duration,
    ) -> Result<RegionLock<T>> {
        region::check_region(&self.view.meta.spec.layout, lo, hi)?;
        let (lease, (epoch, base, floor, blocks)) = take_write_lock(
            &self.view.fed,
            &self.view.meta.manager,
            self.view.meta.id,
            timeout,
        )?;
        let mut view = self.view.clone();
        view.meta.blocks = blocks;
        Ok(RegionLock::new(view, lease, epoch, base, floor, lo, hi))
    }

    /// Waits for a version and holds it for this process alone, to read the region
    /// `[lo, hi)` (the per-process form of `acquire_read`; the version stays retained until
    /// the returned guard is released or dropped).
    pub fn acquire_region_read(
        &self,
        lo: &[u64],
        hi: &[u64],
        req: VersionReq,
        timeout: Duration,
    ) -> Result<RegionRead<T>> {
        region::check_region(&self.view.meta.spec.layout, lo, hi)?;
        let (version, pin, blocks) = wait_version(
            &self.view.fed,
            &self.view.meta.manager,
            self.view.meta.id,
            req,
            timeout,
        )?;
        let mut view = self.view.clone();
        view.meta.blocks = blocks;
        Ok(RegionRead::new(view, version, pin, lo, hi))
    }
}

impl<T: Element, G: Group + ?Sized> Drop for SharedArray<'_, T, G> {
    fn drop(&mut self) {
        if matches!(self.access, Access::Write { .. }) {
            self.abort_write();
        }
    }
}

/// Waits at the array's manager for a version, pinned.
pub(crate) fn wait_version(
    fed: &Federation,
    manager: &NodeInfo,
    id: ArrayId,
    req: VersionReq,
    timeout: Duration,
) -> Result<(u64, Option<u64>, Vec<BlockPlacement>)> {
    let r = fed.inner.pool.call_waiting(
        &manager.addr,
        &Request::WaitVersion {
            array: id,
            req,
            timeout_ms: timeout.as_millis() as u64,
            pin: true,
        },
        timeout,
    )?;
    match r {
        Response::Version {
            version,
            pin,
            blocks,
        } => Ok((version, pin, blocks)),
        other => Err(unexpected("WaitVersion", &other)),
    }
}
