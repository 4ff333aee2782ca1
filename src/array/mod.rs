//! The shared-array API: join the federation, create or open named arrays, and access them
//! under home-based coherence with versions.
//!
//! ```no_run
//! # use juxmem::array::{ArrayOptions, Federation, Solo};
//! # use juxmem::layout::{Dist, Layout};
//! # use juxmem::service::protocol::VersionReq;
//! # fn main() -> juxmem::Result<()> {
//! let fed = Federation::from_env()?; // JUXMEM_CLUSTER, JUXMEM_FEDERATION_DIR, ...
//! let layout = Layout::one_d(1000, Dist::Block, 1)?;
//! let mut a = fed.create::<f64, _>(&Solo, "demo/x", ArrayOptions::new(layout))?;
//! a.acquire()?;
//! a.local_mut()?.fill(1.0);
//! let v = a.release()?; // version 1, replicas current
//! a.acquire_read(VersionReq::AtLeast(v))?;
//! assert_eq!(a.local()?[0], 1.0);
//! a.release_read()?;
//! # Ok(()) }
//! ```
//!
//! Collective operations (`create`, `open`, `acquire`, `release`, `acquire_read`,
//! `release_read`) are called by every member of the group together; `get`, `put` and
//! `acquire_region` are called by one process alone.

pub mod group;

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use group::{agree, on_root, Group, Solo};

use crate::config::Config;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::plan::stream::{copy_to_ptr, pack_to, span_elements, unpack_from_ptr};
use crate::plan::{region, Plan, Span};
use crate::service::node::RunningProvider;
use crate::service::protocol::*;
use crate::service::store::{Data, Working};
use crate::transport::tcp::{io_error, Conn};

/// How to create an array.
#[derive(Clone, Debug)]
pub struct ArrayOptions {
    layout: Layout,
    redundancy: Redundancy,
    retention: Retention,
    homes: HomePlacement,
    replicate_to: Vec<String>,
}

impl ArrayOptions {
    /// An array stored in `layout` (block `i` = grid rank `i`'s part, homed on that rank), one
    /// copy per block, 4 versions retained, writers blocked until the oldest is read.
    pub fn new(layout: Layout) -> ArrayOptions {
        ArrayOptions {
            layout,
            redundancy: Redundancy::NONE,
            retention: Retention::default(),
            homes: HomePlacement::Creator,
            replicate_to: vec![],
        }
    }

    /// Copies in `clusters` clusters, `providers_per_cluster` providers each.
    pub fn redundancy(mut self, clusters: u32, providers_per_cluster: u32) -> ArrayOptions {
        self.redundancy = Redundancy {
            clusters,
            providers_per_cluster,
        };
        self
    }

    /// Prefer these clusters for copies outside the home's (e.g. the consumer's cluster).
    pub fn replicate_to<S: Into<String>>(
        mut self,
        clusters: impl IntoIterator<Item = S>,
    ) -> ArrayOptions {
        self.replicate_to = clusters.into_iter().map(Into::into).collect();
        self
    }

    /// Versions retained and the policy at the bound.
    pub fn retention(mut self, max_versions: u32, on_full: FullPolicy) -> ArrayOptions {
        self.retention = Retention {
            max_versions,
            on_full,
        };
        self
    }

    /// Home every block on a provider daemon of the creating cluster instead of on the
    /// creating ranks (the data then does not depend on the creating job at all).
    pub fn homes_on_daemons(mut self) -> ArrayOptions {
        self.homes = HomePlacement::Daemons;
        self
    }
}

struct FedInner {
    provider: Mutex<RunningProvider>,
    node: NodeInfo,
    store: Arc<crate::service::store::Store>,
    pool: Arc<crate::service::pool::Pool>,
    manager: crate::service::contact::Contact,
    cfg: Config,
}

/// This process's membership in the federation: its embedded provider and its connections.
/// Cheap to clone; the process leaves the federation when the last clone is dropped (or at
/// [`Federation::leave`]): the blocks it is home of move to their replicas.
#[derive(Clone)]
pub struct Federation {
    inner: Arc<FedInner>,
}

impl Federation {
    /// Joins with settings from the `JUXMEM_*` variables (see [`crate::config`]).
    pub fn from_env() -> Result<Federation> {
        Federation::join(Config::from_env()?)
    }

    /// Joins with `cfg`; the process's provider is named after its pid.
    pub fn join(cfg: Config) -> Result<Federation> {
        let label = format!("pid{}", std::process::id());
        Federation::join_as(cfg, &label)
    }

    /// Joins with `cfg`; the process's provider is named `<cluster>/<label>`.
    pub fn join_as(cfg: Config, label: &str) -> Result<Federation> {
        let p = RunningProvider::start(&cfg, NodeKind::Rank, label, cfg.capacity)?;
        Ok(Federation {
            inner: Arc::new(FedInner {
                node: p.node.clone(),
                store: p.store.clone(),
                pool: p.pool.clone(),
                manager: p.manager.clone(),
                provider: Mutex::new(p),
                cfg,
            }),
        })
    }

    /// This process's node.
    pub fn node(&self) -> &NodeInfo {
        &self.inner.node
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    fn timeout(&self) -> Duration {
        self.inner.cfg.timeout()
    }

    fn manager_call(&self, req: &Request) -> Result<Response> {
        self.inner.pool.call_manager(&self.inner.manager, req)
    }

    /// Names matching `pattern` across the federation (`*` wildcards; `ns/` lists a namespace).
    pub fn list(&self, pattern: &str) -> Result<Vec<NameEntry>> {
        match self.manager_call(&Request::List {
            pattern: pattern.into(),
            forwarded: false,
        })? {
            Response::Names(n) => Ok(n),
            other => Err(unexpected("List", &other)),
        }
    }

    /// The federation's state.
    pub fn status(&self) -> Result<Vec<ClusterStatus>> {
        match self.manager_call(&Request::Status { forwarded: false })? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected("Status", &other)),
        }
    }

    /// Finds an array's entry by name.
    pub fn lookup(&self, name: &str) -> Result<ArrayMeta> {
        check_name(name)?;
        match self.manager_call(&Request::Lookup {
            name: name.into(),
            forwarded: false,
        })? {
            Response::Meta(m) => Ok(m),
            other => Err(unexpected("Lookup", &other)),
        }
    }

    /// Leaves now (see the type's documentation).
    pub fn leave(&self) -> Result<()> {
        self.inner
            .provider
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .leave()
    }

    /// Creates array `name` of `T` (collective over `group`, whose rank `i` is grid rank `i` of
    /// the layout and, by default, the home of block `i`).
    pub fn create<'g, T: Element, G: Group + ?Sized>(
        &self,
        group: &'g G,
        name: &str,
        opts: ArrayOptions,
    ) -> Result<SharedArray<'g, T, G>> {
        check_name(name)?;
        check_group(&opts.layout, group)?;
        let me =
            postcard::to_stdvec(&self.inner.node).map_err(|e| Error::Protocol(e.to_string()))?;
        let homes: Vec<NodeInfo> = group
            .all_gather_bytes(&me)
            .iter()
            .map(|b| postcard::from_bytes(b).map_err(|e| Error::Protocol(e.to_string())))
            .collect::<Result<_>>()?;
        let spec = ArraySpec {
            name: name.into(),
            elem: T::TYPE,
            layout: opts.layout.clone(),
            redundancy: opts.redundancy,
            retention: opts.retention,
            homes: opts.homes,
            replicate_to: opts.replicate_to,
        };
        let meta = on_root(group, || {
            let homes = if spec.homes == HomePlacement::Creator {
                homes
            } else {
                vec![]
            };
            match self.manager_call(&Request::Create {
                spec: spec.clone(),
                homes,
            })? {
                Response::Meta(m) => Ok(m),
                other => Err(unexpected("Create", &other)),
            }
        })?;
        let rank = group.rank() as u64;
        let hosted = if self.is_home(&meta, rank) {
            self.inner.store.host(&meta, rank as u32)
        } else {
            Ok(())
        };
        agree(group, hosted)?;
        Ok(SharedArray::new(self.clone(), group, meta, opts.layout))
    }

    /// Opens array `name` with this group's `layout` (collective). Fails at once with
    /// `NotFound` if no such array exists.
    pub fn open<'g, T: Element, G: Group + ?Sized>(
        &self,
        group: &'g G,
        name: &str,
        layout: Layout,
    ) -> Result<SharedArray<'g, T, G>> {
        self.open_wait(group, name, layout, Duration::ZERO)
    }

    /// Like [`Federation::open`], waiting up to `timeout` for the array to be created (a
    /// pipeline stage started before its producer).
    pub fn open_wait<'g, T: Element, G: Group + ?Sized>(
        &self,
        group: &'g G,
        name: &str,
        layout: Layout,
        timeout: Duration,
    ) -> Result<SharedArray<'g, T, G>> {
        check_name(name)?;
        check_group(&layout, group)?;
        let meta = on_root(group, || {
            let deadline = std::time::Instant::now() + timeout;
            loop {
                match self.lookup(name) {
                    Err(Error::NotFound(m)) if std::time::Instant::now() < deadline => {
                        let _ = m;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(Error::NotFound(m)) if !timeout.is_zero() => {
                        return Err(Error::Timeout {
                            what: format!("creation of {name}: {m}"),
                            seconds: timeout.as_secs_f64(),
                        })
                    }
                    other => return other,
                }
            }
        })?;
        if meta.spec.elem != T::TYPE {
            return Err(Error::TypeMismatch {
                what: format!("array {name}"),
                expected: meta.spec.elem.to_string(),
                got: T::TYPE.to_string(),
            });
        }
        if meta.spec.layout.shape() != layout.shape() {
            return Err(Error::ShapeMismatch {
                what: format!("array {name} opened with another global shape"),
                expected: meta.spec.layout.shape(),
                got: layout.shape(),
            });
        }
        Ok(SharedArray::new(self.clone(), group, meta, layout))
    }

    fn is_home(&self, meta: &ArrayMeta, block: u64) -> bool {
        meta.blocks
            .get(block as usize)
            .and_then(|p| p.home.as_ref())
            .is_some_and(|h| h.name == self.inner.node.name)
    }

    /// Copies of block `b`, nearest first: this process, this cluster, other clusters; ties
    /// spread by `salt` so readers do not all hit the same copy.
    fn copies_by_distance(&self, placement: &BlockPlacement, salt: u64) -> Vec<NodeInfo> {
        let me = &self.inner.node;
        let mut copies: Vec<(u8, NodeInfo)> = placement
            .copies()
            .map(|n| {
                let d = if n.name == me.name {
                    0
                } else if n.cluster == me.cluster {
                    1
                } else {
                    2
                };
                (d, n.clone())
            })
            .collect();
        let len = copies.len().max(1);
        copies.rotate_left(salt as usize % len);
        copies.sort_by_key(|c| c.0);
        copies.into_iter().map(|c| c.1).collect()
    }
}

fn unexpected(what: &str, r: &Response) -> Error {
    Error::Protocol(format!("unexpected answer to {what}: {r:?}"))
}

fn check_group<G: Group + ?Sized>(layout: &Layout, group: &G) -> Result<()> {
    if layout.nprocs() != group.size() as u64 {
        return Err(Error::BadGrid(format!(
            "layout {layout} has {} processes but the group has {}",
            layout.nprocs(),
            group.size()
        )));
    }
    Ok(())
}

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

/// A write epoch's lease: the manager connection the lock was granted on (closing it aborts).
struct Lease {
    conn: Conn,
}

/// A named shared array as seen by one group with one layout.
pub struct SharedArray<'g, T: Element, G: Group + ?Sized> {
    fed: Federation,
    group: &'g G,
    meta: ArrayMeta,
    layout: Layout,
    rank: u64,
    access: Access,
    local: Local<T>,
    lease: Option<Lease>,
}

/// A destination buffer shared by the threads filling disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedDst<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: the threads write disjoint elements (the pieces of different blocks never overlap:
// every plan moves each element exactly once, tested exhaustively), each through slices that
// cover only its own runs.
unsafe impl<T: Send> Send for SharedDst<T> {}
unsafe impl<T: Send> Sync for SharedDst<T> {}

impl<'g, T: Element, G: Group + ?Sized> SharedArray<'g, T, G> {
    fn new(fed: Federation, group: &'g G, meta: ArrayMeta, layout: Layout) -> Self {
        SharedArray {
            fed,
            rank: group.rank() as u64,
            group,
            meta,
            layout,
            access: Access::None,
            local: Local::Empty,
            lease: None,
        }
    }

    /// The array's name.
    pub fn name(&self) -> &str {
        &self.meta.spec.name
    }

    /// The array's directory entry (as of the last acquire).
    pub fn meta(&self) -> &ArrayMeta {
        &self.meta
    }

    /// This handle's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
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
        self.layout == self.meta.spec.layout && self.fed.is_home(&self.meta, self.rank)
    }

    /// Takes the array's write lock (collective): the local part then holds the latest version
    /// and may be modified; `put` may write anywhere.
    pub fn acquire(&mut self) -> Result<()> {
        self.acquire_timeout(self.fed.timeout())
    }

    /// [`SharedArray::acquire`] waiting at most `timeout` for the lock.
    pub fn acquire_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.check_idle("acquire")?;
        let fed = self.fed.clone();
        let id = self.meta.id;
        let manager = self.meta.manager.clone();
        let mut lease = None;
        let grant = on_root(self.group, || {
            let (conn, g) = take_write_lock(&fed, &manager, id, timeout)?;
            lease = Some(Lease { conn });
            Ok(g)
        })?;
        self.lease = lease;
        let (epoch, base, floor, blocks) = grant;
        self.meta.blocks = blocks;
        self.meta.committed = base;
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
            let w = self
                .fed
                .inner
                .store
                .working(self.meta.id, self.rank as u32, epoch, base)?;
            self.local = Local::Working(w);
        } else {
            let mut v = self.reusable_local()?;
            self.fetch_pieces(base, None, &mut v)?;
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
            let id = self.meta.id;
            on_root(self.group, || {
                let l = lease
                    .as_mut()
                    .ok_or_else(|| Error::NotAcquired("no lease on the root".into()))?;
                l.conn.send(&Request::Commit {
                    array: id,
                    epoch,
                    version,
                })?;
                l.conn.recv::<Response>()?.into_result().map(|_| ())
            })
        });
        if let Err(e) = r {
            self.abort_write();
            return Err(e);
        }
        self.lease = None;
        self.access = Access::None;
        self.meta.committed = version;
        // Keep the published local part readable without a copy.
        if self.owns_block() {
            if let Ok(s) = self
                .fed
                .inner
                .store
                .snapshot(self.meta.id, self.rank as u32, version)
            {
                self.local = Local::Snapshot(s);
            }
        }
        Ok(version)
    }

    fn write_back(&mut self, epoch: u64, base: u64, version: u64, floor: u64) -> Result<()> {
        let id = self.meta.id;
        if self.owns_block() {
            // Own block: publish here (replicas are brought up to date before this returns).
            self.local = Local::Empty;
            crate::service::provider::publish(
                &self.fed.inner.store,
                &self.fed.inner.pool,
                id,
                self.rank as u32,
                epoch,
                version,
                floor,
            )?;
            return Ok(());
        }
        // Another layout (or remote homes): send our pieces to the homes, then publish the
        // blocks, spread over the group's members.
        if let Local::Owned(v) = &self.local {
            let plan = Plan::cached(&self.layout, &self.meta.spec.layout)?;
            for t in plan.destinations(self.rank)? {
                let spans: Vec<Span> = plan.spans(self.rank, t.peer)?;
                let sel = Selection::Piece {
                    target: self.layout.clone(),
                    q: self.rank,
                };
                self.send_write(t.peer as u32, epoch, base, &sel, &spans, v)?;
            }
        }
        agree(self.group, Ok(()))?;
        let nblocks = self.meta.blocks.len() as u64;
        let mut b = self.rank;
        while b < nblocks {
            self.publish_block(b as u32, epoch, version, floor)?;
            b += self.group.size() as u64;
        }
        Ok(())
    }

    fn home_of(&self, block: u32) -> Result<NodeInfo> {
        self.meta
            .blocks
            .get(block as usize)
            .and_then(|p| p.home.clone())
            .ok_or_else(|| {
                Error::Lost(format!("block {block} of {} has no home left", self.name()))
            })
    }

    fn publish_block(&self, block: u32, epoch: u64, version: u64, floor: u64) -> Result<()> {
        let home = self.home_of(block)?;
        let id = self.meta.id;
        if home.name == self.fed.inner.node.name {
            return crate::service::provider::publish(
                &self.fed.inner.store,
                &self.fed.inner.pool,
                id,
                block,
                epoch,
                version,
                floor,
            );
        }
        self.fed
            .inner
            .pool
            .call(
                &home.addr,
                &Request::Publish {
                    array: id,
                    block,
                    epoch,
                    version,
                    floor,
                },
            )
            .map(|_| ())
    }

    /// Sends the elements `spans` select from `src` (src side) into block `block`'s working
    /// copy (dst side) at its home.
    fn send_write(
        &self,
        block: u32,
        epoch: u64,
        base: u64,
        sel: &Selection,
        spans: &[Span],
        src: &[T],
    ) -> Result<()> {
        let home = self.home_of(block)?;
        let id = self.meta.id;
        if home.name == self.fed.inner.node.name {
            let w = self.fed.inner.store.working(id, block, epoch, base)?;
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            let dst = w.data.typed_mut::<T>();
            for s in spans {
                copy_span(s, src, dst);
            }
            return Ok(());
        }
        let bytes = span_elements(spans) * std::mem::size_of::<T>() as u64;
        self.fed.inner.pool.with(&home.addr, |c| {
            c.send(&Request::Write {
                array: id,
                block,
                epoch,
                base,
                selection: sel.clone(),
                bytes,
            })?;
            pack_to(spans, src, c.stream()).map_err(|e| io_error("sending written data", e))?;
            c.recv::<Response>()?.into_result().map(|_| ())
        })
    }

    fn abort_write(&mut self) {
        if let (Some(mut l), Access::Write { epoch, .. }) = (self.lease.take(), self.access) {
            let _ = l.conn.send(&Request::Abort {
                array: self.meta.id,
                epoch,
            });
            let _ = l.conn.recv::<Response>();
        }
        self.access = Access::None;
        self.local = Local::Empty;
    }

    /// Waits for a version (collective) and makes the local part hold it in this handle's
    /// layout, redistributing from the nearest copies. The version stays retained until
    /// [`SharedArray::release_read`].
    pub fn acquire_read(&mut self, req: VersionReq) -> Result<u64> {
        self.acquire_read_timeout(req, self.fed.timeout())
    }

    /// [`SharedArray::acquire_read`] waiting at most `timeout` for the version.
    pub fn acquire_read_timeout(&mut self, req: VersionReq, timeout: Duration) -> Result<u64> {
        self.check_idle("acquire_read")?;
        let fed = self.fed.clone();
        let (id, manager) = (self.meta.id, self.meta.manager.clone());
        let (version, pin, blocks) = on_root(self.group, || {
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
        })?;
        self.meta.blocks = blocks;
        self.access = Access::Read { version, pin };
        let loaded = self.load_for_read(version);
        if let Err(e) = agree(self.group, loaded) {
            let _ = self.release_read();
            return Err(e);
        }
        Ok(version)
    }

    fn load_for_read(&mut self, version: u64) -> Result<()> {
        let held_here = self.layout == self.meta.spec.layout
            && self.meta.blocks[self.rank as usize]
                .copies()
                .any(|n| n.name == self.fed.inner.node.name);
        if held_here {
            self.local = Local::Snapshot(self.fed.inner.store.snapshot(
                self.meta.id,
                self.rank as u32,
                version,
            )?);
            return Ok(());
        }
        let mut v = self.reusable_local()?;
        self.fetch_pieces(version, None, &mut v)?;
        self.local = Local::Owned(v);
        Ok(())
    }

    /// A buffer for this rank's local part: the previous one when it is ours to reuse (a
    /// pipeline reading every step then touches no fresh pages), else a new one.
    fn reusable_local(&mut self) -> Result<Vec<T>> {
        let n = self.layout.local_len(self.rank)? as usize;
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
        let fed = self.fed.clone();
        let (id, manager) = (self.meta.id, self.meta.manager.clone());
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
        let name = self.meta.spec.name.clone();
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
        self.get_at(version, epoch, lo, hi, buf)
    }

    fn get_at(
        &self,
        version: u64,
        epoch: Option<(u64, u64)>,
        lo: &[u64],
        hi: &[u64],
        buf: &mut [T],
    ) -> Result<()> {
        let storage = &self.meta.spec.layout;
        region::check_region(storage, lo, hi)?;
        let n = region::region_len(lo, hi);
        if buf.len() as u64 != n {
            return Err(Error::BufferSize {
                what: format!("region [{lo:?}, {hi:?}) of {}", self.name()),
                expected: n,
                got: buf.len() as u64,
            });
        }
        let mut work = Vec::new();
        for b in 0..storage.nprocs() {
            let spans = region::region_spans(storage, b, lo, hi, None)?;
            if !spans.is_empty() {
                work.push((
                    b,
                    Selection::Region {
                        lo: lo.to_vec(),
                        hi: hi.to_vec(),
                    },
                    spans,
                ));
            }
        }
        self.fetch_parallel(version, epoch, work, buf)
    }

    /// Writes `buf` (row-major over the region) into the global region `[lo, hi)`, under a
    /// write acquire. One process alone.
    pub fn put(&self, lo: &[u64], hi: &[u64], buf: &[T]) -> Result<()> {
        let Access::Write { epoch, base, .. } = self.access else {
            return Err(Error::NotAcquired(format!(
                "put on {} needs acquire()",
                self.name()
            )));
        };
        self.put_at(epoch, base, lo, hi, buf).map(|_| ())
    }

    /// Writes a region into the working copies of the blocks it touches; returns those blocks.
    fn put_at(&self, epoch: u64, base: u64, lo: &[u64], hi: &[u64], buf: &[T]) -> Result<Vec<u32>> {
        let storage = &self.meta.spec.layout;
        region::check_region(storage, lo, hi)?;
        let n = region::region_len(lo, hi);
        if buf.len() as u64 != n {
            return Err(Error::BufferSize {
                what: format!("region [{lo:?}, {hi:?}) of {}", self.name()),
                expected: n,
                got: buf.len() as u64,
            });
        }
        let sel = Selection::Region {
            lo: lo.to_vec(),
            hi: hi.to_vec(),
        };
        let mut touched = Vec::new();
        for b in 0..storage.nprocs() {
            let spans: Vec<Span> = region::region_spans(storage, b, lo, hi, None)?
                .into_iter()
                .map(Span::swapped)
                .collect();
            if spans.is_empty() {
                continue;
            }
            self.send_write(b as u32, epoch, base, &sel, &spans, buf)?;
            touched.push(b as u32);
        }
        Ok(touched)
    }

    /// Takes the array's write lock for this process alone, to read-modify-write the region
    /// `[lo, hi)` (entry consistency on a region; e.g. a shared counter).
    pub fn acquire_region(
        &self,
        lo: &[u64],
        hi: &[u64],
        timeout: Duration,
    ) -> Result<RegionLock<'_, 'g, T, G>> {
        region::check_region(&self.meta.spec.layout, lo, hi)?;
        let (conn, (epoch, base, floor, blocks)) =
            take_write_lock(&self.fed, &self.meta.manager, self.meta.id, timeout)?;
        Ok(RegionLock {
            array: self,
            lease: Some(Lease { conn }),
            epoch,
            base,
            floor,
            blocks,
            lo: lo.to_vec(),
            hi: hi.to_vec(),
            touched: Vec::new(),
        })
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
    ) -> Result<RegionRead<'_, 'g, T, G>> {
        region::check_region(&self.meta.spec.layout, lo, hi)?;
        let manager = &self.meta.manager;
        let r = self.fed.inner.pool.call_waiting(
            &manager.addr,
            &Request::WaitVersion {
                array: self.meta.id,
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
            } => Ok(RegionRead {
                array: self,
                version,
                pin,
                blocks,
                lo: lo.to_vec(),
                hi: hi.to_vec(),
            }),
            other => Err(unexpected("WaitVersion", &other)),
        }
    }

    /// Fills `dst` (this handle's local part) with `version` (or a write epoch's state),
    /// pulling each source block's piece from its nearest copy, in parallel.
    fn fetch_pieces(&self, version: u64, epoch: Option<(u64, u64)>, dst: &mut [T]) -> Result<()> {
        let plan = Plan::cached(&self.meta.spec.layout, &self.layout)?;
        let mut work = Vec::new();
        for t in plan.sources(self.rank)? {
            let spans = plan.spans(t.peer, self.rank)?;
            work.push((
                t.peer,
                Selection::Piece {
                    target: self.layout.clone(),
                    q: self.rank,
                },
                spans,
            ));
        }
        self.fetch_parallel(version, epoch, work, dst)
    }

    fn fetch_parallel(
        &self,
        version: u64,
        epoch: Option<(u64, u64)>,
        work: Vec<(u64, Selection, Vec<Span>)>,
        dst: &mut [T],
    ) -> Result<()> {
        let reader = Reader {
            fed: &self.fed,
            meta: &self.meta,
            rank: self.rank,
        };
        reader.fetch_parallel(version, epoch, work, dst)
    }
}

/// What reading threads need from an array handle (the group stays with the calling thread).
struct Reader<'a> {
    fed: &'a Federation,
    meta: &'a ArrayMeta,
    rank: u64,
}

impl Reader<'_> {
    fn name(&self) -> &str {
        &self.meta.spec.name
    }

    /// Fetches every (block, selection, spans) into `dst`, from the nearest copies, in
    /// parallel (at most 8 streams).
    fn fetch_parallel<T: Element>(
        &self,
        version: u64,
        epoch: Option<(u64, u64)>,
        work: Vec<(u64, Selection, Vec<Span>)>,
        dst: &mut [T],
    ) -> Result<()> {
        let shared = SharedDst {
            ptr: dst.as_mut_ptr(),
            len: dst.len(),
        };
        if work.len() <= 1 {
            return work.iter().try_for_each(|(b, sel, spans)| {
                self.fetch_one(*b, version, epoch, sel, spans, shared)
            });
        }
        let threads = work.len().min(8);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let work = &work;
                    s.spawn(move || -> Result<()> {
                        for (b, sel, spans) in work.iter().skip(t).step_by(threads) {
                            self.fetch_one(*b, version, epoch, sel, spans, shared)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Network("a fetch thread panicked".into())))
                })
                .collect()
        });
        results.into_iter().collect()
    }
    fn fetch_one<T: Element>(
        &self,
        block: u64,
        version: u64,
        epoch: Option<(u64, u64)>,
        sel: &Selection,
        spans: &[Span],
        out: SharedDst<T>,
    ) -> Result<()> {
        let placement = self
            .meta
            .blocks
            .get(block as usize)
            .ok_or_else(|| Error::Protocol(format!("no block {block}")))?;
        // A write epoch's state lives at the home only; a version at every copy.
        let copies = if epoch.is_some() {
            placement.home.iter().cloned().collect()
        } else {
            self.fed.copies_by_distance(placement, self.rank)
        };
        if copies.is_empty() {
            return Err(Error::Lost(format!(
                "block {block} of {} has no copy left",
                self.name()
            )));
        }
        let id = self.meta.id;
        let mut last = None;
        for node in copies {
            let r = if node.name == self.fed.inner.node.name {
                self.copy_from_local(block as u32, version, epoch, spans, out)
            } else {
                let bytes = span_elements(spans) * std::mem::size_of::<T>() as u64;
                self.fed.inner.pool.with(&node.addr, |c| {
                    c.send(&Request::Read {
                        array: id,
                        block: block as u32,
                        version,
                        epoch,
                        selection: sel.clone(),
                    })?;
                    match c.recv::<Response>()?.into_result()? {
                        Response::Data { bytes: got } if got == bytes => {
                            // SAFETY: see `SharedDst`.
                            unsafe { unpack_from_ptr(spans, c.stream(), out.ptr, out.len) }
                                .map_err(|e| io_error("receiving data", e))
                        }
                        Response::Data { bytes: got } => Err(Error::Protocol(format!(
                            "{node} announces {got} bytes for block {block}; expected {bytes}"
                        ))),
                        other => Err(unexpected("Read", &other)),
                    }
                })
            };
            match r {
                Ok(()) => return Ok(()),
                Err(
                    e @ (Error::Network(_)
                    | Error::Timeout { .. }
                    | Error::Refused(_)
                    | Error::NotFound(_)),
                ) => {
                    tracing::warn!(
                        "reading block {block} of {} from {node}: {e}; trying the next copy",
                        self.name()
                    );
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Lost(format!("block {block} unreadable"))))
    }

    /// Same-process copy from the local store (no socket).
    fn copy_from_local<T: Element>(
        &self,
        block: u32,
        version: u64,
        epoch: Option<(u64, u64)>,
        spans: &[Span],
        out: SharedDst<T>,
    ) -> Result<()> {
        let store = &self.fed.inner.store;
        let working = match epoch {
            Some((e, _)) => store.working_if_any(self.meta.id, block, e)?,
            None => None,
        };
        let copied = match working {
            Some(w) => {
                let w = w.lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: see `SharedDst`.
                unsafe { copy_to_ptr(spans, w.data.typed::<T>(), out.ptr, out.len) }
            }
            None => {
                let v = epoch.map_or(version, |(_, base)| base);
                let d = store.snapshot(self.meta.id, block, v)?;
                // SAFETY: see `SharedDst`.
                unsafe { copy_to_ptr(spans, d.typed::<T>(), out.ptr, out.len) }
            }
        };
        copied.map_err(|e| Error::Protocol(format!("local copy of block {block}: {e}")))
    }
}

impl<T: Element, G: Group + ?Sized> Drop for SharedArray<'_, T, G> {
    fn drop(&mut self) {
        if matches!(self.access, Access::Write { .. }) {
            self.abort_write();
        }
    }
}

/// Copies the elements of one span from `src` (its src side) to `dst` (its dst side).
fn copy_span<T: Copy>(s: &Span, src: &[T], dst: &mut [T]) {
    let len = s.len as usize;
    for i in 0..s.count {
        let a = (s.src + i * s.src_stride) as usize;
        let b = (s.dst + i * s.dst_stride) as usize;
        dst[b..b + len].copy_from_slice(&src[a..a + len]);
    }
}

type Granted = (u64, u64, u64, Vec<BlockPlacement>);

/// Takes an array's write lock on a dedicated manager connection (the lease).
fn take_write_lock(
    fed: &Federation,
    manager: &NodeInfo,
    id: ArrayId,
    timeout: Duration,
) -> Result<(Conn, Granted)> {
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
            Ok((conn, (epoch, base, floor, blocks)))
        }
        other => Err(unexpected("AcquireWrite", &other)),
    }
}

/// A region locked by one process for read-modify-write.
pub struct RegionLock<'a, 'g, T: Element, G: Group + ?Sized> {
    array: &'a SharedArray<'g, T, G>,
    lease: Option<Lease>,
    epoch: u64,
    base: u64,
    floor: u64,
    blocks: Vec<BlockPlacement>,
    lo: Vec<u64>,
    hi: Vec<u64>,
    touched: Vec<u32>,
}

impl<T: Element, G: Group + ?Sized> RegionLock<'_, '_, T, G> {
    /// The version this lock started from.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Reads the locked region's current contents.
    pub fn get(&self, buf: &mut [T]) -> Result<()> {
        self.with_placement(|a| {
            a.get_at(
                self.base,
                Some((self.epoch, self.base)),
                &self.lo,
                &self.hi,
                buf,
            )
        })
    }

    /// Writes the locked region.
    pub fn put(&mut self, buf: &[T]) -> Result<()> {
        let touched =
            self.with_placement(|a| a.put_at(self.epoch, self.base, &self.lo, &self.hi, buf))?;
        for b in touched {
            if !self.touched.contains(&b) {
                self.touched.push(b);
            }
        }
        Ok(())
    }

    fn with_placement<R>(&self, f: impl FnOnce(&SharedArray<'_, T, G>) -> Result<R>) -> Result<R> {
        // Use the placement the grant came with (homes may have moved since the handle's).
        let view = SharedArray {
            fed: self.array.fed.clone(),
            group: self.array.group,
            meta: ArrayMeta {
                blocks: self.blocks.clone(),
                ..self.array.meta.clone()
            },
            layout: self.array.layout.clone(),
            rank: self.array.rank,
            access: Access::None,
            local: Local::Empty,
            lease: None,
        };
        f(&view)
    }

    /// Publishes the written blocks as a new version (replicas current) and commits it.
    pub fn release(mut self) -> Result<u64> {
        let version = self.base + 1;
        let (epoch, floor) = (self.epoch, self.floor);
        let touched = std::mem::take(&mut self.touched);
        self.with_placement(|a| {
            for &b in &touched {
                a.publish_block(b, epoch, version, floor)?;
            }
            Ok(())
        })?;
        let mut lease = self
            .lease
            .take()
            .ok_or_else(|| Error::NotAcquired("region lock already released".into()))?;
        lease.conn.send(&Request::Commit {
            array: self.array.meta.id,
            epoch,
            version,
        })?;
        lease.conn.recv::<Response>()?.into_result()?;
        Ok(version)
    }
}

impl<T: Element, G: Group + ?Sized> Drop for RegionLock<'_, '_, T, G> {
    fn drop(&mut self) {
        if let Some(mut l) = self.lease.take() {
            let _ = l.conn.send(&Request::Abort {
                array: self.array.meta.id,
                epoch: self.epoch,
            });
            let _ = l.conn.recv::<Response>();
        }
    }
}

/// A version held by one process for reading a region.
pub struct RegionRead<'a, 'g, T: Element, G: Group + ?Sized> {
    array: &'a SharedArray<'g, T, G>,
    version: u64,
    pin: Option<u64>,
    blocks: Vec<BlockPlacement>,
    lo: Vec<u64>,
    hi: Vec<u64>,
}

impl<T: Element, G: Group + ?Sized> RegionRead<'_, '_, T, G> {
    /// The version held.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Reads the region at the version held (row-major over the region).
    pub fn get(&self, buf: &mut [T]) -> Result<()> {
        let reader = SharedArray {
            fed: self.array.fed.clone(),
            group: self.array.group,
            meta: ArrayMeta {
                blocks: self.blocks.clone(),
                ..self.array.meta.clone()
            },
            layout: self.array.layout.clone(),
            rank: self.array.rank,
            access: Access::None,
            local: Local::Empty,
            lease: None,
        };
        reader.get_at(self.version, None, &self.lo, &self.hi, buf)
    }

    /// Lets the version go.
    pub fn release(mut self) -> Result<()> {
        self.unpin()
    }

    fn unpin(&mut self) -> Result<()> {
        match self.pin.take() {
            Some(pin) => self
                .array
                .fed
                .inner
                .pool
                .call(
                    &self.array.meta.manager.addr,
                    &Request::Unpin {
                        array: self.array.meta.id,
                        pin,
                    },
                )
                .map(|_| ()),
            None => Ok(()),
        }
    }
}

impl<T: Element, G: Group + ?Sized> Drop for RegionRead<'_, '_, T, G> {
    fn drop(&mut self) {
        let _ = self.unpin();
    }
}
