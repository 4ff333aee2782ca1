//! The data-sharing service: a federation of clusters, each with a manager (membership,
//! directory, version ordering) and providers (the memory holding data blocks).
//!
//! - [`protocol`]: the messages.
//! - The protocol's logic, as deterministic state machines with no I/O (tested directly and
//!   model-checked): [`coherence`] (versions, write lock, retention of an array), [`groups`]
//!   (data groups: placement, terms, failover, restores), [`directory`] (a manager's arrays and
//!   who holds what), [`membership`] (a cluster's providers, their memory, leases), [`copy`]
//!   (one provider's copy of a block: the data plane's fencing rules).
//! - [`store`]: a provider's blocks and memory budget (over [`copy`]).
//! - [`manager`], [`provider`], [`server`], [`node`], [`keeper`]: the services over TCP and
//!   the heartbeats that keep leases.
//! - [`pool`], [`contact`], [`selection`]: connections, rendezvous, what a transfer selects.
//! - [`authz`]: who may ask what (the peer's identity and session).
//! - [`failpoint`]: fault injection for fault tests (`JUXMEM_FAILPOINTS`).

pub mod authz;
pub mod cache;
pub mod coherence;
pub mod contact;
pub mod copy;
pub mod data_dir;
pub mod directory;
pub mod failpoint;
pub mod groups;
pub mod keeper;
pub mod manager;
pub mod membership;
pub mod names;
pub mod node;
pub mod pool;
pub mod protocol;
pub mod provider;
pub mod replication;
pub mod selection;
pub mod server;
pub mod store;
