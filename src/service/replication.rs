//! A replicated state machine over tikv's `raft` crate, with no I/O: the foundation of
//! replicated cluster managers (issue 8).
//!
//! [`Replica`] wraps a `raft::RawNode` and a [`Machine`] (the state being replicated). The
//! caller feeds it time ([`Replica::tick`]) and the other replicas' messages
//! ([`Replica::step`]), proposes commands on the leader ([`Replica::propose`]), and after each
//! of those calls [`Replica::drive`], which does raft's `Ready` handling in the order raft asks
//! for and returns what to send, which of this replica's proposals were applied (with their
//! outcomes) and which reads may now be served. Nothing here touches a socket, a file or a
//! clock, so the tests below run whole clusters deterministically, with crashes and
//! partitions, in one thread.
//!
//! Choices:
//! - **raft-rs, not openraft**: it is I/O-free and synchronous like the rest of the protocol
//!   core (`service::groups`, `service::coherence`), so the managers' threads drive it as they
//!   drive those; openraft would bring an async runtime into the manager.
//! - **Pre-vote and check-quorum**: a replica cut off from the majority cannot disturb it when
//!   it comes back, and a leader that loses the majority steps down within an election timeout,
//!   after which its proposals are refused with [`Refusal::NotLeader`].
//! - **Reads through `read_index` (safe mode)**: a read that must be current (a version wait, a
//!   lock grant) is served once the leader has confirmed, by a round of heartbeats, that it still
//!   leads; no reliance on clocks.
//! - **Snapshots** carry the machine's own snapshot; the log is compacted once it holds more
//!   than [`Timing::compact_after`] applied entries, and a replica too far behind (or new)
//!   catches up from a snapshot.
//! - Storage is raft's `MemStorage` as the working copy, written through to a data directory
//!   ([`disk`]) when the replica has one: entries and hard state synced before the votes and
//!   acknowledgements that vouch for them go out, snapshots replaced atomically.

use protobuf::Message as _;
use raft::prelude::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot,
};
use raft::storage::MemStorage;
use raft::{Config, GetEntriesContext, RaftState, RawNode, ReadOnlyOption, StateRole, Storage};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

pub mod disk;

use disk::{Disk, Loaded};

/// The state being replicated: commands applied in log order, the same on every replica.
pub trait Machine {
    /// A change to the state.
    type Command: Serialize + DeserializeOwned;
    /// What applying a command gives back to whoever proposed it.
    type Outcome;
    /// Applies `cmd` (deterministic: the same state and command give the same result).
    fn apply(&mut self, cmd: Self::Command) -> Self::Outcome;
    /// The whole state, for replicas that catch up from a snapshot.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot's.
    fn restore(&mut self, snapshot: &[u8]) -> Result<()>;
}

/// Why a proposal or read was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This replica does not lead; `leader` is the one it knows of, if any.
    NotLeader {
        /// The leader's replica id.
        leader: Option<u64>,
    },
    /// Raft dropped it (a membership change under way, for example): try again.
    Dropped(String),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        match r {
            Refusal::NotLeader { leader: Some(l) } => {
                Error::Busy(format!("not the leader: replica {l} leads"))
            }
            Refusal::NotLeader { leader: None } => Error::Busy(
                "not the leader, and no leader is known (an election is under way)".into(),
            ),
            Refusal::Dropped(m) => Error::Busy(format!("proposal dropped: {m}")),
        }
    }
}

/// Timing of a replica, in ticks (the caller decides how long a tick is).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Ticks between a leader's heartbeats.
    pub heartbeat: usize,
    /// Ticks without a leader before a follower starts an election; a leader that has not
    /// heard from a majority for this long steps down.
    pub election: usize,
    /// Elections start after a number of ticks drawn from `election..election_max` (spread,
    /// so that two candidates rarely collide; tests pin it to make runs reproducible).
    pub election_max: usize,
    /// Applied entries kept in the log before it is compacted into a snapshot.
    pub compact_after: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: 2,
            election: 10,
            election_max: 20,
            compact_after: 10_000,
        }
    }
}

/// One of this replica's proposals, to match its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Proposal(pub u64);

/// A read asked with [`Replica::read_index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadTicket(pub u64);

/// What [`Replica::drive`] produced.
#[derive(Debug)]
pub struct Output<O> {
    /// Messages to send: (replica id, encoded message).
    pub messages: Vec<(u64, Vec<u8>)>,
    /// This replica's proposals that were applied, with their outcomes, in log order.
    pub applied: Vec<(Proposal, O)>,
    /// Reads that may now be served (the state is at least as new as when they were asked).
    pub reads: Vec<ReadTicket>,
}

impl<O> Default for Output<O> {
    fn default() -> Self {
        Output {
            messages: Vec::new(),
            applied: Vec::new(),
            reads: Vec::new(),
        }
    }
}

/// Largest raft message accepted from a peer (a snapshot included).
pub const MAX_MESSAGE: usize = 256 << 20;

/// raft's storage, with snapshots that carry the machine's state (`MemStorage` alone builds
/// snapshots without data).
struct Log {
    mem: MemStorage,
    /// The machine's snapshot at `snapshot_index`, kept up to date by [`Replica::drive`].
    snapshot: Vec<u8>,
    snapshot_index: u64,
    snapshot_term: u64,
    /// The voters as of `snapshot_index`.
    snapshot_conf: ConfState,
    /// raft asked for a snapshot newer than the one kept.
    wanted: std::cell::Cell<bool>,
    /// Where the state is kept across crashes (none: memory only).
    disk: Option<Disk>,
}

impl Storage for Log {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, _request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // The snapshot taken at the last compaction: every entry it covers is applied, and
        // the log holds every entry after it. One that does not know the replica it is for (a
        // voter added since) would be refused there: a fresh one is taken at the next drive,
        // and raft asks again.
        let c = &self.snapshot_conf;
        let knows = c
            .voters
            .iter()
            .chain(&c.learners)
            .chain(&c.voters_outgoing)
            .chain(&c.learners_next)
            .any(|&id| id == to);
        if !knows {
            self.wanted.set(true);
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut s = Snapshot {
            data: self.snapshot.clone().into(),
            ..Default::default()
        };
        let meta = s.mut_metadata();
        meta.index = self.snapshot_index;
        meta.term = self.snapshot_term;
        meta.set_conf_state(self.snapshot_conf.clone());
        Ok(s)
    }
}

/// One replica of a replicated [`Machine`].
pub struct Replica<M: Machine> {
    id: u64,
    raw: RawNode<Log>,
    machine: M,
    applied: u64,
    next_proposal: u64,
    next_read: u64,
    timing: Timing,
    /// Confirmed reads waiting for the state to catch up: (read index, ticket).
    reads: Vec<(u64, ReadTicket)>,
}

fn config(id: u64, t: &Timing) -> Config {
    Config {
        id,
        election_tick: t.election,
        min_election_tick: t.election,
        max_election_tick: t.election_max.max(t.election + 1),
        heartbeat_tick: t.heartbeat,
        check_quorum: true,
        pre_vote: true,
        read_only_option: ReadOnlyOption::Safe,
        max_inflight_msgs: 256,
        max_size_per_msg: 1 << 20,
        ..Default::default()
    }
}

fn raft_error(doing: &str, e: raft::Error) -> Error {
    Error::Protocol(format!("{doing}: {e}"))
}

impl<M: Machine> Replica<M> {
    /// A replica of a new group whose voters are `voters` (this one among them), its machine
    /// starting from `machine`; its state in memory only.
    pub fn new(id: u64, voters: &[u64], machine: M, timing: Timing) -> Result<Replica<M>> {
        Self::start(id, Some(voters), machine, timing, None)
    }

    /// A replica joining an existing group (added with [`Replica::add_voter`] on the leader):
    /// it starts empty and is filled by a snapshot from the leader.
    pub fn joining(id: u64, machine: M, timing: Timing) -> Result<Replica<M>> {
        Self::start(id, None, machine, timing, None)
    }

    /// A replica keeping its state in the data directory `dir` ([`disk`]): restarted from
    /// what the directory holds (its machine restored from the snapshot, then the log replayed
    /// as raft commits it again), or, if it holds nothing, started as [`Replica::new`] (with
    /// `voters`) or [`Replica::joining`] (without).
    pub fn open(
        dir: &std::path::Path,
        id: u64,
        voters: Option<&[u64]>,
        machine: M,
        timing: Timing,
    ) -> Result<Replica<M>> {
        let (disk, loaded) = Disk::open(dir)?;
        Self::start(id, voters, machine, timing, Some((disk, loaded)))
    }

    fn start(
        id: u64,
        voters: Option<&[u64]>,
        mut machine: M,
        timing: Timing,
        disk: Option<(Disk, Loaded)>,
    ) -> Result<Replica<M>> {
        let (mut disk, loaded) = match disk {
            Some((d, l)) => (Some(d), l),
            None => (None, Loaded::default()),
        };
        let fresh = loaded.snapshot.is_none() && loaded.entries.is_empty() && loaded.hard.is_none();
        let first = match (fresh, voters) {
            (true, Some(voters)) => {
                if id == 0 || !voters.contains(&id) {
                    return Err(Error::InvalidArgument(format!(
                        "replica {id} must be a nonzero member of its voters {voters:?}"
                    )));
                }
                // The group starts from a snapshot at index 1 holding the voters and the
                // initial state, so that a replica added later (empty) catches up from a
                // snapshot, never from a log that does not say who the first voters were.
                let mut first = Snapshot {
                    data: machine.snapshot().into(),
                    ..Default::default()
                };
                let meta = first.mut_metadata();
                meta.index = 1;
                meta.term = 1;
                meta.set_conf_state(ConfState::from((voters.to_vec(), vec![])));
                if let Some(d) = &mut disk {
                    d.compact(&first, &[])?;
                }
                Some(first)
            }
            (true, None) => None,
            (false, _) => {
                if let Some(s) = &loaded.snapshot {
                    machine.restore(&s.data)?;
                }
                loaded.snapshot
            }
        };
        let mem = MemStorage::new();
        let mut log = Log {
            mem,
            snapshot: machine.snapshot(),
            snapshot_index: 0,
            snapshot_term: 0,
            snapshot_conf: ConfState::default(),
            wanted: std::cell::Cell::new(false),
            disk,
        };
        let mut applied = 0;
        if let Some(s) = first {
            let meta = s.get_metadata();
            applied = meta.index;
            log.snapshot = s.data.to_vec();
            log.snapshot_index = meta.index;
            log.snapshot_term = meta.term;
            log.snapshot_conf = meta.get_conf_state().clone();
            log.mem
                .wl()
                .apply_snapshot(s)
                .map_err(|e| raft_error("starting a replica", e))?;
        }
        if !loaded.entries.is_empty() {
            log.mem
                .wl()
                .append(&loaded.entries)
                .map_err(|e| raft_error("restoring the log", e))?;
        }
        if let Some(mut h) = loaded.hard {
            let last = log.mem.last_index().unwrap_or(0);
            h.commit = h.commit.min(last).max(applied);
            log.mem.wl().set_hardstate(h);
        }
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&config(id, &timing), log, &logger)
            .map_err(|e| raft_error("starting a replica", e))?;
        Ok(Replica {
            id,
            raw,
            machine,
            applied,
            next_proposal: 1,
            next_read: 1,
            timing,
            reads: Vec::new(),
        })
    }

    /// This replica's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The replicated state as applied here.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this replica knows of.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&l| l != 0)
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The index of the last entry applied here.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// On the leader: each voter's lag, in entries behind the leader's last one.
    pub fn lags(&self) -> Vec<(u64, u64)> {
        let last = self.raw.raft.raft_log.last_index();
        let mut v: Vec<(u64, u64)> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(id, p)| (*id, last.saturating_sub(p.matched)))
            .collect();
        v.sort();
        v
    }

    /// The voters, as this replica knows them.
    pub fn voters(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        v.sort();
        v
    }

    /// Starts an election now rather than after an election timeout (a group of one starts
    /// leading at once).
    pub fn campaign(&mut self) -> Result<()> {
        self.raw
            .campaign()
            .map_err(|e| raft_error("starting an election", e))
    }

    /// One tick of time.
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// A message from another replica (as [`Output::messages`] encoded it). A malformed one is
    /// a typed error and changes nothing.
    pub fn step(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() > MAX_MESSAGE {
            return Err(Error::Protocol(format!(
                "a raft message of {} bytes (at most {MAX_MESSAGE})",
                bytes.len()
            )));
        }
        let mut m = Message::default();
        m.merge_from_bytes(bytes)
            .map_err(|e| Error::Protocol(format!("malformed raft message: {e}")))?;
        if m.to != self.id {
            return Err(Error::Protocol(format!(
                "a raft message for replica {} reached replica {}",
                m.to, self.id
            )));
        }
        match self.raw.step(m) {
            Ok(()) | Err(raft::Error::StepPeerNotFound) => Ok(()),
            Err(e) => Err(raft_error("a raft message", e)),
        }
    }

    /// Proposes `cmd` (on the leader): its outcome comes out of a later [`Replica::drive`],
    /// once a majority holds it and it is applied. A proposal may also never come out (the
    /// leader lost its office first): callers wait with a timeout and retry, so commands must
    /// be safe to apply twice.
    pub fn propose(&mut self, cmd: &M::Command) -> std::result::Result<Proposal, Refusal> {
        if !self.is_leader() {
            return Err(Refusal::NotLeader {
                leader: self.leader(),
            });
        }
        let data = postcard::to_stdvec(cmd).map_err(|e| Refusal::Dropped(e.to_string()))?;
        let p = Proposal(self.next_proposal);
        self.next_proposal += 1;
        self.raw
            .propose(tag(self.id, p.0), data)
            .map_err(|e| Refusal::Dropped(e.to_string()))?;
        Ok(p)
    }

    /// Asks to read the current state (on the leader): the ticket comes out of a later
    /// [`Replica::drive`] once the leader confirmed it still leads and applied everything
    /// committed when it was asked.
    pub fn read_index(&mut self) -> std::result::Result<ReadTicket, Refusal> {
        if !self.is_leader() {
            return Err(Refusal::NotLeader {
                leader: self.leader(),
            });
        }
        let t = ReadTicket(self.next_read);
        self.next_read += 1;
        self.raw.read_index(tag(self.id, t.0));
        Ok(t)
    }

    /// Proposes adding replica `id` as a voter (it starts with [`Replica::joining`]).
    pub fn add_voter(&mut self, id: u64) -> std::result::Result<(), Refusal> {
        self.change(id, ConfChangeType::AddNode)
    }

    /// Proposes removing replica `id`.
    pub fn remove_voter(&mut self, id: u64) -> std::result::Result<(), Refusal> {
        self.change(id, ConfChangeType::RemoveNode)
    }

    fn change(&mut self, id: u64, kind: ConfChangeType) -> std::result::Result<(), Refusal> {
        if !self.is_leader() {
            return Err(Refusal::NotLeader {
                leader: self.leader(),
            });
        }
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = id;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        self.raw
            .propose_conf_change(vec![], cc)
            .map_err(|e| Refusal::Dropped(e.to_string()))
    }

    /// Does what raft asks after a tick, a step or a proposal: keeps entries and state,
    /// applies committed entries, and returns what to send and what was applied.
    pub fn drive(&mut self) -> Result<Output<M::Outcome>> {
        self.drive_sending(|_, _| false)
    }

    /// [`Replica::drive`], handing the messages a leader may send before it persists its own
    /// entries (raft thesis 10.2.1) to `early` as soon as they are known, so that the
    /// followers' disk writes overlap the leader's; those `early` takes (returns true for) are
    /// not in the output.
    pub fn drive_sending(
        &mut self,
        mut early: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<Output<M::Outcome>> {
        let mut out = Output::default();
        while self.raw.has_ready() {
            let mut rd = self.raw.ready();
            let mut first = Output::default();
            self.encode(rd.take_messages(), &mut first)?;
            for (to, bytes) in first.messages {
                if !early(to, &bytes) {
                    out.messages.push((to, bytes));
                }
            }
            if !rd.snapshot().is_empty() {
                self.install(rd.snapshot().clone())?;
            }
            let committed = rd.take_committed_entries();
            self.apply(committed, &mut out)?;
            {
                let store = self.raw.mut_store();
                let mut log = store.mem.wl();
                log.append(rd.entries())
                    .map_err(|e| raft_error("appending entries", e))?;
                if let Some(hs) = rd.hs() {
                    log.set_hardstate(hs.clone());
                }
                drop(log);
                if let Some(d) = &mut store.disk {
                    d.append(rd.entries(), rd.hs())?;
                }
            }
            for r in rd.take_read_states() {
                // raft hands a read out once the leader confirmed its office; it is served
                // once everything committed when it was asked is applied here.
                if let Some(t) = untag(self.id, &r.request_ctx) {
                    self.reads.push((r.index, ReadTicket(t)));
                }
            }
            // Votes and append answers only once the state they vouch for is kept.
            self.encode(rd.take_persisted_messages(), &mut out)?;
            let mut light = self.raw.advance(rd);
            if let Some(c) = light.commit_index() {
                self.raw.mut_store().mem.wl().mut_hard_state().set_commit(c);
            }
            self.encode(light.take_messages(), &mut out)?;
            let committed = light.take_committed_entries();
            self.apply(committed, &mut out)?;
            self.raw.advance_apply();
        }
        let applied = self.applied;
        self.reads.retain(|&(index, t)| {
            if index <= applied {
                out.reads.push(t);
            }
            index > applied
        });
        self.compact()?;
        Ok(out)
    }

    fn encode(&mut self, msgs: Vec<Message>, out: &mut Output<M::Outcome>) -> Result<()> {
        for m in msgs {
            let bytes = m
                .write_to_bytes()
                .map_err(|e| Error::Protocol(format!("encoding a raft message: {e}")))?;
            out.messages.push((m.to, bytes));
        }
        Ok(())
    }

    fn install(&mut self, s: Snapshot) -> Result<()> {
        let index = s.get_metadata().index;
        if index <= self.applied {
            return Ok(());
        }
        self.machine.restore(&s.data)?;
        self.applied = index;
        let log = self.raw.mut_store();
        log.snapshot = s.data.to_vec();
        log.snapshot_index = index;
        log.snapshot_term = s.get_metadata().term;
        log.snapshot_conf = s.get_metadata().get_conf_state().clone();
        if let Some(d) = &mut log.disk {
            d.compact(&s, &[])?;
        }
        log.mem
            .wl()
            .apply_snapshot(s)
            .map_err(|e| raft_error("installing a snapshot", e))
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut Output<M::Outcome>) -> Result<()> {
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {} // a new leader's empty entry
                EntryType::EntryNormal => {
                    let cmd: M::Command = postcard::from_bytes(&e.data).map_err(|err| {
                        Error::Protocol(format!("a log entry that is no command: {err}"))
                    })?;
                    let outcome = self.machine.apply(cmd);
                    if let Some(p) = untag(self.id, &e.context) {
                        out.applied.push((Proposal(p), outcome));
                    }
                }
                // Either encoding raft writes of a membership change.
                EntryType::EntryConfChangeV2 => {
                    let cc: ConfChangeV2 = decode_change(&e.data)?;
                    let cs = self.raw.apply_conf_change(&cc);
                    self.keep_voters(cs)?;
                }
                EntryType::EntryConfChange => {
                    let cc: raft::prelude::ConfChange = decode_change(&e.data)?;
                    let cs = self.raw.apply_conf_change(&cc);
                    self.keep_voters(cs)?;
                }
            }
            self.applied = e.index;
        }
        Ok(())
    }

    /// Keeps the voters an applied membership change leaves.
    fn keep_voters(&mut self, applied: raft::Result<ConfState>) -> Result<()> {
        let cs = applied.map_err(|err| raft_error("applying a membership change", err))?;
        self.raw.mut_store().mem.wl().set_conf_state(cs);
        Ok(())
    }

    /// Once more than `compact_after` applied entries are in the log (or raft wanted a newer
    /// snapshot): a snapshot of the machine at the applied index, and the log before it
    /// dropped.
    fn compact(&mut self) -> Result<()> {
        let first = self
            .raw
            .store()
            .first_index()
            .map_err(|e| raft_error("reading the log", e))?;
        let wanted = self.raw.store().wanted.replace(false);
        if !wanted && (self.applied < first || self.applied - first < self.timing.compact_after) {
            return Ok(());
        }
        let term = self
            .raw
            .store()
            .term(self.applied)
            .map_err(|e| raft_error("reading the log", e))?;
        let snapshot = self.machine.snapshot();
        let applied = self.applied;
        let conf = self
            .raw
            .store()
            .initial_state()
            .map_err(|e| raft_error("reading the log", e))?
            .conf_state;
        let log = self.raw.mut_store();
        if log.disk.is_some() {
            let last = log
                .mem
                .last_index()
                .map_err(|e| raft_error("reading the log", e))?;
            let rest = log
                .mem
                .entries(applied + 1, last + 1, None, GetEntriesContext::empty(false))
                .map_err(|e| raft_error("reading the log", e))?;
            let mut kept = Snapshot {
                data: snapshot.clone().into(),
                ..Default::default()
            };
            let meta = kept.mut_metadata();
            meta.index = applied;
            meta.term = term;
            meta.set_conf_state(conf.clone());
            if let Some(d) = &mut log.disk {
                d.compact(&kept, &rest)?;
            }
        }
        log.snapshot = snapshot;
        log.snapshot_index = applied;
        log.snapshot_term = term;
        log.snapshot_conf = conf;
        log.mem
            .wl()
            .compact(applied)
            .map_err(|e| raft_error("compacting the log", e))
    }
}

/// A membership change as a log entry holds it.
fn decode_change<C: protobuf::Message>(data: &[u8]) -> Result<C> {
    let mut cc = C::new();
    cc.merge_from_bytes(data)
        .map_err(|err| Error::Protocol(format!("a malformed change: {err}")))?;
    Ok(cc)
}

/// The context of a proposal or read: who asked (so that only the asking replica reports it)
/// and its number.
fn tag(replica: u64, n: u64) -> Vec<u8> {
    let mut v = replica.to_le_bytes().to_vec();
    v.extend_from_slice(&n.to_le_bytes());
    v
}

fn untag(replica: u64, ctx: &[u8]) -> Option<u64> {
    if ctx.len() != 16 || ctx[..8] != replica.to_le_bytes() {
        return None;
    }
    Some(u64::from_le_bytes(ctx[8..].try_into().ok()?))
}

#[cfg(test)]
mod tests;
