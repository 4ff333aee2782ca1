//! The I/O around one manager replica's consensus: it owns the [`Replica`] of the cluster's
//! [`Book`], feeds it time (the manager's consensus thread calls [`Consensus::tick`]) and the
//! other replicas' messages (`Request::Raft`), sends what it produces (one thread per peer,
//! so that a dead or cut-off peer holds up nobody), and lets request handlers wait for their
//! proposals and reads with a timeout.
//!
//! Each gain or loss of office starts a new *generation*: a proposal or read waited for in an
//! older one ends with `NotLeader` (its outcome is unknown: it may or may not have been
//! committed by the next leader, so clients retry only what is safe to repeat).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::service::contact;
use crate::service::manager::book::{Book, Change};
use crate::service::pool::Pool;
use crate::service::protocol::{ReplicaStatus, Request, Response};
use crate::service::replication::{Refusal, Replica, Timing};

/// How a manager replica is set up.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This replica's id (1, 2, ...).
    pub id: u64,
    /// The replicas of a new cluster (ignored when `data_dir` holds a replica already); empty:
    /// this replica joins a running cluster (added with `juxmem manager add`).
    pub voters: Vec<u64>,
    /// Where the replica keeps its log and snapshots (`None`: memory only).
    pub data_dir: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            id: 1,
            voters: vec![1],
            data_dir: None,
        }
    }
}

/// How long one tick of raft time is.
pub const TICK: Duration = Duration::from_millis(100);

/// Messages queued for one peer before the oldest are dropped (raft sends again).
const QUEUE: usize = 4096;

/// A proposal to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    generation: u64,
    proposal: u64,
}

struct Inner {
    replica: Replica<Book>,
    /// Bumped at each gain or loss of office.
    generation: u64,
    leading: bool,
    /// The latest of this generation's proposals applied, and reads served.
    applied: u64,
    served: u64,
    /// The replica failed (its storage): it serves nothing any more.
    failed: Option<String>,
}

/// One replica's consensus and its links to the others.
pub struct Consensus {
    id: u64,
    cluster: String,
    inner: Mutex<Inner>,
    changed: Condvar,
    pool: Arc<Pool>,
    /// The federation directory, where the peers' replica files are.
    dir: Option<PathBuf>,
    senders: Mutex<BTreeMap<u64, SyncSender<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    /// Itself, for the links' threads.
    me: std::sync::Weak<Consensus>,
}

impl Consensus {
    /// Starts replica `settings.id` of `cluster`'s manager (from its data directory if it has
    /// one and it holds a replica).
    pub fn start(
        settings: &Settings,
        cluster: &str,
        pool: Arc<Pool>,
        dir: Option<PathBuf>,
    ) -> Result<Arc<Consensus>> {
        let timing = Timing {
            heartbeat: 2,
            election: 10,
            election_max: 20,
            compact_after: 10_000,
        };
        let voters = Some(settings.voters.as_slice()).filter(|v| !v.is_empty());
        let mut replica = match (&settings.data_dir, voters) {
            (Some(d), v) => Replica::open(d, settings.id, v, Book::default(), timing)?,
            (None, Some(v)) => Replica::new(settings.id, v, Book::default(), timing)?,
            (None, None) => Replica::joining(settings.id, Book::default(), timing)?,
        };
        // A group of one leads at once (no election timeout to wait for).
        if replica.voters() == [settings.id] {
            replica.campaign()?;
        }
        let c = Arc::new_cyclic(|me| Consensus {
            me: me.clone(),
            id: settings.id,
            cluster: cluster.to_string(),
            inner: Mutex::new(Inner {
                replica,
                generation: 0,
                leading: false,
                applied: 0,
                served: 0,
                failed: None,
            }),
            changed: Condvar::new(),
            pool,
            dir,
            senders: Mutex::new(BTreeMap::new()),
            stop: Arc::new(AtomicBool::new(false)),
        });
        c.pump(&mut c.lock());
        Ok(c)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This replica's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Stops the sender threads.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.senders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.changed.notify_all();
    }

    /// One tick of time.
    pub fn tick(&self) {
        let mut inner = self.lock();
        if inner.failed.is_none() {
            inner.replica.tick();
        }
        self.pump(&mut inner);
    }

    /// Messages from replica `from`; returns the messages for `from` they give rise to at once
    /// (sent back on the same exchange: one network hop less per append).
    pub fn step(&self, from: u64, messages: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        self.step_answering(from, messages, true)
    }

    /// [`Consensus::step`]; with `answer` false, every message produced is sent as usual (for
    /// answers that came back on an exchange: nothing would carry theirs).
    fn step_answering(
        &self,
        from: u64,
        messages: &[Vec<u8>],
        answer: bool,
    ) -> Result<Vec<Vec<u8>>> {
        let mut inner = self.lock();
        if let Some(f) = &inner.failed {
            return Err(Error::NotLeader(format!("replica {} failed: {f}", self.id)));
        }
        let mut r = Ok(());
        for m in messages {
            if let Err(e) = inner.replica.step(m) {
                tracing::warn!("a raft message from replica {from}: {e}");
                r = Err(e);
            }
        }
        let back = self.pump_to(&mut inner, Some(from).filter(|_| answer));
        r.map(|()| back)
    }

    /// Whether this replica is the only voter (no other can lead).
    pub fn alone(&self) -> bool {
        self.lock().replica.voters() == [self.id]
    }

    /// (generation, leading): what the manager serves as.
    pub fn office(&self) -> (u64, bool) {
        let inner = self.lock();
        (inner.generation, inner.leading)
    }

    /// The book as applied here, with the generation it was read in.
    pub fn book(&self) -> (u64, Book) {
        let inner = self.lock();
        (inner.generation, inner.replica.machine().clone())
    }

    /// The error for a request this replica does not serve.
    pub fn refusal(&self) -> Error {
        self.not_leader(&self.lock())
    }

    fn not_leader(&self, inner: &Inner) -> Error {
        if let Some(f) = &inner.failed {
            return Error::NotLeader(format!(
                "manager replica {} of {} failed: {f}",
                self.id, self.cluster
            ));
        }
        let leader = inner.replica.leader().filter(|&l| l != self.id);
        Error::NotLeader(match leader {
            Some(l) => format!(
                "manager replica {} of {} does not lead; replica {l} does",
                self.id, self.cluster
            ),
            None => format!(
                "manager replica {} of {} does not lead, and no leader is known yet (an \
                 election is under way)",
                self.id, self.cluster
            ),
        })
    }

    /// Proposes `changes` (on the leader).
    pub fn propose(&self, changes: Vec<Change>) -> Result<Pending> {
        let mut inner = self.lock();
        if !inner.leading || inner.failed.is_some() {
            return Err(self.not_leader(&inner));
        }
        let p = inner.replica.propose(&changes).map_err(|r| match r {
            Refusal::NotLeader { .. } => self.not_leader(&inner),
            other => Error::from(other),
        })?;
        let pending = Pending {
            generation: inner.generation,
            proposal: p.0,
        };
        self.pump(&mut inner);
        Ok(pending)
    }

    /// Whether `p` is applied already.
    pub fn done(&self, p: Pending) -> bool {
        let inner = self.lock();
        inner.generation == p.generation && inner.applied >= p.proposal
    }

    /// Waits until `p` is applied: `NotLeader` if this replica lost its office first (the
    /// outcome is then unknown), `Timeout` after `timeout`.
    pub fn wait(&self, p: Pending, timeout: Duration) -> Result<()> {
        self.wait_for(
            timeout,
            "a change to be committed by a majority",
            |i| (i.generation == p.generation).then_some(i.applied >= p.proposal),
            p.generation,
        )
    }

    /// Waits until this replica has confirmed that it still leads and applied everything
    /// committed before now (a read that must be current).
    pub fn barrier(&self, timeout: Duration) -> Result<()> {
        let (generation, ticket) = {
            let mut inner = self.lock();
            if !inner.leading || inner.failed.is_some() {
                return Err(self.not_leader(&inner));
            }
            let t = inner.replica.read_index().map_err(|r| match r {
                Refusal::NotLeader { .. } => self.not_leader(&inner),
                other => Error::from(other),
            })?;
            let g = inner.generation;
            self.pump(&mut inner);
            (g, t.0)
        };
        self.wait_for(
            timeout,
            "a majority to confirm the leader",
            |i| (i.generation == generation).then_some(i.served >= ticket),
            generation,
        )
    }

    fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        ready: impl Fn(&Inner) -> Option<bool>,
        generation: u64,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            match ready(&inner) {
                Some(true) => return Ok(()),
                None => {
                    return Err(Error::NotLeader(format!(
                        "manager replica {} of {} lost its office (generation {generation}) \
                         while waiting for {what}: the outcome is unknown",
                        self.id, self.cluster
                    )))
                }
                Some(false) => {}
            }
            let now = Instant::now();
            if now >= deadline || self.stop.load(Ordering::SeqCst) {
                return Err(Error::Timeout {
                    what: format!("{what} at manager replica {} of {}", self.id, self.cluster),
                    seconds: timeout.as_secs_f64(),
                });
            }
            inner = self
                .changed
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Drives the replica after anything happened: sends its messages, notes what was applied
    /// and served, and any change of office.
    fn pump(&self, inner: &mut Inner) {
        let _ = self.pump_to(inner, None);
    }

    /// [`Consensus::pump`], returning the messages for replica `back` instead of sending them.
    fn pump_to(&self, inner: &mut Inner, back: Option<u64>) -> Vec<Vec<u8>> {
        let mut kept = Vec::new();
        if inner.failed.is_some() {
            return kept;
        }
        // raft-rs panics on storage it finds inconsistent: that replica stops serving (the
        // others go on) rather than taking its process down.
        // Messages that may go before this replica's own disk write go at once (to the sender
        // threads), unless they answer `back`.
        let early = |to: u64, bytes: &[u8]| {
            if Some(to) == back {
                return false;
            }
            self.send(to, bytes.to_vec());
            true
        };
        let drive = AssertUnwindSafe(|| inner.replica.drive_sending(early));
        let out = match catch_unwind(drive) {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                self.fail(inner, e.to_string());
                return kept;
            }
            Err(_) => {
                self.fail(inner, "raft found its storage inconsistent".into());
                return kept;
            }
        };
        for (to, bytes) in out.messages {
            if Some(to) == back {
                kept.push(bytes);
            } else {
                self.send(to, bytes);
            }
        }
        let mut woke = false;
        if let Some(&(p, ())) = out.applied.last() {
            inner.applied = inner.applied.max(p.0);
            woke = true;
        }
        if let Some(t) = out.reads.iter().max() {
            inner.served = inner.served.max(t.0);
            woke = true;
        }
        let leading = inner.replica.is_leader();
        if leading != inner.leading {
            inner.leading = leading;
            inner.generation += 1;
            inner.applied = 0;
            inner.served = 0;
            tracing::info!(
                "manager replica {} of {} {} (term {})",
                self.id,
                self.cluster,
                if leading { "leads" } else { "follows" },
                inner.replica.term()
            );
            woke = true;
        }
        if woke {
            self.changed.notify_all();
        }
        kept
    }

    fn fail(&self, inner: &mut Inner, why: String) {
        tracing::error!(
            "manager replica {} of {} stops serving: {why}",
            self.id,
            self.cluster
        );
        inner.failed = Some(why);
        inner.leading = false;
        inner.generation += 1;
        self.changed.notify_all();
    }

    /// Queues `bytes` for replica `to`, starting its sender if needed.
    fn send(&self, to: u64, bytes: Vec<u8>) {
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        let tx = senders.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::sync_channel(QUEUE);
            let link = Link {
                local: self.me.clone(),
                from: self.id,
                to,
                cluster: self.cluster.clone(),
                pool: self.pool.clone(),
                dir: self.dir.clone(),
                stop: self.stop.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("juxmem-raft-{}-{to}", self.cluster))
                .spawn(move || link.run(rx));
            if let Err(e) = spawned {
                tracing::warn!("cannot start a sender to replica {to}: {e}");
            }
            tx
        });
        match tx.try_send(bytes) {
            Ok(()) | Err(TrySendError::Full(_)) => {} // raft sends again
            Err(TrySendError::Disconnected(_)) => {
                senders.remove(&to);
            }
        }
    }

    /// Adds (`add`) or removes voter `id` (on the leader), and waits until the change is
    /// applied here.
    pub fn change_voters(&self, add: bool, id: u64, timeout: Duration) -> Result<()> {
        {
            let mut inner = self.lock();
            if !inner.leading || inner.failed.is_some() {
                return Err(self.not_leader(&inner));
            }
            let voters = inner.replica.voters();
            if voters.contains(&id) == add {
                return Ok(()); // done already (a repeated request)
            }
            if !add && voters.len() == 1 {
                return Err(Error::InvalidArgument(format!(
                    "replica {id} is the only replica of {}: it cannot be removed",
                    self.cluster
                )));
            }
            let r = if add {
                inner.replica.add_voter(id)
            } else {
                inner.replica.remove_voter(id)
            };
            r.map_err(|e| match e {
                Refusal::NotLeader { .. } => self.not_leader(&inner),
                other => Error::from(other),
            })?;
            self.pump(&mut inner);
        }
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        while inner.replica.voters().contains(&id) != add {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "{} replica {id} of {}",
                        if add { "adding" } else { "removing" },
                        self.cluster
                    ),
                    seconds: timeout.as_secs_f64(),
                });
            }
            let step = (deadline - now).min(Duration::from_millis(50));
            inner = self
                .changed
                .wait_timeout(inner, step)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }

    /// What `juxmem status` shows of this replica and, if it leads, of the others.
    pub fn status(&self) -> Vec<ReplicaStatus> {
        let inner = self.lock();
        let r = &inner.replica;
        let lags: BTreeMap<u64, u64> = if inner.leading {
            r.lags().into_iter().collect()
        } else {
            BTreeMap::new()
        };
        let addrs: BTreeMap<u64, String> = self
            .dir
            .as_ref()
            .map(|d| {
                contact::replicas(d, &self.cluster)
                    .into_iter()
                    .map(|(id, c)| (id, c.addr))
                    .collect()
            })
            .unwrap_or_default();
        r.voters()
            .into_iter()
            .map(|id| ReplicaStatus {
                id,
                addr: addrs.get(&id).cloned().unwrap_or_default(),
                leader: r.leader() == Some(id),
                term: r.term(),
                lag: lags.get(&id).copied(),
            })
            .collect()
    }
}

/// The sending end of the link to one peer replica.
struct Link {
    /// This replica's consensus, to step the peer's answers into.
    local: std::sync::Weak<Consensus>,
    from: u64,
    to: u64,
    cluster: String,
    pool: Arc<Pool>,
    dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
}

impl Link {
    fn addr(&self) -> Option<String> {
        let dir = self.dir.as_ref()?;
        contact::replicas(dir, &self.cluster)
            .into_iter()
            .find(|(id, _)| *id == self.to)
            .map(|(_, c)| c.addr)
    }

    fn run(self, rx: Receiver<Vec<u8>>) {
        let mut addr: Option<String> = None;
        while let Ok(first) = rx.recv() {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let mut batch = vec![first];
            while let Ok(m) = rx.try_recv() {
                batch.push(m);
                if batch.len() >= 256 {
                    break;
                }
            }
            if addr.is_none() {
                addr = self.addr();
            }
            let Some(a) = &addr else {
                continue; // not started yet: raft sends again
            };
            let req = Request::Raft {
                cluster: self.cluster.clone(),
                from: self.from,
                messages: batch,
            };
            match self.pool.call(a, &req) {
                Ok(Response::Raft(back)) if !back.is_empty() => {
                    if let Some(c) = self.local.upgrade() {
                        if let Err(e) = c.step_answering(self.to, &back, false) {
                            tracing::debug!("answers of replica {}: {e}", self.to);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("raft messages to replica {} at {a}: {e}", self.to);
                    addr = None; // it may have restarted elsewhere
                }
            }
        }
    }
}
