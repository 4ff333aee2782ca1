//! The members of one cluster (provider daemons and job ranks), the memory they offer, and the
//! leases that keep them (and any process holding locks or pins at this manager) alive. Pure
//! bookkeeping with time passed in: the manager drives it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::service::directory::Owner;
use crate::service::protocol::{DeadMember, MemberStatus, NodeInfo, NodeKind};

/// One registered provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Member {
    node: NodeInfo,
    capacity: u64,
    reserved: u64,
}

/// The providers of a cluster.
#[derive(Clone, Debug, Default)]
pub struct Membership {
    members: Vec<Member>,
    dead: VecDeque<(NodeInfo, String, Instant)>,
}

/// The members as manager replicas replicate them (the recently dead are a report of the
/// replica that saw them die, not replicated).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members(Vec<Member>);

/// How many dead members the status report remembers.
const DEAD_SHOWN: usize = 32;

impl Membership {
    /// The members, as replicated.
    pub fn record(&self) -> Members {
        Members(self.members.clone())
    }

    /// A membership holding the replicated `members`.
    pub fn from_record(members: Members) -> Membership {
        Membership {
            members: members.0,
            dead: VecDeque::new(),
        }
    }

    /// Adds a provider; returns the previous incarnation of the same name, if one was still
    /// registered (it is gone: a process restarted under that name).
    pub fn register(&mut self, node: NodeInfo, capacity: u64) -> Option<NodeInfo> {
        let old = self
            .members
            .iter()
            .position(|m| m.node.name == node.name)
            .map(|i| self.members.remove(i));
        // The same incarnation registering again (with a new leader) keeps what is placed on
        // it.
        let reserved = match &old {
            Some(m) if m.node.incarnation == node.incarnation => m.reserved,
            _ => 0,
        };
        self.members.push(Member {
            node,
            capacity,
            reserved,
        });
        old.map(|m| m.node)
            .filter(|o| o.incarnation != self.members.last().map_or(0, |m| m.node.incarnation))
    }

    /// Removes a provider (dead or left) if `owner` is its current incarnation; returns it.
    pub fn remove(&mut self, owner: &Owner, reason: &str, now: Instant) -> Option<NodeInfo> {
        let i = self
            .members
            .iter()
            .position(|m| m.node.name == owner.0 && m.node.incarnation == owner.1)?;
        let node = self.members.remove(i).node;
        self.dead
            .push_front((node.clone(), reason.to_string(), now));
        self.dead.truncate(DEAD_SHOWN);
        Some(node)
    }

    /// Whether `node` (this incarnation) is a live member.
    pub fn is_member(&self, node: &NodeInfo) -> bool {
        self.members.iter().any(|m| m.node.same(node))
    }

    /// The live member named `name`, if any.
    pub fn named(&self, name: &str) -> Option<&NodeInfo> {
        self.members
            .iter()
            .map(|m| &m.node)
            .find(|n| n.name == name)
    }

    /// The live members.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.members.iter().map(|m| m.node.clone()).collect()
    }

    /// Members declared dead lately, newest first.
    pub fn dead(&self, now: Instant) -> Vec<DeadMember> {
        self.dead
            .iter()
            .map(|(node, reason, at)| DeadMember {
                node: node.clone(),
                reason: reason.clone(),
                ago_s: now.saturating_duration_since(*at).as_secs_f64(),
            })
            .collect()
    }

    /// Picks `count` distinct provider daemons with room for `bytes` each (most free memory
    /// first), not named in `exclude`, and reserves the memory.
    pub fn reserve(
        &mut self,
        cluster: &str,
        bytes: u64,
        count: u32,
        exclude: &[String],
    ) -> Result<Vec<NodeInfo>> {
        let mut candidates: Vec<usize> = (0..self.members.len())
            .filter(|&i| {
                let m = &self.members[i];
                m.node.kind == NodeKind::Daemon
                    && !exclude.contains(&m.node.name)
                    && m.capacity.saturating_sub(m.reserved) >= bytes
            })
            .collect();
        candidates.sort_by_key(|&i| {
            std::cmp::Reverse(self.members[i].capacity - self.members[i].reserved)
        });
        if candidates.len() < count as usize {
            let daemons: Vec<String> = self
                .members
                .iter()
                .filter(|m| m.node.kind == NodeKind::Daemon)
                .map(|m| {
                    format!(
                        "{} ({} of {} bytes free)",
                        m.node.name,
                        m.capacity - m.reserved.min(m.capacity),
                        m.capacity
                    )
                })
                .collect();
            return Err(Error::Capacity(format!(
                "cluster {cluster} needs {count} provider daemon(s) with {bytes} bytes free for a copy, \
                 but has {} suitable: daemons {daemons:?}",
                candidates.len()
            )));
        }
        Ok(candidates[..count as usize]
            .iter()
            .map(|&i| {
                self.members[i].reserved += bytes;
                self.members[i].node.clone()
            })
            .collect())
    }

    /// Memory placed on `node` is free again (its copy was dropped).
    pub fn release(&mut self, node: &NodeInfo, bytes: u64) {
        if let Some(m) = self.members.iter_mut().find(|m| m.node.same(node)) {
            m.reserved = m.reserved.saturating_sub(bytes);
        }
    }

    /// The registered providers.
    pub fn status(&self) -> Vec<MemberStatus> {
        self.members
            .iter()
            .map(|m| MemberStatus {
                node: m.node.clone(),
                capacity: m.capacity,
                reserved: m.reserved,
            })
            .collect()
    }
}

/// Leases of the processes this manager deals with (members, lock holders, readers): each
/// renews its lease by heartbeats; one not renewed for `timeout` is declared dead, and a dead
/// incarnation stays dead (a paused process that wakes up must register again, empty).
#[derive(Clone, Debug)]
pub struct Leases {
    timeout: Duration,
    renewed: BTreeMap<Owner, Instant>,
    /// Owners declared dead, and whether they crashed (rather than left).
    dead: BTreeMap<Owner, bool>,
}

impl Leases {
    /// Leases that run out after `timeout` without renewal.
    pub fn new(timeout: Duration) -> Leases {
        Leases {
            timeout,
            renewed: BTreeMap::new(),
            dead: BTreeMap::new(),
        }
    }

    /// The lease duration.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Renews `owner`'s lease (`Fenced` if it was declared dead).
    pub fn renew(&mut self, owner: &Owner, now: Instant) -> Result<()> {
        if self.dead.contains_key(owner) {
            return Err(Error::Fenced(format!(
                "{} (incarnation {}) was declared dead: its locks and pins were released and its \
                 copies handed over; register again to rejoin",
                owner.0, owner.1
            )));
        }
        self.renewed.insert(owner.clone(), now);
        Ok(())
    }

    /// Starts a lease for `owner` if it has none (so that what it takes expires even if it
    /// never renews).
    pub fn touch(&mut self, owner: &Owner, now: Instant) -> Result<()> {
        if self.renewed.contains_key(owner) {
            return Ok(());
        }
        self.renew(owner, now)
    }

    /// A fresh registration: `owner` is alive again (with nothing held).
    pub fn revive(&mut self, owner: &Owner, now: Instant) {
        self.dead.remove(owner);
        self.renewed.insert(owner.clone(), now);
    }

    /// Whether `owner` was declared dead (crashed or left).
    pub fn is_dead(&self, owner: &Owner) -> bool {
        self.dead.contains_key(owner)
    }

    /// Whether `owner` crashed (declared dead without leaving).
    pub fn crashed(&self, owner: &Owner) -> bool {
        self.dead.get(owner).copied().unwrap_or(false)
    }

    /// Moves every lease `by` later: the manager itself was stalled (paused, starved) that
    /// long, so the heartbeats queued meanwhile have not been read yet; no lease ran out
    /// because of the processes.
    pub fn extend(&mut self, by: Duration) {
        for t in self.renewed.values_mut() {
            *t += by;
        }
    }

    /// Leases run out at `now`.
    pub fn expired(&self, now: Instant) -> Vec<Owner> {
        self.renewed
            .iter()
            .filter(|(_, &t)| now.saturating_duration_since(t) > self.timeout)
            .map(|(o, _)| o.clone())
            .collect()
    }

    /// Declares `owner` dead (`crashed`: rather than left); false if it already was.
    pub fn declare_dead(&mut self, owner: &Owner, crashed: bool) -> bool {
        self.renewed.remove(owner);
        self.dead.insert(owner.clone(), crashed).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, kind: NodeKind) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            cluster: "A".into(),
            addr: "127.0.0.1:1".into(),
            kind,
            incarnation: 1,
        }
    }

    #[test]
    fn leases_run_out_and_the_dead_stay_dead() {
        let t0 = Instant::now();
        let mut l = Leases::new(Duration::from_secs(3));
        let a: Owner = ("A/p0".into(), 1);
        l.renew(&a, t0).unwrap();
        assert!(l.expired(t0 + Duration::from_secs(2)).is_empty());
        l.renew(&a, t0 + Duration::from_secs(2)).unwrap();
        assert!(l.expired(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(l.expired(t0 + Duration::from_secs(6)), vec![a.clone()]);
        assert!(l.declare_dead(&a, true));
        assert!(l.crashed(&a));
        let e = l.renew(&a, t0 + Duration::from_secs(7)).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Fenced);
        l.revive(&a, t0 + Duration::from_secs(8));
        assert!(!l.is_dead(&a));
        // The manager was stalled 10 s: nobody's lease runs out because of it.
        l.extend(Duration::from_secs(10));
        assert!(l.expired(t0 + Duration::from_secs(19)).is_empty());
    }

    #[test]
    fn reserves_daemons_with_most_room_and_fails_clearly() {
        let mut m = Membership::default();
        m.register(node("A/p0", NodeKind::Daemon), 100);
        m.register(node("A/p1", NodeKind::Daemon), 300);
        m.register(node("A/rank0", NodeKind::Rank), 1000);
        let got = m.reserve("A", 50, 1, &[]).unwrap();
        assert_eq!(got[0].name, "A/p1");
        let got = m.reserve("A", 90, 2, &[]).unwrap();
        assert_eq!(got.len(), 2);
        let e = m.reserve("A", 200, 1, &[]).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Capacity);
        assert!(e.to_string().contains("200 bytes"), "{e}");
        let e = m
            .reserve("A", 1, 1, &["A/p0".into(), "A/p1".into()])
            .unwrap_err();
        assert!(e.to_string().contains("has 0 suitable"), "{e}");
    }
}
