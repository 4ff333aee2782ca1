//! [`SharedArray`]: a named array as seen by one group with one layout.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::element::Element;
use crate::error::{Error, ErrorCode, Result};
use crate::layout::Layout;
use crate::plan::{region, Plan, Span};
use crate::service::contact;
use crate::service::protocol::*;
use crate::service::store::{Data, Working};

use super::group::on_root_within;
use super::nonblocking::{check_open, Inflight, NbBuf, NbRequest, RawBuf, Tail};
use super::region::{take_write_lock, RegionLock, RegionRead, WriteEpoch};
use super::view::{retry, retry_shared, retryable, View};
use super::{agree, fetch_placement, on_root, unexpected, Federation, Group};

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

/// A `put` made under a collective acquire, kept to be written again if a home fails over
/// before the release commits.
struct Put<T> {
    lo: Vec<u64>,
    hi: Vec<u64>,
    buf: Vec<T>,
    ld: Option<Vec<u64>>,
}

/// One member's part of a release round, gathered at the root.
#[derive(Serialize, Deserialize)]
struct RoundReport {
    /// The blocks it published, or its error (code, message).
    published: std::result::Result<Vec<Touched>, (u32, String)>,
    /// Copies it found unreachable.
    suspects: Vec<NodeInfo>,
}

/// What the root decided at the end of a release round.
#[derive(Serialize, Deserialize)]
enum Step {
    /// Committed.
    Done,
    /// Try again on this placement.
    Retry(Vec<BlockPlacement>),
}

/// A named shared array as seen by one group with one layout.
pub struct SharedArray<'g, T: Element, G: Group + ?Sized> {
    view: View,
    group: &'g G,
    layout: Layout,
    access: Access,
    local: Local<T>,
    /// The write epoch (on the root, which took the lock).
    lock: Option<WriteEpoch>,
    /// This handle's reader registration (opened handles; kept by the root).
    reader: Option<u64>,
    /// This write epoch's puts (shared with non-blocking puts' threads).
    puts: Arc<Mutex<Vec<Put<T>>>>,
    /// Non-blocking gets and puts in flight.
    inflight: Inflight,
    /// A non-blocking acquire_read under way (see [`SharedArray::acquire_read_nb`]).
    pending_read: Option<NbRequest<ReadReady<T>>>,
    /// The local part, a copy of this rank's part (its blocks are homed elsewhere), was
    /// handed out writable in this write epoch: release sends it. Untouched, it is not sent,
    /// so it cannot undo puts (this rank's or others') made meanwhile.
    local_written: bool,
    /// The version relaxed reads read, and when it was learned to be the latest.
    relaxed: Mutex<Option<Relaxed>>,
}

/// What a non-blocking acquire_read got on one rank: the version, its pin (the root's), the
/// placement read and the local part.
struct ReadReady<T> {
    version: u64,
    pin: Option<u64>,
    blocks: Vec<BlockPlacement>,
    local: Local<T>,
}

/// A version learned to be the latest committed, for relaxed reads.
struct Relaxed {
    version: u64,
    learned: Instant,
    blocks: Vec<BlockPlacement>,
}

impl<'g, T: Element, G: Group + ?Sized> SharedArray<'g, T, G> {
    pub(crate) fn new(
        fed: Federation,
        group: &'g G,
        meta: ArrayMeta,
        layout: Layout,
        reader: Option<u64>,
    ) -> Self {
        SharedArray {
            view: View::new(fed, meta, group.rank() as u64),
            group,
            layout,
            access: Access::None,
            local: Local::Empty,
            lock: None,
            reader,
            puts: Arc::new(Mutex::new(Vec::new())),
            inflight: Inflight::default(),
            pending_read: None,
            local_written: false,
            relaxed: Mutex::new(None),
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

    fn deadline(&self) -> Instant {
        Instant::now() + self.view.fed.retry_budget()
    }

    /// Takes the array's write lock (collective): the local part then holds the latest version
    /// and may be modified; `put` may write anywhere.
    pub fn acquire(&mut self) -> Result<()> {
        self.acquire_timeout(self.view.fed.timeout())
    }

    /// [`SharedArray::acquire`] waiting at most `timeout` for the lock.
    pub fn acquire_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.acquire_with(timeout, false)
    }

    /// Takes the write lock (collective) for a writer that overwrites its whole local part
    /// before releasing, as a time step that recomputes its field does: the latest version is
    /// not loaded (no copy of it is made), and the local part's contents are unspecified
    /// (zeroes, or an older version) until written. Elements left unwritten are released as
    /// they are.
    pub fn acquire_overwrite(&mut self) -> Result<()> {
        self.acquire_with(self.view.fed.timeout(), true)
    }

    /// [`SharedArray::acquire_overwrite`] waiting at most `timeout` for the lock.
    pub fn acquire_overwrite_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.acquire_with(timeout, true)
    }

    fn acquire_with(&mut self, timeout: Duration, overwrite: bool) -> Result<()> {
        self.check_idle("acquire")?;
        let fed = self.view.fed.clone();
        let (id, manager) = (self.view.meta.id, self.view.meta.manager.clone());
        let layout = &self.view.meta.spec.layout;
        let mut lock = None;
        let reader = self.reader;
        let grant = on_root_within(self.group, timeout, || {
            let g = take_write_lock(&fed, &manager, id, layout, timeout, reader)?;
            let out = (g.epoch.epoch, g.base, g.floor, g.blocks);
            lock = Some(g.epoch);
            Ok(out)
        })?;
        self.lock = lock;
        let (epoch, base, floor, blocks) = grant;
        self.view.meta.blocks = blocks;
        self.view.meta.committed = base;
        self.access = Access::Write { epoch, base, floor };
        self.puts.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.local_written = false;
        let loaded = self.load_for_write(epoch, base, overwrite);
        let r = agree(self.group, loaded);
        if r.is_err() {
            self.abort_write();
        }
        r
    }

    fn load_for_write(&mut self, epoch: u64, base: u64, overwrite: bool) -> Result<()> {
        if self.owns_block() {
            let (id, rank) = (self.view.meta.id, self.view.rank as u32);
            let p = &self.view.meta.blocks[rank as usize];
            let (term, stamp) = (p.term, p.latest());
            let store = &self.view.fed.inner.store;
            self.local = Local::Working(store.working(id, rank, term, epoch, stamp, overwrite)?);
        } else if overwrite {
            let v = self.reusable_local()?;
            self.local = Local::Owned(v);
        } else {
            let v = self.fetch_local(base)?;
            self.local = Local::Owned(v);
        }
        Ok(())
    }

    /// This rank's part of `version` in this handle's layout, from the nearest copies (riding
    /// over failovers until the deadline).
    fn fetch_local(&mut self, version: u64) -> Result<Vec<T>> {
        let (deadline, old) = (
            self.deadline(),
            std::mem::replace(&mut self.local, Local::Empty),
        );
        fetch_part(&mut self.view, &self.layout, version, old, deadline)
    }

    /// Publishes the local parts (collective): every block gets the new version, every live
    /// copy is current, then the version is committed and returned. A home that fails over
    /// meanwhile is written again on the new placement; every member of the group goes
    /// through the same rounds and returns the same outcome.
    pub fn release(&mut self) -> Result<u64> {
        let Access::Write { epoch, base, floor } = self.access else {
            return Err(Error::NotAcquired(format!(
                "release of {} without a write acquire",
                self.name()
            )));
        };
        let version = base + 1;
        self.return_lent();
        // Every put of the epoch has landed (or failed) before anything is published.
        let put_failure = self.inflight.finish_epoch();
        if let Err(e) = self.release_rounds(epoch, version, floor, put_failure) {
            self.abort_write();
            return Err(e);
        }
        self.lock = None;
        self.access = Access::None;
        self.view.meta.committed = version;
        // Keep the published local part readable without a copy.
        if self.owns_block() {
            let (id, rank) = (self.view.meta.id, self.view.rank as u32);
            if let Ok(s) = self
                .view
                .fed
                .inner
                .store
                .snapshot(id, rank, Stamp { version, epoch })
            {
                self.local = Local::Snapshot(s);
            }
        }
        Ok(version)
    }

    /// Release rounds: each one sends the pieces, publishes, and lets the root commit or
    /// decide to retry on a fresh placement. Every member makes the same three collective
    /// calls per round, whatever fails where.
    /// `put_failure`: this rank's failed non-blocking put that nobody waited for; any rank's
    /// fails the release on every rank, before anything is published.
    fn release_rounds(
        &mut self,
        epoch: u64,
        version: u64,
        floor: u64,
        mut put_failure: Option<Error>,
    ) -> Result<()> {
        let deadline = self.deadline();
        let mut round = 0u32;
        let mut pause = Duration::from_millis(20);
        loop {
            // A rank that wrote its copy of its part sends it whole: every rank's puts then
            // go again once all those are sent, so that no part undoes another rank's puts
            // into it (puts win over local writes to the same elements).
            let local_sent = matches!(self.local, Local::Owned(_)) && self.local_written;
            // One collective tells both: bit 0, a local part sent; above it, the code of a
            // failed put nobody waited for (a maximum, not an OR: bit 0 may be lost when a
            // code is set, and then the release ends here anyway).
            let failed = put_failure.as_ref().map_or(0, |e| e.code().as_u32());
            let flags = self.group.max_u32(u32::from(local_sent) | failed << 1);
            if flags >> 1 != 0 {
                let code = flags >> 1;
                return Err(put_failure.take().unwrap_or_else(|| Error::Remote {
                    code: ErrorCode::from_u32(code).unwrap_or(ErrorCode::InvalidArgument),
                    message: format!(
                        "release of {}: a non-blocking put on another member failed (error \
                         code {code}) and was not waited for; nothing was published",
                        self.name()
                    ),
                }));
            }
            let mixed = flags & 1 != 0;
            let sent = self.send_pieces(epoch, version, round > 0 && !mixed);
            let sent = agree(self.group, sent);
            let sent = if mixed {
                agree(self.group, sent.and_then(|()| self.replay_puts(epoch)))
            } else {
                sent
            };
            let published = match sent {
                Ok(()) => self.publish_share(epoch, version, floor),
                Err(e) => Err(e),
            };
            let suspects =
                std::mem::take(&mut *self.view.suspects.lock().unwrap_or_else(|e| e.into_inner()));
            let report = RoundReport {
                published: published.map_err(|e| (e.code().as_u32(), e.to_string())),
                suspects,
            };
            let bytes = postcard::to_stdvec(&report)
                .map_err(|e| Error::Protocol(format!("encoding a release report: {e}")))?;
            let reports = self.group.all_gather_bytes(&bytes);
            let (view, lock) = (&self.view, &self.lock);
            let budget = deadline.saturating_duration_since(Instant::now());
            let step = on_root_within(self.group, budget, || {
                let mut touched = Vec::new();
                let mut suspects = Vec::new();
                let mut failure = None;
                for r in &reports {
                    let r: RoundReport = postcard::from_bytes(r)
                        .map_err(|e| Error::Protocol(format!("a release report: {e}")))?;
                    suspects.extend(r.suspects);
                    match r.published {
                        Ok(t) => touched.extend(t),
                        Err((code, msg)) => {
                            failure.get_or_insert(Error::from_wire(code, msg));
                        }
                    }
                }
                let _ = crate::service::failpoint::hit("release.before_commit");
                let outcome = match failure {
                    None => lock
                        .as_ref()
                        .ok_or_else(|| Error::NotAcquired("no write epoch on the root".into()))?
                        .commit(version, touched),
                    Some(e) => Err(e),
                };
                match outcome {
                    Ok(()) => Ok(Step::Done),
                    Err(e) if retryable(&e) && Instant::now() < deadline => {
                        tracing::info!("release of {}: {e}; retrying", view.name());
                        let blocks = fetch_placement(
                            &view.fed,
                            &view.meta.manager,
                            view.meta.id,
                            &view.meta.spec.layout,
                            suspects,
                        )?;
                        if blocks == view.meta.blocks {
                            std::thread::sleep(pause);
                            pause = (pause * 2).min(Duration::from_millis(500));
                        }
                        Ok(Step::Retry(blocks))
                    }
                    Err(e) if retryable(&e) => Err(Error::Timeout {
                        what: format!("release of {}: last error: {e}", view.name()),
                        seconds: view.fed.retry_budget().as_secs_f64(),
                    }),
                    Err(e) => Err(e),
                }
            })?;
            match step {
                Step::Done => return Ok(()),
                Step::Retry(blocks) => {
                    self.view.meta.blocks = blocks;
                    round += 1;
                }
            }
        }
    }

    /// Sends this rank's part to the homes of the blocks it covers, unless it is its own block
    /// homed here (then the working copy is the block). On a retry, the puts go again too.
    /// Sends this epoch's puts again.
    fn replay_puts(&self, epoch: u64) -> Result<()> {
        replay(
            &self.view,
            epoch,
            &self.puts.lock().unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Sends this rank's part to the homes (if it has to), and its puts first when `again`
    /// (a fresh placement).
    fn send_pieces(&mut self, epoch: u64, version: u64, again: bool) -> Result<()> {
        let owned = matches!(self.local, Local::Owned(_));
        if again {
            self.replay_puts(epoch)?;
        }
        if self.owns_block() {
            return Ok(());
        }
        // A copy of this rank's part that was not written is not sent: the homes already
        // have everything this epoch wrote (puts go straight to them).
        if owned && !self.local_written {
            return Ok(());
        }
        let (id, rank) = (self.view.meta.id, self.view.rank);
        // Where this rank's part is now: its own copy, or the working copy of a block this
        // process was home of until a failover, or what it already published of it.
        let published;
        let working;
        let src: &[T] = match &self.local {
            Local::Owned(v) => v,
            Local::Working(w) => {
                working = w.lock().unwrap_or_else(|e| e.into_inner());
                working.data.typed::<T>()
            }
            Local::Empty | Local::Snapshot(_) => {
                published = self.view.fed.inner.store.snapshot(
                    id,
                    rank as u32,
                    Stamp { version, epoch },
                )?;
                published.typed::<T>()
            }
        };
        let plan = Plan::cached(&self.layout, &self.view.meta.spec.layout)?;
        let sel = Selection::Piece {
            target: self.layout.clone(),
            q: rank,
        };
        for t in plan.destinations(rank)? {
            let spans: Vec<Span> = plan.spans(rank, t.peer)?;
            self.view
                .send_write(t.peer as u32, epoch, &sel, &spans, src)?;
        }
        Ok(())
    }

    /// Publishes this rank's share of the blocks (block `b` by rank `b mod size`).
    fn publish_share(&mut self, epoch: u64, version: u64, floor: u64) -> Result<Vec<Touched>> {
        if self.owns_block() && matches!(self.local, Local::Working(_)) {
            // The store's working copy becomes the snapshot without a copy.
            self.local = Local::Empty;
        }
        let nblocks = self.view.meta.blocks.len() as u64;
        let mut touched = Vec::new();
        let mut b = self.view.rank;
        while b < nblocks {
            touched.extend(self.view.publish_block(b as u32, epoch, version, floor)?);
            b += self.group.size() as u64;
        }
        Ok(touched)
    }

    fn abort_write(&mut self) {
        self.inflight.finish_epoch();
        if let Some(l) = self.lock.take() {
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
        let (id, manager, reader) = (
            self.view.meta.id,
            self.view.meta.manager.clone(),
            self.reader,
        );
        let layout = &self.view.meta.spec.layout;
        let (version, pin, blocks) = on_root_within(self.group, timeout, || {
            wait_version(&fed, &manager, id, layout, req, timeout, reader, true)
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
        if let Some(s) = held_snapshot(&self.view, &self.layout, version) {
            self.local = Local::Snapshot(s);
            return Ok(());
        }
        let v = self.fetch_local(version)?;
        self.local = Local::Owned(v);
        Ok(())
    }

    /// Starts [`SharedArray::acquire_read`] and returns at once (collective; P3's
    /// non-blocking bind): every member waits for the version and fetches its local part on a
    /// thread of its own, overlapping with whatever the caller computes meanwhile.
    /// [`SharedArray::acquire_read_test`] tells (on this member) whether that ended;
    /// [`SharedArray::acquire_read_wait`] (collective) completes it. In a group of more than
    /// one process the version must be `Exactly(v)`: each member then waits for that version
    /// on its own (the root pins it), and no collective runs before the wait.
    pub fn acquire_read_nb(&mut self, req: VersionReq) -> Result<()> {
        self.acquire_read_nb_timeout(req, self.view.fed.timeout())
    }

    /// [`SharedArray::acquire_read_nb`] waiting at most `timeout` for the version.
    pub fn acquire_read_nb_timeout(&mut self, req: VersionReq, timeout: Duration) -> Result<()> {
        self.check_idle("acquire_read_nb")?;
        if self.group.size() > 1 && !matches!(req, VersionReq::Exactly(_)) {
            return Err(Error::InvalidArgument(format!(
                "acquire_read_nb of {} by a group of {} processes asks for {req:?}: give \
                 Exactly(version) (each member waits for that version on its own), or use \
                 acquire_read",
                self.name(),
                self.group.size()
            )));
        }
        let root = self.group.rank() == 0;
        let (mut view, layout) = (self.view.clone(), self.layout.clone());
        let reader = self.reader.filter(|_| root);
        let old = std::mem::replace(&mut self.local, Local::Empty);
        let deadline = self.deadline() + timeout;
        let started = self.inflight.spawn("acquire_read_nb", move |closed| {
            let (fed, manager, id) = (view.fed.clone(), view.meta.manager.clone(), view.meta.id);
            let storage = view.meta.spec.layout.clone();
            let (version, pin, blocks) =
                wait_version(&fed, &manager, id, &storage, req, timeout, reader, root)?;
            view.meta.blocks = blocks;
            let loaded = (|| {
                check_open(closed, "acquire_read_nb")?;
                if let Some(s) = held_snapshot(&view, &layout, version) {
                    return Ok(Local::Snapshot(s));
                }
                fetch_part(&mut view, &layout, version, old, deadline).map(Local::Owned)
            })();
            match loaded {
                Ok(local) => Ok(ReadReady {
                    version,
                    pin,
                    blocks: view.meta.blocks.clone(),
                    local,
                }),
                Err(e) => {
                    unpin(&view, pin);
                    Err(e)
                }
            }
        })?;
        self.pending_read = Some(started);
        Ok(())
    }

    /// Whether the non-blocking acquire_read started on this handle has ended on this member
    /// (`acquire_read_wait` then does not wait for it here). False if none was started.
    pub fn acquire_read_test(&self) -> bool {
        self.pending_read.as_ref().is_some_and(NbRequest::test)
    }

    /// Completes the non-blocking acquire_read (collective): waits for every member's part,
    /// and returns the version read as `acquire_read` does (the handle then reads it until
    /// `release_read`). If any member failed, every member returns an error and holds nothing.
    pub fn acquire_read_wait(&mut self) -> Result<u64> {
        let Some(pending) = self.pending_read.take() else {
            return Err(Error::NotAcquired(format!(
                "acquire_read_wait of {} without acquire_read_nb",
                self.name()
            )));
        };
        let ready = pending.wait();
        let (mine, ready) = match ready {
            Ok(r) => (Ok(()), Some(r)),
            Err(e) => (Err(e), None),
        };
        if let Err(e) = agree(self.group, mine) {
            if let Some(r) = ready {
                unpin(&self.view, r.pin);
            }
            return Err(e);
        }
        let r = ready.expect("agreed on success");
        self.view.meta.blocks = r.blocks;
        self.access = Access::Read {
            version: r.version,
            pin: r.pin,
        };
        self.local = r.local;
        Ok(r.version)
    }

    /// A buffer for this rank's local part: the previous one when it is ours to reuse (a
    /// pipeline reading every step then touches no fresh pages), else a new one.
    fn reusable_local(&mut self) -> Result<Vec<T>> {
        let old = std::mem::replace(&mut self.local, Local::Empty);
        part_buffer(&self.view, &self.layout, old)
    }

    /// Ends a read (collective): the version may be dropped once every reader is done.
    pub fn release_read(&mut self) -> Result<()> {
        let Access::Read { pin, .. } = self.access else {
            return Err(Error::NotAcquired(format!(
                "release_read of {} without acquire_read",
                self.name()
            )));
        };
        self.inflight.finish();
        self.access = Access::None;
        let fed = self.view.fed.clone();
        let (id, manager) = (self.view.meta.id, self.view.meta.manager.clone());
        self.group.barrier();
        on_root(self.group, || match pin {
            Some(p) => fed
                .inner
                .pool
                .call_manager(
                    &contact::of_node(&manager),
                    &Request::Unpin { array: id, pin: p },
                )
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
            Local::Owned(v) => {
                self.local_written = true;
                Ok(LocalMut::Slice(v))
            }
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
            Local::Owned(v) => {
                self.local_written |= writable;
                Ok((v.as_mut_ptr(), v.len()))
            }
            Local::Working(w) => {
                // The working copy's memory stays put while the handle holds the Arc. Foreign
                // code may write it at any time until release, so the provider's threads
                // (other ranks' gets and puts of this epoch) are refused meanwhile: they would
                // race it.
                let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
                g.lent = true;
                let s = g.data.typed_mut::<T>();
                Ok((s.as_mut_ptr(), s.len()))
            }
        }
    }

    /// Refuses a non-blocking request while foreign code holds a pointer to the working copy
    /// (`local_raw`): the request's thread would touch that memory while the caller writes it.
    /// Blocking calls are fine: the caller is inside them meanwhile.
    fn check_not_lent(&self, what: &str) -> Result<()> {
        if let Local::Working(w) = &self.local {
            if w.lock().unwrap_or_else(|e| e.into_inner()).lent {
                return Err(Error::Busy(format!(
                    "{what} on {}: its local part is lent to foreign code \
                     (juxmem_array_local_write) until the release, and a transfer running \
                     beside the caller could race it; use the blocking call",
                    self.name()
                )));
            }
        }
        Ok(())
    }

    /// Ends a loan of the working copy to foreign code (at release: the pointer is void).
    fn return_lent(&mut self) {
        if let Local::Working(w) = &self.local {
            w.lock().unwrap_or_else(|e| e.into_inner()).lent = false;
        }
    }

    /// A non-blocking acquire_read never completed: its pin goes (its thread has ended: the
    /// handle waited for its requests).
    fn drop_pending_read(&mut self) {
        if let Some(Ok(Some(r))) = self
            .pending_read
            .take()
            .map(|mut p| p.wait_timeout(Duration::ZERO))
        {
            unpin(&self.view, r.pin);
        }
    }

    fn check_idle(&self, what: &str) -> Result<()> {
        if self.pending_read.is_some() {
            return Err(Error::NotAcquired(format!(
                "{what} of {}: a non-blocking acquire_read is under way; complete it with \
                 acquire_read_wait first",
                self.name()
            )));
        }
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
        let (version, working) = self.read_point("get")?;
        let puts = self.puts.lock().unwrap_or_else(|e| e.into_inner());
        retry_shared(&self.view, self.deadline(), "get", |v, moved| {
            if let (true, Some(epoch)) = (moved, working) {
                replay(v, epoch, &puts)?;
            }
            v.get_region(version, working, lo, hi, buf, ld)
        })
    }

    /// What a get reads: the version read, or the write epoch's base and the epoch.
    fn read_point(&self, what: &str) -> Result<(u64, Option<u64>)> {
        match self.access {
            Access::Read { version, .. } => Ok((version, None)),
            Access::Write { epoch, base, .. } => Ok((base, Some(epoch))),
            Access::None => Err(Error::NotAcquired(format!(
                "{what} on {} needs an acquire",
                self.name()
            ))),
        }
    }

    /// Starts reading the global region `[lo, hi)` into `buf` (row-major over the region, as
    /// [`SharedArray::get`]) and returns at once: the request's `wait` hands `buf` back with
    /// the data. Several requests may be in flight, on this handle and others. The handle's
    /// next release or release_read waits for them first. One process alone.
    ///
    /// Requests in flight together land in no set order (wait for a put before reading what it
    /// wrote). Do not hold a [`SharedArray::local`] or [`SharedArray::local_mut`] guard while
    /// waiting for a request or making a blocking get or put: when the local part is the
    /// working copy of this rank's block, the request's thread needs that lock too.
    pub fn get_nb(&self, lo: &[u64], hi: &[u64], buf: Vec<T>) -> Result<NbRequest<Vec<T>>> {
        self.get_nb_ld(lo, hi, buf, None)
    }

    /// [`SharedArray::get_nb`] into a buffer with leading dimensions `ld`.
    pub fn get_nb_ld(
        &self,
        lo: &[u64],
        hi: &[u64],
        buf: Vec<T>,
        ld: Option<&[u64]>,
    ) -> Result<NbRequest<Vec<T>>> {
        self.start_get(lo, hi, buf, ld, |b| b)
    }

    /// [`SharedArray::get_nb_ld`] into the caller's memory (the C interface).
    ///
    /// # Safety
    /// `buf` is valid for writes of `len` elements, and nothing else reads or writes them
    /// until the request has ended (its wait or test says so) or this handle has moved on
    /// (release, release_read, close), which waits for it.
    pub unsafe fn get_nb_raw(
        &self,
        lo: &[u64],
        hi: &[u64],
        buf: *mut T,
        len: usize,
        ld: Option<&[u64]>,
    ) -> Result<NbRequest<()>> {
        self.start_get(lo, hi, RawBuf::new(buf, len), ld, |_| ())
    }

    fn start_get<B: NbBuf<T>, R: Send + 'static>(
        &self,
        lo: &[u64],
        hi: &[u64],
        mut buf: B,
        ld: Option<&[u64]>,
        done: fn(B) -> R,
    ) -> Result<NbRequest<R>> {
        let (version, working) = self.read_point("get_nb")?;
        self.check_not_lent("get_nb")?;
        // Bad regions and buffers are refused now, not at the wait.
        self.view.prepare_region(lo, hi, ld, buf.slice().len())?;
        let (view, puts, deadline) = (self.view.clone(), self.puts.clone(), self.deadline());
        let (lo, hi, ld) = (lo.to_vec(), hi.to_vec(), ld.map(<[u64]>::to_vec));
        self.inflight.spawn("get_nb", move |closed| {
            retry_shared(&view, deadline, "get_nb", |v, moved| {
                check_open(closed, "get_nb")?;
                if let (true, Some(epoch)) = (moved, working) {
                    replay(v, epoch, &puts.lock().unwrap_or_else(|e| e.into_inner()))?;
                }
                v.get_region(version, working, &lo, &hi, buf.slice_mut(), ld.as_deref())
            })?;
            Ok(done(buf))
        })
    }

    /// Starts writing `buf` into the global region `[lo, hi)` (as [`SharedArray::put`], under
    /// a write acquire) and returns at once. The release waits for every put of its write
    /// epoch; one that failed and was not waited for fails the release (nothing is published).
    /// The buffer is kept until the release (to be written again if a home fails over). Puts
    /// go one at a time (each replays the others after a failover), and a blocking get in the
    /// write epoch waits behind them. One process alone.
    pub fn put_nb(&self, lo: &[u64], hi: &[u64], buf: Vec<T>) -> Result<NbRequest<()>> {
        self.put_nb_ld(lo, hi, buf, None)
    }

    /// [`SharedArray::put_nb`] from a buffer with leading dimensions `ld`.
    pub fn put_nb_ld(
        &self,
        lo: &[u64],
        hi: &[u64],
        buf: Vec<T>,
        ld: Option<&[u64]>,
    ) -> Result<NbRequest<()>> {
        self.start_put(lo, hi, buf, ld)
    }

    /// [`SharedArray::put_nb_ld`] from the caller's memory (the C interface; copied once
    /// written, to be written again after a failover).
    ///
    /// # Safety
    /// `buf` is valid for reads of `len` elements, and nothing writes them until the request
    /// has ended or this handle has moved on (release, close), which waits for it.
    pub unsafe fn put_nb_raw(
        &self,
        lo: &[u64],
        hi: &[u64],
        buf: *const T,
        len: usize,
        ld: Option<&[u64]>,
    ) -> Result<NbRequest<()>> {
        self.start_put(lo, hi, RawBuf::new(buf.cast_mut(), len), ld)
    }

    fn start_put<B: NbBuf<T>>(
        &self,
        lo: &[u64],
        hi: &[u64],
        buf: B,
        ld: Option<&[u64]>,
    ) -> Result<NbRequest<()>> {
        let Access::Write { epoch, .. } = self.access else {
            return Err(Error::NotAcquired(format!(
                "put_nb on {} needs acquire()",
                self.name()
            )));
        };
        self.check_not_lent("put_nb")?;
        self.view.prepare_region(lo, hi, ld, buf.slice().len())?;
        let (view, puts, deadline) = (self.view.clone(), self.puts.clone(), self.deadline());
        let (lo, hi, ld) = (lo.to_vec(), hi.to_vec(), ld.map(<[u64]>::to_vec));
        let r = self.inflight.spawn("put_nb", move |closed| {
            if crate::service::failpoint::hit("put_nb.transfer") {
                return Err(Error::Network("put_nb: failpoint put_nb.transfer".into()));
            }
            let put = Put {
                lo,
                hi,
                buf: buf.kept(),
                ld,
            };
            // Puts go one at a time, as blocking ones: a failover replays the others first.
            let mut puts = puts.lock().unwrap_or_else(|e| e.into_inner());
            write_put(&view, deadline, epoch, &mut puts, put, Some(closed))
        })?;
        self.inflight.track_put(&r);
        Ok(r)
    }

    /// The array's attributes, as known when this handle was opened or last changed them.
    pub fn attributes(&self) -> &std::collections::BTreeMap<String, String> {
        &self.view.meta.spec.attributes
    }

    /// Sets the attributes `set` and removes those named in `remove`, under a write acquire
    /// (collective; the change takes effect at once, not with the release).
    pub fn set_attributes(&mut self, set: &[(&str, &str)], remove: &[&str]) -> Result<()> {
        let Access::Write { epoch, .. } = self.access else {
            return Err(Error::NotAcquired(format!(
                "set_attributes on {} needs acquire()",
                self.name()
            )));
        };
        let set: std::collections::BTreeMap<String, String> = set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let remove: Vec<String> = remove.iter().map(|k| k.to_string()).collect();
        let fed = self.view.fed.clone();
        let (id, manager) = (self.view.meta.id, self.view.meta.manager.clone());
        let (s2, r2) = (set.clone(), remove.clone());
        on_root(self.group, || {
            let req = Request::SetAttributes {
                array: id,
                epoch,
                set: s2,
                remove: r2,
            };
            fed.inner
                .pool
                .call_manager(&contact::of_node(&manager), &req)
                .map(|_| ())
        })?;
        // The manager took it: the same change here.
        change_attributes(&mut self.view.meta.spec.attributes, &set, &remove)
    }

    /// Writes the version this handle reads (after [`SharedArray::acquire_read`]) to the
    /// directory `dir` as a checkpoint (collective): one file per member (its local part, in
    /// this handle's layout) and a manifest, written last (see
    /// [`checkpoint`](super::checkpoint) for the format). Writers go on meanwhile: the version
    /// is immutable and pinned. Returns the version written.
    pub fn checkpoint(&self, dir: &std::path::Path) -> Result<u64> {
        let Access::Read { version, .. } = self.access else {
            return Err(Error::NotAcquired(format!(
                "checkpoint of {} needs acquire_read (the version to write)",
                self.name()
            )));
        };
        let local = self.local()?;
        let attributes = &self.view.meta.spec.attributes;
        super::checkpoint::write(
            self.group,
            dir,
            self.name(),
            &self.layout,
            version,
            attributes,
            &local,
        )?;
        Ok(version)
    }

    /// Reads the global region `[lo, hi)` into `buf` with no lock and no pin (JuxMem's relaxed
    /// read, for visualisation and monitoring): a committed version that was the latest at
    /// most `max_staleness` ago. It never waits for a writer and pins nothing; on a handle
    /// opened with [`Federation::inspect`](super::Federation::inspect) (not a registered
    /// reader) it never makes a writer wait either. Returns the version read. One process
    /// alone; needs no acquire (and ignores one held).
    pub fn get_relaxed(
        &self,
        lo: &[u64],
        hi: &[u64],
        buf: &mut [T],
        max_staleness: Duration,
    ) -> Result<u64> {
        self.get_relaxed_ld(lo, hi, buf, None, max_staleness)
    }

    /// [`SharedArray::get_relaxed`] into a buffer with leading dimensions `ld`.
    pub fn get_relaxed_ld(
        &self,
        lo: &[u64],
        hi: &[u64],
        buf: &mut [T],
        ld: Option<&[u64]>,
        max_staleness: Duration,
    ) -> Result<u64> {
        let deadline = self.deadline();
        let mut last = None;
        // A version pruned while it is read (it was not pinned): learn the latest again.
        for _ in 0..3 {
            let (version, blocks) = self.relaxed_version(max_staleness, last.is_some())?;
            let mut view = self.view.clone();
            view.meta.blocks = blocks;
            match retry_shared(&view, deadline, "get_relaxed", |v, _| {
                v.get_region(version, None, lo, hi, buf, ld)
            }) {
                Ok(()) => return Ok(version),
                Err(e) if e.code() == ErrorCode::VersionGone => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("a failed attempt"))
    }

    /// The version a relaxed read reads: the one learned last if it is fresh enough (and
    /// `refresh` is not asked), else the latest committed one, asked of the manager without
    /// waiting or pinning.
    fn relaxed_version(
        &self,
        max_staleness: Duration,
        refresh: bool,
    ) -> Result<(u64, Vec<BlockPlacement>)> {
        let mut known = self.relaxed.lock().unwrap_or_else(|e| e.into_inner());
        if let (false, Some(k)) = (refresh, known.as_ref()) {
            if k.learned.elapsed() <= max_staleness {
                return Ok((k.version, k.blocks.clone()));
            }
        }
        let learned = Instant::now();
        let r = self.view.fed.inner.pool.call_manager(
            &contact::of_node(&self.view.meta.manager),
            &Request::WaitVersion {
                array: self.view.meta.id,
                req: VersionReq::Latest,
                timeout_ms: 0,
                pin: false,
                // A registered handle passes the version, so writers need not keep older ones
                // for it (an `inspect` handle has no registration to pass).
                reader: self.reader,
            },
        )?;
        let Response::Version {
            version, blocks, ..
        } = r
        else {
            return Err(unexpected("WaitVersion", &r));
        };
        check_placement(&self.view.meta.spec.layout, &blocks)?;
        *known = Some(Relaxed {
            version,
            learned,
            blocks: blocks.clone(),
        });
        Ok((version, blocks))
    }

    /// Writes `buf` (row-major over the region) into the global region `[lo, hi)`, under a
    /// write acquire. One process alone.
    pub fn put(&self, lo: &[u64], hi: &[u64], buf: &[T]) -> Result<()> {
        self.put_ld(lo, hi, buf, None)
    }

    /// [`SharedArray::put`] from a buffer with leading dimensions `ld`.
    pub fn put_ld(&self, lo: &[u64], hi: &[u64], buf: &[T], ld: Option<&[u64]>) -> Result<()> {
        let Access::Write { epoch, .. } = self.access else {
            return Err(Error::NotAcquired(format!(
                "put on {} needs acquire()",
                self.name()
            )));
        };
        let put = Put {
            lo: lo.to_vec(),
            hi: hi.to_vec(),
            buf: buf.to_vec(),
            ld: ld.map(<[u64]>::to_vec),
        };
        let mut puts = self.puts.lock().unwrap_or_else(|e| e.into_inner());
        write_put(&self.view, self.deadline(), epoch, &mut puts, put, None)
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
        let granted = take_write_lock(
            &self.view.fed,
            &self.view.meta.manager,
            self.view.meta.id,
            &self.view.meta.spec.layout,
            timeout,
            self.reader,
        )?;
        Ok(RegionLock::new(self.view.clone(), granted, lo, hi))
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
        RegionRead::hold(&self.view, lo, hi, req, timeout, self.reader)
    }

    /// Starts reading the region `[lo, hi)` at the version `req` into `buf` and returns at
    /// once: the request waits for that version, holds it, reads it and lets it go, all on
    /// its own thread, and its `wait` hands back the version read and `buf` with the data.
    /// This is [`SharedArray::acquire_region_read`], [`RegionRead::get`] and
    /// [`RegionRead::release`] in one non-blocking call: the next cycle's input fetched while
    /// this one is computed, control round trips included. No acquire is needed. The handle's
    /// close or destroy waits for the request first (a wait for a version that has not come
    /// ends within a second); its release does not (the request may wait for the version that
    /// release makes).
    pub fn get_version_nb(
        &self,
        lo: &[u64],
        hi: &[u64],
        req: VersionReq,
        buf: Vec<T>,
        timeout: Duration,
    ) -> Result<NbRequest<(u64, Vec<T>)>> {
        // Bad regions and buffers are refused now, not at the wait.
        self.view.prepare_region(lo, hi, None, buf.len())?;
        let (view, reader) = (self.view.clone(), self.reader);
        let (lo, hi) = (lo.to_vec(), hi.to_vec());
        self.inflight
            .spawn_then("get_version_nb", true, move |closed| {
                // Waited for in slices, so that closing the handle ends a wait for a version that
                // does not come within a slice rather than the caller's whole timeout.
                let deadline = Instant::now() + timeout;
                let held = loop {
                    check_open(closed, "get_version_nb")?;
                    let left = deadline.saturating_duration_since(Instant::now());
                    let slice = left.min(Duration::from_secs(1));
                    match RegionRead::<T>::hold(&view, &lo, &hi, req, slice, reader) {
                        // The manager's timeout comes back as a remote error of that code.
                        Err(e) if e.code() == ErrorCode::Timeout && slice < left => continue,
                        Err(e) if e.code() == ErrorCode::Timeout => {
                            return Err(Error::Timeout {
                                what: format!("version {req:?} of {}", view.meta.spec.name),
                                seconds: timeout.as_secs_f64(),
                            })
                        }
                        other => break other?,
                    }
                };
                let mut buf = buf;
                check_open(closed, "get_version_nb").and_then(|()| held.get(&mut buf))?;
                let version = held.version();
                // The version is let go (its pin dropped) once the waiter has the data.
                let release: Tail = Box::new(move || {
                    if let Err(e) = held.release() {
                        tracing::debug!("get_version_nb: letting version {version} go: {e}");
                    }
                });
                Ok(((version, buf), Some(release)))
            })
    }
}

impl<T: Element, G: Group + ?Sized> SharedArray<'_, T, G> {
    /// Destroys the array (collective, as Global Arrays' `GA_Destroy`): its name is free again,
    /// every copy is dropped and the memory placed for it released. A write or read this group
    /// holds is ended first. `Busy` while another process holds its write lock or read pins.
    pub fn destroy(mut self) -> Result<()> {
        self.inflight.close();
        self.drop_pending_read();
        match self.access {
            Access::Write { .. } => self.abort_write(),
            Access::Read { .. } => {
                let _ = self.release_read();
            }
            Access::None => {}
        }
        // The registration goes with the array.
        self.reader = None;
        let fed = self.view.fed.clone();
        let (id, manager) = (self.view.meta.id, self.view.meta.manager.clone());
        on_root(self.group, || {
            let req = Request::Destroy {
                array: id,
                force: false,
            };
            fed.inner
                .pool
                .call_manager(&contact::of_node(&manager), &req)
                .map(|_| ())
        })
    }
}

impl<T: Element, G: Group + ?Sized> Drop for SharedArray<'_, T, G> {
    fn drop(&mut self) {
        self.inflight.close();
        self.drop_pending_read();
        if matches!(self.access, Access::Write { .. }) {
            self.abort_write();
        }
        // A read not released: its pin goes with the handle (else it would hold the version,
        // and writers waiting on retention, until this process dies). The root holds it.
        let array = self.view.meta.id;
        let tell = |req: Request| {
            let manager = contact::of_node(&self.view.meta.manager);
            let _ = self.view.fed.inner.pool.call_manager(&manager, &req);
        };
        if let (Access::Read { pin: Some(pin), .. }, 0) = (&self.access, self.group.rank()) {
            tell(Request::Unpin { array, pin: *pin });
        }
        if let Some(reader) = self.reader.take() {
            tell(Request::RemoveReader { array, reader });
        }
    }
}

/// Waits at the array's manager for a version, pinned there (under this process's lease) if
/// `pin` (a group's other members read the version its root pinned).
#[allow(clippy::too_many_arguments)]
pub(crate) fn wait_version(
    fed: &Federation,
    manager: &NodeInfo,
    id: ArrayId,
    layout: &Layout,
    req: VersionReq,
    timeout: Duration,
    reader: Option<u64>,
    pin: bool,
) -> Result<(u64, Option<u64>, Vec<BlockPlacement>)> {
    fed.ensure_lease(manager)?;
    let r = fed.inner.pool.call_manager_waiting(
        &contact::of_node(manager),
        &Request::WaitVersion {
            array: id,
            req,
            timeout_ms: timeout.as_millis() as u64,
            pin,
            reader,
        },
        Some(timeout),
    )?;
    match r {
        Response::Version {
            version,
            pin,
            blocks,
        } => match check_placement(layout, &blocks) {
            Ok(()) => Ok((version, pin, blocks)),
            Err(e) => {
                // Not kept pinned for a version this process cannot read.
                if let Some(p) = pin {
                    let req = Request::Unpin { array: id, pin: p };
                    let _ = fed
                        .inner
                        .pool
                        .call_manager(&contact::of_node(manager), &req);
                }
                Err(e)
            }
        },
        other => Err(unexpected("WaitVersion", &other)),
    }
}

/// Writes `puts` (a write epoch's) again: a home failed over, and the new one lacks them.
fn replay<T: Element>(view: &View, epoch: u64, puts: &[Put<T>]) -> Result<()> {
    for p in puts {
        view.put_region(epoch, &p.lo, &p.hi, &p.buf, p.ld.as_deref())?;
    }
    Ok(())
}

/// Writes `put` into write epoch `epoch` (after `puts`, the epoch's earlier ones, if a home
/// failed over meanwhile) and records it in `puts`. A non-blocking put gives its handle's
/// `closed` flag: it gives up between attempts once the handle is closed.
fn write_put<T: Element>(
    view: &View,
    deadline: Instant,
    epoch: u64,
    puts: &mut Vec<Put<T>>,
    put: Put<T>,
    closed: Option<&std::sync::atomic::AtomicBool>,
) -> Result<()> {
    retry_shared(view, deadline, "put", |v, moved| {
        if let Some(c) = closed {
            check_open(c, "put_nb")?;
        }
        if moved {
            replay(v, epoch, puts)?;
        }
        v.put_region(epoch, &put.lo, &put.hi, &put.buf, put.ld.as_deref())
    })?;
    puts.push(put);
    Ok(())
}

/// A buffer for rank `view.rank`'s part in `layout`: `old` when it is an owned one of that
/// length (a pipeline reading every step then touches no fresh pages), else a new one.
fn part_buffer<T: Element>(view: &View, layout: &Layout, old: Local<T>) -> Result<Vec<T>> {
    let n = layout.local_len(view.rank)? as usize;
    match old {
        Local::Owned(v) if v.len() == n => Ok(v),
        _ => crate::element::try_zeroed::<T>(n, &|| {
            format!("the local part of {} on rank {}", view.name(), view.rank)
        }),
    }
}

/// Rank `view.rank`'s part of `version` in `layout`, from the nearest copies, into
/// [`part_buffer`]`(old)` (riding over failovers until `deadline`).
fn fetch_part<T: Element>(
    view: &mut View,
    layout: &Layout,
    version: u64,
    old: Local<T>,
    deadline: Instant,
) -> Result<Vec<T>> {
    let mut v = part_buffer(view, layout, old)?;
    retry(view, deadline, "reading", |view| {
        view.fetch_pieces(layout, version, &mut v)
    })?;
    Ok(v)
}

/// This rank's part of `version` from this process's own store, if it holds it whole: the
/// handle's layout is the array's, so its part is its block (read without a copy).
fn held_snapshot(view: &View, layout: &Layout, version: u64) -> Option<Arc<Data>> {
    if *layout != view.meta.spec.layout {
        return None;
    }
    let (id, rank) = (view.meta.id, view.rank);
    let p = &view.meta.blocks[rank as usize];
    let held_here = p.copies().any(|n| n.same(&view.fed.inner.node));
    let stamp = stamp_at(&p.stamps, version)?;
    if !held_here {
        return None;
    }
    view.fed.inner.store.snapshot(id, rank as u32, stamp).ok()
}

/// Lets a pin go (best effort: the manager drops it with this process's lease anyway).
fn unpin(view: &View, pin: Option<u64>) {
    if let Some(p) = pin {
        let req = Request::Unpin {
            array: view.meta.id,
            pin: p,
        };
        let _ = view
            .fed
            .inner
            .pool
            .call_manager(&contact::of_node(&view.meta.manager), &req);
    }
}

/// Registers a reader of `id` at its manager (under this process's lease there).
pub(crate) fn add_reader(fed: &Federation, manager: &NodeInfo, id: ArrayId) -> Result<u64> {
    fed.ensure_lease(manager)?;
    match fed.inner.pool.call_manager(
        &contact::of_node(manager),
        &Request::AddReader { array: id },
    )? {
        Response::Reader(r) => Ok(r),
        other => Err(unexpected("AddReader", &other)),
    }
}
