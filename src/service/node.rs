//! Starting a provider: a standalone daemon, or the provider a rank embeds for the blocks it
//! owns. Both serve a [`Store`], register with their cluster's manager and keep their lease
//! there ([`Keeper`]). A daemon given a data directory ([`DataDir`]) keeps its identity and
//! blocks there: started again on it, it resumes as the same member with what it held (after a
//! whole cluster stopped), or, if its manager handed its copies over meanwhile, starts as a
//! new member, empty (what it held moved aside in the directory).

use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::service::contact::{self, Contact};
use crate::service::data_dir::{DataDir, Identity};
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

/// A provider's label: its name without the `<cluster>/` it starts with.
pub fn label_of(node: &NodeInfo) -> &str {
    node.name
        .strip_prefix(node.cluster.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(&node.name)
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
    disk: Option<Arc<DataDir>>,
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
        cfg.transport.check()?;
        RunningProvider::launch(cfg, kind, label, capacity, None, None)
    }

    /// [`Self::start`] for a daemon kept in `disk`. With an identity there (a provider of this
    /// cluster named `<cluster>/<label>`), it listens on the same address and resumes as that
    /// member with the blocks kept; if its manager refuses (it no longer counts it a member),
    /// those are moved aside and it starts as a new member, empty.
    pub fn start_on(
        cfg: &Config,
        label: &str,
        capacity: u64,
        disk: DataDir,
    ) -> Result<RunningProvider> {
        cfg.transport.check()?;
        let disk = Arc::new(disk);
        let Some(saved) = disk.identity()? else {
            return RunningProvider::launch(
                cfg,
                NodeKind::Daemon,
                label,
                capacity,
                Some(disk),
                None,
            );
        };
        let want = format!("{}/{label}", cfg.cluster);
        if saved.node.name != want || saved.node.kind != NodeKind::Daemon {
            return Err(Error::InvalidArgument(format!(
                "data directory {} belongs to provider {} of cluster {}, not {want}: start that \
                 one on it, or give this one another directory",
                disk.path().display(),
                saved.node.name,
                saved.node.cluster
            )));
        }
        // An address with any port (`:0`) leaves the choice to it; another one is a mistake.
        let any_port = |l: &str| l.rsplit_once(':').is_some_and(|(_, p)| p == "0");
        if let Some(listen) = cfg
            .listen
            .as_deref()
            .filter(|l| *l != saved.node.addr && !any_port(l))
        {
            return Err(Error::InvalidArgument(format!(
                "{} resumes on {} (its data directory {} says so: the placements name that \
                 address), not on {listen}; leave out --listen or give that address",
                saved.node.name,
                saved.node.addr,
                disk.path().display()
            )));
        }
        // Started with the rest of its cluster, it waits (bounded) for a manager to lead.
        let deadline = std::time::Instant::now() + cfg.timeout();
        let resumed = loop {
            match RunningProvider::launch(
                cfg,
                NodeKind::Daemon,
                label,
                capacity,
                Some(disk.clone()),
                Some(&saved.node),
            ) {
                Err(e @ (Error::Stale(_) | Error::NotLeader(_) | Error::Network(_)))
                    if std::time::Instant::now() < deadline =>
                {
                    tracing::info!("{}: waiting for its manager: {e}", saved.node.name);
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                r => break r,
            }
        };
        match resumed {
            Err(Error::Fenced(why)) => {
                let aside = disk.set_aside()?;
                tracing::warn!(
                    "{}: {why}; starting as a new member, empty (what {} held is in {})",
                    saved.node.name,
                    disk.path().display(),
                    aside.map_or("nothing".into(), |p| p.display().to_string())
                );
                disk.forget_identity();
                RunningProvider::launch(cfg, NodeKind::Daemon, label, capacity, Some(disk), None)
            }
            r => r,
        }
    }

    /// Starts a provider, as `resumed` (kept in `disk`) or as a new member.
    fn launch(
        cfg: &Config,
        kind: NodeKind,
        label: &str,
        capacity: u64,
        disk: Option<Arc<DataDir>>,
        resumed: Option<&NodeInfo>,
    ) -> Result<RunningProvider> {
        let cfg = &Config {
            net: cfg.net()?.require_security()?,
            ..cfg.clone()
        };
        let manager = contact::manager_of(cfg, &cfg.cluster)?;
        let (listener, addr) = match resumed {
            Some(n) => (tcp::bind(&n.addr)?, n.addr.clone()),
            None => {
                let endpoint = address::choose(
                    cfg.listen.as_deref(),
                    cfg.interface.as_deref(),
                    Some(&manager.addr),
                )?;
                let listener = tcp::bind(&endpoint.bind.to_string())?;
                let local = listener
                    .local_addr()
                    .map_err(|e| Error::Network(format!("listener address: {e}")))?;
                (listener, endpoint.bound(local).to_string())
            }
        };
        let node = resumed.cloned().unwrap_or_else(|| NodeInfo {
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
        });
        let store = Arc::new(match &disk {
            Some(d) => {
                if resumed.is_none() {
                    if let Some(aside) = d.set_aside()? {
                        tracing::warn!(
                            "{}: blocks of a former member moved to {}",
                            node.name,
                            aside.display()
                        );
                    }
                    d.set_identity(&Identity { node: node.clone() })?;
                }
                Store::open(node.name.clone(), capacity, d.clone())?
            }
            None => Store::new(node.name.clone(), capacity),
        });
        // Should it not start, what it set up lets go of the directory (connection threads
        // may outlive it).
        let detach = |e: Error| {
            store.detach_disk();
            e
        };
        let hello = hello_of(&node, cfg);
        let pool = Arc::new(
            Pool::new(hello.clone(), cfg.net.clone())
                .following(cfg.rendezvous.clone(), cfg.timeout() + cfg.failure_timeout),
        );
        let server = Server::start(
            listener,
            hello.clone(),
            cfg.net.clone(),
            Arc::new(Provider::new(
                node.clone(),
                cfg,
                store.clone(),
                pool.clone(),
                cfg.push_timeout(),
            )),
        )
        .map_err(detach)?;
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
                durable: disk.is_some(),
                resume: resumed.is_some(),
            }),
        )
        .map_err(detach)?;
        Ok(RunningProvider {
            node,
            store,
            pool,
            manager,
            keeper,
            cfg: cfg.clone(),
            server: Some(server),
            disk,
            left: false,
        })
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Starts a provider daemon again after its manager declared it dead: a new member (new
    /// incarnation, empty store and data directory) under the same name, on the same address.
    pub fn restart(mut self) -> Result<RunningProvider> {
        let (mut cfg, label, capacity) = (
            self.cfg.clone(),
            label_of(&self.node).to_string(),
            self.store.capacity(),
        );
        cfg.listen = Some(self.node.addr.clone());
        let kind = self.node.kind;
        let disk = self.disk.take();
        self.store.detach_disk();
        self.abandon();
        RunningProvider::launch(&cfg, kind, &label, capacity, disk, None)
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
