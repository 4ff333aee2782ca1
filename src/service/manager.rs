//! The cluster manager: membership of its cluster, the directory entries of the arrays created
//! in its cluster (placement of every block's home and replicas), and the ordering of each such
//! array's writers and versions ([`Versions`], driven here). Requests that wait (write locks,
//! version waits) wait on a condition variable with a deadline; what a connection holds (a
//! write epoch, read pins) is undone when it closes, so a crashed client cannot wedge an array.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::{Config, Rendezvous};
use crate::error::{Error, Result};
use crate::service::coherence::{Poll, Versions};
use crate::service::contact::{self, Contact};
use crate::service::membership::Membership;
use crate::service::pool::Pool;
use crate::service::protocol::*;
use crate::service::server::{Handler, Server};
use crate::transport::tcp::{self, Conn, Hello};

struct Record {
    meta: ArrayMeta,
    versions: Versions,
}

#[derive(Default)]
struct State {
    membership: Membership,
    arrays: HashMap<ArrayId, Record>,
    names: HashMap<String, ArrayId>,
    creating: HashSet<String>,
    serial: u64,
}

/// What one connection holds, undone when it closes.
#[derive(Default)]
pub struct Session {
    epochs: Vec<(ArrayId, u64)>,
    pins: Vec<(ArrayId, u64)>,
}

/// A cluster manager.
pub struct Manager {
    me: NodeInfo,
    cfg: Config,
    pool: Arc<Pool>,
    state: Mutex<State>,
    changed: Condvar,
}

/// A fresh incarnation number (differs at every start).
pub fn new_epoch() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40) ^ 0x4a55_584d_454d // "JUXMEM"
}

/// The hello a node of the federation sends.
pub fn hello_of(node: &NodeInfo, cfg: &Config) -> Hello {
    Hello {
        name: node.name.clone(),
        cluster: node.cluster.clone(),
        federation: cfg.federation.clone(),
        epoch: node.epoch,
        software: format!("juxmem {}", env!("CARGO_PKG_VERSION")),
    }
}

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A running manager: its service, and its contact file while it runs.
pub struct RunningManager {
    /// The manager.
    pub manager: Arc<Manager>,
    server: Server,
    contact_dir: Option<std::path::PathBuf>,
}

impl RunningManager {
    /// Address the manager listens on.
    pub fn addr(&self) -> &str {
        self.server.addr()
    }
}

impl Drop for RunningManager {
    fn drop(&mut self) {
        self.server.stop();
        if let Some(dir) = &self.contact_dir {
            contact::remove(dir, &self.manager.me.cluster, self.manager.me.epoch);
        }
    }
}

impl Manager {
    /// Starts the manager of `cfg.cluster`, listening on `listen`, and (with a federation
    /// directory) writes its contact file. Refuses to start if a live manager already answers
    /// for the cluster; replaces a stale contact file.
    pub fn start(cfg: Config, listen: &str) -> Result<RunningManager> {
        let listener = tcp::bind(listen)?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Network(format!("listener address: {e}")))?
            .to_string();
        let me = NodeInfo {
            name: format!("{}/manager", cfg.cluster),
            cluster: cfg.cluster.clone(),
            addr: addr.clone(),
            kind: NodeKind::Manager,
            epoch: new_epoch(),
        };
        let hello = hello_of(&me, &cfg);
        let pool = Arc::new(Pool::new(hello.clone(), cfg.net.clone()));
        let mut contact_dir = None;
        if let Some(Rendezvous::Dir(dir)) = &cfg.rendezvous {
            if let Ok(old) = contact::manager_of(&cfg, &cfg.cluster) {
                match tcp::connect(&old.addr, &hello, &cfg.net) {
                    Ok(c) if Some(c.peer().epoch) == old.epoch => {
                        return Err(Error::AlreadyExists(format!(
                            "a manager for cluster {} already runs at {} (epoch {}, pid {})",
                            cfg.cluster,
                            old.addr,
                            c.peer().epoch,
                            old.pid.unwrap_or(0)
                        )))
                    }
                    _ => tracing::warn!(
                        "replacing stale contact file for cluster {} ({})",
                        cfg.cluster,
                        old.addr
                    ),
                }
            }
            contact::write(
                dir,
                &Contact {
                    cluster: cfg.cluster.clone(),
                    addr: addr.clone(),
                    epoch: Some(me.epoch),
                    pid: Some(std::process::id()),
                },
            )?;
            contact_dir = Some(dir.clone());
        }
        let manager = Arc::new(Manager {
            me,
            cfg: cfg.clone(),
            pool,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let server = Server::start(listener, hello, cfg.net.clone(), manager.clone())?;
        tracing::info!("manager of cluster {} listening on {addr}", cfg.cluster);
        Ok(RunningManager {
            manager,
            server,
            contact_dir,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The other clusters' managers (none without a rendezvous).
    fn peers(&self) -> Vec<Contact> {
        contact::managers(&self.cfg)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.cluster != self.me.cluster)
            .collect()
    }

    fn current_meta(rec: &Record) -> ArrayMeta {
        let mut m = rec.meta.clone();
        m.committed = rec.versions.committed();
        m.floor = rec.versions.floor();
        m
    }

    fn lookup(&self, name: &str, forwarded: bool) -> Result<ArrayMeta> {
        {
            let st = self.lock();
            if let Some(rec) = st.names.get(name).and_then(|id| st.arrays.get(id)) {
                return Ok(Self::current_meta(rec));
            }
        }
        let mut asked = vec![self.me.cluster.clone()];
        if !forwarded {
            for peer in self.peers() {
                asked.push(peer.cluster.clone());
                match self.pool.call_manager(
                    &peer,
                    &Request::Lookup {
                        name: name.into(),
                        forwarded: true,
                    },
                ) {
                    Ok(Response::Meta(m)) => return Ok(m),
                    Ok(_) | Err(Error::NotFound(_)) => {}
                    Err(e) => tracing::warn!("lookup of {name} at cluster {}: {e}", peer.cluster),
                }
            }
        }
        Err(Error::NotFound(format!(
            "no array named {name:?} in the federation (clusters asked: {})",
            asked.join(", ")
        )))
    }

    fn create(&self, spec: ArraySpec, homes: Vec<NodeInfo>) -> Result<ArrayMeta> {
        check_name(&spec.name)?;
        let versions = Versions::new(spec.retention)?;
        let nblocks = spec.layout.nprocs();
        if spec.redundancy.clusters == 0 || spec.redundancy.providers_per_cluster == 0 {
            return Err(Error::InvalidArgument(format!(
                "redundancy {}x{} of {}: both counts must be at least 1",
                spec.redundancy.clusters, spec.redundancy.providers_per_cluster, spec.name
            )));
        }
        if spec.homes == HomePlacement::Creator && homes.len() as u64 != nblocks {
            return Err(Error::InvalidArgument(format!(
                "{} has {nblocks} blocks but {} homes were given",
                spec.name,
                homes.len()
            )));
        }
        {
            let mut st = self.lock();
            if st.names.contains_key(&spec.name) || !st.creating.insert(spec.name.clone()) {
                return Err(Error::AlreadyExists(format!(
                    "an array named {:?} already exists in cluster {}",
                    spec.name, self.me.cluster
                )));
            }
        }
        let result = self.place_and_host(&spec, homes, versions);
        let mut st = self.lock();
        st.creating.remove(&spec.name);
        let (meta, versions) = result?;
        st.names.insert(spec.name.clone(), meta.id);
        st.arrays.insert(
            meta.id,
            Record {
                meta: meta.clone(),
                versions,
            },
        );
        tracing::info!("created {} ({} blocks)", spec.name, meta.blocks.len());
        Ok(meta)
    }

    fn place_and_host(
        &self,
        spec: &ArraySpec,
        homes: Vec<NodeInfo>,
        versions: Versions,
    ) -> Result<(ArrayMeta, Versions)> {
        let peers = self.peers();
        for peer in &peers {
            if let Ok(Response::Meta(m)) = self.pool.call_manager(
                peer,
                &Request::Lookup {
                    name: spec.name.clone(),
                    forwarded: true,
                },
            ) {
                return Err(Error::AlreadyExists(format!(
                    "an array named {:?} already exists in cluster {}",
                    spec.name, m.manager.cluster
                )));
            }
        }
        // Clusters for the copies outside ours: preferred ones first, then the others by name.
        let mut others: Vec<&Contact> = Vec::new();
        for want in &spec.replicate_to {
            if let Some(c) = peers.iter().find(|c| &c.cluster == want) {
                if !others.iter().any(|o| o.cluster == c.cluster) {
                    others.push(c);
                }
            } else if want != &self.me.cluster {
                return Err(Error::NotFound(format!(
                    "{} asks for copies in cluster {want}, which is not in the federation",
                    spec.name
                )));
            }
        }
        for c in &peers {
            if !others.iter().any(|o| o.cluster == c.cluster) {
                others.push(c);
            }
        }
        let extra_clusters = spec.redundancy.clusters as usize - 1;
        if others.len() < extra_clusters {
            let mut known: Vec<String> = peers.iter().map(|c| c.cluster.clone()).collect();
            known.push(self.me.cluster.clone());
            known.sort();
            return Err(Error::Capacity(format!(
                "redundancy of {} asks for {} clusters; the federation has {} ({})",
                spec.name,
                spec.redundancy.clusters,
                known.len(),
                known.join(", ")
            )));
        }
        let ppc = spec.redundancy.providers_per_cluster;
        let retained = u64::from(spec.retention.max_versions);
        let mut blocks = Vec::new();
        for b in 0..spec.layout.nprocs() {
            let bytes = spec.layout.local_len(b)? * spec.elem.size() as u64 * retained;
            let (home, local_extra) = match spec.homes {
                HomePlacement::Creator => (homes[b as usize].clone(), ppc - 1),
                HomePlacement::Daemons => {
                    let h = self
                        .lock()
                        .membership
                        .reserve(&self.me.cluster, bytes, 1, &[])?;
                    (h[0].clone(), ppc - 1)
                }
            };
            let mut replicas = if local_extra > 0 {
                self.lock().membership.reserve(
                    &self.me.cluster,
                    bytes,
                    local_extra,
                    std::slice::from_ref(&home.name),
                )?
            } else {
                vec![]
            };
            for c in others.iter().take(extra_clusters) {
                match self.pool.call_manager(
                    c,
                    &Request::Reserve {
                        bytes,
                        count: ppc,
                        exclude: vec![],
                    },
                )? {
                    Response::Reserved(nodes) => replicas.extend(nodes),
                    other => {
                        return Err(Error::Protocol(format!(
                            "unexpected answer to Reserve: {other:?}"
                        )))
                    }
                }
            }
            blocks.push(BlockPlacement {
                home: Some(home),
                replicas,
            });
        }
        let serial = {
            let mut st = self.lock();
            st.serial += 1;
            st.serial
        };
        let id = fnv(&[
            self.me.cluster.as_bytes(),
            &self.me.epoch.to_le_bytes(),
            &serial.to_le_bytes(),
        ]);
        let meta = ArrayMeta {
            id,
            spec: spec.clone(),
            manager: self.me.clone(),
            blocks,
            committed: 0,
            floor: 0,
        };
        // Daemon homes and every replica start holding their block now.
        for (b, placement) in meta.blocks.iter().enumerate() {
            let daemons = placement.copies().filter(|n| n.kind == NodeKind::Daemon);
            for n in daemons {
                self.pool
                    .call(
                        &n.addr,
                        &Request::Host {
                            meta: meta.clone(),
                            block: b as u32,
                        },
                    )
                    .map_err(|e| {
                        Error::Network(format!(
                            "asking {n} to host block {b} of {}: {e}",
                            spec.name
                        ))
                    })?;
            }
        }
        Ok((meta, versions))
    }

    fn leave(&self, node: &NodeInfo, homes: &[(ArrayId, u32)]) -> Vec<(NodeInfo, ArrayMeta, u32)> {
        let mut promotions = Vec::new();
        let mut st = self.lock();
        st.membership.leave(&node.name);
        for &(array, block) in homes {
            let Some(rec) = st.arrays.get_mut(&array) else {
                continue;
            };
            let Some(p) = rec.meta.blocks.get_mut(block as usize) else {
                continue;
            };
            if p.home.as_ref().map(|h| &h.name) != Some(&node.name) {
                continue;
            }
            p.home = if p.replicas.is_empty() {
                None
            } else {
                Some(p.replicas.remove(0))
            };
            match &p.home {
                Some(h) => {
                    let h = h.clone();
                    tracing::info!(
                        "block {block} of {}: home moves from {} to {}",
                        rec.meta.spec.name,
                        node.name,
                        h.name
                    );
                    promotions.push((h, Self::current_meta(rec), block));
                }
                None => tracing::warn!(
                    "block {block} of {} is lost: its only copy was on {}, which left",
                    rec.meta.spec.name,
                    node.name
                ),
            }
        }
        for rec in st.arrays.values_mut() {
            for p in &mut rec.meta.blocks {
                p.replicas.retain(|r| r.name != node.name);
            }
        }
        self.changed.notify_all();
        promotions
    }

    fn wait<T>(
        &self,
        timeout: Duration,
        what: impl Fn() -> String,
        mut poll: impl FnMut(&mut State) -> Result<Poll<T>>,
        on_timeout: impl FnOnce(&mut State),
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Poll::Ready(v) = poll(&mut st)? {
                return Ok(v);
            }
            let now = Instant::now();
            if now >= deadline {
                on_timeout(&mut st);
                self.changed.notify_all();
                return Err(Error::Timeout {
                    what: what(),
                    seconds: timeout.as_secs_f64(),
                });
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn array_name(&self, array: ArrayId) -> String {
        self.lock()
            .arrays
            .get(&array)
            .map(|r| r.meta.spec.name.clone())
            .unwrap_or_default()
    }

    fn record(st: &mut State, array: ArrayId) -> Result<&mut Record> {
        st.arrays
            .get_mut(&array)
            .ok_or_else(|| Error::NotFound(format!("no array with id {array} at this manager")))
    }

    fn status(&self, forwarded: bool) -> Vec<ClusterStatus> {
        let mut out = vec![{
            let st = self.lock();
            let mut arrays: Vec<ArrayStatus> = st
                .arrays
                .values()
                .map(|r| ArrayStatus {
                    meta: Self::current_meta(r),
                    pins: r.versions.pinned(),
                    writer: r.versions.writer().is_some(),
                    dropped_unread: r.versions.dropped_unread(),
                })
                .collect();
            arrays.sort_by(|a, b| a.meta.spec.name.cmp(&b.meta.spec.name));
            ClusterStatus {
                cluster: self.me.cluster.clone(),
                manager: self.me.clone(),
                members: st.membership.status(),
                arrays,
            }
        }];
        if !forwarded {
            for peer in self.peers() {
                match self
                    .pool
                    .call_manager(&peer, &Request::Status { forwarded: true })
                {
                    Ok(Response::Status(s)) => out.extend(s),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("status of cluster {}: {e}", peer.cluster),
                }
            }
        }
        out.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        out
    }

    fn respond(&self, session: &mut Session, req: Request) -> Result<Response> {
        match req {
            Request::Register { node, capacity } => {
                if node.cluster != self.me.cluster {
                    return Err(Error::InvalidArgument(format!(
                        "{} belongs to cluster {}, this is the manager of {}",
                        node.name, node.cluster, self.me.cluster
                    )));
                }
                tracing::info!("{} joined ({} bytes)", node.name, capacity);
                self.lock().membership.register(node, capacity);
                Ok(Response::Ok)
            }
            Request::Leave { node, homes } => {
                for (home, meta, block) in self.leave(&node, &homes) {
                    if let Err(e) = self
                        .pool
                        .call(&home.addr, &Request::Promote { meta, block })
                    {
                        tracing::warn!("promoting {home} for block {block}: {e}");
                    }
                }
                Ok(Response::Ok)
            }
            Request::Reserve {
                bytes,
                count,
                exclude,
            } => {
                let nodes =
                    self.lock()
                        .membership
                        .reserve(&self.me.cluster, bytes, count, &exclude)?;
                Ok(Response::Reserved(nodes))
            }
            Request::Create { spec, homes } => Ok(Response::Meta(self.create(spec, homes)?)),
            Request::Lookup { name, forwarded } => {
                Ok(Response::Meta(self.lookup(&name, forwarded)?))
            }
            Request::List { pattern, forwarded } => {
                let mut names: Vec<NameEntry> = {
                    let st = self.lock();
                    st.arrays
                        .values()
                        .filter(|r| name_matches(&pattern, &r.meta.spec.name))
                        .map(|r| NameEntry {
                            name: r.meta.spec.name.clone(),
                            cluster: self.me.cluster.clone(),
                            elem: r.meta.spec.elem,
                            shape: r.meta.spec.layout.shape(),
                            committed: r.versions.committed(),
                        })
                        .collect()
                };
                if !forwarded {
                    for peer in self.peers() {
                        match self.pool.call_manager(
                            &peer,
                            &Request::List {
                                pattern: pattern.clone(),
                                forwarded: true,
                            },
                        ) {
                            Ok(Response::Names(n)) => names.extend(n),
                            Ok(_) => {}
                            Err(e) => tracing::warn!("listing at cluster {}: {e}", peer.cluster),
                        }
                    }
                }
                names.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(Response::Names(names))
            }
            Request::Status { forwarded } => Ok(Response::Status(self.status(forwarded))),
            Request::AcquireWrite { array, timeout_ms } => {
                let ticket = Self::record(&mut self.lock(), array)?
                    .versions
                    .enqueue_writer();
                let timeout = Duration::from_millis(timeout_ms);
                let name = self.array_name(array);
                let grant = self.wait(
                    timeout,
                    || format!("write lock of {name}"),
                    |st| {
                        let rec = Self::record(st, array)?;
                        Ok(match rec.versions.try_grant(ticket) {
                            Poll::Ready(g) => Poll::Ready((g, rec.meta.blocks.clone())),
                            Poll::Pending => Poll::Pending,
                        })
                    },
                    |st| {
                        if let Some(r) = st.arrays.get_mut(&array) {
                            r.versions.cancel(ticket);
                        }
                    },
                )?;
                session.epochs.push((array, grant.0.epoch));
                Ok(Response::WriteGranted {
                    epoch: grant.0.epoch,
                    base: grant.0.base,
                    floor: grant.0.floor,
                    blocks: grant.1,
                })
            }
            Request::Commit {
                array,
                epoch,
                version,
            } => {
                Self::record(&mut self.lock(), array)?
                    .versions
                    .commit(epoch, version)?;
                session.epochs.retain(|&e| e != (array, epoch));
                self.changed.notify_all();
                Ok(Response::Ok)
            }
            Request::Abort { array, epoch } => {
                Self::record(&mut self.lock(), array)?
                    .versions
                    .abort(epoch)?;
                session.epochs.retain(|&e| e != (array, epoch));
                self.changed.notify_all();
                Ok(Response::Ok)
            }
            Request::WaitVersion {
                array,
                req,
                timeout_ms,
                pin,
            } => {
                let timeout = Duration::from_millis(timeout_ms);
                let name = self.array_name(array);
                let last = std::cell::Cell::new(0u64);
                let ((version, pin_id), blocks) = self.wait(
                    timeout,
                    || {
                        format!(
                            "version {req:?} of {name} (latest committed: {})",
                            last.get()
                        )
                    },
                    |st| {
                        let rec = Self::record(st, array)?;
                        last.set(rec.versions.committed());
                        Ok(match rec.versions.try_read(req, pin)? {
                            Poll::Ready(v) => Poll::Ready((v, rec.meta.blocks.clone())),
                            Poll::Pending => Poll::Pending,
                        })
                    },
                    |_| {},
                )?;
                if let Some(p) = pin_id {
                    session.pins.push((array, p));
                }
                Ok(Response::Version {
                    version,
                    pin: pin_id,
                    blocks,
                })
            }
            Request::Unpin { array, pin } => {
                Self::record(&mut self.lock(), array)?.versions.unpin(pin)?;
                session.pins.retain(|&p| p != (array, pin));
                self.changed.notify_all();
                Ok(Response::Ok)
            }
            other => Err(Error::Protocol(format!(
                "a manager does not answer {}",
                crate::service::provider::request_name(&other)
            ))),
        }
    }
}

impl Handler for Manager {
    type Session = Session;

    fn handle(&self, session: &mut Session, conn: &mut Conn, req: Request) -> Result<()> {
        let resp = match self.respond(session, req) {
            Ok(r) => r,
            Err(e) => Response::error(&e),
        };
        conn.send(&resp)
    }

    fn holds_state(&self, session: &Session) -> bool {
        !session.epochs.is_empty() || !session.pins.is_empty()
    }

    fn closed(&self, session: Session) {
        if session.epochs.is_empty() && session.pins.is_empty() {
            return;
        }
        let mut st = self.lock();
        for (array, epoch) in session.epochs {
            if let Some(r) = st.arrays.get_mut(&array) {
                if r.versions.abort(epoch).is_ok() {
                    tracing::warn!(
                        "writer of {} disconnected: epoch {epoch} aborted",
                        r.meta.spec.name
                    );
                }
            }
        }
        for (array, pin) in session.pins {
            if let Some(r) = st.arrays.get_mut(&array) {
                let _ = r.versions.unpin(pin);
            }
        }
        self.changed.notify_all();
    }
}
