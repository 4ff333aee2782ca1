//! Authorization of requests against the peer's identity ([`Identity`]: its cluster and role,
//! from its credential once TLS backs it, from its hello until then) and its session.
//!
//! The rules about *who owns what* are the state machines' (a pin, a reader registration and a
//! write epoch belong to the process that took them: [`directory`](super::directory); a stamp
//! may be installed only by the block's home at the current term: [`copy`](super::copy)); the
//! rules about *which kind of peer* may ask are here, applied by the services:
//!
//! - manager: `Register` and `Resume` only from a credential of the manager's own cluster (for
//!   a node of that cluster, registering itself); `Leave` only for oneself, and a member's
//!   `Renew` only with its cluster's credential (the connection it renews on becomes its
//!   control connection, whose close declares it dead); `Gone` only from the manager of the
//!   gone node's cluster (another cluster); `Reserve` and `Release` only from a manager;
//!   `ClaimName` and `DropClaim` only from the manager of the claiming cluster; `Commit`,
//!   `Abort`, `Unpin`, `RemoveReader` (and a `WaitVersion` naming a reader) only from the
//!   owner of the epoch, pin or reader. Directory requests (`Create`, `Lookup`, `Destroy`,
//!   `CreateNamespace`, `DestroyNamespace`, ...) from any member of the federation: per-array access rules are not asked for.
//! - provider: `Host`, `Promote`, `Fence`, `Restore` and `Drop` only from the manager of the
//!   array's cluster (the one holding its directory entry, which may be another cluster than
//!   the provider's); `Install` only from the block's home at the copy's term.
//!
//! A refusal is `Error::Refused` naming the request and the peer; the service logs it with the
//! peer's address. Nothing is changed by a refused request.

use crate::error::Error;
use crate::service::protocol::NodeId;
use crate::transport::tcp::{Conn, Identity, Role};

/// Who sent a request: what its credential says (cluster, role) and what it claims to be
/// (its hello's name and incarnation; not backed by the credential).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its claimed name and incarnation.
    pub id: NodeId,
    /// Its identity.
    pub identity: Identity,
}

impl Peer {
    /// The peer of a connection.
    pub fn of(conn: &Conn) -> Peer {
        Peer {
            id: NodeId {
                name: conn.peer().name.clone(),
                incarnation: conn.peer().incarnation,
            },
            identity: conn.identity().clone(),
        }
    }

    /// Whether it is a cluster's manager.
    pub fn is_manager(&self) -> bool {
        self.identity.role == Role::Manager
    }

    /// Whether it is the manager of `cluster`.
    pub fn is_manager_of(&self, cluster: &str) -> bool {
        self.identity.is_manager_of(cluster)
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = match self.identity.role {
            Role::Manager => "manager",
            Role::Provider => "provider",
        };
        write!(
            f,
            "{} (a {role} of cluster {})",
            self.id.name, self.identity.cluster
        )
    }
}

/// What every authorization refusal says (the state machines' ownership refusals too), so
/// that the services log those, and not a `Refused` met while serving a request.
pub const NOT_AUTHORIZED: &str = " is not authorized: ";

/// The refusal of `what` from `peer`, because `why`.
pub fn deny(peer: &Peer, what: &str, why: impl std::fmt::Display) -> Error {
    Error::Refused(format!("{what} from {peer}{NOT_AUTHORIZED}{why}"))
}

/// Whether `error` is an authorization refusal.
pub fn is_refusal(error: &Error) -> bool {
    matches!(error, Error::Refused(m) if m.contains(NOT_AUTHORIZED))
}

/// Logs an authorization refusal with the peer's address (`error` is what the peer is
/// answered); other errors are not logged here.
pub fn log_refusal(conn: &mut Conn, error: &Error) {
    if let (true, Error::Refused(m)) = (is_refusal(error), error) {
        let addr = conn
            .stream()
            .tcp()
            .peer_addr()
            .map_or_else(|_| "an unknown address".to_string(), |a| a.to_string());
        tracing::warn!("refused a request from {addr}: {m}");
    }
}

/// `Ok` if `peer` is a manager (of any cluster of the federation).
pub fn require_manager(peer: &Peer, what: &str) -> crate::error::Result<()> {
    if peer.is_manager() {
        Ok(())
    } else {
        Err(deny(peer, what, "only a cluster's manager sends it"))
    }
}

/// `Ok` if `peer` is the manager of `cluster`.
pub fn require_manager_of(peer: &Peer, cluster: &str, what: &str) -> crate::error::Result<()> {
    if peer.is_manager_of(cluster) {
        Ok(())
    } else {
        Err(deny(
            peer,
            what,
            format!("only the manager of cluster {cluster} sends it"),
        ))
    }
}
