//! Starting a provider: a standalone daemon, or the provider a rank embeds for the blocks it
//! owns. Both serve a [`Store`], register with their cluster's manager and keep their lease
//! there ([`Keeper`]).

use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::service::contact::{self, Contact};
use crate::service::keeper::{Keeper, Registration};
use crate::service::pool::Pool;
use crate::service::protocol::{NodeInfo, NodeKind, Request};
use crate::service::provider::Provider;
use crate::service::server::Server;
use crate::service::store::Store;
use crate::transport::address;
use crate::transport::tcp::{self, Hello};

/// A fresh incarnation number (differs at every start).
pub fn new_incarnation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40) ^ 0x4a55_584d_454d // "JUXMEM"
}

/// The hello a node of the federation sends.
pub fn hello_of(node: &NodeInfo, cfg: &Config) -> Hello {
    Hello {
        name: node.name.clone(),
        cluster: node.cluster.clone(),
        federation: cfg.federation.clone(),
        incarnation: node.incarnation,
        software: format!("juxmem {}", env!("CARGO_PKG_VERSION")),
    }
}

/// A running provider.
pub struct RunningProvider {
    /// Who it is.
    pub node: NodeInfo,
    /// Its memory.
    pub store: Arc<Store>,
    /// Its outgoing connections.
    pub pool: Arc<Pool>,
    /// Its cluster's manager.
    pub manager: Contact,
    /// Its leases (at its manager, and wherever it takes locks or pins).
    pub keeper: Keeper,
    cfg: Config,
    server: Option<Server>,
    left: bool,
}

impl RunningProvider {
    /// Starts a provider named `<cluster>/<label>` (a daemon) or `<cluster>/<label>@<host>-<pid>` (a
    /// rank: job processes reuse labels) offering `capacity` bytes, registers it with the
    /// manager of its cluster and starts keeping its lease. A daemon registering under the
    /// name of a registered one replaces it (a restart).
    pub fn start(
        cfg: &Config,
        kind: NodeKind,
        label: &str,
        capacity: u64,
    ) -> Result<RunningProvider> {
        let cfg = &Config {
            net: cfg.net()?.require_security()?,
            ..cfg.clone()
        };
        let manager = contact::manager_of(cfg, &cfg.cluster)?;
        let endpoint = address::choose(
            cfg.listen.as_deref(),
            cfg.interface.as_deref(),
            Some(&manager.addr),
        )?;
        let listener = tcp::bind(&endpoint.bind.to_string())?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Network(format!("listener address: {e}")))?;
        let addr = endpoint.bound(local).to_string();
        let node = NodeInfo {
            name: match kind {
                // Job processes on several nodes reuse labels and may share a PID: the host
                // tells them apart (and tells operators where a rank ran).
                // A process joining twice (two handles, or a test) gets `.2`, `.3`, ...: a
                // second registration under the same name would replace the first.
                NodeKind::Rank => {
                    static JOINS: std::sync::atomic::AtomicU32 =
                        std::sync::atomic::AtomicU32::new(0);
                    let n = JOINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let again = if n == 0 {
                        String::new()
                    } else {
                        format!(".{}", n + 1)
                    };
                    format!(
                        "{}/{label}@{}-{}{again}",
                        cfg.cluster,
                        contact::hostname(),
                        std::process::id()
                    )
                }
                _ => format!("{}/{label}", cfg.cluster),
            },
            cluster: cfg.cluster.clone(),
            addr,
            kind,
            incarnation: new_incarnation(),
        };
        let hello = hello_of(&node, cfg);
        let pool = Arc::new(
            Pool::new(hello.clone(), cfg.net.clone())
                .following(cfg.rendezvous.clone(), cfg.timeout() + cfg.failure_timeout),
        );
        let store = Arc::new(Store::new(node.name.clone(), capacity));
        let server = Server::start(
            listener,
            hello.clone(),
            cfg.net.clone(),
            Arc::new(Provider::new(
                store.clone(),
                pool.clone(),
                cfg.push_timeout(),
            )),
        )?;
        let keeper = Keeper::start(
            hello,
            cfg.net.clone(),
            cfg.rendezvous.clone(),
            cfg.heartbeat(),
            Some(Registration {
                manager: manager.clone(),
                node: node.clone(),
                capacity,
                store: store.clone(),
                rejoin: kind == NodeKind::Rank,
            }),
        )?;
        Ok(RunningProvider {
            node,
            store,
            pool,
            manager,
            keeper,
            cfg: cfg.clone(),
            server: Some(server),
            left: false,
        })
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Starts a provider daemon again after its manager declared it dead: a new member (new
    /// incarnation, empty store) under the same name, on the same address.
    pub fn restart(self) -> Result<RunningProvider> {
        let (mut cfg, label, capacity) = (self.cfg.clone(), self.label(), self.store.capacity());
        cfg.listen = Some(self.node.addr.clone());
        let kind = self.node.kind;
        self.abandon();
        RunningProvider::start(&cfg, kind, &label, capacity)
    }

    fn label(&self) -> String {
        let prefix = format!("{}/", self.node.cluster);
        self.node
            .name
            .strip_prefix(&prefix)
            .unwrap_or(&self.node.name)
            .to_string()
    }

    /// Stops serving and heartbeating without leaving (its manager already let it go).
    fn abandon(mut self) {
        self.left = true;
        self.keeper.stop();
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
    }

    /// Leaves gracefully: its cluster's manager hands every copy it holds over (as after a
    /// failure, but at once) and tells the other clusters' managers; then it stops serving.
    pub fn leave(&mut self) -> Result<()> {
        if self.left {
            return Ok(());
        }
        self.left = true;
        let r = self
            .pool
            .call_manager(
                &self.manager,
                &Request::Leave {
                    node: self.node.clone(),
                },
            )
            .map(|_| ());
        match &r {
            // The manager is gone (say, the whole federation is stopping): nothing to hand over.
            Err(e @ (Error::Stale(_) | Error::Network(_))) => {
                tracing::info!("{} leaving: {e}", self.node.name)
            }
            Err(e) => tracing::warn!(
                "{} leaving: manager of {}: {e}",
                self.node.name,
                self.node.cluster
            ),
            Ok(()) => {}
        }
        self.keeper.stop();
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
        r
    }
}

impl Drop for RunningProvider {
    fn drop(&mut self) {
        let _ = self.leave();
    }
}
