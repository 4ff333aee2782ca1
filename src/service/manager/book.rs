//! What a cluster's manager replicas agree on (the "book"): every array's entry, the members
//! and the memory reserved on them, and the id serial. Replicated through
//! [`crate::service::replication`] as records, each kept as the bytes of its value: the leader
//! changes its live state as a single manager always did, then proposes the records that
//! changed ([`Shadow`] tells which), and answers once they are committed. A new leader rebuilds
//! its live state from the book ([`Book::state`]).
//!
//! Not in the book, on purpose: leases (a new leader starts every holder's lease afresh, and a
//! holder that does not renew with it is declared dead as usual), the writers waiting in a
//! queue (their requests died with the old leader: they get an error and ask again), other
//! clusters' claims of names (a new leader refuses claims for a lease, the longest an old claim
//! could still live), the recently dead shown by `status`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::service::directory::{Directory, Entry};
use crate::service::membership::{Members, Membership};
use crate::service::protocol::ArrayId;
use crate::service::replication::Machine;

/// One record of the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    /// An array's entry.
    Entry(ArrayId),
    /// The members of the cluster.
    Members,
    /// The last serial handed out (array ids and name claims derive from it).
    Serial,
    /// The namespaces created in the cluster.
    Namespaces,
}

/// A change to one record: its new value (encoded), or its removal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The record.
    pub key: Key,
    /// Its new value; `None` removes it.
    pub value: Option<Vec<u8>>,
}

/// The replicated records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    records: BTreeMap<Key, Vec<u8>>,
}

/// The live state a book describes.
pub struct Live {
    /// The directory (entries only: no creation in progress, no claim).
    pub directory: Directory,
    /// The members.
    pub membership: Membership,
    /// The serial.
    pub serial: u64,
}

fn encode<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| Error::Protocol(format!("encoding {what}: {e}")))
}

fn decode<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Protocol(format!("a malformed {what}: {e}")))
}

/// The encoded value of record `key` in the live state (`None`: no such record).
pub fn value_of(
    key: Key,
    directory: &Directory,
    membership: &Membership,
    serial: u64,
) -> Result<Option<Vec<u8>>> {
    Ok(match key {
        Key::Entry(id) => match directory.get(id) {
            Ok(e) => Some(encode("an entry", e)?),
            Err(_) => None,
        },
        Key::Members => Some(encode("the members", &membership.record())?),
        Key::Serial => Some(encode("the serial", &serial)?),
        Key::Namespaces => match directory.namespaces() {
            n if n.is_empty() => None,
            n => Some(encode("the namespaces", n)?),
        },
    })
}

impl Book {
    /// The live state this book describes.
    pub fn state(&self) -> Result<Live> {
        let mut directory = Directory::default();
        let mut membership = Membership::default();
        let mut serial = 0;
        for (key, bytes) in &self.records {
            match key {
                Key::Entry(_) => {
                    let e: Entry = decode("entry record", bytes)?;
                    let name = e.spec.name.clone();
                    directory.finish_create(&name, Some(e));
                }
                Key::Members => {
                    membership =
                        Membership::from_record(decode::<Members>("members record", bytes)?)
                }
                Key::Serial => serial = decode("serial record", bytes)?,
                Key::Namespaces => {
                    let names: std::collections::BTreeSet<String> =
                        decode("namespaces record", bytes)?;
                    for n in names {
                        directory.finish_namespace(&n, true);
                    }
                }
            }
        }
        Ok(Live {
            directory,
            membership,
            serial,
        })
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl Machine for Book {
    type Command = Vec<Change>;
    type Outcome = ();

    fn apply(&mut self, cmd: Vec<Change>) {
        // Setting a record to a value is idempotent: a command applied twice (a retried
        // proposal) leaves the same book.
        for c in cmd {
            match c.value {
                Some(v) => {
                    self.records.insert(c.key, v);
                }
                None => {
                    self.records.remove(&c.key);
                }
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        // A map of byte strings always encodes.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<()> {
        *self = if snapshot.is_empty() {
            Book::default()
        } else {
            decode("book snapshot", snapshot)?
        };
        Ok(())
    }
}

/// The leader's record of what it proposed last for each key, to propose only what changed.
#[derive(Default)]
pub struct Shadow {
    proposed: BTreeMap<Key, Vec<u8>>,
}

impl Shadow {
    /// A shadow of a book just applied (a new leader's).
    pub fn of(book: &Book) -> Shadow {
        Shadow {
            proposed: book.records.clone(),
        }
    }

    /// The changes that bring the records `keys` to their values in the live state, now
    /// counted as proposed.
    pub fn changes(
        &mut self,
        keys: impl IntoIterator<Item = Key>,
        directory: &Directory,
        membership: &Membership,
        serial: u64,
    ) -> Result<Vec<Change>> {
        let mut out = Vec::new();
        for key in keys {
            let value = value_of(key, directory, membership, serial)?;
            if self.proposed.get(&key) != value.as_ref() {
                match &value {
                    Some(v) => self.proposed.insert(key, v.clone()),
                    None => self.proposed.remove(&key),
                };
                out.push(Change { key, value });
            }
        }
        Ok(out)
    }

    /// Every key proposed so far or present in `directory` (for a full comparison).
    pub fn all_keys(&self, directory: &Directory) -> Vec<Key> {
        let mut keys: Vec<Key> = self.proposed.keys().copied().collect();
        keys.extend(directory.entries().map(|e| Key::Entry(e.id)));
        keys.push(Key::Members);
        keys.push(Key::Serial);
        keys.push(Key::Namespaces);
        keys.sort();
        keys.dedup();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::ElemType;
    use crate::layout::{Dist, Layout};
    use crate::service::coherence::Versions;
    use crate::service::groups::DataGroups;
    use crate::service::protocol::*;

    fn node(name: &str, kind: NodeKind) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            cluster: "A".into(),
            addr: "127.0.0.1:1".into(),
            kind,
            incarnation: 7,
        }
    }

    fn entry(id: ArrayId, name: &str) -> Entry {
        let spec = ArraySpec {
            name: name.into(),
            elem: ElemType::F64,
            layout: Layout::one_d(8, Dist::Block, 2).unwrap(),
            redundancy: Redundancy::NONE,
            retention: Retention::default(),
            homes: HomePlacement::Creator,
            replicate_to: vec![],
            attributes: Default::default(),
        };
        let homes = vec![
            (node("A/r0", NodeKind::Rank), vec![]),
            (node("A/r1", NodeKind::Rank), vec![]),
        ];
        let groups = DataGroups::new(Redundancy::NONE, vec!["A".into()], homes);
        let versions = Versions::new(Retention::default()).unwrap();
        Entry::new(
            id,
            spec,
            node("A/manager", NodeKind::Manager),
            versions,
            groups,
            ("A/r0".into(), 7),
        )
    }

    /// The leader's changes, applied by a follower, give the follower the leader's state; a
    /// change applied twice changes nothing more; only what changed is proposed.
    #[test]
    fn a_follower_applying_the_changes_holds_the_leaders_state() {
        let mut dir = Directory::default();
        let mut members = Membership::default();
        members.register(node("A/d1", NodeKind::Daemon), 1 << 20);
        let mut shadow = Shadow::default();
        let mut follower = Book::default();
        dir.finish_create("a", Some(entry(1, "a")));
        dir.finish_create("b", Some(entry(2, "b")));
        let keys = shadow.all_keys(&dir);
        let first = shadow.changes(keys.clone(), &dir, &members, 3).unwrap();
        assert_eq!(first.len(), 4, "two entries, the members, the serial");
        follower.apply(first.clone());
        follower.apply(first);
        // Nothing changed: nothing to propose.
        assert!(shadow.changes(keys, &dir, &members, 3).unwrap().is_empty());
        // A commit-like change to one entry and a removal of the other.
        dir.get_mut(1).unwrap().confirmed = true;
        dir.remove(2);
        let keys = shadow.all_keys(&dir);
        let second = shadow.changes(keys, &dir, &members, 3).unwrap();
        assert_eq!(second.len(), 2, "{second:?}");
        follower.apply(second);
        let live = follower.state().unwrap();
        assert_eq!(live.directory.get(1).unwrap(), dir.get(1).unwrap());
        assert!(live.directory.get(2).is_err());
        assert!(live.directory.by_name("a").is_some());
        assert_eq!(live.serial, 3);
        assert_eq!(live.membership.record(), members.record());
        // Cache copies are tracked in the entry: a new leader knows whom to invalidate.
        let holder = node("B/provider-0", NodeKind::Daemon);
        let stamp = *dir.get(1).unwrap().meta().blocks[1].stamps.last().unwrap();
        dir.get_mut(1)
            .unwrap()
            .add_cache(1, stamp, holder.clone())
            .unwrap();
        let cached = shadow
            .changes(shadow.all_keys(&dir), &dir, &members, 3)
            .unwrap();
        assert_eq!(cached.len(), 1, "{cached:?}");
        follower.apply(cached);
        let live = follower.state().unwrap();
        let copies = &live.directory.get(1).unwrap().meta().blocks[1].caches;
        assert_eq!(copies.len(), 1);
        assert!(copies[0].node.same(&holder));
        // Namespaces: one record for the cluster's set, gone with the last of them.
        dir.finish_namespace("ns/a", true);
        dir.finish_namespace("ns/b", true);
        let third = shadow
            .changes(shadow.all_keys(&dir), &dir, &members, 3)
            .unwrap();
        assert_eq!(third.len(), 1, "{third:?}");
        follower.apply(third);
        let live = follower.state().unwrap();
        assert_eq!(live.directory.namespaces(), dir.namespaces());
        dir.remove_namespace("ns/a");
        dir.remove_namespace("ns/b");
        let fourth = shadow
            .changes(shadow.all_keys(&dir), &dir, &members, 3)
            .unwrap();
        assert_eq!(
            fourth,
            vec![Change {
                key: Key::Namespaces,
                value: None
            }]
        );
        follower.apply(fourth.clone());
        follower.apply(fourth);
        assert!(follower.state().unwrap().directory.namespaces().is_empty());
        dir.finish_namespace("ns/c", true);
        follower.apply(
            shadow
                .changes(shadow.all_keys(&dir), &dir, &members, 3)
                .unwrap(),
        );
        // Through a snapshot too.
        let mut other = Book::default();
        other.restore(&follower.snapshot()).unwrap();
        assert_eq!(other, follower);
    }

    #[test]
    fn a_malformed_record_or_snapshot_is_a_typed_error() {
        let mut b = Book::default();
        assert!(matches!(b.restore(&[0xff; 9]), Err(Error::Protocol(_))));
        b.apply(vec![Change {
            key: Key::Entry(1),
            value: Some(vec![1, 2, 3]),
        }]);
        assert!(matches!(b.state(), Err(Error::Protocol(_))));
    }
}
