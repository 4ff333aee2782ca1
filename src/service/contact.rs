//! Rendezvous through a federation directory: the manager leading each cluster writes a contact
//! file `<dir>/<cluster>.manager` with its address, incarnation and pid, and every manager
//! replica a file `<dir>/<cluster>.r<id>.replica` of the same form. A file whose address
//! answers with another incarnation, or does not answer, is stale (left by a crashed run) and
//! is reported as such, never trusted.
//!
//! A manager replica holds its place with an exclusive lock (`<dir>/<cluster>.manager.lock` for
//! replica 1, `<dir>/<cluster>.r<id>.lock` for the others) for as long as it lives ([`claim`]):
//! a second process for the same replica is refused even while the first does not answer
//! (paused), and a replica file found when the lock is free is stale.
//!
//! A contact file also names the manager's certificate (SHA-256): a client checks that the
//! manager answering at the address presents that very certificate. Contact files are private
//! (mode 0600).

use std::path::{Path, PathBuf};

use crate::config::{Config, Rendezvous};
use crate::error::{Error, Result};
use crate::service::protocol::NodeInfo;
use crate::transport::tcp::{self, Hello, Role, Security};

/// A manager's contact file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Cluster.
    pub cluster: String,
    /// `host:port` of the manager.
    pub addr: String,
    /// The manager's incarnation; `None` for address lists (nothing to compare).
    pub incarnation: Option<u64>,
    /// Process id, for operators (and to tell a crashed manager from an unreachable one).
    pub pid: Option<u32>,
    /// The host it runs on.
    pub host: Option<String>,
    /// SHA-256 of the manager's TLS certificate (`None`: plain TCP, or an address list).
    pub fingerprint: Option<String>,
}

/// This host's name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn path(dir: &Path, cluster: &str) -> PathBuf {
    dir.join(format!("{cluster}.manager"))
}

/// Writes a contact file atomically (write, then rename).
pub fn write(dir: &Path, c: &Contact) -> Result<()> {
    write_atomically(dir, &format!("{}.manager", c.cluster), &render(c))
}

/// Writes `text` to `dir/name` atomically (a private temporary file, then a rename), mode 0600.
fn write_atomically(dir: &Path, name: &str, text: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let io = |e: std::io::Error| {
        Error::Network(format!("cannot write {name} in {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
    }
    std::fs::rename(&tmp, dir.join(name)).map_err(io)
}

/// Removes a contact file if it is still ours (same incarnation).
pub fn remove(dir: &Path, cluster: &str, incarnation: u64) {
    if let Ok(c) = read_file(&path(dir, cluster)) {
        if c.incarnation == Some(incarnation) {
            let _ = std::fs::remove_file(path(dir, cluster));
        }
    }
}

/// The text of a contact file.
pub fn render(c: &Contact) -> String {
    let mut text = format!(
        "cluster={}\naddr={}\nincarnation={}\npid={}\nhost={}\n",
        c.cluster,
        c.addr,
        c.incarnation.unwrap_or(0),
        c.pid.unwrap_or(0),
        c.host.as_deref().unwrap_or("")
    );
    if let Some(f) = &c.fingerprint {
        text.push_str(&format!("cert=sha256:{f}\n"));
    }
    text
}

fn read_file(p: &Path) -> Result<Contact> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| Error::NotFound(format!("no contact file {}: {e}", p.display())))?;
    parse(&text, &p.display().to_string())
}

/// Parses the text of a contact file; `origin` (its path) names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Contact> {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::trim)
    };
    let bad = || Error::Protocol(format!("malformed contact file {origin}"));
    Ok(Contact {
        cluster: get("cluster").ok_or_else(bad)?.to_string(),
        addr: get("addr").ok_or_else(bad)?.to_string(),
        incarnation: Some(
            get("incarnation")
                .and_then(|v| v.parse().ok())
                .ok_or_else(bad)?,
        ),
        pid: get("pid").and_then(|v| v.parse().ok()),
        host: get("host").filter(|h| !h.is_empty()).map(str::to_string),
        fingerprint: get("cert")
            .and_then(|c| c.strip_prefix("sha256:"))
            .map(str::to_string),
    })
}

/// Every manager the rendezvous names.
pub fn managers(cfg: &Config) -> Result<Vec<Contact>> {
    match &cfg.rendezvous {
        None => Err(Error::InvalidArgument(
            "no federation to join: set JUXMEM_FEDERATION_DIR (a directory of contact files) or \
             JUXMEM_FEDERATION (CLUSTER=HOST:PORT,...)"
                .into(),
        )),
        Some(Rendezvous::Addresses(list)) => Ok(list
            .iter()
            .map(|(cluster, addr)| Contact {
                cluster: cluster.clone(),
                addr: addr.clone(),
                incarnation: None,
                pid: None,
                host: None,
                fingerprint: None,
            })
            .collect()),
        Some(Rendezvous::Dir(dir)) => {
            let mut out = Vec::new();
            let entries = std::fs::read_dir(dir).map_err(|e| {
                Error::NotFound(format!("federation directory {}: {e}", dir.display()))
            })?;
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "manager") {
                    out.push(read_file(&p)?);
                }
            }
            out.sort_by(|a, b| a.cluster.cmp(&b.cluster));
            Ok(out)
        }
    }
}

/// The manager of `cluster`.
pub fn manager_of(cfg: &Config, cluster: &str) -> Result<Contact> {
    let all = managers(cfg)?;
    let known: Vec<String> = all.iter().map(|c| c.cluster.clone()).collect();
    all.into_iter()
        .find(|c| c.cluster == cluster)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no manager for cluster {cluster} (the federation knows clusters {known:?})"
            ))
        })
}

fn replica_path(dir: &Path, cluster: &str, id: u64) -> PathBuf {
    dir.join(format!("{cluster}.r{id}.replica"))
}

/// Publishes manager replica `id` of its cluster (every replica has one such file, the
/// leader also the cluster's `<cluster>.manager`): how the replicas find each other, and how
/// clients find the leader after a failover.
pub fn write_replica(dir: &Path, id: u64, c: &Contact) -> Result<()> {
    write_atomically(dir, &format!("{}.r{id}.replica", c.cluster), &render(c))
}

/// Removes replica `id`'s file if it is still this incarnation's.
pub fn remove_replica(dir: &Path, cluster: &str, id: u64, incarnation: u64) {
    let p = replica_path(dir, cluster, id);
    if read_file(&p).is_ok_and(|c| c.incarnation == Some(incarnation)) {
        let _ = std::fs::remove_file(p);
    }
}

/// The manager replicas of `cluster` the directory names, by replica id.
pub fn replicas(dir: &Path, cluster: &str) -> Vec<(u64, Contact)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let prefix = format!("{cluster}.r");
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".replica"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if let Ok(c) = read_file(&e.path()) {
            if c.cluster == cluster {
                out.push((id, c));
            }
        }
    }
    out.sort_by_key(|(id, _)| *id);
    out
}

/// Where to ask for the manager of `cluster`: its leader's contact first (as the rendezvous
/// names it), then every replica's (a failover may be under way).
pub fn candidates(rendezvous: &Rendezvous, cluster: &str) -> Vec<Contact> {
    let mut out: Vec<Contact> = Vec::new();
    match rendezvous {
        Rendezvous::Addresses(list) => {
            for (c, addr) in list.iter().filter(|(c, _)| c == cluster) {
                out.push(Contact {
                    cluster: c.clone(),
                    addr: addr.clone(),
                    incarnation: None,
                    pid: None,
                    host: None,
                    fingerprint: None,
                });
            }
        }
        Rendezvous::Dir(dir) => {
            if let Ok(c) = read_file(&path(dir, cluster)) {
                out.push(c);
            }
            for (_, c) in replicas(dir, cluster) {
                if !out.iter().any(|o| o.addr == c.addr) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// The error for a contact that does not answer as it should, saying which case it is where
/// that can be told: a manager on this host whose process is gone (a crashed run), one that is
/// alive but unreachable (what it advertised), or, elsewhere, either.
pub fn stale(c: &Contact, why: &str) -> Error {
    let said = format!(
        "contact for cluster {} names {} (incarnation {}, pid {}{})",
        c.cluster,
        c.addr,
        c.incarnation.map_or("-".into(), |e| e.to_string()),
        c.pid.map_or("-".into(), |p| p.to_string()),
        c.host
            .as_ref()
            .map_or(String::new(), |h| format!(" on {h}")),
    );
    let here = c.host.as_deref().is_some_and(|h| h == hostname());
    // SAFETY: signal 0 only checks that the process exists.
    let alive = c
        .pid
        .filter(|&p| p != 0)
        .map(|p| unsafe { libc::kill(p as libc::pid_t, 0) } == 0);
    let case = match (here, alive) {
        (true, Some(false)) => "a stale contact from a crashed run (that process is gone): \
                                start the cluster's manager again (it replaces the file)"
            .to_string(),
        (true, Some(true)) => format!(
            "that manager is alive but nothing answers at {} from here: it advertised an address \
             this process cannot reach (check JUXMEM_INTERFACE / JUXMEM_LISTEN)",
            c.addr
        ),
        _ => format!(
            "nothing answers at {} (advertised by a live process? check JUXMEM_INTERFACE), or a \
             stale contact from a crashed run (start the cluster's manager again: it replaces \
             the file)",
            c.addr
        ),
    };
    Error::Stale(format!("{said} but {why}: {case}"))
}

/// A manager's hold on its cluster in the federation directory: an exclusive lock on
/// `<dir>/<cluster>.manager.lock`, held as long as this value lives (the kernel releases it when
/// the process dies, however it dies).
#[derive(Debug)]
pub struct Claim {
    dir: PathBuf,
    _lock: Option<std::fs::File>,
}

impl Claim {
    /// The federation directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Publishes `me` as manager replica `replica` of its cluster in the federation directory (if
/// the rendezvous is one), after taking that replica's lock: refused (`AlreadyExists`) while
/// another process holds it, even one that does not answer (paused); a replica file left
/// behind is then stale by construction and replaced. On a file system without locks, a
/// manager that answers at the file's address as its incarnation is what refuses. The
/// cluster's contact file (`<cluster>.manager`) is written by whichever replica leads
/// ([`write`]).
pub fn claim(cfg: &Config, me: &NodeInfo, hello: &Hello, replica: u64) -> Result<Option<Claim>> {
    let Some(Rendezvous::Dir(dir)) = &cfg.rendezvous else {
        return Ok(None);
    };
    let lock = lock_cluster(dir, &cfg.cluster, replica)?;
    if lock.is_none() {
        if let Ok(old) = read_file(&replica_path(dir, &cfg.cluster, replica)) {
            if let Ok(c) = tcp::connect(&old.addr, hello, &cfg.net) {
                if Some(c.peer().incarnation) == old.incarnation {
                    return Err(Error::AlreadyExists(format!(
                        "a manager for cluster {} already runs at {} (incarnation {}, pid {})",
                        cfg.cluster,
                        old.addr,
                        c.peer().incarnation,
                        old.pid.unwrap_or(0)
                    )));
                }
            }
        }
    }
    if let Ok(old) = read_file(&replica_path(dir, &cfg.cluster, replica)) {
        tracing::warn!(
            "replacing the stale file of manager replica {replica} of cluster {} ({}, pid {})",
            cfg.cluster,
            old.addr,
            old.pid.unwrap_or(0)
        );
    }
    write_replica(dir, replica, &contact_of(cfg, me))?;
    Ok(Some(Claim {
        dir: dir.clone(),
        _lock: lock,
    }))
}

/// The contact of manager `me` (configured by `cfg`), as its files say it.
pub fn contact_of(cfg: &Config, me: &NodeInfo) -> Contact {
    Contact {
        cluster: cfg.cluster.clone(),
        addr: me.addr.clone(),
        incarnation: Some(me.incarnation),
        pid: Some(std::process::id()),
        host: Some(hostname()),
        fingerprint: match &cfg.net.security {
            Security::Tls(c) => c.fingerprint(Role::Manager).map(str::to_string),
            _ => None,
        },
    }
}

/// Takes the lock of manager replica `replica` of `cluster` in `dir` (replica 1, the only
/// one of a cluster with a single manager: `<cluster>.manager.lock`): `Ok(None)` where the
/// file system has no locks, `AlreadyExists` naming the holder if another process holds it.
fn lock_cluster(dir: &Path, cluster: &str, replica: u64) -> Result<Option<std::fs::File>> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let p = if replica == 1 {
        dir.join(format!("{cluster}.manager.lock"))
    } else {
        dir.join(format!("{cluster}.r{replica}.lock"))
    };
    let io = |e: std::io::Error| Error::Network(format!("cannot open {}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&p)
        .map_err(io)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            return Err(Error::AlreadyExists(format!(
                "a manager for cluster {cluster} (replica {replica}) already runs ({}; it holds \
                 {}): stop it first, even if it does not answer (a paused manager still holds \
                 the cluster)",
                holder.trim(),
                p.display()
            )));
        }
        tracing::warn!(
            "no lock on {} ({e}): two managers of cluster {cluster} started at once would not \
             be told apart",
            p.display()
        );
        return Ok(None);
    }
    // Who holds it, for the message of the next one to try.
    let _ = f.set_len(0);
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = write!(f, "pid {} on {}", std::process::id(), hostname());
    Ok(Some(f))
}

/// The contact of the manager `node`.
pub fn of_node(node: &NodeInfo) -> Contact {
    Contact {
        cluster: node.cluster.clone(),
        addr: node.addr.clone(),
        incarnation: Some(node.incarnation),
        pid: None,
        host: None,
        fingerprint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn contact_files_are_private_and_name_the_certificate() {
        let dir = std::env::temp_dir().join(format!("juxmem-contact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = Contact {
            cluster: "A1".into(),
            addr: "127.0.0.1:4000".into(),
            incarnation: Some(7),
            pid: Some(42),
            host: Some("node1".into()),
            fingerprint: Some("ab".repeat(32)),
        };
        write(&dir, &c).unwrap();
        let p = path(&dir, "A1");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "contact file mode {mode:o}");
        assert_eq!(read_file(&p).unwrap(), c);
        // Without TLS there is no certificate to name.
        let plain = Contact {
            fingerprint: None,
            ..c
        };
        write(&dir, &plain).unwrap();
        assert_eq!(read_file(&p).unwrap(), plain);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
