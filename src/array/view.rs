//! Block-level operations on one array, shared by the collective handle ([`SharedArray`]) and
//! the per-process region locks: where each block's copies are, reading pieces and regions
//! from the nearest copy in parallel, writing into homes' working copies, publishing.
//!
//! Copies that cannot be reached are remembered as suspects; [`View::refresh`] reports them to
//! the array's manager (which probes them and fails over at once if they are dead) and takes
//! the new placement, and [`retry`] runs an operation against fresh placements until it
//! succeeds, fails for good, or its deadline passes. That is how clients ride over failovers.
//!
//! [`SharedArray`]: super::SharedArray

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::element::Element;
use crate::error::{Error, ErrorCode, Result};
use crate::layout::Layout;
use crate::plan::stream::{copy_to_ptr, pack_to, span_elements, unpack_from_ptr};
use crate::plan::{region, row_major_strides, Plan, Span};
use crate::service::protocol::*;
use crate::transport::shm;
use crate::transport::tcp::io_error;

use super::{fetch_placement, unexpected, Federation};

/// A destination buffer shared by the threads filling disjoint parts of it.
#[derive(Clone, Copy)]
pub(crate) struct SharedDst<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: the threads write disjoint elements (the pieces of different blocks never overlap:
// every plan moves each element exactly once, tested exhaustively), each through the pointer
// or through slices covering only its own runs.
unsafe impl<T: Send> Send for SharedDst<T> {}
unsafe impl<T: Send> Sync for SharedDst<T> {}

/// (block, selection, spans from the block to the destination buffer)
pub(crate) type Work = Vec<(u64, Selection, Vec<Span>)>;

/// One process's view of an array: its entry (with the placement it last heard of), its rank
/// (which spreads reads over copies), and the copies it found unreachable since its last
/// refresh.
#[derive(Clone)]
pub(crate) struct View {
    pub(crate) fed: Federation,
    pub(crate) meta: ArrayMeta,
    pub(crate) rank: u64,
    pub(crate) suspects: Arc<Mutex<Vec<NodeInfo>>>,
}

/// Whether a fresh placement may make a failed operation succeed: the copy it talked to died,
/// was paused, was replaced (fenced), or does not hold what the old placement said. An
/// authorization refusal is final: no placement changes who this process is.
pub(crate) fn retryable(e: &Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::Network
            | ErrorCode::Timeout
            | ErrorCode::Refused
            | ErrorCode::NotFound
            | ErrorCode::Fenced
            | ErrorCode::Stale
    ) && !crate::service::authz::is_refusal(e)
}

/// Runs `attempt` until it succeeds, fails with an error a new placement cannot fix, or
/// `deadline` passes; between attempts the view is refreshed (with growing pauses while the
/// manager has not changed the placement yet: failure detection takes up to the failure
/// timeout for a paused process).
pub(crate) fn retry<R>(
    view: &mut View,
    deadline: Instant,
    what: &str,
    attempt: impl FnMut(&View) -> Result<R>,
) -> Result<R> {
    retry_since(Instant::now(), view, deadline, what, attempt)
}

/// [`retry`] of an operation first tried at `started` (what a timeout reports).
fn retry_since<R>(
    started: Instant,
    view: &mut View,
    deadline: Instant,
    what: &str,
    mut attempt: impl FnMut(&View) -> Result<R>,
) -> Result<R> {
    let mut pause = Duration::from_millis(20);
    loop {
        match attempt(view) {
            Ok(r) => return Ok(r),
            Err(e) if retryable(&e) && Instant::now() < deadline => {
                tracing::info!(
                    "{what} of {}: {e}; retrying on a fresh placement",
                    view.name()
                );
                let before = view.meta.blocks.clone();
                view.refresh()?;
                if view.meta.blocks == before {
                    std::thread::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    );
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
            Err(e) if retryable(&e) => {
                return Err(Error::Timeout {
                    what: format!("{what} of {}: last error: {e}", view.name()),
                    seconds: started.elapsed().as_secs_f64(),
                })
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`retry`] for callers holding the view shared: the first attempt runs on `view` itself,
/// later ones on a refreshed copy. `attempt` is told whether the placement changed since the
/// first attempt (so that it can write again what the old homes had).
pub(crate) fn retry_shared<R>(
    view: &View,
    deadline: Instant,
    what: &str,
    mut attempt: impl FnMut(&View, bool) -> Result<R>,
) -> Result<R> {
    let started = Instant::now();
    match attempt(view, false) {
        Err(e) if retryable(&e) => {
            let mut v = view.clone();
            retry_since(started, &mut v, deadline, what, |v| attempt(v, true))
        }
        other => other,
    }
}

/// The stamps to keep at a block after publishing on top of `stamps` with `floor`: the newest
/// not newer than the floor, and every newer one (the new stamp is kept by the publish).
pub(crate) fn keep_after(stamps: &[Stamp], floor: u64) -> Vec<Stamp> {
    let from = stamps.iter().rposition(|s| s.version <= floor).unwrap_or(0);
    stamps[from..].to_vec()
}

/// Buffer strides of a region: the given leading dimensions, or compact row-major.
pub(crate) fn region_strides(lo: &[u64], hi: &[u64], ld: Option<&[u64]>) -> Result<Vec<u64>> {
    let extents: Vec<u64> = lo.iter().zip(hi).map(|(&l, &h)| h - l).collect();
    let Some(ld) = ld else {
        return Ok(row_major_strides(&extents));
    };
    if ld.len() + 1 != extents.len() {
        return Err(Error::DimensionMismatch {
            what: "leading dimensions (one per dimension but the last)".into(),
            expected: extents.len().saturating_sub(1),
            got: ld.len(),
        });
    }
    let mut strides = vec![1u64; extents.len()];
    for i in (0..ld.len()).rev() {
        if ld[i] < extents[i + 1] {
            return Err(Error::InvalidArgument(format!(
                "leading dimension {} of {} is smaller than the region's extent {} there",
                i,
                ld[i],
                extents[i + 1]
            )));
        }
        strides[i] = strides[i + 1]
            .checked_mul(ld[i])
            .ok_or_else(|| Error::Overflow("leading dimensions".into()))?;
    }
    Ok(strides)
}

/// Elements a buffer must hold for a region laid out with `strides`.
fn region_buffer_len(lo: &[u64], hi: &[u64], strides: &[u64]) -> u64 {
    if lo.iter().zip(hi).any(|(l, h)| l == h) {
        return 0;
    }
    1 + lo
        .iter()
        .zip(hi)
        .zip(strides)
        .map(|((&l, &h), &s)| (h - l - 1) * s)
        .sum::<u64>()
}

impl View {
    pub(crate) fn new(fed: Federation, meta: ArrayMeta, rank: u64) -> View {
        View {
            fed,
            meta,
            rank,
            suspects: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.meta.spec.name
    }

    fn placement(&self, block: u32) -> Result<&BlockPlacement> {
        self.meta
            .blocks
            .get(block as usize)
            .ok_or_else(|| Error::Protocol(format!("{} has no block {block}", self.name())))
    }

    pub(crate) fn home_of(&self, block: u32) -> Result<NodeInfo> {
        self.placement(block)?.home.clone().ok_or_else(|| {
            Error::Lost(format!(
                "block {block} of {} has no copy left: every provider holding it is gone",
                self.name()
            ))
        })
    }

    fn is_me(&self, node: &NodeInfo) -> bool {
        node.same(&self.fed.inner.node)
    }

    /// Remembers `node` as unreachable if `e` says so.
    fn suspect(&self, node: &NodeInfo, e: &Error) {
        if matches!(
            e.code(),
            ErrorCode::Network | ErrorCode::Timeout | ErrorCode::Refused
        ) {
            let mut s = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
            if !s.iter().any(|n| n.same(node)) {
                s.push(node.clone());
            }
        }
    }

    /// Asks the array's manager for the current placement, reporting the suspects.
    pub(crate) fn refresh(&mut self) -> Result<()> {
        let suspects =
            std::mem::take(&mut *self.suspects.lock().unwrap_or_else(|e| e.into_inner()));
        self.meta.blocks = fetch_placement(
            &self.fed,
            &self.meta.manager,
            self.meta.id,
            &self.meta.spec.layout,
            suspects,
        )?;
        Ok(())
    }

    /// Makes the working copy of `epoch` version `version` at block `block`'s home, which
    /// pushes it to the block's other copies; returns what the commit must report (`None`:
    /// the epoch wrote nothing there).
    pub(crate) fn publish_block(
        &self,
        block: u32,
        epoch: u64,
        version: u64,
        floor: u64,
    ) -> Result<Option<Touched>> {
        let p = self.placement(block)?;
        let home = self.home_of(block)?;
        let keep = keep_after(&p.stamps, floor);
        let replicas = p.push_targets();
        let id = self.meta.id;
        let published = if self.is_me(&home) {
            let inner = &self.fed.inner;
            crate::service::provider::publish(
                &inner.store,
                &inner.pool,
                inner.node.id(),
                id,
                block,
                p.term,
                epoch,
                version,
                &keep,
                &replicas,
                self.fed.config().push_timeout(),
            )
            .map(|p| (p.stamp, p.holders))
        } else {
            let req = Request::Publish {
                array: id,
                block,
                term: p.term,
                epoch,
                version,
                keep,
                replicas,
            };
            match self.fed.inner.pool.call(&home.addr, &req) {
                Ok(Response::Published { stamp, holders }) => Ok((stamp, holders)),
                Ok(other) => Err(unexpected("Publish", &other)),
                Err(e) => {
                    self.suspect(&home, &e);
                    Err(e)
                }
            }
        };
        let (stamp, holders) = published?;
        Ok(stamp.map(|_| Touched {
            block,
            term: p.term,
            holders,
        }))
    }

    /// Sends the elements `spans` select from `src` (src side) into block `block`'s working
    /// copy (dst side) at its home.
    pub(crate) fn send_write<T: Element>(
        &self,
        block: u32,
        epoch: u64,
        sel: &Selection,
        spans: &[Span],
        src: &[T],
    ) -> Result<()> {
        let p = self.placement(block)?;
        let home = self.home_of(block)?;
        let (id, term, base) = (self.meta.id, p.term, p.latest());
        if self.is_me(&home) {
            let w = self
                .fed
                .inner
                .store
                .working(id, block, term, epoch, base, false)?;
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            let dst = w.data.typed_mut::<T>();
            // SAFETY: `dst` is exclusively borrowed through the lock guard.
            return unsafe { copy_to_ptr(spans, src, dst.as_mut_ptr(), dst.len()) }.map_err(|e| {
                Error::OutOfBounds(format!("writing block {block} of {}: {e}", self.name()))
            });
        }
        let bytes = span_elements(spans) * std::mem::size_of::<T>() as u64;
        let r = self.fed.inner.pool.with(&home.addr, |c| {
            c.send(&Request::Write {
                array: id,
                block,
                term,
                epoch,
                base,
                selection: sel.clone(),
                bytes,
            })?;
            pack_to(spans, src, &mut c.bulk(bytes))
                .map_err(|e| io_error("sending written data", e))?;
            c.recv::<Response>()?.into_result().map(|_| ())
        });
        if let Err(e) = &r {
            self.suspect(&home, e);
        }
        r
    }

    /// Reads the region `[lo, hi)` into `buf` (laid out with leading dimensions `ld`, compact
    /// row-major if `None`) at `version`, or from write epoch `working`'s working copies where
    /// it wrote (then `version` is the epoch's base).
    pub(crate) fn get_region<T: Element>(
        &self,
        version: u64,
        working: Option<u64>,
        lo: &[u64],
        hi: &[u64],
        buf: &mut [T],
        ld: Option<&[u64]>,
    ) -> Result<()> {
        let storage = &self.meta.spec.layout;
        let (strides, sel) = self.prepare_region(lo, hi, ld, buf.len())?;
        let mut work = Work::new();
        for b in 0..storage.nprocs() {
            let spans = region::region_spans(storage, b, lo, hi, Some(&strides))?;
            if !spans.is_empty() {
                work.push((b, sel.clone(), spans));
            }
        }
        self.fetch_parallel(version, working, work, buf)
    }

    /// Writes `buf` (leading dimensions `ld`) into the region `[lo, hi)` of the working copies
    /// of epoch `epoch`; returns the blocks touched.
    pub(crate) fn put_region<T: Element>(
        &self,
        epoch: u64,
        lo: &[u64],
        hi: &[u64],
        buf: &[T],
        ld: Option<&[u64]>,
    ) -> Result<Vec<u32>> {
        let storage = &self.meta.spec.layout;
        let (strides, sel) = self.prepare_region(lo, hi, ld, buf.len())?;
        let mut touched = Vec::new();
        for b in 0..storage.nprocs() {
            // Packed from the caller's strides; the walk order (hence the stream) does not
            // depend on strides, so the home unpacks the same elements in the same order.
            let spans: Vec<Span> = region::region_spans(storage, b, lo, hi, Some(&strides))?
                .into_iter()
                .map(Span::swapped)
                .collect();
            if spans.is_empty() {
                continue;
            }
            self.send_write(b as u32, epoch, &sel, &spans, buf)?;
            touched.push(b as u32);
        }
        Ok(touched)
    }

    /// Checks a region and its buffer; returns the buffer's strides and the selection.
    pub(crate) fn prepare_region(
        &self,
        lo: &[u64],
        hi: &[u64],
        ld: Option<&[u64]>,
        buf_len: usize,
    ) -> Result<(Vec<u64>, Selection)> {
        region::check_region(&self.meta.spec.layout, lo, hi)?;
        let strides = region_strides(lo, hi, ld)?;
        self.check_buffer(lo, hi, &strides, buf_len, ld.is_none())?;
        Ok((
            strides,
            Selection::Region {
                lo: lo.to_vec(),
                hi: hi.to_vec(),
            },
        ))
    }

    /// A compact buffer must hold exactly the region; one with leading dimensions at least up
    /// to its last element.
    fn check_buffer(
        &self,
        lo: &[u64],
        hi: &[u64],
        strides: &[u64],
        got: usize,
        exact: bool,
    ) -> Result<()> {
        let need = region_buffer_len(lo, hi, strides);
        if (got as u64) < need || (exact && got as u64 != need) {
            return Err(Error::BufferSize {
                what: format!("region [{lo:?}, {hi:?}) of {}", self.name()),
                expected: need,
                got: got as u64,
            });
        }
        Ok(())
    }

    /// Fills `dst` (rank `self.rank`'s part of `layout`) with `version`, pulling each source
    /// block's piece from its nearest copy, in parallel.
    pub(crate) fn fetch_pieces<T: Element>(
        &self,
        layout: &Layout,
        version: u64,
        dst: &mut [T],
    ) -> Result<()> {
        let plan = Plan::cached(&self.meta.spec.layout, layout)?;
        let mut work = Work::new();
        for t in plan.sources(self.rank)? {
            let spans = plan.spans(t.peer, self.rank)?;
            work.push((
                t.peer,
                Selection::Piece {
                    target: layout.clone(),
                    q: self.rank,
                },
                spans,
            ));
        }
        self.fetch_parallel(version, None, work, dst)
    }

    /// Fetches every (block, selection, spans) into `dst`, from the nearest copies, in
    /// parallel (at most 8 streams).
    fn fetch_parallel<T: Element>(
        &self,
        version: u64,
        working: Option<u64>,
        work: Work,
        dst: &mut [T],
    ) -> Result<()> {
        let shared = SharedDst {
            ptr: dst.as_mut_ptr(),
            len: dst.len(),
        };
        if work.len() <= 1 {
            return work.iter().try_for_each(|(b, sel, spans)| {
                self.fetch_one(*b, version, working, sel, spans, shared)
            });
        }
        let threads = work.len().min(8);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let work = &work;
                    s.spawn(move || -> Result<()> {
                        for (b, sel, spans) in work.iter().skip(t).step_by(threads) {
                            self.fetch_one(*b, version, working, sel, spans, shared)?;
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
        working: Option<u64>,
        sel: &Selection,
        spans: &[Span],
        out: SharedDst<T>,
    ) -> Result<()> {
        let placement = self.placement(block as u32)?;
        let stamp = stamp_at(&placement.stamps, version).ok_or_else(|| {
            Error::VersionGone(format!(
                "block {block} of {} no longer holds version {version}",
                self.name()
            ))
        })?;
        // A write epoch's state lives at the home only; a committed stamp at every copy.
        let copies: Vec<NodeInfo> = if working.is_some() {
            placement.home.iter().cloned().collect()
        } else {
            self.fed.copies_by_distance(placement, stamp, self.rank)
        };
        // No copy in this cluster: read through a provider of this cluster, which keeps a
        // cache copy for the cluster's later readers (if asked for); any failure there falls
        // back to the copies themselves.
        let mine = &self.fed.inner.node.cluster;
        if working.is_none()
            && self.fed.inner.cfg.read_cache
            && !copies.iter().any(|n| &n.cluster == mine)
        {
            if let Some(p) = self.fed.cache_provider(self.meta.id, block as u32) {
                match self.read_through(&p, block as u32, stamp, sel, spans, out) {
                    Ok(()) => return Ok(()),
                    Err(e) => tracing::info!(
                        "reading block {block} of {} through {p}: {e}; reading a copy",
                        self.name()
                    ),
                }
            }
        }
        if copies.is_empty() {
            return Err(Error::Lost(format!(
                "block {block} of {} has no copy left",
                self.name()
            )));
        }
        // A cache copy is read through its holder, which serves it with the array's layout
        // this read carries.
        let cache_only = |n: &NodeInfo| {
            placement.caches.iter().any(|c| c.node.same(n))
                && !placement.copies().any(|g| g.same(n))
        };
        let mut last = None;
        for node in copies {
            let r = if self.is_me(&node) {
                self.copy_from_local(block as u32, stamp, working, spans, out)
            } else if cache_only(&node) {
                self.read_through(&node, block as u32, stamp, sel, spans, out)
            } else {
                // Only snapshots are shared: a write epoch's working copy is read over the network.
                let shared = match working {
                    None => self.copy_from_shared(&node, block as u32, stamp, spans, out),
                    Some(_) => Ok(false),
                };
                shared.and_then(|done| match done {
                    true => Ok(()),
                    false => self.read_remote(&node, block, stamp, working, sel, spans, out),
                })
            };
            match r {
                Ok(()) => return Ok(()),
                // A cache copy is an extra: whatever goes wrong there, the group's copies
                // remain.
                Err(e) if retryable(&e) || cache_only(&node) => {
                    self.suspect(&node, &e);
                    tracing::info!(
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

    /// Reads the spans of block `block` through `provider`, a provider of this cluster that
    /// serves it from a cache copy (filled first if it has none).
    fn read_through<T: Element>(
        &self,
        provider: &NodeInfo,
        block: u32,
        stamp: Stamp,
        sel: &Selection,
        spans: &[Span],
        out: SharedDst<T>,
    ) -> Result<()> {
        let req = Request::CacheRead {
            array: self.meta.id,
            name: self.meta.spec.name.clone(),
            block,
            stamp,
            selection: sel.clone(),
        };
        self.receive(provider, &req, u64::from(block), spans, out)
    }

    /// Reads the spans of block `block` from `node` over the network.
    #[allow(clippy::too_many_arguments)]
    fn read_remote<T: Element>(
        &self,
        node: &NodeInfo,
        block: u64,
        stamp: Stamp,
        working: Option<u64>,
        sel: &Selection,
        spans: &[Span],
        out: SharedDst<T>,
    ) -> Result<()> {
        let req = Request::Read {
            array: self.meta.id,
            block: block as u32,
            stamp,
            working,
            selection: sel.clone(),
        };
        self.receive(node, &req, block, spans, out)
    }

    /// Sends `req` (a read of `spans` of block `block`) to `node` and unpacks the data it
    /// answers with into `out`.
    fn receive<T: Element>(
        &self,
        node: &NodeInfo,
        req: &Request,
        block: u64,
        spans: &[Span],
        out: SharedDst<T>,
    ) -> Result<()> {
        let bytes = span_elements(spans) * std::mem::size_of::<T>() as u64;
        self.fed.inner.pool.with(&node.addr, |c| {
            c.send(req)?;
            match c.recv::<Response>()?.into_result()? {
                Response::Data { bytes: got } if got == bytes => {
                    // SAFETY: see `SharedDst`.
                    unsafe { unpack_from_ptr(spans, &mut c.bulk(bytes), out.ptr, out.len) }
                        .map_err(|e| io_error("receiving data", e))
                }
                Response::Data { bytes: got } => Err(Error::Protocol(format!(
                    "{node} announces {got} bytes for block {block}; expected {bytes}"
                ))),
                other => Err(unexpected(
                    crate::service::provider::request_name(req),
                    &other,
                )),
            }
        })
    }

    /// Copies the spans of `node`'s snapshot `stamp` out of shared memory, if `node` is on
    /// this host and keeps it there: `Ok(false)` to read it over the network instead (also
    /// when `node` answers with an error: the read says it again, as the caller expects).
    /// Network errors are returned, so that the caller moves to the next copy.
    fn copy_from_shared<T: Element>(
        &self,
        node: &NodeInfo,
        block: u32,
        stamp: Stamp,
        spans: &[Span],
        out: SharedDst<T>,
    ) -> Result<bool> {
        let size = std::mem::size_of::<T>() as u64;
        if self.fed.inner.cfg.transport == crate::transport::verbs::Transport::Tcp {
            return Ok(false);
        }
        let Some(host) = shm::host_id() else {
            return Ok(false);
        };
        let block_bytes = self.meta.spec.layout.local_len(u64::from(block))? * size;
        if span_elements(spans) * size < shm::MIN_READ
            || block_bytes < shm::MIN_SEGMENT as u64 // never in a segment: no Map round trip
            || !self.fed.inner.shm.may_share(&node.addr)
        {
            return Ok(false);
        }
        let answer = self.fed.inner.pool.with(&node.addr, |c| {
            c.send(&Request::Map {
                array: self.meta.id,
                block,
                stamp,
                host: host.clone(),
            })?;
            c.recv::<Response>()
        })?;
        let segment = match answer {
            Response::Mapped {
                segment: Some(s), ..
            } if s.bytes == block_bytes => s,
            Response::Mapped {
                same_host: false, ..
            } => {
                self.fed.inner.shm.remote(
                    &node.addr,
                    "its memory cannot be mapped from here (another host, or shared memory off there)",
                );
                return Ok(false);
            }
            // Not in shared memory (segments unusable there), an error (the network read
            // says it again), or a segment of another size than the block (ignored).
            _ => return Ok(false),
        };
        let map = match self.fed.inner.shm.map(&segment) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                self.fed.inner.shm.remote(&node.addr, &e.to_string());
                return Ok(false);
            }
            // The holder closed it meanwhile (the copy was dropped), or this process is short
            // of descriptors or address space: this read goes over the network.
            Err(e) => {
                tracing::debug!("mapping block {block} of {} at {node}: {e}", self.name());
                return Ok(false);
            }
        };
        // SAFETY: see `SharedDst`. The source may change under the copy only if its holder
        // reused the segment, which the generation check below catches (a sequence lock: the
        // copied bytes are not trusted until then).
        if let Err(e) = unsafe { copy_to_ptr(spans, map.typed::<T>(), out.ptr, out.len) } {
            tracing::warn!(
                "block {block} of {} in shared memory at {node}: {e}; reading it over the network",
                self.name()
            );
            self.fed.inner.shm.forget(&segment);
            return Ok(false);
        }
        if !map.unchanged_since(segment.generation) {
            // The holder reused the segment while (or since) it was said: the copy may be
            // torn; the network read overwrites every element of it. The mapping stays good
            // for the segment's next uses.
            return Ok(false);
        }
        shm::count_read();
        Ok(true)
    }

    /// Same-process copy from the local store (no socket).
    fn copy_from_local<T: Element>(
        &self,
        block: u32,
        stamp: Stamp,
        working: Option<u64>,
        spans: &[Span],
        out: SharedDst<T>,
    ) -> Result<()> {
        let store = &self.fed.inner.store;
        let work = match working {
            Some(e) => store.working_if_any(self.meta.id, block, e)?,
            None => None,
        };
        let copied = match work {
            Some(w) => {
                let w = w.lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: see `SharedDst`.
                unsafe { copy_to_ptr(spans, w.data.typed::<T>(), out.ptr, out.len) }
            }
            None => {
                let d = store.snapshot(self.meta.id, block, stamp)?;
                // SAFETY: see `SharedDst`.
                unsafe { copy_to_ptr(spans, d.typed::<T>(), out.ptr, out.len) }
            }
        };
        copied.map_err(|e| Error::Protocol(format!("local copy of block {block}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authorization_refusal_is_not_retried_other_refusals_are() {
        let denied = Error::Refused(format!(
            "Commit from A/x{}it is not the epoch's owner",
            crate::service::authz::NOT_AUTHORIZED
        ));
        assert!(!retryable(&denied));
        // As it arrives from the wire: the code and the message.
        let wire = Error::from_wire(denied.code().as_u32(), denied.to_string());
        assert!(!retryable(&wire));
        assert!(retryable(&Error::Refused(
            "the copy is being restored".into()
        )));
        assert!(retryable(&Error::Network("connection reset".into())));
    }
}
