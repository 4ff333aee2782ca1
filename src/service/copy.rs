//! One provider's copy of one data block: the data plane's fencing rules as a deterministic
//! state machine with no I/O, generic over what the data is (the store holds bytes, the model
//! check a number).
//!
//! - Committed states are addressed by [`Stamp`] (version, write epoch), exactly: a leftover of
//!   an aborted epoch is never read in place of committed data, even at the same version number.
//! - Terms fence homes: writes and publishes need the copy to be home at the writer's term;
//!   installs of an older term are refused, and a newer term makes an old home step down. So
//!   a home that was only paused finds its writes refused once a replica was promoted.
//! - Epochs fence writers: the newest epoch seen wins; a write, publish or install of an older
//!   epoch is refused, so a writer whose lease expired cannot overwrite its successor's work.
//! - Only the home pushes: an install is admitted only from the block's home at the install's
//!   term, which is the copy's term or a newer one its manager confirms ([`admit_install`],
//!   [`judge_pusher`]).
//! - A restart loses working copies: a copy read back from a provider's data directory refuses
//!   the epoch that was writing when its process stopped (its earlier writes are gone), so that
//!   epoch can only abort, never publish part of what it wrote.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::service::protocol::{NodeId, NodeInfo, Stamp};

/// What a copy holds: an immutable snapshot type, and the working copy a write epoch edits.
pub trait Payload: Clone {
    /// The working copy of a write epoch.
    type Work: Clone;
    /// A working copy starting from this snapshot (copy on write); fails if the memory
    /// cannot be had.
    fn thaw(&self) -> Result<Self::Work>;
    /// A working copy of this snapshot's size that the writer overwrites whole: zeroes,
    /// without reading (or copying) this one.
    fn blank(&self) -> Result<Self::Work>;
    /// The working copy becomes a snapshot.
    fn freeze(work: Self::Work) -> Result<Self>;
}

/// Whether this copy is the block's home.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Orders writes and publishes.
    Home,
    /// Receives published stamps.
    Replica,
}

/// One copy of one block.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockCopy<P: Payload> {
    term: u64,
    role: Role,
    newest_epoch: u64,
    /// version -> (epoch, data)
    snapshots: BTreeMap<u64, (u64, P)>,
    working: Option<(u64, P::Work)>,
    /// The newest epoch whose working copy a restart lost (refused from then on).
    lost_epoch: Option<u64>,
}

/// A copy's term, role and epochs without its data: what a provider's data directory keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyState {
    /// The placement term.
    pub term: u64,
    /// Home (else replica).
    pub home: bool,
    /// The newest write epoch seen.
    pub newest_epoch: u64,
    /// The newest epoch that would lose its working copy if the process stopped now (the one
    /// writing, or one lost before).
    pub lost_epoch: Option<u64>,
}

fn fenced(what: String) -> Error {
    Error::Fenced(what)
}

impl<P: Payload> BlockCopy<P> {
    /// A copy holding the initial state (stamp v0/e0) at `term`.
    pub fn new(term: u64, role: Role, initial: P) -> Self {
        BlockCopy {
            term,
            role,
            newest_epoch: 0,
            snapshots: BTreeMap::from([(0, (0, initial))]),
            working: None,
            lost_epoch: None,
        }
    }

    /// What to keep of this copy besides its snapshots.
    pub fn state(&self) -> CopyState {
        CopyState {
            term: self.term,
            home: self.role == Role::Home,
            newest_epoch: self.newest_epoch,
            lost_epoch: self.working.as_ref().map(|(e, _)| *e).max(self.lost_epoch),
        }
    }

    /// A copy as it was kept (`state` and its snapshots), after its process restarted: any
    /// working copy is gone, and its epoch refused.
    pub fn reopen(state: &CopyState, snapshots: Vec<(Stamp, P)>) -> Self {
        BlockCopy {
            term: state.term,
            role: if state.home {
                Role::Home
            } else {
                Role::Replica
            },
            newest_epoch: state.newest_epoch,
            snapshots: snapshots
                .into_iter()
                .map(|(s, p)| (s.version, (s.epoch, p)))
                .collect(),
            working: None,
            lost_epoch: state.lost_epoch,
        }
    }

    /// The placement term this copy knows.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Home or replica.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Stamps held, ascending.
    pub fn stamps(&self) -> Vec<Stamp> {
        self.snapshots
            .iter()
            .map(|(&version, &(epoch, _))| Stamp { version, epoch })
            .collect()
    }

    /// Snapshots plus the working copy, if any (each as large as the block), for accounting.
    pub fn copies_held(&self) -> u64 {
        self.snapshots.len() as u64 + u64::from(self.working.is_some())
    }

    /// Replaces the working copy of `epoch` (for payloads that are values, not handles).
    pub fn set_working(&mut self, epoch: u64, work: P::Work) -> Result<()> {
        match &mut self.working {
            Some((e, w)) if *e == epoch => {
                *w = work;
                Ok(())
            }
            _ => Err(fenced(format!("no working copy of write epoch {epoch}"))),
        }
    }

    /// The snapshot of exactly `stamp`.
    pub fn snapshot(&self, stamp: Stamp) -> Option<&P> {
        match self.snapshots.get(&stamp.version) {
            Some((e, p)) if *e == stamp.epoch => Some(p),
            _ => None,
        }
    }

    fn check_home(&self, term: u64, what: &str) -> Result<()> {
        if self.role != Role::Home || term != self.term {
            return Err(fenced(format!(
                "{what} at term {term}, but this copy is {} at term {}",
                match self.role {
                    Role::Home => "the home",
                    Role::Replica => "a replica",
                },
                self.term
            )));
        }
        Ok(())
    }

    /// A superseded epoch is final (its lock is gone: a new placement cannot help), hence
    /// `NotAcquired` rather than `Fenced`.
    fn check_epoch(&self, epoch: u64, what: &str) -> Result<()> {
        if self.lost_epoch.is_some_and(|l| epoch <= l) {
            return Err(Error::NotAcquired(format!(
                "{what} of write epoch {epoch}: its working copy was lost when this provider \
                 restarted; the epoch cannot publish (acquire the lock again and rewrite)"
            )));
        }
        if epoch < self.newest_epoch {
            return Err(Error::NotAcquired(format!(
                "{what} of write epoch {epoch}, superseded by epoch {}: its lock was lost (the \
                 holder's lease ran out)",
                self.newest_epoch
            )));
        }
        Ok(())
    }

    /// The working copy of write epoch `epoch`, created from exactly `base` on first use (or
    /// blank, of `base`'s size, when the writer said it `overwrites` the whole block).
    pub fn working(
        &mut self,
        term: u64,
        epoch: u64,
        base: Stamp,
        overwrites: bool,
    ) -> Result<P::Work> {
        self.check_home(term, "write")?;
        self.check_epoch(epoch, "write")?;
        if let Some((e, w)) = &self.working {
            if *e == epoch {
                return Ok(w.clone());
            }
        }
        // An epoch that already published here (a release being retried) goes on from what it
        // published, not from the base: writing again must not undo its earlier writes.
        let published = self
            .snapshots
            .values()
            .find(|(e, _)| *e == epoch)
            .map(|(_, p)| p);
        let from = published.or_else(|| self.snapshot(base)).ok_or_else(|| {
            Error::NotFound(format!(
                "the home does not hold {base}, the state write epoch {epoch} starts from"
            ))
        })?;
        let w = if overwrites && published.is_none() {
            from.blank()?
        } else {
            from.thaw()?
        };
        self.working = Some((epoch, w.clone()));
        self.newest_epoch = epoch;
        Ok(w)
    }

    /// Drops the working copy of `epoch`, if it is the one (it could not be written down).
    pub fn drop_working(&mut self, epoch: u64) {
        if matches!(&self.working, Some((e, _)) if *e == epoch) {
            self.working = None;
        }
    }

    /// The working copy of `epoch`, if this epoch wrote here.
    pub fn working_of(&self, epoch: u64) -> Option<P::Work> {
        match &self.working {
            Some((e, w)) if *e == epoch => Some(w.clone()),
            _ => None,
        }
    }

    /// Turns the working copy of `epoch` into the snapshot of `version` and drops every
    /// snapshot not in `keep`. Idempotent: publishing again returns the same snapshot. `None`
    /// when the epoch wrote nothing here.
    pub fn publish(
        &mut self,
        term: u64,
        epoch: u64,
        version: u64,
        keep: &[Stamp],
    ) -> Result<Option<(Stamp, P)>> {
        self.check_home(term, "publish")?;
        self.check_epoch(epoch, "publish")?;
        let stamp = Stamp { version, epoch };
        match self.working.take() {
            Some((e, w)) if e == epoch => {
                let snap = P::freeze(w)?;
                self.insert(stamp, snap.clone(), keep)?;
                Ok(Some((stamp, snap)))
            }
            other => {
                self.working = other;
                Ok(self.snapshot(stamp).cloned().map(|p| (stamp, p)))
            }
        }
    }

    /// Stores a stamp pushed by the home and drops every snapshot not in `keep` (an empty
    /// `keep` drops nothing). A push of an older term (a deposed home) or of an epoch older
    /// than one already seen here (a writer whose lock was lost: a late or duplicated push)
    /// is refused: it could otherwise prune committed stamps in favour of aborted data.
    pub fn install(&mut self, term: u64, stamp: Stamp, data: P, keep: &[Stamp]) -> Result<()> {
        if term < self.term {
            return Err(fenced(format!(
                "install of {stamp} from a home of term {term}; the placement is at term {}",
                self.term
            )));
        }
        self.check_epoch(stamp.epoch, "install")?;
        self.fence(term);
        self.insert(stamp, data, keep)
    }

    /// Stores a committed stamp fetched from another copy while restoring. Older stamps are
    /// welcome here (a restore fills in what retained versions need) and nothing is pruned
    /// (newer stamps pushed meanwhile stay).
    pub fn restore(&mut self, stamp: Stamp, data: P) -> Result<()> {
        self.insert(stamp, data, &[])
    }

    /// The placement moved to `term`: anything older is refused from now on, and a home of an
    /// older term steps down (its epoch in progress is dropped).
    pub fn fence(&mut self, term: u64) {
        if term > self.term {
            self.term = term;
            if self.role == Role::Home {
                self.role = Role::Replica;
                self.working = None;
            }
        }
    }

    /// Becomes the home at `term`.
    pub fn promote(&mut self, term: u64) -> Result<()> {
        if term < self.term {
            return Err(fenced(format!(
                "promotion at term {term}; this copy is at term {}",
                self.term
            )));
        }
        self.term = term;
        self.role = Role::Home;
        Ok(())
    }

    fn insert(&mut self, stamp: Stamp, data: P, keep: &[Stamp]) -> Result<()> {
        if let Some((e, _)) = self.snapshots.get(&stamp.version) {
            if *e > stamp.epoch {
                return Err(Error::NotAcquired(format!(
                    "{stamp} is superseded by epoch {e} at the same version: its lock was lost"
                )));
            }
        }
        // An older epoch that wrote this version or a later one never committed (a committed
        // one would have made this epoch start later): its leftovers go.
        self.snapshots
            .retain(|&v, (e, _)| v < stamp.version || *e > stamp.epoch);
        self.snapshots.insert(stamp.version, (stamp.epoch, data));
        self.newest_epoch = self.newest_epoch.max(stamp.epoch);
        if matches!(&self.working, Some((e, _)) if *e < stamp.epoch) {
            self.working = None;
        }
        if !keep.is_empty() {
            self.snapshots.retain(|&version, (epoch, _)| {
                let s = Stamp {
                    version,
                    epoch: *epoch,
                };
                s == stamp || keep.contains(&s)
            });
        }
        Ok(())
    }
}

/// Who pushes an install, as its connection says: its claimed name and incarnation, and the
/// cluster and role of its credential.
#[derive(Clone, Copy, Debug)]
pub struct Pusher<'a> {
    /// Its name and incarnation (claimed in its hello).
    pub id: &'a NodeId,
    /// Its credential's cluster.
    pub cluster: &'a str,
    /// Whether its credential is a provider's (homes are providers, never managers).
    pub provider: bool,
}

impl Pusher<'_> {
    /// Whether it is `home`.
    pub fn is(&self, home: &NodeInfo) -> bool {
        self.provider && home.cluster == self.cluster && home.is(self.id)
    }
}

/// Whether a copy takes an install from a pusher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes (or the copy's fencing rules decide: an older term is refused as `Fenced`).
    Admit,
    /// The copy does not know the home at the install's term: ask the block's manager, then
    /// [`judge_pusher`].
    AskManager,
    /// No, because of this.
    Refuse(String),
}

/// Whether a copy at `term` as `role`, knowing `known` (the home at some term, as its manager
/// said), takes an install at `install_term` from `pusher`: only from the home at the copy's
/// term; a newer term must be confirmed by the manager (a forged newer term would otherwise
/// fence the copy forward, and the real home's pushes would be refused).
pub fn admit_install(
    term: u64,
    role: Role,
    known: Option<&(u64, NodeInfo)>,
    install_term: u64,
    pusher: &Pusher<'_>,
) -> Admission {
    if install_term < term {
        return Admission::Admit; // refused as `Fenced` by `install`, changing nothing
    }
    if !pusher.provider {
        return Admission::Refuse("stamps are pushed by the block's home, a provider".into());
    }
    if install_term == term && role == Role::Home {
        return Admission::Refuse(format!("this copy is the home at term {term}"));
    }
    match known {
        Some((t, home)) if *t == install_term => {
            if pusher.is(home) {
                Admission::Admit
            } else {
                Admission::Refuse(format!(
                    "the home at term {install_term} is {} of cluster {}",
                    home.name, home.cluster
                ))
            }
        }
        _ => Admission::AskManager,
    }
}

/// Judges an install at `install_term` from `pusher` against the block's placement as its
/// manager gives it (`term`, `home`): `Fenced` from a home of an older term (it was replaced),
/// `Refused` from anyone but the home at the placement's term.
pub fn judge_pusher(
    term: u64,
    home: Option<&NodeInfo>,
    install_term: u64,
    pusher: &Pusher<'_>,
) -> Result<()> {
    if install_term < term {
        return Err(fenced(format!(
            "install from a home of term {install_term}; the placement is at term {term}"
        )));
    }
    if install_term > term {
        return Err(Error::Refused(format!(
            "it claims term {install_term}; the block's manager says the placement is at term \
             {term}"
        )));
    }
    match home {
        Some(h) if pusher.is(h) => Ok(()),
        Some(h) => Err(Error::Refused(format!(
            "the home at term {term} is {} of cluster {}",
            h.name, h.cluster
        ))),
        None => Err(Error::Refused(format!(
            "the block has no home at term {term}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Payload for u64 {
        type Work = u64;
        fn thaw(&self) -> Result<u64> {
            Ok(*self)
        }
        fn blank(&self) -> Result<u64> {
            Ok(0)
        }
        fn freeze(w: u64) -> Result<u64> {
            Ok(w)
        }
    }

    fn st(version: u64, epoch: u64) -> Stamp {
        Stamp { version, epoch }
    }

    fn home() -> BlockCopy<u64> {
        BlockCopy::new(1, Role::Home, 0)
    }

    #[test]
    fn an_aborted_epochs_leftover_is_never_read_as_committed() {
        let mut c = home();
        c.working(1, 1, st(0, 0), false).unwrap();
        c.set_working(1, 11).unwrap();
        c.publish(1, 1, 1, &[]).unwrap().unwrap(); // epoch 1 published v1 but never committed
                                                   // Epoch 2 commits v1 elsewhere without touching this block: v1/e2 is not here, and a
                                                   // reader asking for the committed state (still v0/e0 for this block) gets zeros.
        assert_eq!(c.snapshot(st(1, 2)), None);
        assert_eq!(c.snapshot(st(0, 0)), Some(&0));
        // Epoch 3 writes this block from v0/e0 (the committed state), not from the leftover.
        assert_eq!(c.working(1, 3, st(0, 0), false).unwrap(), 0);
        c.set_working(3, 33).unwrap();
        let (s, v) = c.publish(1, 3, 2, &[st(0, 0)]).unwrap().unwrap();
        assert_eq!((s, v), (st(2, 3), 33));
        assert_eq!(
            c.stamps(),
            vec![st(0, 0), st(2, 3)],
            "the leftover is dropped"
        );
    }

    #[test]
    fn a_superseded_epoch_cannot_write_or_publish() {
        let mut c = home();
        c.working(1, 5, st(0, 0), false).unwrap();
        c.working(1, 6, st(0, 0), false).unwrap(); // epoch 5 lost its lock; 6 started
        let e = c.working(1, 5, st(0, 0), false).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::NotAcquired);
        assert!(c.publish(1, 5, 1, &[]).is_err());
        let mut r: BlockCopy<u64> = BlockCopy::new(1, Role::Replica, 0);
        r.install(1, st(1, 6), 66, &[]).unwrap();
        assert!(r.install(1, st(1, 5), 55, &[]).is_err(), "stale install");
        assert_eq!(r.snapshot(st(1, 6)), Some(&66));
    }

    #[test]
    fn terms_fence_a_paused_old_home() {
        let mut old = home();
        let mut replica: BlockCopy<u64> = BlockCopy::new(1, Role::Replica, 0);
        // The manager promotes the replica at term 2 while the old home is paused.
        replica.promote(2).unwrap();
        // The old home comes back and a stale client writes through it: its push is refused.
        old.working(1, 1, st(0, 0), false).unwrap();
        old.set_working(1, 9).unwrap();
        let (s, v) = old.publish(1, 1, 1, &[]).unwrap().unwrap();
        let e = replica.install(1, s, v, &[]).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Fenced);
        // Once fenced, the old home refuses writes at its old term.
        old.fence(2);
        assert_eq!(old.role(), Role::Replica);
        assert!(old.working(1, 2, st(0, 0), false).is_err());
        assert!(
            old.working(2, 2, st(0, 0), false).is_err(),
            "a replica is not home"
        );
    }

    #[test]
    fn restores_fill_in_older_stamps_without_dropping_newer_ones() {
        let mut c: BlockCopy<u64> = BlockCopy::new(3, Role::Replica, 0);
        c.install(3, st(5, 5), 50, &[st(0, 0)]).unwrap(); // pushed by the home while restoring
        c.restore(st(3, 3), 30).unwrap(); // fetched from another copy
        assert_eq!(c.stamps(), vec![st(0, 0), st(3, 3), st(5, 5)]);
        c.install(3, st(6, 7), 60, &[st(5, 5)]).unwrap();
        assert_eq!(c.stamps(), vec![st(5, 5), st(6, 7)]);
        assert!(c.install(3, st(6, 7), 60, &[]).is_ok(), "idempotent");
    }

    #[test]
    fn a_late_push_of_a_lost_epoch_is_refused_even_after_pruning() {
        // The model check's counterexample: epoch 1's push to this replica is slow; epoch 1
        // loses its lock; epochs 3 and 4 commit v1.. and prune; epoch 1's push arrives.
        let mut r: BlockCopy<u64> = BlockCopy::new(1, Role::Replica, 0);
        r.install(1, st(1, 2), 12, &[st(0, 0)]).unwrap();
        r.install(1, st(2, 3), 23, &[st(1, 2)]).unwrap();
        r.install(1, st(3, 4), 34, &[st(2, 3)]).unwrap();
        assert_eq!(r.stamps(), vec![st(2, 3), st(3, 4)]);
        let e = r.install(1, st(1, 1), 11, &[st(0, 0)]).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::NotAcquired);
        assert_eq!(r.stamps(), vec![st(2, 3), st(3, 4)], "nothing pruned");
    }

    #[test]
    fn a_retried_epoch_writes_on_top_of_what_it_published() {
        let mut c = home();
        let w = c.working(1, 1, st(0, 0), false).unwrap();
        c.set_working(1, w + 5).unwrap();
        c.publish(1, 1, 1, &[st(0, 0)]).unwrap().unwrap();
        // The commit failed; the release is retried: a put is written again.
        let w = c.working(1, 1, st(0, 0), false).unwrap();
        assert_eq!(
            w, 5,
            "starts from the epoch's own publication, not from the base"
        );
        c.set_working(1, w + 2).unwrap();
        assert_eq!(
            c.publish(1, 1, 1, &[st(0, 0)]).unwrap(),
            Some((st(1, 1), 7))
        );
    }

    fn info(name: &str, cluster: &str, incarnation: u64) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            cluster: cluster.into(),
            addr: "127.0.0.1:1".into(),
            kind: crate::service::protocol::NodeKind::Daemon,
            incarnation,
        }
    }

    #[test]
    fn only_the_home_at_the_copys_term_pushes() {
        let home = info("A/provider-0", "A", 7);
        let known = (3, home.clone());
        let id = home.id();
        let real = Pusher {
            id: &id,
            cluster: "A",
            provider: true,
        };
        let admit = |term, role, install_term, p: &Pusher<'_>| {
            admit_install(term, role, Some(&known), install_term, p)
        };
        assert_eq!(admit(3, Role::Replica, 3, &real), Admission::Admit);
        // An older term: the copy's fencing refuses it.
        assert_eq!(admit(4, Role::Replica, 3, &real), Admission::Admit);
        // Another provider, another incarnation, another cluster's credential, a manager.
        let other = NodeId {
            name: "A/provider-1".into(),
            incarnation: 7,
        };
        let old = NodeId {
            name: "A/provider-0".into(),
            incarnation: 6,
        };
        for p in [
            Pusher { id: &other, ..real },
            Pusher { id: &old, ..real },
            Pusher {
                cluster: "B",
                ..real
            },
            Pusher {
                provider: false,
                ..real
            },
        ] {
            assert!(
                matches!(admit(3, Role::Replica, 3, &p), Admission::Refuse(_)),
                "{p:?}"
            );
        }
        // A home takes no install at its own term; a newer term is for the manager to confirm.
        assert!(matches!(
            admit(3, Role::Home, 3, &real),
            Admission::Refuse(_)
        ));
        assert_eq!(admit(3, Role::Replica, 9, &real), Admission::AskManager);
        assert_eq!(
            admit_install(3, Role::Replica, None, 3, &real),
            Admission::AskManager
        );
        // The manager's word: the home at its term, else fenced (older) or refused.
        assert!(judge_pusher(3, Some(&home), 3, &real).is_ok());
        let e = judge_pusher(4, Some(&home), 3, &real).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Fenced);
        let e = judge_pusher(3, Some(&home), 9, &real).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Refused);
        let other_home = info("A/provider-1", "A", 7);
        let e = judge_pusher(3, Some(&other_home), 3, &real).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Refused);
    }

    #[test]
    fn publishing_twice_is_idempotent() {
        let mut c = home();
        c.working(1, 1, st(0, 0), false).unwrap();
        c.set_working(1, 4).unwrap();
        let a = c.publish(1, 1, 1, &[st(0, 0)]).unwrap();
        let b = c.publish(1, 1, 1, &[st(0, 0)]).unwrap();
        assert_eq!(a, b);
        assert_eq!(c.publish(1, 2, 2, &[]).unwrap(), None, "nothing written");
    }
}
