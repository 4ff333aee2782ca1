//! Outgoing connections, kept open and reused per peer address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::service::contact::{self, Contact};
use crate::service::protocol::{Request, Response};
use crate::transport::tcp::{self, Conn, Hello, NetConfig};

/// A pool of handshaken connections, by address.
pub struct Pool {
    me: Hello,
    cfg: NetConfig,
    idle: Mutex<HashMap<String, Vec<Conn>>>,
}

impl Pool {
    /// A pool speaking as `me`.
    pub fn new(me: Hello, cfg: NetConfig) -> Pool {
        Pool {
            me,
            cfg,
            idle: Mutex::new(HashMap::new()),
        }
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

    /// Calls a manager known from a contact, checking that it is the incarnation the contact
    /// names (another incarnation or no answer means the contact is stale).
    pub fn call_manager(&self, contact: &Contact, req: &Request) -> Result<Response> {
        let (incarnation, fingerprint) = self
            .with(&contact.addr, |c| {
                Ok((c.peer().incarnation, c.peer_fingerprint()))
            })
            .map_err(|e| match e {
                Error::Network(m) => {
                    contact::stale(contact, &format!("nothing answers there ({m})"))
                }
                other => other,
            })?;
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
        self.call(&contact.addr, req)
    }
}
