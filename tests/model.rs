//! A model check (stateright) of the fault-tolerance protocol, run on the library's own state
//! machines: the manager's [`Entry`] (write lock, versions, data groups), and one
//! [`BlockCopy`] per provider. The model only carries messages and chooses events; every
//! decision (grant, fencing by term and epoch, the commit check, failover, restore completion,
//! pruning) is the library's.
//!
//! What is modelled: one array with one block (1-D, 1 process), redundancy 1 cluster x 2 copies,
//! 3 providers (`p0` home, `p1` replica, `p2` a spare for restores), 2 clients and the manager.
//!
//! - Clients acquire (a direct call: `enqueue_writer` + `try_grant`, taken only when granted),
//!   send `Write` to the home they know, then `Publish`; on `Published { holders }` they call
//!   `Entry::commit`. On a retryable failure (`Fenced`, `NotFound`, a timeout) they refresh the
//!   placement and redo the write and the publish at the new home (a bounded number of times);
//!   `NotAcquired` and `Lost` are final (the epoch is aborted, as dropping a `RegionLock` does).
//!   Clients also read: the manager's latest version (`Entry::try_read`), its stamp
//!   (`stamp_at`), then that exact stamp from one copy the placement lists.
//! - Providers mirror `provider.rs`: `Write` = `working` + `set_working`; `Publish` = `publish`,
//!   then `Install` to every push target in parallel, answered once every target acknowledged
//!   or timed out (holders = the home + replicas that acknowledged; a `Fenced` or
//!   `NotAcquired` refusal fails the publish); `Restore` = host the block, fetch every task
//!   stamp not held from the first source that has it (skipping one no source holds any
//!   more), `restore` it, answer the stamps held.
//! - The manager: failure detection of a crashed provider, false suspicion of a live one (a
//!   paused old home that comes back and starts again as a new member, empty, under a new
//!   incarnation, as a daemon does),
//!   `node_gone` with its `Promote`/`Fence` effects sent as messages, lease expiry of the lock
//!   holder (`owner_gone`, after which the client still sends messages), new copies
//!   (`missing` + `add_copy`) and restores (`restore_tasks`, `restored`; a restore whose
//!   request or answer is lost makes the manager declare the target unreachable, as
//!   `run_restore` does).
//! - Network: an unordered multiset of messages; a step delivers one, delivers a copy while
//!   keeping it (duplication), or loses one. Messages to a crashed provider are dropped.
//!
//! Abstractions: a block's data is one `u64` whose two 32-bit halves belong to the two clients
//! (a write sets its client's half to the epoch number and keeps the other half from the base,
//! so the result depends on the base it started from, and writing again is idempotent, like a
//! region `put` replayed); acquire, commit and the read's version lookup are direct calls to
//! the `Entry` (the lookup on a copy of it: the bookkeeping of what was read would only
//! multiply states); `Promote`/`Fence` are one-way (a lost `Promote` only costs liveness here;
//! the real manager would declare the new home unreachable); reads are not pinned; at most one
//! restore runs at a time; only live providers are chosen for new copies; a client's call
//! times out only once nothing can answer it any more (a request delivered after its caller
//! moved on comes from duplication).
//!
//! Bounds (keep the state space finite): each client acquires at most once; at most 2 redos
//! per epoch; at most 1 lost and 1 duplicated message, 1 crash, 1 false suspicion and 1 lease
//! expiry; retention of 2 versions (so publishes prune); BFS depth `target_max_depth`.
//!
//! Properties:
//! - always: one home per term (no two providers that are alive claim `Role::Home` at the same
//!   term);
//! - always: versions only grow, each acknowledged once (acknowledged versions strictly
//!   increase and the last is the manager's latest);
//! - always: an acknowledged release stays readable: every live copy the manager lists as
//!   current (home and current replicas) holds the latest version's exact stamp with the
//!   acknowledged value, unless the block is reported lost;
//! - always: no aborted data is visible: every read returned the acknowledged value of its
//!   version (reads that do not are logged in the state);
//! - sometimes: a failover happened and a later release was acknowledged; a restored copy
//!   became current (so the model is known to reach the interesting states).
//!
//! `protocol_model_bounded` runs a BFS small enough for every `cargo test` (depth 13: every
//! path of up to 12 steps); `protocol_model_deep` (ignored, depth from `JUXMEM_MODEL_DEPTH`)
//! is run by `ci/model-check`. The `finding_*` tests replay counterexamples the model found on
//! earlier versions of the library (fixed since; they guard against regressions).

use std::sync::Arc;
use std::time::Instant;

use juxmem::layout::{Dist, Layout};
use juxmem::service::coherence::{Poll, Versions};
use juxmem::service::copy::{BlockCopy, Payload, Role};
use juxmem::service::directory::{Entry, Owner};
use juxmem::service::groups::{DataGroups, Effect};
use juxmem::service::protocol::{
    stamp_at, ArraySpec, BlockPlacement, FullPolicy, HomePlacement, NodeId, NodeInfo, NodeKind,
    Redundancy, Retention, Stamp, Touched, VersionReq,
};
use juxmem::{ElemType, Error, ErrorCode};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Property};

const PROVIDERS: usize = 3;
const CLIENTS: usize = 2;

/// A block's data: the low half is client 0's, the high half client 1's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Data(u64);

impl Data {
    /// `client`'s half set to `value`, the other half kept.
    fn with_half(self, client: u8, value: u64) -> Data {
        let shift = 32 * u32::from(client);
        Data((self.0 & !(0xffff_ffffu64 << shift)) | (value << shift))
    }
}

impl Payload for Data {
    type Work = Data;
    fn thaw(&self) -> juxmem::Result<Data> {
        Ok(*self)
    }
    fn blank(&self) -> juxmem::Result<Data> {
        Ok(*self)
    }
    fn freeze(work: Data) -> juxmem::Result<Data> {
        Ok(work)
    }
}

/// An error as it crosses the wire (its code is what the receivers act on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fail {
    Fenced,
    NotAcquired,
    NotFound,
    Lost,
    Network,
    Timeout,
    Other(u32),
}

fn fail(e: &Error) -> Fail {
    match e.code() {
        ErrorCode::Fenced => Fail::Fenced,
        ErrorCode::NotAcquired => Fail::NotAcquired,
        ErrorCode::NotFound => Fail::NotFound,
        ErrorCode::Lost => Fail::Lost,
        ErrorCode::Network => Fail::Network,
        ErrorCode::Timeout => Fail::Timeout,
        other => Fail::Other(other as u32),
    }
}

/// `array::view::retryable`: a fresh placement may help.
fn retryable(f: Fail) -> bool {
    matches!(
        f,
        Fail::Network | Fail::Timeout | Fail::NotFound | Fail::Fenced
    )
}

/// `array::view::keep_after` (crate-private there): the stamps a publish on top of `stamps`
/// with `floor` keeps.
fn keep_after(stamps: &[Stamp], floor: u64) -> Vec<Stamp> {
    let from = stamps.iter().rposition(|s| s.version <= floor).unwrap_or(0);
    stamps[from..].to_vec()
}

/// Provider `p` in its `incarnation` (a provider declared dead starts again as a new one).
fn node_at(p: u8, incarnation: u64) -> NodeInfo {
    NodeInfo {
        name: format!("p{p}"),
        cluster: "A".into(),
        addr: String::new(),
        kind: NodeKind::Daemon,
        incarnation,
    }
}

fn index(n: &NodeInfo) -> u8 {
    n.name[1..].parse().expect("a provider of the model")
}

fn owner(c: u8) -> Owner {
    (format!("c{c}"), 1)
}

/// A copy that holds a published stamp: (provider, incarnation).
type Holder = (u8, u64);

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Msg {
    /// Client -> home: write `value` (the client's half) in epoch `epoch` from `base`.
    Write {
        to: u8,
        client: u8,
        tag: u8,
        term: u64,
        epoch: u64,
        base: Stamp,
        value: u64,
    },
    WriteAck {
        client: u8,
        tag: u8,
        result: Result<(), Fail>,
    },
    /// Client -> home: publish `version`, push to `targets`.
    Publish {
        to: u8,
        client: u8,
        tag: u8,
        term: u64,
        epoch: u64,
        version: u64,
        keep: Vec<Stamp>,
        targets: Vec<u8>,
    },
    /// Home -> client: the new stamp and the providers (incarnations) holding it.
    Published {
        client: u8,
        tag: u8,
        result: Result<(Option<Stamp>, Vec<Holder>), Fail>,
    },
    /// Home -> replica (the push of a publish for `client`'s attempt `tag`).
    Install {
        to: u8,
        home: u8,
        client: u8,
        tag: u8,
        term: u64,
        stamp: Stamp,
        data: Data,
        keep: Vec<Stamp>,
    },
    InstallAck {
        home: u8,
        from: u8,
        /// The incarnation that answered (the process at that address now).
        inc: u64,
        client: u8,
        tag: u8,
        result: Result<(), Fail>,
    },
    /// Manager -> provider effects of a failover.
    Promote {
        to: u8,
        term: u64,
    },
    Fence {
        to: u8,
        term: u64,
    },
    /// Manager -> restore target (the task, and the placement's term and home).
    Restore {
        to: u8,
        term: u64,
        home: Option<u8>,
        stamps: Vec<Stamp>,
        sources: Vec<u8>,
    },
    Restored {
        from: u8,
        /// The incarnation that answered.
        inc: u64,
        result: Result<Vec<Stamp>, Fail>,
    },
}

/// A home's publish waiting for its replicas (one thread per connection in `provider.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Pushing {
    home: u8,
    client: u8,
    tag: u8,
    stamp: Stamp,
    targets: Vec<u8>,
    /// Each target's answer and the incarnation that gave it.
    results: Vec<Option<Result<u64, Fail>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Wait {
    Write,
    Publish,
}

/// A client's write epoch, with the placement it knows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Writer {
    epoch: u64,
    version: u64,
    floor: u64,
    /// Attempt number: replies to earlier attempts are ignored (their connection is gone).
    tag: u8,
    redos_left: u8,
    placement: Arc<BlockPlacement>,
    wait: Wait,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Idle,
    Writing(Writer),
    Reading {
        version: u64,
        stamp: Stamp,
        copies: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Client {
    phase: Phase,
    acquired: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Faults {
    lost: u8,
    duplicated: u8,
    crashes: u8,
    suspicions: u8,
    expiries: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    /// The manager's entry of the array (the real one; shared between states until changed).
    entry: Arc<Entry>,
    /// Each provider's copy of the block (the real one); `None`: crashed or not held.
    copies: Vec<Option<Arc<BlockCopy<Data>>>>,
    crashed: Vec<bool>,
    /// Declared dead by the manager and not started again yet (it may still be running).
    declared_dead: Vec<bool>,
    /// Each provider's current incarnation.
    incarnations: Vec<u64>,
    /// Messages in flight (a sorted multiset).
    net: Vec<Msg>,
    /// Publishes waiting for their pushes (sorted).
    pushing: Vec<Pushing>,
    /// The restore target (and its incarnation) the manager waits for.
    restoring: Option<(u8, u64)>,
    clients: Vec<Client>,
    /// Acknowledged releases: (version, value), in acknowledgement order.
    acks: Vec<(u64, u64)>,
    /// Reads that returned something else than the acknowledged value: (version, got, wanted).
    bad_reads: Vec<(u64, u64, u64)>,
    faults: Faults,
    failed_over: bool,
    released_after_failover: bool,
    restored_copy: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Deliver(Msg),
    Duplicate(Msg),
    Lose(Msg),
    Acquire(u8),
    ClientTimeout(u8),
    StartRead(u8),
    ReadFrom(u8, u8),
    Crash(u8),
    DetectCrash(u8),
    FalseSuspicion(u8),
    Rejoin(u8),
    LeaseExpiry(u8),
    AddCopy(u8),
    StartRestore,
    RestoreTimeout,
    PushTimeout {
        home: u8,
        client: u8,
        tag: u8,
        to: u8,
    },
}

/// The model and its bounds.
#[derive(Clone)]
struct Protocol {
    acquires_per_client: u8,
    redos: u8,
    lost: u8,
    duplicated: u8,
    crashes: u8,
    suspicions: u8,
    expiries: u8,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            acquires_per_client: 1,
            redos: 2,
            lost: 1,
            duplicated: 1,
            crashes: 1,
            suspicions: 1,
            expiries: 1,
        }
    }
}

fn initial_entry() -> Entry {
    let redundancy = Redundancy {
        clusters: 1,
        providers_per_cluster: 2,
    };
    let retention = Retention {
        max_versions: 2,
        on_full: FullPolicy::Block,
        readers: 0,
    };
    let spec = ArraySpec {
        name: "model".into(),
        elem: ElemType::U64,
        layout: Layout::new(&[2], &[Dist::Block], &[1]).expect("layout"),
        redundancy,
        retention,
        homes: HomePlacement::Daemons,
        replicate_to: Vec::new(),
        attributes: Default::default(),
    };
    let manager = NodeInfo {
        name: "manager".into(),
        cluster: "A".into(),
        addr: String::new(),
        kind: NodeKind::Manager,
        incarnation: 1,
    };
    let groups = DataGroups::new(
        redundancy,
        vec!["A".into()],
        vec![(node_at(0, 1), vec![node_at(1, 1)])],
    );
    let mut entry = Entry::new(
        1,
        spec,
        manager,
        Versions::new(retention).expect("retention"),
        groups,
        ("creator".into(), 1),
    );
    entry.confirmed = true;
    entry
}

impl State {
    fn send(&mut self, m: Msg) {
        let at = self.net.binary_search(&m).unwrap_or_else(|i| i);
        self.net.insert(at, m);
    }

    fn take(&mut self, m: &Msg) {
        let at = self.net.binary_search(m).expect("a message in flight");
        self.net.remove(at);
    }

    fn in_flight(&self, f: impl Fn(&Msg) -> bool) -> bool {
        self.net.iter().any(f)
    }

    fn alive(&self, p: u8) -> bool {
        !self.crashed[p as usize]
    }

    /// Provider `p` as it is now.
    fn node(&self, p: u8) -> NodeInfo {
        node_at(p, self.incarnations[p as usize])
    }

    fn placement(&self) -> BlockPlacement {
        self.entry.groups.placement(0)
    }

    /// The acknowledged value of `version` (version 0: the initial zeros).
    fn acked(&self, version: u64) -> Option<u64> {
        if version == 0 {
            return Some(0);
        }
        self.acks
            .iter()
            .find(|(v, _)| *v == version)
            .map(|&(_, x)| x)
    }

    /// The manager declares `p` (in `incarnation`) gone and tells the providers what changed.
    fn node_gone(&mut self, p: u8, incarnation: u64) {
        if incarnation == self.incarnations[p as usize] {
            self.declared_dead[p as usize] = true;
        }
        let gone = node_at(p, incarnation);
        for effect in Arc::make_mut(&mut self.entry).groups.node_gone(&gone) {
            match effect {
                Effect::Promote { node, term, .. } => {
                    self.failed_over = true;
                    self.send(Msg::Promote {
                        to: index(&node),
                        term,
                    });
                }
                Effect::Fence { nodes, term, .. } => {
                    for n in nodes {
                        self.send(Msg::Fence {
                            to: index(&n),
                            term,
                        });
                    }
                }
                Effect::Lost { .. } => {}
            }
        }
    }

    fn writer(&mut self, c: u8) -> Option<&mut Writer> {
        match &mut self.clients[c as usize].phase {
            Phase::Writing(w) => Some(w),
            _ => None,
        }
    }

    /// Replies to `c` of attempts it gave up are never read (their connection is gone).
    fn drop_replies(&mut self, c: u8) {
        self.net.retain(|m| {
            !matches!(m, Msg::WriteAck { client, .. } | Msg::Published { client, .. } if *client == c)
        });
    }

    /// Sends the write of `c`'s epoch to the home its placement names (`Lost`: gives up).
    fn send_write(&mut self, c: u8) {
        let w = self.writer(c).expect("writing");
        let Some(home) = w.placement.home.as_ref().map(index) else {
            return self.give_up(c);
        };
        let m = Msg::Write {
            to: home,
            client: c,
            tag: w.tag,
            term: w.placement.term,
            epoch: w.epoch,
            base: w.placement.latest(),
            value: w.epoch,
        };
        w.wait = Wait::Write;
        self.send(m);
    }

    /// The release failed for good: the lock is given up (`RegionLock`'s drop aborts).
    fn give_up(&mut self, c: u8) {
        let w = self.writer(c).expect("writing").clone();
        let _ = Arc::make_mut(&mut self.entry).abort(&owner(c), w.epoch);
        self.clients[c as usize].phase = Phase::Idle;
        self.drop_replies(c);
    }

    /// `array::view::retry`: a retryable error refreshes the placement and redoes the writes
    /// and the publish; anything else (or no redo left) gives up.
    fn failed(&mut self, c: u8, f: Fail) {
        let placement = self.placement();
        let w = self.writer(c).expect("writing");
        if !retryable(f) || w.redos_left == 0 {
            return self.give_up(c);
        }
        w.redos_left -= 1;
        w.tag += 1;
        w.placement = Arc::new(placement);
        self.drop_replies(c);
        self.send_write(c);
    }

    fn committed(&mut self, c: u8, w: &Writer) {
        let base = self
            .acked(w.version - 1)
            .expect("the base was acknowledged");
        let value = Data(base).with_half(c, w.epoch).0;
        self.acks.push((w.version, value));
        if self.failed_over {
            self.released_after_failover = true;
        }
        self.clients[c as usize].phase = Phase::Idle;
        self.drop_replies(c);
    }

    /// A home's publish has every push answered: `provider::publish`'s answer.
    fn finish_push(&mut self, i: usize) {
        let p = self.pushing.remove(i);
        let mut holders = vec![(p.home, self.incarnations[p.home as usize])];
        let mut result = Ok(());
        for (&t, r) in p.targets.iter().zip(&p.results) {
            match r.expect("every push answered") {
                Ok(inc) => holders.push((t, inc)),
                Err(f @ (Fail::Fenced | Fail::NotAcquired)) => {
                    result = Err(f);
                    break;
                }
                Err(_) => {} // left out: restored or replaced later
            }
        }
        self.send(Msg::Published {
            client: p.client,
            tag: p.tag,
            result: result.map(|()| (Some(p.stamp), holders)),
        });
    }

    fn push_answered(&mut self, home: u8, from: u8, client: u8, tag: u8, r: Result<u64, Fail>) {
        let found = self.pushing.iter().enumerate().find_map(|(i, p)| {
            if (p.home, p.client, p.tag) != (home, client, tag) {
                return None;
            }
            let j = p
                .targets
                .iter()
                .zip(&p.results)
                .position(|(&t, r)| t == from && r.is_none())?;
            Some((i, j))
        });
        let Some((i, j)) = found else {
            return; // a duplicated answer
        };
        self.pushing[i].results[j] = Some(r);
        if self.pushing[i].results.iter().all(Option::is_some) {
            self.finish_push(i);
        } else {
            self.pushing.sort();
        }
    }

    /// `Provider::restore` at `to`.
    fn restore(&mut self, to: u8, term: u64, home: Option<u8>, stamps: &[Stamp], sources: &[u8]) {
        let copy = self.copies[to as usize].get_or_insert_with(|| {
            let role = if home == Some(to) {
                Role::Home
            } else {
                Role::Replica
            };
            Arc::new(BlockCopy::new(term, role, Data(0)))
        });
        let held = copy.stamps();
        let mut result = Ok(());
        'stamps: for &stamp in stamps.iter().filter(|s| !held.contains(s)) {
            let mut failures = Vec::new();
            for &src in sources {
                let fetched = if self.crashed[src as usize] {
                    Err(Fail::Network)
                } else {
                    self.copies[src as usize]
                        .as_ref()
                        .and_then(|c| c.snapshot(stamp).copied())
                        .ok_or(Fail::NotFound)
                };
                match fetched {
                    Ok(data) => {
                        let copy = self.copies[to as usize].as_mut().expect("hosted");
                        if let Err(e) = Arc::make_mut(copy).restore(stamp, data) {
                            result = Err(fail(&e));
                            break 'stamps;
                        }
                        failures.clear();
                        break;
                    }
                    Err(f) => failures.push(f),
                }
            }
            // `Provider::restore`: a stamp no source holds any more was pruned: skipped.
            if let Some(&f) = failures.iter().find(|f| **f != Fail::NotFound) {
                result = Err(f);
                break;
            }
        }
        let copy = self.copies[to as usize].as_ref().expect("hosted");
        self.send(Msg::Restored {
            from: to,
            inc: self.incarnations[to as usize],
            result: result.map(|()| copy.stamps()),
        });
    }

    fn deliver(&mut self, m: Msg) {
        match m {
            Msg::Write {
                to,
                client,
                tag,
                term,
                epoch,
                base,
                value,
            } => {
                if !self.alive(to) {
                    return;
                }
                let result = match &mut self.copies[to as usize] {
                    None => Err(Fail::NotFound),
                    Some(c) => {
                        let c = Arc::make_mut(c);
                        c.working(term, epoch, base, false)
                            .and_then(|w| c.set_working(epoch, w.with_half(client, value)))
                            .map_err(|e| fail(&e))
                    }
                };
                self.send(Msg::WriteAck {
                    client,
                    tag,
                    result,
                });
            }
            Msg::WriteAck {
                client,
                tag,
                result,
            } => {
                let Some(w) = self.writer(client) else {
                    return;
                };
                if w.tag != tag || w.wait != Wait::Write {
                    return;
                }
                match result {
                    Ok(()) => {
                        let p = &w.placement;
                        let m = Msg::Publish {
                            to: index(p.home.as_ref().expect("written there")),
                            client,
                            tag,
                            term: p.term,
                            epoch: w.epoch,
                            version: w.version,
                            keep: keep_after(&p.stamps, w.floor),
                            targets: p.push_targets().iter().map(index).collect(),
                        };
                        w.wait = Wait::Publish;
                        self.send(m);
                    }
                    Err(f) => self.failed(client, f),
                }
            }
            Msg::Publish {
                to,
                client,
                tag,
                term,
                epoch,
                version,
                keep,
                targets,
            } => {
                if !self.alive(to) {
                    return;
                }
                let published = match &mut self.copies[to as usize] {
                    None => Err(Fail::NotFound),
                    Some(c) => Arc::make_mut(c)
                        .publish(term, epoch, version, &keep)
                        .map_err(|e| fail(&e)),
                };
                match published {
                    Err(f) => self.send(Msg::Published {
                        client,
                        tag,
                        result: Err(f),
                    }),
                    Ok(None) => self.send(Msg::Published {
                        client,
                        tag,
                        result: Ok((None, vec![(to, self.incarnations[to as usize])])),
                    }),
                    Ok(Some((stamp, data))) => {
                        for &t in &targets {
                            self.send(Msg::Install {
                                to: t,
                                home: to,
                                client,
                                tag,
                                term,
                                stamp,
                                data,
                                keep: keep.clone(),
                            });
                        }
                        self.pushing.push(Pushing {
                            home: to,
                            client,
                            tag,
                            stamp,
                            results: vec![None; targets.len()],
                            targets,
                        });
                        let last = self.pushing.len() - 1;
                        if self.pushing[last].targets.is_empty() {
                            self.finish_push(last);
                        } else {
                            self.pushing.sort();
                        }
                    }
                }
            }
            Msg::Published {
                client,
                tag,
                result,
            } => {
                let Some(w) = self.writer(client) else {
                    return;
                };
                if w.tag != tag || w.wait != Wait::Publish {
                    return;
                }
                let w = w.clone();
                match result {
                    Ok((stamp, holders)) => {
                        let touched: Vec<Touched> = stamp
                            .map(|_| Touched {
                                block: 0,
                                term: w.placement.term,
                                holders: holders
                                    .iter()
                                    .map(|&(h, inc)| node_at(h, inc).id())
                                    .collect::<Vec<NodeId>>(),
                            })
                            .into_iter()
                            .collect();
                        match Arc::make_mut(&mut self.entry).commit(
                            &owner(client),
                            w.epoch,
                            w.version,
                            &touched,
                        ) {
                            Ok(()) => self.committed(client, &w),
                            Err(e) => self.failed(client, fail(&e)),
                        }
                    }
                    Err(f) => self.failed(client, f),
                }
            }
            Msg::Install {
                to,
                home,
                client,
                tag,
                term,
                stamp,
                data,
                keep,
            } => {
                if !self.alive(to) {
                    return;
                }
                let result = match &mut self.copies[to as usize] {
                    None => Err(Fail::NotFound),
                    Some(c) => Arc::make_mut(c)
                        .install(term, stamp, data, &keep)
                        .map_err(|e| fail(&e)),
                };
                self.send(Msg::InstallAck {
                    home,
                    from: to,
                    inc: self.incarnations[to as usize],
                    client,
                    tag,
                    result,
                });
            }
            Msg::InstallAck {
                home,
                from,
                inc,
                client,
                tag,
                result,
            } => {
                if self.alive(home) {
                    self.push_answered(home, from, client, tag, result.map(|()| inc));
                }
            }
            Msg::Promote { to, term } => {
                if let (true, Some(c)) = (self.alive(to), &mut self.copies[to as usize]) {
                    let _ = Arc::make_mut(c).promote(term);
                }
            }
            Msg::Fence { to, term } => {
                if let (true, Some(c)) = (self.alive(to), &mut self.copies[to as usize]) {
                    Arc::make_mut(c).fence(term);
                }
            }
            Msg::Restore {
                to,
                term,
                home,
                stamps,
                sources,
            } => {
                if self.alive(to) {
                    self.restore(to, term, home, &stamps, &sources);
                }
            }
            Msg::Restored { from, inc, result } => {
                let Some((target, target_inc)) = self.restoring else {
                    return;
                };
                if target != from {
                    return;
                }
                self.restoring = None;
                // `run_restore`: the answer counts only from the incarnation the task named;
                // another one answering at that address means the target is gone.
                let result = if inc == target_inc {
                    result
                } else {
                    Err(Fail::Network)
                };
                match result {
                    Ok(held) => {
                        if Arc::make_mut(&mut self.entry).groups.restored(
                            0,
                            &node_at(from, target_inc).id(),
                            &held,
                        ) {
                            self.restored_copy = true;
                        }
                    }
                    // `run_restore`: a target that cannot be reached is probed; one that does
                    // not answer as itself is declared unreachable.
                    Err(Fail::Network | Fail::Timeout) => self.node_gone(from, target_inc),
                    Err(_) => {}
                }
            }
        }
    }
}

impl Protocol {
    fn grant(&self, s: &State, c: u8) -> Option<(Entry, juxmem::service::coherence::Grant)> {
        let mut entry = Entry::clone(&s.entry);
        let ticket = entry.enqueue_writer(owner(c));
        match entry.try_grant(ticket) {
            Poll::Ready(g) => Some((entry, g)),
            Poll::Pending => None,
        }
    }
}

impl Model for Protocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let mut copies = vec![None; PROVIDERS];
        copies[0] = Some(Arc::new(BlockCopy::new(1, Role::Home, Data(0))));
        copies[1] = Some(Arc::new(BlockCopy::new(1, Role::Replica, Data(0))));
        vec![State {
            entry: Arc::new(initial_entry()),
            copies,
            crashed: vec![false; PROVIDERS],
            declared_dead: vec![false; PROVIDERS],
            incarnations: vec![1; PROVIDERS],
            net: Vec::new(),
            pushing: Vec::new(),
            restoring: None,
            clients: vec![
                Client {
                    phase: Phase::Idle,
                    acquired: 0,
                };
                CLIENTS
            ],
            acks: Vec::new(),
            bad_reads: Vec::new(),
            faults: Faults::default(),
            failed_over: false,
            released_after_failover: false,
            restored_copy: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let mut previous: Option<&Msg> = None;
        for m in &s.net {
            if previous == Some(m) {
                continue;
            }
            previous = Some(m);
            actions.push(Action::Deliver(m.clone()));
            if s.faults.duplicated < self.duplicated {
                actions.push(Action::Duplicate(m.clone()));
            }
            if s.faults.lost < self.lost {
                actions.push(Action::Lose(m.clone()));
            }
        }
        for c in 0..CLIENTS as u8 {
            let client = &s.clients[c as usize];
            match &client.phase {
                Phase::Idle => {
                    if client.acquired < self.acquires_per_client && self.grant(s, c).is_some() {
                        actions.push(Action::Acquire(c));
                    }
                    let p = s.placement();
                    if p.home.is_some()
                        && stamp_at(&p.stamps, s.entry.versions.committed()).is_some()
                    {
                        actions.push(Action::StartRead(c));
                    }
                }
                Phase::Writing(w) => {
                    // The call times out only once nothing can answer it any more (its
                    // request or reply was lost, or the home crashed); requests delivered late
                    // come from duplication.
                    let tag = w.tag;
                    let mine = |client: u8, t: u8| client == c && t == tag;
                    let answerable = s.pushing.iter().any(|p| mine(p.client, p.tag))
                        || s.in_flight(|m| match m {
                            Msg::Write { client, tag, .. }
                            | Msg::WriteAck { client, tag, .. }
                            | Msg::Publish { client, tag, .. }
                            | Msg::Published { client, tag, .. } => mine(*client, *tag),
                            _ => false,
                        });
                    if !answerable {
                        actions.push(Action::ClientTimeout(c));
                    }
                }
                Phase::Reading { copies, .. } => {
                    for &p in copies {
                        actions.push(Action::ReadFrom(c, p));
                    }
                }
            }
            if s.faults.expiries < self.expiries && s.entry.writer() == Some(&owner(c)) {
                actions.push(Action::LeaseExpiry(c));
            }
        }
        let missing = !s.entry.groups.missing().is_empty();
        let holders = s.entry.groups.holders(0);
        for p in 0..PROVIDERS as u8 {
            let i = p as usize;
            let holds = s.entry.groups.holds(&s.node(p));
            if !s.crashed[i] && s.faults.crashes < self.crashes && (holds || s.copies[i].is_some())
            {
                actions.push(Action::Crash(p));
            }
            if s.crashed[i] && holds {
                actions.push(Action::DetectCrash(p));
            }
            if !s.crashed[i] && holds && s.faults.suspicions < self.suspicions {
                actions.push(Action::FalseSuspicion(p));
            }
            if !s.crashed[i] && s.declared_dead[i] {
                actions.push(Action::Rejoin(p));
            }
            if missing && !s.crashed[i] && !s.declared_dead[i] && !holders.contains(&s.node(p).name)
            {
                actions.push(Action::AddCopy(p));
            }
        }
        match s.restoring {
            None if !s.entry.groups.restore_tasks().is_empty() => {
                actions.push(Action::StartRestore)
            }
            Some(t) => {
                let answered_or_pending = s.in_flight(|m| {
                    matches!(m, Msg::Restore { to, .. } if *to == t.0)
                        || matches!(m, Msg::Restored { from, .. } if *from == t.0)
                });
                if !answered_or_pending {
                    actions.push(Action::RestoreTimeout);
                }
            }
            None => {}
        }
        // A push whose install or answer was lost (or whose target crashed) times out.
        for p in &s.pushing {
            for (&t, r) in p.targets.iter().zip(&p.results) {
                if r.is_some() {
                    continue;
                }
                let pending = s.in_flight(|m| match m {
                    Msg::Install {
                        to,
                        home,
                        client,
                        tag,
                        ..
                    } => (*to, *home, *client, *tag) == (t, p.home, p.client, p.tag),
                    Msg::InstallAck {
                        home,
                        from,
                        client,
                        tag,
                        ..
                    } => (*from, *home, *client, *tag) == (t, p.home, p.client, p.tag),
                    _ => false,
                });
                if !pending {
                    let a = Action::PushTimeout {
                        home: p.home,
                        client: p.client,
                        tag: p.tag,
                        to: t,
                    };
                    if !actions.contains(&a) {
                        actions.push(a);
                    }
                }
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Deliver(m) => {
                s.take(&m);
                s.deliver(m);
            }
            Action::Duplicate(m) => {
                s.faults.duplicated += 1;
                s.deliver(m);
            }
            Action::Lose(m) => {
                s.faults.lost += 1;
                s.take(&m);
            }
            Action::Acquire(c) => {
                let (entry, g) = self.grant(&s, c)?;
                s.entry = Arc::new(entry);
                s.clients[c as usize].acquired += 1;
                s.clients[c as usize].phase = Phase::Writing(Writer {
                    epoch: g.epoch,
                    version: g.base + 1,
                    floor: g.floor,
                    tag: 0,
                    redos_left: self.redos,
                    placement: Arc::new(s.placement()),
                    wait: Wait::Write,
                });
                s.send_write(c);
            }
            Action::ClientTimeout(c) => s.failed(c, Fail::Timeout),
            Action::StartRead(c) => {
                // The manager's answer, without its bookkeeping of what was read (it only
                // counts unread versions dropped; keeping it would multiply the states).
                let Ok(Poll::Ready((version, _))) =
                    Entry::clone(&s.entry).try_read(&owner(c), VersionReq::Latest, false, None)
                else {
                    return None;
                };
                let p = s.placement();
                let stamp = stamp_at(&p.stamps, version)?;
                s.clients[c as usize].phase = Phase::Reading {
                    version,
                    stamp,
                    copies: p.copies().map(index).collect(),
                };
            }
            Action::ReadFrom(c, p) => {
                let Phase::Reading { version, stamp, .. } = s.clients[c as usize].phase.clone()
                else {
                    return None;
                };
                let got = match (&s.copies[p as usize], s.crashed[p as usize]) {
                    (Some(copy), false) => copy.snapshot(stamp).copied(),
                    _ => None,
                };
                if let Some(Data(got)) = got {
                    let want = s.acked(version).expect("a committed version");
                    if got != want {
                        s.bad_reads.push((version, got, want));
                    }
                }
                s.clients[c as usize].phase = Phase::Idle;
            }
            Action::Crash(p) => {
                s.faults.crashes += 1;
                s.crashed[p as usize] = true;
                s.copies[p as usize] = None;
                s.pushing.retain(|x| x.home != p);
            }
            Action::DetectCrash(p) => s.node_gone(p, s.incarnations[p as usize]),
            Action::FalseSuspicion(p) => {
                s.faults.suspicions += 1;
                s.node_gone(p, s.incarnations[p as usize]);
            }
            Action::Rejoin(p) => {
                // A daemon declared dead starts again as a new member: new incarnation, empty.
                s.declared_dead[p as usize] = false;
                s.incarnations[p as usize] += 1;
                s.copies[p as usize] = None;
                s.pushing.retain(|x| x.home != p);
            }
            Action::LeaseExpiry(c) => {
                s.faults.expiries += 1;
                Arc::make_mut(&mut s.entry).owner_gone(&owner(c));
            }
            Action::AddCopy(p) => {
                let n = s.node(p);
                Arc::make_mut(&mut s.entry).groups.add_copy(0, n)
            }
            Action::StartRestore => {
                let task = s.entry.groups.restore_tasks().into_iter().next()?;
                let p = s.placement();
                let to = index(&task.target);
                s.restoring = Some((to, task.target.incarnation));
                s.send(Msg::Restore {
                    to,
                    term: p.term,
                    home: p.home.as_ref().map(index),
                    stamps: task.stamps,
                    sources: task.sources.iter().map(index).collect(),
                });
            }
            Action::RestoreTimeout => {
                let (t, inc) = s.restoring.take()?;
                s.node_gone(t, inc);
            }
            Action::PushTimeout {
                home,
                client,
                tag,
                to,
            } => s.push_answered(home, to, client, tag, Err(Fail::Timeout)),
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("one home per term", |_, s: &State| {
                let homes: Vec<u64> = (0..PROVIDERS)
                    .filter(|&p| !s.crashed[p])
                    .filter_map(|p| s.copies[p].as_ref())
                    .filter(|c| c.role() == Role::Home)
                    .map(|c| c.term())
                    .collect();
                homes
                    .iter()
                    .enumerate()
                    .all(|(i, t)| !homes[i + 1..].contains(t))
            }),
            Property::always("versions grow, each acknowledged once", |_, s: &State| {
                s.acks.windows(2).all(|w| w[0].0 < w[1].0)
                    && s.acks.last().map_or(0, |a| a.0) == s.entry.versions.committed()
            }),
            Property::always("an acknowledged release stays readable", |_, s: &State| {
                let p = s.placement();
                if p.home.is_none() {
                    return true; // reported lost
                }
                let version = s.entry.versions.committed();
                let (Some(stamp), Some(want)) = (stamp_at(&p.stamps, version), s.acked(version))
                else {
                    return false;
                };
                // A listed copy whose process is gone (crashed, or started again as another
                // incarnation) is waiting for detection; every live one holds the release.
                let holds = |n: &NodeInfo| {
                    let i = index(n);
                    s.crashed[i as usize]
                        || s.incarnations[i as usize] != n.incarnation
                        || s.copies[i as usize]
                            .as_ref()
                            .and_then(|c| c.snapshot(stamp))
                            == Some(&Data(want))
                };
                let all = p.copies().all(holds);
                all
            }),
            Property::always("no aborted data is visible", |_, s: &State| {
                s.bad_reads.is_empty()
            }),
            Property::sometimes("a release acknowledged after a failover", |_, s: &State| {
                s.released_after_failover
            }),
            Property::sometimes("a restored copy became current", |_, s: &State| {
                s.restored_copy
            }),
        ]
    }
}

/// A compact account of a state, for counterexamples.
fn summary(s: &State) -> String {
    let mut out = String::new();
    let p = s.placement();
    out +=
        &format!(
        "  manager: committed v{} (floor {}), writer {:?}, term {}, home {:?}, current replicas \
         {:?}, restoring {:?}, stamps {:?}\n",
        s.entry.versions.committed(),
        s.entry.versions.floor(),
        s.entry.writer().map(|o| o.0.clone()),
        p.term,
        p.home.as_ref().map(|n| n.name.clone()),
        p.replicas.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        p.restoring.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        p.stamps,
    );
    for (i, c) in s.copies.iter().enumerate() {
        let state = if s.crashed[i] {
            "crashed".to_string()
        } else {
            match c {
                None => "holds nothing".to_string(),
                Some(c) => format!(
                    "{:?} at term {}, stamps {:?}",
                    c.role(),
                    c.term(),
                    c.stamps()
                        .into_iter()
                        .map(|st| (st, c.snapshot(st).map(|d| format!("{:#x}", d.0))))
                        .collect::<Vec<_>>()
                ),
            }
        };
        out += &format!(
            "  p{i}: {state}{}\n",
            if s.declared_dead[i] {
                " (declared dead)"
            } else {
                ""
            }
        );
    }
    out += &format!(
        "  acks {:?}, bad reads {:?}\n",
        s.acks
            .iter()
            .map(|(v, x)| format!("v{v}={x:#x}"))
            .collect::<Vec<_>>(),
        s.bad_reads
    );
    out
}

/// Runs a BFS to `depth`, prints what it explored and every discovery, and checks the
/// properties.
fn check(model: Protocol, depth: usize, threads: usize) {
    let start = Instant::now();
    let checker = model
        .checker()
        .threads(threads)
        .target_max_depth(depth)
        // Stop at the first counterexample: with one thread the BFS then reports a shortest one
        // (later discoveries would overwrite it).
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    println!(
        "model: depth target {depth}: {} states ({} unique), max depth {}, {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        start.elapsed().as_secs_f64()
    );
    for p in checker.model().properties() {
        match (checker.discovery(p.name), p.expectation) {
            (Some(path), Expectation::Always | Expectation::Eventually) => {
                println!(
                    "COUNTEREXAMPLE to \"{}\" ({} steps):\n{}last state:\n{}",
                    p.name,
                    path.clone().into_actions().len(),
                    path,
                    summary(path.last_state())
                );
            }
            (Some(path), Expectation::Sometimes) => println!(
                "example of \"{}\" in {} steps",
                p.name,
                path.into_actions().len()
            ),
            (None, Expectation::Sometimes) => println!("NO example of \"{}\"", p.name),
            (None, _) => println!("holds: \"{}\"", p.name),
        }
    }
    checker.assert_properties();
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Replays a path, each step given as the start of an enabled action's `Debug` form.
fn replay(model: &Protocol, steps: &[&str]) -> State {
    let mut s = model.init_states().remove(0);
    for (i, step) in steps.iter().enumerate() {
        let mut actions = Vec::new();
        model.actions(&s, &mut actions);
        let a = actions
            .into_iter()
            .find(|a| format!("{a:?}").starts_with(step))
            .unwrap_or_else(|| panic!("step {i} {step:?} is not enabled in:\n{}", summary(&s)));
        s = model.next_state(&s, a).expect("a step");
    }
    s
}

/// The `always` properties `s` violates.
fn violated(model: &Protocol, s: &State) -> Vec<&'static str> {
    model
        .properties()
        .into_iter()
        .filter(|p| p.expectation == Expectation::Always && !(p.condition)(model, s))
        .map(|p| p.name)
        .collect()
}

/// Finding (fixed): `DataGroups::restored` matched the target by name only, so the answer of a
/// restore that ran on a copy's earlier membership (the provider was declared dead meanwhile,
/// came back empty and was added again) marked the new, empty copy current.
#[test]
fn finding_late_restore_answer() {
    let model = Protocol::default();
    let s = replay(
        &model,
        &[
            "Crash(0)",
            "DetectCrash(0)",
            "AddCopy(2)",
            "StartRestore",
            "Deliver(Restore { to: 2",
            "FalseSuspicion(2)",
            "Rejoin(2)",
            "AddCopy(2)",
            "Deliver(Restored { from: 2",
        ],
    );
    assert_eq!(
        violated(&model, &s),
        Vec::<&str>::new(),
        "\n{}",
        summary(&s)
    );
}

/// Finding (fixed): the holders a release reported were names, so a replica that acknowledged
/// the push, was then declared dead, came back empty and was restored (to the versions
/// committed before this release) counted as holding the release: it stayed current without it.
#[test]
fn finding_holder_of_a_former_membership() {
    let model = Protocol::default();
    let s = replay(
        &model,
        &[
            "Acquire(0)",
            "Deliver(Write { to: 0, client: 0",
            "Deliver(WriteAck { client: 0",
            "Deliver(Publish { to: 0, client: 0",
            "Deliver(Install { to: 1, home: 0, client: 0",
            "Deliver(InstallAck { home: 0, from: 1, inc: 1, client: 0",
            "FalseSuspicion(1)",
            "Rejoin(1)",
            "AddCopy(1)",
            "StartRestore",
            "Deliver(Restore { to: 1",
            "Deliver(Restored { from: 1",
            "Deliver(Published { client: 0",
        ],
    );
    assert_eq!(
        violated(&model, &s),
        Vec::<&str>::new(),
        "\n{}",
        summary(&s)
    );
}

/// Finding (fixed): `BlockCopy::install` did not refuse an older write epoch (only an older
/// epoch at the same version), and its `keep` then pruned every newer stamp: a push of an
/// expired writer's epoch, delivered late, left a current replica without the latest release.
#[test]
fn finding_late_install_of_an_expired_epoch() {
    let model = Protocol {
        acquires_per_client: 3,
        ..Protocol::default()
    };
    let release = |c: &str| {
        [
            format!("Acquire({c})"),
            format!("Deliver(Write {{ to: 0, client: {c}"),
            format!("Deliver(WriteAck {{ client: {c}"),
            format!("Deliver(Publish {{ to: 0, client: {c}"),
            format!("Deliver(Install {{ to: 1, home: 0, client: {c}"),
            format!("Deliver(InstallAck {{ home: 0, from: 1, inc: 1, client: {c}"),
            format!("Deliver(Published {{ client: {c}"),
        ]
    };
    // Client 0 publishes v1 at p0, whose push to p1 is slow; its lease runs out.
    let mut steps: Vec<String> = release("0")[..4].to_vec();
    steps.push("LeaseExpiry(0)".into());
    // Client 1 releases v1, v2, v3 (retention 2: p1 keeps v2 and v3 only).
    for _ in 0..3 {
        steps.extend(release("1"));
    }
    // The push of client 0's expired epoch reaches p1 at last.
    steps.push("Deliver(Install { to: 1, home: 0, client: 0".into());
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let s = replay(&model, &steps);
    assert_eq!(
        violated(&model, &s),
        Vec::<&str>::new(),
        "\n{}",
        summary(&s)
    );
}

#[test]
fn protocol_model_bounded() {
    check(Protocol::default(), 13, 1);
}

/// The deeper run of `ci/model-check`: `JUXMEM_MODEL_DEPTH` (default 14),
/// `JUXMEM_MODEL_THREADS` (default 1; more threads explore faster but counterexamples are
/// then not necessarily the shortest).
#[test]
#[ignore = "long: run by ci/model-check"]
fn protocol_model_deep() {
    check(
        Protocol::default(),
        env_usize("JUXMEM_MODEL_DEPTH", 14),
        env_usize("JUXMEM_MODEL_THREADS", 1),
    );
}
