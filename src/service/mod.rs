//! The data-sharing service: a federation of clusters, each with a manager (membership,
//! directory, version ordering) and providers (the memory holding data blocks).
//!
//! - [`protocol`]: the messages.
//! - [`coherence`]: versions and the write lock of an array (pure state machine).
//! - [`membership`]: a cluster's providers and their memory (pure).
//! - [`store`]: a provider's blocks, snapshots and working copies (pure data management).
//! - [`manager`], [`provider`], [`server`], [`node`]: the services over TCP.
//! - [`pool`], [`contact`], [`selection`]: connections, rendezvous, what a transfer selects.

pub mod coherence;
pub mod contact;
pub mod manager;
pub mod membership;
pub mod node;
pub mod pool;
pub mod protocol;
pub mod provider;
pub mod selection;
pub mod server;
pub mod store;
