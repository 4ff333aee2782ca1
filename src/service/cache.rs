//! A provider's read cache (CANTO's tracked copies), as bookkeeping with no I/O: which cache
//! copies it holds (a committed stamp of a block of an array, outside that block's data
//! group), their bytes, which was used last, and the counters `juxmem status` and the tests
//! read. The store keeps the data and counts the bytes against the provider's capacity; when a
//! block of a data group needs room, cache copies go first, least recently used first.
//!
//! A cache copy never goes stale in place: a stamp's content is immutable. It stops being
//! useful when a release gives its block a newer stamp; the array's manager then tells the
//! holder to drop it (`Invalidate`), and only holders of such copies hear about it.

use std::collections::HashMap;

use crate::service::protocol::{ArrayId, CacheStats, NodeInfo, Stamp};

/// A cache copy's key.
pub type Key = (ArrayId, u32, Stamp);

struct Cached<D> {
    data: D,
    bytes: u64,
    /// When it was last used (a tick of this cache's clock).
    used: u64,
    /// The array's manager, the only one who may invalidate it.
    manager: NodeInfo,
}

/// The cache copies one provider holds.
pub struct Caches<D> {
    held: HashMap<Key, Cached<D>>,
    tick: u64,
    bytes: u64,
    stats: CacheStats,
}

impl<D> Default for Caches<D> {
    fn default() -> Self {
        Caches {
            held: HashMap::new(),
            tick: 0,
            bytes: 0,
            stats: CacheStats::default(),
        }
    }
}

impl<D: Clone> Caches<D> {
    /// The copy of `key`, if held (a hit: it becomes the most recently used).
    pub fn get(&mut self, key: &Key) -> Option<D> {
        self.tick += 1;
        let c = self.held.get_mut(key)?;
        c.used = self.tick;
        self.stats.hits += 1;
        Some(c.data.clone())
    }

    /// Holds `data` (`bytes` long) as the copy of `key`, tracked by `manager`; replaces a copy
    /// of the same key.
    pub fn insert(&mut self, key: Key, data: D, bytes: u64, manager: NodeInfo) {
        self.tick += 1;
        if let Some(old) = self.held.remove(&key) {
            self.bytes -= old.bytes;
        }
        self.held.insert(
            key,
            Cached {
                data,
                bytes,
                used: self.tick,
                manager,
            },
        );
        self.bytes += bytes;
        self.stats.fills += 1;
    }

    /// Drops the copy of `key` (its tracking was refused, say).
    pub fn remove(&mut self, key: &Key) -> Option<D> {
        let c = self.held.remove(key)?;
        self.bytes -= c.bytes;
        Some(c.data)
    }

    /// Drops the least recently used copy, to make room: its bytes, or `None` if none is held.
    pub fn evict(&mut self) -> Option<(Key, D, u64)> {
        let key = *self.held.iter().min_by_key(|(_, c)| c.used)?.0;
        let c = self.held.remove(&key)?;
        self.bytes -= c.bytes;
        self.stats.evictions += 1;
        Some((key, c.data, c.bytes))
    }

    /// The manager of `array` (`by`, a cluster's manager) says these copies are stale: drops
    /// those it tracks. Returns the dropped data. An invalidation from another cluster's
    /// manager drops nothing.
    pub fn invalidate(&mut self, array: ArrayId, copies: &[(u32, Stamp)], by: &str) -> Vec<D> {
        self.stats.invalidations += 1;
        let mut out = Vec::new();
        for &(block, stamp) in copies {
            let key = (array, block, stamp);
            if self.held.get(&key).is_some_and(|c| c.manager.cluster == by) {
                out.extend(self.remove(&key));
            }
        }
        out
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Copies held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The counters, with what is held now.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            copies: self.held.len() as u64,
            bytes: self.bytes,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::protocol::NodeKind;

    fn manager(cluster: &str) -> NodeInfo {
        NodeInfo {
            name: format!("{cluster}/manager"),
            cluster: cluster.into(),
            addr: "127.0.0.1:1".into(),
            kind: NodeKind::Manager,
            incarnation: 1,
        }
    }

    fn stamp(version: u64) -> Stamp {
        Stamp {
            version,
            epoch: version,
        }
    }

    #[test]
    fn the_least_recently_used_copy_goes_first_and_only_its_manager_invalidates() {
        let mut c = Caches::<u32>::default();
        c.insert((1, 0, stamp(1)), 10, 100, manager("A"));
        c.insert((1, 1, stamp(1)), 11, 50, manager("A"));
        c.insert((2, 0, stamp(3)), 20, 25, manager("B"));
        assert_eq!(c.bytes(), 175);
        // A hit makes (1, 0) the most recent: (1, 1) is now the oldest.
        assert_eq!(c.get(&(1, 0, stamp(1))), Some(10));
        assert_eq!(c.get(&(1, 0, stamp(2))), None);
        assert_eq!(c.evict().map(|e| (e.0, e.2)), Some(((1, 1, stamp(1)), 50)));
        assert_eq!(c.bytes(), 125);
        // Another cluster's manager cannot drop array 1's copies; its own can, and only those
        // it lists.
        assert!(c.invalidate(1, &[(0, stamp(1))], "B").is_empty());
        assert_eq!(
            c.invalidate(1, &[(0, stamp(1)), (0, stamp(9))], "A"),
            vec![10]
        );
        assert_eq!(c.len(), 1);
        let s = c.stats();
        assert_eq!(
            (
                s.copies,
                s.bytes,
                s.fills,
                s.hits,
                s.invalidations,
                s.evictions
            ),
            (1, 25, 3, 1, 2, 1)
        );
        assert_eq!(c.remove(&(2, 0, stamp(3))), Some(20));
        assert!(c.is_empty() && c.bytes() == 0 && c.evict().is_none());
    }
}
