//! Outgoing connections, kept open and reused per peer address; calls to a cluster's manager
//! follow its leader (see [`Pool::call_manager`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Rendezvous;
use crate::error::{Error, Result};
use crate::service::contact::{self, Contact};
use crate::service::protocol::{Request, Response};
use crate::transport::tcp::{self, Conn, Hello, NetConfig};

/// A pool of handshaken connections, by address.
pub struct Pool {
    me: Hello,
    cfg: NetConfig,
    idle: Mutex<HashMap<String, Vec<Conn>>>,
    /// Where to look for a cluster's manager replicas when the one asked does not lead.
    rendezvous: Option<Rendezvous>,
    /// How long to look for a leader (an election and the failure detection before it).
    follow: Duration,
}

impl Pool {
    /// A pool speaking as `me`.
    pub fn new(me: Hello, cfg: NetConfig) -> Pool {
        Pool {
            me,
            cfg,
            idle: Mutex::new(HashMap::new()),
            rendezvous: None,
            follow: Duration::ZERO,
        }
    }

    /// A pool whose manager calls follow the leader of each cluster, found through
    /// `rendezvous`, for up to `budget`.
    pub fn following(mut self, rendezvous: Option<Rendezvous>, budget: Duration) -> Pool {
        self.rendezvous = rendezvous;
        self.follow = budget;
        self
    }

    /// Our hello.
    pub fn hello(&self) -> &Hello {
        &self.me
    }

    /// Network settings.
    pub fn net(&self) -> &NetConfig {
        &self.cfg
    }

    /// A pooled connection to `addr` the peer has not closed, or a new one.
    fn checkout(&self, addr: &str) -> Result<Conn> {
        loop {
            let pooled = self
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(addr)
                .and_then(Vec::pop);
            match pooled {
                Some(mut c) => {
                    if !c.peer_closed() {
                        return Ok(c);
                    } // else closed meanwhile (idle timeout, peer restarted)
                }
                None => return tcp::connect(addr, &self.me, &self.cfg),
            }
        }
    }

    fn checkin(&self, addr: &str, mut conn: Conn) {
        let _ = conn.set_timeouts(self.cfg.io_timeout);
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr.to_string())
            .or_default()
            .push(conn);
    }

    /// Runs `f` on a connection to `addr`; the connection returns to the pool if `f` succeeds
    /// (it is dropped otherwise: its stream may be mid-message). A request is never sent
    /// twice: the peer may have acted on it before a failure (a commit, a lock request).
    pub fn with<R>(&self, addr: &str, f: impl FnOnce(&mut Conn) -> Result<R>) -> Result<R> {
        let mut conn = self.checkout(addr)?;
        let r = f(&mut conn)?;
        self.checkin(addr, conn);
        Ok(r)
    }

    /// Sends `req` to `addr` and returns the reply (an `Error` reply becomes `Err`).
    pub fn call(&self, addr: &str, req: &Request) -> Result<Response> {
        self.with(addr, |c| {
            c.send(req)?;
            c.recv::<Response>()
        })?
        .into_result()
    }

    /// Like [`Pool::call`] for a request that may legitimately wait up to `wait`.
    pub fn call_waiting(&self, addr: &str, req: &Request, wait: Duration) -> Result<Response> {
        self.with(addr, |c| {
            c.set_read_timeout(Some(wait + self.cfg.io_timeout))?;
            c.send(req)?;
            c.recv::<Response>()
        })?
        .into_result()
    }

    /// Calls the manager of `contact`'s cluster, starting with the one the contact names.
    /// When that one does not lead (any more), is gone or answers as another incarnation, the
    /// request goes to the cluster's other replicas (as the rendezvous names them) until one
    /// leads, for up to the pool's follow budget. A request whose answer was lost is sent again
    /// only if repeating it is safe ([`Request::safe_to_repeat`]).
    pub fn call_manager(&self, contact: &Contact, req: &Request) -> Result<Response> {
        self.call_manager_waiting(contact, req, None)
    }

    /// Like [`Pool::call_manager`] for a request that may legitimately wait up to `wait`.
    pub fn call_manager_waiting(
        &self,
        contact: &Contact,
        req: &Request,
        wait: Option<Duration>,
    ) -> Result<Response> {
        let deadline = Instant::now() + self.follow;
        let mut at = contact.clone();
        let mut tried: Vec<String> = Vec::new();
        loop {
            let (sent, r) = self.call_contact(&at, req, wait);
            let e = match r {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            let elsewhere = match &e {
                Error::NotLeader(_) | Error::Stale(_) => true,
                Error::Network(_) | Error::Timeout { .. } => !sent || req.safe_to_repeat(),
                _ => false,
            };
            let Some(rendezvous) = self.rendezvous.as_ref().filter(|_| elsewhere) else {
                return Err(e);
            };
            tried.push(at.addr.clone());
            loop {
                if Instant::now() >= deadline {
                    return Err(e);
                }
                let all = contact::candidates(rendezvous, &contact.cluster);
                // A cluster of one manager has nobody to fail over to: its error stands.
                if all.len() < 2 && all.iter().all(|c| tried.contains(&c.addr)) {
                    return Err(e);
                }
                let next = all.into_iter().find(|c| !tried.contains(&c.addr));
                match next {
                    Some(c) => {
                        tracing::debug!(
                            "manager of {} at {}: {e}; asking {}",
                            contact.cluster,
                            at.addr,
                            c.addr
                        );
                        at = c;
                        break;
                    }
                    None => {
                        // Every replica asked: wait for an election, then ask them all again.
                        tried.clear();
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
    }

    /// One attempt of [`Pool::call_manager`]: whether the request was sent, and its answer.
    fn call_contact(
        &self,
        contact: &Contact,
        req: &Request,
        wait: Option<Duration>,
    ) -> (bool, Result<Response>) {
        // One connection: checked to be the contact's manager, then the request on it.
        let sent = std::cell::Cell::new(false);
        let r = self.with(&contact.addr, |c| {
            self.check_peer(contact, c.peer().incarnation, c.peer_fingerprint())?;
            if let Some(w) = wait {
                c.set_read_timeout(Some(w + self.cfg.io_timeout))?;
            }
            sent.set(true);
            c.send(req)?;
            c.recv::<Response>()
        });
        let r = match r {
            Err(Error::Network(m)) if !sent.get() => Err(contact::stale(
                contact,
                &format!("nothing answers there ({m})"),
            )),
            other => other.and_then(Response::into_result),
        };
        (sent.get(), r)
    }

    /// Checks that the manager at `contact`'s address is the one the contact names.
    fn check_peer(
        &self,
        contact: &Contact,
        incarnation: u64,
        fingerprint: Option<String>,
    ) -> Result<()> {
        if let Some(want) = contact.incarnation {
            if want != incarnation {
                return Err(contact::stale(
                    contact,
                    &format!("the manager answering there has incarnation {incarnation}"),
                ));
            }
        }
        // The contact names the manager's certificate: another one answering there is not it.
        if let (Some(want), Some(got)) = (&contact.fingerprint, &fingerprint) {
            if want != got {
                return Err(Error::Refused(format!(
                    "the manager of {} at {} presents certificate sha256:{got}, its contact file \
                     names sha256:{want}",
                    contact.cluster, contact.addr
                )));
            }
        }
        Ok(())
    }
}
