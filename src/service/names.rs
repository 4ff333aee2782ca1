//! Federation-wide uniqueness of array names: claims, as an I/O-free state machine.
//!
//! A name lives in the directory of the cluster where it was created, so "is this name free in
//! the other clusters, then create it here" is a race. Instead the creating manager *claims*
//! the name at every cluster of the federation, in one order for everyone (cluster names
//! sorted, its own included; at its own cluster the claim is its directory's creation in
//! progress), creates, and drops the claims. A cluster refuses a claim while it holds the name
//! (an entry, a creation in progress, or another creator's claim that has not expired). Two
//! creators of one name meet at the first cluster of the order they both need, and only one
//! gets past it.
//!
//! Claims expire (a creator that dies must not block the name forever), so a slow creator can
//! lose a claim to a competitor. Hence, once its blocks are placed, a creator *renews* every
//! claim, and adds the entry only while every renewed claim is still valid by its own clock
//! (measured from before it asked; leases assume bounded clock-rate drift, as the providers'
//! do). Two creators that both add the entry would each have held a valid claim at the other's
//! cluster while the other's creation was in progress there, which that cluster refuses.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Who claims a name: a creation under way at a cluster's manager.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Claimant {
    /// The creating cluster.
    pub cluster: String,
    /// Unique per creation (the manager's incarnation and a serial number).
    pub token: u64,
}

/// A cluster's answer to a claim.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClaimAnswer {
    /// The name is the claimant's until the lease runs out (or it drops it).
    Granted,
    /// An array of that name exists in `cluster`.
    Exists {
        /// Where.
        cluster: String,
    },
    /// Another creation of that name is under way, at `cluster`.
    Claimed {
        /// The creating cluster.
        cluster: String,
    },
    /// The cluster holds [`MAX_CLAIMS`] live claims already.
    Full,
    /// A namespace of that name exists in `cluster` (arrays and namespaces share names).
    NamespaceExists {
        /// Where.
        cluster: String,
    },
}

/// Most claims a cluster keeps at once (expired ones are pruned first): beyond, a claim is
/// refused, so that a peer cannot grow the table without bound.
pub const MAX_CLAIMS: usize = 65_536;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Claim {
    by: Claimant,
    expires: Instant,
}

/// The claims other clusters hold on names at this cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Claims {
    held: BTreeMap<String, Claim>,
}

impl Claims {
    /// The claim of `name` by `by` for `lease` from `now`, or a renewal of it. `local` is what
    /// this cluster's directory says of the name (`Some` if it holds an entry or creates one).
    pub fn claim(
        &mut self,
        name: &str,
        by: &Claimant,
        now: Instant,
        lease: Duration,
        local: Option<ClaimAnswer>,
    ) -> ClaimAnswer {
        if let Some(answer) = local {
            return answer;
        }
        if let Some(other) = self.holder(name, now) {
            if other != by {
                return ClaimAnswer::Claimed {
                    cluster: other.cluster.clone(),
                };
            }
        } else if self.held.len() >= MAX_CLAIMS {
            self.prune(now);
            if self.held.len() >= MAX_CLAIMS {
                return ClaimAnswer::Full;
            }
        }
        self.held.insert(
            name.to_string(),
            Claim {
                by: by.clone(),
                expires: now + lease,
            },
        );
        ClaimAnswer::Granted
    }

    /// Who holds a live claim on `name` at `now`.
    pub fn holder(&self, name: &str, now: Instant) -> Option<&Claimant> {
        self.held
            .get(name)
            .filter(|c| c.expires > now)
            .map(|c| &c.by)
    }

    /// `by` gives `name` up (after its creation, or when it failed).
    pub fn drop_claim(&mut self, name: &str, by: &Claimant) {
        if self.held.get(name).is_some_and(|c| &c.by == by) {
            self.held.remove(name);
        }
    }

    /// Forgets expired claims.
    pub fn prune(&mut self, now: Instant) {
        self.held.retain(|_, c| c.expires > now);
    }

    /// Claims held (live or not pruned yet).
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no claim is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// The order in which a creator claims a name at the federation's clusters: every cluster
/// (its own included) by name, so that any two creators meet at the first one.
pub fn claim_order(mut clusters: Vec<String>) -> Vec<String> {
    clusters.sort();
    clusters.dedup();
    clusters
}

/// Until when a creator may add its entry, given when it sent each renewal that was granted
/// (the earliest counts) and the lease: a quarter of the lease is kept as a margin for
/// clock-rate drift and the time the entry takes to add.
pub fn valid_until(renewals_sent: &[Instant], lease: Duration) -> Option<Instant> {
    renewals_sent.iter().min().map(|t| *t + lease - lease / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(c: &str, t: u64) -> Claimant {
        Claimant {
            cluster: c.into(),
            token: t,
        }
    }

    #[test]
    fn a_claim_excludes_other_creators_until_dropped_or_expired() {
        let mut c = Claims::default();
        let t0 = Instant::now();
        let lease = Duration::from_secs(3);
        let (a, b) = (who("A", 1), who("B", 2));
        assert_eq!(c.claim("x", &a, t0, lease, None), ClaimAnswer::Granted);
        assert_eq!(
            c.claim("x", &b, t0, lease, None),
            ClaimAnswer::Claimed {
                cluster: "A".into()
            }
        );
        // Renewal by the holder extends it.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(c.claim("x", &a, t1, lease, None), ClaimAnswer::Granted);
        let t2 = t0 + Duration::from_secs(4);
        assert!(matches!(
            c.claim("x", &b, t2, lease, None),
            ClaimAnswer::Claimed { .. }
        ));
        // Expired: another creator gets it; the former holder's renewal is refused.
        let t3 = t1 + lease;
        assert_eq!(c.claim("x", &b, t3, lease, None), ClaimAnswer::Granted);
        assert!(matches!(
            c.claim("x", &a, t3, lease, None),
            ClaimAnswer::Claimed { .. }
        ));
        // Only the holder drops it.
        c.drop_claim("x", &a);
        assert_eq!(c.holder("x", t3), Some(&b));
        c.drop_claim("x", &b);
        assert_eq!(c.holder("x", t3), None);
        // The local directory's word comes first.
        let exists = ClaimAnswer::Exists {
            cluster: "C".into(),
        };
        assert_eq!(c.claim("y", &a, t3, lease, Some(exists.clone())), exists);
        assert!(c.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut c = Claims::default();
        let t0 = Instant::now();
        let lease = Duration::from_secs(1);
        for i in 0..MAX_CLAIMS {
            let name = format!("n{i}");
            assert_eq!(
                c.claim(&name, &who("A", 1), t0, lease, None),
                ClaimAnswer::Granted
            );
        }
        assert_eq!(
            c.claim("one-more", &who("A", 1), t0, lease, None),
            ClaimAnswer::Full
        );
        // Once they expire, room again.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            c.claim("one-more", &who("A", 1), later, lease, None),
            ClaimAnswer::Granted
        );
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_order_is_every_cluster_sorted() {
        assert_eq!(
            claim_order(vec!["B".into(), "A".into(), "C".into(), "A".into()]),
            vec!["A", "B", "C"]
        );
    }
}
