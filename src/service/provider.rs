//! The provider service: serves a [`Store`] over TCP. Standalone daemons run it; every rank of a
//! job runs one embedded for the blocks it owns.
//!
//! Reads pack the selected part of a snapshot straight onto the socket; writes unpack from the
//! socket straight into the working copy; publishing replicates the new snapshot to every
//! replica (in parallel) before answering, so an acknowledged release has every copy current.

use std::io::Write;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::plan::stream::{pack_to, span_elements, unpack_from};
use crate::service::pool::Pool;
use crate::service::protocol::{ArrayId, Request, Response};
use crate::service::selection::{read_spans, write_spans};
use crate::service::server::Handler;
use crate::service::store::{Data, Store};
use crate::transport::tcp::{io_error, Conn};
use crate::with_elem_size;

/// A provider: its store, and a pool to reach replicas.
pub struct Provider {
    store: Arc<Store>,
    pool: Arc<Pool>,
}

impl Provider {
    /// Serves `store`, replicating through `pool`.
    pub fn new(store: Arc<Store>, pool: Arc<Pool>) -> Provider {
        Provider { store, pool }
    }
}

/// Publishes a block's working copy and replicates it (used by the service and by a rank's
/// embedded provider directly).
pub fn publish(
    store: &Store,
    pool: &Pool,
    array: ArrayId,
    block: u32,
    epoch: u64,
    version: u64,
    floor: u64,
) -> Result<()> {
    let Some(snap) = store.publish(array, block, epoch, version, floor)? else {
        return Ok(());
    };
    let meta = store.meta(array)?;
    let name: &str = &meta.spec.name;
    let replicas = meta
        .blocks
        .get(block as usize)
        .map(|b| b.replicas.clone())
        .unwrap_or_default();
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = replicas
            .iter()
            .map(|r| {
                let snap = snap.clone();
                s.spawn(move || {
                    pool.with(&r.addr, |c| {
                        c.send(&Request::Install {
                            array,
                            block,
                            version,
                            floor,
                            bytes: snap.len() as u64,
                        })?;
                        c.stream()
                            .write_all(snap.as_bytes())
                            .map_err(|e| io_error("sending a replica", e))?;
                        c.recv::<Response>()?.into_result().map(|_| ())
                    })
                    .map_err(|e| {
                        Error::Network(format!("replicating block {block} of {name} to {r}: {e}"))
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Network("replication thread panicked".into())))
            })
            .collect()
    });
    results.into_iter().collect()
}

fn reply(conn: &mut Conn, r: Result<Response>) -> Result<()> {
    match r {
        Ok(resp) => conn.send(&resp),
        Err(e) => conn.send(&Response::error(&e)),
    }
}

/// Reads `bytes` announced bulk bytes into fresh aligned memory.
fn read_bulk(conn: &mut Conn, bytes: u64) -> Result<Data> {
    let mut d = Data::zeroed(bytes as usize);
    std::io::Read::read_exact(conn.stream(), d.as_bytes_mut())
        .map_err(|e| io_error("reading bulk data", e))?;
    Ok(d)
}

impl Handler for Provider {
    type Session = ();

    fn handle(&self, _: &mut (), conn: &mut Conn, req: Request) -> Result<()> {
        match req {
            Request::Host { meta, block } => {
                let r = self.store.host(&meta, block).map(|_| Response::Ok);
                reply(conn, r)
            }
            Request::Promote { meta, block } => {
                self.store.update_meta(&meta);
                tracing::info!("now home of block {block} of {}", meta.spec.name);
                reply(conn, Ok(Response::Ok))
            }
            Request::Install {
                array,
                block,
                version,
                floor,
                bytes,
            } => {
                let expected = self
                    .store
                    .meta(array)
                    .and_then(|m| m.block_bytes(u64::from(block)));
                match expected {
                    Ok(n) if n == bytes => {
                        let data = read_bulk(conn, bytes)?;
                        let r = self
                            .store
                            .install(array, block, version, floor, data)
                            .map(|_| Response::Ok);
                        reply(conn, r)
                    }
                    Ok(n) => {
                        let e = Error::Protocol(format!(
                            "install of block {block} announces {bytes} bytes; the block has {n}"
                        ));
                        let _ = reply(conn, Err(e.clone()));
                        Err(e)
                    }
                    // Unknown array: the bulk bytes cannot be skipped safely, so refuse and close.
                    Err(e) => {
                        let _ = reply(conn, Err(e.clone()));
                        Err(e)
                    }
                }
            }
            Request::Write {
                array,
                block,
                epoch,
                base,
                selection,
                bytes,
            } => {
                let meta = match self.store.meta(array) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = reply(conn, Err(e.clone()));
                        return Err(e);
                    }
                };
                let size = meta.spec.elem.size();
                let checked = write_spans(&meta.spec.layout, u64::from(block), &selection).and_then(|spans| {
                    let want = span_elements(&spans) * size as u64;
                    if want == bytes {
                        Ok(spans)
                    } else {
                        Err(Error::Protocol(format!(
                            "write to block {block} of {} announces {bytes} bytes; the selection holds {want}",
                            meta.spec.name
                        )))
                    }
                });
                // On error the announced bytes cannot be trusted: answer, then close.
                let spans = match checked {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = reply(conn, Err(e.clone()));
                        return Err(e);
                    }
                };
                let working = match self.store.working(array, block, epoch, base) {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = reply(conn, Err(e.clone()));
                        return Err(e);
                    }
                };
                let mut w = working.lock().unwrap_or_else(|e| e.into_inner());
                let stream = conn.stream();
                with_elem_size!(size, T => unpack_from::<T, _>(&spans, stream, w.data.typed_mut::<T>()))
                    .map_err(|e| io_error("receiving written data", e))?;
                drop(w);
                reply(conn, Ok(Response::Ok))
            }
            Request::Publish {
                array,
                block,
                epoch,
                version,
                floor,
            } => {
                let r = publish(&self.store, &self.pool, array, block, epoch, version, floor)
                    .map(|_| Response::Ok);
                reply(conn, r)
            }
            Request::Read {
                array,
                block,
                version,
                epoch,
                selection,
            } => {
                let prepared = (|| {
                    let meta = self.store.meta(array)?;
                    let spans = read_spans(&meta.spec.layout, u64::from(block), &selection)?;
                    let working = match epoch {
                        Some((e, _)) => self.store.working_if_any(array, block, e)?,
                        None => None,
                    };
                    let snap = match (&working, epoch) {
                        (Some(_), _) => None,
                        (None, Some((_, base))) => Some(self.store.snapshot(array, block, base)?),
                        (None, None) => Some(self.store.snapshot(array, block, version)?),
                    };
                    Ok::<_, Error>((meta.spec.elem.size(), spans, working, snap))
                })();
                let (size, spans, working, snap) = match prepared {
                    Ok(p) => p,
                    Err(e) => return reply(conn, Err(e)),
                };
                let bytes = span_elements(&spans) * size as u64;
                conn.send(&Response::Data { bytes })?;
                let stream = conn.stream();
                let sent = match (&working, &snap) {
                    (Some(w), _) => {
                        let w = w.lock().unwrap_or_else(|e| e.into_inner());
                        with_elem_size!(size, T => pack_to::<T, _>(&spans, w.data.typed::<T>(), stream))
                    }
                    (None, Some(d)) => {
                        with_elem_size!(size, T => pack_to::<T, _>(&spans, d.typed::<T>(), stream))
                    }
                    (None, None) => unreachable!("a read has a working copy or a snapshot"),
                };
                sent.map_err(|e| io_error("sending data", e))
            }
            other => reply(
                conn,
                Err(Error::Protocol(format!(
                    "a provider does not answer {}",
                    request_name(&other)
                ))),
            ),
        }
    }
}

/// A request's name, for messages.
pub fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Register { .. } => "Register",
        Request::Leave { .. } => "Leave",
        Request::Reserve { .. } => "Reserve",
        Request::Create { .. } => "Create",
        Request::Lookup { .. } => "Lookup",
        Request::List { .. } => "List",
        Request::Status { .. } => "Status",
        Request::AcquireWrite { .. } => "AcquireWrite",
        Request::Commit { .. } => "Commit",
        Request::Abort { .. } => "Abort",
        Request::WaitVersion { .. } => "WaitVersion",
        Request::Unpin { .. } => "Unpin",
        Request::Host { .. } => "Host",
        Request::Install { .. } => "Install",
        Request::Write { .. } => "Write",
        Request::Publish { .. } => "Publish",
        Request::Read { .. } => "Read",
        Request::Promote { .. } => "Promote",
    }
}
