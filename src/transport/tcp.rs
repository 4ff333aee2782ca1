//! TCP: framed messages between processes (always used between clusters).
//!
//! A frame is a little-endian `u32` length followed by that many bytes of postcard-encoded
//! message. Every decoded length is checked against a limit before anything is allocated, so a
//! malformed or hostile peer cannot make us allocate or wait without bound. Bulk array data
//! travels after a message as raw bytes whose length the message announced and the receiver
//! checked against what it expects.
//!
//! Reading a frame has a deadline for the whole frame, not per system call: once its first byte
//! arrived, the rest must arrive within the I/O timeout, so a peer trickling bytes cannot hold
//! a thread. Before the handshake, frames are small ([`HANDSHAKE_MAX_FRAME`]) and the whole
//! handshake has a deadline ([`NetConfig::handshake_timeout`]).
//!
//! The first frame in each direction is the handshake: 8 magic bytes, the protocol version as a
//! fixed `u32` (so that a peer speaking another version is recognised even if the message
//! schema changed), then the postcard-encoded [`Hello`]. A mismatched peer is refused by name
//! and version and the connection closed.
//!
//! With credentials ([`Security::Tls`], the default) every connection is mutual TLS first
//! (see [`super::tls`]) and the handshake above runs inside it; each side then checks that the
//! peer's certificate is valid for the identity its hello claims. Plain TCP is only for
//! [`Security::Insecure`] (`JUXMEM_INSECURE=1`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, ServerConnection, StreamOwned};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::transport::tls::{self, Credentials};

/// Magic bytes opening every connection.
pub const MAGIC: [u8; 8] = *b"JUXMEM\0\0";

/// Version of the wire protocol. Bump it on any incompatible change of the messages: peers of
/// different versions then refuse each other at the handshake, with both versions named,
/// rather than misreading a message. 2: the requests and answers added since the first
/// version (shared memory, namespaces, read caches) and `BlockPlacement::caches`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Default largest control frame accepted (bytes); bulk data is not a frame.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Largest frame accepted before the handshake is done: a hello is a few hundred bytes, and an
/// unknown peer must not make us allocate more.
pub const HANDSHAKE_MAX_FRAME: usize = 64 << 10;

/// Default deadline of a whole handshake on the accepting side.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default limit on open connections a service accepts, in all.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Default limit on open connections a service accepts from one peer address (every rank of a
/// node shares one, each with a control connection and a few pooled ones).
pub const DEFAULT_MAX_CONNECTIONS_PER_HOST: usize = 1024;

/// Who is speaking, sent by both sides when a connection opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The speaker's name (for example `A1/manager` or `A2/rank1`).
    pub name: String,
    /// Its cluster.
    pub cluster: String,
    /// The federation it belongs to; peers of different federations refuse each other.
    pub federation: String,
    /// The speaker's incarnation (changes at every start; detects stale contact files).
    pub incarnation: u64,
    /// The juxmem version string, for messages.
    pub software: String,
}

/// A peer's role in the federation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A cluster's manager.
    Manager,
    /// Anything else: a provider daemon, a job process (client and embedded provider), a tool.
    Provider,
}

/// Who a peer is, as far as authorization goes: its cluster and role. Requests are authorized
/// against this, never against names the peer chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The peer's cluster.
    pub cluster: String,
    /// Its role.
    pub role: Role,
}

impl Identity {
    /// The identity a hello claims: a manager is named `<cluster>/manager`.
    pub fn claimed_by(h: &Hello) -> Identity {
        let manager = h.name.strip_suffix("/manager") == Some(h.cluster.as_str());
        Identity {
            cluster: h.cluster.clone(),
            role: if manager {
                Role::Manager
            } else {
                Role::Provider
            },
        }
    }

    /// Whether this is the manager of `cluster`.
    pub fn is_manager_of(&self, cluster: &str) -> bool {
        self.role == Role::Manager && self.cluster == cluster
    }
}

/// Answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Accepted; the server's own hello.
    Welcome(Hello),
    /// Refused, with the reason.
    Refused(String),
}

/// What a timeout says when no frame started within the read timeout (an idle connection, as
/// opposed to a frame that started but did not arrive in time).
pub const WAITING_FOR_A_FRAME: &str = "waiting for a frame";

/// Writes one frame.
pub fn write_frame<W: Write>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame larger than 4 GiB"))?;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

/// Reads one frame of at most `max` bytes.
pub fn read_frame<R: Read>(r: &mut R, max: usize) -> Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .map_err(|e| io_error("reading a frame header", e))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(Error::Protocol(format!(
            "frame of {len} bytes exceeds the limit of {max} bytes"
        )));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)
        .map_err(|e| io_error("reading a frame body", e))?;
    Ok(buf)
}

/// Encodes and writes one message.
pub fn send<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<()> {
    let bytes = postcard::to_stdvec(msg)
        .map_err(|e| Error::Protocol(format!("cannot encode a message: {e}")))?;
    write_frame(w, &bytes).map_err(|e| io_error("sending a message", e))
}

/// Reads and decodes one message of at most `max` bytes.
pub fn recv<R: Read, T: DeserializeOwned>(r: &mut R, max: usize) -> Result<T> {
    decode(&read_frame(r, max)?)
}

/// Decodes one message. Values with invariants (layouts) are checked while decoding; a refused
/// one is a `Protocol` error naming why.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let _ = crate::error::take_decode_error(); // nothing stale from an earlier decode
    postcard::from_bytes(bytes).map_err(|e| {
        let why = crate::error::take_decode_error().unwrap_or_else(|| e.to_string());
        Error::Protocol(format!("malformed message ({} bytes): {why}", bytes.len()))
    })
}

/// Fills `buf` from `stream`, all of it before `deadline` (the socket's timeout is lowered to
/// the time left before each read; the caller restores it). `limit` is the deadline's length,
/// for the message.
fn read_exact_by(
    stream: &mut Link,
    buf: &mut [u8],
    deadline: Instant,
    limit: Duration,
    doing: &str,
) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                what: format!("{doing}: the whole frame did not arrive in time"),
                seconds: limit.as_secs_f64(),
            });
        }
        stream
            .tcp()
            .set_read_timeout(Some(left))
            .map_err(|e| io_error("setting a read timeout", e))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(io_error(
                    doing,
                    io::Error::from(io::ErrorKind::UnexpectedEof),
                ))
            }
            Ok(n) => got += n,
            Err(e) if timed_out(&e) => {} // the deadline is checked above
            Err(e) => return Err(io_error(doing, e)),
        }
    }
    Ok(())
}

/// Whether a socket call only ran out of its (lowered) timeout or was interrupted: the caller
/// checks its own deadline and tries again.
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sets both timeouts of a socket.
fn set_timeouts(sock: &TcpStream, t: Duration) -> Result<()> {
    sock.set_read_timeout(Some(t))
        .and_then(|()| sock.set_write_timeout(Some(t)))
        .map_err(|e| io_error("setting a timeout", e))
}

/// Reads one frame of at most `max` bytes: the first byte as long as the socket's current read
/// timeout allows (an idle wait), the rest within `frame_timeout` of it.
fn read_frame_timed(
    stream: &mut Link,
    max: usize,
    first: Option<Instant>,
    frame_timeout: Duration,
) -> Result<Vec<u8>> {
    let mut len = [0u8; 4];
    let deadline = match first {
        Some(d) => d,
        None => {
            stream
                .read_exact(&mut len[..1])
                .map_err(|e| io_error(WAITING_FOR_A_FRAME, e))?;
            Instant::now() + frame_timeout
        }
    };
    let start = if first.is_some() { 0 } else { 1 };
    read_exact_by(
        stream,
        &mut len[start..],
        deadline,
        frame_timeout,
        "reading a frame header",
    )?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(Error::Protocol(format!(
            "frame of {len} bytes exceeds the limit of {max} bytes"
        )));
    }
    let mut buf = vec![0u8; len];
    read_exact_by(
        stream,
        &mut buf,
        deadline,
        frame_timeout,
        "reading a frame body",
    )?;
    Ok(buf)
}

/// Maps an I/O error to a typed error, naming what we were doing.
pub fn io_error(doing: &str, e: io::Error) -> Error {
    match e.kind() {
        // A deadline of ours says how long it allowed (`Bulk`); a socket timeout does not.
        io::ErrorKind::TimedOut if e.get_ref().is_some() => Error::Timeout {
            what: format!("{doing}: {e}"),
            seconds: e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<BulkTimeout>())
                .map_or(f64::NAN, |t| t.allowed.as_secs_f64()),
        },
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
            what: doing.to_string(),
            seconds: f64::NAN,
        },
        io::ErrorKind::UnexpectedEof => {
            Error::Network(format!("{doing}: the peer closed the connection"))
        }
        // What TLS reports for a record that fails authentication (a bit flipped on the way,
        // a forged record): the peer sent something invalid.
        io::ErrorKind::InvalidData => Error::Protocol(format!("{doing}: {e}")),
        _ => Error::Network(format!("{doing}: {e}")),
    }
}

/// The byte stream of a connection: plain TCP, or TLS over it.
pub enum Link {
    /// Plain TCP (`JUXMEM_INSECURE=1`).
    Plain(TcpStream),
    /// TLS, as the side that connected.
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// TLS, as the side that accepted.
    Server(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Link::Plain(_) => "plain",
            Link::Client(_) | Link::Server(_) => "tls",
        };
        write!(f, "Link({kind}, {:?})", self.tcp().peer_addr().ok())
    }
}

impl Link {
    /// The TCP socket underneath (timeouts, peeking, shutdown).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Link::Plain(s) => s,
            Link::Client(s) => &s.sock,
            Link::Server(s) => &s.sock,
        }
    }

    /// Whether this link is encrypted and authenticated.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Link::Plain(_))
    }

    /// The peer's certificate (TLS only).
    fn peer_certificate(&self) -> Option<rustls::pki_types::CertificateDer<'static>> {
        let certs = match self {
            Link::Plain(_) => None,
            Link::Client(s) => s.conn.peer_certificates(),
            Link::Server(s) => s.conn.peer_certificates(),
        };
        certs
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned())
    }

    /// Whether decrypted bytes wait unread (TLS only).
    fn buffered(&mut self) -> bool {
        let state = match self {
            Link::Plain(_) => return false,
            Link::Client(s) => s.conn.process_new_packets(),
            Link::Server(s) => s.conn.process_new_packets(),
        };
        state.map_or(true, |st| {
            st.plaintext_bytes_to_read() > 0 || st.peer_has_closed()
        })
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Client(s) => s.read(buf),
            Link::Server(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Client(s) => s.write(buf),
            Link::Server(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.flush(),
            Link::Client(s) => s.flush(),
            Link::Server(s) => s.flush(),
        }
    }
}

/// One established, handshaken connection.
#[derive(Debug)]
pub struct Conn {
    stream: Link,
    peer: Hello,
    identity: Identity,
    max_frame: usize,
    /// The read timeout set by the owner (the wait for a frame's first byte).
    read_timeout: Option<Duration>,
    /// The deadline of the rest of a frame once its first byte arrived.
    frame_timeout: Duration,
}

impl Conn {
    /// The peer's hello.
    pub fn peer(&self) -> &Hello {
        &self.peer
    }

    /// SHA-256 of the peer's certificate (TLS only).
    pub fn peer_fingerprint(&self) -> Option<String> {
        self.stream.peer_certificate().map(|c| tls::fingerprint(&c))
    }

    /// The peer's identity, for authorization (see [`Identity`]).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Sends a message.
    pub fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        send(&mut self.stream, msg)?;
        self.stream
            .flush()
            .map_err(|e| io_error("sending a message", e))
    }

    /// Receives a message: its first byte within the read timeout, the whole frame within the
    /// I/O timeout of that.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let frame = read_frame_timed(&mut self.stream, self.max_frame, None, self.frame_timeout);
        // The deadline lowered the socket's timeout; bulk reads after the message use it.
        let restored = self.stream.tcp().set_read_timeout(self.read_timeout);
        let frame = frame?;
        restored.map_err(|e| io_error("setting a read timeout", e))?;
        decode(&frame)
    }

    /// The underlying stream (its socket, its buffered state). Bulk data goes through
    /// [`Conn::bulk`].
    pub fn stream(&mut self) -> &mut Link {
        &mut self.stream
    }

    /// The `bytes` bulk bytes after a message, to read or write before the transfer's
    /// deadline (see [`Bulk`]). Flush after writing (TLS buffers).
    pub fn bulk(&mut self, bytes: u64) -> Bulk<'_> {
        let allowed =
            self.frame_timeout + Duration::from_secs_f64(bytes as f64 / MIN_BULK_RATE as f64);
        Bulk {
            conn: self,
            deadline: Instant::now() + allowed,
            allowed,
            bytes,
        }
    }

    /// Whether the peer closed the connection (or sent something unasked), checked without
    /// blocking: a pooled connection that fails this is not reused.
    pub fn peer_closed(&mut self) -> bool {
        if self.stream.buffered() {
            return true;
        }
        let tcp = self.stream.tcp();
        if tcp.set_nonblocking(true).is_err() {
            return true;
        }
        let mut b = [0u8; 1];
        let closed = !matches!(tcp.peek(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        closed || tcp.set_nonblocking(false).is_err()
    }

    /// Changes the read timeout (for requests that legitimately wait long, like version waits).
    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        self.read_timeout = t;
        self.stream
            .tcp()
            .set_read_timeout(t)
            .map_err(|e| io_error("setting a read timeout", e))
    }

    /// Changes both the read and the write timeout.
    pub fn set_timeouts(&mut self, t: Duration) -> Result<()> {
        self.set_read_timeout(Some(t))?;
        self.frame_timeout = t;
        self.stream
            .tcp()
            .set_write_timeout(Some(t))
            .map_err(|e| io_error("setting a write timeout", e))
    }
}

/// The slowest bulk transfer accepted, in bytes per second, after a grace of the frame
/// timeout: a peer that sends or takes bulk data slower is cut off, so that a trickling peer
/// cannot hold a thread, and the block it writes, for long (per-call socket timeouts alone let
/// one byte a minute go on for ever).
pub const MIN_BULK_RATE: u64 = 1 << 20;

/// The bulk bytes of one transfer after a message, read or written before a deadline for the
/// whole transfer: the frame timeout plus the transfer's size at [`MIN_BULK_RATE`].
pub struct Bulk<'a> {
    conn: &'a mut Conn,
    deadline: Instant,
    allowed: Duration,
    bytes: u64,
}

/// A bulk transfer ran past its deadline.
#[derive(Debug)]
struct BulkTimeout {
    allowed: Duration,
    bytes: u64,
}

impl std::fmt::Display for BulkTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the transfer of {} bytes did not end within {:.1} s (the peer sends or takes less \
             than {} bytes/s)",
            self.bytes,
            self.allowed.as_secs_f64(),
            MIN_BULK_RATE
        )
    }
}

impl std::error::Error for BulkTimeout {}

impl Bulk<'_> {
    /// Runs `op` on the stream with the socket's read (or `write`) timeout lowered to the time
    /// left, again after each timeout, until the transfer's deadline.
    fn by_deadline<R>(
        &mut self,
        write: bool,
        mut op: impl FnMut(&mut Link) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    BulkTimeout {
                        allowed: self.allowed,
                        bytes: self.bytes,
                    },
                ));
            }
            let tcp = self.conn.stream.tcp();
            match write {
                true => tcp.set_write_timeout(Some(left))?,
                false => tcp.set_read_timeout(Some(left))?,
            }
            match op(&mut self.conn.stream) {
                Err(e) if timed_out(&e) => {} // the deadline is checked above
                r => return r,
            }
        }
    }
}

impl Read for Bulk<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.by_deadline(false, |s| s.read(buf))
    }
}

impl Write for Bulk<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.by_deadline(true, |s| s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.by_deadline(true, |s| s.flush())
    }
}

impl Drop for Bulk<'_> {
    fn drop(&mut self) {
        // Back to the connection's own timeouts (a failure here shows at its next use).
        let tcp = self.conn.stream.tcp();
        let _ = tcp.set_read_timeout(self.conn.read_timeout);
        let _ = tcp.set_write_timeout(Some(self.conn.frame_timeout));
    }
}

/// Settings for connections.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Timeout for connecting, for every write, and for a whole frame once it started.
    pub io_timeout: Duration,
    /// Largest control frame accepted.
    pub max_frame: usize,
    /// Deadline of a whole handshake on the accepting side (capped by `io_timeout`).
    pub handshake_timeout: Duration,
    /// Open connections a service accepts, in all.
    pub max_connections: usize,
    /// Open connections a service accepts from one peer address.
    pub max_connections_per_host: usize,
    /// TLS credentials, or plain TCP.
    pub security: Security,
}

/// Whether connections are mutual TLS.
#[derive(Clone, Debug, Default)]
pub enum Security {
    /// No credentials were found, and plain TCP was not asked for: every connection fails
    /// with this explanation.
    #[default]
    Missing,
    /// Mutual TLS with these credentials.
    Tls(Arc<Credentials>),
    /// Plain TCP, unauthenticated and unencrypted (`JUXMEM_INSECURE=1`).
    Insecure,
}

impl NetConfig {
    /// These settings, or the reason a service cannot run with them (no credentials and plain
    /// TCP not asked for): a service says so at start, rather than refuse every connection.
    pub fn require_security(self) -> Result<NetConfig> {
        match self.security {
            Security::Missing => Err(Error::InvalidArgument(NO_CREDENTIALS.into())),
            _ => Ok(self),
        }
    }
}

/// What a process without credentials is told.
pub const NO_CREDENTIALS: &str = "no TLS credentials: set JUXMEM_CREDENTIALS to this \
    cluster's credentials directory (made by `juxmem credentials issue`; `juxmem launch` makes \
    its own), or JUXMEM_INSECURE=1 for plain, unauthenticated TCP";

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            io_timeout: Duration::from_secs(60),
            max_frame: DEFAULT_MAX_FRAME,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_host: DEFAULT_MAX_CONNECTIONS_PER_HOST,
            security: Security::Missing,
        }
    }
}

/// Send and receive buffer size of every juxmem connection.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// No Nagle delay and [`SOCKET_BUFFER`]-byte buffers, as on every juxmem connection: large
/// buffers keep bulk streams from stalling on loopback and LANs alike. Public so that
/// benchmarks give their plain-TCP baselines exactly the same settings.
pub fn tune_bulk(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(stream);
    // Sizes are a request the kernel may cap: no reason to fail.
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    Ok(())
}

fn tune(stream: &TcpStream, cfg: &NetConfig) -> Result<()> {
    tune_bulk(stream).map_err(|e| io_error("configuring a socket", e))?;
    set_timeouts(stream, cfg.io_timeout)?;
    let sock = socket2::SockRef::from(stream);
    // Keepalive detects a dead peer on connections that legitimately sit idle (a write lock
    // held while the writer computes).
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    let _ = sock.set_tcp_keepalive(&keepalive);
    Ok(())
}

fn hello_bytes(h: &Hello) -> Result<Vec<u8>> {
    let mut buf = MAGIC.to_vec();
    buf.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    buf.extend(
        postcard::to_stdvec(h).map_err(|e| Error::Protocol(format!("cannot encode hello: {e}")))?,
    );
    Ok(buf)
}

/// Parses a hello frame, checking magic and protocol version.
fn parse_hello(frame: &[u8]) -> Result<Hello> {
    if frame.len() < 12 || frame[..8] != MAGIC {
        return Err(Error::Protocol(
            "the peer does not speak the juxmem protocol (bad magic)".into(),
        ));
    }
    let version = u32::from_le_bytes(frame[8..12].try_into().expect("4 bytes"));
    if version != PROTOCOL_VERSION {
        return Err(Error::Protocol(format!(
            "the peer speaks juxmem protocol version {version}, this node speaks version {PROTOCOL_VERSION}"
        )));
    }
    postcard::from_bytes(&frame[12..]).map_err(|e| Error::Protocol(format!("malformed hello: {e}")))
}

/// Connects to `addr` and performs the handshake as `me`: TLS first unless insecure, then
/// the hellos; the peer's certificate must be valid for the identity its hello claims.
pub fn connect(addr: &str, me: &Hello, cfg: &NetConfig) -> Result<Conn> {
    let tls_config = match &cfg.security {
        Security::Missing => return Err(Error::InvalidArgument(NO_CREDENTIALS.into())),
        Security::Tls(c) => Some(c.client(Identity::claimed_by(me).role)?),
        Security::Insecure => None,
    };
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::Network(format!("cannot resolve {addr}: {e}")))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, cfg.io_timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = stream.ok_or_else(|| {
        Error::Network(format!(
            "cannot connect to {addr}: {}",
            last.map_or("no address".to_string(), |e| e.to_string())
        ))
    })?;
    tune(&stream, cfg)?;
    let deadline = Instant::now() + cfg.io_timeout;
    let mut link = match tls_config {
        None => Link::Plain(stream),
        Some(config) => {
            let conn = ClientConnection::new(config, tls::server_name())
                .map_err(|e| Error::Network(format!("TLS with {addr}: {e}")))?;
            let mut s = StreamOwned::new(conn, stream);
            // A service over its connection limits answers in plain framing, before TLS.
            while s.conn.wants_write() {
                s.conn
                    .write_tls(&mut s.sock)
                    .map_err(|e| io_error("sending the TLS hello", e))?;
            }
            if let Some(why) = plain_refusal(&mut s.sock, deadline) {
                return Err(Error::Refused(format!("{addr} refused us: {why}")));
            }
            tls_handshake(
                &mut *s.conn,
                &mut s.sock,
                deadline,
                cfg.io_timeout,
                cfg.io_timeout,
            )
            .map_err(|e| prefixed(e, &format!("TLS handshake with {addr}")))?;
            Link::Client(Box::new(s))
        }
    };
    let sent = write_frame(&mut link, &hello_bytes(me)?).and_then(|()| link.flush());
    sent.map_err(|e| io_error("sending hello", e))?;
    let reply = read_frame_timed(
        &mut link,
        HANDSHAKE_MAX_FRAME.min(cfg.max_frame),
        Some(deadline),
        cfg.io_timeout,
    )
    .and_then(|f| decode::<HelloReply>(&f));
    link.tcp()
        .set_read_timeout(Some(cfg.io_timeout))
        .map_err(|e| io_error("setting a read timeout", e))?;
    let reply = reply.map_err(|e| match (&e, link.is_tls()) {
        // A TLS peer that refused our certificate closes, with an alert saying why.
        (Error::Network(why) | Error::Protocol(why), true) => Error::Refused(format!(
            "{addr} closed the connection during the handshake ({why}): does it trust our \
             credentials (same federation, not expired)?"
        )),
        _ => e,
    })?;
    match reply {
        HelloReply::Welcome(peer) => {
            let identity = Identity::claimed_by(&peer);
            if let Some(cert) = link.peer_certificate() {
                tls::check_identity(&cert, &identity)
                    .map_err(|e| prefixed(e, &format!("{addr} says it is {}", peer.name)))?;
            }
            Ok(Conn {
                stream: link,
                identity,
                peer,
                max_frame: cfg.max_frame,
                read_timeout: Some(cfg.io_timeout),
                frame_timeout: cfg.io_timeout,
            })
        }
        HelloReply::Refused(why) => Err(Error::Refused(format!("{addr} refused us: {why}"))),
    }
}

/// `e` with `what` in front of its message.
fn prefixed(e: Error, what: &str) -> Error {
    match e {
        Error::Refused(m) => Error::Refused(format!("{what}: {m}")),
        Error::Network(m) => Error::Network(format!("{what}: {m}")),
        Error::Timeout { what: w, seconds } => Error::Timeout {
            what: format!("{what}: {w}"),
            seconds,
        },
        other => other,
    }
}

/// Runs a TLS handshake to its end before `deadline` (a peer trickling bytes cannot hold it
/// longer; `limit` is the deadline's length, for the message), then leaves the socket's
/// timeouts at `after`.
fn tls_handshake<D>(
    conn: &mut rustls::ConnectionCommon<D>,
    sock: &mut TcpStream,
    deadline: Instant,
    limit: Duration,
    after: Duration,
) -> Result<()> {
    while conn.is_handshaking() || conn.wants_write() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                what: "the TLS handshake".into(),
                seconds: limit.as_secs_f64(),
            });
        }
        set_timeouts(sock, left)?;
        match conn.complete_io(sock) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err(Error::Refused(
                    "the peer closed the connection during the TLS handshake".into(),
                ))
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {} // the deadline is checked above
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Error::Refused(e.to_string()))
            }
            Err(e) => return Err(io_error("the TLS handshake", e)),
        }
    }
    set_timeouts(sock, after)
}

/// A refusal in plain framing where a TLS answer was expected (a service over its connection
/// limits refuses before TLS), looked at without consuming TLS bytes.
fn plain_refusal(sock: &mut TcpStream, deadline: Instant) -> Option<String> {
    let mut b = [0u8; 1];
    let left = deadline.saturating_duration_since(Instant::now());
    sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .ok()?;
    // TLS records start with a content type from 20 to 23.
    match sock.peek(&mut b) {
        Ok(1) if !(0x14..=0x17).contains(&b[0]) => {}
        _ => return None,
    }
    let mut link = Link::Plain(sock.try_clone().ok()?);
    let frame = read_frame_timed(&mut link, HANDSHAKE_MAX_FRAME, Some(deadline), left).ok()?;
    match decode::<HelloReply>(&frame).ok()? {
        HelloReply::Refused(why) => Some(why),
        HelloReply::Welcome(_) => None,
    }
}

/// What the first bytes of a new connection say it speaks, looked at without reading them:
/// `Some(true)` for TLS, `Some(false)` for juxmem's plain handshake, `None` if nothing came
/// before `deadline`.
fn speaks_tls(stream: &TcpStream, deadline: Instant) -> Option<bool> {
    let mut b = [0u8; 2];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return None;
        }
        match stream.peek(&mut b) {
            Ok(0) => return None,
            // A TLS handshake record: content type 22, version 3.x.
            Ok(n) if n >= 2 || b[0] != 0x16 => return Some(b[0] == 0x16 && b[1] == 0x03),
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Accepts the handshake on a freshly accepted stream, as `me`: TLS first unless insecure,
/// then the hellos. `check` may refuse the peer; so does a certificate not valid for the
/// identity its hello claims.
pub fn accept(
    stream: TcpStream,
    me: &Hello,
    cfg: &NetConfig,
    check: impl Fn(&Hello) -> std::result::Result<(), String>,
) -> Result<Conn> {
    tune(&stream, cfg)?;
    // An unknown peer gets a small frame and a deadline for the whole handshake.
    let limit = cfg.handshake_timeout.min(cfg.io_timeout);
    let deadline = Instant::now() + limit;
    let handshake_timeout = |e| match e {
        Error::Timeout { seconds, .. } => Error::Timeout {
            what: "the handshake".into(),
            seconds,
        },
        other => other,
    };
    let tls = speaks_tls(&stream, deadline);
    let mut link = match &cfg.security {
        Security::Missing => return Err(Error::InvalidArgument(NO_CREDENTIALS.into())),
        Security::Insecure if tls == Some(true) => {
            return Err(Error::Refused(
                "the peer speaks TLS; this process runs with JUXMEM_INSECURE=1".into(),
            ))
        }
        Security::Insecure => Link::Plain(stream),
        Security::Tls(_) if tls == Some(false) => {
            // A plain-TCP juxmem peer is told why, in its own framing (once its hello is in,
            // under the same limits as any).
            let mut link = Link::Plain(stream);
            read_frame_timed(&mut link, HANDSHAKE_MAX_FRAME, Some(deadline), limit)
                .map_err(handshake_timeout)?;
            let why = "this federation requires TLS: the peer has no credentials (plain TCP)";
            let _ = send(&mut link, &HelloReply::Refused(why.into()));
            return Err(Error::Refused(why.into()));
        }
        Security::Tls(c) => {
            let config = c.server(Identity::claimed_by(me).role)?;
            let conn = ServerConnection::new(config)
                .map_err(|e| Error::Network(format!("TLS set-up: {e}")))?;
            let mut s = StreamOwned::new(conn, stream);
            tls_handshake(&mut *s.conn, &mut s.sock, deadline, limit, cfg.io_timeout)
                .map_err(handshake_timeout)
                .map_err(|e| prefixed(e, "TLS handshake"))?;
            Link::Server(Box::new(s))
        }
    };
    let frame = read_frame_timed(
        &mut link,
        HANDSHAKE_MAX_FRAME.min(cfg.max_frame),
        Some(deadline),
        limit,
    );
    link.tcp()
        .set_read_timeout(Some(cfg.io_timeout))
        .map_err(|e| io_error("setting a read timeout", e))?;
    let frame = frame.map_err(handshake_timeout)?;
    let cert = link.peer_certificate();
    let verdict = parse_hello(&frame).and_then(|h| {
        if let Some(cert) = &cert {
            tls::check_identity(cert, &Identity::claimed_by(&h))
                .map_err(|e| prefixed(e, &format!("{} (cluster {})", h.name, h.cluster)))?;
        }
        match check(&h) {
            Ok(()) => Ok(h),
            Err(why) => Err(Error::Refused(why)),
        }
    });
    match verdict {
        Ok(peer) => {
            send(&mut link, &HelloReply::Welcome(me.clone()))?;
            link.flush().map_err(|e| io_error("sending hello", e))?;
            Ok(Conn {
                stream: link,
                identity: Identity::claimed_by(&peer),
                peer,
                max_frame: cfg.max_frame,
                read_timeout: Some(cfg.io_timeout),
                frame_timeout: cfg.io_timeout,
            })
        }
        Err(e) => {
            let why = match &e {
                Error::Refused(w) => w.clone(),
                other => other.to_string(),
            };
            // Best effort: tell the peer why before closing.
            let _ = send(&mut link, &HelloReply::Refused(why));
            let _ = link.flush();
            Err(e)
        }
    }
}

/// Binds a listener on `addr` (use port 0 for any free port).
pub fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| Error::Network(format!("cannot listen on {addr}: {e}")))
}

/// [`parse_hello`] for the fuzz targets: a hello frame as the accepting side parses it.
pub fn parse_hello_frame(frame: &[u8]) -> Result<Hello> {
    parse_hello(frame)
}

/// [`hello_bytes`] for the fuzz targets: the hello frame `connect` sends.
pub fn hello_frame(h: &Hello) -> Result<Vec<u8>> {
    hello_bytes(h)
}
