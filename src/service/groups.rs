//! The data groups of one array as its manager sees them: for every block, its home, its
//! replicas (current, or being restored), its placement term and its committed stamps. A
//! deterministic state machine with no I/O: the manager feeds it commits and failures and
//! carries out the [`Effect`]s and restores it asks for; tests and the model check drive it
//! directly.
//!
//! - A commit is accepted only if every block it touched is still at the term its home
//!   published under, and the home holds the new stamp. The block's current copies become
//!   exactly those that acknowledged it; any other member must be restored before it counts.
//! - When a home is gone, a current replica (one holding every committed stamp) is promoted
//!   under a new term; the other copies are fenced at that term. With no current replica the
//!   block is lost, and says so.
//! - A group short of the creator's redundancy (clusters x providers per cluster) gets new
//!   copies; a copy becomes current only once it holds every committed stamp.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::service::protocol::{
    BlockPlacement, Health, NodeId, NodeInfo, Redundancy, Stamp, Touched,
};

/// A replica in a data group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Replica {
    /// The provider.
    pub node: NodeInfo,
    /// Holds every committed stamp (else it is being restored).
    pub current: bool,
}

/// One block's data group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Group {
    term: u64,
    home: Option<NodeInfo>,
    replicas: Vec<Replica>,
    stamps: Vec<Stamp>,
}

/// What the manager must tell providers after a change of placement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// `node` is now the home of `block` at `term`.
    Promote {
        /// The block.
        block: u32,
        /// The new home.
        node: NodeInfo,
        /// The new term.
        term: u64,
    },
    /// The other copies of `block` must refuse anything older than `term`.
    Fence {
        /// The block.
        block: u32,
        /// The copies.
        nodes: Vec<NodeInfo>,
        /// The new term.
        term: u64,
    },
    /// Every copy of `block` is gone.
    Lost {
        /// The block.
        block: u32,
    },
}

/// A copy to bring up to date: fetch `stamps` from `sources` (nearest first) into `target`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RestoreTask {
    /// The block.
    pub block: u32,
    /// The copy being restored.
    pub target: NodeInfo,
    /// The committed stamps it must hold.
    pub stamps: Vec<Stamp>,
    /// Current copies to fetch from, in the target's cluster first.
    pub sources: Vec<NodeInfo>,
}

/// The data groups of one array.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DataGroups {
    redundancy: Redundancy,
    clusters: Vec<String>,
    groups: Vec<Group>,
}

impl DataGroups {
    /// Groups as placed at creation: `placements[b]` is block `b`'s home and replicas, all
    /// holding the initial zeros at term 1; `clusters` are the clusters chosen for copies.
    pub fn new(
        redundancy: Redundancy,
        clusters: Vec<String>,
        placements: Vec<(NodeInfo, Vec<NodeInfo>)>,
    ) -> DataGroups {
        let groups = placements
            .into_iter()
            .map(|(home, replicas)| Group {
                term: 1,
                home: Some(home),
                replicas: replicas
                    .into_iter()
                    .map(|node| Replica {
                        node,
                        current: true,
                    })
                    .collect(),
                stamps: vec![Stamp::default()],
            })
            .collect();
        DataGroups {
            redundancy,
            clusters,
            groups,
        }
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// True without blocks.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Block `b`'s placement as clients see it.
    pub fn placement(&self, b: usize) -> BlockPlacement {
        let g = &self.groups[b];
        let (current, restoring): (Vec<&Replica>, Vec<&Replica>) =
            g.replicas.iter().partition(|r| r.current);
        BlockPlacement {
            term: g.term,
            home: g.home.clone(),
            replicas: current.into_iter().map(|r| r.node.clone()).collect(),
            restoring: restoring.into_iter().map(|r| r.node.clone()).collect(),
            stamps: g.stamps.clone(),
            caches: Vec::new(),
        }
    }

    /// Block `b`'s committed stamps (ascending).
    pub fn placement_stamps(&self, b: usize) -> Result<&[Stamp]> {
        self.groups
            .get(b)
            .map(|g| g.stamps.as_slice())
            .ok_or_else(|| Error::InvalidArgument(format!("no block {b}")))
    }

    /// Every block's placement.
    pub fn placements(&self) -> Vec<BlockPlacement> {
        (0..self.groups.len()).map(|b| self.placement(b)).collect()
    }

    fn current_copies(g: &Group) -> impl Iterator<Item = &NodeInfo> {
        g.home
            .iter()
            .chain(g.replicas.iter().filter(|r| r.current).map(|r| &r.node))
    }

    /// Block `b`'s health. `stuck` says that no provider could take a missing copy lately.
    pub fn health(&self, b: usize, stuck: bool) -> Health {
        let g = &self.groups[b];
        if g.home.is_none() {
            return Health::Lost;
        }
        let current = Self::current_copies(g).count() as u32;
        if current >= self.redundancy.copies() {
            Health::Healthy
        } else if g.replicas.iter().any(|r| !r.current) && !stuck {
            Health::Restoring
        } else {
            Health::Degraded
        }
    }

    /// Checks that a release touching `touched` may commit: every block still at the term its
    /// home published under, the home among the holders.
    pub fn check_commit(&self, touched: &[Touched]) -> Result<()> {
        for t in touched {
            let g = self.groups.get(t.block as usize).ok_or_else(|| {
                Error::InvalidArgument(format!("the release names block {}", t.block))
            })?;
            if g.term != t.term {
                return Err(Error::Fenced(format!(
                    "block {} moved to term {} while its home published at term {}",
                    t.block, g.term, t.term
                )));
            }
            match &g.home {
                Some(h) if t.holders.iter().any(|id| h.is(id)) => {}
                Some(h) => {
                    return Err(Error::Fenced(format!(
                        "block {}: its home {} does not hold the release",
                        t.block, h.name
                    )))
                }
                None => return Err(Error::Lost(format!("block {} has no copy left", t.block))),
            }
        }
        Ok(())
    }

    /// Records a committed release (checked by [`DataGroups::check_commit`]): version
    /// `version` by write epoch `epoch`, with `floor` the array's oldest retained version.
    pub fn commit(&mut self, version: u64, epoch: u64, floor: u64, touched: &[Touched]) {
        for t in touched {
            let g = &mut self.groups[t.block as usize];
            g.stamps.push(Stamp { version, epoch });
            for r in &mut g.replicas {
                // A replica that missed the release (or is another incarnation than the one
                // that acknowledged it) must catch up before it counts again.
                r.current &= t.holders.iter().any(|id| r.node.is(id));
            }
        }
        self.prune(floor);
    }

    /// Drops the stamps no retained version needs (all but the newest at or below `floor`).
    pub fn prune(&mut self, floor: u64) {
        for g in &mut self.groups {
            let keep_from = g
                .stamps
                .iter()
                .rposition(|s| s.version <= floor)
                .unwrap_or(0);
            g.stamps.drain(..keep_from);
        }
    }

    /// A provider is gone (dead or left): its copies leave their groups, and each block it was
    /// home of gets a new home (a current replica, same cluster first) under a new term.
    pub fn node_gone(&mut self, node: &NodeInfo) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (b, g) in self.groups.iter_mut().enumerate() {
            let block = b as u32;
            g.replicas.retain(|r| !r.node.same(node));
            let Some(home) = g.home.clone().filter(|h| h.same(node)) else {
                continue;
            };
            let pick = g
                .replicas
                .iter()
                .position(|r| r.current && r.node.cluster == home.cluster)
                .or_else(|| g.replicas.iter().position(|r| r.current));
            match pick {
                Some(i) => {
                    let new_home = g.replicas.remove(i).node;
                    g.term += 1;
                    g.home = Some(new_home.clone());
                    effects.push(Effect::Promote {
                        block,
                        node: new_home,
                        term: g.term,
                    });
                    if !g.replicas.is_empty() {
                        effects.push(Effect::Fence {
                            block,
                            nodes: g.replicas.iter().map(|r| r.node.clone()).collect(),
                            term: g.term,
                        });
                    }
                }
                None => {
                    // Copies being restored may lack committed stamps: none can take over.
                    g.home = None;
                    g.term += 1;
                    g.replicas.clear();
                    effects.push(Effect::Lost { block });
                }
            }
        }
        effects
    }

    /// Whether `node` holds a copy of some block.
    pub fn holds(&self, node: &NodeInfo) -> bool {
        self.groups.iter().any(|g| {
            g.home.as_ref().is_some_and(|h| h.same(node))
                || g.replicas.iter().any(|r| r.node.same(node))
        })
    }

    /// Every provider holding a copy.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let mut out: Vec<NodeInfo> = Vec::new();
        for g in &self.groups {
            for n in g.home.iter().chain(g.replicas.iter().map(|r| &r.node)) {
                if !out.iter().any(|o| o.same(n)) {
                    out.push(n.clone());
                }
            }
        }
        out
    }

    /// Copies missing from the creator's redundancy, as (block, cluster) pairs: per cluster
    /// chosen at creation, as many as it lacks of `providers_per_cluster`. Lost blocks need
    /// nothing (there is nothing to copy from).
    pub fn missing(&self) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        for (b, g) in self.groups.iter().enumerate() {
            if g.home.is_none() {
                continue;
            }
            for c in &self.clusters {
                let have = g
                    .home
                    .iter()
                    .chain(g.replicas.iter().map(|r| &r.node))
                    .filter(|n| &n.cluster == c)
                    .count() as u32;
                for _ in have..self.redundancy.providers_per_cluster {
                    out.push((b as u32, c.clone()));
                }
            }
        }
        out
    }

    /// Names of the providers holding a copy of block `b` (to exclude when choosing another).
    pub fn holders(&self, b: u32) -> Vec<String> {
        let g = &self.groups[b as usize];
        g.home
            .iter()
            .chain(g.replicas.iter().map(|r| &r.node))
            .map(|n| n.name.clone())
            .collect()
    }

    /// Adds `node` to block `b`'s group as a copy to restore.
    pub fn add_copy(&mut self, b: u32, node: NodeInfo) {
        let g = &mut self.groups[b as usize];
        if g.home.is_some() && !g.replicas.iter().any(|r| r.node.name == node.name) {
            g.replicas.push(Replica {
                node,
                current: false,
            });
        }
    }

    /// The restores to run now: one per copy not current.
    pub fn restore_tasks(&self) -> Vec<RestoreTask> {
        let mut out = Vec::new();
        for (b, g) in self.groups.iter().enumerate() {
            for r in g.replicas.iter().filter(|r| !r.current) {
                let mut sources: Vec<NodeInfo> = Self::current_copies(g).cloned().collect();
                sources.sort_by_key(|s| s.cluster != r.node.cluster);
                if sources.is_empty() {
                    continue;
                }
                out.push(RestoreTask {
                    block: b as u32,
                    target: r.node.clone(),
                    stamps: g.stamps.clone(),
                    sources,
                });
            }
        }
        out
    }

    /// A restore of `target` finished holding `held`: it becomes current if it holds every
    /// committed stamp (a release may have committed meanwhile: then another round is needed).
    /// Only that incarnation: a late answer about an earlier membership changes nothing.
    pub fn restored(&mut self, b: u32, target: &NodeId, held: &[Stamp]) -> bool {
        let g = &mut self.groups[b as usize];
        let complete = g.stamps.iter().all(|s| held.contains(s));
        match g.replicas.iter_mut().find(|r| r.node.is(target)) {
            Some(r) if complete => {
                r.current = true;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::protocol::NodeKind;

    fn node(name: &str, cluster: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            cluster: cluster.into(),
            addr: String::new(),
            kind: NodeKind::Daemon,
            incarnation: 1,
        }
    }

    fn groups() -> DataGroups {
        DataGroups::new(
            Redundancy {
                clusters: 2,
                providers_per_cluster: 2,
            },
            vec!["A".into(), "B".into()],
            vec![(
                node("a0", "A"),
                vec![node("a1", "A"), node("b0", "B"), node("b1", "B")],
            )],
        )
    }

    fn touched(term: u64, holders: &[&str]) -> Vec<Touched> {
        vec![Touched {
            block: 0,
            term,
            holders: holders
                .iter()
                .map(|s| NodeId {
                    name: s.to_string(),
                    incarnation: 1,
                })
                .collect(),
        }]
    }

    #[test]
    fn a_dead_home_is_replaced_by_a_current_replica_of_its_cluster() {
        let mut g = groups();
        let effects = g.node_gone(&node("a0", "A"));
        assert_eq!(
            effects[0],
            Effect::Promote {
                block: 0,
                node: node("a1", "A"),
                term: 2
            }
        );
        assert!(matches!(&effects[1], Effect::Fence { nodes, term: 2, .. } if nodes.len() == 2));
        // A release published at term 1 can no longer commit.
        let e = g
            .check_commit(&touched(1, &["a0", "a1", "b0", "b1"]))
            .unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Fenced);
        assert_eq!(g.health(0, false), Health::Degraded);
        assert_eq!(g.missing(), vec![(0, "A".to_string())]);
    }

    #[test]
    fn a_replica_that_missed_a_release_is_restored_before_it_counts() {
        let mut g = groups();
        let t = touched(1, &["a0", "a1", "b0"]);
        g.check_commit(&t).unwrap();
        g.commit(1, 1, 0, &t);
        let p = g.placement(0);
        assert_eq!(p.restoring, vec![node("b1", "B")]);
        assert_eq!(g.health(0, false), Health::Restoring);
        // b1 missed v1: it cannot be promoted, even if every current copy dies.
        g.node_gone(&node("a0", "A"));
        g.node_gone(&node("a1", "A"));
        let effects = g.node_gone(&node("b0", "B"));
        assert_eq!(effects, vec![Effect::Lost { block: 0 }]);
        assert_eq!(g.health(0, false), Health::Lost);
    }

    #[test]
    fn restores_complete_only_with_every_committed_stamp() {
        let mut g = groups();
        g.node_gone(&node("b1", "B"));
        assert_eq!(g.missing(), vec![(0, "B".to_string())]);
        g.add_copy(0, node("b2", "B"));
        let task = &g.restore_tasks()[0];
        assert_eq!(task.sources[0].cluster, "B", "nearest source first");
        // A release commits v1 while b2 is fetching v0 (and b2 did not get the push).
        let t = touched(1, &["a0", "a1", "b0"]);
        g.commit(1, 1, 0, &t);
        let b2 = node("b2", "B").id();
        assert!(!g.restored(0, &b2, &[Stamp::default()]));
        let all = g.placement(0).stamps;
        let older = NodeId {
            incarnation: 0,
            ..b2.clone()
        };
        assert!(!g.restored(0, &older, &all), "another incarnation's answer");
        assert!(g.restored(0, &b2, &all));
        assert_eq!(g.health(0, false), Health::Healthy);
        assert!(g.missing().is_empty());
    }

    #[test]
    fn stamps_are_pruned_to_what_retained_versions_need() {
        let mut g = groups();
        for v in 1..=5u64 {
            let t = touched(1, &["a0", "a1", "b0", "b1"]);
            g.commit(v, v, v.saturating_sub(2), &t);
        }
        let stamps: Vec<u64> = g.placement(0).stamps.iter().map(|s| s.version).collect();
        assert_eq!(stamps, vec![3, 4, 5]);
    }
}
