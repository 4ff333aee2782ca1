//! A provider's memory: the data blocks it holds, each a [`BlockCopy`] (immutable snapshots
//! addressed by stamp, at most one working copy, the fencing rules), plus the memory budget.
//! The provider service and the embedded provider of a rank both use it. Every snapshot and
//! working copy counts against the provider's capacity, and what does not fit fails with the
//! sizes named. A daemon given a data directory ([`DataDir`]) has every change of a block
//! written there before the change is answered, and starts again from it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::element::Element;
use crate::error::{Error, Result};
use crate::service::cache::Caches;
use crate::service::copy::{admit_install, Admission, BlockCopy, Payload, Pusher, Role};
use crate::service::data_dir::{DataDir, SavedBlock};
use crate::service::protocol::{ArrayId, ArrayMeta, CacheStats, NodeInfo, Stamp};
use crate::transport::shm::{Segment, SegmentRef};

/// A read-cache copy: a block's committed state and the layout it is in (as the array's
/// manager gave it when the copy was filled: the copy is served with it, never with a layout
/// a reader sends).
#[derive(Clone)]
pub struct CachedBlock {
    /// The block's bytes.
    pub data: Arc<Data>,
    /// The array's layout.
    pub layout: Arc<crate::layout::Layout>,
    /// Its element size.
    pub elem_size: usize,
}

/// Block bytes, 8-byte aligned so any element type can view them: in a shared-memory segment
/// (large blocks, so that processes of this host read them by mapping it; see
/// [`crate::transport::shm`]) or in process memory.
pub struct Data {
    storage: Storage,
    bytes: usize,
}

enum Storage {
    Heap(Vec<u64>),
    Shared(Segment),
}

impl Data {
    /// `bytes` zero bytes, or a `Capacity` error if this process (or the host's shared memory)
    /// cannot hold them. In process memory the kernel maps untouched pages lazily; a segment
    /// has its pages reserved.
    pub fn zeroed(bytes: usize) -> Result<Data> {
        Data::new(bytes, true)
    }

    /// `bytes` bytes that the caller overwrites whole before anyone reads them (a receive, a
    /// copy): as [`Data::zeroed`], without clearing a reused segment first.
    pub fn for_overwrite(bytes: usize) -> Result<Data> {
        Data::new(bytes, false)
    }

    /// A segment if one can be had (cleared if `zero`), else zeroed process memory.
    fn new(bytes: usize, zero: bool) -> Result<Data> {
        let storage = match Segment::create(bytes, zero)? {
            Some(seg) => Storage::Shared(seg),
            None => Storage::Heap(crate::element::try_zeroed::<u64>(
                bytes.div_ceil(8),
                &|| format!("{bytes} bytes of array data"),
            )?),
        };
        Ok(Data { storage, bytes })
    }

    /// A copy, or a `Capacity` error if this process cannot get the memory.
    pub fn try_clone(&self) -> Result<Data> {
        let mut d = Data::for_overwrite(self.bytes)?;
        d.as_bytes_mut().copy_from_slice(self.as_bytes());
        Ok(d)
    }

    /// Where another process of this host maps it, if it is in shared memory.
    pub fn share(&self) -> Option<SegmentRef> {
        match &self.storage {
            Storage::Shared(seg) => Some(seg.share()),
            Storage::Heap(_) => None,
        }
    }

    fn base(&self) -> *const u8 {
        match &self.storage {
            Storage::Heap(w) => w.as_ptr().cast(),
            Storage::Shared(seg) => seg.as_ptr(),
        }
    }

    fn base_mut(&mut self) -> *mut u8 {
        match &mut self.storage {
            Storage::Heap(w) => w.as_mut_ptr().cast(),
            Storage::Shared(seg) => seg.as_mut_ptr(),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: 8-byte aligned storage of at least `bytes` bytes, viewed as bytes.
        unsafe { std::slice::from_raw_parts(self.base(), self.bytes) }
    }

    /// The bytes, mutably.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; any byte pattern is valid.
        unsafe { std::slice::from_raw_parts_mut(self.base_mut(), self.bytes) }
    }

    /// The data as elements of `T` (alignment at most 8).
    pub fn typed<T: Element>(&self) -> &[T] {
        let size = std::mem::size_of::<T>();
        debug_assert!(std::mem::align_of::<T>() <= 8 && self.bytes % size == 0);
        // SAFETY: 8-byte aligned storage, `Element` types accept any bit pattern.
        unsafe { std::slice::from_raw_parts(self.base().cast::<T>(), self.bytes / size) }
    }

    /// The data as elements of `T`, mutably.
    pub fn typed_mut<T: Element>(&mut self) -> &mut [T] {
        let size = std::mem::size_of::<T>();
        debug_assert!(std::mem::align_of::<T>() <= 8 && self.bytes % size == 0);
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts_mut(self.base_mut().cast::<T>(), self.bytes / size) }
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        if let Storage::Shared(seg) =
            std::mem::replace(&mut self.storage, Storage::Heap(Vec::new()))
        {
            crate::transport::shm::recycle(seg);
        }
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match &self.storage {
            Storage::Heap(_) => "process memory",
            Storage::Shared(_) => "shared memory",
        };
        write!(f, "Data({} bytes in {place})", self.bytes)
    }
}

/// The working copy of a block during a write epoch.
#[derive(Debug)]
pub struct Working {
    /// The data being written.
    pub data: Data,
    /// The rank's own handle gave foreign code a raw pointer to `data` (C's
    /// `juxmem_array_local_write`) that it may write at any time until release: the provider's
    /// threads must not read or write this epoch's copy meanwhile (a data race). The handle's
    /// own calls still may: they run while the foreign code is inside them.
    pub lent: bool,
}

impl Working {
    /// The error for the provider's threads while the data is lent.
    pub fn check_not_lent(&self, what: &str) -> Result<()> {
        if self.lent {
            return Err(Error::Busy(format!(
                "{what}: this block's working copy is being written by its rank through a raw \
                 pointer (juxmem_array_local_write) until that rank releases"
            )));
        }
        Ok(())
    }
}

impl Payload for Arc<Data> {
    type Work = Arc<Mutex<Working>>;

    fn thaw(&self) -> Result<Self::Work> {
        Ok(Arc::new(Mutex::new(Working {
            data: self.try_clone()?,
            lent: false,
        })))
    }

    fn blank(&self) -> Result<Self::Work> {
        Ok(Arc::new(Mutex::new(Working {
            data: Data::zeroed(self.len())?,
            lent: false,
        })))
    }

    fn freeze(work: Self::Work) -> Result<Self> {
        match Arc::try_unwrap(work) {
            Ok(m) => Ok(Arc::new(
                m.into_inner().unwrap_or_else(|e| e.into_inner()).data,
            )),
            // Someone still holds the working copy (a write in flight): copy it.
            Err(shared) => Ok(Arc::new(
                shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .data
                    .try_clone()?,
            )),
        }
    }
}

struct Held {
    copy: BlockCopy<Arc<Data>>,
    /// Bytes of the block (every snapshot and the working copy have this size).
    bytes: u64,
    /// The block's home at a term, as its manager said (the only pusher of installs then).
    home: Option<(u64, NodeInfo)>,
    /// Stamps whose snapshots are in the data directory (if any).
    saved: Vec<Stamp>,
}

impl Held {
    /// Learns the home at `term` (if no older than what is known).
    fn learn(&mut self, term: u64, home: Option<&NodeInfo>) {
        if self.home.as_ref().is_none_or(|(t, _)| *t <= term) {
            self.home = home.map(|h| (term, h.clone()));
        }
    }
}

impl Held {
    fn used(&self) -> u64 {
        self.copy.copies_held() * self.bytes
    }
}

struct Inner {
    metas: HashMap<ArrayId, ArrayMeta>,
    blocks: HashMap<(ArrayId, u32), Held>,
    /// Read-cache copies (their bytes are in `used`; they make room for blocks first).
    caches: Caches<CachedBlock>,
    used: u64,
}

/// The blocks one provider holds.
pub struct Store {
    name: String,
    capacity: u64,
    inner: Mutex<Inner>,
    disk: Option<Arc<DataDir>>,
    /// The directory went to a newer store (a restart): this one writes there no more.
    detached: AtomicBool,
}

/// Writes a block's changes to the data directory: new snapshots first, then the state that
/// lists them, then the snapshots it no longer lists.
fn save_block(disk: &DataDir, array: ArrayId, block: u32, held: &mut Held) -> Result<()> {
    let stamps = held.copy.stamps();
    for &s in stamps.iter().filter(|s| !held.saved.contains(s)) {
        if let Some(data) = held.copy.snapshot(s) {
            disk.save_snapshot(array, block, s, data)?;
        }
    }
    disk.save_block(
        array,
        block,
        &SavedBlock {
            bytes: held.bytes,
            copy: held.copy.state(),
            home: held.home.clone(),
            stamps: stamps.clone(),
        },
    )?;
    for &s in held.saved.iter().filter(|s| !stamps.contains(s)) {
        disk.remove_snapshot(array, block, s);
    }
    held.saved = stamps;
    Ok(())
}

impl Store {
    /// An empty store for provider `name` offering `capacity` bytes.
    pub fn new(name: impl Into<String>, capacity: u64) -> Store {
        Store {
            name: name.into(),
            capacity,
            inner: Mutex::new(Inner {
                metas: HashMap::new(),
                blocks: HashMap::new(),
                caches: Caches::default(),
                used: 0,
            }),
            disk: None,
            detached: AtomicBool::new(false),
        }
    }

    /// The data directory, unless detached.
    fn disk(&self) -> Option<&DataDir> {
        self.disk
            .as_deref()
            .filter(|_| !self.detached.load(Ordering::SeqCst))
    }

    /// Stops writing to the data directory (another store of this provider takes it over).
    pub fn detach_disk(&self) {
        self.detached.store(true, Ordering::SeqCst);
    }

    /// The store of provider `name` kept in `disk`: what it held when its process stopped
    /// (snapshots and homes; working copies are gone, and their epochs refused). A `Capacity`
    /// error if that does not fit in `capacity`.
    pub fn open(name: impl Into<String>, capacity: u64, disk: Arc<DataDir>) -> Result<Store> {
        let mut store = Store::new(name, capacity);
        {
            let inner = store.inner.get_mut().unwrap_or_else(|e| e.into_inner());
            for array in disk.load()? {
                let id = array.meta.id;
                for (block, (saved, snaps)) in array.blocks {
                    let held = Held {
                        copy: BlockCopy::reopen(
                            &saved.copy,
                            snaps.into_iter().map(|(s, d)| (s, Arc::new(d))).collect(),
                        ),
                        bytes: saved.bytes,
                        home: saved.home,
                        saved: saved.stamps,
                    };
                    inner.used += held.used();
                    inner.blocks.insert((id, block), held);
                }
                inner.metas.insert(id, array.meta);
            }
            if inner.used > capacity {
                return Err(Error::Capacity(format!(
                    "data directory {} holds {} bytes; the provider offers {capacity}",
                    disk.path().display(),
                    inner.used
                )));
            }
        }
        store.disk = Some(disk);
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// Memory offered.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Makes room for `bytes` more, dropping read-cache copies (least recently used first) if
    /// that is what it takes; a `Capacity` error naming the sizes if even that is not enough.
    fn check_room(
        &self,
        inner: &mut Inner,
        bytes: u64,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        while inner.used.saturating_add(bytes) > self.capacity {
            let Some((_, cached, freed)) = inner.caches.evict() else {
                break;
            };
            inner.used -= freed;
            crate::transport::shm::drop_later(Box::new(cached));
        }
        if inner.used.saturating_add(bytes) > self.capacity {
            return Err(Error::Capacity(format!(
                "provider {} offers {} bytes and holds {}; {} needs {bytes} more",
                self.name,
                self.capacity,
                inner.used,
                what()
            )));
        }
        Ok(())
    }

    /// Runs `f` on a held block, keeping the memory accounting right whatever `f` changes.
    fn with_block<R>(
        &self,
        array: ArrayId,
        block: u32,
        room_for: u64,
        f: impl FnOnce(&mut BlockCopy<Arc<Data>>) -> Result<R>,
    ) -> Result<R> {
        self.block_op(array, block, room_for, false, f)
    }

    /// [`Self::with_block`] for what changes the block: the change is written to the data
    /// directory (if any) before it is answered.
    fn change_block<R>(
        &self,
        array: ArrayId,
        block: u32,
        room_for: u64,
        f: impl FnOnce(&mut BlockCopy<Arc<Data>>) -> Result<R>,
    ) -> Result<R> {
        self.block_op(array, block, room_for, true, f)
    }

    fn block_op<R>(
        &self,
        array: ArrayId,
        block: u32,
        room_for: u64,
        save: bool,
        f: impl FnOnce(&mut BlockCopy<Arc<Data>>) -> Result<R>,
    ) -> Result<R> {
        let mut inner = self.lock();
        let name = &self.name;
        if room_for > 0 {
            self.check_room(&mut inner, room_for, || {
                format!("block {block} of array {array}")
            })?;
        }
        let held = inner.blocks.get_mut(&(array, block)).ok_or_else(|| {
            Error::NotFound(format!(
                "provider {name} does not hold block {block} of array {array}"
            ))
        })?;
        let before = held.used();
        let r = f(&mut held.copy);
        let after = held.used();
        let saved = match (self.disk(), save) {
            (Some(disk), true) => save_block(disk, array, block, held),
            _ => Ok(()),
        };
        inner.used = inner.used - before + after;
        let r = r?;
        saved.map(|()| r)
    }

    /// Starts holding block `block` of `meta` with the initial zeros, as home if the entry
    /// names this provider its home (at the entry's term); only updates the entry if held.
    /// Refuses an entry whose spec differs from the one held for the same array.
    pub fn host(&self, meta: &ArrayMeta, block: u32) -> Result<()> {
        let bytes = meta.block_bytes(u64::from(block))?;
        let placement = meta.blocks.get(block as usize);
        let term = placement.map_or(1, |p| p.term);
        let role = match placement.and_then(|p| p.home.as_ref()) {
            Some(h) if h.name == self.name => Role::Home,
            _ => Role::Replica,
        };
        let mut inner = self.lock();
        // Array ids are never reused: an entry of another spec (layout, type) for an array held
        // here is a confused or hostile peer, and taking it would size reads and writes of the
        // blocks held by a layout they were not made for.
        if let Some(old) = inner.metas.get(&meta.id) {
            if old.spec != meta.spec {
                return Err(Error::Protocol(format!(
                    "array {} is held here as {} ({} of {}); an entry for it as {} ({} of {}) \
                     cannot replace that",
                    meta.id,
                    old.spec.name,
                    old.spec.layout,
                    old.spec.elem.name(),
                    meta.spec.name,
                    meta.spec.layout,
                    meta.spec.elem.name()
                )));
            }
        }
        let held_here = match inner.blocks.get_mut(&(meta.id, block)) {
            Some(held) => {
                if let Some(p) = placement {
                    held.learn(p.term, p.home.as_ref());
                }
                true
            }
            None => false,
        };
        if held_here {
            inner.metas.insert(meta.id, meta.clone());
            if let Some(disk) = self.disk() {
                disk.save_meta(meta)?;
                if let Some(held) = inner.blocks.get_mut(&(meta.id, block)) {
                    save_block(disk, meta.id, block, held)?;
                }
            }
            return Ok(());
        }
        let data = self
            .check_room(&mut inner, bytes, || {
                format!("block {block} of {} (version 0)", meta.spec.name)
            })
            .and_then(|()| Data::zeroed(bytes as usize));
        // The entry of an array none of whose blocks is held here is not kept: requests for
        // it are refused before anything is sized by its layout.
        if data.is_ok() || inner.blocks.keys().any(|(a, _)| *a == meta.id) {
            inner.metas.insert(meta.id, meta.clone());
        }
        let mut held = Held {
            copy: BlockCopy::new(term, role, Arc::new(data?)),
            bytes,
            home: placement.and_then(|p| p.home.clone().map(|h| (term, h))),
            saved: Vec::new(),
        };
        if let Some(disk) = self.disk() {
            disk.save_meta(meta)?;
            save_block(disk, meta.id, block, &mut held)?;
        }
        inner.used += held.used();
        inner.blocks.insert((meta.id, block), held);
        Ok(())
    }

    /// The entry of an array held here.
    pub fn meta(&self, array: ArrayId) -> Result<ArrayMeta> {
        self.lock().metas.get(&array).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "provider {} holds no array with id {array}",
                self.name
            ))
        })
    }

    /// The entry of an array of which `block` is held here: nothing is sized by a layout for a
    /// block this provider does not hold (a peer could name any block of a large array).
    pub fn meta_of_held(&self, array: ArrayId, block: u32) -> Result<ArrayMeta> {
        let inner = self.lock();
        let meta = inner.metas.get(&array).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "provider {} holds no array with id {array}",
                self.name
            ))
        })?;
        if !inner.blocks.contains_key(&(array, block)) {
            return Err(Error::NotFound(format!(
                "provider {} holds no block {block} of {}",
                self.name, meta.spec.name
            )));
        }
        Ok(meta)
    }

    /// Blocks held, as (array, block).
    pub fn blocks(&self) -> Vec<(ArrayId, u32)> {
        self.lock().blocks.keys().copied().collect()
    }

    /// Whether this provider holds the block as its home.
    pub fn is_home(&self, array: ArrayId, block: u32) -> bool {
        self.lock()
            .blocks
            .get(&(array, block))
            .is_some_and(|h| h.copy.role() == Role::Home)
    }

    /// Committed or published stamps held for a block.
    pub fn stamps(&self, array: ArrayId, block: u32) -> Result<Vec<Stamp>> {
        self.with_block(array, block, 0, |c| Ok(c.stamps()))
    }

    /// The snapshot of exactly `stamp`.
    pub fn snapshot(&self, array: ArrayId, block: u32, stamp: Stamp) -> Result<Arc<Data>> {
        let name = self.name.clone();
        self.with_block(array, block, 0, |c| {
            c.snapshot(stamp).cloned().ok_or_else(|| {
                Error::NotFound(format!(
                    "provider {name} does not hold {stamp} of block {block} of array {array}"
                ))
            })
        })
    }

    /// The working copy of write epoch `epoch` (created from exactly `base` on first use, or
    /// blank when the writer `overwrites` the whole block), if this provider is the block's
    /// home at `term`.
    #[allow(clippy::too_many_arguments)]
    pub fn working(
        &self,
        array: ArrayId,
        block: u32,
        term: u64,
        epoch: u64,
        base: Stamp,
        overwrites: bool,
    ) -> Result<Arc<Mutex<Working>>> {
        let fresh = self.working_if_any(array, block, epoch)?.is_none();
        let room = if fresh {
            self.block_bytes(array, block)?
        } else {
            0
        };
        // A new working copy is written down (its epoch is refused after a restart); the
        // writes into it are not. One that cannot be written down is dropped: the next write
        // tries again, rather than going on unrecorded.
        let r = self.block_op(array, block, room, fresh, |c| {
            c.working(term, epoch, base, overwrites)
        });
        if fresh && r.is_err() {
            let _ = self.with_block(array, block, 0, |c| {
                c.drop_working(epoch);
                Ok(())
            });
        }
        r
    }

    fn block_bytes(&self, array: ArrayId, block: u32) -> Result<u64> {
        self.lock()
            .blocks
            .get(&(array, block))
            .map(|h| h.bytes)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "provider {} does not hold block {block} of array {array}",
                    self.name
                ))
            })
    }

    /// The working copy of `epoch` if one exists (a block not written in the epoch has none).
    pub fn working_if_any(
        &self,
        array: ArrayId,
        block: u32,
        epoch: u64,
    ) -> Result<Option<Arc<Mutex<Working>>>> {
        self.with_block(array, block, 0, |c| Ok(c.working_of(epoch)))
    }

    /// Turns the working copy of `epoch` into the snapshot of `version` and drops snapshots not
    /// in `keep`; returns it (to replicate). `None` when the epoch wrote nothing here.
    pub fn publish(
        &self,
        array: ArrayId,
        block: u32,
        term: u64,
        epoch: u64,
        version: u64,
        keep: &[Stamp],
    ) -> Result<Option<(Stamp, Arc<Data>)>> {
        self.change_block(array, block, 0, |c| c.publish(term, epoch, version, keep))
    }

    /// Stores `data` as `stamp` of a block (replication, restoring), dropping snapshots not in
    /// `keep`.
    pub fn install(
        &self,
        array: ArrayId,
        block: u32,
        term: u64,
        stamp: Stamp,
        keep: &[Stamp],
        data: Data,
    ) -> Result<()> {
        let bytes = data.len() as u64;
        let want = self.block_bytes(array, block)?;
        if bytes != want {
            return Err(Error::Protocol(format!(
                "install of {stamp} of block {block} brings {bytes} bytes; the block has {want}"
            )));
        }
        self.change_block(array, block, bytes, |c| {
            c.install(term, stamp, Arc::new(data), keep)
        })
    }

    /// Whether the copy of a block takes an install at `term` from `pusher` (see
    /// [`admit_install`]).
    pub fn admit_install(
        &self,
        array: ArrayId,
        block: u32,
        term: u64,
        pusher: &Pusher<'_>,
    ) -> Result<Admission> {
        let inner = self.lock();
        let held = inner.blocks.get(&(array, block)).ok_or_else(|| {
            Error::NotFound(format!(
                "provider {} does not hold block {block} of array {array}",
                self.name
            ))
        })?;
        Ok(admit_install(
            held.copy.term(),
            held.copy.role(),
            held.home.as_ref(),
            term,
            pusher,
        ))
    }

    /// Learns a block's home at `term` from its manager.
    pub fn learn_home(&self, array: ArrayId, block: u32, term: u64, home: Option<&NodeInfo>) {
        if let Some(held) = self.lock().blocks.get_mut(&(array, block)) {
            let before = held.home.clone();
            held.learn(term, home);
            if let (Some(disk), true) = (self.disk(), held.home != before) {
                if let Err(e) = save_block(disk, array, block, held) {
                    tracing::warn!("{}: {e}", self.name);
                }
            }
        }
    }

    /// Stores a committed stamp fetched from another copy while restoring (nothing pruned).
    pub fn restore(&self, array: ArrayId, block: u32, stamp: Stamp, data: Data) -> Result<()> {
        let bytes = data.len() as u64;
        let want = self.block_bytes(array, block)?;
        if bytes != want {
            return Err(Error::Protocol(format!(
                "restore of {stamp} of block {block} brings {bytes} bytes; the block has {want}"
            )));
        }
        self.change_block(array, block, bytes, |c| c.restore(stamp, Arc::new(data)))
    }

    /// Becomes the home of a block at `term`.
    pub fn promote(&self, array: ArrayId, block: u32, term: u64) -> Result<()> {
        self.change_block(array, block, 0, |c| c.promote(term))
    }

    /// The block's placement moved to `term` (an old home steps down).
    pub fn fence(&self, array: ArrayId, block: u32, term: u64) -> Result<()> {
        self.change_block(array, block, 0, |c| {
            c.fence(term);
            Ok(())
        })
    }

    /// The read-cache copy of `stamp` of `block` (a hit), if held.
    pub fn cached(&self, array: ArrayId, block: u32, stamp: Stamp) -> Option<CachedBlock> {
        self.lock().caches.get(&(array, block, stamp))
    }

    /// Keeps `cached` as the read-cache copy of `stamp` of `block`, tracked by `manager`,
    /// making room by dropping older cache copies (never a block's copy): `Capacity` if it
    /// does not fit even so.
    pub fn cache(
        &self,
        array: ArrayId,
        block: u32,
        stamp: Stamp,
        manager: NodeInfo,
        cached: CachedBlock,
    ) -> Result<()> {
        let bytes = cached.data.len() as u64;
        let mut inner = self.lock();
        let key = (array, block, stamp);
        if let Some(old) = inner.caches.remove(&key) {
            inner.used -= old.data.len() as u64;
            crate::transport::shm::drop_later(Box::new(old));
        }
        self.check_room(&mut inner, bytes, || {
            format!("a cache copy of {stamp} of block {block} of array {array}")
        })?;
        inner.caches.insert(key, cached, bytes, manager);
        inner.used += bytes;
        Ok(())
    }

    /// Drops the read-cache copies of `array` that its manager, of cluster `by`, lists as
    /// stale; returns how many were dropped.
    pub fn invalidate(&self, array: ArrayId, copies: &[(u32, Stamp)], by: &str) -> usize {
        let mut inner = self.lock();
        let dropped = inner.caches.invalidate(array, copies, by);
        for d in &dropped {
            inner.used -= d.data.len() as u64;
        }
        let n = dropped.len();
        crate::transport::shm::drop_later(Box::new(dropped));
        n
    }

    /// The read cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.lock().caches.stats()
    }

    /// Drops every block of an array (it was destroyed).
    pub fn drop_array(&self, array: ArrayId) {
        let mut inner = self.lock();
        let held: Vec<(ArrayId, u32)> = inner
            .blocks
            .keys()
            .filter(|(a, _)| *a == array)
            .copied()
            .collect();
        for k in held {
            if let Some(h) = inner.blocks.remove(&k) {
                inner.used -= h.used();
            }
        }
        inner.metas.remove(&array);
        if let Some(disk) = self.disk() {
            disk.remove_array(array);
        }
    }

    /// Drops everything (this provider was declared dead: its copies were handed over).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.blocks.clear();
        inner.metas.clear();
        inner.caches = Caches::default();
        inner.used = 0;
        if let Some(disk) = self.disk() {
            if let Err(e) = disk.set_aside() {
                tracing::warn!("{}: {e}", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Dist, Layout};
    use crate::service::protocol::*;

    fn meta(home: &str) -> ArrayMeta {
        let node = |name: &str| NodeInfo {
            name: name.into(),
            cluster: "A".into(),
            addr: "x".into(),
            kind: NodeKind::Daemon,
            incarnation: 1,
        };
        let placement = BlockPlacement {
            term: 1,
            home: Some(node(home)),
            replicas: vec![],
            restoring: vec![],
            stamps: vec![Stamp::default()],
            caches: vec![],
        };
        ArrayMeta {
            id: 7,
            spec: ArraySpec {
                name: "t".into(),
                elem: crate::ElemType::F64,
                layout: Layout::one_d(8, Dist::Block, 2).unwrap(),
                redundancy: Redundancy::NONE,
                retention: Retention::default(),
                homes: HomePlacement::Creator,
                replicate_to: vec![],
                attributes: Default::default(),
            },
            manager: node("A/m"),
            blocks: vec![placement.clone(), placement],
            committed: 0,
            floor: 0,
        }
    }

    fn st(version: u64, epoch: u64) -> Stamp {
        Stamp { version, epoch }
    }

    #[test]
    fn an_overwriting_epoch_starts_blank_and_a_retried_one_from_what_it_published() {
        let s = Store::new("A/p", 1 << 20);
        s.host(&meta("A/p"), 0).unwrap();
        let w = s.working(7, 0, 1, 1, st(0, 0), false).unwrap();
        w.lock().unwrap().data.typed_mut::<f64>().fill(5.0);
        drop(w);
        s.publish(7, 0, 1, 1, 1, &[st(0, 0)]).unwrap().unwrap();
        // Not a copy of version 1: zeroes of its size.
        let w = s.working(7, 0, 1, 2, st(1, 1), true).unwrap();
        assert_eq!(w.lock().unwrap().data.typed::<f64>(), &[0.0; 4]);
        w.lock().unwrap().data.typed_mut::<f64>()[0] = 6.0;
        drop(w);
        s.publish(7, 0, 1, 2, 2, &[st(1, 1)]).unwrap().unwrap();
        // The same epoch again (a retried release) goes on from what it published.
        let w = s.working(7, 0, 1, 2, st(1, 1), true).unwrap();
        assert_eq!(w.lock().unwrap().data.typed::<f64>()[0], 6.0);
        drop(w);
        assert_eq!(
            s.snapshot(7, 0, st(1, 1)).unwrap().typed::<f64>(),
            &[5.0; 4]
        );
    }

    #[test]
    fn only_held_blocks_are_sized_for_peers() {
        let s = Store::new("A/p", 1 << 20);
        s.host(&meta("A/p"), 0).unwrap();
        assert!(s.meta_of_held(7, 0).is_ok());
        // Block 1 of the same array is not held here: no layout work is done for it.
        let e = s.meta_of_held(7, 1).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::NotFound, "{e}");
        assert!(s.meta_of_held(8, 0).is_err());
    }

    #[test]
    fn versions_are_immutable_snapshots_and_pruned_by_keep() {
        let s = Store::new("A/p", 1 << 20);
        s.host(&meta("A/p"), 0).unwrap();
        assert_eq!(s.used(), 32);
        let mut keep = vec![st(0, 0)];
        for v in 1..=3u64 {
            let w = s.working(7, 0, 1, v, st(v - 1, v - 1), false).unwrap();
            w.lock().unwrap().data.typed_mut::<f64>()[0] = v as f64;
            drop(w);
            s.publish(7, 0, 1, v, v, &keep).unwrap().unwrap();
            keep.push(st(v, v));
        }
        assert_eq!(s.snapshot(7, 0, st(2, 2)).unwrap().typed::<f64>()[0], 2.0);
        assert_eq!(s.snapshot(7, 0, st(0, 0)).unwrap().typed::<f64>()[0], 0.0);
        assert_eq!(s.used(), 4 * 32);
        // Keep only v2 and v3 besides the new v4.
        drop(s.working(7, 0, 1, 9, st(3, 3), false).unwrap());
        s.publish(7, 0, 1, 9, 4, &[st(2, 2), st(3, 3)])
            .unwrap()
            .unwrap();
        assert_eq!(
            s.snapshot(7, 0, st(1, 1)).unwrap_err().code(),
            crate::ErrorCode::NotFound
        );
        assert_eq!(s.used(), 3 * 32);
    }

    #[test]
    fn only_the_home_at_the_current_term_takes_writes() {
        let s = Store::new("A/p", 1 << 20);
        s.host(&meta("A/other"), 1).unwrap();
        let e = s.working(7, 1, 1, 1, st(0, 0), false).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Fenced);
        s.promote(7, 1, 2).unwrap();
        assert!(s.working(7, 1, 1, 1, st(0, 0), false).is_err(), "old term");
        assert!(s.working(7, 1, 2, 1, st(0, 0), false).is_ok());
        s.fence(7, 1, 3).unwrap();
        assert!(!s.is_home(7, 1));
        assert_eq!(
            s.used(),
            32,
            "the stepped-down home's working copy is freed"
        );
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("juxmem-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_store_kept_in_a_data_directory_comes_back_and_refuses_the_epoch_it_lost() {
        let dir = scratch("reopen");
        let open = || Store::open("A/p", 1 << 20, Arc::new(DataDir::open(&dir).unwrap())).unwrap();
        let s = open();
        s.host(&meta("A/p"), 0).unwrap();
        let w = s.working(7, 0, 1, 1, st(0, 0), false).unwrap();
        w.lock().unwrap().data.typed_mut::<f64>().fill(5.0);
        drop(w);
        s.publish(7, 0, 1, 1, 1, &[st(0, 0)]).unwrap().unwrap();
        // Epoch 2 is writing when the process stops.
        let w = s.working(7, 0, 1, 2, st(1, 1), false).unwrap();
        w.lock().unwrap().data.typed_mut::<f64>().fill(6.0);
        drop(w);
        // A second provider cannot open the directory meanwhile.
        let e = DataDir::open(&dir).err().expect("busy");
        assert_eq!(e.code(), crate::ErrorCode::Busy, "{e}");
        // A stray snapshot (a process killed before writing the state listing it) goes.
        std::fs::write(dir.join("a7.b0.v9.e9"), [0u8; 32]).unwrap();
        drop(s);
        let s = open();
        assert!(!dir.join("a7.b0.v9.e9").exists());
        assert!(s.is_home(7, 0));
        assert_eq!(s.stamps(7, 0).unwrap(), vec![st(0, 0), st(1, 1)]);
        assert_eq!(
            s.snapshot(7, 0, st(1, 1)).unwrap().typed::<f64>(),
            &[5.0; 4]
        );
        assert_eq!(s.used(), 2 * 32);
        // Epoch 2's writes are gone: it may neither write on nor publish part of them.
        let e = s.working(7, 0, 1, 2, st(1, 1), false).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::NotAcquired, "{e}");
        assert!(
            e.to_string().contains("lost when this provider restarted"),
            "{e}"
        );
        let e = s.publish(7, 0, 1, 2, 2, &[]).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::NotAcquired, "{e}");
        // The next epoch writes and publishes as usual, and is kept in turn.
        drop(s.working(7, 0, 1, 3, st(1, 1), false).unwrap());
        s.publish(7, 0, 1, 3, 2, &[st(1, 1)]).unwrap().unwrap();
        drop(s);
        let s = open();
        assert_eq!(s.stamps(7, 0).unwrap(), vec![st(1, 1), st(2, 3)]);
        assert_eq!(
            s.snapshot(7, 0, st(2, 3)).unwrap().typed::<f64>(),
            &[5.0; 4]
        );
        // Dropping the array empties the directory of it.
        s.drop_array(7);
        drop(s);
        let s = open();
        assert!(s.blocks().is_empty());
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn capacity_is_a_budget() {
        let s = Store::new("A/p", 40);
        s.host(&meta("A/p"), 0).unwrap();
        let e = s.working(7, 0, 1, 1, st(0, 0), false).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Capacity);
        assert!(e.to_string().contains("A/p offers 40 bytes"), "{e}");
        s.clear();
        assert_eq!(s.used(), 0);
    }
}
