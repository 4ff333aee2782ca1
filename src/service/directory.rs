//! A manager's directory: the arrays created in its cluster, each with its versions and write
//! lock ([`Versions`]), its data groups ([`DataGroups`]) and who holds what (the write epoch,
//! read pins, reader registrations, each owned by a process whose lease keeps it). A
//! deterministic state machine with no I/O: the manager service drives it under one lock, and
//! the model check drives it directly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::service::coherence::{Blocker, Grant, Poll, Ticket, Versions};
use crate::service::groups::{DataGroups, Effect};
use crate::service::names::{ClaimAnswer, Claimant, Claims};
use crate::service::protocol::{
    change_attributes, ArrayId, ArrayMeta, ArraySpec, ArrayStatus, BlockPlacement, CacheCopy,
    NodeInfo, Stamp, Touched, VersionReq,
};

/// A process holding something at a manager: its node name and incarnation.
pub type Owner = (String, u64);

/// The owner key of a node.
pub fn owner_of(node: &NodeInfo) -> Owner {
    (node.name.clone(), node.incarnation)
}

/// One array's entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Federation-wide id.
    pub id: ArrayId,
    /// Creation spec.
    pub spec: ArraySpec,
    /// The manager holding the entry.
    pub manager: NodeInfo,
    /// Versions and write lock.
    pub versions: Versions,
    /// Where every block's copies are.
    pub groups: DataGroups,
    writer: Option<(u64, Owner)>,
    /// The last commit (owner, epoch, version): a repeated commit (its answer was lost) is
    /// answered the same.
    last_commit: Option<(Owner, u64, u64)>,
    tickets: BTreeMap<Ticket, Owner>,
    pins: BTreeMap<u64, Owner>,
    readers: BTreeMap<u64, Owner>,
    /// No provider could take a missing copy at the last attempt.
    pub stuck: bool,
    /// The process that created it.
    pub creator: Owner,
    /// The creator confirmed that every block is hosted; until then the array is not visible
    /// and is undone if the creator dies.
    pub confirmed: bool,
    /// The process that committed the latest version.
    last_writer: Option<Owner>,
    /// Read-cache copies (CANTO's tracked copies), by block: only of each block's newest
    /// committed stamp. Replicated with the entry, so a new leader knows whom to invalidate.
    caches: BTreeMap<u32, Vec<CacheCopy>>,
}

impl Entry {
    /// A new entry, created by `creator` (not confirmed yet).
    pub fn new(
        id: ArrayId,
        spec: ArraySpec,
        manager: NodeInfo,
        versions: Versions,
        groups: DataGroups,
        creator: Owner,
    ) -> Entry {
        Entry {
            id,
            spec,
            manager,
            versions,
            groups,
            writer: None,
            last_commit: None,
            tickets: BTreeMap::new(),
            pins: BTreeMap::new(),
            readers: BTreeMap::new(),
            stuck: false,
            creator,
            confirmed: false,
            last_writer: None,
            caches: BTreeMap::new(),
        }
    }

    /// Every block's placement, with its cache copies.
    pub fn placements(&self) -> Vec<BlockPlacement> {
        let mut blocks = self.groups.placements();
        for (b, caches) in &self.caches {
            if let Some(p) = blocks.get_mut(*b as usize) {
                p.caches = caches.clone();
            }
        }
        blocks
    }

    /// The entry as clients see it.
    pub fn meta(&self) -> ArrayMeta {
        ArrayMeta {
            id: self.id,
            spec: self.spec.clone(),
            manager: self.manager.clone(),
            blocks: self.placements(),
            committed: self.versions.committed(),
            floor: self.versions.floor(),
        }
    }

    /// Tracks `node`'s cache copy of `stamp` of `block`: only of the block's newest committed
    /// stamp (`VersionGone` otherwise: the holder does not keep it).
    pub fn add_cache(&mut self, block: u32, stamp: Stamp, node: NodeInfo) -> Result<()> {
        let newest = self
            .groups
            .placement_stamps(block as usize)?
            .last()
            .copied();
        if newest != Some(stamp) {
            return Err(Error::VersionGone(format!(
                "{stamp} is not the newest state of block {block} of {}: not cached",
                self.spec.name
            )));
        }
        let copies = self.caches.entry(block).or_default();
        copies.retain(|c| !c.node.same(&node));
        copies.push(CacheCopy { node, stamp });
        Ok(())
    }

    /// Stops tracking the cache copies that are not of their block's newest committed stamp
    /// any more (after a commit): the messages to send, one per holder, naming its copies.
    pub fn stale_caches(&mut self) -> Vec<(NodeInfo, Vec<(u32, Stamp)>)> {
        let newest: Vec<Option<Stamp>> = (0..self.groups.len())
            .map(|b| {
                self.groups
                    .placement_stamps(b)
                    .ok()
                    .and_then(|s| s.last().copied())
            })
            .collect();
        let mut out: Vec<(NodeInfo, Vec<(u32, Stamp)>)> = Vec::new();
        for (&b, copies) in self.caches.iter_mut() {
            let keep = newest.get(b as usize).copied().flatten();
            copies.retain(|c| {
                if Some(c.stamp) == keep {
                    return true;
                }
                match out.iter_mut().find(|(n, _)| n.same(&c.node)) {
                    Some((_, list)) => list.push((b, c.stamp)),
                    None => out.push((c.node.clone(), vec![(b, c.stamp)])),
                }
                false
            });
        }
        self.caches.retain(|_, c| !c.is_empty());
        out
    }

    /// Stops tracking every cache copy (the array goes): the messages to send.
    pub fn take_caches(&mut self) -> Vec<(NodeInfo, Vec<(u32, Stamp)>)> {
        let mut out: Vec<(NodeInfo, Vec<(u32, Stamp)>)> = Vec::new();
        for (b, copies) in std::mem::take(&mut self.caches) {
            for c in copies {
                match out.iter_mut().find(|(n, _)| n.same(&c.node)) {
                    Some((_, list)) => list.push((b, c.stamp)),
                    None => out.push((c.node, vec![(b, c.stamp)])),
                }
            }
        }
        out
    }

    /// The entry as the status report shows it.
    pub fn status(&self) -> ArrayStatus {
        ArrayStatus {
            meta: self.meta(),
            health: (0..self.groups.len())
                .map(|b| self.groups.health(b, self.stuck))
                .collect(),
            pins: self.versions.pinned(),
            writer: self.writer.as_ref().map(|(_, o)| o.0.clone()),
            dropped_unread: self.versions.dropped_unread(),
        }
    }

    /// `owner` joins the writers' queue.
    pub fn enqueue_writer(&mut self, owner: Owner) -> Ticket {
        let t = self.versions.enqueue_writer();
        self.tickets.insert(t, owner);
        t
    }

    /// Leaves the writers' queue.
    pub fn cancel(&mut self, ticket: Ticket) {
        self.versions.cancel(ticket);
        self.tickets.remove(&ticket);
    }

    /// Grants the lock to `ticket` if its turn came.
    pub fn try_grant(&mut self, ticket: Ticket) -> Poll<Grant> {
        let g = self.versions.try_grant(ticket);
        if let Poll::Ready(g) = g {
            let owner = self.tickets.remove(&ticket).unwrap_or_default();
            // A reader that writes has seen the version it writes on.
            for (&r, o) in &self.readers {
                if *o == owner {
                    self.versions.passed(r, g.base);
                }
            }
            self.writer = Some((g.epoch, owner));
        }
        g
    }

    /// The grant `owner` holds, if it holds the write lock (its request is answered again
    /// when repeated: the first answer was lost in a failover).
    pub fn grant_of(&self, owner: &Owner) -> Option<Grant> {
        match &self.writer {
            Some((_, o)) if o == owner => self.versions.writer(),
            _ => None,
        }
    }

    /// The processes holding something of this array (the lock, pins, reader registrations,
    /// an unconfirmed creation): a new leader starts a lease for each.
    pub fn holders(&self) -> Vec<Owner> {
        let mut v: Vec<Owner> = self
            .writer
            .iter()
            .map(|(_, o)| o.clone())
            .chain(self.pins.values().cloned())
            .chain(self.readers.values().cloned())
            .collect();
        if !self.confirmed {
            v.push(self.creator.clone());
        }
        v.sort();
        v.dedup();
        v
    }

    /// Forgets the writers waiting in the queue: their requests died with the leader that
    /// queued them (they ask the new one again).
    pub fn forget_waiters(&mut self) {
        let tickets: Vec<Ticket> = self.tickets.keys().copied().collect();
        for t in tickets {
            self.cancel(t);
        }
    }

    fn check_writer(&self, owner: &Owner, epoch: u64) -> Result<()> {
        match &self.writer {
            Some((e, o)) if *e == epoch && o == owner => Ok(()),
            // Another process's epoch: an authorization failure, not a lost lock.
            Some((e, o)) if *e == epoch => Err(Error::Refused(format!(
                "{} is not authorized: write epoch {epoch} of {} belongs to {}",
                owner.0, self.spec.name, o.0
            ))),
            _ => Err(Error::NotAcquired(format!(
                "write epoch {epoch} of {} is not in progress: it was aborted (the holder's \
                 lease ran out, or it gave up) or already committed",
                self.spec.name
            ))),
        }
    }

    /// Commits `version` from epoch `epoch` held by `owner`, if every touched block is still at
    /// the term its home published under (else `Fenced`: the release is retried). Committing
    /// again what was just committed succeeds (the first answer was lost).
    pub fn commit(
        &mut self,
        owner: &Owner,
        epoch: u64,
        version: u64,
        touched: &[Touched],
    ) -> Result<()> {
        if self.last_commit.as_ref() == Some(&(owner.clone(), epoch, version)) {
            return Ok(());
        }
        self.check_writer(owner, epoch)?;
        self.groups.check_commit(touched)?;
        let floor = self.versions.writer().map_or(0, |g| g.floor);
        self.versions.commit(epoch, version)?;
        self.groups.commit(version, epoch, floor, touched);
        self.writer = None;
        self.last_commit = Some((owner.clone(), epoch, version));
        self.last_writer = Some(owner.clone());
        Ok(())
    }

    /// Sets and removes attributes, for `owner` holding the write lock as epoch `epoch`; the
    /// result must stay within the limits ([`check_attributes`]), else nothing changes.
    pub fn set_attributes(
        &mut self,
        owner: &Owner,
        epoch: u64,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        self.check_writer(owner, epoch)?;
        change_attributes(&mut self.spec.attributes, set, remove)
    }

    /// Aborts epoch `epoch` held by `owner`.
    pub fn abort(&mut self, owner: &Owner, epoch: u64) -> Result<()> {
        self.check_writer(owner, epoch)?;
        self.versions.abort(epoch)?;
        self.writer = None;
        Ok(())
    }

    /// A version for `owner` (see [`Versions::try_read`]).
    pub fn try_read(
        &mut self,
        owner: &Owner,
        req: VersionReq,
        pin: bool,
        reader: Option<u64>,
    ) -> Result<Poll<(u64, Option<u64>)>> {
        if let Some(r) = reader {
            self.check_reader(owner, r, "reads as")?;
        }
        let r = self.versions.try_read(req, pin, reader)?;
        if let Poll::Ready((_, Some(p))) = &r {
            self.pins.insert(*p, owner.clone());
        }
        Ok(r)
    }

    /// Releases a pin held by `owner` (`Refused` if another process holds it: nothing
    /// changes).
    pub fn unpin(&mut self, owner: &Owner, pin: u64) -> Result<()> {
        match self.pins.get(&pin) {
            Some(o) if o != owner => Err(Error::Refused(format!(
                "{} is not authorized: read pin {pin} of {} belongs to {}",
                owner.0, self.spec.name, o.0
            ))),
            _ => self.drop_pin(pin),
        }
    }

    fn drop_pin(&mut self, pin: u64) -> Result<()> {
        self.pins.remove(&pin);
        self.versions.unpin(pin)
    }

    /// Registers a reader for `owner`.
    pub fn add_reader(&mut self, owner: Owner) -> u64 {
        let r = self.versions.add_reader();
        self.readers.insert(r, owner);
        r
    }

    /// `Refused` if reader `reader` is registered for another process than `owner`.
    fn check_reader(&self, owner: &Owner, reader: u64, what: &str) -> Result<()> {
        match self.readers.get(&reader) {
            Some(o) if o != owner => Err(Error::Refused(format!(
                "{} is not authorized: it {what} reader {reader} of {}, which belongs to {}",
                owner.0, self.spec.name, o.0
            ))),
            _ => Ok(()),
        }
    }

    /// Reader `reader` of `owner` takes the write lock: it has seen the latest version (it
    /// writes on it). `Refused` if the reader is another process's.
    pub fn pass_own_reader(&mut self, owner: &Owner, reader: u64) -> Result<()> {
        self.check_reader(owner, reader, "writes as")?;
        let latest = self.versions.committed();
        self.versions.passed(reader, latest);
        Ok(())
    }

    /// Unregisters a reader of `owner` (`Refused` if it is another process's: nothing
    /// changes; an unknown reader is already gone).
    pub fn remove_reader(&mut self, owner: &Owner, reader: u64) -> Result<()> {
        self.check_reader(owner, reader, "unregisters")?;
        self.drop_reader(reader);
        Ok(())
    }

    fn drop_reader(&mut self, reader: u64) {
        self.readers.remove(&reader);
        self.versions.remove_reader(reader);
    }

    /// `owner` is gone (lease ran out, or its process died): its write epoch is aborted, its
    /// pins and reader registrations dropped, its place in the writers' queue given up.
    /// Returns the aborted epoch, if any.
    pub fn owner_gone(&mut self, owner: &Owner) -> Option<u64> {
        let pins: Vec<u64> = self
            .pins
            .iter()
            .filter(|(_, o)| *o == owner)
            .map(|(&p, _)| p)
            .collect();
        for p in pins {
            let _ = self.drop_pin(p);
        }
        let readers: Vec<u64> = self
            .readers
            .iter()
            .filter(|(_, o)| *o == owner)
            .map(|(&r, _)| r)
            .collect();
        for r in readers {
            self.drop_reader(r);
        }
        let tickets: Vec<Ticket> = self
            .tickets
            .iter()
            .filter(|(_, o)| *o == owner)
            .map(|(&t, _)| t)
            .collect();
        for t in tickets {
            self.cancel(t);
        }
        match &self.writer {
            Some((e, o)) if o == owner => {
                let e = *e;
                let _ = self.versions.abort(e);
                self.writer = None;
                Some(e)
            }
            _ => None,
        }
    }

    /// Why a writer waits for retention, in words naming who holds what.
    pub fn retention_wait(&self) -> Option<String> {
        let who = |o: Option<&Owner>| o.map_or("an unknown process".to_string(), |o| o.0.clone());
        self.versions.blocker().map(|b| match b {
            Blocker::Pin { version, pin } => format!(
                "version {version} is being read by {} (read pin {pin})",
                who(self.pins.get(&pin))
            ),
            Blocker::Reader {
                version,
                reader,
                next,
            } => format!(
                "version {version} is not read yet by reader {} (which has read up to version \
                 {}); the policy is Block with {} versions retained",
                who(self.readers.get(&reader)),
                next.saturating_sub(1),
                self.versions.retention().max_versions
            ),
            Blocker::Expected { version, missing } => format!(
                "version {version} waits for {missing} declared reader(s) that have not opened \
                 the array yet"
            ),
        })
    }

    /// The holder of the write lock.
    pub fn writer(&self) -> Option<&Owner> {
        self.writer.as_ref().map(|(_, o)| o)
    }

    /// Who else than `by` uses the array (holds its write lock or a read pin, or waits for the
    /// lock), in words; `None` if nobody.
    pub fn used_by_others(&self, by: &Owner) -> Option<String> {
        let others = |o: &&Owner| *o != by;
        if let Some(w) = self.writer().filter(others) {
            return Some(format!("{} holds its write lock", w.0));
        }
        if let Some(o) = self.pins.values().find(others) {
            return Some(format!("{} holds a read pin", o.0));
        }
        self.tickets
            .values()
            .find(others)
            .map(|o| format!("{} waits for its write lock", o.0))
    }

    /// The process that produced the array (the last to commit, else its creator), if it is
    /// `dead` and nobody writes or waits to: a version not committed yet will not come.
    pub fn producer_gone(&self, dead: impl Fn(&Owner) -> bool) -> Option<&Owner> {
        if self.writer.is_some() || !self.tickets.is_empty() {
            return None;
        }
        let producer = self.last_writer.as_ref().unwrap_or(&self.creator);
        dead(producer).then_some(producer)
    }
}

/// The arrays whose entries a manager holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    arrays: BTreeMap<ArrayId, Entry>,
    names: BTreeMap<String, ArrayId>,
    /// Names being created here (this cluster's own claims: they last as long as the creation).
    creating: BTreeSet<String>,
    /// Other clusters' claims on names they are creating (see [`crate::service::names`]).
    claims: Claims,
    /// The namespaces created here (arrays and namespaces share one set of names).
    namespaces: BTreeSet<String>,
}

impl Directory {
    /// The entry of `array`.
    pub fn get(&self, array: ArrayId) -> Result<&Entry> {
        self.arrays
            .get(&array)
            .ok_or_else(|| Error::NotFound(format!("no array with id {array} at this manager")))
    }

    /// The entry of `array`, to change it.
    pub fn get_mut(&mut self, array: ArrayId) -> Result<&mut Entry> {
        self.arrays
            .get_mut(&array)
            .ok_or_else(|| Error::NotFound(format!("no array with id {array} at this manager")))
    }

    /// The entry named `name`, once its creation is confirmed.
    pub fn by_name(&self, name: &str) -> Option<&Entry> {
        self.names
            .get(name)
            .and_then(|id| self.arrays.get(id))
            .filter(|e| e.confirmed)
    }

    /// Removes an array: its name is free again.
    pub fn remove(&mut self, array: ArrayId) -> Option<Entry> {
        let e = self.arrays.remove(&array)?;
        self.names.remove(&e.spec.name);
        Some(e)
    }

    /// Arrays `owner` created and has not confirmed.
    pub fn unconfirmed_of(&self, owner: &Owner) -> Vec<ArrayId> {
        self.arrays
            .values()
            .filter(|e| !e.confirmed && &e.creator == owner)
            .map(|e| e.id)
            .collect()
    }

    /// Every entry.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.arrays.values()
    }

    /// Every entry, to change them.
    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.arrays.values_mut()
    }

    /// Reserves `name` while its creation is under way here, at `cluster`: refused
    /// (`AlreadyExists`) if an array of that name exists here or is being created, here or (a
    /// live claim) by another cluster.
    pub fn begin_create(&mut self, name: &str, cluster: &str, now: Instant) -> Result<()> {
        let taken = self.local_claim(name, cluster).or_else(|| {
            self.claims.holder(name, now).map(|c| ClaimAnswer::Claimed {
                cluster: c.cluster.clone(),
            })
        });
        match taken {
            None => {
                self.creating.insert(name.to_string());
                Ok(())
            }
            Some(answer) => Err(name_taken(name, &answer)),
        }
    }

    /// What this cluster's own directory says of `name`: an entry, a namespace, or a creation
    /// in progress.
    fn local_claim(&self, name: &str, cluster: &str) -> Option<ClaimAnswer> {
        if self.names.contains_key(name) {
            Some(ClaimAnswer::Exists {
                cluster: cluster.to_string(),
            })
        } else if self.namespaces.contains(name) {
            Some(ClaimAnswer::NamespaceExists {
                cluster: cluster.to_string(),
            })
        } else if self.creating.contains(name) {
            Some(ClaimAnswer::Claimed {
                cluster: cluster.to_string(),
            })
        } else {
            None
        }
    }

    /// Another cluster's claim (or renewal) of `name` for its creation; this cluster is
    /// `cluster`.
    pub fn claim_name(
        &mut self,
        name: &str,
        by: &Claimant,
        cluster: &str,
        now: Instant,
        lease: Duration,
    ) -> ClaimAnswer {
        let local = self.local_claim(name, cluster);
        self.claims.claim(name, by, now, lease, local)
    }

    /// `by` gives up its claim of `name`.
    pub fn drop_claim(&mut self, name: &str, by: &Claimant) {
        self.claims.drop_claim(name, by);
    }

    /// Forgets expired claims.
    pub fn prune_claims(&mut self, now: Instant) {
        self.claims.prune(now);
    }

    /// Ends a creation: adds the entry, or (on `None`) frees the name.
    pub fn finish_create(&mut self, name: &str, entry: Option<Entry>) {
        self.creating.remove(name);
        if let Some(e) = entry {
            self.names.insert(name.to_string(), e.id);
            self.arrays.insert(e.id, e);
        }
    }

    /// Ends the creation of namespace `name`: adds it (`created`) or frees the name.
    pub fn finish_namespace(&mut self, name: &str, created: bool) {
        self.creating.remove(name);
        if created {
            self.namespaces.insert(name.to_string());
        }
    }

    /// Removes namespace `name`'s record: whether there was one.
    pub fn remove_namespace(&mut self, name: &str) -> bool {
        self.namespaces.remove(name)
    }

    /// The namespaces created here, by name.
    pub fn namespaces(&self) -> &BTreeSet<String> {
        &self.namespaces
    }

    /// A provider is gone: the effects on every array's data groups (and its cache copies are
    /// not tracked any more).
    pub fn node_gone(&mut self, node: &NodeInfo) -> Vec<(ArrayId, Effect)> {
        let mut out = Vec::new();
        for e in self.arrays.values_mut() {
            for copies in e.caches.values_mut() {
                copies.retain(|c| !c.node.same(node));
            }
            e.caches.retain(|_, c| !c.is_empty());
            out.extend(e.groups.node_gone(node).into_iter().map(|x| (e.id, x)));
        }
        out
    }

    /// An owner is gone: what it held is released everywhere. Returns the aborted epochs as
    /// (array name, epoch).
    pub fn owner_gone(&mut self, owner: &Owner) -> Vec<(String, u64)> {
        self.arrays
            .values_mut()
            .filter_map(|e| e.owner_gone(owner).map(|ep| (e.spec.name.clone(), ep)))
            .collect()
    }
}

/// The error of a creation that found `name` taken, as `answer` says.
pub fn name_taken(name: &str, answer: &ClaimAnswer) -> Error {
    match answer {
        ClaimAnswer::Exists { cluster } => Error::AlreadyExists(format!(
            "an array named {name:?} already exists in cluster {cluster}"
        )),
        ClaimAnswer::Claimed { cluster } => Error::AlreadyExists(format!(
            "an array or namespace named {name:?} is being created in cluster {cluster}"
        )),
        ClaimAnswer::NamespaceExists { cluster } => Error::AlreadyExists(format!(
            "a namespace named {name:?} already exists in cluster {cluster}"
        )),
        ClaimAnswer::Full => Error::Capacity(format!(
            "{name:?}: too many creations under way in the federation; try again"
        )),
        ClaimAnswer::Granted => Error::Protocol(format!("{name:?}: granted is not taken")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::ElemType;
    use crate::layout::{Dist, Layout};
    use crate::service::protocol::{HomePlacement, NodeKind, Redundancy, Retention, VersionReq};
    use crate::ErrorCode;

    fn node(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            cluster: "A".into(),
            addr: "127.0.0.1:1".into(),
            kind: NodeKind::Daemon,
            incarnation: 1,
        }
    }

    fn entry() -> Entry {
        let spec = ArraySpec {
            name: "t/x".into(),
            elem: ElemType::F64,
            layout: Layout::one_d(8, Dist::Block, 1).unwrap(),
            redundancy: Redundancy::NONE,
            retention: Retention::default(),
            homes: HomePlacement::Daemons,
            replicate_to: vec![],
            attributes: Default::default(),
        };
        let groups = DataGroups::new(
            Redundancy::NONE,
            vec!["A".into()],
            vec![(node("A/provider-0"), vec![])],
        );
        let versions = Versions::new(spec.retention).unwrap();
        Entry::new(
            1,
            spec,
            node("A/manager"),
            versions,
            groups,
            ("A/c".into(), 1),
        )
    }

    fn me() -> Owner {
        ("A/reader".into(), 1)
    }

    fn thief() -> Owner {
        ("B/thief".into(), 9)
    }

    #[test]
    fn only_its_owner_releases_a_pin() {
        let mut e = entry();
        let Ok(Poll::Ready((_, Some(pin)))) = e.try_read(&me(), VersionReq::Latest, true, None)
        else {
            panic!("pinned")
        };
        let before = e.clone();
        let err = e.unpin(&thief(), pin).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Refused, "{err}");
        assert_eq!(e, before, "nothing changed");
        e.unpin(&me(), pin).unwrap();
        assert!(e.versions.pins().is_empty());
    }

    #[test]
    fn only_its_owner_unregisters_or_reads_as_a_reader() {
        let mut e = entry();
        let r = e.add_reader(me());
        let before = e.clone();
        let err = e.remove_reader(&thief(), r).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Refused, "{err}");
        let err = e
            .try_read(&thief(), VersionReq::Latest, false, Some(r))
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Refused, "{err}");
        assert_eq!(e, before, "nothing changed");
        e.remove_reader(&me(), r).unwrap();
        assert!(e.versions.readers().is_empty());
    }

    #[test]
    fn a_commit_makes_stale_only_the_cache_copies_of_the_blocks_it_wrote() {
        let mut e = entry();
        let home = node("A/provider-0");
        e.groups = DataGroups::new(
            Redundancy::NONE,
            vec!["A".into()],
            vec![(home.clone(), vec![]), (home.clone(), vec![])],
        );
        let (x, y) = (node("B/provider-0"), node("C/provider-0"));
        let v0 = Stamp::default();
        e.add_cache(0, v0, x.clone()).unwrap();
        e.add_cache(1, v0, x.clone()).unwrap();
        e.add_cache(1, v0, y.clone()).unwrap();
        e.add_cache(1, v0, y.clone()).unwrap(); // again: tracked once
        assert_eq!(e.meta().blocks[1].caches.len(), 2);
        // Block 0 is written; block 1 keeps its stamp, and its copies stay current.
        let t = e.enqueue_writer(me());
        let Poll::Ready(g) = e.try_grant(t) else {
            panic!("granted")
        };
        let touched = Touched {
            block: 0,
            term: 1,
            holders: vec![home.id()],
        };
        e.commit(&me(), g.epoch, g.base + 1, &[touched]).unwrap();
        assert_eq!(e.stale_caches(), vec![(x.clone(), vec![(0, v0)])]);
        assert!(e.stale_caches().is_empty(), "said once");
        let meta = e.meta();
        assert!(meta.blocks[0].caches.is_empty());
        assert_eq!(meta.blocks[1].caches.len(), 2);
        // Only the newest stamp is tracked.
        let err = e.add_cache(0, v0, y.clone()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::VersionGone, "{err}");
        let newest = *meta.blocks[0].stamps.last().unwrap();
        e.add_cache(0, newest, y.clone()).unwrap();
        // A holder that dies is not tracked any more; the rest go with the array.
        let mut d = Directory::default();
        d.finish_create("t/x", Some(e));
        d.node_gone(&x);
        let mut e = d.remove(1).unwrap();
        let mut gone = e.take_caches();
        gone.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        assert_eq!(gone, vec![(y, vec![(0, newest), (1, v0)])]);
        assert!(e.meta().blocks.iter().all(|b| b.caches.is_empty()));
    }

    #[test]
    fn only_its_owner_commits_or_aborts_an_epoch() {
        let mut e = entry();
        let t = e.enqueue_writer(me());
        let Poll::Ready(g) = e.try_grant(t) else {
            panic!("granted")
        };
        let before = e.clone();
        let err = e.commit(&thief(), g.epoch, g.base + 1, &[]).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Refused, "{err}");
        let err = e.abort(&thief(), g.epoch).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Refused, "{err}");
        assert_eq!(e, before, "nothing changed");
        e.abort(&me(), g.epoch).unwrap();
    }
}
