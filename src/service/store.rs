//! A provider's memory: the data blocks it holds, as immutable version snapshots plus at most
//! one working copy per block (the write epoch in progress, copy-on-write from the latest
//! snapshot). Pure data management, no I/O; the provider service and the embedded provider of
//! a rank both use it. Memory is a budget: every snapshot and working copy counts against the
//! provider's capacity, and what does not fit fails with the sizes named.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::element::Element;
use crate::error::{Error, Result};
use crate::service::protocol::{ArrayId, ArrayMeta};

/// Block bytes, 8-byte aligned so any element type can view them.
#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    words: Vec<u64>,
    bytes: usize,
}

impl Data {
    /// `bytes` zero bytes (the kernel maps untouched pages lazily).
    pub fn zeroed(bytes: usize) -> Data {
        Data {
            words: vec![0u64; bytes.div_ceil(8)],
            bytes,
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
        // SAFETY: u64 storage viewed as bytes, within its length.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.bytes) }
    }

    /// The bytes, mutably.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; any byte pattern is a valid u64.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.bytes) }
    }

    /// The data as elements of `T` (alignment at most 8).
    pub fn typed<T: Element>(&self) -> &[T] {
        let size = std::mem::size_of::<T>();
        debug_assert!(std::mem::align_of::<T>() <= 8 && self.bytes % size == 0);
        // SAFETY: 8-byte aligned storage, `Element` types accept any bit pattern.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<T>(), self.bytes / size) }
    }

    /// The data as elements of `T`, mutably.
    pub fn typed_mut<T: Element>(&mut self) -> &mut [T] {
        let size = std::mem::size_of::<T>();
        debug_assert!(std::mem::align_of::<T>() <= 8 && self.bytes % size == 0);
        // SAFETY: as above.
        unsafe {
            std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<T>(), self.bytes / size)
        }
    }
}

/// The working copy of a block during a write epoch.
#[derive(Debug)]
pub struct Working {
    /// The write epoch.
    pub epoch: u64,
    /// The data being written.
    pub data: Data,
}

struct Block {
    snapshots: BTreeMap<u64, Arc<Data>>,
    working: Option<Arc<Mutex<Working>>>,
}

struct Inner {
    metas: HashMap<ArrayId, ArrayMeta>,
    blocks: HashMap<(ArrayId, u32), Block>,
    used: u64,
}

/// The blocks one provider holds.
pub struct Store {
    name: String,
    capacity: u64,
    inner: Mutex<Inner>,
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
                used: 0,
            }),
        }
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

    fn charge(&self, inner: &mut Inner, bytes: u64, what: impl FnOnce() -> String) -> Result<()> {
        if inner.used + bytes > self.capacity {
            return Err(Error::Capacity(format!(
                "provider {} offers {} bytes and holds {}; {} needs {bytes} more",
                self.name,
                self.capacity,
                inner.used,
                what()
            )));
        }
        inner.used += bytes;
        Ok(())
    }

    /// Starts holding block `block` of `meta` (as home or replica) with version 0 (zeros), or
    /// updates the entry if already held.
    pub fn host(&self, meta: &ArrayMeta, block: u32) -> Result<()> {
        let bytes = meta.block_bytes(u64::from(block))?;
        let mut inner = self.lock();
        inner.metas.insert(meta.id, meta.clone());
        if inner.blocks.contains_key(&(meta.id, block)) {
            return Ok(());
        }
        self.charge(&mut inner, bytes, || {
            format!("block {block} of {} (version 0)", meta.spec.name)
        })?;
        inner.blocks.insert(
            (meta.id, block),
            Block {
                snapshots: BTreeMap::from([(0, Arc::new(Data::zeroed(bytes as usize)))]),
                working: None,
            },
        );
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

    /// Replaces the entry of an array (after placement changes).
    pub fn update_meta(&self, meta: &ArrayMeta) {
        self.lock().metas.insert(meta.id, meta.clone());
    }

    /// Blocks held, as (array, block).
    pub fn blocks(&self) -> Vec<(ArrayId, u32)> {
        self.lock().blocks.keys().copied().collect()
    }

    fn block<'a>(&self, inner: &'a mut Inner, array: ArrayId, block: u32) -> Result<&'a mut Block> {
        inner.blocks.get_mut(&(array, block)).ok_or_else(|| {
            Error::NotFound(format!(
                "provider {} does not hold block {block} of array {array}",
                self.name
            ))
        })
    }

    /// The snapshot that represents `version`: the newest one not newer than it.
    pub fn snapshot(&self, array: ArrayId, block: u32, version: u64) -> Result<Arc<Data>> {
        let mut inner = self.lock();
        let name = self.name.clone();
        let b = self.block(&mut inner, array, block)?;
        b.snapshots
            .range(..=version)
            .next_back()
            .map(|(_, d)| d.clone())
            .ok_or_else(|| {
                Error::VersionGone(format!(
                    "provider {name} no longer holds version {version} of block {block} of array {array}"
                ))
            })
    }

    /// The working copy of write epoch `epoch` (created from the snapshot of `base` on first
    /// use).
    pub fn working(
        &self,
        array: ArrayId,
        block: u32,
        epoch: u64,
        base: u64,
    ) -> Result<Arc<Mutex<Working>>> {
        let mut inner = self.lock();
        let name = self.name.clone();
        let b = self.block(&mut inner, array, block)?;
        if let Some(w) = &b.working {
            if w.lock().unwrap_or_else(|e| e.into_inner()).epoch == epoch {
                return Ok(w.clone());
            }
        }
        let base_data = b
            .snapshots
            .range(..=base)
            .next_back()
            .map(|(_, d)| d.clone())
            .ok_or_else(|| {
                Error::VersionGone(format!("provider {name}: no snapshot for version {base}"))
            })?;
        let stale = b.working.take().map_or(0, |w| {
            w.lock().unwrap_or_else(|e| e.into_inner()).data.len() as u64
        });
        inner.used -= stale;
        let bytes = base_data.len() as u64;
        self.charge(&mut inner, bytes, || {
            format!("the working copy of block {block} of array {array}")
        })?;
        let w = Arc::new(Mutex::new(Working {
            epoch,
            data: (*base_data).clone(),
        }));
        self.block(&mut inner, array, block)?.working = Some(w.clone());
        Ok(w)
    }

    /// The working copy of `epoch` if one exists (a block not written in the epoch has none).
    pub fn working_if_any(
        &self,
        array: ArrayId,
        block: u32,
        epoch: u64,
    ) -> Result<Option<Arc<Mutex<Working>>>> {
        let mut inner = self.lock();
        let b = self.block(&mut inner, array, block)?;
        Ok(b.working
            .as_ref()
            .filter(|w| w.lock().unwrap_or_else(|e| e.into_inner()).epoch == epoch)
            .cloned())
    }

    /// Turns the working copy of `epoch` into snapshot `version`, drops what `floor` no longer
    /// needs, and returns the snapshot (to replicate). `None` when the epoch wrote nothing here.
    pub fn publish(
        &self,
        array: ArrayId,
        block: u32,
        epoch: u64,
        version: u64,
        floor: u64,
    ) -> Result<Option<Arc<Data>>> {
        let mut inner = self.lock();
        let b = self.block(&mut inner, array, block)?;
        let Some(w) = b.working.take() else {
            return Ok(None);
        };
        let held = w.lock().unwrap_or_else(|e| e.into_inner()).epoch;
        if held != epoch {
            b.working = Some(w);
            return Ok(None);
        }
        let data = match Arc::try_unwrap(w) {
            Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()).data,
            // Someone still holds the working copy (a write in flight): copy it.
            Err(shared) => shared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .data
                .clone(),
        };
        let snap = Arc::new(data);
        // The working copy's bytes now belong to the snapshot: no new charge.
        let freed = insert_snapshot(b, version, snap.clone(), floor);
        inner.used -= freed;
        Ok(Some(snap))
    }

    /// Stores `data` as `version` of a block (replication), dropping what `floor` no longer
    /// needs.
    pub fn install(
        &self,
        array: ArrayId,
        block: u32,
        version: u64,
        floor: u64,
        data: Data,
    ) -> Result<()> {
        let mut inner = self.lock();
        let bytes = data.len() as u64;
        self.block(&mut inner, array, block)?;
        self.charge(&mut inner, bytes, || {
            format!("version {version} of block {block} of array {array}")
        })?;
        let b = self.block(&mut inner, array, block)?;
        let freed = insert_snapshot(b, version, Arc::new(data), floor);
        inner.used -= freed;
        Ok(())
    }
}

/// Inserts a snapshot (replacing leftovers of aborted epochs at or above it) and drops
/// snapshots no longer needed: all but the newest at or below `floor`. Returns bytes freed.
fn insert_snapshot(b: &mut Block, version: u64, snap: Arc<Data>, floor: u64) -> u64 {
    let mut freed = 0;
    for (_, d) in b.snapshots.split_off(&version) {
        freed += d.len() as u64;
    }
    b.snapshots.insert(version, snap);
    let keep_from = b.snapshots.range(..=floor).next_back().map(|(&v, _)| v);
    if let Some(k) = keep_from {
        let kept = b.snapshots.split_off(&k);
        for (_, d) in std::mem::replace(&mut b.snapshots, kept) {
            freed += d.len() as u64;
        }
    }
    freed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Dist, Layout};
    use crate::service::protocol::*;

    fn meta() -> ArrayMeta {
        let node = NodeInfo {
            name: "A/m".into(),
            cluster: "A".into(),
            addr: "x".into(),
            kind: NodeKind::Manager,
            epoch: 1,
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
            },
            manager: node,
            blocks: vec![],
            committed: 0,
            floor: 0,
        }
    }

    #[test]
    fn versions_are_immutable_snapshots_and_pruned_by_floor() {
        let s = Store::new("A/p", 1 << 20);
        let m = meta();
        s.host(&m, 0).unwrap();
        assert_eq!(s.used(), 32);
        for v in 1..=3u64 {
            let w = s.working(7, 0, v, v - 1).unwrap();
            w.lock().unwrap().data.typed_mut::<f64>()[0] = v as f64;
            drop(w);
            s.publish(7, 0, v, v, 0).unwrap().unwrap();
        }
        assert_eq!(s.snapshot(7, 0, 2).unwrap().typed::<f64>()[0], 2.0);
        assert_eq!(s.snapshot(7, 0, 0).unwrap().typed::<f64>()[0], 0.0);
        assert_eq!(s.used(), 4 * 32);
        // Floor 2: versions 0 and 1 go.
        let w = s.working(7, 0, 9, 3).unwrap();
        drop(w);
        s.publish(7, 0, 9, 4, 2).unwrap().unwrap();
        assert_eq!(
            s.snapshot(7, 0, 1).unwrap_err().code(),
            crate::ErrorCode::VersionGone
        );
        assert_eq!(s.used(), 3 * 32);
    }

    #[test]
    fn a_block_untouched_since_keeps_representing_later_versions() {
        let s = Store::new("A/p", 1 << 20);
        s.host(&meta(), 1).unwrap();
        // Version 5 published elsewhere: this block still answers with version 0's data,
        // and pruning at floor 5 keeps it.
        s.install(7, 1, 6, 5, Data::zeroed(32)).unwrap();
        assert!(s.snapshot(7, 1, 5).is_ok());
    }

    #[test]
    fn capacity_is_a_budget() {
        let s = Store::new("A/p", 40);
        s.host(&meta(), 0).unwrap();
        let e = s.working(7, 0, 1, 0).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Capacity);
        assert!(e.to_string().contains("A/p offers 40 bytes"), "{e}");
    }
}
