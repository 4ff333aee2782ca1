//! The client side of leases: a process keeps a control connection to every manager it deals
//! with, each renewed by its own thread every heartbeat interval (a quarter of the failure
//! timeout), so that a manager that stops answering holds up its own heartbeats only. A process
//! killed outright is noticed at once (its control connections close); a paused or cut-off one
//! when its leases run out.
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
}

struct Shared {
    hello: Hello,
    net: NetConfig,
    interval: Duration,
    registration: Option<Registration>,
    stop: AtomicBool,
    evictions: AtomicU64,
    evicted: AtomicBool,
}

/// One manager's control connection and its heartbeat thread.
struct Control {
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
    fn home(&self, addr: &str) -> Option<&Registration> {
        self.registration
            .as_ref()
            .filter(|r| r.manager.addr == addr)
    }

    /// Opens a control connection to `addr` and establishes the lease on it (registering at
    /// our own manager; rejoining elsewhere).
    fn open(&self, addr: &str) -> Result<Conn> {
        let mut conn = tcp::connect(addr, &self.hello, &self.net)?;
        match self.home(addr) {
            Some(r) => {
                if let Some(want) = r.manager.incarnation {
                    if conn.peer().incarnation != want {
                        return Err(contact::stale(
                            &r.manager,
                            "another manager incarnation answers there",
                        ));
                    }
                }
                call(
                    &mut conn,
                    &Request::Register {
                        node: r.node.clone(),
                        capacity: r.capacity,
                        rejoin: r.rejoin,
                    },
                )?;
            }
            None => {
                call(&mut conn, &Request::Renew { rejoin: true })?;
            }
        }
        Ok(conn)
    }

    /// The manager at `addr` refused us as dead.
    fn declared_dead(&self, addr: &str, e: &Error) {
        self.evictions.fetch_add(1, Ordering::SeqCst);
        match self.home(addr) {
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
            None => tracing::warn!("lease at {addr} lost: {e}"),
        }
    }

    /// One heartbeat on `addr`'s control connection, reconnecting if it broke.
    fn renew(&self, addr: &str, slot: &mut MutexGuard<'_, Option<Conn>>) {
        let renewed = match slot.as_mut() {
            Some(c) => call(c, &Request::Renew { rejoin: false }).map(|_| ()),
            None => Err(Error::Network("no control connection".into())),
        };
        let Err(e) = renewed else {
            return;
        };
        if matches!(e, Error::Fenced(_)) {
            self.declared_dead(addr, &e);
        } else {
            tracing::debug!("control connection to {addr}: {e}");
        }
        if self.evicted.load(Ordering::SeqCst) && self.home(addr).is_some() {
            **slot = None; // the process starts again as a new member
            return;
        }
        **slot = match self.open(addr) {
            Ok(c) => Some(c),
            Err(e) => {
                if matches!(e, Error::Fenced(_)) {
                    self.declared_dead(addr, &e);
                } else {
                    tracing::debug!("reconnecting to {addr}: {e}");
                }
                None
            }
        };
    }

    fn stopping(&self, addr: &str) -> bool {
        self.stop.load(Ordering::SeqCst)
            || (self.evicted.load(Ordering::SeqCst) && self.home(addr).is_some())
    }

    /// The heartbeat thread of one control connection.
    fn run(&self, addr: &str, control: &Control) {
        while !self.stopping(addr) {
            // Sleep in short steps so that stopping is prompt.
            let mut slept = Duration::ZERO;
            while slept < self.interval && !self.stopping(addr) {
                let step = Duration::from_millis(50).min(self.interval - slept);
                std::thread::sleep(step);
                slept += step;
            }
            if !self.stopping(addr) {
                let mut slot = control.conn.lock().unwrap_or_else(|e| e.into_inner());
                self.renew(addr, &mut slot);
            }
        }
    }
}

impl Keeper {
    /// Starts keeping leases as `hello`, renewing every `interval`; with a registration, the
    /// provider joins its cluster first (an error if its manager refuses or does not answer).
    pub fn start(
        hello: Hello,
        net: NetConfig,
        interval: Duration,
        registration: Option<Registration>,
    ) -> Result<Keeper> {
        let home = registration.as_ref().map(|r| r.manager.clone());
        let keeper = Keeper {
            shared: Arc::new(Shared {
                hello,
                net,
                interval,
                registration,
                stop: AtomicBool::new(false),
                evictions: AtomicU64::new(0),
                evicted: AtomicBool::new(false),
            }),
            controls: Mutex::new(BTreeMap::new()),
        };
        if let Some(manager) = home {
            keeper.ensure(&manager.addr).map_err(|e| match e {
                Error::Network(m) => {
                    contact::stale(&manager, &format!("nothing answers there ({m})"))
                }
                other => other,
            })?;
        }
        Ok(keeper)
    }

    /// Makes sure this process holds a lease at the manager at `addr` (before taking a lock or
    /// a pin there).
    pub fn ensure(&self, addr: &str) -> Result<()> {
        let control = {
            let mut controls = self.controls.lock().unwrap_or_else(|e| e.into_inner());
            controls
                .entry(addr.to_string())
                .or_insert_with(|| {
                    Arc::new(Control {
                        conn: Mutex::new(None),
                        thread: Mutex::new(None),
                    })
                })
                .clone()
        };
        {
            let mut slot = control.conn.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(self.shared.open(addr)?);
            }
        }
        let mut thread = control.thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_none() {
            let (shared, c, a) = (self.shared.clone(), control.clone(), addr.to_string());
            *thread = Some(
                std::thread::Builder::new()
                    .name(format!("juxmem-keeper-{addr}"))
                    .spawn(move || shared.run(&a, &c))
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
