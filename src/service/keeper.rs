//! The client side of leases: a process keeps a control connection to every manager it deals
//! with, each renewed by its own thread every heartbeat interval (a quarter of the failure
//! timeout), so that a manager that stops answering holds up its own heartbeats only. A process
//! killed outright is noticed at once (its control connections close); a paused or cut-off one
//! when its leases run out.
//!
//! Control connections are kept per cluster, not per address: when a cluster's manager fails
//! over, the heartbeat thread finds the new leader through the rendezvous (the leader's
//! contact, then every replica's) and establishes the lease there again.
//!
//! At its own cluster's manager, the control connection also carries the provider's
//! registration. If that manager declared this process dead (it was paused or cut off for
//! longer than the failure timeout), its copies were handed over to others. A job process
//! (whose own blocks are never given back to it) then clears its store and registers again,
//! empty; a provider daemon is reported evicted, and starts again as a new member (a new
//! incarnation), so that nothing said about its former self (acknowledgements, restore
//! answers) can be taken for the new one. At other managers, a process declared dead rejoins
//! with nothing held (its locks were aborted and its pins dropped, which its later calls find
//! out with typed errors).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Rendezvous;
use crate::error::{Error, Result};
use crate::service::contact::{self, Contact};
use crate::service::protocol::{NodeInfo, Request, Response};
use crate::service::store::Store;
use crate::transport::tcp::{self, Conn, Hello, NetConfig};

/// The membership a keeper maintains at its own cluster's manager.
pub struct Registration {
    /// The cluster's manager.
    pub manager: Contact,
    /// This provider.
    pub node: NodeInfo,
    /// Memory offered.
    pub capacity: u64,
    /// Its memory (cleared if the manager declared it dead and it rejoins).
    pub store: Arc<Store>,
    /// Declared dead: rejoin under the same identity, empty (job processes), or only report
    /// it (`Keeper::evicted`: daemons start again as a new member).
    pub rejoin: bool,
    /// Kept in a data directory: once registered (or from the start, when read back from
    /// it), the provider only ever resumes (`Request::Resume`), so that a manager that no
    /// longer counts it a member (it was declared dead, by another leader or before a
    /// restart) refuses it instead of taking its stale copies for a new member's.
    pub durable: bool,
    /// Read back from a data directory: the first registration already resumes.
    pub resume: bool,
}

struct Shared {
    hello: Hello,
    net: NetConfig,
    rendezvous: Option<Rendezvous>,
    interval: Duration,
    registration: Option<Registration>,
    stop: AtomicBool,
    evictions: AtomicU64,
    evicted: AtomicBool,
    /// Registrations resume (see [`Registration::durable`]).
    resuming: AtomicBool,
}

/// One cluster's control connection (to its leading manager) and its heartbeat thread.
struct Control {
    /// The manager last reached.
    contact: Mutex<Contact>,
    conn: Mutex<Option<Conn>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A running lease keeper.
pub struct Keeper {
    shared: Arc<Shared>,
    controls: Mutex<BTreeMap<String, Arc<Control>>>,
}

fn call(conn: &mut Conn, req: &Request) -> Result<Response> {
    conn.send(req)?;
    conn.recv::<Response>()?.into_result()
}

impl Shared {
    fn home(&self, cluster: &str) -> Option<&Registration> {
        self.registration
            .as_ref()
            .filter(|r| r.node.cluster == cluster)
    }

    /// Opens a control connection to the leading manager of `control`'s cluster, the one last
    /// reached first, and establishes the lease on it.
    fn open(&self, control: &Control) -> Result<Conn> {
        let last = control
            .contact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut r = self.open_at(&last);
        let Some(rendezvous) = &self.rendezvous else {
            return r;
        };
        for c in contact::candidates(rendezvous, &last.cluster) {
            match &r {
                Ok(_) => break,
                Err(Error::NotLeader(_) | Error::Stale(_) | Error::Network(_)) => {}
                Err(_) => break,
            }
            if c.addr == last.addr && c.incarnation == last.incarnation {
                continue;
            }
            r = self.open_at(&c);
            if r.is_ok() {
                *control.contact.lock().unwrap_or_else(|e| e.into_inner()) = c;
            }
        }
        r
    }

    /// Opens a control connection to the manager `c` names and establishes the lease on it
    /// (registering at our own manager; rejoining elsewhere).
    fn open_at(&self, c: &Contact) -> Result<Conn> {
        let mut conn = tcp::connect(&c.addr, &self.hello, &self.net).map_err(|e| match e {
            Error::Network(m) => contact::stale(c, &format!("nothing answers there ({m})")),
            other => other,
        })?;
        if let Some(want) = c.incarnation {
            if conn.peer().incarnation != want {
                return Err(contact::stale(
                    c,
                    "another manager incarnation answers there",
                ));
            }
        }
        match self.home(&c.cluster) {
            Some(r) => {
                let req = if self.resuming.load(Ordering::SeqCst) {
                    Request::Resume {
                        node: r.node.clone(),
                        capacity: r.capacity,
                    }
                } else {
                    Request::Register {
                        node: r.node.clone(),
                        capacity: r.capacity,
                        rejoin: r.rejoin,
                    }
                };
                call(&mut conn, &req)?;
                if r.durable {
                    self.resuming.store(true, Ordering::SeqCst);
                }
            }
            None => {
                call(&mut conn, &Request::Renew { rejoin: true })?;
            }
        }
        Ok(conn)
    }

    /// The manager of `cluster` refused us as dead.
    fn declared_dead(&self, cluster: &str, e: &Error) {
        self.evictions.fetch_add(1, Ordering::SeqCst);
        match self.home(cluster) {
            Some(r) if r.rejoin => {
                tracing::warn!(
                    "{}: declared dead by the manager of {} ({e}); its copies were handed \
                     over: registering again, empty",
                    r.node.name,
                    r.node.cluster
                );
                r.store.clear();
            }
            Some(r) => {
                tracing::warn!(
                    "{}: declared dead by the manager of {} ({e}); its copies were handed over",
                    r.node.name,
                    r.node.cluster
                );
                self.evicted.store(true, Ordering::SeqCst);
            }
            None => tracing::warn!("lease at the manager of {cluster} lost: {e}"),
        }
    }

    /// One heartbeat on `cluster`'s control connection, reconnecting if it broke.
    fn renew(&self, cluster: &str, control: &Control, slot: &mut MutexGuard<'_, Option<Conn>>) {
        let renewed = match slot.as_mut() {
            Some(c) => call(c, &Request::Renew { rejoin: false }).map(|_| ()),
            None => Err(Error::Network("no control connection".into())),
        };
        let Err(e) = renewed else {
            return;
        };
        if matches!(e, Error::Fenced(_)) {
            self.declared_dead(cluster, &e);
        } else {
            tracing::debug!("control connection to the manager of {cluster}: {e}");
        }
        if self.evicted.load(Ordering::SeqCst) && self.home(cluster).is_some() {
            **slot = None; // the process starts again as a new member
            return;
        }
        **slot = match self.open(control) {
            Ok(c) => Some(c),
            Err(e) => {
                if matches!(e, Error::Fenced(_)) {
                    self.declared_dead(cluster, &e);
                } else {
                    tracing::debug!("reconnecting to the manager of {cluster}: {e}");
                }
                None
            }
        };
    }

    fn stopping(&self, cluster: &str) -> bool {
        self.stop.load(Ordering::SeqCst)
            || (self.evicted.load(Ordering::SeqCst) && self.home(cluster).is_some())
    }

    /// The heartbeat thread of one control connection.
    fn run(&self, cluster: &str, control: &Control) {
        while !self.stopping(cluster) {
            // Sleep in short steps so that stopping is prompt.
            let mut slept = Duration::ZERO;
            while slept < self.interval && !self.stopping(cluster) {
                let step = Duration::from_millis(50).min(self.interval - slept);
                std::thread::sleep(step);
                slept += step;
            }
            if !self.stopping(cluster) {
                let mut slot = control.conn.lock().unwrap_or_else(|e| e.into_inner());
                self.renew(cluster, control, &mut slot);
            }
        }
    }
}

impl Keeper {
    /// Starts keeping leases as `hello`, renewing every `interval`; with a registration, the
    /// provider joins its cluster first (an error if its manager refuses or does not answer).
    /// Managers that fail over are found again through `rendezvous`.
    pub fn start(
        hello: Hello,
        net: NetConfig,
        rendezvous: Option<Rendezvous>,
        interval: Duration,
        registration: Option<Registration>,
    ) -> Result<Keeper> {
        let home = registration.as_ref().map(|r| r.manager.clone());
        let resuming = registration.as_ref().is_some_and(|r| r.resume);
        let keeper = Keeper {
            shared: Arc::new(Shared {
                hello,
                net,
                rendezvous,
                interval,
                registration,
                stop: AtomicBool::new(false),
                evictions: AtomicU64::new(0),
                evicted: AtomicBool::new(false),
                resuming: AtomicBool::new(resuming),
            }),
            controls: Mutex::new(BTreeMap::new()),
        };
        if let Some(manager) = home {
            keeper.ensure(&manager)?;
        }
        Ok(keeper)
    }

    /// Makes sure this process holds a lease at the manager of `manager`'s cluster (before
    /// taking a lock or a pin there); `manager` is where to ask first.
    pub fn ensure(&self, manager: &Contact) -> Result<()> {
        let cluster = manager.cluster.clone();
        let control = {
            let mut controls = self.controls.lock().unwrap_or_else(|e| e.into_inner());
            controls
                .entry(cluster.clone())
                .or_insert_with(|| {
                    Arc::new(Control {
                        contact: Mutex::new(manager.clone()),
                        conn: Mutex::new(None),
                        thread: Mutex::new(None),
                    })
                })
                .clone()
        };
        {
            let mut slot = control.conn.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(self.shared.open(&control)?);
            }
        }
        let mut thread = control.thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_none() {
            let (shared, c, k) = (self.shared.clone(), control.clone(), cluster.clone());
            *thread = Some(
                std::thread::Builder::new()
                    .name(format!("juxmem-keeper-{cluster}"))
                    .spawn(move || shared.run(&k, &c))
                    .map_err(|e| Error::Network(format!("cannot start a lease keeper: {e}")))?,
            );
        }
        Ok(())
    }

    /// How many times a manager declared this process dead.
    pub fn evictions(&self) -> u64 {
        self.shared.evictions.load(Ordering::SeqCst)
    }

    /// Whether its own manager declared this provider dead and it does not rejoin by itself
    /// (see [`Registration::rejoin`]).
    pub fn evicted(&self) -> bool {
        self.shared.evicted.load(Ordering::SeqCst)
    }

    /// Stops renewing and closes the control connections.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let controls =
            std::mem::take(&mut *self.controls.lock().unwrap_or_else(|e| e.into_inner()));
        for c in controls.values() {
            if let Some(t) = c.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = t.join();
            }
            c.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop();
    }
}
