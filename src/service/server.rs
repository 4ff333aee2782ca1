//! The accept loop shared by managers and providers: one thread per connection, each running
//! request after request through a [`Handler`]. A connection that sends something malformed or
//! oversized is logged and closed; the service keeps serving everyone else.
//!
//! Resources are bounded: connections in all and per peer address (extra ones are refused at
//! once, with a reason, before any thread is started), and a handler that panics closes only
//! its connection (logged, its session cleaned up as for a closed connection).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::service::protocol::{Request, Response};
use crate::transport::tcp::{self, Conn, Hello, HelloReply, NetConfig};

/// How long a server keeps an idle connection (pooled by its client) open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// What a service does with requests.
pub trait Handler: Send + Sync + 'static {
    /// Per-connection state (what to undo if the peer disappears).
    type Session: Default + Send + 'static;

    /// Handles one request, writing its response (and bulk data) on `conn`. An `Err` means the
    /// connection is unusable (it is then closed); errors meant for the peer are sent as
    /// `Response::Error` and return `Ok`.
    fn handle(&self, session: &mut Self::Session, conn: &mut Conn, req: Request) -> Result<()>;

    /// The connection closed.
    fn closed(&self, _session: Self::Session) {}

    /// Whether the connection holds something (a write lock, read pins) that must live as long
    /// as the connection: such a connection is never closed for being idle (a writer may
    /// compute for hours between acquire and release); TCP keepalive still detects a dead peer.
    fn holds_state(&self, _session: &Self::Session) -> bool {
        false
    }
}

/// A running service.
pub struct Server {
    stop: Arc<AtomicBool>,
    addr: String,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `handler` on `listener` as `me`, refusing peers of another federation.
    pub fn start<H: Handler>(
        listener: TcpListener,
        me: Hello,
        cfg: NetConfig,
        handler: Arc<H>,
    ) -> Result<Server> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Network(format!("listener address: {e}")))?
            .to_string();
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Network(format!("listener: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("juxmem-accept-{}", me.name))
            .spawn(move || accept_loop(listener, me, cfg, handler, flag))
            .map_err(|e| Error::Network(format!("cannot start the accept thread: {e}")))?;
        Ok(Server {
            stop,
            addr,
            thread: Some(thread),
        })
    }

    /// `host:port` the service listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Stops accepting connections.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Open connections, in all and per peer address.
#[derive(Default)]
struct Counts {
    total: usize,
    per_host: HashMap<IpAddr, usize>,
}

/// One admitted connection; gives its slot back when dropped (whatever ends the thread).
struct Slot {
    counts: Arc<Mutex<Counts>>,
    host: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total -= 1;
        if let Some(n) = c.per_host.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                c.per_host.remove(&self.host);
            }
        }
    }
}

/// Admits a connection from `host` if under both limits, else says which limit it hit.
fn admit(counts: &Arc<Mutex<Counts>>, host: IpAddr, cfg: &NetConfig) -> Result<Slot, String> {
    let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
    let from_host = c.per_host.get(&host).copied().unwrap_or(0);
    if c.total >= cfg.max_connections {
        return Err(format!(
            "too many connections: {} open, the limit is {} (JUXMEM_MAX_CONNECTIONS)",
            c.total, cfg.max_connections
        ));
    }
    if from_host >= cfg.max_connections_per_host {
        return Err(format!(
            "too many connections from {host}: {from_host} open, the limit is {} \
             (JUXMEM_MAX_CONNECTIONS_PER_HOST)",
            cfg.max_connections_per_host
        ));
    }
    c.total += 1;
    *c.per_host.entry(host).or_insert(0) += 1;
    Ok(Slot {
        counts: counts.clone(),
        host,
    })
}

/// Refuses a connection over the limits without a thread: the refusal is written at once (a
/// fresh socket's buffer takes it), whatever the peer already sent is drained so the close is
/// a clean FIN rather than a reset that could destroy the refusal, and the socket is closed.
fn refuse(mut stream: TcpStream, why: &str) {
    let _ = stream.set_nonblocking(true);
    if let Ok(body) = postcard::to_stdvec(&HelloReply::Refused(why.to_string())) {
        let _ = tcp::write_frame(&mut stream, &body);
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

fn accept_loop<H: Handler>(
    listener: TcpListener,
    me: Hello,
    cfg: NetConfig,
    handler: Arc<H>,
    stop: Arc<AtomicBool>,
) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer_addr)) => {
                let slot = match admit(&counts, peer_addr.ip(), &cfg) {
                    Ok(s) => s,
                    Err(why) => {
                        tracing::warn!(peer = %peer_addr, "connection refused: {why}");
                        refuse(stream, &why);
                        continue;
                    }
                };
                let (me, cfg, handler) = (me.clone(), cfg.clone(), handler.clone());
                let _ = stream.set_nonblocking(false);
                let spawned = std::thread::Builder::new()
                    .name(format!("juxmem-conn-{peer_addr}"))
                    .spawn(move || {
                        let _slot = slot;
                        serve_connection(stream, peer_addr.to_string(), me, cfg, handler)
                    });
                if let Err(e) = spawned {
                    tracing::error!("cannot start a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn serve_connection<H: Handler>(
    stream: std::net::TcpStream,
    peer_addr: String,
    me: Hello,
    cfg: NetConfig,
    handler: Arc<H>,
) {
    let federation = me.federation.clone();
    let conn = tcp::accept(stream, &me, &cfg, |h| {
        if h.federation == federation {
            Ok(())
        } else {
            Err(format!(
                "{} belongs to federation {:?}, this node to {:?}",
                h.name, h.federation, federation
            ))
        }
    });
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(peer = %peer_addr, "handshake refused: {e}");
            return;
        }
    };
    let peer = format!("{} ({peer_addr})", conn.peer().name);
    let mut session = H::Session::default();
    serve_requests(&*handler, &mut session, &mut conn, &peer, &cfg);
    // The clean-up runs however the connection ended, a panic included; a panic in it is
    // contained too (the process serves everyone else).
    let closed = catch_unwind(AssertUnwindSafe(|| handler.closed(session)));
    if closed.is_err() {
        tracing::error!(peer = %peer, "cleaning up after a closed connection panicked");
    }
}

fn serve_requests<H: Handler>(
    handler: &H,
    session: &mut H::Session,
    conn: &mut Conn,
    peer: &str,
    cfg: &NetConfig,
) {
    loop {
        // Between requests a pooled connection may sit idle for a while.
        let idle = if handler.holds_state(session) {
            None
        } else {
            Some(IDLE_TIMEOUT)
        };
        let _ = conn.set_read_timeout(idle);
        let req = match conn.recv::<Request>() {
            Ok(r) => r,
            Err(Error::Network(_)) => break, // peer closed
            Err(Error::Timeout { what, .. }) if what == tcp::WAITING_FOR_A_FRAME => {
                tracing::debug!(peer = %peer, "idle connection closed");
                break;
            }
            Err(e) => {
                tracing::warn!(peer = %peer, "closing connection: {e}");
                // Best effort: tell the peer why (a malformed request, e.g. an invalid
                // layout) before closing; bulk data it may have announced cannot be skipped.
                let _ = conn.send(&Response::error(&e));
                break;
            }
        };
        let _ = conn.set_read_timeout(Some(cfg.io_timeout));
        let what = crate::service::provider::request_name(&req);
        // Last line of defence: a panic closes this connection only.
        match catch_unwind(AssertUnwindSafe(|| handler.handle(session, conn, req))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(peer = %peer, "closing connection: {e}");
                break;
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                tracing::error!(
                    peer = %peer,
                    "handling {what} panicked: {msg}; closing that connection"
                );
                break;
            }
        }
    }
}
