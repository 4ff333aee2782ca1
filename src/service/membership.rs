//! The members of one cluster (provider daemons and job ranks) and the memory they offer.
//! Pure bookkeeping: the manager drives it.

use crate::error::{Error, Result};
use crate::service::protocol::{MemberStatus, NodeInfo, NodeKind};

/// One registered provider.
#[derive(Clone, Debug)]
struct Member {
    node: NodeInfo,
    capacity: u64,
    reserved: u64,
}

/// The providers of a cluster.
#[derive(Clone, Debug, Default)]
pub struct Membership {
    members: Vec<Member>,
}

impl Membership {
    /// Adds (or re-adds, after a restart) a provider.
    pub fn register(&mut self, node: NodeInfo, capacity: u64) {
        self.members.retain(|m| m.node.name != node.name);
        self.members.push(Member {
            node,
            capacity,
            reserved: 0,
        });
    }

    /// Removes a provider.
    pub fn leave(&mut self, name: &str) {
        self.members.retain(|m| m.node.name != name);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, kind: NodeKind) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            cluster: "A".into(),
            addr: "127.0.0.1:1".into(),
            kind,
            epoch: 1,
        }
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
