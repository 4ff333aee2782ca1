//! The accept loop shared by managers and providers: one thread per connection, each running
//! request after request through a [`Handler`]. A connection that sends something malformed or
//! oversized is logged and closed; the service keeps serving everyone else.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::service::protocol::Request;
use crate::transport::tcp::{self, Conn, Hello, NetConfig};

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

fn accept_loop<H: Handler>(
    listener: TcpListener,
    me: Hello,
    cfg: NetConfig,
    handler: Arc<H>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer_addr)) => {
                let (me, cfg, handler) = (me.clone(), cfg.clone(), handler.clone());
                let _ = stream.set_nonblocking(false);
                let spawned = std::thread::Builder::new()
                    .name(format!("juxmem-conn-{peer_addr}"))
                    .spawn(move || {
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
    loop {
        // Between requests a pooled connection may sit idle for a while.
        let idle = if handler.holds_state(&session) {
            None
        } else {
            Some(IDLE_TIMEOUT)
        };
        let _ = conn.set_read_timeout(idle);
        let req = match conn.recv::<Request>() {
            Ok(r) => r,
            Err(Error::Network(_)) => break, // peer closed
            Err(Error::Timeout { .. }) => {
                tracing::debug!(peer = %peer, "idle connection closed");
                break;
            }
            Err(e) => {
                tracing::warn!(peer = %peer, "closing connection: {e}");
                break;
            }
        };
        let _ = conn.set_read_timeout(Some(cfg.io_timeout));
        if let Err(e) = handler.handle(&mut session, &mut conn, req) {
            tracing::warn!(peer = %peer, "closing connection: {e}");
            break;
        }
    }
    handler.closed(session);
}
