//! The client side of leases: one thread per process keeps a control connection to every
//! manager this process deals with and renews its lease there every heartbeat interval (a
//! quarter of the failure timeout). A process killed outright is noticed at once (its control
//! connections close); a paused or cut-off one when its leases run out.
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
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::service::contact::Contact;
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

struct Inner {
    hello: Hello,
    net: NetConfig,
    interval: Duration,
    registration: Option<Registration>,
    /// Control connections by manager address (`None`: to reconnect).
    conns: Mutex<BTreeMap<String, Option<Conn>>>,
    stop: AtomicBool,
    evictions: AtomicU64,
    evicted: AtomicBool,
}

/// A running lease keeper.
pub struct Keeper {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Inner {
    fn call(&self, conn: &mut Conn, req: &Request) -> Result<Response> {
        conn.send(req)?;
        conn.recv::<Response>()?.into_result()
    }

    fn is_home(&self, addr: &str) -> bool {
        self.registration
            .as_ref()
            .is_some_and(|r| r.manager.addr == addr)
    }

    /// Opens a control connection to `addr` and establishes the lease on it (registering at
    /// our own manager; rejoining elsewhere).
    fn open(&self, addr: &str) -> Result<Conn> {
        let mut conn = tcp::connect(addr, &self.hello, &self.net)?;
        match &self.registration {
            Some(r) if r.manager.addr == addr => {
                if let Some(want) = r.manager.incarnation {
                    if conn.peer().incarnation != want {
                        return Err(crate::service::contact::stale(
                            &r.manager,
                            "another manager incarnation answers there",
                        ));
                    }
                }
                self.call(
                    &mut conn,
                    &Request::Register {
                        node: r.node.clone(),
                        capacity: r.capacity,
                    },
                )?;
            }
            _ => {
                self.call(&mut conn, &Request::Renew { rejoin: true })?;
            }
        }
        Ok(conn)
    }

    /// One heartbeat on every control connection (the map stays locked for the round, so a
    /// connection is never opened twice to the same manager).
    fn renew_all(&self) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let evicted = self.evicted.load(Ordering::SeqCst);
        for (addr, slot) in conns.iter_mut() {
            if evicted && self.is_home(addr) {
                continue; // the process starts again as a new member
            }
            let renewed = match slot.as_mut() {
                Some(c) => self.call(c, &Request::Renew { rejoin: false }).map(|_| ()),
                None => Err(Error::Network("no control connection".into())),
            };
            let Err(e) = renewed else {
                continue;
            };
            if matches!(e, Error::Fenced(_)) {
                self.evictions.fetch_add(1, Ordering::SeqCst);
                match &self.registration {
                    Some(r) if self.is_home(addr) && r.rejoin => {
                        tracing::warn!(
                            "{}: declared dead by the manager of {} ({e}); its copies were \
                             handed over: registering again, empty",
                            r.node.name,
                            r.node.cluster
                        );
                        r.store.clear();
                    }
                    Some(r) if self.is_home(addr) => {
                        tracing::warn!(
                            "{}: declared dead by the manager of {} ({e}); its copies were \
                             handed over",
                            r.node.name,
                            r.node.cluster
                        );
                        self.evicted.store(true, Ordering::SeqCst);
                        *slot = None;
                        continue;
                    }
                    _ => tracing::warn!("lease at {addr} lost: {e}"),
                }
            } else {
                tracing::debug!("control connection to {addr}: {e}");
            }
            *slot = match self.open(addr) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::debug!("reconnecting to {addr}: {e}");
                    None
                }
            };
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
        let inner = Arc::new(Inner {
            hello,
            net,
            interval,
            registration,
            conns: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
            evictions: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
        });
        if let Some(r) = &inner.registration {
            let addr = r.manager.addr.clone();
            let conn = inner.open(&addr).map_err(|e| match e {
                Error::Network(m) => crate::service::contact::stale(
                    &r.manager,
                    &format!("nothing answers there ({m})"),
                ),
                other => other,
            })?;
            inner
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(addr, Some(conn));
        }
        let i = inner.clone();
        let thread = std::thread::Builder::new()
            .name("juxmem-keeper".into())
            .spawn(move || {
                while !i.stop.load(Ordering::SeqCst) {
                    // Sleep in short steps so that stopping is prompt.
                    let mut slept = Duration::ZERO;
                    while slept < i.interval && !i.stop.load(Ordering::SeqCst) {
                        let step = Duration::from_millis(50).min(i.interval - slept);
                        std::thread::sleep(step);
                        slept += step;
                    }
                    if !i.stop.load(Ordering::SeqCst) {
                        i.renew_all();
                    }
                }
            })
            .map_err(|e| Error::Network(format!("cannot start the lease keeper: {e}")))?;
        Ok(Keeper {
            inner,
            thread: Some(thread),
        })
    }

    /// Makes sure this process holds a lease at the manager at `addr` (before taking a lock or
    /// a pin there).
    pub fn ensure(&self, addr: &str) -> Result<()> {
        let mut conns = self.inner.conns.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(conns.get(addr), Some(Some(_))) {
            return Ok(());
        }
        let c = self.inner.open(addr)?;
        conns.insert(addr.to_string(), Some(c));
        Ok(())
    }

    /// How many times a manager declared this process dead.
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::SeqCst)
    }

    /// Whether its own manager declared this provider dead and it does not rejoin by itself
    /// (see [`Registration::rejoin`]).
    pub fn evicted(&self) -> bool {
        self.inner.evicted.load(Ordering::SeqCst)
    }

    /// Stops renewing and closes the control connections.
    pub fn stop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.inner
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop();
    }
}
