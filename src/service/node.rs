//! Starting a provider: a standalone daemon, or the provider a rank embeds for the blocks it
//! owns. Both serve a [`Store`] and register with their cluster's manager.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::service::contact::{self, Contact};
use crate::service::manager::{hello_of, new_epoch};
use crate::service::pool::Pool;
use crate::service::protocol::{NodeInfo, NodeKind, Request};
use crate::service::provider::Provider;
use crate::service::server::Server;
use crate::service::store::Store;
use crate::transport::tcp;

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
    cfg: Config,
    server: Option<Server>,
    left: bool,
}

impl RunningProvider {
    /// Starts a provider named `<cluster>/<label>` offering `capacity` bytes, and registers it
    /// with the manager of its cluster.
    pub fn start(
        cfg: &Config,
        kind: NodeKind,
        label: &str,
        capacity: u64,
    ) -> Result<RunningProvider> {
        let manager = contact::manager_of(cfg, &cfg.cluster)?;
        let listener = tcp::bind(&cfg.listen)?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Network(format!("listener address: {e}")))?
            .to_string();
        let node = NodeInfo {
            name: format!("{}/{label}", cfg.cluster),
            cluster: cfg.cluster.clone(),
            addr,
            kind,
            epoch: new_epoch(),
        };
        let hello = hello_of(&node, cfg);
        let pool = Arc::new(Pool::new(hello.clone(), cfg.net.clone()));
        let store = Arc::new(Store::new(node.name.clone(), capacity));
        let server = Server::start(
            listener,
            hello,
            cfg.net.clone(),
            Arc::new(Provider::new(store.clone(), pool.clone())),
        )?;
        pool.call_manager(
            &manager,
            &Request::Register {
                node: node.clone(),
                capacity,
            },
        )?;
        Ok(RunningProvider {
            node,
            store,
            pool,
            manager,
            cfg: cfg.clone(),
            server: Some(server),
            left: false,
        })
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Leaves gracefully: every block this provider is home of moves to a replica (the managers
    /// of the arrays decide), then the cluster's manager forgets it.
    pub fn leave(&mut self) -> Result<()> {
        if self.left {
            return Ok(());
        }
        self.left = true;
        let mut by_manager: HashMap<String, (Contact, Vec<(u64, u32)>)> = HashMap::new();
        for (array, block) in self.store.blocks() {
            let Ok(meta) = self.store.meta(array) else {
                continue;
            };
            let is_home = meta
                .blocks
                .get(block as usize)
                .and_then(|p| p.home.as_ref())
                .is_some_and(|h| h.name == self.node.name);
            if is_home {
                let c = Contact {
                    cluster: meta.manager.cluster.clone(),
                    addr: meta.manager.addr.clone(),
                    epoch: Some(meta.manager.epoch),
                    pid: None,
                };
                by_manager
                    .entry(c.addr.clone())
                    .or_insert((c, vec![]))
                    .1
                    .push((array, block));
            }
        }
        by_manager
            .entry(self.manager.addr.clone())
            .or_insert((self.manager.clone(), vec![]));
        let mut first_err = None;
        for (_, (c, homes)) in by_manager {
            if let Err(e) = self.pool.call_manager(
                &c,
                &Request::Leave {
                    node: self.node.clone(),
                    homes,
                },
            ) {
                tracing::warn!("{} leaving: manager of {}: {e}", self.node.name, c.cluster);
                first_err.get_or_insert(e);
            }
        }
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for RunningProvider {
    fn drop(&mut self) {
        if let Err(e) = self.leave() {
            tracing::warn!("{}: {e}", self.node.name);
        }
    }
}
