//! Reactions to failures: a process declared dead (lease ran out, control connection lost,
//! left) gives up what it held, and if it was a provider its copies fail over ([`Effect`]s
//! carried out here: promote, fence); suspects reported by clients are probed at once; losses
//! in other clusters are learnt from their managers (a notice, and a periodic membership
//! check in case a notice was lost).

use std::time::Instant;

use super::Manager;
use crate::service::directory::{owner_of, Owner};
use crate::service::groups::Effect;
use crate::service::protocol::{ArrayId, NodeInfo, Request, Response};
use crate::transport::tcp::{self, NetConfig};

impl Manager {
    /// `owner` is gone: its write epochs are aborted, its pins and reader registrations
    /// dropped; if it was a member of this cluster, its copies fail over and the other
    /// managers are told.
    pub(super) fn owner_gone(&self, owner: &Owner, reason: &str) {
        let (member, aborted, effects, unconfirmed) = {
            let mut st = self.lock();
            let newly = st.leases.declare_dead(owner, reason != "left");
            let member = st.membership.remove(owner, reason, Instant::now());
            if !newly && member.is_none() {
                return;
            }
            let aborted = st.directory.owner_gone(owner);
            let unconfirmed = st.directory.unconfirmed_of(owner);
            let effects = member
                .as_ref()
                .map(|n| st.directory.node_gone(n))
                .unwrap_or_default();
            self.changed.notify_all();
            (member, aborted, effects, unconfirmed)
        };
        // What it was creating is undone: the name is free again.
        for array in unconfirmed {
            if let Err(e) = self.destroy(owner, array, true) {
                tracing::warn!("undoing a creation of {}: {e}", owner.0);
            }
        }
        for (name, epoch) in &aborted {
            tracing::warn!(
                "{} is gone ({reason}): its write epoch {epoch} of {name} is aborted",
                owner.0
            );
        }
        let Some(node) = member else {
            return;
        };
        if reason == "left" {
            tracing::info!("{} left", node.name);
        } else {
            tracing::warn!("{} declared dead: {reason}", node.name);
        }
        self.apply(effects);
        for peer in self.peers() {
            let r = self
                .pool
                .call_manager(&peer, &Request::Gone { node: node.clone() });
            if let Err(e) = r {
                tracing::warn!(
                    "telling cluster {} that {} is gone: {e}",
                    peer.cluster,
                    node
                );
            }
        }
        self.wake();
    }

    /// A provider of another cluster is gone or unreachable: it leaves this manager's groups.
    pub(super) fn evict(&self, node: &NodeInfo, reason: &str) {
        let effects = self.lock().directory.node_gone(node);
        if !effects.is_empty()
            || self
                .lock()
                .directory
                .entries()
                .any(|e| e.groups.holds(node))
        {
            tracing::warn!(
                "{} leaves the data groups of cluster {}: {reason}",
                node.name,
                self.me.cluster
            );
        }
        self.changed.notify_all();
        self.apply(effects);
        self.wake();
    }

    /// `node` did not answer: declared dead if it is a member here, evicted otherwise.
    pub(super) fn unreachable(&self, node: &NodeInfo, reason: &str) {
        let member = self.lock().membership.is_member(node);
        if member {
            self.owner_gone(&owner_of(node), reason);
        } else {
            self.evict(node, reason);
        }
    }

    /// Tells providers about new homes and terms. A new home that cannot be told is probed and
    /// told once more; one that still cannot be told is unreachable: the next copy takes over.
    pub(super) fn apply(&self, effects: Vec<(ArrayId, Effect)>) {
        for (array, effect) in effects {
            match effect {
                Effect::Promote { block, node, term } => {
                    tracing::info!(
                        "block {block} of array {array}: {} is home at term {term}",
                        node.name
                    );
                    let r = self
                        .pool
                        .call(&node.addr, &Request::Promote { array, block, term });
                    if let Err(e) = r {
                        self.unreachable(&node, &format!("promoting it failed: {e}"));
                    }
                }
                Effect::Fence { block, nodes, term } => {
                    for n in nodes {
                        // Best effort: a copy that misses it still refuses the old home's
                        // pushes once the new home pushes, and commits check terms anyway.
                        let r = self
                            .pool
                            .call(&n.addr, &Request::Fence { array, block, term });
                        if let Err(e) = r {
                            tracing::debug!("fencing {} for block {block}: {e}", n.name);
                        }
                    }
                }
                Effect::Lost { block } => {
                    let name = self
                        .lock()
                        .directory
                        .get(array)
                        .map(|e| e.spec.name.clone())
                        .unwrap_or_default();
                    tracing::error!("block {block} of {name} is lost: every copy is gone");
                }
            }
        }
    }

    /// Whether `node` answers a ping within the failure timeout (a failed request alone says
    /// little: the peer may have closed one connection for a reason of its own).
    fn probe(&self, node: &NodeInfo) -> bool {
        let net = NetConfig {
            io_timeout: self.cfg.failure_timeout.min(self.cfg.net.io_timeout),
            ..self.cfg.net.clone()
        };
        let answered = tcp::connect(&node.addr, self.pool.hello(), &net).and_then(|mut c| {
            if c.peer().incarnation != node.incarnation {
                return Ok(false);
            }
            c.send(&Request::Ping)?;
            Ok(matches!(c.recv::<Response>()?, Response::Ok))
        });
        matches!(answered, Ok(true))
    }

    /// Probes the copies a client could not reach; one that does not answer is declared dead
    /// (a member) or leaves the groups (another cluster's provider). A crashed process's port
    /// refuses at once; a paused one is given the failure timeout. A member that has not
    /// reconnected since this replica took office (it may be starting again with the rest of
    /// its cluster, on its data directory) is not judged by a probe: its lease decides.
    pub(super) fn check_suspects(&self, suspects: &[NodeInfo]) {
        for s in suspects {
            let (known, awaited) = {
                let st = self.lock();
                let known = st.directory.entries().any(|e| e.groups.holds(s));
                let owner = super::owner_of(s);
                let member = st.membership.named(&s.name).is_some_and(|m| m.same(s));
                (known, member && !st.controls.contains_key(&owner))
            };
            if awaited {
                continue;
            }
            if known && !self.probe(s) {
                self.unreachable(s, "it does not answer (reported by a client)");
            }
        }
    }

    /// Learns of losses in other clusters that a lost notice may have hidden: a provider of
    /// another cluster that its manager no longer lists leaves this manager's groups.
    pub(super) fn check_peers(&self) {
        let holders: Vec<NodeInfo> = {
            let st = self.lock();
            let mut v: Vec<NodeInfo> = Vec::new();
            for e in st.directory.entries() {
                for n in e.groups.nodes() {
                    if n.cluster != self.me.cluster && !v.iter().any(|x| x.same(&n)) {
                        v.push(n);
                    }
                }
            }
            v
        };
        if holders.is_empty() {
            return;
        }
        for peer in self.peers() {
            let mine: Vec<&NodeInfo> = holders
                .iter()
                .filter(|n| n.cluster == peer.cluster)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let Ok(Response::Members(live)) = self.pool.call_manager(&peer, &Request::Members)
            else {
                continue; // its manager is unreachable: that says nothing about its providers
            };
            for n in mine {
                if !live.iter().any(|l| l.same(n)) {
                    self.evict(
                        n,
                        &format!("no longer a member of cluster {}", peer.cluster),
                    );
                }
            }
        }
    }
}
