//! Versions and the write lock of one array: the coherence protocol's ordering logic, as a
//! deterministic state machine with no I/O (the manager drives it; tests drive it directly).
//!
//! - One writer epoch at a time (entry consistency: exclusive acquire), granted first come
//!   first served by ticket.
//! - A writer that started from committed version `b` publishes `b + 1` at commit; released
//!   versions are immutable snapshots, so readers never block writers and never see a partly
//!   released version (they read a committed version, never the epoch in progress).
//! - Retention: at most `max_versions` committed versions are kept. A writer is granted only if
//!   publishing `b + 1` leaves the bound intact after dropping the oldest versions that may be
//!   dropped: not pinned by a reader, and (`FullPolicy::Block`) read or passed by every reader
//!   registered for the array, or (`FullPolicy::DropOldest`) regardless, counted in
//!   `dropped_unread` when nobody read them. A writer never waits on versions no reader asked
//!   for: with no registered reader nothing blocks it, unless the creator declared readers to
//!   wait for (`Retention::readers`), which count as registered readers that read nothing until
//!   that many have registered. The new floor is decided at grant: versions below it are gone
//!   for readers from then on, and providers prune them when the epoch publishes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::service::protocol::{FullPolicy, Retention, VersionReq};

/// A place in the writers' queue.
pub type Ticket = u64;

/// A granted write epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// Epoch id, carried by every write of the epoch.
    pub epoch: u64,
    /// Committed version the epoch starts from.
    pub base: u64,
    /// Versions below this are dropped.
    pub floor: u64,
}

/// Why a writer waits for retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Blocker {
    /// A reader pins `version`.
    Pin {
        /// The version held.
        version: u64,
        /// The pin.
        pin: u64,
    },
    /// A registered reader has not read `version` (nor a later one) yet.
    Reader {
        /// The version unread.
        version: u64,
        /// The reader.
        reader: u64,
        /// The oldest version it has not read.
        next: u64,
    },
    /// Declared readers have not registered yet.
    Expected {
        /// The version unread.
        version: u64,
        /// Readers still expected.
        missing: u32,
    },
}

/// Outcome of a request that may have to wait.
#[derive(Clone, Debug, PartialEq)]
pub enum Poll<T> {
    /// Done.
    Ready(T),
    /// Not yet: retry when the state changes.
    Pending,
}

/// The versions and write lock of one array.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Versions {
    retention: Retention,
    committed: u64,
    floor: u64,
    /// Versions read at least once (only those >= floor are kept).
    read: BTreeSet<u64>,
    pins: BTreeMap<u64, u64>, // pin id -> version
    next_pin: u64,
    /// Registered readers: id -> the oldest version it has not read (nor passed).
    readers: BTreeMap<u64, u64>,
    next_reader: u64,
    /// Readers ever registered (declared readers are waited for until this many came).
    registered: u32,
    writer: Option<Grant>,
    queue: VecDeque<Ticket>,
    next_ticket: Ticket,
    next_epoch: u64,
    dropped_unread: u64,
}

impl Versions {
    /// A new array: version 0 (all zeros) committed and counted as read.
    pub fn new(retention: Retention) -> Result<Versions> {
        if retention.max_versions < 2 {
            return Err(Error::InvalidArgument(format!(
                "max_versions is {}; it must be at least 2 (the latest version stays readable \
                 while the next one is written)",
                retention.max_versions
            )));
        }
        Ok(Versions {
            retention,
            committed: 0,
            floor: 0,
            read: BTreeSet::from([0]),
            pins: BTreeMap::new(),
            next_pin: 1,
            readers: BTreeMap::new(),
            next_reader: 1,
            registered: 0,
            writer: None,
            queue: VecDeque::new(),
            next_ticket: 1,
            next_epoch: 1,
            dropped_unread: 0,
        })
    }

    /// Latest committed version.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Oldest retained version.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Versions held by readers' pins.
    pub fn pinned(&self) -> Vec<u64> {
        self.pins.values().copied().collect()
    }

    /// The epoch in progress, if any.
    pub fn writer(&self) -> Option<Grant> {
        self.writer
    }

    /// Versions dropped before anyone read them.
    pub fn dropped_unread(&self) -> u64 {
        self.dropped_unread
    }

    /// The retention settings.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Registers a reader: until it reads them (or later ones), retained versions are kept for
    /// it under `FullPolicy::Block`.
    pub fn add_reader(&mut self) -> u64 {
        let id = self.next_reader;
        self.next_reader += 1;
        self.registered = self.registered.saturating_add(1);
        self.readers.insert(id, self.floor.max(1));
        id
    }

    /// A registered reader has seen `version` (it read it, or wrote on top of it).
    pub fn passed(&mut self, reader: u64, version: u64) {
        if let Some(next) = self.readers.get_mut(&reader) {
            *next = (*next).max(version + 1);
        }
    }

    /// Unregisters a reader.
    pub fn remove_reader(&mut self, reader: u64) {
        self.readers.remove(&reader);
    }

    /// Registered readers: (id, oldest version not read).
    pub fn readers(&self) -> Vec<(u64, u64)> {
        self.readers.iter().map(|(&r, &n)| (r, n)).collect()
    }

    /// The pins: (pin, version).
    pub fn pins(&self) -> Vec<(u64, u64)> {
        self.pins.iter().map(|(&p, &v)| (p, v)).collect()
    }

    /// Why `version` may not be dropped now (`None`: it may).
    fn keeps(&self, version: u64) -> Option<Blocker> {
        if let Some((&pin, _)) = self.pins.iter().find(|(_, &v)| v == version) {
            return Some(Blocker::Pin { version, pin });
        }
        // Version 0 is the initial zeros: nobody waits for it.
        if self.retention.on_full == FullPolicy::DropOldest || version == 0 {
            return None;
        }
        let missing = self.retention.readers.saturating_sub(self.registered);
        if missing > 0 {
            return Some(Blocker::Expected { version, missing });
        }
        self.readers
            .iter()
            .find(|(_, &next)| next <= version)
            .map(|(&reader, &next)| Blocker::Reader {
                version,
                reader,
                next,
            })
    }

    /// Why the next writer would wait for retention now (`None`: it would not).
    pub fn blocker(&self) -> Option<Blocker> {
        (self.floor..self.needed_floor()).find_map(|v| self.keeps(v))
    }

    /// The floor publishing `committed + 1` needs: retained = [floor, committed + 1] must hold
    /// at most `max_versions` versions.
    fn needed_floor(&self) -> u64 {
        (self.committed + 2).saturating_sub(u64::from(self.retention.max_versions))
    }

    /// Joins the writers' queue.
    pub fn enqueue_writer(&mut self) -> Ticket {
        let t = self.next_ticket;
        self.next_ticket += 1;
        self.queue.push_back(t);
        t
    }

    /// Leaves the queue (timed out or disconnected before being granted).
    pub fn cancel(&mut self, ticket: Ticket) {
        self.queue.retain(|&t| t != ticket);
    }

    /// Grants the lock to `ticket` if it is first in line, no epoch is in progress and the
    /// retention bound allows one more version.
    pub fn try_grant(&mut self, ticket: Ticket) -> Poll<Grant> {
        if self.writer.is_some() || self.queue.front() != Some(&ticket) {
            return Poll::Pending;
        }
        if self.blocker().is_some() {
            return Poll::Pending;
        }
        let floor = self.needed_floor().max(self.floor);
        let dropped_unread = (self.floor..floor)
            .filter(|v| !self.read.contains(v))
            .count() as u64;
        self.queue.pop_front();
        self.floor = floor;
        self.dropped_unread += dropped_unread;
        self.read = self.read.split_off(&floor);
        let grant = Grant {
            epoch: self.next_epoch,
            base: self.committed,
            floor,
        };
        self.next_epoch += 1;
        self.writer = Some(grant);
        Poll::Ready(grant)
    }

    /// Publishes `version` from write epoch `epoch` and releases the lock.
    pub fn commit(&mut self, epoch: u64, version: u64) -> Result<()> {
        let g = self.check_epoch(epoch)?;
        if version != g.base + 1 {
            return Err(Error::InvalidArgument(format!(
                "epoch {epoch} started from version {} and must publish {}, not {version}",
                g.base,
                g.base + 1
            )));
        }
        self.committed = version;
        self.writer = None;
        Ok(())
    }

    /// Releases the lock without publishing.
    pub fn abort(&mut self, epoch: u64) -> Result<()> {
        self.check_epoch(epoch)?;
        self.writer = None;
        Ok(())
    }

    fn check_epoch(&self, epoch: u64) -> Result<Grant> {
        match self.writer {
            Some(g) if g.epoch == epoch => Ok(g),
            _ => Err(Error::NotAcquired(format!(
                "write epoch {epoch} is not the one in progress (it was aborted or committed)"
            ))),
        }
    }

    /// The version a reader asking `req` gets now, pinned if `pin`; a registered `reader`
    /// has then read it (and passed every older version).
    pub fn try_read(
        &mut self,
        req: VersionReq,
        pin: bool,
        reader: Option<u64>,
    ) -> Result<Poll<(u64, Option<u64>)>> {
        let version = match req {
            VersionReq::Latest => self.committed,
            VersionReq::AtLeast(k) if self.committed >= k => self.committed,
            VersionReq::AtLeast(_) => return Ok(Poll::Pending),
            VersionReq::Exactly(k) if k < self.floor => {
                return Err(Error::VersionGone(format!(
                    "version {k} is no longer retained (oldest kept: {}, latest: {})",
                    self.floor, self.committed
                )))
            }
            VersionReq::Exactly(k) if k <= self.committed => k,
            VersionReq::Exactly(_) => return Ok(Poll::Pending),
        };
        if let Some(r) = reader {
            self.passed(r, version);
        }
        let pin_id = if pin {
            let id = self.next_pin;
            self.next_pin += 1;
            self.pins.insert(id, version);
            Some(id)
        } else {
            self.read.insert(version);
            None
        };
        Ok(Poll::Ready((version, pin_id)))
    }

    /// Releases a reader's pin; the version counts as read.
    pub fn unpin(&mut self, pin: u64) -> Result<()> {
        match self.pins.remove(&pin) {
            Some(v) => {
                if v >= self.floor {
                    self.read.insert(v);
                }
                Ok(())
            }
            None => Err(Error::NotAcquired(format!("no read pin {pin}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(max: u32, on_full: FullPolicy) -> Versions {
        Versions::new(Retention {
            max_versions: max,
            on_full,
            readers: 0,
        })
        .unwrap()
    }

    fn write(v: &mut Versions) -> Grant {
        let t = v.enqueue_writer();
        match v.try_grant(t) {
            Poll::Ready(g) => {
                v.commit(g.epoch, g.base + 1).unwrap();
                g
            }
            Poll::Pending => panic!("writer blocked"),
        }
    }

    #[test]
    fn writers_are_granted_in_order_one_at_a_time() {
        let mut v = versions(4, FullPolicy::DropOldest);
        let (a, b) = (v.enqueue_writer(), v.enqueue_writer());
        assert_eq!(v.try_grant(b), Poll::Pending);
        let Poll::Ready(ga) = v.try_grant(a) else {
            panic!()
        };
        assert_eq!(v.try_grant(b), Poll::Pending);
        v.commit(ga.epoch, 1).unwrap();
        let Poll::Ready(gb) = v.try_grant(b) else {
            panic!()
        };
        assert_eq!(gb.base, 1);
        assert!(
            v.commit(ga.epoch, 2).is_err(),
            "a finished epoch cannot commit again"
        );
        assert!(v.commit(gb.epoch, 3).is_err(), "must publish base + 1");
        v.commit(gb.epoch, 2).unwrap();
        assert_eq!(v.committed(), 2);
    }

    #[test]
    fn readers_see_only_committed_versions() {
        let mut v = versions(4, FullPolicy::DropOldest);
        let t = v.enqueue_writer();
        let Poll::Ready(g) = v.try_grant(t) else {
            panic!()
        };
        // During the epoch the latest is still 0; version 1 is not visible.
        assert_eq!(
            v.try_read(VersionReq::Latest, false, None).unwrap(),
            Poll::Ready((0, None))
        );
        assert_eq!(
            v.try_read(VersionReq::AtLeast(1), false, None).unwrap(),
            Poll::Pending
        );
        assert_eq!(
            v.try_read(VersionReq::Exactly(1), false, None).unwrap(),
            Poll::Pending
        );
        v.commit(g.epoch, 1).unwrap();
        assert_eq!(
            v.try_read(VersionReq::Exactly(1), false, None).unwrap(),
            Poll::Ready((1, None))
        );
    }

    #[test]
    fn block_policy_waits_for_registered_readers_only() {
        let mut v = versions(2, FullPolicy::Block);
        let r = v.add_reader();
        write(&mut v); // 1 (unread); retained {0, 1}
        let t = v.enqueue_writer();
        // Publishing 2 drops 0, which the reader registered past (it never wanted it).
        let Poll::Ready(g) = v.try_grant(t) else {
            panic!()
        };
        assert_eq!(g.floor, 1);
        v.commit(g.epoch, 2).unwrap();
        // Publishing 3 needs to drop 1, which the reader has not read.
        let t = v.enqueue_writer();
        assert_eq!(v.try_grant(t), Poll::Pending);
        assert_eq!(
            v.blocker(),
            Some(Blocker::Reader {
                version: 1,
                reader: r,
                next: 1
            })
        );
        let Poll::Ready((1, Some(pin))) =
            v.try_read(VersionReq::Exactly(1), true, Some(r)).unwrap()
        else {
            panic!()
        };
        assert_eq!(v.try_grant(t), Poll::Pending, "pinned: still being read");
        assert!(matches!(v.blocker(), Some(Blocker::Pin { version: 1, .. })));
        v.unpin(pin).unwrap();
        let Poll::Ready(g) = v.try_grant(t) else {
            panic!()
        };
        assert_eq!(g.floor, 2);
        let e = v.try_read(VersionReq::Exactly(1), false, None).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::VersionGone);
        assert_eq!(v.dropped_unread(), 0);
    }

    #[test]
    fn a_lone_writer_never_waits() {
        let mut v = Versions::new(Retention::default()).unwrap();
        for _ in 0..100 {
            write(&mut v);
        }
        assert_eq!(v.committed(), 100);
        assert_eq!(v.floor(), 97);
    }

    #[test]
    fn declared_readers_are_waited_for_until_they_register() {
        let mut v = Versions::new(Retention {
            max_versions: 2,
            on_full: FullPolicy::Block,
            readers: 1,
        })
        .unwrap();
        write(&mut v);
        write(&mut v); // drops 0 (the initial zeros count as read)
        let t = v.enqueue_writer();
        assert_eq!(v.try_grant(t), Poll::Pending);
        assert_eq!(
            v.blocker(),
            Some(Blocker::Expected {
                version: 1,
                missing: 1
            })
        );
        let r = v.add_reader();
        assert_eq!(
            v.try_grant(t),
            Poll::Pending,
            "registered, nothing read yet"
        );
        v.try_read(VersionReq::Latest, false, Some(r)).unwrap();
        assert!(matches!(v.try_grant(t), Poll::Ready(_)), "read 2, passed 1");
    }

    #[test]
    fn drop_oldest_never_blocks_on_unread_but_counts() {
        let mut v = versions(2, FullPolicy::DropOldest);
        for _ in 0..5 {
            write(&mut v);
        }
        assert_eq!(v.committed(), 5);
        assert_eq!(v.floor(), 4);
        assert_eq!(v.dropped_unread(), 3); // versions 1, 2, 3
    }

    #[test]
    fn pinned_versions_are_never_dropped() {
        let mut v = versions(2, FullPolicy::DropOldest);
        write(&mut v);
        let Poll::Ready((1, Some(pin))) = v.try_read(VersionReq::Latest, true, None).unwrap()
        else {
            panic!()
        };
        write(&mut v); // 2: drops 0
        let t = v.enqueue_writer();
        assert_eq!(v.try_grant(t), Poll::Pending, "3 would drop pinned 1");
        v.unpin(pin).unwrap();
        assert!(matches!(v.try_grant(t), Poll::Ready(_)));
    }

    #[test]
    fn aborted_epochs_publish_nothing() {
        let mut v = versions(3, FullPolicy::Block);
        let t = v.enqueue_writer();
        let Poll::Ready(g) = v.try_grant(t) else {
            panic!()
        };
        v.abort(g.epoch).unwrap();
        assert_eq!(v.committed(), 0);
        assert!(v.writer().is_none());
        let g2 = write(&mut v);
        assert_eq!(g2.base, 0);
        assert_eq!(v.committed(), 1);
    }

    #[test]
    fn at_least_one_version_of_slack_is_required() {
        let e = Versions::new(Retention {
            max_versions: 1,
            on_full: FullPolicy::Block,
            readers: 0,
        })
        .unwrap_err();
        assert!(e.to_string().contains("at least 2"), "{e}");
    }
}
