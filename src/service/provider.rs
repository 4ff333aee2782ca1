//! The provider service: serves a [`Store`] over TCP. Standalone daemons run it; every rank of a
//! job runs one embedded for the blocks it owns.
//!
//! Reads pack the selected part of a snapshot straight onto the socket; writes unpack from the
//! socket straight into the working copy; publishing pushes the new snapshot to every replica
//! (in parallel) before answering with the copies that hold it, so an acknowledged release
//! has every current copy up to date. The fencing rules (terms, epochs) are
//! [`BlockCopy`](crate::service::copy::BlockCopy)'s.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::plan::stream::{pack_to, span_elements, unpack_from};
use crate::plan::Span;
use crate::service::authz::{self, deny, require_manager, require_manager_of, Peer};
use crate::service::copy::{judge_pusher, Admission, Pusher};
use crate::service::failpoint;
use crate::service::pool::Pool;
use crate::service::protocol::check_name;
use crate::service::protocol::{
    ArrayId, ArrayMeta, CacheStats, NodeId, NodeInfo, Request, Response, Selection, Stamp,
};
use crate::service::selection::{announced_write_spans, read_spans};
use crate::service::server::Handler;
use crate::service::store::{CachedBlock, Data, Store};
use crate::transport::shm;
use crate::transport::tcp::{io_error, Conn};
use crate::with_elem_size;

/// A provider: its store, and a pool to reach replicas.
pub struct Provider {
    store: Arc<Store>,
    pool: Arc<Pool>,
    push_timeout: Duration,
    /// This provider, as the managers tracking its cache copies know it.
    node: NodeInfo,
    /// Its settings (to find its cluster's manager).
    cfg: crate::config::Config,
    /// Requests received from processes of other clusters.
    from_other_clusters: AtomicU64,
}

impl Provider {
    /// Serves `store` as `node`, replicating through `pool`, waiting at most `push_timeout` on
    /// a replica that takes no more of a push.
    pub fn new(
        node: NodeInfo,
        cfg: &crate::config::Config,
        store: Arc<Store>,
        pool: Arc<Pool>,
        push_timeout: Duration,
    ) -> Provider {
        Provider {
            store,
            pool,
            push_timeout,
            node,
            cfg: cfg.clone(),
            from_other_clusters: AtomicU64::new(0),
        }
    }

    /// A reader of this cluster's `CacheRead`: the snapshot to serve it from (a copy of the
    /// block's group held here, a cache copy, or a new cache copy), with its element size and
    /// the spans to send. The layout and the copies to fetch from come from this provider's
    /// own records or from the array's manager (looked up through this cluster's manager),
    /// never from the reader.
    fn cache_read(
        &self,
        peer: &Peer,
        array: ArrayId,
        name: &str,
        block: u32,
        stamp: Stamp,
        selection: &Selection,
    ) -> Result<(usize, Vec<Span>, Arc<Data>)> {
        // A cluster's providers cache for its own readers, not for anyone's.
        if peer.identity.cluster != self.node.cluster {
            return Err(deny(
                peer,
                "CacheRead",
                format!(
                    "{} caches for readers of cluster {}",
                    self.node.name, self.node.cluster
                ),
            ));
        }
        if let Ok(meta) = self.store.meta_of_held(array, block) {
            let spans = read_spans(&meta.spec.layout, u64::from(block), selection)?;
            let snap = self.store.snapshot(array, block, stamp)?;
            return Ok((meta.spec.elem.size(), spans, snap));
        }
        if let Some(c) = self.store.cached(array, block, stamp) {
            let spans = read_spans(&c.layout, u64::from(block), selection)?;
            return Ok((c.elem_size, spans, c.data));
        }
        let meta = self.lookup(array, name)?;
        let placement = meta
            .blocks
            .get(block as usize)
            .ok_or_else(|| Error::InvalidArgument(format!("{name} has no block {block}")))?;
        if !placement.stamps.contains(&stamp) {
            return Err(Error::VersionGone(format!(
                "block {block} of {name} no longer holds {stamp}"
            )));
        }
        let spans = read_spans(&meta.spec.layout, u64::from(block), selection)?;
        let bytes = meta.block_bytes(u64::from(block))?;
        let mut last = None;
        for src in placement.copies() {
            match self.fetch_whole(src, array, block, stamp, bytes) {
                Ok(data) => {
                    let data = Arc::new(data);
                    self.keep_cached(&meta, block, stamp, data.clone());
                    return Ok((meta.spec.elem.size(), spans, data));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| Error::Lost(format!("block {block} of {name} has no copy left"))))
    }

    /// The whole committed state `stamp` of `block` (`bytes` long) from `src`.
    fn fetch_whole(
        &self,
        src: &NodeInfo,
        array: ArrayId,
        block: u32,
        stamp: Stamp,
        bytes: u64,
    ) -> Result<Data> {
        self.pool.with(&src.addr, |c| {
            c.send(&Request::Read {
                array,
                block,
                stamp,
                working: None,
                selection: Selection::Whole,
            })?;
            match c.recv::<Response>()?.into_result()? {
                Response::Data { bytes: got } if got == bytes => read_bulk(c, bytes),
                other => Err(Error::Protocol(format!(
                    "{src} answered {other:?} to a read of {stamp}"
                ))),
            }
        })
    }

    /// Array `array`, named `name`, as its manager describes it, asked through this cluster's
    /// manager (whose peers are the federation's managers, checked against their contact
    /// files).
    fn lookup(&self, array: ArrayId, name: &str) -> Result<ArrayMeta> {
        check_name(name)?;
        let home = crate::service::contact::manager_of(&self.cfg, &self.node.cluster)?;
        let req = Request::Lookup {
            name: name.to_string(),
            forwarded: false,
        };
        match self.pool.call_manager(&home, &req)? {
            Response::Meta(m) if m.id == array => m.check().map(|()| m),
            Response::Meta(_) => Err(Error::NotFound(format!(
                "{name} is another array now (it was destroyed and created again)"
            ))),
            other => Err(Error::Protocol(format!(
                "unexpected answer to Lookup: {other:?}"
            ))),
        }
    }

    /// Has the array's manager track a cache copy of `data`, then keeps it if it fits. A copy
    /// is served to later readers only once tracked (so a release's invalidation reaches it);
    /// one tracked but not kept is fetched again by the next reader sent here.
    fn keep_cached(&self, meta: &ArrayMeta, block: u32, stamp: Stamp, data: Arc<Data>) {
        let req = Request::CacheAdd {
            array: meta.id,
            block,
            stamp,
            node: self.node.clone(),
        };
        let manager = crate::service::contact::of_node(&meta.manager);
        if let Err(e) = self.pool.call_manager(&manager, &req) {
            tracing::debug!(
                "cache copy of {stamp} of block {block} of {} not tracked: {e}",
                meta.spec.name
            );
            return;
        }
        let cached = CachedBlock {
            data,
            layout: Arc::new(meta.spec.layout.clone()),
            elem_size: meta.spec.elem.size(),
        };
        if let Err(e) = self
            .store
            .cache(meta.id, block, stamp, meta.manager.clone(), cached)
        {
            tracing::debug!(
                "not caching {stamp} of block {block} of {}: {e}",
                meta.spec.name
            );
        }
    }
}

/// Answers a read with `spans` of `data` (elements of `size` bytes).
fn send_data(conn: &mut Conn, size: usize, spans: &[Span], data: &Data) -> Result<()> {
    let bytes = span_elements(spans) * size as u64;
    conn.send(&Response::Data { bytes })?;
    let stream = &mut conn.bulk(bytes);
    with_elem_size!(size, T => pack_to::<T, _>(spans, data.typed::<T>(), stream))
        .map_err(|e| io_error("sending data", e))
}

/// A block published by its home: the new stamp and the copies holding it.
pub struct Published {
    /// The new stamp (`None`: the epoch wrote nothing in this block).
    pub stamp: Option<Stamp>,
    /// The home and every replica that acknowledged the stamp.
    pub holders: Vec<NodeId>,
}

/// Publishes a block's working copy and pushes it to `replicas` in parallel (used by the
/// service and by a rank's embedded provider directly). A replica that cannot be reached is
/// left out of the holders (the manager then restores it, or it is gone); a replica that
/// refuses the push as coming from an older term means this home was replaced: the publish
/// fails with `Fenced`.
#[allow(clippy::too_many_arguments)]
pub fn publish(
    store: &Store,
    pool: &Pool,
    me: NodeId,
    array: ArrayId,
    block: u32,
    term: u64,
    epoch: u64,
    version: u64,
    keep: &[Stamp],
    replicas: &[NodeInfo],
    push_timeout: Duration,
) -> Result<Published> {
    let Some((stamp, snap)) = store.publish(array, block, term, epoch, version, keep)? else {
        return Ok(Published {
            stamp: None,
            holders: vec![me],
        });
    };
    let name = store.meta(array).map(|m| m.spec.name).unwrap_or_default();
    let _ = failpoint::hit("publish.before_push");
    let results: Vec<Result<NodeId>> = std::thread::scope(|s| {
        let handles: Vec<_> = replicas
            .iter()
            .map(|r| {
                let snap = snap.clone();
                s.spawn(move || {
                    pool.with(&r.addr, |c| {
                        c.set_timeouts(push_timeout)?;
                        c.send(&Request::Install {
                            array,
                            block,
                            term,
                            stamp,
                            keep: keep.to_vec(),
                            bytes: snap.len() as u64,
                        })?;
                        c.bulk(snap.len() as u64)
                            .write_all(snap.as_bytes())
                            .map_err(|e| io_error("sending a replica", e))?;
                        c.recv::<Response>()?.into_result().map(|_| ())
                    })
                    .map(|_| r.id())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Network("replication thread panicked".into())))
            })
            .collect()
    });
    let _ = failpoint::hit("publish.after_push");
    let mut holders = vec![me];
    for (r, result) in replicas.iter().zip(results) {
        match result {
            Ok(n) => holders.push(n),
            Err(e @ Error::Fenced(_)) => {
                return Err(Error::Fenced(format!(
                    "block {block} of {name}: {r} refused {stamp} ({e}): this home was replaced"
                )))
            }
            Err(e @ Error::NotAcquired(_)) => return Err(e),
            Err(e) => tracing::warn!(
                "block {block} of {name}: replica {r} did not take {stamp}: {e}; it will be \
                 restored or replaced"
            ),
        }
    }
    Ok(Published {
        stamp: Some(stamp),
        holders,
    })
}

fn reply(conn: &mut Conn, r: Result<Response>) -> Result<()> {
    match r {
        Ok(resp) => conn.send(&resp),
        Err(e) => {
            authz::log_refusal(conn, &e);
            conn.send(&Response::error(&e))
        }
    }
}

/// Reads `bytes` announced bulk bytes into fresh aligned memory.
fn read_bulk(conn: &mut Conn, bytes: u64) -> Result<Data> {
    let mut d = Data::for_overwrite(bytes as usize)?;
    std::io::Read::read_exact(&mut conn.bulk(bytes), d.as_bytes_mut())
        .map_err(|e| io_error("reading bulk data", e))?;
    Ok(d)
}

/// Answers `e` and reports the connection unusable: announced bulk bytes that were not read
/// cannot be skipped safely.
fn refuse_bulk(conn: &mut Conn, e: Error) -> Result<()> {
    let _ = reply(conn, Err(e.clone()));
    Err(e)
}

impl Provider {
    /// `Ok` if `peer` is the manager of `array` (the one holding its directory entry, which
    /// may be another cluster's: a block's copies are spread over clusters). For an array not
    /// held here, the entry a request carries (`carried`) names it; without one, any manager
    /// (the request then finds nothing to act on).
    fn require_array_manager(
        &self,
        peer: &Peer,
        array: ArrayId,
        carried: Option<&ArrayMeta>,
        what: &str,
    ) -> Result<()> {
        if let Ok(held) = self.store.meta(array) {
            require_manager_of(peer, &held.manager.cluster, what)?;
        }
        match carried {
            Some(m) => require_manager_of(peer, &m.manager.cluster, what),
            None => require_manager(peer, what),
        }
    }

    /// `Ok` if `peer` is the home of the block at `term` (see [`copy::admit_install`]): known
    /// here from the entry the manager sent, else asked of the array's manager (whose
    /// connection must be that manager's). The pusher's cluster and role come from its
    /// credential; its name and incarnation are what it claims.
    ///
    /// [`copy::admit_install`]: crate::service::copy::admit_install
    fn authorize_install(&self, peer: &Peer, array: ArrayId, block: u32, term: u64) -> Result<()> {
        let what = || format!("Install of block {block} of array {array} at term {term}");
        let pusher = Pusher {
            id: &peer.id,
            cluster: &peer.identity.cluster,
            provider: !peer.is_manager(),
        };
        match self.store.admit_install(array, block, term, &pusher)? {
            Admission::Admit => Ok(()),
            Admission::Refuse(why) => Err(deny(peer, &what(), why)),
            Admission::AskManager => {
                let meta = self.store.meta(array)?;
                let manager = &meta.manager;
                let answer = self.pool.with(&manager.addr, |c| {
                    if !c.identity().is_manager_of(&manager.cluster) {
                        return Err(Error::Refused(format!(
                            "{} does not answer as the manager of cluster {}",
                            manager.addr, manager.cluster
                        )));
                    }
                    c.send(&Request::Placement {
                        array,
                        suspects: vec![],
                    })?;
                    c.recv::<Response>()?.into_result()
                })?;
                let Response::Placement(blocks) = answer else {
                    return Err(Error::Protocol(format!(
                        "{manager} answered {answer:?} to a placement request"
                    )));
                };
                let p = blocks.get(block as usize).ok_or_else(|| {
                    Error::Protocol(format!("{manager} gave no placement of block {block}"))
                })?;
                match judge_pusher(p.term, p.home.as_ref(), term, &pusher) {
                    Ok(()) => {
                        tracing::info!(
                            "block {block} of array {array}: {} is its home at term {term} \
                             (confirmed by {manager})",
                            peer.id.name
                        );
                        self.store.learn_home(array, block, p.term, p.home.as_ref());
                        Ok(())
                    }
                    Err(Error::Refused(why)) => Err(deny(peer, &what(), why)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Brings a copy up to date: hosts the block if new here, then fetches every stamp in
    /// `stamps` it lacks from the first source that has it. A stamp no source holds any more was
    /// pruned meanwhile (a later release moved the floor past it: no retained version needs it),
    /// so it is skipped; the manager judges the copy complete against the stamps committed by
    /// then, and starts another round if something is still missing.
    fn restore(
        &self,
        meta: &ArrayMeta,
        block: u32,
        stamps: &[Stamp],
        sources: &[NodeInfo],
    ) -> Result<Vec<Stamp>> {
        self.store.host(meta, block)?;
        let bytes = meta.block_bytes(u64::from(block))?;
        let held = self.store.stamps(meta.id, block)?;
        for &stamp in stamps.iter().filter(|s| !held.contains(s)) {
            let mut failures = Vec::new();
            for src in sources {
                match self.fetch_whole(src, meta.id, block, stamp, bytes) {
                    Ok(data) => {
                        self.store.restore(meta.id, block, stamp, data)?;
                        failures.clear();
                        break;
                    }
                    Err(e) => failures.push(e),
                }
            }
            match failures.iter().find(|e| !matches!(e, Error::NotFound(_))) {
                Some(e) => return Err(e.clone()),
                None if !failures.is_empty() => {
                    tracing::debug!("restoring {stamp}: no source holds it any more; skipped")
                }
                None => {}
            }
        }
        self.store.stamps(meta.id, block)
    }
}

impl Handler for Provider {
    type Session = ();

    fn handle(&self, _: &mut (), conn: &mut Conn, req: Request) -> Result<()> {
        let peer = Peer::of(conn);
        if peer.identity.cluster != self.node.cluster && !matches!(req, Request::CacheStats) {
            self.from_other_clusters.fetch_add(1, Ordering::Relaxed);
        }
        match req {
            Request::Ping => reply(conn, Ok(Response::Ok)),
            Request::CacheRead {
                array,
                name,
                block,
                stamp,
                selection,
            } => match self.cache_read(&peer, array, &name, block, stamp, &selection) {
                Ok((size, spans, data)) => send_data(conn, size, &spans, &data),
                Err(e) => reply(conn, Err(e)),
            },
            Request::Invalidate { array, copies } => {
                let r = require_manager(&peer, "Invalidate").map(|()| {
                    let n = self
                        .store
                        .invalidate(array, &copies, &peer.identity.cluster);
                    tracing::debug!("{n} cache copies of array {array} invalidated");
                    Response::Ok
                });
                reply(conn, r)
            }
            Request::CacheStats => reply(
                conn,
                Ok(Response::CacheStats(CacheStats {
                    from_other_clusters: self.from_other_clusters.load(Ordering::Relaxed),
                    ..self.store.cache_stats()
                })),
            ),
            Request::Drop { array } => {
                let r = self
                    .require_array_manager(&peer, array, None, "Drop")
                    .map(|()| {
                        self.store.drop_array(array);
                        Response::Ok
                    });
                reply(conn, r)
            }
            Request::Host { meta, block } => {
                let r = self
                    .require_array_manager(&peer, meta.id, Some(&meta), "Host")
                    .and_then(|()| self.store.host(&meta, block))
                    .map(|_| Response::Ok);
                reply(conn, r)
            }
            Request::Promote { array, block, term } => {
                let r = self
                    .require_array_manager(&peer, array, None, "Promote")
                    .and_then(|()| self.store.promote(array, block, term))
                    .map(|_| Response::Ok);
                if r.is_ok() {
                    tracing::info!("now home of block {block} of array {array} (term {term})");
                }
                reply(conn, r)
            }
            Request::Fence { array, block, term } => {
                let r = self
                    .require_array_manager(&peer, array, None, "Fence")
                    .and_then(|()| self.store.fence(array, block, term))
                    .map(|_| Response::Ok);
                reply(conn, r)
            }
            Request::Restore {
                meta,
                block,
                stamps,
                sources,
            } => {
                let r = self
                    .require_array_manager(&peer, meta.id, Some(&meta), "Restore")
                    .and_then(|()| self.restore(&meta, block, &stamps, &sources))
                    .map(|held| Response::Restored { held });
                reply(conn, r)
            }
            Request::Install {
                array,
                block,
                term,
                stamp,
                keep,
                bytes,
            } => {
                let expected = self
                    .store
                    .meta_of_held(array, block)
                    .and_then(|m| m.block_bytes(u64::from(block)));
                // Authorized before a byte of the data is read: a refusal leaves the data
                // unread, so the connection closes.
                let expected = expected.and_then(|n| {
                    self.authorize_install(&peer, array, block, term)
                        .map(|()| n)
                });
                match expected {
                    Ok(n) if n == bytes => {
                        let data = read_bulk(conn, bytes)?;
                        let _ = failpoint::hit("install.before_store");
                        let r = self
                            .store
                            .install(array, block, term, stamp, &keep, data)
                            .map(|_| Response::Ok);
                        reply(conn, r)
                    }
                    Ok(n) => refuse_bulk(
                        conn,
                        Error::Protocol(format!(
                            "install of block {block} announces {bytes} bytes; the block has {n}"
                        )),
                    ),
                    Err(e) => refuse_bulk(conn, e),
                }
            }
            Request::Write {
                array,
                block,
                term,
                epoch,
                base,
                selection,
                bytes,
            } => {
                let meta = match self.store.meta_of_held(array, block) {
                    Ok(m) => m,
                    Err(e) => return refuse_bulk(conn, e),
                };
                let size = meta.spec.elem.size();
                let spans = match announced_write_spans(&meta, block, &selection, bytes) {
                    Ok(s) => s,
                    Err(e) => return refuse_bulk(conn, e),
                };
                let working = match self.store.working(array, block, term, epoch, base, false) {
                    Ok(w) => w,
                    Err(e) => return refuse_bulk(conn, e),
                };
                let mut w = working.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = w.check_not_lent("writing") {
                    drop(w);
                    return refuse_bulk(conn, e);
                }
                {
                    let stream = &mut conn.bulk(bytes);
                    with_elem_size!(size, T => unpack_from::<T, _>(&spans, stream, w.data.typed_mut::<T>()))
                        .map_err(|e| io_error("receiving written data", e))?;
                }
                drop(w);
                reply(conn, Ok(Response::Ok))
            }
            Request::Publish {
                array,
                block,
                term,
                epoch,
                version,
                keep,
                replicas,
            } => {
                let r = publish(
                    &self.store,
                    &self.pool,
                    NodeId {
                        name: self.pool.hello().name.clone(),
                        incarnation: self.pool.hello().incarnation,
                    },
                    array,
                    block,
                    term,
                    epoch,
                    version,
                    &keep,
                    &replicas,
                    self.push_timeout,
                )
                .map(|p| Response::Published {
                    stamp: p.stamp,
                    holders: p.holders,
                });
                reply(conn, r)
            }
            Request::Read {
                array,
                block,
                stamp,
                working,
                selection,
            } => {
                let prepared = (|| {
                    let meta = self.store.meta_of_held(array, block)?;
                    let spans = read_spans(&meta.spec.layout, u64::from(block), &selection)?;
                    let working = match working {
                        Some(e) => self.store.working_if_any(array, block, e)?,
                        None => None,
                    };
                    if let Some(w) = &working {
                        w.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .check_not_lent("reading")?;
                    }
                    let snap = match &working {
                        Some(_) => None,
                        None => Some(self.store.snapshot(array, block, stamp)?),
                    };
                    Ok::<_, Error>((meta.spec.elem.size(), spans, working, snap))
                })();
                let (size, spans, working, snap) = match prepared {
                    Ok(p) => p,
                    Err(e) => return reply(conn, Err(e)),
                };
                let bytes = span_elements(&spans) * size as u64;
                conn.send(&Response::Data { bytes })?;
                let _ = failpoint::hit("read.after_header");
                let stream = &mut conn.bulk(bytes);
                let sent = match (&working, &snap) {
                    (Some(w), _) => {
                        let w = w.lock().unwrap_or_else(|e| e.into_inner());
                        with_elem_size!(size, T => pack_to::<T, _>(&spans, w.data.typed::<T>(), stream))
                    }
                    (None, Some(d)) => {
                        with_elem_size!(size, T => pack_to::<T, _>(&spans, d.typed::<T>(), stream))
                    }
                    (None, None) => unreachable!("a read has a working copy or a snapshot"),
                };
                sent.map_err(|e| io_error("sending data", e))
            }
            Request::Map {
                array,
                block,
                stamp,
                host,
            } => {
                let r = self.store.meta_of_held(array, block).and_then(|_| {
                    let snap = self.store.snapshot(array, block, stamp)?;
                    let same_host = shm::host_id() == Some(&host);
                    Ok(Response::Mapped {
                        segment: snap.share().filter(|_| same_host),
                        same_host,
                    })
                });
                reply(conn, r)
            }
            other => reply(
                conn,
                Err(Error::Protocol(format!(
                    "a provider does not answer {}",
                    request_name(&other)
                ))),
            ),
        }
    }
}

/// A request's name, for messages.
pub fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Register { .. } => "Register",
        Request::Resume { .. } => "Resume",
        Request::Renew { .. } => "Renew",
        Request::Leave { .. } => "Leave",
        Request::Gone { .. } => "Gone",
        Request::Members => "Members",
        Request::Reserve { .. } => "Reserve",
        Request::Create { .. } => "Create",
        Request::Lookup { .. } => "Lookup",
        Request::ClaimName { .. } => "ClaimName",
        Request::Search { .. } => "Search",
        Request::SetAttributes { .. } => "SetAttributes",
        Request::Raft { .. } => "Raft",
        Request::ChangeReplicas { .. } => "ChangeReplicas",
        Request::DropClaim { .. } => "DropClaim",
        Request::List { .. } => "List",
        Request::Status { .. } => "Status",
        Request::Placement { .. } => "Placement",
        Request::AcquireWrite { .. } => "AcquireWrite",
        Request::AcquireWriteAsReader { .. } => "AcquireWriteAsReader",
        Request::Commit { .. } => "Commit",
        Request::Abort { .. } => "Abort",
        Request::WaitVersion { .. } => "WaitVersion",
        Request::AddReader { .. } => "AddReader",
        Request::RemoveReader { .. } => "RemoveReader",
        Request::Unpin { .. } => "Unpin",
        Request::Ping => "Ping",
        Request::Drop { .. } => "Drop",
        Request::Created { .. } => "Created",
        Request::Destroy { .. } => "Destroy",
        Request::Release { .. } => "Release",
        Request::Host { .. } => "Host",
        Request::Promote { .. } => "Promote",
        Request::Fence { .. } => "Fence",
        Request::Restore { .. } => "Restore",
        Request::Install { .. } => "Install",
        Request::Write { .. } => "Write",
        Request::Publish { .. } => "Publish",
        Request::Read { .. } => "Read",
        Request::Map { .. } => "Map",
        Request::CreateNamespace { .. } => "CreateNamespace",
        Request::DestroyNamespace { .. } => "DestroyNamespace",
        Request::Namespaces { .. } => "Namespaces",
        Request::CacheRead { .. } => "CacheRead",
        Request::CacheAdd { .. } => "CacheAdd",
        Request::Invalidate { .. } => "Invalidate",
        Request::CacheStats => "CacheStats",
    }
}
