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

pub mod checkpoint;
pub mod group;
pub mod namespace;
mod nonblocking;
mod region;
mod shared;
mod view;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use group::{agree, on_root, Group, Solo};
pub use nonblocking::NbRequest;
pub use region::{RegionLock, RegionRead};
pub use shared::{LocalMut, LocalRef, SharedArray};

use crate::config::Config;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::service::node::RunningProvider;
use crate::service::protocol::*;

/// How to create an array.
#[derive(Clone, Debug)]
pub struct ArrayOptions {
    layout: Layout,
    redundancy: Redundancy,
    retention: Retention,
    homes: HomePlacement,
    replicate_to: Vec<String>,
    attributes: std::collections::BTreeMap<String, String>,
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
            attributes: Default::default(),
        }
    }

    /// An attribute (user metadata: units, forecast cycle, model...), found by
    /// [`Federation::search`]; see [`check_attributes`] for the limits.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> ArrayOptions {
        self.attributes.insert(key.into(), value.into());
        self
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
        self.retention.max_versions = max_versions;
        self.retention.on_full = on_full;
        self
    }

    /// Under `FullPolicy::Block`, wait for `n` readers from the start: until that many have
    /// opened the array, writers keep the versions they have not read (a pipeline whose
    /// consumer may start after its producer loses no step). Without it, writers wait only for
    /// readers that have opened the array.
    pub fn expect_readers(mut self, n: u32) -> ArrayOptions {
        self.retention.readers = n;
        self
    }

    /// Home every block on a provider daemon of the creating cluster instead of on the
    /// creating ranks (the data then does not depend on the creating job at all).
    pub fn homes_on_daemons(mut self) -> ArrayOptions {
        self.homes = HomePlacement::Daemons;
        self
    }
}

pub(crate) struct FedInner {
    provider: Mutex<RunningProvider>,
    pub(crate) node: NodeInfo,
    pub(crate) store: Arc<crate::service::store::Store>,
    pub(crate) pool: Arc<crate::service::pool::Pool>,
    manager: crate::service::contact::Contact,
    pub(crate) cfg: Config,
    /// Reading other processes' shared memory: who cannot be, the mappings kept.
    pub(crate) shm: crate::transport::shm::Reader,
    /// The provider daemons of this cluster, as last asked (for reads through a cache).
    daemons: Mutex<Option<(Instant, Vec<NodeInfo>)>>,
}

/// This process's membership in the federation: its embedded provider and its connections.
/// Cheap to clone; the process leaves the federation when the last clone is dropped (or at
/// [`Federation::leave`]): the blocks it is home of move to their replicas.
#[derive(Clone)]
pub struct Federation {
    pub(crate) inner: Arc<FedInner>,
}

impl Federation {
    /// Joins with settings from the `JUXMEM_*` variables (see [`crate::config`]).
    pub fn from_env() -> Result<Federation> {
        Federation::join(Config::from_env()?)
    }

    /// Joins with `cfg`; the process's provider is named after its pid.
    pub fn join(cfg: Config) -> Result<Federation> {
        Federation::join_as(cfg, "proc")
    }

    /// Joins with `cfg`; the process's provider is named `<cluster>/<label>@<host>-<pid>` (unique
    /// among live processes, so that jobs reusing labels such as `rank0` do not collide).
    pub fn join_as(cfg: Config, label: &str) -> Result<Federation> {
        // A member waiting in a collective for another gives up (and aborts the job) only after
        // any single network wait plus failure detection could have ended.
        crate::transport::mpi::set_wait_timeout(cfg.net.io_timeout * 3 + cfg.failure_timeout);
        let p = RunningProvider::start(&cfg, NodeKind::Rank, label, cfg.capacity)?;
        Ok(Federation {
            inner: Arc::new(FedInner {
                node: p.node.clone(),
                store: p.store.clone(),
                pool: p.pool.clone(),
                manager: p.manager.clone(),
                provider: Mutex::new(p),
                cfg,
                shm: Default::default(),
                daemons: Mutex::new(None),
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

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.cfg.timeout()
    }

    /// How long an operation may take riding over a failover: a wait on a silent peer
    /// (`JUXMEM_TIMEOUT`), failure detection, and the operation again.
    pub(crate) fn retry_budget(&self) -> Duration {
        self.inner.cfg.timeout() * 2 + self.inner.cfg.failure_timeout
    }

    fn manager_call(&self, req: &Request) -> Result<Response> {
        self.inner.pool.call_manager(&self.inner.manager, req)
    }

    /// Makes sure this process keeps a lease at `manager` (before taking a lock, a pin or a
    /// reader registration there).
    pub(crate) fn ensure_lease(&self, manager: &NodeInfo) -> Result<()> {
        self.inner
            .provider
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keeper
            .ensure(&crate::service::contact::of_node(manager))
    }

    /// How many times a manager declared this process dead (it was paused or cut off for
    /// longer than the failure timeout).
    pub fn evictions(&self) -> u64 {
        self.inner
            .provider
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keeper
            .evictions()
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

    /// The arrays of the whole federation matching `query` (name pattern, element type,
    /// shape, attributes), by name.
    pub fn search(&self, query: &Query) -> Result<Vec<NameEntry>> {
        match self.manager_call(&Request::Search {
            query: query.clone(),
            forwarded: false,
        })? {
            Response::Names(n) => Ok(n),
            other => Err(unexpected("Search", &other)),
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
            Response::Meta(m) => m.check().map(|()| m),
            other => Err(unexpected("Lookup", &other)),
        }
    }

    /// Destroys array `name` (one process; see [`SharedArray::destroy`] for the collective
    /// form): its name is free again, every copy dropped, the memory placed for it released.
    /// `Busy` while another process holds its write lock or read pins, unless `force` (their
    /// epochs are then aborted and their pins dropped).
    pub fn destroy(&self, name: &str, force: bool) -> Result<()> {
        let meta = self.lookup(name)?;
        let manager = crate::service::contact::of_node(&meta.manager);
        self.inner
            .pool
            .call_manager(
                &manager,
                &Request::Destroy {
                    array: meta.id,
                    force,
                },
            )
            .map(|_| ())
    }

    /// The read cache and cross-cluster counters of the provider or manager at `addr` (from
    /// [`Federation::status`]): what its read cache holds and did, and how many requests it
    /// received from processes of other clusters.
    pub fn cache_stats(&self, addr: &str) -> Result<CacheStats> {
        match self.inner.pool.call(addr, &Request::CacheStats)? {
            Response::CacheStats(s) => Ok(s),
            other => Err(unexpected("CacheStats", &other)),
        }
    }

    /// Creates the namespace `name` (its record kept by this process's cluster): refused
    /// (`AlreadyExists`) while an array or a namespace of that name exists in the federation.
    /// Arrays are then created under it as `name/...`.
    pub fn create_namespace(&self, name: &str) -> Result<()> {
        namespace::create(&self.inner.pool, &self.inner.manager, name)
    }

    /// The namespaces of the whole federation matching `pattern` (`*` any run; a pattern
    /// ending in `/` every path under it), by name.
    pub fn namespaces(&self, pattern: &str) -> Result<Vec<NamespaceEntry>> {
        namespace::list(&self.inner.pool, &self.inner.manager, pattern)
    }

    /// Destroys the namespace `name` with everything under it, in every cluster: its arrays,
    /// then its namespaces. A namespace holding anything needs `confirm`; without it the
    /// answer is `Busy`, saying what it holds, and nothing changes. Arrays in use by other
    /// processes are not destroyed (`Busy`, naming them): the namespace stays until a later
    /// destroy can finish.
    pub fn destroy_namespace(&self, name: &str, confirm: bool) -> Result<namespace::Destroyed> {
        let managers = crate::service::contact::managers(&self.inner.cfg)?;
        namespace::destroy(&self.inner.pool, &managers, name, confirm)
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
            attributes: opts.attributes,
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
                Response::Meta(m) => m.check().map(|()| m),
                other => Err(unexpected("Create", &other)),
            }
        })?;
        let rank = group.rank() as u64;
        let hosted = if self.is_home(&meta, rank) {
            self.inner.store.host(&meta, rank as u32)
        } else {
            Ok(())
        };
        // Every block hosted: the creation is confirmed (the array becomes visible); else it is
        // undone (the name is free again). If this process dies in between, the manager undoes
        // it when it notices.
        let hosted = agree(group, hosted);
        let manager = crate::service::contact::of_node(&meta.manager);
        let id = meta.id;
        let settled = on_root(group, || match &hosted {
            Ok(()) => {
                let _ = crate::service::failpoint::hit("create.before_confirm");
                self.inner
                    .pool
                    .call_manager(&manager, &Request::Created { array: id })
                    .map(|_| ())
            }
            Err(_) => {
                let undo = Request::Destroy {
                    array: id,
                    force: true,
                };
                if let Err(e) = self.inner.pool.call_manager(&manager, &undo) {
                    tracing::warn!("undoing the creation of {name}: {e}");
                }
                Ok(())
            }
        });
        hosted?;
        settled?;
        Ok(SharedArray::new(
            self.clone(),
            group,
            meta,
            opts.layout,
            None,
        ))
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
        self.open_as(group, name, layout, timeout, true)
    }

    /// Restores the checkpoint in `dir` (written by [`SharedArray::checkpoint`]) as a new
    /// array `name` with `opts` (collective): any layout of the checkpoint's shape; each member
    /// reads the block files its part needs, checked against the manifest's sizes and CRCs
    /// first, and the array's first version (1) holds the checkpointed data. A missing, torn or
    /// corrupt file is a typed error naming it, and no array is left behind (the name stays
    /// free). Returns the array, released.
    pub fn restore<'g, T: Element, G: Group + ?Sized>(
        &self,
        group: &'g G,
        dir: &std::path::Path,
        name: &str,
        opts: ArrayOptions,
    ) -> Result<SharedArray<'g, T, G>> {
        // The root reads the manifest; every member gets its text (and the same error).
        let mut text = Vec::new();
        let read = on_root(group, || {
            let m = checkpoint::read_manifest(dir)?;
            text = m.render().into_bytes();
            Ok(())
        });
        read?;
        group.broadcast_bytes(0, &mut text);
        let m = checkpoint::Manifest::parse(&String::from_utf8_lossy(&text), "the manifest")?;
        // Checked before anything is created.
        if T::TYPE != m.elem {
            return Err(Error::TypeMismatch {
                what: format!("the checkpoint of {} in {}", m.name, dir.display()),
                expected: m.elem.name().into(),
                got: T::TYPE.name().into(),
            });
        }
        opts.layout.check_same_shape(&m.layout)?;
        let layout = opts.layout.clone();
        // The checkpoint's attributes, under those `opts` give.
        let mut opts = opts;
        for (k, v) in &m.attributes {
            opts.attributes
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        let mut a = self.create::<T, G>(group, name, opts)?;
        let filled = a.acquire_overwrite().and_then(|()| {
            let rank = group.rank() as u64;
            let mut local = a.local_mut()?;
            checkpoint::read_into(dir, &m, &layout, rank, &mut local)
        });
        if let Err(e) = agree(group, filled) {
            // Nothing of it is visible: the write is aborted and the array destroyed.
            let _ = a.destroy();
            return Err(e);
        }
        a.release()?;
        Ok(a)
    }

    /// Opens array `name` for inspection (monitoring, export): like [`Federation::open`], but not
    /// registered as a reader, so writers never keep versions for it (under
    /// `FullPolicy::Block`) and it does not count among the readers a creator expects. What it
    /// reads is held (pinned) only while it reads.
    pub fn inspect<'g, T: Element, G: Group + ?Sized>(
        &self,
        group: &'g G,
        name: &str,
        layout: Layout,
    ) -> Result<SharedArray<'g, T, G>> {
        self.open_as(group, name, layout, Duration::ZERO, false)
    }

    fn open_as<'g, T: Element, G: Group + ?Sized>(
        &self,
        group: &'g G,
        name: &str,
        layout: Layout,
        timeout: Duration,
        register: bool,
    ) -> Result<SharedArray<'g, T, G>> {
        check_name(name)?;
        check_group(&layout, group)?;
        let meta = group::on_root_within(group, timeout, || {
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
        // Registered as a reader: under `FullPolicy::Block`, writers keep what it has not read.
        let reader = if register {
            on_root(group, || shared::add_reader(self, &meta.manager, meta.id))?
        } else {
            0
        };
        Ok(SharedArray::new(
            self.clone(),
            group,
            meta,
            layout,
            (register && group.rank() == 0).then_some(reader),
        ))
    }

    pub(crate) fn is_home(&self, meta: &ArrayMeta, block: u64) -> bool {
        meta.blocks
            .get(block as usize)
            .and_then(|p| p.home.as_ref())
            .is_some_and(|h| h.same(&self.inner.node))
    }

    /// Copies of block `b`, nearest first: this process, this cluster, other clusters; ties
    /// spread by `salt` so readers do not all hit the same copy.
    /// The provider daemon of this cluster that caches block `block` of `array` for its
    /// readers (`JUXMEM_READ_CACHE`), if the cluster has one: the blocks of an array are
    /// spread over the cluster's daemons.
    pub(crate) fn cache_provider(&self, array: ArrayId, block: u32) -> Option<NodeInfo> {
        let lock = || self.inner.daemons.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = lock()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < Duration::from_secs(5))
            .map(|(_, d)| d.clone());
        let daemons = match fresh {
            Some(d) => d,
            None => {
                // Asked with no lock held: other reads go on meanwhile.
                let d: Vec<NodeInfo> = match self.manager_call(&Request::Members) {
                    Ok(Response::Members(m)) => m
                        .into_iter()
                        .filter(|n| {
                            n.kind == NodeKind::Daemon && n.cluster == self.inner.node.cluster
                        })
                        .collect(),
                    Ok(_) | Err(_) => Vec::new(),
                };
                *lock() = Some((Instant::now(), d.clone()));
                d
            }
        };
        if daemons.is_empty() {
            return None;
        }
        let i =
            (array.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(block)) % daemons.len() as u64;
        Some(daemons[i as usize].clone())
    }

    /// The copies of `placement` holding `stamp` (its data group's, and the cache copies of
    /// this cluster), nearest first: this process, this cluster, then others; `salt` spreads
    /// readers over copies at the same distance.
    pub(crate) fn copies_by_distance(
        &self,
        placement: &BlockPlacement,
        stamp: Stamp,
        salt: u64,
    ) -> Vec<NodeInfo> {
        let me = &self.inner.node;
        // A cluster's cache copies serve its own readers only.
        let caches = placement
            .caches
            .iter()
            .filter(|c| c.stamp == stamp && c.node.cluster == me.cluster)
            .map(|c| &c.node);
        let mut copies: Vec<(u8, NodeInfo)> = placement
            .copies()
            .chain(caches)
            .map(|n| {
                let d = if n.same(me) {
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

/// The current placement of an array's blocks from its manager, reporting `suspects` (copies
/// found unreachable; the manager probes them and fails over at once if they are dead).
pub(crate) fn fetch_placement(
    fed: &Federation,
    manager: &NodeInfo,
    array: ArrayId,
    layout: &Layout,
    suspects: Vec<NodeInfo>,
) -> Result<Vec<BlockPlacement>> {
    let contact = crate::service::contact::of_node(manager);
    match fed
        .inner
        .pool
        .call_manager(&contact, &Request::Placement { array, suspects })?
    {
        Response::Placement(blocks) => check_placement(layout, &blocks).map(|()| blocks),
        other => Err(unexpected("Placement", &other)),
    }
}

pub(crate) fn unexpected(what: &str, r: &Response) -> Error {
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
